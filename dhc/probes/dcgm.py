"""``stress.dcgm``'s entry point: run ``dcgmi diag`` against a host engine with a deadline, then judge it.

What the real tool does: ``dcgmi diag -r LEVEL -j [--host H]`` asks the DCGM host engine to run the
NVIDIA Validation Suite (nvvs, a child of the host engine or of dcgmi) and prints one JSON document on
stdout, sometimes after a line of text; connection errors go to stdout and stderr. Exit codes and
what they mean are in ``dcgm_judge``; the JSON layouts in ``dcgm_parse``; finding or starting the host
engine in ``dcgm_hostengine``. On a timeout or an interrupt dcgmi and everything it started are killed.
"""

from __future__ import annotations

from dhc.probes.dcgm_hostengine import Endpoint, HostEngineUnavailable, dcgmi_host_args, host_engine
from dhc.probes.dcgm_judge import (
    CATEGORIES,
    EXIT_ISOLATE,
    EXIT_TEST_FAILED,
    SEVERITIES,
    DcgmFault,
    action_for,
    assess,
    judge,
)
from dhc.probes.dcgm_parse import DcgmOutputError, DcgmResult, DcgmRun, DcgmWarning, parse_diag
from dhc.probes.tool import ToolTimeout, run_tool

__all__ = ["CATEGORIES", "EXIT_ISOLATE", "EXIT_TEST_FAILED", "SEVERITIES", "DcgmFault", "DcgmOutputError",
           "DcgmResult", "DcgmRun", "DcgmTimeout", "DcgmWarning", "Endpoint", "HostEngineUnavailable", "action_for",
           "assess", "host_engine", "judge", "parse_diag", "run_diag"]


class DcgmTimeout(Exception):
    """dcgmi ran past its deadline; it and everything it started were killed."""


def run_diag(dcgmi: str, level: int, timeout_s: float, endpoint: Endpoint | None = None) -> tuple[str, int]:
    """Run ``dcgmi diag -r LEVEL -j`` (against ``endpoint`` when given): (output, exit code)."""
    argv = [dcgmi, "diag", "-r", str(level), "-j", *(dcgmi_host_args(endpoint) if endpoint else [])]
    try:
        result = run_tool(argv, timeout_s, merge_stderr=True)
    except ToolTimeout:
        raise DcgmTimeout(f"dcgmi diag -r {level} ran past {timeout_s:g} s and was stopped "
                          "(with everything it started)") from None
    return result.stdout, result.returncode
