"""nccl-tests output (``all_reduce_perf`` and kin): parse the results table into measurements.

Tolerates a rank prefix (``0: ``), the header and footer, wrapper text around the log, and rows
repeated by a copy-paste (the last row for a size wins). nccl-tests' "Avg bus bandwidth" averages
every size; dhc judges the largest sizes instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from dhc.settings import child_environment

_ROW = re.compile(
    r"^(?:\s*\d+:)?\s+(?P<size>\d+)\s+(?P<count>\d+)\s+(?P<type>\w+)\s+(?P<redop>\w+|-)\s+(?P<root>-?\d+)\s+"
    r"(?P<time>[\d.]+)\s+(?P<algbw>[\d.]+)\s+(?P<busbw>[\d.]+)\s+(?P<wrong>\S+)\s+"
    r"(?P<ip_time>[\d.]+)\s+(?P<ip_algbw>[\d.]+)\s+(?P<ip_busbw>[\d.]+)\s+(?P<ip_wrong>\S+)\s*$")
_RANK = re.compile(r"#\s+Rank\s+(?P<rank>\d+)\s+(?:Group\s+\d+\s+)?Pid\s+\d+\s+on\s+(?P<host>\S+)\s+device\s+(?P<device>\d+)")
_AVG = re.compile(r"#\s*Avg bus bandwidth\s*:\s*(?P<avg>[\d.]+)")


class NcclTestsOutputError(Exception):
    pass


@dataclass(frozen=True)
class SizeRow:
    size_bytes: int
    dtype: str
    time_us: float  # out-of-place
    algbw: float  # GB/s
    busbw: float  # GB/s, out-of-place
    in_place_busbw: float
    wrong: int | None  # elements wrong (None when validation was off: "N/A")


@dataclass(frozen=True)
class NcclTestsRun:
    rows: tuple[SizeRow, ...]
    ranks: int
    hosts: tuple[str, ...]
    avg_busbw: float | None

    def peak_busbw(self, from_bytes: int = 0) -> SizeRow:
        """The row with the highest bus bandwidth among sizes >= ``from_bytes``."""
        rows = [r for r in self.rows if r.size_bytes >= from_bytes] or list(self.rows)
        return max(rows, key=lambda r: max(r.busbw, r.in_place_busbw))

    def largest(self) -> SizeRow:
        return max(self.rows, key=lambda r: r.size_bytes)

    @property
    def wrong(self) -> int:
        return sum(r.wrong or 0 for r in self.rows)


def parse(text: str) -> NcclTestsRun:
    by_size: dict[int, SizeRow] = {}
    hosts: dict[int, str] = {}
    avg = None
    for line in text.splitlines():
        line = line.rstrip()
        if (row := _ROW.match(line)) is not None:
            by_size[int(row["size"])] = SizeRow(
                int(row["size"]), row["type"], float(row["time"]), float(row["algbw"]), float(row["busbw"]),
                float(row["ip_busbw"]), _wrong(row["wrong"], row["ip_wrong"]))
        elif (rank := _RANK.search(line)) is not None:
            hosts[int(rank["rank"])] = rank["host"]
        elif (found := _AVG.search(line)) is not None:
            avg = float(found["avg"])
    if not by_size:
        raise NcclTestsOutputError("no results table in the nccl-tests output")
    rows = tuple(by_size[s] for s in sorted(by_size))
    return NcclTestsRun(rows, len(hosts), tuple(dict.fromkeys(hosts[r] for r in sorted(hosts))), avg)


def _wrong(out_of_place: str, in_place: str) -> int | None:
    values = [int(x) for x in (out_of_place, in_place) if x.isdigit()]
    return sum(values) if values else None


def run_all_reduce_perf(binary: str = "all_reduce_perf", min_bytes: str = "8", max_bytes: str = "2G",
                        gpus: int = 1, timeout_s: float = 600, environment: dict[str, str] | None = None) -> str:
    """Run nccl-tests' all_reduce_perf on this node (one process driving ``gpus`` GPUs, results checked)."""
    path = shutil.which(binary)
    if path is None:
        raise FileNotFoundError(f"{binary} is not on PATH")
    proc = subprocess.run([path, "-b", min_bytes, "-e", max_bytes, "-f", "2", "-g", str(gpus), "-c", "1"],
                          capture_output=True, text=True, timeout=timeout_s, env=child_environment(environment))
    if proc.returncode != 0:
        raise NcclTestsOutputError(f"{binary} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-300:]}")
    return proc.stdout
