"""A check's whole contract in its catalogue entry: metrics, settings, timeout split, planted faults."""

import ast
import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest

from dhc import thresholds
from dhc.errors import CheckIncomplete
from dhc.injections import FAULTS, INJECTIONS, MULTI_NODE, check_of
from dhc.model import Action, Device, Status
from dhc.plugin.recorder import CheckRecorder
from dhc.thresholds.catalogue import CATALOGUE, Caught, CheckSpec, PlantedFault, SubRun, planted_fault, split_timeout

ROOT = Path(__file__).resolve().parent.parent
torch_needed = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")


def recorder(check, instance_type="cpu"):
    return CheckRecorder(check, thresholds.load(ROOT / "thresholds.yaml").resolve(instance_type))


# -- record(): only what the entry declares ------------------------------------------------------------
def test_record_refuses_a_metric_the_check_did_not_declare():
    gemm = recorder("stress.gemm")
    with pytest.raises(ValueError, match=r"stress.gemm recorded 'tflops_bf61', a metric its catalogue entry does "
                                         r"not declare \(judged: tflops_bf16, .*relative_to_median\)"):
        gemm.record("tflops_bf61", 1.0, "TFLOP/s", Device("cpu", 0))
    assert gemm.measurements == []  # nothing kept: the typo cannot ride along as a value without a limit


def test_record_takes_judged_metrics_and_informational_patterns():
    allreduce = recorder("connectivity.allreduce")
    allreduce.record("busbw_intra_node", 5.0, "GB/s")
    allreduce.record("busbw_nvlink_only_at_largest_size", 5.0, "GB/s")  # busbw_*_at_largest_size
    assert [m.name for m in allreduce.measurements] == ["busbw_intra_node", "busbw_nvlink_only_at_largest_size"]
    with pytest.raises(ValueError, match="'busbw_intra_nod'"):
        allreduce.record("busbw_intra_nod", 5.0, "GB/s")


# -- settings: declared, typed, and where they live ----------------------------------------------------
def test_a_setting_is_read_typed_and_an_undeclared_one_is_refused():
    gemm = recorder("stress.gemm")
    assert isinstance(gemm.setting("matrix_size"), int) and isinstance(gemm.setting("duration_s"), float)
    with pytest.raises(ValueError, match="stress.gemm read setting 'matrix_sise', which its catalogue entry"):
        gemm.setting("matrix_sise")


def test_a_setting_missing_from_the_file_names_where_it_belongs(thresholds_file):
    def without(doc):
        del doc["profiles"]["quick"]["stress.gemm"]["duration_s"]
        del doc["instance_types"]["cpu"]["profiles"]["quick"]["stress.gemm"]["duration_s"]
    path = thresholds_file(without)
    gemm = CheckRecorder("stress.gemm", thresholds.load(path).resolve("cpu"))
    with pytest.raises(CheckIncomplete) as caught:
        gemm.setting("duration_s")
    assert str(caught.value) == (f"stress.gemm needs setting 'duration_s' under profile quick: set it at "
                                 f"profiles/<quick|full>/stress.gemm/duration_s in {path}")


def test_every_declared_setting_has_a_value_for_every_bundled_type_and_profile():
    loaded = thresholds.load(ROOT / "thresholds.yaml")
    for instance_type in loaded.types:
        for profile in thresholds.PROFILES:
            limits = loaded.resolve(instance_type, profile)
            for check, spec in CATALOGUE.items():
                given = set(limits.timing(check).settings) | set(spec.defaults)
                assert given == set(spec.settings), (instance_type, profile, check)


def test_a_default_is_used_only_where_no_profile_gives_the_setting():
    assert recorder("connectivity.allreduce", "ml.p5.48xlarge").setting("cpu_ranks") == 2
    assert recorder("stress.dcgm", "ml.p5.48xlarge").setting("level") == 2
    with pytest.raises(ValueError, match="default for undeclared setting 'levle'"):
        CheckSpec("x.y", "", {}, {"level": int}, {"levle": 2})


