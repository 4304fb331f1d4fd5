"""thresholds.yaml: the bundled figures, aliases and inheritance, and every kind of broken file."""

from pathlib import Path

import pytest

from dhc import thresholds
from dhc.errors import ConfigError, UnknownInstanceType
from dhc.model import Action, Comparison

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bundled():
    return thresholds.load(ROOT / "thresholds.yaml")


def limit(bundled, instance_type, check, metric):
    return bundled.resolve(instance_type).check(check).limits[metric]


@pytest.mark.parametrize(("instance_type", "check", "metric", "value", "unit"), [
    ("ml.p4d.24xlarge", "connectivity.allreduce", "busbw_intra_node", 228, "GB/s"),
    ("ml.p4d.24xlarge", "stress.gemm", "tflops_bf16", 240, "TFLOP/s"),
    ("ml.p4d.24xlarge", "stress.memtest", "copy_bandwidth", 1.0, "TB/s"),
    ("ml.p4de.24xlarge", "stress.memtest", "copy_bandwidth", 1.17, "TB/s"),
    ("ml.p4de.24xlarge", "connectivity.allreduce", "busbw_inter_node", 70, "GB/s"),
    ("ml.p4de.24xlarge", "connectivity.allreduce", "busbw_intra_node", 228, "GB/s"),  # inherited from p4d
    ("ml.p5.48xlarge", "connectivity.allreduce", "busbw_intra_node", 460, "GB/s"),
    ("ml.p5.48xlarge", "connectivity.allreduce", "busbw_inter_node", 430, "GB/s"),
    ("ml.p5.48xlarge", "stress.gemm", "tflops_bf16", 700, "TFLOP/s"),
    ("ml.p5.48xlarge", "stress.memtest", "copy_bandwidth", 1.9, "TB/s"),
    ("ml.p5e.48xlarge", "connectivity.allreduce", "busbw_intra_node", 431, "GB/s"),
    ("ml.p5en.48xlarge", "stress.memtest", "copy_bandwidth", 2.2, "TB/s"),
    ("ml.p6-b200.48xlarge", "connectivity.allreduce", "busbw_intra_node", 750, "GB/s"),
    ("ml.p6-b200.48xlarge", "stress.gemm", "tflops_bf16", 1480, "TFLOP/s"),
    ("ml.p6-b200.48xlarge", "stress.memtest", "copy_bandwidth", 4.07, "TB/s"),
])
def test_bundled_figures(bundled, instance_type, check, metric, value, unit):
    found = limit(bundled, instance_type, check, metric)
    assert (found.value, found.unit) == (value, unit)
    assert found.source.strip()


@pytest.mark.parametrize(("instance_type", "gpus", "efa", "nvlinks"), [
    ("p4d.24xlarge", 8, 4, 12), ("p4de.24xlarge", 8, 4, 12), ("p5.48xlarge", 8, 32, 18),
    ("p5e.48xlarge", 8, 32, 18), ("p5en.48xlarge", 8, 16, 18), ("p6-b200.48xlarge", 8, 8, 18),
    ("g5.xlarge", 1, 0, 0), ("g5.16xlarge", 1, 0, 0), ("g5.12xlarge", 4, 0, 0), ("g5.48xlarge", 8, 0, 0),
    ("g6.2xlarge", 1, 0, 0), ("g6.24xlarge", 4, 0, 0), ("g6.48xlarge", 8, 0, 0), ("cpu", 0, 0, 0),
])
def test_device_counts_and_derived_limits(bundled, instance_type, gpus, efa, nvlinks):
    resolved = bundled.resolve(instance_type)
    t = resolved.instance_type
    assert (t.gpus, t.efa, t.nvlinks_per_gpu) == (gpus, efa, nvlinks)
    if gpus:
        gpu_count = resolved.check("stress.inventory").limits["gpu_count"]
        assert (gpu_count.comparison, gpu_count.value) == (Comparison.EQUALS, gpus)
    if efa:
        assert resolved.check("connectivity.efa").limits["efa_devices"].value == efa


def test_aliases_resolve_to_one_canonical_type(bundled):
    assert bundled.resolve("p5.48xlarge").instance_type.name == "ml.p5.48xlarge"
    assert bundled.resolve("ml.p5.48xlarge").instance_type.name == "ml.p5.48xlarge"
    assert bundled.resolve("p5.48xlarge").requested_as == "p5.48xlarge"


