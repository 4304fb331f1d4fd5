"""The run configuration: resolved once, written by dhc run, loaded by the pytest child; bad files are named."""

import json

import pytest

from dhc.errors import ConfigError, DhcError, UsageError
from dhc.report.folder import CONFIG_NAME
from dhc.runconfig import RunConfig, limits_of
from dhc.runconfig.resolve import RunRequest, resolve, validate
from dhc.settings import Settings

PASSING = """
    import pytest

    @pytest.mark.check("stress.inventory")
    def test_inventory(dhc_check, dhc_devices):
        dhc_check.record("cpu_cores", 2, "count", dhc_devices[0])
"""


@pytest.fixture
def configured(tmp_path):
    """A run configured as dhc run does, for a cpu instance named on the command line."""
    request = RunRequest("--", instance_type="cpu", instance_id="i-0aaaabbbbccccdddd", out=str(tmp_path / "out"),
                         checks=("stress.inventory",), sinks=("termination",), command=("dhc", "run"),
                         by_dhc_run=True)
    settings = Settings.from_env({"DHC_IMDS": "off", "DHC_TERMINATION_LOG": str(tmp_path / "termination-log")})
    config, limits = resolve(request, settings)
    (tmp_path / "out").mkdir()
    return config, limits


def test_a_config_round_trips_through_its_file(configured, tmp_path):
    config, limits = configured
    path = config.save(tmp_path / "out")
    assert path.name == CONFIG_NAME and json.loads(path.read_text())["version"] == 1
    loaded = RunConfig.load(path)
    assert loaded == config
    assert loaded.identity.instance_id.value == "i-0aaaabbbbccccdddd" and loaded.identity.instance_id.source == "cli"
    assert limits_of(loaded).to_dict() == limits.to_dict()  # the same limits, derived again from the same file


def test_relative_paths_become_absolute_for_the_child_that_runs_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, _ = resolve(RunRequest("--", instance_type="cpu", out="rel"), Settings.from_env({"DHC_IMDS": "off"}))
    assert config.out == str(tmp_path / "rel") and config.thresholds.startswith("/")


def test_relative_path_settings_become_absolute_and_bare_tool_names_stay_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"DHC_IMDS": "off", "DHC_TERMINATION_LOG": "term.log", "DHC_KERNEL_LOG": "kmsg", "DHC_DCGMI": "bin/dcgmi",
           "DHC_FI_INFO": "fi_info", "DHC_SYS_INFINIBAND": "sys/ib", "DHC_NCCL_TESTS": "./all_reduce_perf",
           "DHC_OUT": "runs"}
    config, _ = resolve(RunRequest("--", instance_type="cpu"), Settings.from_env(env))
    got = config.settings
    assert (got.termination_log, got.kernel_log, got.sys_infiniband, got.out_dir) == (
        str(tmp_path / "term.log"), str(tmp_path / "kmsg"), str(tmp_path / "sys/ib"), str(tmp_path / "runs"))
    assert (got.dcgmi, got.nccl_tests) == (str(tmp_path / "bin/dcgmi"), str(tmp_path / "all_reduce_perf"))
    assert (got.fi_info, got.nv_hostengine) == ("fi_info", "nv-hostengine")  # names looked up on PATH
    assert config.out == str(tmp_path / "runs")


@pytest.mark.parametrize(("edit", "key", "words"), [
    (lambda d: d["settings"].update(nodes=0), "settings.nodes", "expected a whole number from 1 to 4096, got 0"),
    (lambda d: d["settings"].update(node_index=7), "settings.node_index",
     "settings.node_index=7 is not a node of settings.nodes=1 (expected 0 to 0)"),
    (lambda d: d["settings"].update(imds_mode="bogus"), "settings.imds_mode", "expected auto, on or off, got 'bogus'"),
    (lambda d: d["settings"].update(dcgm_start_hostengine="sometimes"), "settings.dcgm_start_hostengine",
     "expected auto, never or always, got 'sometimes'"),
    (lambda d: d["settings"].update(watchdog_grace_s=-5.0), "settings.watchdog_grace_s",
     "expected a number of seconds above 0 and at most 86400, got -5.0"),
    (lambda d: d["settings"].update(collect_timeout_s=float("nan")), "settings.collect_timeout_s",
     "expected a number of seconds above 0 and at most 86400, got nan"),
    (lambda d: d["settings"].update(rendezvous="node 0"), "settings.rendezvous", "expected HOST:PORT"),
    (lambda d: d["identity"].update(zone="x"), "identity.zone", "unknown key (not one of the identity fields)"),
    (lambda d: d["settings"].update(termination_lgo="/x"), "settings.termination_lgo",
     "unknown key (not one of the settings fields)"),
])
def test_a_saved_config_is_checked_by_the_settings_own_validation(configured, tmp_path, edit, key, words):
    """The same ``dhc.settings.problem`` that checks the environment checks a carried run-config.json."""
    config, _ = configured
    path = config.save(tmp_path / "out")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # json writes NaN as NaN, which json reads back
    with pytest.raises(ConfigError) as caught:
        RunConfig.load(path)
    assert caught.value.key == key and str(caught.value).startswith(f"{path}: {key}: "), str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize(("edit", "key", "words"), [
    (lambda d: d.pop("profile"), "profile", "missing"),
    (lambda d: d.update(workers=-1), "workers", "expected an integer >= 0, got -1"),
    (lambda d: d.update(checks="stress.inventory"), "checks", "expected a list, got 'stress.inventory'"),
    (lambda d: d.update(checks=["stress.gemm", 3]), "checks", "[1]: expected str, got '3'"),
    (lambda d: d.update(profile="slow"), "profile", "expected one of quick, full, got 'slow'"),
    (lambda d: d.update(checks=["stress.gmem"]), "checks", "unknown check id 'stress.gmem'"),
    (lambda d: d.update(sinks=["s3"]), "sinks", "expected one of cloudwatch, kubernetes, termination, got 's3'"),
    (lambda d: d["identity"].pop("region"), "identity", "region: missing"),
    (lambda d: d.update(version=2), "version", "expected 1, got 2"),
    (lambda d: d.update(profle="full"), "profle", "unknown key; expected one of version, run_id"),
])
def test_a_bad_config_names_its_file_and_key(configured, tmp_path, edit, key, words):
    config, _ = configured
    data = config.to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        RunConfig.load(path)
    assert caught.value.key == key and str(caught.value).startswith(f"{path}: {key}: ") and words in str(caught.value)