# -- the timeout split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("timeout_s", [0.001, 0.3, 1, 6, 7.77, 100 / 3, 900, 1800.5, 86400])
def test_sub_runs_never_take_longer_than_their_check(timeout_s):
    for spec in CATALOGUE.values():
        for engine, runs in spec.timeout_split.items():
            budgets = spec.budgets(engine, timeout_s)
            assert list(budgets) == [r.name for r in runs]
            assert math.fsum(b.seconds for b in budgets.values()) <= timeout_s, (spec.id, engine)
            assert all(b.seconds >= 0 and b.of_s == timeout_s for b in budgets.values())


def test_shares_of_a_whole_are_split_exactly_and_rounded_down():
    thirds = tuple(SubRun(name, 1 / 3, name) for name in "abc")
    budgets = split_timeout("x.y", 10, thirds)
    assert [b.seconds for b in budgets.values()] == [3.333, 3.333, 3.333]
    assert split_timeout("x.y", 900, CATALOGUE["connectivity.allreduce"].timeout_split["torch"])["inter_node"].seconds == 180


def test_a_sub_run_that_times_out_is_named_in_the_reason():
    budgets = CATALOGUE["connectivity.allreduce"].budgets("torch", 300)
    reason = budgets["network_loopback"].reason("busbw_network_loopback: rank 1 on h did not finish within 60 s")
    assert reason == ("busbw_network_loopback: rank 1 on h did not finish within 60 s "
                      "(sub-run network_loopback: 60 s of connectivity.allreduce's 300 s timeout)")
    reason = CATALOGUE["connectivity.efa"].budgets("fi_info", 6)["fi_info"].reason("fi_info ran past 3 s")
    assert reason.endswith("(sub-run fi_info: 3 s of connectivity.efa's 6 s timeout)")


@pytest.mark.parametrize(("timeout_s", "seconds"), [(1000, 900), (100, 90), (30, 25), (10, 5), (8, 4), (1, 0.5)])
def test_dcgms_split_is_declared_in_its_entry(timeout_s, seconds):
    """dcgmi diag gets 90% of the check's timeout, keeping at least 5 s (at most half) to stop and report."""
    assert CATALOGUE["stress.dcgm"].budgets("dcgmi", timeout_s)["diag"].seconds == seconds


@pytest.mark.parametrize(("runs", "words"), [
    ((SubRun("a", 0.6, ""), SubRun("b", 0.5, "")), "sum to at most 1"),
    ((SubRun("a", 0.0, ""),), "shares > 0"),
    ((SubRun("a", 0.2, ""), SubRun("a", 0.2, "")), "distinct names"),
])
def test_a_split_that_breaks_the_rules_is_refused_naming_the_check(runs, words):
    with pytest.raises(ValueError, match=f"catalogue entry x.y: the sub-runs of torch .*{words}"):
        CheckSpec("x.y", "", {}, timeout_split={"torch": runs})


# -- planted faults and what each must be caught as ------------------------------------------------------
def test_every_planted_fault_has_an_expectation_the_self_test_can_judge():
    assert FAULTS and set(INJECTIONS) == set(FAULTS)
    for name, (check, fault) in FAULTS.items():
        assert fault.caught_as is not None, name
        assert fault.caught_as.status is Status.FAILED and fault.caught_as.action is not Action.NONE, name
        assert fault.caught_as.words.strip() and fault.planted.strip(), name
        assert check_of(name) == check and planted_fault(name, check) is fault and planted_fault(name) is fault
    assert MULTI_NODE == {"pairwise-slow-node"}


def test_a_fault_declared_without_an_expectation_is_refused():
    unjudged = PlantedFault("gemm-new", "a new fault", "slow_worker", 0, None)
    with pytest.raises(ValueError, match="catalogue entry stress.gemm: planted fault gemm-new: no expectation of "
                                         "what it must be caught as"):
        CheckSpec("stress.gemm", "", {}, faults=(unjudged,))


