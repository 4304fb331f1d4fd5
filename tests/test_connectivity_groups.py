"""Connectivity groups end to end: the controller, over HTTP, against the emulated API server.

Bounded groups by topology, and a group that lost a member (deleted, NotReady, Failed) re-forming
without it while the lost node gets its own next try. Tests wait for a positive signal.
"""

import copy
import json

import pytest

pytest.importorskip("kubernetes", reason="the controller needs the kubernetes client (dhc[kubernetes])")

from k8s_emulator import Emulator, PatchTestFailed, _reply, apply_json_patch  # noqa: E402
from test_controller import KEYS, P5, P5_STATUS, Running, annotations, batches, finish, labels, wait_for  # noqa: E402

from dhc import thresholds  # noqa: E402
from dhc.controller import reconcile  # noqa: E402
from dhc.controller.cache import Store  # noqa: E402
from dhc.controller.jobs import NODES_ANNOTATION, TOPOLOGY_ANNOTATION, JobSettings, job_name  # noqa: E402
from dhc.controller.loop import Controller, ControllerSettings  # noqa: E402
from dhc.controller.topology import LAYERS, Grouping  # noqa: E402


@pytest.fixture
def emulator():
    with Emulator() as api:
        api.routes.append(lambda handler, method, parts, query, body: delete_service(api, handler, method, parts))
        yield api


def delete_service(emulator, handler, method, parts):
    """DELETE /api/v1/namespaces/<ns>/services/<name>: 200 and gone, 404 when there is none."""
    if method != "DELETE" or parts[:3] != ["api", "v1", "namespaces"] or len(parts) != 6 or parts[4] != "services":
        return False
    with emulator.lock:
        service = emulator.services.pop(parts[5], None)
    _reply(handler, 404 if service is None else 200, {"kind": "Status", "code": 404} if service is None else service)
    return True


def on_switch(switch: str) -> dict[str, str]:
    return dict(P5, **{LAYERS[0]: "nn-1", LAYERS[1]: "nn-2", LAYERS[2]: switch})


def members(emulator, batch):
    return emulator.jobs[batch]["metadata"]["annotations"][NODES_ANNOTATION].split(",")


def pass_stress(emulator, names):
    wait_for(lambda: all(job_name(n, 1, 1) in emulator.jobs for n in names), what="the stress Jobs")
    for name in names:
        finish(emulator, job_name(name, 1, 1), name, "Passed")


def set_ready(emulator, name, status, reason):
    """The kubelet stops reporting (node lifecycle controller: Ready Unknown) or reports NotReady."""
    with emulator.lock:
        node = copy.deepcopy(emulator.nodes[name])
        node["status"]["conditions"] = [{"type": "Ready", "status": status, "reason": reason}]
        emulator._record("nodes", "MODIFIED", node)
        emulator.nodes[name] = node


def test_groups_are_bounded_cross_leaves_and_never_mix_layer2_domains(emulator):
    spots = {"a0": ("nn-2", "sw-a"), "a1": ("nn-2", "sw-a"), "a2": ("nn-2", "sw-c"),
             "b0": ("nn-3", "sw-b"), "b1": ("nn-3", "sw-b")}
    for name, (l2, switch) in spots.items():
        emulator.add_node(name, dict(on_switch(switch), **{LAYERS[1]: l2}), status=P5_STATUS)
    with Running(emulator, batch_window_s=5.0, grouping=Grouping(size=3)):  # nn-2 forms full, nn-3 at the window
        pass_stress(emulator, list(spots))
        wait_for(lambda: len(batches(emulator)) == 2, what="two connectivity groups")
        groups = sorted(sorted(members(emulator, b)) for b in batches(emulator))
    assert groups == [["a0", "a1", "a2"], ["b0", "b1"]]
    assert sorted(emulator.jobs[b]["metadata"]["annotations"][TOPOLOGY_ANNOTATION] for b in batches(emulator)) == [
        "nn-1/nn-2/sw-a,nn-1/nn-2/sw-c", "nn-1/nn-3/sw-b"]  # across nn-2's leaves: its spine is in the test
    for batch in batches(emulator):
        job = emulator.jobs[batch]
        assert job["spec"]["completions"] == len(members(emulator, batch)) <= 3


