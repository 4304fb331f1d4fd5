"""The results table of nccl-tests (``all_reduce_perf`` and kin): line prefixes, layouts, rows.

What the real tool prints (NVIDIA/nccl-tests, src/common.cu, later src/util.cu): rank 0 prints a
``#`` header, then one row per size: the size in bytes, the element count, the type, the reduction
op, since 2.13 the root, then out-of-place and in-place groups of time, algbw, busbw and a check
column, numbers separated by spaces in fixed-width columns a wide value overflows. Layouts seen:

- 1.x (2017-18): ``bytes N type op | time algbw busbw res`` (time in ms, ``res`` the max error);
- 2.0-2.12 (2019-22): ``size count type redop | time algbw busbw error`` (``error``: max error);
- 2.13+ (2022-): ``size count type redop root | time algbw busbw #wrong`` (wrong elements, ``%g``
  so ``1.2e+06`` for large counts); ``N/A`` when validation is off (``-c 0``);
- 2.17.6+ with timestamps: a trailing ``YYYY-MM-DD HH:MM:SS``; ``-C``: ``cputime`` for ``time``;
- 2.19.2+ per-iteration timing: ``i_min i_max i_p99 i_cv%`` after each ``#wrong``.

Launchers prefix every line: Slurm ``srun -l`` (`` 0: ``), Open MPI ``--tag-output``
(``[1,0]<stdout>:``), MPICH ``-prepend-rank`` (``[0] ``), ``kubectl logs --timestamps``. Rows are
split on whitespace, never on columns. A line that starts like a row but cannot be read is kept as
an unreadable line (never a traceback, never silently dropped).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_PREFIX = re.compile(r"^(?:\[\d+,\d+\]<(?:stdout|stderr)>:\s?|\s*\d+:\s|\[\d+\]\s|"
                     r"\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)\s|\s*\|\s*\d{4}-\d\d-\d\dT[^|]*\|\s?)")
_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:inf|nan)$", re.IGNORECASE)
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d$")
_LEAD_NAMES = {"size": "size", "bytes": "size", "count": "count", "n": "count", "type": "type",
               "redop": "redop", "op": "redop", "root": "root"}
_CHECK_NAMES = {"#wrong": "count", "error": "delta", "res": "delta"}


def strip_prefix(line: str) -> str:
    """The line as the tool printed it, without the launchers' rank or time prefixes."""
    for _ in range(3):  # a tag-output prefix inside a kubectl timestamp, at most
        found = _PREFIX.match(line)
        if found is None or not found.group(0):
            break
        line = line[found.end():]
    return line


@dataclass(frozen=True)
class Layout:
    """Which columns a row has: lead names, then the names of one side (out-of-place, then in-place)."""

    lead: tuple[str, ...]
    side: tuple[str, ...]
    checks: str  # "count": wrong elements per row; "delta": the max error per row (older releases)
    timestamp: bool = False

    @property
    def width(self) -> int:
        return len(self.lead) + 2 * len(self.side) + (2 if self.timestamp else 0)


_SIDE_NEW = ("time", "algbw", "busbw", "#wrong")
_PER_ITERATION = ("i_min", "i_max", "i_p99", "i_cv%")
_GUESSES = {  # a table pasted without its header: the token count tells the release
    12: Layout(("size", "count", "type", "redop"), ("time", "algbw", "busbw", "error"), "delta"),
    13: Layout(("size", "count", "type", "redop", "root"), _SIDE_NEW, "count"),
    15: Layout(("size", "count", "type", "redop", "root"), _SIDE_NEW, "count", timestamp=True),
    21: Layout(("size", "count", "type", "redop", "root"), _SIDE_NEW + _PER_ITERATION, "count"),
    23: Layout(("size", "count", "type", "redop", "root"), _SIDE_NEW + _PER_ITERATION, "count", timestamp=True),
}


def header_layout(comment: str) -> Layout | None:
    """The layout a ``#`` header line announces; None when the line is not a column header."""
    names = [n.lower() for n in comment.lstrip("#").split()]
    if "busbw" not in names or not ({"size", "bytes"} & set(names[:1])):
        return None
    times = [i for i, n in enumerate(names) if n in ("time", "cputime")]
    timestamp = names[-1] == "timestamp"
    body = names[:-1] if timestamp else names
    if len(times) != 2 or body[times[0]:times[1]] != body[times[1]:]:
        return Layout(tuple(body), (), "unknown")  # announced, but not a shape dhc knows
    side = tuple("time" if n == "cputime" else n for n in body[times[0]:times[1]])
    checks = [_CHECK_NAMES[n] for n in side if n in _CHECK_NAMES]
    lead = tuple(_LEAD_NAMES.get(n, n) for n in body[:times[0]])
    if len(checks) != 1 or "algbw" not in side or lead[:2] != ("size", "count"):
        return Layout(tuple(body), (), "unknown")
    return Layout(lead, side, checks[0], timestamp)