@pytest.mark.parametrize(("caught", "words"), [
    (Caught(Status.INCOMPLETE, Action.REPLACE, "x"), "it must make the check Failed, not Incomplete"),
    (Caught(Status.FAILED, Action.NONE, "x"), "it must ask for an action"),
    (Caught(Status.FAILED, Action.REPLACE, " "), "no words its finding must say"),
])
def test_an_expectation_a_verdict_could_not_meet_is_refused(caught, words):
    with pytest.raises(ValueError, match=f"planted fault f: {words}"):
        CheckSpec("stress.gemm", "", {}, faults=(PlantedFault("f", "p", "s", 0, caught),))


def test_a_fault_is_planted_only_in_its_own_check():
    assert planted_fault("gemm-bitflip", "stress.memtest") is None and planted_fault(None, "stress.gemm") is None
    assert recorder("stress.gemm").planted is None


def test_a_faults_strength_is_declared_with_it_and_its_text_derives_from_it():
    assert planted_fault("gemm-slow").strength == {"slow_factor": 4}
    assert INJECTIONS["gemm-slow"][1] == "device 0 idles so that each GEMM takes 4 times as long"
    assert planted_fault("pairwise-slow-node").strength == {"slow_s": 0.2}
    assert "idles 0.2 s in every iteration" in INJECTIONS["pairwise-slow-node"][1]
    with pytest.raises(ValueError, match="planted fault f: its text names 'factor' but its strength does not give it"):
        CheckSpec("stress.gemm", "", {}, faults=(PlantedFault("f", "{factor} times", "s", 0, Caught(
            Status.FAILED, Action.REPLACE, "x")),))


@torch_needed
def test_each_seam_is_a_field_of_its_engines_injection_object():
    from dhc.comm.allreduce import AllreduceInjection
    from dhc.kernels.gemm import GemmInjection
    from dhc.kernels.memtest import MemtestInjection
    fields = {"stress.gemm": {f.name for f in dataclasses.fields(GemmInjection)},
              "stress.memtest": {MemtestInjection.__name__},
              "connectivity.pairwise": {f.name for f in dataclasses.fields(AllreduceInjection)}}
    for name, (check, fault) in FAULTS.items():
        assert fault.seam in fields[check] and set(fault.strength) <= fields[check], name
    assert GemmInjection().slow_factor == planted_fault("gemm-slow").strength["slow_factor"]  # one number


# -- suites read their contract, they do not retype it -----------------------------------------------------
@pytest.mark.parametrize("suite", sorted((ROOT / "suites").rglob("test_*.py")), ids=lambda p: p.name)
def test_a_suite_names_its_check_only_in_its_marker(suite):
    """Outside the module docstring and ``@pytest.mark.check("id")``, no check id or fault name is spelled."""
    tree = ast.parse(suite.read_text())
    allowed = {id(tree.body[0].value)} if isinstance(tree.body[0], ast.Expr) else set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.mark.check":
            allowed |= {id(arg) for arg in node.args}
    spelled = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and id(node) not in allowed
               and isinstance(node.value, str) and (node.value in CATALOGUE or node.value in FAULTS)]
    assert spelled == [], f"{suite.name} retypes {spelled}: ask dhc_check (.id, .spec, .planted) instead"


def test_the_readme_fault_table_names_every_planted_fault_with_its_check_and_strength():
    """README's self-test table is written by hand: each row must still match its catalogue declaration."""
    rows = {line.split("|")[1].strip().strip("`"): line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| `") and line.split("|")[1].strip().strip("`") in FAULTS}
    assert set(rows) == set(FAULTS), f"faults missing from README's table: {set(FAULTS) - set(rows)}"
    for name, (check, fault) in FAULTS.items():
        assert f"`{check}` {fault.caught_as.status.value}" in rows[name], name
        for value in fault.strength.values():
            assert f"{value:g}" in rows[name], f"{name}: README does not say its strength {value:g}"
