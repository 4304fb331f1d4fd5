"""nccl-tests output (``all_reduce_perf`` and kin): read a whole log into what it can prove.

What the real tool prints (NVIDIA/nccl-tests): rank 0 writes to stdout a ``#`` preamble (2.17.3+:
``# Collective test starting: all_reduce_perf``; every release: ``# nThread .. minBytes ..
maxBytes .. step: 2(factor)``; one ``#  Rank N .. on HOST device D`` line per rank), the table
(see ``nccl_table``), then ``# Out of bounds values : N OK|FAILED`` and ``# Avg bus bandwidth``.
A rank that fails prints ``HOST: Test NCCL failure FILE:LINE 'reason'`` (or ``Test CUDA failure``;
1.x: ``NCCL failure`` / ``Cuda failure``) and `` .. HOST pid P: Test failure FILE:LINE``, and exits
non-zero; Open MPI then adds ``mpirun noticed that process rank N ...`` or ``Primary job terminated
normally, but 1 process returned a non-zero exit code``.
With no GPU it fails in ``cudaGetDeviceCount`` (``Test CUDA failure .. 'no CUDA-capable device'``).
A run that finishes also exits non-zero when results were wrong (its ``Out of bounds values`` count
above 0) or the average busbw fell below ``NCCL_TESTS_MIN_BW``: ``exit(EXIT_FAILURE)`` (1) up to
2.19.5; since 2.19.6 ``main`` returns ``testNumResults`` (7) after `` .. HOST pid P: Test failure``.
So a non-zero exit is judged from the table first: wrong elements are a fault, not an error.

Every row is kept, in order: a size repeated by a second table or a ``-d all`` sweep starts a new
sweep, and every sweep is judged. Unreadable rows and impossible numbers are named, never dropped.
The judgement (what the log can speak to) lives in ``nccl_verdict``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dhc.probes import tool
from dhc.probes.nccl_table import Layout, RowError, SizeRow, header_layout, looks_like_row, parse_row, strip_prefix
from dhc.settings import child_environment

__all__ = ["Finished", "NcclTestsOutputError", "NcclTestsRun", "SizeRow", "Sweep", "parse", "run_all_reduce_perf"]

_RANK = re.compile(r"#\s+Rank\s+(?P<rank>\d+)\s+(?:Group\s+\d+\s+)?(?:Pid\s+\d+\s+)?on\s+(?P<host>\S+)\s+device\s+\d+")
_AVG = re.compile(r"#?\s*Avg bus bandwidth\s*:\s*(?P<avg>\S+)")
_BOUNDS = re.compile(r"#?\s*Out of bounds values\s*:\s*(?P<n>\d+)")
_NTHREAD = re.compile(r"#?\s*nThread \d+ nGpus \d+ minBytes \d+ maxBytes (?P<max>\d+) step: (?P<step>\d+)\((?P<kind>\w+)\)")
_REDUCED = re.compile(r"#?\s*Reducing maxBytes to (?P<max>\d+)")
_PROGRAM = re.compile(r"# Collective test starting: (?P<program>\S+)")
_BLOCKING = re.compile(r"#?\s*Blocking Enabled")
_FAILURE = re.compile(r"(?:Test (?:NCCL |CUDA )?|\b(?:NCCL|Cuda) )failure \S+:\d+.*|\bmpirun noticed that process rank .*|"
                      r"Primary job\s+terminated normally, but \d+ process(?:es)? returned.*")
_WARN = re.compile(r"NCCL WARN .*")
_INFO_HOST = re.compile(r"^(?P<host>[\w.-]+):\d+:\d+ \[\d+\] NCCL (?:INFO|WARN)")
_ELISION = re.compile(r"^\s*(?:\.{3,}|…|\[\.\.\.\]|\[\s*\d+ lines? (?:elided|omitted)\s*\])\s*$")


class NcclTestsOutputError(Exception):
    pass


@dataclass
class Sweep:
    """One run of sizes (one table, or one type/op of a ``-d all`` table) and what was asked of it."""

    rows: list[SizeRow]
    max_bytes: int | None  # -e, from the "# nThread" line above it (None when the log lacks it)
    step: tuple[int, str] | None  # (2, "factor") or (1048576, "bytes")


@dataclass
class NcclTestsRun:
    rows: tuple[SizeRow, ...]
    sweeps: tuple[Sweep, ...]
    ranks: int  # ranks listed in "# Rank" lines (0 when not listed)
    hosts: tuple[str, ...]  # their hosts, in rank order
    avg_busbw: float | None
    info_hosts: tuple[str, ...] = ()  # hosts that printed NCCL INFO/WARN lines
    program: str | None = None
    out_of_bounds: int | None = None  # the footer's count; None when the log has no footer
    failures: tuple[str, ...] = ()  # "Test NCCL failure ..." and the first NCCL WARNs
    unreadable: tuple[str, ...] = ()  # "line N: why: first bytes"
    elided: bool = False
    blocking: bool = False
    repeated_ranks: tuple[str, ...] = ()  # one rank listed on two hosts: separate runs, not one

    def peak_busbw(self, from_bytes: int = 0) -> SizeRow:
        """The row with the highest bus bandwidth among sizes >= ``from_bytes``."""
        rows = [r for r in self.rows if r.size_bytes >= from_bytes] or list(self.rows)
        return max(rows, key=lambda r: r.best_busbw)

    def largest(self) -> SizeRow:
        return max(self.rows, key=lambda r: r.size_bytes)

    @property
    def wrong(self) -> int:
        return int(sum(r.wrong or 0 for r in self.rows))


@dataclass
class _Reader:
    layout: Layout | None = None
    max_bytes: int | None = None
    step: tuple[int, str] | None = None
    sweeps: list[Sweep] = field(default_factory=list)
    ranks: dict[int, str] = field(default_factory=dict)
    repeated_ranks: list[str] = field(default_factory=list)
    info_hosts: dict[str, None] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    out_of_bounds: int | None = None
    avg: float | None = None
    program: str | None = None
    blocking: bool = False
    elided: bool = False

    def row(self, row: SizeRow) -> None:
        last = self.sweeps[-1].rows[-1] if self.sweeps and self.sweeps[-1].rows else None
        if last is None or row.size_bytes <= last.size_bytes or (row.dtype, row.redop) != (last.dtype, last.redop):
            self.sweeps.append(Sweep([], self.max_bytes, self.step))
        self.sweeps[-1].rows.append(row)

    def comment(self, line: str) -> None:
        if (layout := header_layout(line)) is not None:
            self.layout = layout
            self.sweeps.append(Sweep([], self.max_bytes, self.step))
        elif (found := _RANK.search(line)) is not None:
            rank = int(found["rank"])
            if self.ranks.get(rank, found["host"]) != found["host"]:  # each process its own "Rank 0": no MPI
                self.repeated_ranks.append(f"rank {rank} on {self.ranks[rank]} and {found['host']}")
            self.ranks[rank] = found["host"]
        elif not self.summary(line) and (found := _PROGRAM.match(line)) is not None:
            self.program = found["program"].rsplit("/", 1)[-1]
        elif _BLOCKING.match(line):
            self.blocking = True

    def summary(self, line: str) -> bool:
        """The run's parameters and footer (nccl-tests 1.x printed them without the leading "#")."""
        if (found := _NTHREAD.match(line)) is not None:
            self.max_bytes, self.step = int(found["max"]), (int(found["step"]), found["kind"])
        elif (found := _REDUCED.match(line)) is not None:  # too little GPU memory for -e: nccl-tests lowers it
            self.max_bytes = int(found["max"])
        elif (found := _BOUNDS.match(line)) is not None:  # one footer per table: add them up
            self.out_of_bounds = int(found["n"]) + (self.out_of_bounds or 0)
        elif (found := _AVG.match(line)) is not None:
            self.avg = _number(found["avg"])
        return found is not None

    def other(self, line: str, number: int) -> None:
        if (found := _INFO_HOST.match(line)) is not None:
            self.info_hosts[found["host"]] = None
        if self.summary(line.strip()):
            return
        if _ELISION.match(line):
            self.elided = True
        elif (failure := _FAILURE.search(line)) is not None:
            self.failures.append(failure.group(0).strip()[:300])
        elif (warning := _WARN.search(line)) is not None:
            self.warnings.append(warning.group(0).strip()[:300])
        elif "NCCL INFO" not in line and looks_like_row(line):
            try:
                self.row(parse_row(line, number, self.layout))
            except RowError as exc:
                self.unreadable.append(f"line {number}: {exc}: {line.strip()[:80]!r}")


