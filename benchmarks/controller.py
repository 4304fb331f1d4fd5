"""Controller scenarios against the emulated API server (real HTTP, the real kubernetes client).

join: 5,000 nodes join at once. The emulator runs in a child process, so the figures of this
process are the controller's own. Goals: every node InProgress with its Job in < 30 s, <= 2
writes and <= 1 read per node (counted at the emulator: the join patch and the Job; the patch
starts from the cached node, so a join needs no read), and the controller's memory: peak RSS < 1 GiB (and, with --tracemalloc,
the Python heap's peak; tracing slows the run, so the time is not judged then).

connectivity: 5,000 nodes whose stress passed (InProgress, stage stress-passed, EKS topology labels:
64 per layer-3, 8 layer-3 per layer-2) appear at once; the time until every node is at the
connectivity stage with its group's Job, a 2 s window for the remainders. Goals: <= 1 read per node
(each node's patch starts from the cached node) and <= 2 writes per node (its patch, and its share of
its group's Service and Job), counted at the emulator; the group count and sizes.

remediation: 500 nodes at rest are marked UnschedulablePendingReboot at once (a bad driver
rollout), with the circuit breaker at 10% and the hyperpod actuator against the tests' local
SageMaker endpoint. Goal: exactly 50 rebooted, the breaker tripped once, and how long that took.

    python benchmarks/controller.py [--nodes 5000] [--workers 8] [--tracemalloc]
    python benchmarks/controller.py --scenario connectivity [--nodes 5000]
    python benchmarks/controller.py --scenario remediation [--nodes 500]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import statistics
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from k8s_emulator import Emulator  # noqa: E402  (the emulator the tests use)
from sagemaker_server import SageMaker  # noqa: E402  (the local SageMaker endpoint the tests use)

from dhc import thresholds  # noqa: E402
from dhc.controller.jobs import JobSettings  # noqa: E402
from dhc.controller.loop import Controller, ControllerSettings  # noqa: E402
from dhc.k8s import scheme  # noqa: E402
from dhc.k8s.client import Kube  # noqa: E402

P5 = {"node.kubernetes.io/instance-type": "p5.48xlarge"}
P5_STATUS = {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"cpu": "191450m", "memory": "2097152000Ki",
                                                                  "nvidia.com/gpu": "8"}}
_KEYS = scheme.Keys()
STRESS_PASSED = {_KEYS.generation: "1", _KEYS.attempts: "1", _KEYS.stage: "stress-passed"}
WRITES = ("PATCH", "POST", "PUT", "DELETE")


def main() -> None:
    from grouping import grouping  # the connectivity grouping of 5,000 nodes (benchmarks/grouping.py)
    from resume import resume  # job auto-resume: 100 jobs interrupted at once (benchmarks/resume.py)

    scenarios = {"join": join, "connectivity": connectivity, "remediation": remediation, "grouping": grouping,
                 "resume": resume}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(scenarios), default="join")
    parser.add_argument("--nodes", type=int, help="default: 5000 (join, connectivity), 500 (remediation)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--tracemalloc", action="store_true", help="join: also trace the Python heap's peak")
    args = parser.parse_args()
    scenarios[args.scenario](args)


def _kube(url: str, workers: int) -> Kube:
    from kubernetes import client

    configuration = client.Configuration(host=url)
    configuration.connection_pool_maxsize = workers + 4
    return Kube(client.ApiClient(configuration), timeout_s=30)


def _emulator_process(conn: object) -> None:
    """The child: an Emulator answering the parent's commands over a pipe."""
    keys = scheme.Keys()
    with Emulator() as emulator:
        conn.send(emulator.url)  # type: ignore[attr-defined]
        while True:
            command, arg = conn.recv()  # type: ignore[attr-defined]
            if command == "add":
                for name in arg:
                    emulator.add_node(name, dict(P5))
                reply: object = None
            elif command == "add_passed":
                for name, labels in arg:
                    emulator.add_node(name, labels, status=copy.deepcopy(P5_STATUS), annotations=dict(STRESS_PASSED))
                reply = None
            elif command == "grouped":
                with emulator.lock:
                    batch = [(n["metadata"]["annotations"].get(keys.stage), n["metadata"]["annotations"].get(keys.batch))
                             for n in emulator.nodes.values()]
                    reply = [b for stage, b in batch if stage == "connectivity" and b in emulator.jobs]
            elif command == "progress":
                with emulator.lock:
                    reply = (sum(1 for n in emulator.nodes.values()
                                 if n["metadata"]["labels"].get(keys.check_status) == "InProgress"), len(emulator.jobs))
            elif command == "mark":
                reply = len(emulator.requests)
            elif command == "requests":
                reply = [r[0] for r in emulator.requests[arg:]]
            elif command == "cpu":
                reply = _cpu_s()
            else:
                conn.send(None)  # type: ignore[attr-defined]
                return
            conn.send(reply)  # type: ignore[attr-defined]