def test_starting_a_group_patches_its_nodes_from_the_cache_without_reading_them(emulator):
    names = ["c0", "c1", "c2"]
    for name in names:
        emulator.add_node(name, on_switch("sw-c"), status=copy.deepcopy(P5_STATUS),
                          annotations={KEYS.generation: "1", KEYS.attempts: "1", KEYS.stage: "stress-passed"})
    run = Running(emulator)
    for name in names:  # the cache as the node watch fills it: current
        run.controller.nodes[name] = copy.deepcopy(emulator.nodes[name])
    before = len(emulator.requests)
    run.controller._start_batch("p5.48xlarge", "quick", names)
    calls = [(method, path) for method, path, _ in emulator.requests[before:]]
    assert [m for m, p in calls if "/nodes/" in p] == ["PATCH"] * 3 and not [m for m, _ in calls if m == "GET"]
    assert all(annotations(emulator, n)[KEYS.stage] == "connectivity" for n in names)
    stale = copy.deepcopy(emulator.nodes["c0"])  # another writer moves c0 on; the cache lags behind
    emulator.set_node_labels("c0", {"example.com/other": "writer"})
    run.controller.nodes["c0"] = stale
    run.controller._start_batch("p5.48xlarge", "quick", ["c0"])  # the guard fails, the node is read, patched
    assert labels(emulator, "c0")["example.com/other"] == "writer" and \
        annotations(emulator, "c0")[KEYS.batch] == run.controller.nodes["c0"]["metadata"]["annotations"][KEYS.batch]


# The stress results of a test's nodes reach the batcher one by one, over HTTP, on a loaded machine: a test
# about one group lets it form when full (three) or keeps a node that is early waiting for its peer, so that
# a late arrival never splits the group (a short window would start the early nodes without it).
FULL_AT_THREE = Grouping(size=3)  # with a window of seconds: forms the moment the third arrives
PAIRS_WAIT = Grouping(alone_after_s=30)  # a pair forms after the short window; a node alone waits for its peer


def group_formed(emulator, names):
    """Pass the stress stage of ``names`` and wait until they are one group, each node marked in it."""
    pass_stress(emulator, names)
    wait_for(lambda: len(batches(emulator)) == 1, what=f"the group of {len(names)}")
    [first] = batches(emulator)
    wait_for(lambda: all(annotations(emulator, n).get(KEYS.batch) == first for n in names), what="in the group")
    return first


@pytest.mark.parametrize("lose", ["deleted", "NotReady", "Failed"])
def test_a_group_that_lost_a_member_while_running_re_forms_without_it(emulator, lose):
    names = ["x0", "x1", "x2"]
    for name in names:
        emulator.add_node(name, on_switch("sw-x"), status=copy.deepcopy(P5_STATUS))
    with Running(emulator, batch_window_s=30, grouping=FULL_AT_THREE):
        first = group_formed(emulator, names)
        if lose == "deleted":
            emulator.delete_node("x2")
        elif lose == "NotReady":
            set_ready(emulator, "x2", "Unknown", "NodeStatusUnknown")
        else:
            emulator.set_node_labels("x2", {KEYS.check_status: "Failed"})
        wait_for(lambda: first not in emulator.jobs and first not in emulator.services,
                 what="the broken group's Job and Service deleted")
        wait_for(lambda: len(batches(emulator)) == 1, what="the survivors' new group")
        [second] = batches(emulator)
        assert sorted(members(emulator, second)) == ["x0", "x1"] and second.endswith("-a1")  # the same try
        wait_for(lambda: all(annotations(emulator, n).get(KEYS.batch) == second for n in ("x0", "x1")),
                 what="the survivors in their new group")
    for name in ("x0", "x1"):
        assert annotations(emulator, name)[KEYS.attempts] == "1" and labels(emulator, name)[KEYS.check_status] == \
            "InProgress"
    regroups = [e for e in emulator.events if e["reason"] == "DeepHealthCheckRegroup"]
    assert {e["involvedObject"]["name"] for e in regroups} == {"x0", "x1"}
    assert f"connectivity group {first} lost a member (x2: " in regroups[0]["message"]
    if lose == "NotReady":  # its own next try, and no group while NotReady
        assert annotations(emulator, "x2")[KEYS.attempts] == "2"
        assert f"it was lost from connectivity group {first}: the node is NotReady (Ready Unknown" in \
            annotations(emulator, "x2")[KEYS.reasons]
    if lose == "Failed":
        assert labels(emulator, "x2")[KEYS.check_status] == "Failed"


