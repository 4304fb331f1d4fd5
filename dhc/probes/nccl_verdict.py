"""What an nccl-tests log can prove about all-reduce bus bandwidth, correctness and scope.

A log speaks to the all-reduce limit only when it is an all-reduce (``all_reduce_perf``: a
reduction op, root -1, ``count`` = size / element size, busbw = algbw x 2(n-1)/n >= algbw) over
more than one rank, in the default non-blocking mode with the default ``sum``, every row read,
every number a measurement, every sweep run to the ``-e`` it asked for and to at least the size
dhc's own sweep reaches (smaller sizes have not reached peak bandwidth). Anything else is a reason
the check is Incomplete, named. Wrong elements anywhere (any row, any table, any op) are a fault.
Each sweep is judged by the best of its largest sizes (>= 1/8 of its largest), and the log by its
worst sweep, so a bad table is never hidden behind a good one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dhc.model import Action, CheckResult, Finding, NodeVerdict, Status, node_verdict
from dhc.probes.nccl_table import SizeRow
from dhc.probes.nccl_tests import NcclTestsRun, Sweep

REDUCTION_OPS = {"sum", "prod", "max", "min", "avg", "mulsum", "premulsum"}
WORD_BYTES = {"int8": 1, "uint8": 1, "char": 1, "f8e4m3": 1, "f8e5m2": 1, "half": 2, "bfloat16": 2, "int32": 4,
              "uint32": 4, "int": 4, "float": 4, "int64": 8, "uint64": 8, "double": 8}
_OTHER_COLLECTIVES = "all_gather, reduce_scatter or alltoall: busbw = algbw x (n-1)/n"
WRONG_VALUES = Action.REPLACE  # an all-reduce that returned wrong values: a GPU or link corrupts data
WRONG_TRANSPORT = Action.REBOOT  # NCCL chose Socket or SHM: the EFA plugin or P2P did not come up this boot
_RATIOS = "all_gather, reduce_scatter and alltoall give (n-1)/n; sendrecv, broadcast and reduce give 1"


@dataclass
class Assessment:
    faults: list[str] = field(default_factory=list)  # the hardware is at fault: Failed
    unknowns: list[str] = field(default_factory=list)  # why the log cannot be judged: Incomplete
    judged: SizeRow | None = None  # the row whose bus bandwidth is judged
    ranks: int | None = None  # ranks, as listed or as busbw/algbw implies


def assess(run: NcclTestsRun, min_largest_bytes: int) -> Assessment:
    result = Assessment(ranks=run.ranks or implied_ranks(run.rows))
    result.faults = _wrong(run)
    result.unknowns = _unreadable(run) or (_not_all_reduce(run, result.ranks) + _mode(run))
    if not result.unknowns:
        result.unknowns = _incomplete(run, min_largest_bytes)
    if not result.unknowns:  # the bandwidth speaks: judge the worst sweep of the default op
        result.judged = min((_peak(s) for s in run.sweeps if s.rows[0].redop == "sum"), key=lambda r: r.best_busbw)
    result.unknowns += _unproven_correctness(run)
    return result


def faults(check: str, messages: list[str], action: Action) -> list[Finding]:
    """``messages`` as the Failed findings ``dhc_check.fault(message, None, action)`` records in ``dhc run``."""
    return [Finding(check, Status.FAILED, m, action) for m in messages]


def verdict(check: str, suite: str, findings: list[Finding], unknowns: list[str]) -> NodeVerdict:
    """The log's verdict through the same rules as ``dhc run`` (``dhc.model.node_verdict``): the log is one
    check whose findings are its faults (Failed, each with its action: a limit's own for a bandwidth miss)
    and what could not be judged (Incomplete)."""
    reasons = tuple(findings) + tuple(Finding(check, Status.INCOMPLETE, u) for u in unknowns)
    status = Status.FAILED if findings else Status.INCOMPLETE if unknowns else Status.PASSED
    reason = reasons[0].message if reasons else ""
    return node_verdict([CheckResult(check, suite, status, reason, findings=reasons)])


def implied_ranks(rows: tuple[SizeRow, ...]) -> int | None:
    """The rank count busbw/algbw = 2(n-1)/n implies at the largest well-measured size, or None."""
    measured = [r for r in rows if r.out_of_place.algbw >= 1 and 0 < r.busbw < 2 * r.out_of_place.algbw]
    if not measured:
        return None
    row = max(measured, key=lambda r: r.size_bytes)
    ratio = row.busbw / row.out_of_place.algbw
    if ratio < 1:
        return None
    n = round(2 / (2 - ratio))
    slack = 0.006 * (1 + ratio) / row.out_of_place.algbw  # both printed to 2 decimals
    spacing = 2 / (n * (n + 1))
    return n if abs(2 * (n - 1) / n - ratio) <= slack < spacing / 2 else None


def _wrong(run: NcclTestsRun) -> list[str]:
    bad = [r for r in run.rows if r.wrong]
    faults = []
    if bad:
        where = ", ".join(f"{r.wrong:g} at {r.size_bytes} B (line {r.line})" for r in bad[:4])
        faults.append(f"{sum(r.wrong or 0 for r in bad):g} wrong elements in {len(bad)} row(s): {where}")
    if run.out_of_bounds:
        faults.append(f"nccl-tests reported {run.out_of_bounds} out-of-bounds results ('Out of bounds values')")
    return faults


def _unreadable(run: NcclTestsRun) -> list[str]:
    reasons = [f"unrecognised row, {u}" for u in run.unreadable[:3]]
    for row in run.rows:
        if (why := row.implausible()) is not None:
            reasons.append(f"line {row.line} ({row.size_bytes} B): {why} is not a measurement")
    if run.failures:
        reasons.append("the run reported a failure: " + "; ".join(run.failures))
    return reasons


def _not_all_reduce(run: NcclTestsRun, ranks: int | None) -> list[str]:
    if run.program and "all_reduce" not in run.program:
        return [f"the log is from {run.program}, not all_reduce_perf: its bus bandwidth is not all-reduce's"]
    if run.repeated_ranks:
        return [f"one rank is listed on two hosts ({run.repeated_ranks[0]}): each process ran its own one-rank "
                "test (nccl-tests built without MPI=1 under mpirun), or logs of different runs were pasted together"]
    if ranks == 1 or (run.rows and all(r.best_busbw == 0 for r in run.rows)
                      and any(r.out_of_place.algbw > 0 for r in run.rows)):
        return ["a single rank: all-reduce bus bandwidth is 0 by definition (busbw = algbw x 2(n-1)/n)"]
    if ranks and ranks > 2 and (why := _ratio_mismatch(run.largest(), ranks)) is not None:
        return [why]
    for row in run.rows:
        if (why := _shape(row)) is not None:
            return [f"line {row.line} is not an all-reduce row ({why}); dhc judges all_reduce_perf logs only"]
    return []


def _shape(row: SizeRow) -> str | None:
    if row.redop not in REDUCTION_OPS:
        return f"reduction op {row.redop or 'missing'}: a broadcast, all_gather, alltoall or sendrecv"
    if row.root not in (None, -1):
        return f"root {row.root}: a reduce or broadcast"
    word = WORD_BYTES.get(row.dtype)
    if word and row.count * word != row.size_bytes:
        return f"{row.count} {row.dtype} elements are not {row.size_bytes} B: a per-rank count, as in {_OTHER_COLLECTIVES}"
    algbw = row.out_of_place.algbw
    if algbw >= 1 and row.busbw < 0.98 * algbw:
        return f"busbw {row.busbw:g} < algbw {algbw:g}: {_OTHER_COLLECTIVES}"
    return None


def _ratio_mismatch(row: SizeRow, ranks: int) -> str | None:
    algbw, expected = row.out_of_place.algbw, 2 * (ranks - 1) / ranks
    if algbw < 1 or abs(row.busbw / algbw - expected) <= 0.02 * expected:
        return None
    return (f"line {row.line}: busbw/algbw is {row.busbw / algbw:.3f}, but all-reduce over {ranks} ranks gives "
            f"2(n-1)/n = {expected:.3f}: not an all-reduce ({_RATIOS})")


def _mode(run: NcclTestsRun) -> list[str]:
    reasons = []
    if run.blocking:
        reasons.append("blocking mode (-z): each operation waits for the last, so busbw is below what the "
                       "limits (set on the default non-blocking run) expect")
    ops = sorted({r.redop for r in run.rows if r.redop != "sum"})
    if ops and not any(r.redop == "sum" for r in run.rows):
        reasons.append(f"reduction op {', '.join(o or '?' for o in ops)} only: the limits are set on the default sum")
    return reasons


def _incomplete(run: NcclTestsRun, min_largest_bytes: int) -> list[str]:
    reasons = [why for s in run.sweeps if (why := _short_sweep(s)) is not None]
    largest = run.largest().size_bytes
    if largest < min_largest_bytes:
        reasons.append(f"the largest size is {largest} B, below the {min_largest_bytes} B dhc sweeps to: "
                       "bus bandwidth has not reached its peak")
    return reasons


def _unproven_correctness(run: NcclTestsRun) -> list[str]:
    """Why the log cannot prove the results were right (the bandwidth may still be judged)."""
    unchecked = [r for r in run.rows if r.out_of_place.check is None]  # some tests never check in-place
    if unchecked:
        return [f"validation was off (-c 0; #wrong is N/A on {len(unchecked)} rows, first line {unchecked[0].line}), "
                "so correctness is not proven"]
    delta = any(r.checks == "delta" for r in run.rows)
    if (delta or run.elided) and run.out_of_bounds is None:
        why = "rows were elided ('...')" if run.elided else \
            "this older nccl-tests layout prints only each row's max error"
        return [f"{why} and the log has no '# Out of bounds values' line, so correctness is not proven"]
    return []


def _short_sweep(sweep: Sweep) -> str | None:
    if sweep.max_bytes is None or sweep.step is None:
        return None
    step, kind = sweep.step
    last = sweep.rows[-1].size_bytes  # the next step would pass -e: the sweep ran to its end
    reached = last * step > sweep.max_bytes if kind == "factor" and step > 1 else last + step > sweep.max_bytes
    if reached:
        return None
    return (f"the sweep from line {sweep.rows[0].line} stopped at {sweep.rows[-1].size_bytes} B, short of the "
            f"{sweep.max_bytes} B that -e asked for (a truncated log, or a run that died)")


def _peak(sweep: Sweep) -> SizeRow:
    largest = max(r.size_bytes for r in sweep.rows)
    return max((r for r in sweep.rows if r.size_bytes >= largest // 8), key=lambda r: r.best_busbw)


_ANONYMOUS_HOSTS = {"localhost", "localhost.localdomain", "127.0.0.1", "::1"}


def scope(run: NcclTestsRun, ranks: int | None, gpus_per_node: int) -> tuple[str | None, str]:
    """``("inter"|"intra", why)`` when the log proves where its ranks ran; ``(None, why not)`` otherwise.

    nccl-tests gives each rank of a host its own GPU (device = local rank x GPUs per rank, and NCCL
    refuses two ranks on one GPU), so more ranks than the type has GPUs span nodes whatever the rank
    lines' host names say (containers may all be ``localhost``); a name such as ``localhost`` proves
    no node at all.
    """
    listed = len(run.hosts) == 1 and run.hosts[0].lower() not in _ANONYMOUS_HOSTS
    if len(run.hosts) > 1:
        return "inter", f"{run.ranks} ranks on {len(run.hosts)} hosts ({', '.join(run.hosts[:4])})"
    if listed and not (gpus_per_node and run.ranks > gpus_per_node):
        return "intra", f"{run.ranks} ranks on one host ({run.hosts[0]})"
    if len(run.info_hosts) > 1:
        return "inter", f"NCCL INFO lines from {len(run.info_hosts)} hosts ({', '.join(run.info_hosts[:4])})"
    for count, how in ((run.ranks, "listed"), (ranks, "busbw/algbw implies")):
        if count and gpus_per_node and count > gpus_per_node:
            named = f" (all named {run.hosts[0]}: the names do not tell the nodes apart)" if run.hosts else ""
            return "inter", f"{how} {count} ranks, more than the {gpus_per_node} GPUs of one node{named}"
    if run.hosts:
        return None, f"every rank is listed on {run.hosts[0]}, a name that does not identify a node"
    return None, "the log does not list its ranks' hosts ('#  Rank N ... on HOST' lines)"