def parse(text: str) -> NcclTestsRun:
    """Every row, sweep and fact of an nccl-tests log; ``NcclTestsOutputError`` when it has no row at all."""
    reader = _Reader()
    for number, raw in enumerate(text.splitlines(), 1):
        line = strip_prefix(raw.rstrip())
        try:
            if line.lstrip().startswith("#"):
                reader.comment(line.lstrip())
            else:
                reader.other(line, number)
        except ValueError as exc:  # a number no parser can take (Python refuses ints past 4,300 digits)
            raise NcclTestsOutputError(f"unrecognised line {number}: {exc}: {line.strip()[:80]!r}") from None
    rows = tuple(r for s in reader.sweeps for r in s.rows)
    failures = tuple(dict.fromkeys(reader.failures[:4] + reader.warnings[:2]))
    if not rows and not reader.unreadable:
        raise NcclTestsOutputError(_no_table(text, failures))
    return NcclTestsRun(
        rows, tuple(s for s in reader.sweeps if s.rows), len(reader.ranks),
        tuple(dict.fromkeys(reader.ranks[r] for r in sorted(reader.ranks))), reader.avg, tuple(reader.info_hosts),
        reader.program, reader.out_of_bounds, failures if reader.failures else (), tuple(reader.unreadable),
        reader.elided, reader.blocking, tuple(reader.repeated_ranks))