def change_while_the_reply_is_on_its_way(emulator, run, name, change, seen):
    """The API server applies the batcher's patch of ``name`` into the group, then another writer
    changes the node (``change``) and the watch delivers it (``seen(cache)``) before the patch's reply,
    now older than the cache, reaches the batcher: what a slow reply on a loaded controller meets."""
    def route(handler, method, parts, query, body):
        if method != "PATCH" or parts != ["api", "v1", "nodes", name] or not route.armed:
            return False
        with emulator.lock:
            try:
                patched = apply_json_patch(emulator.nodes[name], json.loads(body))
            except PatchTestFailed:
                return False  # the emulator answers the stale guard itself
            if patched["metadata"]["annotations"].get(KEYS.stage) != "connectivity":
                return False
            route.armed = False
            emulator._record("nodes", "MODIFIED", patched)
            emulator.nodes[name], patched = patched, copy.deepcopy(patched)  # the reply: as it was written
        change()
        wait_for(lambda: seen(run.controller.nodes), what="the watch delivering the other writer's change")
        _reply(handler, 200, patched)
        return True
    route.armed = True
    emulator.routes.append(route)


@pytest.mark.parametrize("lose", ["deleted", "NotReady", "Failed"])
def test_a_member_lost_while_its_patch_into_the_group_is_answered_still_dissolves_the_group(emulator, lose):
    names = ["x0", "x1", "x2"]
    for name in names:
        emulator.add_node(name, on_switch("sw-x"), status=copy.deepcopy(P5_STATUS))
    changes = {"deleted": (lambda: emulator.delete_node("x2"), lambda cache: "x2" not in cache),
               "NotReady": (lambda: set_ready(emulator, "x2", "Unknown", "NodeStatusUnknown"),
                            lambda cache: cache["x2"]["status"]["conditions"][0]["status"] == "Unknown"),
               "Failed": (lambda: emulator.set_node_labels("x2", {KEYS.check_status: "Failed"}),
                          lambda cache: cache["x2"]["metadata"]["labels"][KEYS.check_status] == "Failed")}
    with Running(emulator, batch_window_s=30, grouping=FULL_AT_THREE) as run:
        change_while_the_reply_is_on_its_way(emulator, run, "x2", *changes[lose])
        pass_stress(emulator, names)
        wait_for(lambda: len(batches(emulator)) == 1, what="the group of three")
        [first] = batches(emulator)
        wait_for(lambda: first not in emulator.jobs and first not in emulator.services,
                 what="the broken group's Job and Service deleted")
        wait_for(lambda: first not in batches(emulator) and len(batches(emulator)) == 1, what="the survivors' new group")
        [second] = batches(emulator)
        assert sorted(members(emulator, second)) == ["x0", "x1"] and second.endswith("-a1")
    assert (lose == "deleted") == ("x2" not in run.controller.nodes)  # the late reply revived nothing
    regroups = [e for e in emulator.events if e["reason"] == "DeepHealthCheckRegroup"]
    assert {e["involvedObject"]["name"] for e in regroups} == {"x0", "x1"}
    assert f"connectivity group {first} lost a member (x2: " in regroups[0]["message"]


