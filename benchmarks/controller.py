"""1,000 nodes join at once: seconds until every node has its Job and InProgress labels, and API
requests per node, against the emulated API server (real HTTP, the real kubernetes client).

Goal: all handled in under 60 s, at most 4 writes per node for the join transition.

    python benchmarks/controller.py [--nodes 1000] [--workers 8]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from k8s_emulator import Emulator  # noqa: E402  (the emulator the tests use)

from dhc import thresholds  # noqa: E402
from dhc.controller.jobs import JobSettings  # noqa: E402
from dhc.controller.loop import Controller, ControllerSettings  # noqa: E402
from dhc.k8s import scheme  # noqa: E402
from dhc.k8s.client import Kube  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    from kubernetes import client

    keys = scheme.Keys()
    with Emulator() as emulator:
        configuration = client.Configuration(host=emulator.url)
        configuration.connection_pool_maxsize = args.workers + 4
        kube = Kube(client.ApiClient(configuration), timeout_s=30)
        controller = Controller(kube, thresholds.load(), ControllerSettings(
            jobs=JobSettings(image="dhc-node:bench"), workers=args.workers, resync_s=30, watch_timeout_s=60))
        stop = threading.Event()
        threading.Thread(target=controller.run, args=(stop,), daemon=True).start()
        time.sleep(1.0)  # the controller has listed the empty cluster and is watching
        before = len(emulator.requests)
        start = time.perf_counter()
        for index in range(args.nodes):
            emulator.add_node(f"gpu-{index:04d}", {"node.kubernetes.io/instance-type": "p5.48xlarge"})
        joined = time.perf_counter()
        while True:
            done = sum(1 for n in emulator.nodes.values()
                       if n["metadata"]["labels"].get(keys.check_status) == "InProgress")
            if done == args.nodes and len(emulator.jobs) == args.nodes:
                break
            if time.perf_counter() - start > 300:
                raise SystemExit(f"only {done} of {args.nodes} nodes handled after 300 s")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        stop.set()
        requests = emulator.requests[before:]
        writes = [r for r in requests if r[0] in ("PATCH", "POST", "PUT", "DELETE")]
        reads = [r for r in requests if r[0] == "GET"]
    print(f"{args.nodes} nodes joined in {joined - start:.2f} s (emulator side)")
    print(f"every node InProgress with its Job after {elapsed:.2f} s   (goal < 60 s) {'OK' if elapsed < 60 else 'OVER'}")
    print(f"writes per node: {len(writes) / args.nodes:.2f}   (goal <= 4)   reads per node: {len(reads) / args.nodes:.2f}")


if __name__ == "__main__":
    main()
