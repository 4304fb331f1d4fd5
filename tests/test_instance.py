"""Instance identity: flags > environment > providerID > IMDSv2 (real HTTP) > local fallback."""

import socket

import pytest
from imds_server import ImdsServer

from dhc.errors import UsageError
from dhc.instance import parse_provider_id, resolve_identity
from dhc.instance.identity import has_nvidia_gpu, local_name
from dhc.instance.imds import looks_like_ec2
from dhc.settings import Settings

P5 = {"instance-id": "i-0123456789abcdef0", "instance-type": "p5.48xlarge", "placement/region": "us-east-2",
      "placement/availability-zone": "us-east-2b"}


@pytest.fixture
def no_gpu(tmp_path):
    """A /proc and /dev with no NVIDIA GPU, so the fallback does not depend on this machine."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "dev").mkdir()
    return {"proc_root": tmp_path / "proc", "dev_root": tmp_path / "dev", "sys_root": tmp_path / "sys"}


def settings(**env):
    """Settings from these variables alone; IMDS is off unless a test names an endpoint. With an endpoint,
    the timeouts leave a loaded machine room (the defaults, 0.5 s a request and 2 s in all, are for a real
    IMDS one hop away); the tests about timing out set their own."""
    if "DHC_IMDS_ENDPOINT" not in env:
        return Settings.from_env({"DHC_IMDS": "off", **env})
    return Settings.from_env({"DHC_IMDS_TIMEOUT_S": "10", "DHC_IMDS_DEADLINE_S": "30", **env})


def values(identity):
    return {k: (v["value"], v["source"]) for k, v in identity.to_dict().items() if k != "notes"}


def test_local_fallback_without_gpu_is_cpu(no_gpu):
    got = values(resolve_identity({}, settings(), **no_gpu))
    assert got["instance_type"] == ("cpu", "no-gpu")
    assert got["instance_id"] == (local_name(socket.gethostname()), "hostname")
    assert got["region"] == (None, "unknown")


def test_gpu_without_a_named_type_stays_unknown(tmp_path, no_gpu):
    (no_gpu["dev_root"] / "nvidia0").touch()
    assert values(resolve_identity({}, settings(), **no_gpu))["instance_type"] == (None, "unknown")


def test_has_nvidia_gpu_reads_the_driver_proc_tree(no_gpu):
    assert not has_nvidia_gpu(no_gpu["proc_root"], no_gpu["dev_root"])
    (no_gpu["proc_root"] / "driver/nvidia/gpus/0000:53:00.0").mkdir(parents=True)
    assert has_nvidia_gpu(no_gpu["proc_root"], no_gpu["dev_root"])


def test_flags_beat_environment_beat_imds(no_gpu):
    with ImdsServer(P5) as imds:
        env = settings(DHC_IMDS_ENDPOINT=imds.endpoint, DHC_INSTANCE_TYPE="p5e.48xlarge", NODE_NAME="node-7")
        got = values(resolve_identity({"instance_id": "i-cli"}, env, **no_gpu))
    assert got["instance_id"] == ("i-cli", "cli")
    assert got["instance_type"] == ("p5e.48xlarge", "env:DHC_INSTANCE_TYPE")
    assert got["node_name"] == ("node-7", "env:NODE_NAME")
    assert got["region"] == ("us-east-2", "imds")
    assert got["availability_zone"] == ("us-east-2b", "imds")


def test_imdsv2_token_then_gets(no_gpu):
    with ImdsServer(P5) as imds:
        got = values(resolve_identity({}, settings(DHC_IMDS_ENDPOINT=imds.endpoint), **no_gpu))
        assert imds.requests[0] == ("PUT", "/latest/api/token")
        assert all(method == "GET" for method, _ in imds.requests[1:])
    assert got["instance_id"] == ("i-0123456789abcdef0", "imds")
    assert got["instance_type"] == ("p5.48xlarge", "imds")


def test_provider_id_beats_imds_and_gives_region(no_gpu):
    with ImdsServer(P5) as imds:
        env = settings(DHC_IMDS_ENDPOINT=imds.endpoint, DHC_PROVIDER_ID="aws:///us-west-2c/i-0fedcba9876543210")
        got = values(resolve_identity({}, env, **no_gpu))
    assert got["instance_id"] == ("i-0fedcba9876543210", "provider-id")
    assert got["availability_zone"] == ("us-west-2c", "provider-id")
    assert got["region"] == ("us-west-2", "provider-id")
    assert got["instance_type"] == ("p5.48xlarge", "imds")


def test_imds_unreachable_falls_back_with_a_note(no_gpu):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    identity = resolve_identity({}, settings(DHC_IMDS_ENDPOINT=f"http://127.0.0.1:{port}"), **no_gpu)
    assert identity.instance_type.value == "cpu"
    assert "token request" in identity.notes[0] and "failed" in identity.notes[0]


def test_imds_slow_times_out_and_falls_back(no_gpu):
    with ImdsServer(P5, delay_s=3) as imds:
        env = settings(DHC_IMDS_ENDPOINT=imds.endpoint, DHC_IMDS_TIMEOUT_S="0.2")
        identity = resolve_identity({}, env, **no_gpu)
    assert identity.instance_type.source == "no-gpu"
    assert "timed out" in identity.notes[0]


def test_imds_refusing_tokens(no_gpu):
    with ImdsServer(P5, token_status=403) as imds:
        identity = resolve_identity({}, settings(DHC_IMDS_ENDPOINT=imds.endpoint), **no_gpu)
    assert "HTTP 403" in identity.notes[0] and identity.instance_id.source == "hostname"


def test_auto_mode_asks_imds_only_on_ec2(tmp_path, no_gpu):
    dmi = tmp_path / "sys/devices/virtual/dmi/id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("QEMU\n")
    assert not looks_like_ec2(tmp_path / "sys")
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    assert looks_like_ec2(tmp_path / "sys")
    (dmi / "sys_vendor").unlink()
    (dmi / "board_asset_tag").write_text("i-0123456789abcdef0\n")
    assert looks_like_ec2(tmp_path / "sys")


def test_auto_mode_without_ec2_evidence_sends_nothing(no_gpu):
    with ImdsServer(P5) as imds:
        env = Settings.from_env({"DHC_IMDS": "auto"})
        env = Settings(**{**vars(env), "imds_endpoint": imds.endpoint})
        resolve_identity({}, env, **no_gpu)
        assert imds.requests == []


@pytest.mark.parametrize(("provider_id", "expected"), [
    ("aws:///us-east-2a/i-0abc1234", ("i-0abc1234", "us-east-2a", "us-east-2")),
    ("aws:///us-west-2-lax-1a/i-0123456789abcdef0", ("i-0123456789abcdef0", "us-west-2-lax-1a", "us-west-2")),
    ("aws:///us-gov-west-1b/i-abcdef01", ("i-abcdef01", "us-gov-west-1b", "us-gov-west-1")),
])
def test_parse_provider_id(provider_id, expected):
    assert parse_provider_id(provider_id) == expected


@pytest.mark.parametrize("bad", ["gce://proj/zone/vm", "aws:///us-east-2a/", "aws://us-east-2a/i-0abc", ""])
def test_parse_provider_id_rejects_others(bad):
    with pytest.raises(ValueError, match="not an AWS providerID"):
        parse_provider_id(bad)


def test_bad_provider_id_is_noted_not_fatal(no_gpu):
    identity = resolve_identity({}, settings(DHC_PROVIDER_ID="kind://docker/kind/node"), **no_gpu)
    assert identity.instance_id.source == "hostname" and "DHC_PROVIDER_ID ignored" in identity.notes[0]


def test_settings_reject_bad_values():
    with pytest.raises(UsageError, match="DHC_IMDS: expected auto, on or off"):
        Settings.from_env({"DHC_IMDS": "maybe"})
    with pytest.raises(UsageError, match="DHC_IMDS_TIMEOUT_S"):
        Settings.from_env({"DHC_IMDS_TIMEOUT_S": "-1"})
    assert Settings.from_env({"AWS_EC2_METADATA_DISABLED": "true", "DHC_IMDS": "on"}).imds_mode == "off"


def test_identity_round_trips():
    identity = resolve_identity({"instance_type": "cpu"}, settings(DHC_CLUSTER="train-a"))
    from dhc.instance import InstanceIdentity
    assert InstanceIdentity.from_dict(identity.to_dict()) == identity
    assert identity.cluster.value == "train-a"


@pytest.mark.parametrize(("flags", "env", "named"), [
    ({"instance_id": "i-0123456789abcdef0\n{\"level\":\"error\"}"}, {}, "--instance-id"),
    ({}, {"DHC_INSTANCE_ID": "node 7"}, "DHC_INSTANCE_ID"),
    ({}, {"DHC_INSTANCE_ID": "x" * 64}, "DHC_INSTANCE_ID"),
    ({"instance_type": "p5.48xlarge\r\nforged"}, {}, "--instance-type"),
    ({}, {"DHC_INSTANCE_TYPE": "P5/48XLARGE"}, "DHC_INSTANCE_TYPE"),
    ({}, {"DHC_INSTANCE_TYPE": "p" * 65}, "DHC_INSTANCE_TYPE"),
    ({}, {"NODE_NAME": "node\n7"}, "NODE_NAME"),
    ({}, {"AWS_REGION": "us-east-2\n"}, "AWS_REGION"),
    ({}, {"DHC_CLUSTER": "a b"}, "DHC_CLUSTER"),
])
def test_a_value_a_person_named_badly_is_refused_naming_where(no_gpu, flags, env, named):
    with pytest.raises(UsageError, match=f"^{named}: expected") as err:
        resolve_identity(flags, settings(**env), **no_gpu)
    assert "\n" not in str(err.value).split("got ")[0]


def test_ec2_form_and_local_names(no_gpu):
    ec2 = resolve_identity({"instance_id": "i-abcdef01"}, settings(), **no_gpu)
    assert ec2.instance_id.value == "i-abcdef01" and ec2.notes == ()
    local = resolve_identity({}, settings(DHC_INSTANCE_ID="node-7"), **no_gpu)
    assert local.instance_id.value == "node-7" and "not EC2's form" in local.notes[0]
    assert "DHC_INSTANCE_ID" in local.notes[0]


@pytest.mark.parametrize("hostname", ["ip-10-0-0-1.ec2.internal", "host with spaces\n", ".", "x" * 80])
def test_the_hostname_fallback_is_a_valid_local_name(hostname):
    from dhc.instance.identity import FORMS
    name = local_name(hostname)
    assert FORMS["instance_id"][0].fullmatch(name) and FORMS["node_name"][0].fullmatch(name)


@pytest.mark.parametrize("bad", ["aws:///us-east-2a/i-0abc", "aws:///us-east-2a/i-0123456789abcdef",
                                 "aws:///us-east-2a/i-0123456789ABCDEF0", "aws:///us-east-2a/i-01234567\n89"])
def test_provider_id_needs_ec2s_instance_id_form(no_gpu, bad):
    identity = resolve_identity({}, settings(DHC_PROVIDER_ID=bad), **no_gpu)
    assert identity.instance_id.source == "hostname" and "DHC_PROVIDER_ID ignored" in identity.notes[0]


def test_imds_answers_that_are_not_ec2s_form_are_dropped_with_a_note(no_gpu):
    hostile = P5 | {"instance-id": "i-0123456789abcdef0\n{\"level\":\"error\"}", "instance-type": "p5 48xlarge"}
    with ImdsServer(hostile) as imds:
        identity = resolve_identity({}, settings(DHC_IMDS_ENDPOINT=imds.endpoint), **no_gpu)
    assert identity.instance_id.source == "hostname" and identity.instance_type.source == "no-gpu"
    notes = " | ".join(identity.notes)
    assert "IMDS instance-id ignored: expected i- and 8 or 17 lowercase hex digits" in notes
    assert "IMDS instance-type ignored" in notes
    assert identity.region.value == "us-east-2"  # what was well-formed is still used


def test_imds_item_that_fails_is_noted(no_gpu):
    partial = {k: v for k, v in P5.items() if k != "instance-type"}
    with ImdsServer(partial) as imds:
        identity = resolve_identity({}, settings(DHC_IMDS_ENDPOINT=imds.endpoint), **no_gpu)
    assert identity.instance_id.value == "i-0123456789abcdef0"
    assert "IMDS instance-type not read: HTTP 404" in identity.notes


def test_imds_trickling_a_byte_at_a_time_is_cut_at_the_total_deadline(no_gpu):
    """Each byte comes within the 0.5 s socket timeout; only the whole-exchange deadline ends it."""
    with ImdsServer(P5, trickle_s=0.4) as imds:
        env = settings(DHC_IMDS_ENDPOINT=imds.endpoint, DHC_IMDS_TIMEOUT_S="0.5", DHC_IMDS_DEADLINE_S="1.5")
        identity = resolve_identity({}, env, **no_gpu)
        assert imds.trickled.is_set()  # the server really was trickling when the client gave up
    assert identity.instance_id.source == "hostname" and identity.instance_type.source == "no-gpu"
    assert "token request" in identity.notes[0] and "deadline" in identity.notes[0]


@pytest.mark.parametrize(("env", "named"), [
    ({"DHC_NODES": "\u00b2"}, "DHC_NODES"),
    ({"DHC_NODES": "\u0662"}, "DHC_NODES"),  # Arabic-Indic two: isdigit() says yes
    ({"DHC_NODES": "0"}, "DHC_NODES"),
    ({"DHC_NODES": "99999999999"}, "DHC_NODES"),
    ({"DHC_NODES": "2", "DHC_NODE_INDEX": "2"}, "DHC_NODE_INDEX=2 is not a node of DHC_NODES=2"),
    ({"DHC_NODES": "2", "JOB_COMPLETION_INDEX": "3"}, "JOB_COMPLETION_INDEX=3 is not a node"),
    ({"DHC_NODE_INDEX": "1"}, "DHC_NODE_INDEX=1 is not a node of DHC_NODES=1"),
    ({"DHC_NODES": "2", "DHC_RENDEZVOUS": "node-0"}, "DHC_RENDEZVOUS: expected HOST:PORT"),
    ({"DHC_NODES": "2", "DHC_RENDEZVOUS": "node-0:0"}, "DHC_RENDEZVOUS"),
    ({"DHC_NODES": "2", "DHC_RENDEZVOUS": "node-0:65536"}, "DHC_RENDEZVOUS"),
    ({"DHC_NODES": "2", "DHC_RENDEZVOUS": "node 0:29500"}, "DHC_RENDEZVOUS"),
    ({"DHC_NODES": "2", "DHC_RENDEZVOUS": "http://node-0:29500"}, "DHC_RENDEZVOUS"),
    ({"DHC_IMDS_TIMEOUT_S": "nan"}, "DHC_IMDS_TIMEOUT_S"),
    ({"DHC_IMDS_DEADLINE_S": "inf"}, "DHC_IMDS_DEADLINE_S"),
    ({"DHC_WATCHDOG_GRACE_S": "1e300"}, "DHC_WATCHDOG_GRACE_S"),
])
def test_settings_refuse_what_would_fail_later(env, named):
    with pytest.raises(UsageError, match=named.replace("(", r"\(")):
        Settings.from_env(env)


@pytest.mark.parametrize("rendezvous", ["127.0.0.1:29500", "dhc-conn-0.dhc-conn:29500", "[::1]:29500", "n:1"])
def test_settings_accept_real_rendezvous(rendezvous):
    got = Settings.from_env({"DHC_NODES": "2", "JOB_COMPLETION_INDEX": "1", "DHC_RENDEZVOUS": rendezvous})
    assert (got.nodes, got.node_index, got.rendezvous) == (2, 1, rendezvous)


@pytest.mark.parametrize(("args", "env", "words"), [
    ([], {"DHC_NODES": "\u00b2"}, "DHC_NODES: expected a whole number from 1 to 4096, got '\u00b2'"),
    ([], {"DHC_NODES": "2", "DHC_NODE_INDEX": "2", "DHC_RENDEZVOUS": "127.0.0.1:29500"},
     "DHC_NODE_INDEX=2 is not a node of DHC_NODES=2"),
    ([], {"DHC_NODES": "2", "DHC_RENDEZVOUS": "127.0.0.1"}, "DHC_RENDEZVOUS: expected HOST:PORT"),
    (["--instance-id", 'i-0123456789abcdef0\n{"level":"error"}'], {}, "--instance-id: expected i- and 8 or 17 hex"),
    (["--instance-type", "cpu\n"], {}, "--instance-type: expected an instance type"),
])
def test_dhc_run_refuses_before_anything_runs(tmp_path, args, env, words):
    import os
    import subprocess
    import sys
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_", "JOB_"))}
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--out", str(tmp_path / "r"), *args],
                          capture_output=True, text=True, timeout=120, env=base | {"DHC_IMDS": "off", **env})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert words in proc.stderr and not (tmp_path / "r").exists()  # refused before the run folder was made