def test_the_cache_never_takes_an_object_back_in_time():
    def node(version, status):
        return {"metadata": {"name": "n", "resourceVersion": version, "labels": {"s": status}}}
    store, heard = Store(), []
    store.listen(lambda name, value: heard.append(value and value["metadata"]["labels"]["s"]))
    store["n"] = node("7", "Failed")  # the watch's event
    store["n"] = node("5", "InProgress")  # a patch's reply that was on its way meanwhile
    assert store["n"]["metadata"]["labels"]["s"] == "Failed" and heard == ["Failed"]
    store["n"] = node("7", "Failed again")  # the same version: written (a re-read of the same object)
    store["n"] = node("9", "Passed")
    assert store["n"]["metadata"]["labels"]["s"] == "Passed"
    store.pop("n")
    store["n"] = node("9", "Passed")  # a late write after the deletion: not revived
    assert "n" not in store and heard == ["Failed", "Failed again", "Passed", None]
    store["n"] = node("12", "new")  # created again under the same name: a newer version
    store["n"] = dict(node("opaque-a", "opaque"))  # not an integer: not compared
    assert store["n"]["metadata"]["resourceVersion"] == "opaque-a"
    store.replace({})
    store["n"] = node("3", "listed again")  # a re-list is the truth: what was removed before it is forgotten
    assert store["n"]["metadata"]["labels"]["s"] == "listed again"


def test_a_not_ready_candidate_joins_no_group_and_the_rest_form_without_it(emulator):
    names = ["y0", "y1", "y2"]
    for name in names:
        emulator.add_node(name, on_switch("sw-y"), status=copy.deepcopy(P5_STATUS))
    with Running(emulator, batch_window_s=0.3, grouping=Grouping(alone_after_s=5.0)):
        wait_for(lambda: all(job_name(n, 1, 1) in emulator.jobs for n in names), what="the stress Jobs")
        set_ready(emulator, "y2", "False", "KubeletNotReady")
        pass_stress(emulator, names)
        wait_for(lambda: batches(emulator), what="a group")
        assert [sorted(members(emulator, b)) for b in batches(emulator)] == [["y0", "y1"]]
        wait_for(lambda: annotations(emulator, "y2").get(KEYS.stage) == "stress-passed", what="y2 waiting")
        set_ready(emulator, "y2", "True", "KubeletReady")
        wait_for(lambda: len(batches(emulator)) == 2, what="y2 in a group once Ready (alone after the wait)")
        assert sorted(members(emulator, b) for b in batches(emulator)) == [["y0", "y1"], ["y2"]]


class PodLister:
    """The one API call ``regrouped`` may make: the group Job's pods (none here), recorded."""

    def __init__(self):
        self.asked = []

    def list_pods(self, namespace, label_selector, field_selector=""):
        self.asked.append(label_selector)
        return []


def controller_with(nodes, job):
    settings = ControllerSettings(jobs=JobSettings(namespace="dhc", image="dhc-node:test"))
    controller = Controller(PodLister(), thresholds.load(), settings)  # type: ignore[arg-type]
    for node in nodes:
        controller.nodes[node["metadata"]["name"]] = node
    controller.jobs[job["metadata"]["name"]] = job
    return controller


def a_node(name, **status):
    return {"metadata": {"name": name, "labels": dict(P5), "annotations": {}}, "status": status}


