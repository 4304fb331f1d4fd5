"""Fleet review at scale: generate node reports (8 GPUs, every check, ~68 kB each), time `dhc report fleet`.

Side by side in one run: 100,000 reports each with its fleet row (``fleet-row.json``, what every
run writes beside report.json; goal < 30 s and < 2 GB), and the fallback path: 10,000 reports of
runs from before rows (report.json only). For each, the wall seconds of `dhc report fleet` end to
end (a subprocess: find, read, analyse, write page, CSV and JSON), its CPU seconds (all processes)
and its peak memory (the sampled RSS of the process and its pool workers), with the load average
of the machine before and after (the CPUs are shared: CPU seconds say what idle cores would do).
``--baseline REF`` also reviews with the dhc of git revision REF. The page's own load time in
headless Chromium is printed when Chromium is installed.

    python benchmarks/fleet.py [--nodes 100000] [--fallback 10000] [--workers 2] [--baseline REF] [--keep DIR]
                               [--phases 20000]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import fleetgen  # noqa: E402  (the synthetic fleet the tests use)

SHARD = 10_000  # reports per folder: the 10,000-report review reads the first folder
GOALS = {100_000: (30.0, 2048.0)}


def generate(folder: Path, nodes: int, rows: bool = True) -> float:
    """Write ``nodes`` reports (and their rows unless ``rows`` is False) in shards of 10,000; returns MB written."""
    total = 0
    for start in range(0, nodes, SHARD):
        shard = folder / f"shard-{start // SHARD:02d}"
        if (shard / "done").exists():
            continue
        paths = fleetgen.write_fleet(shard, min(SHARD, nodes - start), start=start,
                                     failed=set(range(start, start + SHARD, 97)),
                                     incomplete=set(range(start + 5, start + SHARD, 211)), suspects={start + 13: 4},
                                     rows=rows)
        total += sum(p.stat().st_size for p in paths)
        (shard / "done").write_text("")
    return total / 1e6


def tree_rss_mb(pid: int) -> float:
    """RSS of ``pid`` and all its descendants, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            todo += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return total / 2**20


# What `dhc report fleet` does, in calls both the old and the new dhc.fleet answer to
_DRIVER = """import sys
from pathlib import Path
from dhc import fleet
from dhc.report import write_json_atomic
from dhc.report.fleet_html import write_fleet
out = Path(sys.argv[1])
document, table = fleet.review([Path(p) for p in sys.argv[2:]])
write_fleet(document, out / "fleet.html")
write_json_atomic(out / "fleet.json", document)
fleet.write_csv(table, out / "fleet.csv")
"""


def review(paths: list[Path], out: Path, workers: int | None, old: Path | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak tree RSS (MB) and CPU seconds (all processes) of one review: `dhc report fleet`,
    or the old tree's equivalent. CPU seconds say what the wall time would be on idle cores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if old is None:
        argv = [sys.executable, "-m", "dhc", "report", "fleet", *map(str, paths), "-o", str(out / "fleet.html"),
                "--json", str(out / "fleet.json"), "--csv", str(out / "fleet.csv"), "--workers", str(workers)]
    else:
        argv = [sys.executable, "-c", _DRIVER, str(out), *map(str, paths)]
    env = dict(os.environ, PYTHONPATH=str(old or ROOT))
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=out)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"the review failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, peak[0], (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


FLEET_FILES = ["dhc/fleet", "dhc/report/fleet_html.py", "dhc/report/templates"]