def test_unknown_limits_are_explicit_not_zero(bundled):
    for name in ("g5.xlarge", "g6.12xlarge"):
        tflops = limit(bundled, name, "stress.gemm", "tflops_bf16")
        assert tflops.value is None and not tflops.calibrated


def test_cpu_profile_covers_every_suite(bundled):
    cpu = bundled.resolve("cpu")
    assert cpu.check("stress.gemm").limits["tflops_fp32"].value > 0
    assert cpu.check("connectivity.allreduce").limits["busbw_intra_node"].value > 0
    assert "DCGM" in cpu.check("stress.dcgm").skip and cpu.check("connectivity.efa").skip


def test_profiles_give_every_check_a_timeout(bundled):
    for profile in ("quick", "full"):
        resolved = bundled.resolve("p5.48xlarge", profile)
        for check in thresholds.CATALOGUE:
            assert resolved.timing(check).timeout_s >= resolved.timing(check).expected_s > 0
    assert bundled.resolve("p5.48xlarge", "full").timing("stress.dcgm").settings["level"] == 4


def test_unknown_instance_type_names_the_known_ones(bundled):
    with pytest.raises(UnknownInstanceType) as err:
        bundled.resolve("p9.xlarge")
    assert "ml.p5.48xlarge" in str(err.value) and "'p9.xlarge'" in str(err.value)


def test_resolved_limits_serialise_with_sources(bundled):
    data = bundled.resolve("p5en.48xlarge").to_dict()
    assert data["instance_type"] == "ml.p5en.48xlarge" and len(data["sha256"]) == 64
    assert data["checks"]["stress.gemm"]["limits"]["tflops_bf16"]["source"]


# -- broken files: each names the file, the line, the key and what was expected ------------------
HEAD = """schema_version: 1
profiles:
  quick: &quick
"""


