"""Judge ``dcgmi diag``: DCGM's severity and category tables, exit codes, and the verdict they give.

The tables are DCGM's own, from NVIDIA/DCGM ``dcgmlib/dcgm_errors.h`` (``dcgmErrorSeverity_t``,
``dcgmErrorCategory_t``) at tag 4.6.0 (commit 72fa3fe), read 2026-11-30; the same values since 3.3.1.
DCGM up to 3.2.x numbered severities 0 MONITOR, 1 ISOLATE, 2 UNKNOWN, but its JSON then carried no
``error_severity`` at all, so only the current table applies to what dcgmi prints. Other tools
(exporters, operators) use their own numbers: keep this table the one place dhc reads them from.

What dcgmi does (dcgmi/Diag.cpp, dcgmi/Command.cpp, dcgm_structs.h): it exits with a ``dcgmReturn_t`` as
an unsigned byte: 0 when every test passed or was skipped, 226 (-30, NVVS_ERROR) when a test failed,
205 (-51, NVVS_ISOLATE_ERROR) for an ISOLATE failure, 235 (-21) when it cannot reach a host engine
(printing "Error: unable to establish a connection to the specified host: ..." and "Error: Unable to
connect to host engine. Host engine connection invalid/disconnected."), 222 (-34) "the affected
resource is in use", 217 (-39) "A diag instance is already running", 202 (-54) "Diagnostic could not
be run while DCGM is paused", 219 (-37) "The third-party Profiling module returned an unrecoverable
error" (what DCGM clients contending for the GPU's profiling hardware see, NVIDIA/dcgm-exporter#7).
With ``-j`` such errors come as a ``runtime_error`` document.
"""

from __future__ import annotations

from dataclasses import dataclass

from dhc.model import Action
from dhc.probes.dcgm_parse import DcgmOutputError, DcgmResult, DcgmRun, DcgmWarning, parse_diag

EXIT_TEST_FAILED, EXIT_ISOLATE, EXIT_NO_HOST_ENGINE = 226, 205, 235
EXIT_IN_USE = {222: "resource in use", 217: "another diagnostic running", 202: "DCGM paused",
               219: "profiling hardware held by another client"}

# error_severity -> (name, action); CONFIG has no action: it is a setting to fix, not a faulty GPU.
SEVERITIES: dict[int, tuple[str, Action | None]] = {
    0: ("NONE", Action.NONE), 1: ("MONITOR", Action.NONE), 2: ("ISOLATE", Action.REPLACE),
    3: ("UNKNOWN", Action.REPLACE), 4: ("TRIAGE", Action.REPLACE), 5: ("CONFIG", None), 6: ("RESET", Action.REBOOT)}
CONFIG = 5
CATEGORIES = {0: "none", 1: "performance threshold", 2: "performance violation", 3: "software configuration",
              4: "software library", 5: "software XID", 6: "software CUDA", 7: "software EUD",
              8: "software other", 9: "hardware thermal", 10: "hardware memory", 11: "hardware NVLink",
              12: "hardware NVSwitch", 13: "hardware PCIe", 14: "hardware power", 15: "hardware other",
              16: "internal"}
# Tests whose Skip is expected and harmless: EUD needs a separate package most nodes lack.
OPTIONAL_TESTS = {"eud", "eud test", "cpu_eud", "cpu eud"}
NO_HOST_ENGINE_TEXT = ("unable to establish a connection", "unable to connect to host engine",
                       "host engine connection invalid")
IN_USE_TEXT = ("affected resource is in use", "diag instance is already running", "while dcgm is paused",
               "modules are paused", "profiling module returned an unrecoverable error")
EXCLUSIVE_HINT = ("levels 3-4 need the GPUs to themselves: pause dcgm-exporter and any other DCGM client "
                  "(or run dhc before they start), then run again")


@dataclass(frozen=True)
class DcgmFault:
    gpu: int | None
    message: str
    action: Action


def action_for(severity: int | None) -> Action | None:
    """DCGM's advice as dhc's action: None for CONFIG (fix the setting), Replace when DCGM gives none."""
    return SEVERITIES.get(severity, ("", Action.REPLACE))[1] if severity is not None else Action.REPLACE


