"""The verdict model: limits, judgements and the node verdict (pure rules)."""

import pytest

from dhc import units
from dhc.model import (
    Action,
    CheckResult,
    Comparison,
    Device,
    Finding,
    Judgement,
    Limit,
    Measurement,
    Status,
    node_verdict,
)

GPU3 = Device("gpu", 3, "NVIDIA H100 80GB HBM3", "GPU-5f1c", "1654922001234", "00000000:53:00.0")


def result(status, check="stress.gemm", findings=(), reason=""):
    return CheckResult(check, "InstanceStress", status, reason, findings=tuple(findings))


def test_units_convert_within_a_quantity_and_refuse_across():
    assert units.convert(1.9, "TB/s", "GB/s") == pytest.approx(1900)
    assert units.convert(50, "%", "ratio") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cannot convert TFLOP/s"):
        units.convert(1, "TFLOP/s", "GB/s")
    with pytest.raises(ValueError, match="unknown unit"):
        units.quantity_of("furlongs")


@pytest.mark.parametrize(("comparison", "limit", "value", "unit", "ok"), [
    ("min", 1.9, 2000, "GB/s", True),
    ("min", 1.9, 1899, "GB/s", False),
    ("max", 0, 0, "count", True),
    ("max", 0, 1, "count", False),
    ("equals", 8, 8, "count", True),
    ("equals", 8, 7, "count", False),
])
def test_limit_admits_converting_units(comparison, limit, value, unit, ok):
    lim = Limit(Comparison(comparison), limit, "TB/s" if unit == "GB/s" else unit, "test")
    assert lim.admits(value, unit) is ok


def test_measurement_judgement_and_description_name_everything():
    limit = Limit(Comparison.MIN, 700, "TFLOP/s", "H100 measured 794")
    low = Measurement("stress.gemm", "tflops_bf16", 612.5, "TFLOP/s", GPU3, limit)
    assert low.judgement is Judgement.OUTSIDE
    text = low.describe()
    for part in ("stress.gemm", "tflops_bf16", "GPU 3", "GPU-5f1c", "612.5", "minimum 700 TFLOP/s"):
        assert part in text
    assert Measurement("stress.gemm", "x", 1, "TFLOP/s").judgement is Judgement.UNLIMITED
    pending = Limit(Comparison.MIN, None, "TFLOP/s", "not yet measured")
    assert Measurement("stress.gemm", "x", 1, "TFLOP/s", None, pending).judgement is Judgement.UNCALIBRATED


def test_finding_from_measurement_states_value_in_the_limits_unit():
    limit = Limit(Comparison.MIN, 1.9, "TB/s", "DCGM")
    finding = Finding.from_measurement(Measurement("stress.memtest", "copy_bandwidth", 1500, "GB/s", GPU3, limit))
    assert (finding.value, finding.limit, finding.unit) == (pytest.approx(1.5), 1.9, "TB/s")


def test_node_verdict_passed_only_when_all_pass_or_skip():
    verdict = node_verdict([result(Status.PASSED), result(Status.SKIPPED, "stress.dcgm", reason="n/a")])
    assert (verdict.status, verdict.exit_code, verdict.reasons) == (Status.PASSED, 0, ())


def test_node_verdict_failed_wins_and_takes_the_most_severe_action():
    reboot = Finding("stress.inventory", Status.FAILED, "row remap pending", Action.REBOOT, GPU3)
    replace = Finding("stress.gemm", Status.FAILED, "SDC", Action.REPLACE, GPU3)
    verdict = node_verdict([result(Status.FAILED, findings=[reboot]), result(Status.INCOMPLETE, reason="timeout"),
                            result(Status.FAILED, findings=[replace])])
    assert (verdict.status, verdict.action, verdict.exit_code) == (Status.FAILED, Action.REPLACE, 1)
    assert [r.message for r in verdict.reasons] == ["row remap pending", "SDC", "timeout"]


def test_node_verdict_fails_closed():
    assert node_verdict([]).status is Status.INCOMPLETE
    assert node_verdict([result(Status.SKIPPED, reason="n/a")]).status is Status.INCOMPLETE
    verdict = node_verdict([result(Status.PASSED), result(Status.INCOMPLETE, reason="dcgmi missing")])
    assert (verdict.status, verdict.exit_code, verdict.action) == (Status.INCOMPLETE, 3, Action.NONE)
    assert verdict.reasons[0].message == "dcgmi missing"


