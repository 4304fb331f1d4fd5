"""Find report.json files and read them, in parallel, into one compact Fleet.

A file that cannot be read, is not JSON, or is not a dhc report of schema 1.x is skipped and
listed with the reason; one bad file never stops the review. Only regular files are read (a FIFO
named report.json is listed, never waited on), and symbolic links to folders are listed, not
followed (no loops, no walking out of the tree). A measured value that is NaN or infinite is kept
as NaN in the table, so distributions can leave it out while the node still counts.

Batches of files go to a process pool (``workers``, default the CPUs this process may use); each
returns a ``read.Part`` of arrays, merged here in file order as they arrive. No worker returns
per-measurement Python objects: the Fleet holds some 19 bytes a measurement, not a dict each.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dhc.errors import DhcError
from dhc.fleet.read import CHECK_STATUSES, JUDGEMENTS, NODE_COLUMNS, SERIES_COLUMNS, Part, read_batch

BATCH = 1000  # files per task: large enough to amortise the hand-over, small enough to share out evenly
MEASUREMENT_COLUMNS = ["instance_id", "instance_type", "check", "metric", "device", "value", "unit", "limit",
                       "limit_unit", "comparison", "judgement"]


@dataclass
class Fleet:
    nodes: pd.DataFrame  # NODE_COLUMNS, one row per report, in file order
    series: pd.DataFrame  # SERIES_COLUMNS: one row per type, check, metric, unit and limit
    values: pd.DataFrame  # node (row of nodes), series (row of series), device, value, judgement
    checks: pd.DataFrame  # instance_type, check, and a column of reports per check status
    problems: pd.DataFrame  # instance_id, instance_type, check, status, reason: each Failed/Incomplete check
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    from_rows: int = 0  # reports read from their fleet row (fleet-row.json)
    fallback: dict[str, int] = field(default_factory=dict)  # why report.json was read instead -> reports
    fallback_files: list[tuple[str, str]] = field(default_factory=list)  # (file, why) of each stale/corrupt row

    def measurements(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Measurements with their labels (MEASUREMENT_COLUMNS): all, or the ``values`` rows at ``rows``."""
        picked = self.values if rows is None else self.values.iloc[rows]
        labels = self.series.iloc[picked["series"].to_numpy()].reset_index(drop=True)
        out = pd.DataFrame({"instance_id": self.nodes["instance_id"].to_numpy()[picked["node"].to_numpy()]})
        out = pd.concat([out, labels], axis=1)
        out["device"] = picked["device"].astype(str).to_numpy()
        out["value"] = picked["value"].to_numpy()
        out["judgement"] = picked["judgement"].astype(str).to_numpy()
        out.index = picked.index
        return out[MEASUREMENT_COLUMNS]


def report_files(paths: list[Path]) -> list[Path]:
    """Files as given, and every report.json below each folder given."""
    return find_reports(paths)[0]