def test_a_group_job_that_ended_after_losing_a_member_gives_the_survivors_the_same_try():
    job = {"metadata": {"name": "dhc-fabric-abc-a1", "namespace": "dhc", "annotations": {NODES_ANNOTATION: "s0,s1,s2"}}}
    ended = reconcile.Decision(reconcile.ENDED, 1, 1, "BackoffLimitExceeded", "dhc-fabric-abc-a1", reconcile.REBATCH)
    gone = controller_with([a_node("s0"), a_node("s1")], job)  # s2 was deleted
    again = gone.regrouped("s0", ended)
    assert again is not None and (again.kind, again.attempt) == (reconcile.REBATCH, 1)
    assert "lost a member (s2: the node was deleted); re-forming without it, this try not counted" in again.reason
    whole = controller_with([a_node("s0"), a_node("s1"), a_node("s2")], job)
    assert whole.regrouped("s0", ended) is None  # nobody lost, no pod died first: an ordinary try, counted
    assert whole.kube.asked == ["batch.kubernetes.io/job-name=dhc-fabric-abc-a1"] and gone.kube.asked == []
    timed_out = dict(job, status={"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]})
    late = controller_with([a_node("s0"), a_node("s1"), a_node("s2")], timed_out)
    assert late.regrouped("s0", ended) is None and late.kube.asked == []  # ran out of time as a whole: no culprit
    down = a_node("s0", conditions=[{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}])
    assert controller_with([down, a_node("s1")], job).regrouped("s0", ended) is None  # lost itself: its own try


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), [
    (["--group-size", "4", "--min-group-size", "5"], "connectivity group size 4 and minimum 5: expected 1 <= minimum"),
    (["--group-size", "0"], "argument --group-size: '0': expected a whole number of at least 1"),
])
def test_the_controller_refuses_impossible_group_options_before_it_touches_the_cluster(args, expected):
    from dhc_process import dhc, no_traceback

    proc = dhc("controller", "--image", "dhc-node:1.0", "--metrics-port", "0", *args, timeout=60)
    no_traceback(proc)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


def ended_pod(emulator, job, node, at, message_text=None, code=1, reason="Error"):
    """A pod of the group's Job that ended at ``at`` (the kubelet's finishedAt)."""
    pod = emulator.run_pod(job, node, message_text, code, reason)
    with emulator.lock:
        emulator.pods[pod]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = at
    return pod


def test_a_group_whose_one_pod_died_first_re_forms_without_that_node_and_charges_it_alone(emulator):
    from test_controller import document

    from dhc.k8s import message

    names = ["z0", "z1", "z2"]
    for name in names:
        emulator.add_node(name, on_switch("sw-z"), status=copy.deepcopy(P5_STATUS))
    with Running(emulator, batch_window_s=5, grouping=FULL_AT_THREE):  # an ended Job's survivors wait a window
        first = group_formed(emulator, names)
        ended_pod(emulator, first, "z0", "2026-11-30T10:00:00Z", None, 137, "OOMKilled")  # died on its own
        peer_lost = message.encode(document("Incomplete"), "final")  # the others saw their peer go
        for name in ("z1", "z2"):
            ended_pod(emulator, first, name, "2026-11-30T10:00:07Z", peer_lost, message.EXIT_CODES["Incomplete"])
        emulator.finish_job(first, succeeded=False, reason="BackoffLimitExceeded", message="Job has reached the "
                            "specified backoff limit")
        wait_for(lambda: len(batches(emulator)) == 2, what="the survivors' new group")
        second = next(b for b in batches(emulator) if b != first)
        assert sorted(members(emulator, second)) == ["z1", "z2"] and second.endswith("-a1")  # the same try
        wait_for(lambda: annotations(emulator, "z0").get(KEYS.attempts) == "2", what="z0's own next try")
    assert "its pod" in annotations(emulator, "z1")[KEYS.reasons] and \
        "exited 137 (OOMKilled) without a verdict, first in its group" in annotations(emulator, "z1")[KEYS.reasons]
    assert annotations(emulator, "z1")[KEYS.attempts] == "1" and "z0" not in members(emulator, second)


def test_first_deaths_name_the_pod_that_died_first_on_its_own_and_nothing_when_it_cannot_be_told():
    from dhc.controller.batches import first_deaths

    job = {"metadata": {"name": "g", "uid": "u", "annotations": {NODES_ANNOTATION: "a,b,c"}}}

    def pod(node, at, code=1, text=None, owner="u"):
        ended = {"exitCode": code, "reason": "Error", "finishedAt": at} | ({"message": text} if text else {})
        return {"metadata": {"name": f"g-{node}", "ownerReferences": [{"uid": owner, "controller": True}]},
                "spec": {"nodeName": node}, "status": {"containerStatuses": [{"name": "dhc", "state": {
                    "terminated": ended}}]}}

    t0, t1 = "2026-11-30T10:00:00Z", "2026-11-30T10:00:09Z"
    assert list(first_deaths([pod("a", t0), pod("b", t1), pod("c", t1, 3, "verdict")], job)) == ["a"]
    assert first_deaths([pod("a", t0), pod("b", t0), pod("c", t0)], job) == {}  # all at once: the group failed
    assert first_deaths([pod("a", "soon"), pod("b", t1)], job) == {}  # a time that cannot be read
    assert first_deaths([pod("a", t0, owner="other"), pod("b", t1, 0)], job) == {}  # not its pod; a clean exit


