"""``dcgmi diag``: run it with a timeout, parse its JSON (DCGM 3.x and 4.x layouts), judge the result.

Fail closed: output that cannot be parsed, a run with no tests, a runtime error, or a required
test reported Skip / Not Run can never pass. Error severities map to actions (ISOLATE -> Replace,
RESET -> Reboot); DCGM before 3.x used 3 for RESET, later releases use 6 (3 became UNKNOWN).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any

from dhc.model import Action

EXIT_TEST_FAILED, EXIT_ISOLATE = 226, 205
SEVERITY_NAMES = {0: "NONE", 1: "MONITOR", 2: "ISOLATE", 3: "UNKNOWN", 4: "TRIAGE", 5: "CONFIG", 6: "RESET"}
CATEGORY_NAMES = {0: "none", 1: "performance threshold", 2: "performance violation", 3: "software configuration",
                  4: "software library", 5: "software XID", 6: "software CUDA", 7: "software EUD",
                  8: "software other", 9: "hardware thermal", 10: "hardware memory", 11: "hardware NVLink",
                  12: "hardware NVSwitch", 13: "hardware PCIe", 14: "hardware power", 15: "hardware other",
                  16: "internal"}
# Tests whose Skip is expected and harmless: EUD needs a separate package most nodes lack.
OPTIONAL_TESTS = {"eud", "eud test", "cpu_eud", "cpu eud"}


class DcgmOutputError(Exception):
    """The output holds no DCGM diagnostic document dhc can read."""


@dataclass(frozen=True)
class DcgmWarning:
    message: str
    error_id: int | None = None
    category: int | None = None
    severity: int | None = None


@dataclass(frozen=True)
class DcgmResult:
    test: str
    category: str
    gpu: int | None  # None for node-wide tests (deployment checks)
    status: str  # Pass | Fail | Skip | Warn | Not Run
    warnings: tuple[DcgmWarning, ...] = ()
    info: tuple[str, ...] = ()


@dataclass(frozen=True)
class DcgmRun:
    layout: str  # "3.x" | "4.x"
    version: str | None
    driver: str | None
    results: tuple[DcgmResult, ...] = ()
    runtime_error: str | None = None
    exit_code: int = 0
    serials: dict[int, str] = field(default_factory=dict)


def parse_diag(output: str, exit_code: int = 0) -> DcgmRun:
    document = _first_json_object(output)
    if "DCGM Diagnostic" in document:
        return _parse_4x(document, exit_code)
    if "DCGM GPU Diagnostic" in document:
        return _parse_3x(document["DCGM GPU Diagnostic"], exit_code)
    raise DcgmOutputError(f"JSON without a DCGM diagnostic document (keys: {', '.join(list(document)[:5])})")


def _first_json_object(output: str) -> dict[str, Any]:
    """dcgmi may print text before its JSON; take the first object that parses."""
    decoder = json.JSONDecoder()
    start = output.find("{")
    while start != -1:
        try:
            document, _ = decoder.raw_decode(output, start)
        except json.JSONDecodeError:
            start = output.find("{", start + 1)
            continue
        if isinstance(document, dict):
            return document
        start = output.find("{", start + 1)
    snippet = output.strip()[:120] or "(empty output)"
    raise DcgmOutputError(f"no JSON document in dcgmi output: {snippet!r}")


def _parse_4x(document: dict[str, Any], exit_code: int) -> DcgmRun:
    diag, metadata = document["DCGM Diagnostic"], document.get("metadata") or {}
    serials = {e["entity_id"]: e["serial_num"] for g in document.get("entity_groups") or []
               if g.get("entity_group") == "GPU" for e in g.get("entities") or []
               if "entity_id" in e and e.get("serial_num") and not e["serial_num"].startswith("<<<")}
    results = []
    for category, test in _tests(diag):
        for row in test.get("results") or []:
            gpu = row.get("entity_id") if row.get("entity_group", "GPU") == "GPU" else None
            results.append(DcgmResult(test["name"], category, gpu, str(row.get("status", "")),
                                      _warnings(row.get("warnings")), _info(row.get("info"))))
    return DcgmRun("4.x", metadata.get("version") or diag.get("version"), metadata.get("Driver Version Detected"),
                   tuple(results), diag.get("runtime_error"), exit_code, serials)


def _parse_3x(diag: dict[str, Any], exit_code: int) -> DcgmRun:
    results = []
    for category, test in _tests(diag):
        for row in test.get("results") or []:
            ids = row.get("gpu_ids", row.get("gpu_id"))
            gpus = [int(x) for x in str(ids).split(",") if x.strip().isdigit()] if ids is not None else [None]
            for gpu in gpus:
                results.append(DcgmResult(test["name"], category, gpu, str(row.get("status", "")),
                                          _warnings(row.get("warnings", row.get("warning"))), _info(row.get("info"))))
    return DcgmRun("3.x", diag.get("version"), None, tuple(results), diag.get("runtime_error"), exit_code)


def _tests(diag: dict[str, Any]):
    for category in diag.get("test_categories") or []:
        for test in category.get("tests") or []:
            if isinstance(test, dict) and "name" in test:
                yield category.get("category", ""), test


def _warnings(raw: Any) -> tuple[DcgmWarning, ...]:
    if not raw:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(DcgmWarning(str(item.get("warning", "")), item.get("error_id"), item.get("error_category"),
                                   item.get("error_severity")))
        else:
            out.append(DcgmWarning(str(item)))
    return tuple(out)


def _info(raw: Any) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(str(x) for x in raw) if isinstance(raw, list) else (str(raw),)


# -- judging --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DcgmFault:
    gpu: int | None
    message: str
    action: Action


def action_for(severity: int | None, version: str | None) -> Action:
    if severity == 2:
        return Action.REPLACE
    if severity == 6 or (severity == 3 and _major(version) < 3):
        return Action.REBOOT
    return Action.NONE if severity in (0, 1, 5) else Action.REPLACE


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 99  # unknown: assume a current release


def judge(run: DcgmRun) -> tuple[list[DcgmFault], list[str]]:
    """(faults that fail the check, reasons it cannot decide). Both empty means Passed."""
    if run.runtime_error:
        return [], [f"dcgmi runtime error: {run.runtime_error}"]
    if not run.results:
        return [], ["dcgmi reported no tests"]
    faults = [DcgmFault(r.gpu, _fault_message(r, w), action_for(w.severity, run.version))
              for r in run.results if r.status == "Fail" for w in (r.warnings or (DcgmWarning("no detail given"),))]
    undecided = [f"required test {r.test!r} reported {r.status}" + (f" on GPU {r.gpu}" if r.gpu is not None else "")
                 for r in run.results if r.status in ("Skip", "Not Run") and r.test.lower() not in OPTIONAL_TESTS]
    if run.exit_code in (EXIT_TEST_FAILED, EXIT_ISOLATE) and not faults:
        undecided.append(f"dcgmi exited {run.exit_code} (a test failed) but its JSON shows no failure")
    if run.exit_code == EXIT_ISOLATE:
        faults = [DcgmFault(f.gpu, f.message, Action.REPLACE) for f in faults]
    return faults, undecided


def _fault_message(result: DcgmResult, warning: DcgmWarning) -> str:
    where = f" on GPU {result.gpu}" if result.gpu is not None else ""
    tags = [f"error {warning.error_id}" if warning.error_id is not None else "",
            CATEGORY_NAMES.get(warning.category, "") if warning.category is not None else "",
            f"severity {SEVERITY_NAMES.get(warning.severity, warning.severity)}" if warning.severity is not None else ""]
    tag_text = ", ".join(t for t in tags if t)
    return f"DCGM {result.test}{where} failed: {warning.message.strip()}" + (f" ({tag_text})" if tag_text else "")


# -- running --------------------------------------------------------------------------------------
class DcgmTimeout(Exception):
    pass


def run_diag(dcgmi: str, level: int, timeout_s: float) -> tuple[str, int]:
    """Run ``dcgmi diag -r LEVEL -j``; kill it and its children (nvvs) on timeout."""
    proc = subprocess.Popen([dcgmi, "diag", "-r", str(level), "-j"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise DcgmTimeout(f"dcgmi diag -r {level} ran past {timeout_s:g} s and was stopped") from None
    except BaseException:  # the check's own timeout or Ctrl-C: leave no diagnostic running
        _kill(proc)
        raise
    return output, proc.returncode


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def assess(output: str, exit_code: int) -> tuple[list[DcgmFault], list[str], DcgmRun | None]:
    """Judge raw dcgmi output: (faults, reasons it cannot decide, the parsed run if any)."""
    try:
        run = parse_diag(output, exit_code)
    except DcgmOutputError as exc:
        if exit_code == EXIT_ISOLATE:
            return [DcgmFault(None, "dcgmi exited 205 (a GPU should be isolated) without JSON output; "
                              "run `dcgmi diag -r 1` by hand to see which GPU", Action.REPLACE)], [], None
        return [], [f"dcgmi exited {exit_code}: {exc}"], None
    faults, undecided = judge(run)
    return faults, undecided, run