def find_reports(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Report files, and (path, why) for each symbolic link to a folder met on the way (not followed),
    or a folder that could not be listed. One scandir per folder, sorted as text: 100,000 node
    folders in about a second (os.walk and sorting Path objects took ten)."""
    skipped: list[tuple[str, str]] = []
    return [Path(p) for p in _reports(paths, skipped)], skipped


def _reports(paths: list[Path], skipped: list[tuple[str, str]]) -> Iterator[str]:
    """The report files as text, in text order, found as they are yielded (a single folder is walked in that
    order, so its first reports are read while the rest are still being found); ``skipped`` fills meanwhile."""
    if len(paths) == 1 and paths[0].is_dir():
        yield from _walk(str(paths[0]), skipped)
        return
    found: list[str] = []
    for path in paths:
        found.extend(_walk(str(path), skipped) if path.is_dir() else [str(path)])
    yield from sorted(found)


def _walk(root: str, skipped: list[tuple[str, str]]) -> Iterator[str]:
    """Every report.json below ``root`` in the order ``sorted`` gives their paths: a folder's entries in the
    order of their name, with "/" after a folder's (its paths go on with "/"), depth first."""
    stack: list[tuple[str, bool]] = [(root, True)]
    while stack:
        path, is_folder = stack.pop()
        if not is_folder:
            yield path
            continue
        entries = _scan(path, skipped)
        if len(entries) == 1 and not entries[0][2]:
            yield entries[0][1]  # a node's folder: its report, and nothing to sort
            continue
        entries.sort(reverse=True)  # popped in order of their key
        stack.extend((entry, folder) for _, entry, folder in entries)


def _scan(folder: str, skipped: list[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """(sort key, path, is a folder) of each folder and report.json in ``folder``."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    found.append((entry.name + "/", entry.path, True))
                elif entry.is_symlink() and entry.is_dir():
                    skipped.append((entry.path, "a symbolic link to a folder; not followed"))
                elif entry.name == "report.json":
                    found.append((entry.name, entry.path, False))
    except OSError as exc:
        skipped.append((folder, str(exc)))
    return found


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load(paths: list[Path], workers: int | None = None, batch: int = BATCH) -> Fleet:
    """Read every report; batches go to the pool as the walk finds them: reading starts once there is one for
    each process (at most ``workers``, never more than the batches), not after the walk of every folder."""
    links: list[tuple[str, str]] = []
    batches = _batches(_reports(paths, links), batch)
    workers = default_workers() if workers is None else workers
    first = list(itertools.islice(batches, max(workers, 1)))  # no more processes than batches; one: no pool
    if workers > 1 and len(first) > 1:
        try:
            with ProcessPoolExecutor(max_workers=len(first)) as pool:  # in file order, merged as they arrive
                return merge(pool.map(read_batch, itertools.chain(first, batches)), links)
        except BrokenProcessPool as exc:  # a worker killed (out of memory, a signal): no partial review
            raise DhcError(f"a process reading reports died ({exc}); nothing was reviewed. Try fewer "
                           f"--workers, or more memory") from exc
    return merge(map(read_batch, itertools.chain(first, batches)), links)


def _batches(files: Iterator[str], size: int) -> Iterator[list[str]]:
    """Lists of ``size`` files in order, the last shorter; one empty list when there are none."""
    empty = True
    while batch := list(itertools.islice(files, size)):
        empty = False
        yield batch
    if empty:
        yield []


_DTYPES = {"node": np.int32, "series": np.int32, "device": np.int16, "value": np.float64, "judgement": np.int8}


def merge(parts: Iterable[Part], skipped: list[tuple[str, str]]) -> Fleet:
    """One Fleet from the parts in order; each part's arrays are dropped once copied, so the peak stays
    near one copy of the values (some 19 bytes a measurement) plus the node rows. ``skipped`` is read once
    the parts are done (``load`` fills it while it finds the files the parts are read from)."""
    series: dict[tuple, int] = {}
    devices: dict[str, int] = {}
    columns: dict[str, list[np.ndarray]] = {name: [] for name in _DTYPES}
    nodes, problems, checks, unread = [], [], [], []
    from_rows, fallback, fallback_files = 0, Counter(), []
    for part in parts:
        remap_series = np.array([series.setdefault(series_row(k), len(series)) for k in part.series], dtype=np.int32)
        remap_device = np.array([devices.setdefault(k, len(devices)) for k in part.devices], dtype=np.int16)
        columns["node"].append(np.frombuffer(part.node, dtype=np.int32) + np.int32(len(nodes)))
        columns["series"].append(remap_series[np.frombuffer(part.code, dtype=np.int32)])
        columns["device"].append(remap_device[np.frombuffer(part.device, dtype=np.int32)])
        columns["value"].append(np.array(part.value, dtype=np.float64))
        columns["judgement"].append(np.array(part.judgement, dtype=np.int8))
        nodes += part.nodes
        problems += part.problems
        checks.append(part.checks)
        unread += part.skipped
        from_rows, fallback = from_rows + part.from_rows, fallback + part.fallback
        fallback_files += part.fallback_files
    joined = {}
    for name, dtype in _DTYPES.items():  # one column at a time: the pieces go as the whole comes
        joined[name] = np.concatenate(columns.pop(name)) if nodes else np.zeros(0, dtype=dtype)
    values = pd.DataFrame({
        "node": joined["node"], "series": joined["series"],
        "device": pd.Categorical.from_codes(joined["device"], categories=list(devices)),
        "value": joined["value"],
        "judgement": pd.Categorical.from_codes(joined["judgement"], categories=JUDGEMENTS)}, copy=False)
    return Fleet(pd.DataFrame(nodes, columns=NODE_COLUMNS), _series_table(series), values, _check_table(checks),
                 pd.DataFrame(problems, columns=["instance_id", "instance_type", "check", "status", "reason"]),
                 [*skipped, *unread],
                 from_rows, dict(sorted(fallback.items())), fallback_files)


def series_row(key: tuple) -> tuple:
    """A part's series key as SERIES_COLUMNS values; the limit is a decoded struct, a tuple, or None."""
    *head, limit = key
    if limit is None:
        return (*head, None, None, None)
    if isinstance(limit, tuple):
        return (*head, *limit)
    return (*head, limit.comparison, limit.value, limit.unit)


def _series_table(series: dict[tuple, int]) -> pd.DataFrame:
    table = pd.DataFrame(list(series), columns=SERIES_COLUMNS)
    table["limit"] = pd.to_numeric(table["limit"], errors="coerce")  # a limit no number is no limit to draw
    return table


def _check_table(counters: list[Counter]) -> pd.DataFrame:
    """Reports per instance type and check, one column per check status (Passed, Failed, ...)."""
    total: dict[tuple[str, str], dict[str, int]] = {}
    for counter in counters:
        for (itype, check, status), n in counter.items():
            row = total.setdefault((itype, check), dict.fromkeys(CHECK_STATUSES, 0))
            row[status] = row.get(status, 0) + n
    rows = [{"instance_type": t, "check": c, **counts} for (t, c), counts in sorted(total.items(), key=lambda kv: tuple(map(str, kv[0])))]
    return pd.DataFrame(rows, columns=["instance_type", "check", *CHECK_STATUSES])
