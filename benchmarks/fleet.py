"""Fleet review at scale: generate N node reports (8 GPUs each), time `dhc report fleet` end to end.

Prints wall seconds and peak memory of the review (a subprocess), and the ratio to reading the same
files with ``pandas.read_json`` as a floor. Goal: under 10 s and 2 GB for 10,000 nodes.

    python benchmarks/fleet.py [--nodes 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fleetgen  # noqa: E402  (the synthetic fleet the tests use)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="write the fleet here and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="dhc-fleet-"))
    start = time.perf_counter()
    paths = fleetgen.write_fleet(folder, args.nodes, failed=set(range(0, args.nodes, 97)),
                                 incomplete=set(range(5, args.nodes, 211)), suspects={13: 4, 2027 % args.nodes: 1})
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    print(f"generated {args.nodes} reports ({megabytes:.0f} MB) in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dhc", "report", "fleet", str(folder), "-o", str(folder / "fleet.html"),
                    "--json", str(folder / "fleet.json"), "--csv", str(folder / "fleet.csv")],
                   check=True, stdout=subprocess.DEVNULL)
    review_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux

    import pandas as pd
    start = time.perf_counter()
    for path in paths:
        pd.read_json(path, typ="series")
    floor_s = time.perf_counter() - start
    print(f"dhc report fleet       : {review_s:8.2f} s, peak {peak_mb:7.0f} MB   (goal < 10 s, < 2048 MB)")
    print(f"pandas.read_json floor : {floor_s:8.2f} s (same files, one process)")
    print(f"ratio review/floor     : {review_s / floor_s:8.2f}")


if __name__ == "__main__":
    main()