def write(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def load_error(path) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        thresholds.load(path)
    return err.value


def edited(thresholds_file, edit):
    return load_error(thresholds_file(edit))


def set_limit(doc, instance_type, check, metric, spec):
    doc["instance_types"][instance_type].setdefault("checks", {}).setdefault(check, {}) \
        .setdefault("limits", {})[metric] = spec


def test_invalid_yaml_names_the_line(tmp_path):
    err = load_error(write(tmp_path, "schema_version: 1\nprofiles: [unclosed\n  x: 1\n"))
    assert err.path.endswith("t.yaml") and err.line in (2, 3) and "invalid YAML" in str(err)


def test_missing_file(tmp_path):
    assert "file not found" in str(load_error(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(("text", "line", "words"), [
    ("a: 1\na: 2\n", 2, "duplicate key 'a'"),
    ("a: &x [1]\nb: *x\n", 2, "aliases"),
    ("a: !!python/object:os.system {}\n", 1, "invalid YAML"),
    ("1: x\n", 1, "keys must be text"),
    ("- 1\n- 2\n", None, "expected a mapping at the top"),
])
def test_hostile_yaml_is_refused(tmp_path, text, line, words):
    err = load_error(write(tmp_path, text))
    assert err.line == line and words in str(err)


def test_oversized_file_is_refused(tmp_path):
    err = load_error(write(tmp_path, "a: " + "x" * (2 << 20) + "\n"))
    assert "at most" in str(err)


def test_not_utf8(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_bytes(b"a: \xff\xfe\n")
    assert "UTF-8" in str(load_error(path))


def test_unknown_top_key_names_line_and_key(thresholds_file):
    err = edited(thresholds_file, lambda d: d.update(colour="blue"))
    assert err.key == "colour" and "unknown key" in str(err) and err.line


def test_wrong_unit(thresholds_file):
    err = edited(thresholds_file, lambda d: set_limit(d, "ml.p5.48xlarge", "stress.gemm", "tflops_bf16",
                                                      {"min": 700, "unit": "GB/s", "source": "x"}))
    assert err.key == "instance_types/ml.p5.48xlarge/checks/stress.gemm/limits/tflops_bf16/unit"
    assert "expected a unit of compute (GFLOP/s, TFLOP/s), got 'GB/s'" in str(err)
    assert f"{err.path}:{err.line}:" in str(err)


def test_negative_limit(thresholds_file):
    err = edited(thresholds_file, lambda d: set_limit(d, "cpu", "stress.gemm", "tflops_fp32",
                                                      {"min": -1, "unit": "TFLOP/s", "source": "x"}))
    assert err.key.endswith("tflops_fp32/min") and "expected a value from 0 to 1e+09, got -1" in str(err)


@pytest.mark.parametrize("bad", [".nan", "true", "'fast'"])
def test_limit_value_must_be_a_finite_number(tmp_path, bad):
    text = (ROOT / "thresholds.yaml").read_text().replace(
        "tflops_fp32: {min: 0.002,", f"tflops_fp32: {{min: {bad},")
    err = load_error(write(tmp_path, text))
    assert "expected a number" in str(err) and err.line == text[: text.index("tflops_fp32: {min")].count("\n") + 1


def test_unknown_check_id(thresholds_file):
    err = edited(thresholds_file, lambda d: d["instance_types"]["cpu"]["checks"].update({"stress.gmem": {}}))
    assert err.key == "instance_types/cpu/checks/stress.gmem" and "unknown check id" in str(err)
    assert "stress.gemm" in str(err)


def test_unknown_metric(thresholds_file):
    err = edited(thresholds_file, lambda d: set_limit(d, "cpu", "stress.gemm", "tflops_fp64",
                                                      {"min": 1, "unit": "TFLOP/s", "source": "x"}))
    assert err.key.endswith("limits/tflops_fp64") and "tflops_fp32" in str(err)


@pytest.mark.parametrize(("spec", "words"), [
    ({"max": 5, "unit": "TFLOP/s", "source": "x"}, "expected 'min: <number>'"),
    ({"min": 5, "calibrate": True, "unit": "TFLOP/s", "source": "x"}, "remove the value"),
    ({"calibrate": "yes", "unit": "TFLOP/s", "source": "x"}, "expected true or false"),
    ({"min": 5, "unit": "TFLOP/s"}, "missing required key 'source'"),
    ({"min": 5, "unit": "TFLOP/s", "source": "  "}, "expected non-empty text"),
    ({"min": 5, "unit": "TFLOP/s", "source": "x", "action": "Pray"}, "expected one of None, Reboot, Replace"),
])
def test_bad_limit_specs(thresholds_file, spec, words):
    err = edited(thresholds_file, lambda d: set_limit(d, "cpu", "stress.gemm", "tflops_fp32", spec))
    assert words in str(err) and "instance_types/cpu/checks/stress.gemm/limits/tflops_fp32" in err.key


def test_extends_cycle_and_unknown_parent(thresholds_file):
    def cycle(d):
        d["instance_types"]["ml.p5e.48xlarge"]["extends"] = "ml.p5en.48xlarge"  # p5en extends p5e
    assert "cycle" in str(edited(thresholds_file, cycle))
    err = edited(thresholds_file, lambda d: d["instance_types"]["cpu"].update(extends="ml.p7.48xlarge"))
    assert "unknown instance type 'ml.p7.48xlarge'" in str(err)


def test_unknown_gpu_model(thresholds_file):
    err = edited(thresholds_file, lambda d: d["instance_types"]["ml.p5.48xlarge"].update(gpu_model="h800"))
    assert err.key == "instance_types/ml.p5.48xlarge/gpu_model" and "h100-80gb" in str(err)


def test_one_name_for_two_types(thresholds_file):
    err = edited(thresholds_file, lambda d: d["instance_types"]["cpu"].update(aliases=["p5.48xlarge"]))
    assert "already used by 'ml.p5.48xlarge'" in str(err)


def test_profile_problems(thresholds_file):
    err = edited(thresholds_file, lambda d: d["profiles"]["quick"].pop("stress.gemm"))
    assert err.key == "profiles/quick" and "missing required key 'stress.gemm'" in str(err)
    err = edited(thresholds_file, lambda d: d["profiles"]["full"]["stress.dcgm"].update(timeout_s=10))
    assert err.key == "profiles/full/stress.dcgm/timeout_s" and ">= expected_s" in str(err)
    err = edited(thresholds_file, lambda d: d["profiles"]["full"]["stress.dcgm"].update(level=2.5))
    assert "expected a whole number" in str(err)
    err = edited(thresholds_file, lambda d: d["profiles"]["full"]["stress.dcgm"].update(colour=1))
    assert "unknown key" in str(err)


def test_schema_version(thresholds_file):
    assert "expected 1, got 2" in str(edited(thresholds_file, lambda d: d.update(schema_version=2)))


def test_instance_type_inherits_limits_per_metric(thresholds_file):
    def tweak(d):
        d["instance_types"]["ml.p5en.48xlarge"]["checks"] = {"stress.gemm": {"limits": {
            "tflops_bf16": {"min": 650, "unit": "TFLOP/s", "source": "override"}}}}
    resolved = thresholds.load(thresholds_file(tweak)).resolve("p5en.48xlarge")
    gemm = resolved.check("stress.gemm").limits
    assert gemm["tflops_bf16"].value == 650 and gemm["relative_to_median"].value == 0.9  # model default kept
    assert resolved.check("connectivity.allreduce").limits["busbw_intra_node"].value == 431  # from p5e
    assert gemm["tflops_bf16"].action is Action.REPLACE


# -- numbers out of any sane range, nesting and inheritance too deep: exit 2 before anything runs ---
@pytest.mark.parametrize(("where", "edit", "words"), [
    ("profiles/quick/stress.gemm/timeout_s", lambda d: d["profiles"]["quick"]["stress.gemm"].update(timeout_s=1.0e300),
     "expected a value from 0 to 86400, got 1e+300"),
    ("profiles/full/stress.gemm/duration_s", lambda d: d["profiles"]["full"]["stress.gemm"].update(duration_s=1e9),
     "expected a value from 0.01 to 86400"),
    ("profiles/quick/stress.gemm/matrix_size", lambda d: d["profiles"]["quick"]["stress.gemm"].update(matrix_size=10**12),
     "expected a value from 1 to 65536"),
    ("profiles/quick/stress.memtest/memory_fraction",
     lambda d: d["profiles"]["quick"]["stress.memtest"].update(memory_fraction=1.5), "from 0.0001 to 1"),
    ("profiles/full/stress.dcgm/level", lambda d: d["profiles"]["full"]["stress.dcgm"].update(level=9), "from 1 to 4"),
    ("instance_types/cpu/profiles/quick/connectivity.allreduce/cpu_ranks",
     lambda d: d["instance_types"]["cpu"]["profiles"]["quick"]["connectivity.allreduce"].update(cpu_ranks=10**6),
     "from 1 to 1024"),
    ("instance_types/ml.p5.48xlarge/gpus", lambda d: d["instance_types"]["ml.p5.48xlarge"].update(gpus=10**6),
     "from 0 to 64"),
    ("instance_types/ml.p5.48xlarge/checks/stress.gemm/limits/tflops_bf16/min",
     lambda d: set_limit(d, "ml.p5.48xlarge", "stress.gemm", "tflops_bf16",
                         {"min": 1e300, "unit": "TFLOP/s", "source": "s"}), "from 0 to 1e+09"),
])
def test_every_number_has_a_sane_range(thresholds_file, where, edit, words):
    err = edited(thresholds_file, edit)
    assert err.key == where and words in err.problem and err.line and err.path.endswith("thresholds.yaml")


def test_the_huge_timeout_from_the_brief_is_exit_2_on_the_command_line(thresholds_file):
    import subprocess
    import sys
    path = thresholds_file(lambda d: d["profiles"]["quick"]["stress.gemm"].update(timeout_s=1.0e300))
    proc = subprocess.run([sys.executable, "-m", "dhc", "thresholds", "validate", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "profiles/quick/stress.gemm/timeout_s: expected a value from 0 to 86400" in proc.stderr


@pytest.mark.parametrize("text", [
    "schema_version: 1\nprofiles: " + "[" * 5000 + "]" * 5000 + "\n",
    "schema_version: 1\nprofiles:\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 600)),
    "schema_version: 1\nprofiles: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path, text):
    err = load_error(write(tmp_path, text))
    assert "nested more than 32 levels deep" in err.problem and err.line


def test_a_3000_long_extends_chain_is_a_config_error(thresholds_file):
    def chain(d):
        types = d["instance_types"]
        for i in range(3000):
            types[f"x{i}.large"] = {"extends": f"x{i + 1}.large" if i < 2999 else "cpu"}
    err = edited(thresholds_file, chain)
    assert "more than 16 levels of extends" in err.problem and err.key.endswith("/extends") and err.line


def test_a_short_extends_chain_still_inherits(thresholds_file):
    def chain(d):
        d["instance_types"]["a.large"] = {"extends": "b.large"}
        d["instance_types"]["b.large"] = {"extends": "cpu", "description": "b"}
    path = thresholds_file(chain)
    resolved = thresholds.load(path).resolve("a.large")
    assert resolved.instance_type.description == "b" and resolved.check("stress.gemm").limits


def test_a_fifo_is_refused_without_blocking(tmp_path):
    import os
    fifo = tmp_path / "thresholds.yaml"
    os.mkfifo(fifo)
    err = load_error(fifo)
    assert "is a FIFO (named pipe), not a regular file" in err.problem and err.path == str(fifo)