def test_a_config_that_is_not_json_or_missing_is_named(tmp_path):
    (tmp_path / "torn.json").write_text('{"version": 1, "run_')
    with pytest.raises(ConfigError, match=r"torn\.json: not a JSON run configuration"):
        RunConfig.load(tmp_path / "torn.json")
    with pytest.raises(ConfigError, match=r"none\.json: cannot read the run configuration"):
        RunConfig.load(tmp_path / "none.json")


def test_thresholds_changed_after_configuring_are_refused(configured, tmp_path, thresholds_file):
    path = thresholds_file()
    config, _ = resolve(RunRequest("--", instance_type="cpu", thresholds=str(path), out=str(tmp_path / "o")),
                        Settings.from_env({"DHC_IMDS": "off"}))
    path.write_text(path.read_text() + "\n# edited\n")
    with pytest.raises(DhcError, match=f"{path}: changed since the run was configured"):
        limits_of(config)


@pytest.mark.parametrize("flag", ["--", "--dhc-"])
@pytest.mark.parametrize(("request_", "words"), [
    ({"profile": "slow"}, "profile: expected one of quick, full, got 'slow'"),
    ({"suites": ("Stress",)}, "suite: expected one of InstanceStress, InstanceConnectivity, got 'Stress'"),
    ({"checks": ("stress.gmem",)}, "check: unknown check id 'stress.gmem'; known: "),
    ({"inject": "gemm-nope"}, "inject: expected one of gemm-bitflip"),
    ({"stage": "last"}, "stage: expected one of final, stress, got 'last'"),
])
def test_each_option_is_validated_once_in_the_words_of_the_command(flag, request_, words):
    with pytest.raises(UsageError) as caught:
        validate(RunRequest(flag, **request_))
    assert str(caught.value).startswith(f"{flag}{words}")


# -- the child loads the file and resolves nothing again ------------------------------------------------
def test_the_child_loads_the_config_and_never_resolves_again(configured, pytester, monkeypatch, tmp_path):
    config, _ = configured
    out = tmp_path / "out"
    path = config.save(out)
    (out / "pytest.log").write_text("dhc run's child writes here\n")  # dhc run owns it, and has cleaned
    pytester.makeconftest('pytest_plugins = ["dhc.plugin"]\n')
    pytester.makepyfile(test_a=PASSING)
    # discovery that would answer differently, and a resolver that must not be called at all
    monkeypatch.setenv("DHC_INSTANCE_ID", "i-0eeeeffff00001111")
    monkeypatch.setenv("DHC_INSTANCE_TYPE", "p5.48xlarge")
    monkeypatch.setenv("DHC_TERMINATION_LOG", str(tmp_path / "elsewhere"))  # the config's settings win
    monkeypatch.setenv("DHC_DCGMI", "/nowhere/dcgmi")

    def resolving_again(*args, **kwargs):
        raise AssertionError("the child resolved the run again")

    monkeypatch.setattr("dhc.runconfig.resolve.resolve_identity", resolving_again)
    monkeypatch.setattr("dhc.plugin.session.resolve", resolving_again)
    asked = []
    monkeypatch.setattr("dhc.plugin.session.software_versions", lambda dcgmi: asked.append(dcgmi) or {})
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--dhc-config={path}",
                                           "--dhc-instance-type=p9.xlarge")  # ignored: the file configures
    assert outcome.ret == 0, outcome.stdout.str()
    report = json.loads((out / "report.json").read_text())
    assert report["instance"]["instance_id"] == {"value": "i-0aaaabbbbccccdddd", "source": "cli"}
    assert report["instance"]["instance_type"]["value"] == "cpu"
    assert (report["run"]["run_id"], report["run"]["argv"]) == (config.run_id, ["dhc", "run"])
    assert (out / "pytest.log").read_text() == "dhc run's child writes here\n"  # the folder is dhc run's
    assert "held an earlier run" not in outcome.stdout.str()
    assert not (tmp_path / "termination-log").exists()  # dhc run's child delivers nothing: its parent, after trust
    assert not (tmp_path / "elsewhere").exists()
    assert asked == ["dcgmi"]  # nor does the child: the config's dcgmi, not DHC_DCGMI's


def test_a_config_carries_its_settings(configured, tmp_path):
    config, _ = configured
    assert config.to_dict()["settings"]["termination_log"] == str(tmp_path / "termination-log")


def test_a_bad_config_file_stops_pytest_with_its_name_and_key(configured, pytester, tmp_path):
    config, _ = configured
    data = config.to_dict() | {"stage": "last"}
    path = tmp_path / "out" / CONFIG_NAME
    path.write_text(json.dumps(data))
    pytester.makeconftest('pytest_plugins = ["dhc.plugin"]\n')
    pytester.makepyfile(test_a=PASSING)
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--dhc-config={path}")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    outcome.stderr.fnmatch_lines([f"*{path}: stage: expected one of final, stress, got 'last'*"])
    assert "Traceback" not in outcome.stderr.str() and not (tmp_path / "out" / "report.json").exists()