def join(args: argparse.Namespace) -> None:
    nodes = args.nodes or 5000
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=_emulator_process, args=(child,), daemon=True)
    server.start()

    def ask(command: str, arg: object = None) -> object:
        parent.send((command, arg))
        return parent.recv()

    url = parent.recv()
    controller = Controller(_kube(url, args.workers), thresholds.load(), ControllerSettings(
        jobs=JobSettings(image="dhc-node:bench"), workers=args.workers, resync_s=60, watch_timeout_s=60))
    rss_before = _rss_mib()
    if args.tracemalloc:
        tracemalloc.start()
    stop = threading.Event()
    threading.Thread(target=controller.run, args=(stop,), daemon=True).start()
    time.sleep(1.0)  # the controller has listed the empty cluster and is watching
    before, cpu_before, server_before = ask("mark"), _cpu_s(), ask("cpu")
    start = time.perf_counter()
    ask("add", [f"gpu-{index:05d}" for index in range(nodes)])
    joined = time.perf_counter()
    while True:
        done, jobs = ask("progress")  # type: ignore[misc]
        if done == nodes and jobs == nodes:
            break
        if time.perf_counter() - start > 600:
            raise SystemExit(f"only {done} of {nodes} nodes InProgress ({jobs} Jobs) after 600 s")
        time.sleep(0.25)
    elapsed = time.perf_counter() - start
    cpu, server_cpu = _cpu_s() - cpu_before, ask("cpu") - server_before  # type: ignore[operator]
    stop.set()
    heap = tracemalloc.get_traced_memory()[1] / 2**20 if args.tracemalloc else None
    methods = ask("requests", before)
    ask("stop")
    writes = sum(1 for m in methods if m in WRITES) / nodes  # type: ignore[union-attr]
    reads = sum(1 for m in methods if m == "GET") / nodes  # type: ignore[union-attr]
    rss = _rss_mib()
    print(f"{nodes} nodes added in {joined - start:.2f} s (emulator side), {args.workers} workers")
    print(_line("every node InProgress with its Job after", f"{elapsed:.2f} s", "< 30 s",
                args.tracemalloc or elapsed < 30, "" if not args.tracemalloc else " (traced: not judged)"))
    print(f"CPU per node: controller {cpu * 1000 / nodes:.1f} ms, emulator {server_cpu * 1000 / nodes:.1f} ms "
          f"(load-independent; the two run side by side, so an idle 2-core machine needs about "
          f"{max(cpu, server_cpu):.1f} s)")
    print(_line("writes per node", f"{writes:.2f}", "<= 2", writes <= 2))
    print(_line("reads per node", f"{reads:.2f}", "<= 1", reads <= 1))
    print(_line("controller peak RSS", f"{rss:.0f} MiB (at start {rss_before:.0f} MiB)", "< 1024 MiB", rss < 1024))
    if heap is not None:
        print(f"controller Python heap peak (tracemalloc): {heap:.0f} MiB, {heap * 1024 / nodes:.1f} KiB per node")


def connectivity(args: argparse.Namespace) -> None:
    from grouping import L3_PER_L2, PER_L3

    from dhc.controller.topology import LAYERS

    nodes, keys = args.nodes or 5000, scheme.Keys()
    ask, stop = _controller(args, batch_window_s=2.0)
    before, cpu_before = ask("mark"), _cpu_s()
    start = time.perf_counter()
    ask("add_passed", [(f"gpu-{i:05d}", dict(P5, **{keys.check_status: "InProgress"}, **dict(zip(
        LAYERS, (f"nn-{i // (PER_L3 * L3_PER_L2 * 4)}", f"nn-l2-{i // (PER_L3 * L3_PER_L2)}", f"nn-l3-{i // PER_L3}"),
        strict=True)))) for i in range(nodes)])
    while len(grouped := ask("grouped")) < nodes:  # type: ignore[arg-type]
        if time.perf_counter() - start > 600:
            raise SystemExit(f"only {len(grouped)} of {nodes} nodes in a started group after 600 s")  # type: ignore[arg-type]
        time.sleep(0.25)
    elapsed, cpu = time.perf_counter() - start, _cpu_s() - cpu_before
    stop.set()
    methods = ask("requests", before)
    ask("stop")
    sizes = sorted(Counter(grouped).values())  # type: ignore[arg-type]
    writes = sum(1 for m in methods if m in WRITES) / nodes  # type: ignore[union-attr]
    reads = sum(1 for m in methods if m == "GET") / nodes  # type: ignore[union-attr]
    print(f"{nodes} nodes whose stress passed, {args.workers} workers, window 2 s: {len(sizes)} groups, sizes "
          f"min {sizes[0]} / median {statistics.median(sizes):g} / max {sizes[-1]}; controller CPU "
          f"{cpu * 1000 / nodes:.1f} ms per node")
    print(_line("every node at the connectivity stage with its group's Job after", f"{elapsed:.2f} s",
                "< 30 s", elapsed < 30))
    print(_line("reads per node", f"{reads:.2f}", "<= 1", reads <= 1))
    print(_line("writes per node", f"{writes:.2f}", "<= 2", writes <= 2))
    print(_line("largest group", f"{sizes[-1]}", "<= 16", sizes[-1] <= 16))


def _controller(args: argparse.Namespace, **settings: Any) -> tuple[Callable[..., object], threading.Event]:
    """The emulator in a child process and a running controller against it: (ask the emulator, stop)."""
    parent, child = multiprocessing.Pipe()
    multiprocessing.get_context("fork").Process(target=_emulator_process, args=(child,), daemon=True).start()

    def ask(command: str, arg: object = None) -> object:
        parent.send((command, arg))
        return parent.recv()

    controller = Controller(_kube(parent.recv(), args.workers), thresholds.load(), ControllerSettings(
        jobs=JobSettings(image="dhc-node:bench"), workers=args.workers, resync_s=60, watch_timeout_s=60, **settings))
    stop = threading.Event()
    threading.Thread(target=controller.run, args=(stop,), daemon=True).start()
    time.sleep(1.0)  # the controller has listed the empty cluster and is watching
    return ask, stop


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _line(what: str, figure: str, goal: str, ok: bool, note: str = "") -> str:
    return f"{what}: {figure}   (goal {goal}) {'OK' if ok else 'MISSED'}{note}"


def remediation(args: argparse.Namespace) -> None:
    import os

    from kubernetes import client

    from dhc.aws.actuators import HyperPod
    from dhc.controller.remediation import RemediationSettings

    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ.setdefault(key, value)
    nodes, workers = args.nodes or 500, args.workers
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
