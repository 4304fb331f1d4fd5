"""Node groups (the controller's --config file) and on-demand HealthCheckRequests.

Loading: every broken key is named with its file and line, and the CLI exits 2. The controller, with
the real client against the emulated API: a stress-only group never gets the connectivity stage, a
group without deep checks is left untouched (never Passed without a run), a NodeRecovery: None group
is never acted on by remediation, and requests re-check exactly their nodes, one request at a time.
"""

import json

import pytest

pytest.importorskip("kubernetes", reason="the controller needs the kubernetes client (dhc[kubernetes])")

from dhc_process import dhc, no_traceback  # noqa: E402
from test_controller import KEYS, P5, P5_STATUS, Running, finish, labels, wait_for  # noqa: E402

from dhc.controller import groups  # noqa: E402
from dhc.controller.jobs import STAGE_ANNOTATION, job_name  # noqa: E402
from dhc.controller.marks import RemediationKeys as MarkKeys  # noqa: E402
from dhc.errors import ConfigError  # noqa: E402
from dhc.k8s import scheme  # noqa: E402

HP = "sagemaker.amazonaws.com/instance-group-name"
CONFIG = f"""\
defaults:
  profile: quick
groups:
  - name: train
    selector:
      matchLabels: {{{HP}: train}}
    OnStartDeepHealthChecks: [InstanceStress]
    profile: full
    NodeRecovery: None
  - name: spare
    selector:
      matchExpressions:
        - {{key: {HP}, operator: In, values: [spare, spare-b]}}
    OnStartDeepHealthChecks: []
  - name: any-train
    selector:
      matchExpressions:
        - {{key: team, operator: Exists}}
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "dhc-controller.yaml"
    path.write_text(CONFIG)
    return groups.load(path)


def test_groups_are_chosen_by_selector_first_match_in_file_order_else_the_defaults(config):
    assert config.of({HP: "train"}) == config.named("train")
    train = config.of({HP: "train", "team": "llm"})  # both train and any-train select it: the first wins
    assert (train.name, train.checks, train.profile, train.recovery) == ("train", ("InstanceStress",), "full", "None")
    assert config.of({HP: "spare-b"}).checks == () and config.of({HP: "spare-b"}).automatic
    assert config.of({"team": "x"}).name == "any-train" and config.of({"team": "x"}).connectivity
    default = config.of({HP: "other"})
    assert (default.name, default.checks, default.profile, default.recovery) == (
        "default", ("InstanceStress", "InstanceConnectivity"), "quick", "Automatic")


def test_connectivity_group_size_and_topology_label_come_from_the_group_else_defaults_else_the_command_line(
        tmp_path):
    from dhc.controller.batches import Batches
    from dhc.controller.topology import Grouping

    path = tmp_path / "groups.yaml"
    path.write_text("defaults:\n  ConnectivityGroupSize: 8\ngroups:\n  - name: pg\n    selector: {matchLabels: {a: b}}\n"
                    "    ConnectivityGroupSize: 4\n    TopologyLabel: example.com/placement-group\n")
    loaded = groups.load(path)
    assert (loaded.named("pg").group_size, loaded.named("pg").topology_label) == (4, "example.com/placement-group")
    assert (loaded.of({}).group_size, loaded.of({}).topology_label) == (8, "")
    batches = Batches()
    batches.settings = type("S", (), {"grouping": Grouping(size=16, min_size=6, label="cli/label")})()
    assert batches.grouping(loaded.named("pg")) == Grouping(4, 4, "example.com/placement-group")
    assert batches.grouping(loaded.of({})) == Grouping(8, 6, "cli/label")
    assert batches.grouping(groups.plain().default) == Grouping(16, 6, "cli/label")


def test_without_a_file_every_node_gets_what_the_command_line_says():
    plain = groups.plain("full", connectivity=False)
    assert plain.of({HP: "train"}).checks == ("InstanceStress",) and plain.of({}).profile == "full"


@pytest.mark.parametrize(("text", "where", "expected"), [
    ("groups: 3\n", ":1: groups:", "expected a list of groups"),
    ("grups: []\n", ":1: grups:", "unknown key; expected one of defaults, groups"),
    ("defaults: {profile: fast}\ngroups: []\n", ":1: defaults/profile:", "expected one of quick, full, got 'fast'"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    OnStartDeepHealthChecks: [InstanceConnectivity]\n",
     ":4: groups/0/OnStartDeepHealthChecks:", "expected [InstanceStress, InstanceConnectivity], [InstanceStress] or []"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    NodeRecovery: Manual\n",
     ":4: groups/0/NodeRecovery:", "expected one of Automatic, None, got 'Manual'"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    NodeRecovery: Off\n",
     ":4: groups/0/NodeRecovery:", "got False (YAML reads an unquoted yes/no/on/off as true/false)"),
    ("groups:\n  - name: a\n    selector: {}\n", ":3: groups/0/selector:", "an empty selector would select every node"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: 1}}\n", ":3: groups/0/selector/matchLabels/x:",
     "expected a label value as quoted text, got 1"),
    ("groups:\n  - name: a\n    selector:\n      matchExpressions: [{key: x, operator: Has}]\n",
     ":4: groups/0/selector/matchExpressions/0/operator:", "expected one of In, NotIn, Exists, DoesNotExist"),
    ("groups:\n  - name: a\n    selector:\n      matchExpressions: [{key: x, operator: In}]\n",
     ":4: groups/0/selector/matchExpressions/0/operator:", "operator In takes a non-empty values list"),
    ("groups:\n  - name: a\n    selector:\n      matchExpressions: [{key: x, operator: Exists, values: [a]}]\n",
     ":4: groups/0/selector/matchExpressions/0/operator:", "operator Exists takes no values"),
    ("groups:\n  - selector: {matchLabels: {x: y}}\n", ":2: groups/0:", "missing required key 'name'"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    profil: full\n", ":4: groups/0/profil:",
     "unknown key"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n  - name: a\n    selector: {matchLabels: {x: z}}\n",
     ":4: groups/1/name:", "duplicate group name 'a'"),
    ("groups:\n  - name: a\n    name: b\n", ":3", "duplicate key 'name' (first on line 2)"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    ConnectivityGroupSize: 0\n",
     ":4: groups/0/ConnectivityGroupSize:", "a whole number of 1 or more, got 0"),
    ("defaults:\n  ConnectivityGroupSize: '16'\ngroups: []\n", ":2: defaults/ConnectivityGroupSize:",
     "a whole number of 1 or more, got '16'"),
    ("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    TopologyLabel: ''\n",
     ":4: groups/0/TopologyLabel:", "expected non-empty text"),
])
def test_a_bad_config_names_file_line_key_and_what_was_expected(tmp_path, text, where, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        groups.load(path)
    assert str(caught.value).startswith(f"{path}{where}") and expected in str(caught.value)


@pytest.mark.slow
def test_the_controller_exits_2_on_a_bad_config_before_it_touches_the_cluster(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("groups:\n  - name: a\n    selector: {matchLabels: {x: y}}\n    NodeRecovery: Manual\n")
    proc = dhc("controller", "--image", "dhc-node:1.0", "--config", str(path), "--metrics-port", "0", timeout=60)
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:4: groups/0/NodeRecovery: expected one of Automatic, None, got 'Manual'" in proc.stderr


def test_a_stress_only_group_never_gets_the_connectivity_stage(emulator, config):
    emulator.add_node("gpu-s", dict(P5, **{HP: "train"}), status=P5_STATUS)
    emulator.add_node("gpu-d", dict(P5), status=P5_STATUS)  # in no group: both stages
    with Running(emulator, groups=config, batch_window_s=0.2):
        wait_for(lambda: len(emulator.jobs) == 2, what="two Jobs")
        stress_only, both = emulator.jobs[job_name("gpu-s", 1, 1)], emulator.jobs[job_name("gpu-d", 1, 1)]
        assert stress_only["metadata"]["annotations"][STAGE_ANNOTATION] == "final"
        command = stress_only["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[command.index("--stage") + 1] == "final" and command[command.index("--profile") + 1] == "full"
        assert both["metadata"]["annotations"][STAGE_ANNOTATION] == "stress"
        finish(emulator, job_name("gpu-s", 1, 1), "gpu-s", "Passed", stage="final")
        finish(emulator, job_name("gpu-d", 1, 1), "gpu-d", "Passed")
        wait_for(lambda: labels(emulator, "gpu-s")[KEYS.check_status] == "Passed", what="gpu-s Passed")
        wait_for(lambda: any(n.startswith("dhc-fabric-") for n in emulator.jobs), what="gpu-d's batch")
    fabric = [j for n, j in emulator.jobs.items() if n.startswith("dhc-fabric-")]
    assert len(fabric) == 1 and "gpu-s" not in json.dumps(fabric[0])  # only gpu-d tests its fabric
    assert labels(emulator, "gpu-s")[KEYS.health] == "Schedulable"


def test_a_group_without_deep_checks_is_left_untouched_and_never_passed_without_a_run(emulator, config):
    emulator.add_node("gpu-n", dict(P5, **{HP: "spare"}), status=P5_STATUS)
    emulator.add_node("gpu-p", dict(P5, **{HP: "spare", KEYS.check_status: "Passed"}), status=P5_STATUS)
    with Running(emulator, groups=config) as running:
        wait_for(lambda: job_name("gpu-p", 1, 1) in emulator.jobs, what="the unearned Passed node's check")
        running.settled("gpu-n")
        assert not any("gpu-n" in name for name in emulator.jobs)
    node = emulator.nodes["gpu-n"]
    assert KEYS.check_status not in labels(emulator, "gpu-n") and KEYS.health not in labels(emulator, "gpu-n")
    assert not node["spec"].get("taints") and not node["metadata"].get("annotations")
    assert labels(emulator, "gpu-p")[KEYS.check_status] == "InProgress"  # a Passed nobody earned is checked


def add_marked(emulator, name, extra):
    emulator.add_node(name, dict(P5, **extra, **{KEYS.check_status: "Failed", KEYS.health: "UnschedulablePendingReplacement"}),
                      provider_id=f"aws:///us-west-2a/i-{len(emulator.nodes):017x}", status=dict(P5_STATUS),
                      annotations={KEYS.generation: "1", KEYS.attempts: "1"})
    emulator.reboot_node(name)


def test_a_node_recovery_none_group_is_never_acted_on_even_when_marked(emulator, config):
    add_marked(emulator, "gpu-keep", {HP: "train"})
    add_marked(emulator, "gpu-fix", {})
    marks = MarkKeys(scheme.DEFAULT_PREFIX)
    with Running(emulator, groups=config) as running:
        wait_for(lambda: marks.state in (emulator.nodes["gpu-fix"]["metadata"].get("annotations") or {}),
                 what="the Automatic group's node in remediation (a dry run)")
        running.settled("gpu-keep")
    keep = emulator.nodes["gpu-keep"]
    assert marks.state not in keep["metadata"]["annotations"] and not keep["spec"].get("unschedulable")
    assert not [e for e in emulator.events if e["involvedObject"]["name"] == "gpu-keep"]
    assert labels(emulator, "gpu-keep")[KEYS.health] == "UnschedulablePendingReplacement"  # the label stays


def request(emulator, name, **spec):
    emulator.add_custom("healthcheckrequests", "dhc", name, spec)


def status(emulator, name):
    return emulator.custom[f"healthcheckrequests/dhc/{name}"].get("status") or {}


PASSED = {KEYS.check_status: "Passed", KEYS.health: "Schedulable"}


def add_passed(emulator, name, extra):
    record = json.dumps({"status": "Passed", "stage": "final", "node": name, "job": "dhc-x", "pod": "p",
                         "run_id": "r", "generation": 1}, separators=(",", ":"))
    emulator.add_node(name, dict(P5, **extra, **PASSED), status=P5_STATUS,
                      annotations={KEYS.record: record, KEYS.generation: "1"})


def both_jobs(emulator, *names):
    wait_for(lambda: all(job_name(n, 2, 1) in emulator.jobs for n in names), what=f"the re-check Jobs of {names}")


def test_a_group_request_rechecks_exactly_that_group_and_reports_progress(emulator, config):
    for name, group in (("gpu-t1", "train"), ("gpu-t2", "train"), ("gpu-o", "other")):
        add_passed(emulator, name, {HP: group})
    request(emulator, "r1", group="train")
    with Running(emulator, groups=config, requests_poll_s=0.1) as running:
        wait_for(lambda: status(emulator, "r1").get("running") == 2, what="both train nodes running")
        assert sorted(status(emulator, "r1")["generations"]) == ["gpu-t1", "gpu-t2"]
        both_jobs(emulator, "gpu-t1", "gpu-t2")  # a node counts as running once marked, just before its Job is sent
        finish(emulator, job_name("gpu-t1", 2, 1), "gpu-t1", "Passed", stage="final")
        wait_for(lambda: status(emulator, "r1").get("done") == 1, what="one done")
        assert status(emulator, "r1")["phase"] == "Running" and status(emulator, "r1")["running"] == 1
        finish(emulator, job_name("gpu-t2", 2, 1), "gpu-t2", "Failed", "Replace", stage="final")
        wait_for(lambda: status(emulator, "r1").get("phase") == "Done", what="the request done")
        running.settled("gpu-o")
    assert status(emulator, "r1")["results"] == {"Passed": 1, "Failed": 1}
    assert not any("gpu-o" in name for name in emulator.jobs) and labels(emulator, "gpu-o") == dict(P5, **{HP: "other"}, **PASSED)


def test_a_node_list_request_and_a_second_request_waits_for_the_first(emulator, config):
    for name in ("gpu-a", "gpu-b", "gpu-c"):
        add_passed(emulator, name, {HP: "train"})  # stress only: the re-check is one final Job
    request(emulator, "first", nodes=["gpu-a"])
    request(emulator, "second", nodes=["gpu-b", "gpu-c"])
    request(emulator, "third", group="nope")
    with Running(emulator, groups=config, requests_poll_s=0.1):
        wait_for(lambda: status(emulator, "second").get("phase") == "Waiting", what="the second waiting")
        assert status(emulator, "second")["waitingFor"] == "first" and "one request is active at a time" in \
            status(emulator, "second")["reason"]
        wait_for(lambda: job_name("gpu-a", 2, 1) in emulator.jobs, what="gpu-a's re-check")
        assert not any(n in name for name in emulator.jobs for n in ("gpu-b", "gpu-c"))
        finish(emulator, job_name("gpu-a", 2, 1), "gpu-a", "Passed", stage="final")
        wait_for(lambda: status(emulator, "first").get("phase") == "Done", what="the first done")
        wait_for(lambda: status(emulator, "second").get("running") == 2, what="the second running")
        both_jobs(emulator, "gpu-b", "gpu-c")
        for name in ("gpu-b", "gpu-c"):
            finish(emulator, job_name(name, 2, 1), name, "Passed", stage="final")
        wait_for(lambda: status(emulator, "third").get("phase") == "Refused", what="the third refused")
    assert status(emulator, "second")["phase"] == "Done"
    assert status(emulator, "third")["reason"] == "no node group named 'nope'; groups: train, spare, any-train"


def test_the_shipped_config_loads_and_the_controller_mounts_the_file_it_names():
    import yaml

    root = __import__("pathlib").Path(__file__).resolve().parent.parent / "containers" / "k8s"
    shipped = groups.load(root / "node-groups.yaml")
    assert shipped.of({HP: "inference"}).checks == ("InstanceStress",) and not shipped.of({HP: "inference"}).automatic
    assert shipped.of({}).checks == ("InstanceStress", "InstanceConnectivity") and shipped.of({}).automatic
    [deployment] = yaml.safe_load_all((root / "controller.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    args, mounts = pod["containers"][0]["args"], pod["containers"][0]["volumeMounts"]
    assert args[args.index("--config") + 1] == "/etc/dhc/node-groups.yaml"
    assert {"name": "config", "mountPath": "/etc/dhc", "readOnly": True} in mounts
    assert {"name": "config", "configMap": {"name": "dhc-controller-config"}} in pod["volumes"]
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert {"name": "dhc-controller-config", "files": ["node-groups.yaml"]} in kustomization["configMapGenerator"]
    [crd] = yaml.safe_load_all((root / "healthcheckrequest-crd.yaml").read_text())
    assert (crd["spec"]["group"], crd["spec"]["names"]["plural"]) == ("dhc.dev", "healthcheckrequests")
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}  # the controller writes status only


@pytest.mark.parametrize(("spec", "reason"), [
    ({"nodes": ["gpu-a", "ghost"]}, "not nodes dhc checks (unknown, or without GPUs): ghost"),
    ({"nodes": []}, "spec.nodes: expected a non-empty list of node names, got []"),
    ({"group": "train", "nodes": ["gpu-a"]}, "give exactly one of spec.group"),
    ({}, "give exactly one of spec.group"),
    ({"group": "spare"}, "node group 'spare' has no node dhc checks"),
])
def test_a_request_that_names_nothing_dhc_checks_is_refused_with_the_reason(emulator, config, spec, reason):
    add_passed(emulator, "gpu-a", {HP: "train"})
    request(emulator, "bad", **spec)
    with Running(emulator, groups=config, requests_poll_s=0.1) as running:
        wait_for(lambda: status(emulator, "bad").get("phase") == "Refused", what="the request refused")
        running.settled("gpu-a")
    assert status(emulator, "bad")["reason"].startswith(reason) and not emulator.jobs
    assert KEYS.request not in labels(emulator, "gpu-a")


def test_a_controller_restarted_mid_request_labels_what_it_had_not_and_keeps_the_generations(emulator, config):
    for name in ("gpu-a", "gpu-b"):
        add_passed(emulator, name, {HP: "train"})
    request(emulator, "r", nodes=["gpu-a", "gpu-b"])
    # the last controller recorded the generations, then stopped before labelling the nodes
    emulator.custom["healthcheckrequests/dhc/r"]["status"] = {
        "phase": "Running", "generations": {"gpu-a": 1, "gpu-b": 1}, "labelled": False, "pending": 2}
    with Running(emulator, groups=config, requests_poll_s=0.1):
        wait_for(lambda: all(job_name(n, 2, 1) in emulator.jobs for n in ("gpu-a", "gpu-b")), what="both re-checks")
        for name in ("gpu-a", "gpu-b"):
            finish(emulator, job_name(name, 2, 1), name, "Passed", stage="final")
        wait_for(lambda: status(emulator, "r").get("phase") == "Done", what="the request done")
    assert status(emulator, "r")["generations"] == {"gpu-a": 1, "gpu-b": 1}
    assert status(emulator, "r")["results"] == {"Passed": 2} and not any("-g3-" in n for n in emulator.jobs)


def test_a_node_whose_group_drops_the_fabric_stage_after_its_stress_pass_is_checked_anew_stress_only(emulator, tmp_path):
    emulator.add_node("gpu-m", dict(P5, **{HP: "train"}), status=P5_STATUS)
    with Running(emulator, batch_window_s=3600):  # no config: both stages; the batch never forms here
        wait_for(lambda: job_name("gpu-m", 1, 1) in emulator.jobs, what="the stress Job")
        finish(emulator, job_name("gpu-m", 1, 1), "gpu-m", "Passed")
        wait_for(lambda: (emulator.nodes["gpu-m"]["metadata"].get("annotations") or {}).get(KEYS.stage)
                 == "stress-passed", what="stress passed, waiting for a batch")
    path = tmp_path / "groups.yaml"
    path.write_text(f"groups:\n  - name: train\n    selector: {{matchLabels: {{{HP}: train}}}}\n"
                    "    OnStartDeepHealthChecks: [InstanceStress]\n")
    with Running(emulator, groups=groups.load(path)):  # restarted with the group now stress only
        wait_for(lambda: job_name("gpu-m", 2, 1) in emulator.jobs, what="a stress-only check")
        assert emulator.jobs[job_name("gpu-m", 2, 1)]["metadata"]["annotations"][STAGE_ANNOTATION] == "final"
        finish(emulator, job_name("gpu-m", 2, 1), "gpu-m", "Passed", stage="final")
        wait_for(lambda: labels(emulator, "gpu-m")[KEYS.check_status] == "Passed", what="gpu-m Passed")
    assert not any(n.startswith("dhc-fabric-") for n in emulator.jobs)


def test_a_node_of_a_group_without_deep_checks_is_still_remediated_when_the_agent_marks_it(emulator, config):
    emulator.add_node("gpu-sp", dict(P5, **{HP: "spare", KEYS.health: "UnschedulablePendingReboot"}),
                      provider_id="aws:///us-west-2a/i-00000000000000abc", status=dict(P5_STATUS))
    emulator.reboot_node("gpu-sp")
    marks = MarkKeys(scheme.DEFAULT_PREFIX)
    with Running(emulator, groups=config):
        wait_for(lambda: marks.state in (emulator.nodes["gpu-sp"]["metadata"].get("annotations") or {}),
                 what="the dry run recorded (NodeRecovery Automatic)")
    assert not emulator.jobs and KEYS.check_status not in labels(emulator, "gpu-sp")  # still no deep check


def test_a_request_for_a_group_without_deep_checks_runs_its_stress_stage_and_earns_its_pass(emulator, config):
    emulator.add_node("gpu-n", dict(P5, **{HP: "spare"}), status=P5_STATUS)
    request(emulator, "spare-now", group="spare")
    with Running(emulator, groups=config, requests_poll_s=0.1):
        wait_for(lambda: job_name("gpu-n", 1, 1) in emulator.jobs, what="the requested check")
        assert emulator.jobs[job_name("gpu-n", 1, 1)]["metadata"]["annotations"][STAGE_ANNOTATION] == "final"
        finish(emulator, job_name("gpu-n", 1, 1), "gpu-n", "Passed", stage="final")
        wait_for(lambda: status(emulator, "spare-now").get("phase") == "Done", what="the request done")
    assert labels(emulator, "gpu-n")[KEYS.check_status] == "Passed" and KEYS.request not in labels(emulator, "gpu-n")
    assert status(emulator, "spare-now")["results"] == {"Passed": 1} and len(emulator.jobs) == 1  # checked once
