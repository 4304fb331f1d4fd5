"""1,000 nodes join at once: seconds until every node has its Job and InProgress labels, and API
requests per node, against the emulated API server (real HTTP, the real kubernetes client).

Goal: all handled in under 60 s, at most 4 writes per node for the join transition.

The remediation scenario: 500 nodes at rest are marked UnschedulablePendingReboot at once (a bad
driver rollout), with the circuit breaker at 10% and the hyperpod actuator against the tests' local
SageMaker endpoint. Goal: exactly 50 rebooted, the breaker tripped once, and how long that took.

    python benchmarks/controller.py [--nodes 1000] [--workers 8]
    python benchmarks/controller.py --scenario remediation [--nodes 500]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from k8s_emulator import Emulator  # noqa: E402  (the emulator the tests use)
from sagemaker_server import SageMaker  # noqa: E402  (the local SageMaker endpoint the tests use)

from dhc import thresholds  # noqa: E402
from dhc.controller.jobs import JobSettings  # noqa: E402
from dhc.controller.loop import Controller, ControllerSettings  # noqa: E402
from dhc.k8s import scheme  # noqa: E402
from dhc.k8s.client import Kube  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--scenario", choices=["join", "remediation"], default="join")
    args = parser.parse_args()
    if args.scenario == "remediation":
        return remediation(args.nodes if args.nodes != 1000 else 500, args.workers)
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


def remediation(nodes: int, workers: int) -> None:
    import os

    from kubernetes import client

    from dhc.aws.actuators import HyperPod
    from dhc.controller.remediation import RemediationSettings

    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(key, value)
    keys, ids = scheme.Keys(), [f"i-{index:017x}" for index in range(nodes)]
    with Emulator() as emulator, SageMaker("bench", set(ids)) as sagemaker:
        for index, iid in enumerate(ids):
            emulator.add_node(f"gpu-{index:04d}", {"node.kubernetes.io/instance-type": "p5.48xlarge",
                                                   keys.check_status: "Failed", keys.health: "Unschedulable"},
                              provider_id=f"aws:///us-west-2a/{iid}", annotations={keys.generation: "1"},
                              status={"capacity": {"nvidia.com/gpu": "8"}})
        configuration = client.Configuration(host=emulator.url)
        configuration.connection_pool_maxsize = workers + 4
        kube = Kube(client.ApiClient(configuration), timeout_s=30)
        controller = Controller(kube, thresholds.load(), ControllerSettings(
            jobs=JobSettings(image="dhc-node:bench"), workers=workers, resync_s=5, watch_timeout_s=60,
            remediation=RemediationSettings("hyperpod")), HyperPod("bench", "us-west-2", sagemaker.url))
        stop = threading.Event()
        threading.Thread(target=controller.run, args=(stop,), daemon=True).start()
        while len(controller.nodes) < nodes:
            time.sleep(0.1)
        start = time.perf_counter()
        for index in range(nodes):
            emulator.set_node_labels(f"gpu-{index:04d}", {keys.health: "UnschedulablePendingReboot"})
        limit = max(1, nodes // 10)
        while len(sagemaker.actions) < limit or not any(e["reason"] == "RemediationBreakerTripped"
                                                        for e in emulator.events):
            if time.perf_counter() - start > 300:
                raise SystemExit(f"only {len(sagemaker.actions)} reboots after 300 s")
            time.sleep(0.1)
        acted = time.perf_counter() - start
        time.sleep(12)  # two more resyncs: every marked node looked at again, none may act
        stop.set()
        trips = sum(1 for e in emulator.events if e["reason"] == "RemediationBreakerTripped")
    done = len(sagemaker.actions)
    print(f"{nodes} nodes marked at once, breaker at 10%: {done} rebooted (goal exactly {limit}) "
          f"{'OK' if done == limit else 'WRONG'}; breaker tripped {trips} time(s); "
          f"{limit} acted on {acted:.2f} s after the marking")


if __name__ == "__main__":
    main()