def test_first_deaths_name_nobody_when_another_died_in_the_same_or_the_next_second():
    from dhc.controller.batches import first_deaths

    job = {"metadata": {"name": "g", "uid": "u", "annotations": {NODES_ANNOTATION: "a,b,c,d"}}}

    def pod(node, at):
        return {"metadata": {"name": f"g-{node}", "ownerReferences": [{"uid": "u", "controller": True}]},
                "spec": {"nodeName": node}, "status": {"containerStatuses": [{"name": "dhc", "state": {
                    "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": at}}}]}}

    t0, t1, t2, t9 = (f"2026-11-30T10:00:0{s}Z" for s in (0, 1, 2, 9))
    three = [pod("a", t0), pod("b", t0), pod("c", t0), pod("d", t9)]  # d may be the one that hung and broke them
    assert first_deaths(three, job) == {}  # nobody charged alone, nobody kept apart: every try counts
    assert first_deaths([pod("a", t0), pod("b", t1)], job) == {}  # a second apart: either may have been first
    assert list(first_deaths([pod("a", t0), pod("b", t2), pod("c", t9)], job)) == ["a"]  # clearly first
    assert list(first_deaths([pod("b", t0)], job)) == ["b"]  # the only one that died on its own


# -- the batcher's error model, its survival, and its dirty flag --------------------------------------
FORBIDDEN_SERVICES = ('services is forbidden: User "system:serviceaccount:dhc:dhc-controller" cannot create resource '
                      '"services" in API group "" in the namespace "dhc"')


class RecordedBackoff:
    """A Backoff that keeps the delays it gave (no jitter)."""

    def __new__(cls, base_s, cap_s):
        from dhc.controller.workqueue import Backoff

        class Recorded(Backoff):
            def next(self, name):
                delay = super().next(name)
                self.delays.append(delay)
                return delay

        backoff = Recorded(base_s, cap_s, jitter=lambda: 1.0)
        backoff.delays = []
        return backoff


def test_a_forbidden_group_service_is_reported_once_and_not_tried_again_until_the_candidates_change(emulator, caplog):
    names = ["f0", "f1"]
    for name in names:
        emulator.add_node(name, on_switch("sw-f"), status=copy.deepcopy(P5_STATUS))
    forbidden = emulator.inject("POST", "/api/v1/namespaces/dhc/services", 403, message=FORBIDDEN_SERVICES)
    refused = lambda: [e for e in emulator.events if e["reason"] == "DeepHealthCheckApiRefused"]  # noqa: E731
    with Running(emulator, batch_window_s=0.3, grouping=PAIRS_WAIT) as run:
        pass_stress(emulator, names)
        wait_for(lambda: len(refused()) == 2, what="a Warning Event on each of the group's nodes")
        run.settled("f0", reconcile.AWAIT_BATCH, times=6)  # three seconds of resyncs every 0.5 s
        assert forbidden["hits"] == 1 and len(refused()) == 2 and not batches(emulator)
        assert {e["involvedObject"]["name"] for e in refused()} == {"f0", "f1"}
        assert all(e["type"] == "Warning" and FORBIDDEN_SERVICES in e["message"] and "create service dhc-fabric-"
                   in e["message"] and "not tried again until its candidates change" in e["message"] for e in refused())
        logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(logged) == 1 and "connectivity group of f0,f1" in logged[0] and FORBIDDEN_SERVICES in logged[0]
        assert run.controller.snapshot().tally[("errors", "permanent")] == 1
        emulator.heal(forbidden)  # RBAC fixed; a third node's stress passes: the candidates change
        emulator.add_node("f2", on_switch("sw-f"), status=copy.deepcopy(P5_STATUS))
        pass_stress(emulator, ["f2"])
        wait_for(lambda: len(batches(emulator)) == 1, what="the group, once its candidates changed")
        assert sorted(members(emulator, batches(emulator)[0])) == ["f0", "f1", "f2"]