@dataclass(frozen=True)
class Side:
    time: float
    algbw: float  # GB/s
    busbw: float  # GB/s
    check: float | None  # wrong elements or max error (see Layout.checks); None when "N/A"


@dataclass(frozen=True)
class SizeRow:
    line: int  # 1-based line number in the log
    size_bytes: int
    count: int
    dtype: str
    redop: str | None
    root: int | None
    out_of_place: Side
    in_place: Side
    checks: str  # "count" | "delta"

    @property
    def busbw(self) -> float:
        return self.out_of_place.busbw

    @property
    def in_place_busbw(self) -> float:
        return self.in_place.busbw

    @property
    def best_busbw(self) -> float:
        return max(self.out_of_place.busbw, self.in_place.busbw)

    @property
    def wrong(self) -> float | None:
        """Elements wrong in both runs of this size (None when not validated or an older layout)."""
        values = [s.check for s in (self.out_of_place, self.in_place) if s.check is not None]
        if not values or self.checks != "count":
            return None
        return sum(v for v in values if math.isfinite(v) and v > 0)  # an impossible count is named elsewhere

    def implausible(self) -> str | None:
        """Why a number in this row cannot be a measurement (inf, nan, negative), or None."""
        for label, side in (("out-of-place", self.out_of_place), ("in-place", self.in_place)):
            for name in ("time", "algbw", "busbw", "check"):
                value = getattr(side, name)
                if value is not None and (not math.isfinite(value) or value < 0):
                    return f"{label} {'#wrong' if name == 'check' else name} {value:g}"
        return None


class RowError(ValueError):
    """A line that starts like a results row but does not read as one."""


def looks_like_row(line: str) -> bool:
    """A size and a count first: a results row, readable or not (wrapper text rarely starts so)."""
    first = line.split(maxsplit=2)[:2]
    return len(first) == 2 and first[0].isdigit() and first[1].isdigit()


def parse_row(line: str, number: int, layout: Layout | None) -> SizeRow:
    tokens = line.split()
    if layout is None:
        layout = _GUESSES.get(len(tokens))
        if layout is None:
            raise RowError(f"{len(tokens)} fields, a shape no nccl-tests release prints")
    if layout.checks == "unknown":
        raise RowError(f"under a header dhc does not know ({' '.join(layout.lead)})")
    if len(tokens) != layout.width:
        raise RowError(f"{len(tokens)} fields where the header announces {layout.width}")
    if layout.timestamp and not _TIMESTAMP.match(tokens[-2]):
        raise RowError(f"{tokens[-2]!r} where the timestamp belongs")
    lead = dict(zip(layout.lead, tokens, strict=False))
    start = len(layout.lead)
    sides = [_side(tokens[start + i * len(layout.side):start + (i + 1) * len(layout.side)], layout.side)
             for i in (0, 1)]
    root = lead.get("root")
    return SizeRow(number, _int(lead["size"], "size"), _int(lead["count"], "count"), lead.get("type", "?"),
                   lead.get("redop"), None if root is None else _int(root, "root"), sides[0], sides[1],
                   layout.checks)


def _side(tokens: list[str], names: tuple[str, ...]) -> Side:
    values = dict(zip(names, tokens, strict=True))
    check_name = next(n for n in names if n in _CHECK_NAMES)
    check = values[check_name]
    return Side(_float(values["time"], "time"), _float(values["algbw"], "algbw"), _float(values["busbw"], "busbw"),
                None if check.upper() == "N/A" else _float(check, check_name))


def _int(token: str, name: str) -> int:
    if not re.fullmatch(r"-?\d{1,19}", token):  # past 19 digits it is no count nccl-tests could print
        raise RowError(f"{name} {token!r} is not a whole number")
    return int(token)


def _float(token: str, name: str) -> float:
    if not _FLOAT.match(token):
        raise RowError(f"{name} {token!r} is not a number")
    return float(token)