def _no_table(text: str, failures: tuple[str, ...]) -> str:
    if failures:
        return "the run died before its results table: " + "; ".join(failures)
    first = text.strip()[:80]
    return f"no results table in the nccl-tests output (first bytes: {first!r})" if first else \
        "no results table in the nccl-tests output (the log is empty)"


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


@dataclass(frozen=True)
class Finished:
    """What all_reduce_perf printed (stdout and stderr together) and how it exited."""

    binary: str
    output: str
    returncode: int

    def failure(self) -> str | None:
        """Why its exit status is no pass, with the error text it printed; None when it exited 0."""
        if self.returncode == 0:
            return None
        said = _said(self.output) or (self.output.strip()[-300:] or "(no output)")
        return f"{self.binary} exited {self.returncode}: {said}"


def run_all_reduce_perf(binary: str = "all_reduce_perf", min_bytes: str = "8", max_bytes: str = "2G",
                        gpus: int = 1, timeout_s: float = 600, environment: dict[str, str] | None = None) -> Finished:
    """Run nccl-tests' all_reduce_perf on this node (one process driving ``gpus`` GPUs, results checked).

    Returns its output and exit status whatever the status (a non-zero exit may carry a table with
    wrong elements: the caller judges the table, then the status). Raises ``tool.ToolMissing``, or
    ``NcclTestsOutputError`` with the last size it finished when it runs past ``timeout_s`` (then it
    and everything it started are killed).
    """
    path = tool.locate(binary, "build NVIDIA/nccl-tests or point DHC_NCCL_TESTS at all_reduce_perf")
    argv = [path, "-b", min_bytes, "-e", max_bytes, "-f", "2", "-g", str(gpus), "-c", "1"]
    try:
        result = tool.run_tool(argv, timeout_s, env=child_environment(environment), merge_stderr=True)
    except tool.ToolTimeout as exc:
        raise NcclTestsOutputError(f"{exc}; {_progress(exc.partial)}") from None
    return Finished(binary, result.stdout, result.returncode)


def _said(output: str) -> str:
    """The failure lines (and the first NCCL WARN) a dying run printed."""
    lines = output.splitlines()
    failures = [m.group(0).strip() for m in map(_FAILURE.search, lines) if m]
    warnings = [m.group(0).strip() for m in map(_WARN.search, lines) if m]
    return "; ".join(dict.fromkeys(failures[:3] + warnings[:1]))


def _progress(partial: str) -> str:
    """How far a run that hung had got, from what it printed before it was killed."""
    try:
        rows = parse(partial).rows
    except NcclTestsOutputError:
        rows = ()
    where = f"the last size it finished was {rows[-1].size_bytes} B" if rows else "it finished no size"
    return f"{where}{'; ' + _said(partial) if _said(partial) else ''}"