def judge(run: DcgmRun) -> tuple[list[DcgmFault], list[str]]:
    """(faults that fail the check, reasons it cannot decide). Both empty means Passed."""
    if run.runtime_error:
        return [], [explain_error(run.runtime_error, run.exit_code)]
    if not run.results:
        return [], ["dcgmi reported no tests"]
    failed = [(r, w) for r in run.results if r.status == "Fail" for w in (r.warnings or (DcgmWarning(""),))]
    faults = [DcgmFault(r.gpu, _message(r, w), action_for(w.severity) or Action.NONE)
              for r, w in failed if w.severity != CONFIG]
    undecided = [_config_reason(r, w) for r, w in failed if w.severity == CONFIG]
    undecided += _not_run(run.results)
    if run.exit_code in (EXIT_TEST_FAILED, EXIT_ISOLATE) and not failed:
        undecided.append(f"dcgmi exited {run.exit_code} (a test failed) but its JSON shows no failure")
    elif run.exit_code not in (0, EXIT_TEST_FAILED, EXIT_ISOLATE):
        undecided.append(f"dcgmi exited {run.exit_code} although its JSON reports results")
    if run.exit_code == EXIT_ISOLATE:
        faults = [DcgmFault(f.gpu, f.message, Action.REPLACE) for f in faults]
    return faults, undecided


def _not_run(results: tuple[DcgmResult, ...]) -> list[str]:
    reasons = [f"required test {r.test!r} reported {r.status}" + (f" on {r.entity}" if r.entity else "")
               for r in results if r.status in ("Skip", "Not Run") and r.test.lower() not in OPTIONAL_TESTS]
    reasons += [f"test {r.test!r} reported status {r.status!r}, which dhc does not know"
                + (f" (on {r.entity})" if r.entity else "")
                for r in results if r.status not in ("Pass", "Fail", "Warn", "Skip", "Not Run")]
    if not any(r.status in ("Pass", "Fail", "Warn") for r in results):
        reasons.append(f"no DCGM test ran to completion: all {len(results)} results were skipped or not run")
    return reasons


def _message(result: DcgmResult, warning: DcgmWarning) -> str:
    where = f" on {result.entity}" if result.entity else ""
    return f"DCGM {result.test}{where} failed: {warning.message.strip() or 'no detail given'}" + _tags(warning)


def _config_reason(result: DcgmResult, warning: DcgmWarning) -> str:
    where = f" on {result.entity}" if result.entity else ""
    return (f"configuration: DCGM {result.test}{where} failed on a setting, not the hardware: "
            f"{warning.message.strip()}{_tags(warning)}; fix the node's configuration as DCGM says "
            "(e.g. persistence mode: `nvidia-smi -pm 1` as root, or nvidia-persistenced) and run again")


def _tags(warning: DcgmWarning) -> str:
    tags = [f"error {warning.error_id}" if warning.error_id is not None else "",
            CATEGORIES.get(warning.category, f"category {warning.category}") if warning.category is not None else "",
            f"severity {SEVERITIES.get(warning.severity, (warning.severity,))[0]}"
            if warning.severity is not None else ""]
    text = ", ".join(t for t in tags if t)
    return f" ({text})" if text else ""


def explain_error(text: str, exit_code: int) -> str:
    """A reason for a run that did not happen: no host engine, GPUs held by another client, or as printed."""
    lowered, shown = text.lower(), " ".join(text.split())[:300]
    if any(t in lowered for t in NO_HOST_ENGINE_TEXT) or exit_code == EXIT_NO_HOST_ENGINE:
        return f"dcgmi could not reach a DCGM host engine (exit {exit_code}): {shown}"
    if any(t in lowered for t in IN_USE_TEXT) or exit_code in EXIT_IN_USE:
        return f"GPU in use by another DCGM client (dcgmi exit {exit_code}: {shown}); {EXCLUSIVE_HINT}"
    return f"dcgmi runtime error (exit {exit_code}): {shown}"


def assess(output: str, exit_code: int) -> tuple[list[DcgmFault], list[str], DcgmRun | None]:
    """Judge raw dcgmi output: (faults, reasons it cannot decide, the parsed run if any)."""
    try:
        run = parse_diag(output, exit_code)
    except DcgmOutputError as exc:
        if exit_code == EXIT_ISOLATE:
            return [DcgmFault(None, "dcgmi exited 205 (a GPU should be isolated) without JSON output; "
                              "run `dcgmi diag -r 1` by hand to see which GPU", Action.REPLACE)], [], None
        if exit_code < 0:
            return [], [f"dcgmi was killed by signal {-exit_code}: {exc}"], None
        known = explain_error(output, exit_code)
        return [], [known if not known.startswith("dcgmi runtime error") else f"dcgmi exited {exit_code}: {exc}"], None
    faults, undecided = judge(run)
    return faults, undecided, run