def test_a_server_error_creating_a_group_backs_that_group_off_then_it_starts(emulator):
    names = ["t0", "t1"]
    for name in names:
        emulator.add_node(name, on_switch("sw-t"), status=copy.deepcopy(P5_STATUS))
    failing = emulator.inject("POST", "/api/v1/namespaces/dhc/services", 503, times=12)  # 6 tries per call
    run = Running(emulator, batch_window_s=0.3, grouping=PAIRS_WAIT)
    run.controller.group_holds.backoff = backoff = RecordedBackoff(0.05, 5.0)
    with run:
        pass_stress(emulator, names)
        wait_for(lambda: len(batches(emulator)) == 1, what="the group after two failed tries")
    assert failing["hits"] == 12 and backoff.delays == [0.05, 0.1]  # one group, its delay doubling
    assert run.controller.snapshot().tally[("errors", "temporary")] == 2
    assert not any(e["reason"] == "DeepHealthCheckApiRefused" for e in emulator.events)


def test_an_unexpected_exception_in_the_batcher_is_logged_and_it_still_forms_groups(emulator, caplog):
    names = ["u0", "u1"]
    for name in names:
        emulator.add_node(name, on_switch("sw-u"), status=copy.deepcopy(P5_STATUS))
    run = Running(emulator, batch_window_s=0.3, grouping=PAIRS_WAIT)
    start, raised = run.controller._start_batch, []

    def once(*args):
        if not raised:
            raised.append(args)
            raise KeyError("u1")  # what a member deleted mid-pass raised (self.nodes[n])
        return start(*args)

    run.controller._start_batch = once
    with run:
        pass_stress(emulator, names)
        wait_for(lambda: len(batches(emulator)) == 1, what="a group after the exception")
    assert raised and sorted(members(emulator, batches(emulator)[0])) == names
    [record] = [r for r in caplog.records if "the connectivity batcher failed unexpectedly" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None  # with its stack


def test_a_member_deleted_after_its_group_formed_leaves_the_group_unstarted():
    job = {"metadata": {"name": "dhc-fabric-old-a1", "namespace": "dhc", "annotations": {}}}
    controller = controller_with([a_node("d0")], job)  # d1 was deleted between forming and starting
    controller._start_batch("p5.48xlarge", "quick", ["d0", "d1"])  # the PodLister kube can create nothing
    assert list(controller.jobs) == ["dhc-fabric-old-a1"] and controller.kube.asked == []


def test_a_quiet_cluster_costs_the_batcher_nothing(emulator):
    names = ["q0", "q1"]
    for name in names:
        emulator.add_node(name, on_switch("sw-q"), status=copy.deepcopy(P5_STATUS))
    emulator.add_node("cpu-1", {"node.kubernetes.io/instance-type": "m5.large"})  # a witness, looked at by resyncs
    run = Running(emulator, batch_window_s=0.3, grouping=PAIRS_WAIT)
    form, passes = run.controller._form_batches, []
    run.controller._form_batches = lambda: passes.append(1) or form()
    with run:
        pass_stress(emulator, names)
        wait_for(lambda: len(batches(emulator)) == 1, what="the group")
        wait_for(lambda: all(annotations(emulator, n).get(KEYS.batch) for n in names), what="its nodes marked")

        def quiet():  # three seconds of resyncs without a pass (the group's own watch events may still be arriving)
            before = len(passes)
            run.settled("cpu-1", times=6)
            return len(passes) == before

        wait_for(quiet, timeout=60, what="six resyncs in a row without a batcher pass")
        before = len(passes)
        emulator.add_node("q2", on_switch("sw-q"), status=copy.deepcopy(P5_STATUS))  # a change: looked at again
        pass_stress(emulator, ["q2"])
        wait_for(lambda: len(passes) > before, what="a pass after the change")