def old_tree(ref: str) -> Path:
    """This tree's dhc with the fleet review's files of git revision ``ref`` (the repository is untouched)."""
    folder = Path(tempfile.mkdtemp(prefix="dhc-old-"))
    shutil.copytree(ROOT / "dhc", folder / "dhc", ignore=shutil.ignore_patterns("__pycache__"))
    for path in FLEET_FILES:
        shutil.rmtree(folder / path, ignore_errors=True) if (folder / path).is_dir() else None
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, *FLEET_FILES], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def page_load_ms(page: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return "Chromium not installed"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                               "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    ready = re.search(r'data-ready-ms="(\d+)"', proc.stdout)
    return f"{ready.group(1)} ms to a usable page" if ready else "no ready mark (the page script did not finish)"


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def phases(shards: list[Path]) -> str:
    """CPU seconds of each step of one review in this process: reading (what the pool shares out, here in
    one process) and the serial work after it (analysis, CSV, JSON, page)."""
    from dhc import fleet
    from dhc.report.fleet_html import write_fleet
    out, steps = Path(tempfile.mkdtemp(prefix="dhc-fleet-phases-")), {}

    def step(name: str, call: Callable[[], Any]) -> Any:
        start = time.process_time()
        result = call()
        steps[name] = time.process_time() - start
        return result
    loaded = step("find+read+merge", lambda: fleet.load(shards, workers=1))
    document, table = step("analysis", lambda: fleet.analyse(loaded))
    step("csv", lambda: fleet.write_csv(table, out / "fleet.csv"))
    step("json", lambda: fleet.write_json(document, out / "fleet.json"))
    step("page", lambda: write_fleet(document, out / "fleet.html", {"CSV": out / "fleet.csv"}))
    shutil.rmtree(out, ignore_errors=True)
    tail = sum(seconds for name, seconds in steps.items() if name != "find+read+merge")
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in steps.items()) + f"; after reading {tail:.2f}"


def timed(label: str, shards: list[Path], outs: Path, workers: int | None, goal: str = "", old: Path | None = None) -> Path:
    out = Path(tempfile.mkdtemp(dir=outs))
    before = load()
    wall, peak, cpu = review(shards, out, workers, old)
    print(f"{label}: {wall:7.2f} s, peak {peak:6.0f} MB, CPU {cpu:6.1f} s {goal} [{before} -> {load()}]", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100_000], help="fleet sizes, with rows")
    parser.add_argument("--fallback", type=int, default=10_000, help="reports without rows (0: none)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--baseline", help="also review with the dhc of this git revision (old path)")
    parser.add_argument("--baseline-max", type=int, default=10_000, help="largest fleet the baseline reviews")
    parser.add_argument("--keep", type=Path, help="write the fleet here and keep it (reused when run again)")
    parser.add_argument("--phases", type=int, default=0, help="also time each step of one in-process review of "
                        "this many reports (CPU s; 0: none)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="dhc-fleet-"))
    start = time.perf_counter()
    megabytes = generate(folder / "rows", max(args.nodes)) + generate(folder / "no-rows", args.fallback, rows=False)
    print(f"generated {max(args.nodes)} reports with rows and {args.fallback} without ({megabytes:.0f} MB new) in "
          f"{time.perf_counter() - start:.1f} s in {folder}; {os.cpu_count()} CPUs, {load()}", flush=True)
    old = old_tree(args.baseline) if args.baseline else None
    outs = Path(tempfile.mkdtemp(prefix="dhc-fleet-out-"))
    try:
        for nodes in sorted(args.nodes):
            shards = sorted((folder / "rows").glob("shard-*"))[: -(-nodes // SHARD)]
            goal_s, goal_mb = GOALS.get(nodes, (None, None))
            goal = f"(goal < {goal_s:.0f} s, < {goal_mb:.0f} MB)" if goal_s else ""
            for workers in args.workers:
                out = timed(f"{nodes:>7} reports with rows, {workers} process(es)", shards, outs, workers, goal)
            if old is not None and nodes <= args.baseline_max:
                timed(f"{nodes:>7} reports, old path {args.baseline}", shards, outs, None, old=old)
            print(f"{'':>7} page {(out / 'fleet.html').stat().st_size / 1e3:.0f} kB: {page_load_ms(out / 'fleet.html')}")
        if args.phases:
            shards = sorted((folder / "rows").glob("shard-*"))[: -(-args.phases // SHARD)]
            print(f"{args.phases:>7} reports in one process, CPU s: {phases(shards)}", flush=True)
        if args.fallback:
            shards = sorted((folder / "no-rows").glob("shard-*"))
            for workers in args.workers:
                timed(f"{args.fallback:>7} reports without rows (report.json), {workers} process(es)", shards, outs,
                      workers)
    finally:
        shutil.rmtree(outs, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