def test_check_result_round_trips_through_json():
    limit = Limit(Comparison.EQUALS, 8, "count", "type spec")
    m = Measurement("stress.inventory", "gpu_count", 7, "count", None, limit)
    original = CheckResult("stress.inventory", "InstanceStress", Status.FAILED, "missing GPU", (GPU3,), (m,),
                           (Finding.from_measurement(m),), "2026-01-01T00:00:00Z", 1.5, "x::y")
    data = original.to_dict()
    assert data["measurements"][0]["judgement"] == "outside" and data["action"] == "Replace"
    assert CheckResult.from_dict(data) == original


def test_a_run_that_ended_early_is_never_passed():
    verdict = node_verdict([result(Status.PASSED)], ended_by="interrupted")
    assert verdict.status is Status.INCOMPLETE
    assert verdict.reasons[0].message == "run ended early: interrupted"
    failed = node_verdict([result(Status.FAILED, findings=[Finding("stress.gemm", Status.FAILED, "SDC",
                                                                     Action.REPLACE)])], ended_by="interrupted")
    assert failed.status is Status.FAILED and [r.message for r in failed.reasons] == ["SDC", "run ended early: interrupted"]
    assert node_verdict([], ended_by="collecting failed").reasons[0].message == "run ended early: collecting failed"


# -- NaN and infinities: outside any limit, and stored in a way JSON can hold -----------------------
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("comparison", list(Comparison))
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_a_non_finite_value_is_outside_any_limit(comparison, value):
    limit = Limit(comparison, 1.0, "ratio", "s")
    assert Measurement("stress.gemm", "relative_to_median", value, "ratio", GPU3, limit).judgement is Judgement.OUTSIDE
    uncalibrated = Limit(comparison, None, "ratio", "s")
    assert Measurement("stress.gemm", "x", value, "ratio", GPU3, uncalibrated).judgement is Judgement.OUTSIDE


@pytest.mark.parametrize(("value", "word"), [(NAN, "nan"), (INF, "inf"), (-INF, "-inf")])
def test_a_non_finite_measurement_round_trips_through_strict_json(value, word):
    import json
    limit = Limit(Comparison.MIN, 700, "TFLOP/s", "s")
    m = Measurement("stress.gemm", "tflops_bf16", value, "TFLOP/s", GPU3, limit)
    finding = Finding.from_measurement(m)
    result = CheckResult("stress.gemm", "InstanceStress", Status.FAILED, finding.message, (GPU3,), (m,), (finding,))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # the journal's and the report's rule
    row = data["measurements"][0]
    assert (row["value"], row["non_finite"], row["judgement"]) == (None, word, "outside")
    assert (data["findings"][0]["value"], data["findings"][0]["non_finite"]) == (None, word)
    assert f"measured {word} TFLOP/s, expected minimum 700 TFLOP/s" in finding.message
    back = CheckResult.from_dict(data)
    assert repr(back.measurements[0].value) == repr(value) and back.measurements[0].judgement is Judgement.OUTSIDE
    verdict = node_verdict([back]).to_dict()
    assert verdict["status"] == "Failed" and json.dumps(verdict, allow_nan=False)


def test_finite_values_carry_no_non_finite_field():
    m = Measurement("stress.gemm", "tflops_bf16", 790.0, "TFLOP/s", GPU3, Limit(Comparison.MIN, 700, "TFLOP/s", "s"))
    row = CheckResult("stress.gemm", "InstanceStress", Status.PASSED, measurements=(m,)).to_dict()["measurements"][0]
    assert row["value"] == 790.0 and "non_finite" not in row


@pytest.mark.parametrize(("value", "word"), [(float("nan"), "nan"), (10**400, "inf"), (-(10**400), "-inf")])
def test_the_recorder_fails_a_device_whose_value_is_no_finite_number(value, word):
    from dhc import thresholds
    from dhc.errors import HardwareFault
    from dhc.plugin.recorder import CheckRecorder
    recorder = CheckRecorder("stress.gemm", thresholds.load().resolve("cpu"))
    recorder.record("tflops_fp32", value, "TFLOP/s", Device("cpu", 0))
    with pytest.raises(HardwareFault, match=f"tflops_fp32 on cpu: measured {word} TFLOP/s, expected minimum"):
        recorder.conclude()
    [finding] = recorder.findings()
    assert finding.action is Action.REPLACE and finding.device == Device("cpu", 0)
