"""Job auto-resume at scale: 100 opted-in PyTorchJobs (a Master and a Worker each) run on 200 nodes,
with 100 spare Schedulable nodes; one node under every job is marked UnschedulablePendingReplacement
and its pod's container crashes (restartPolicy OnFailure: the kubelet restarts it in place, the pod stays
Running with restartCount 1). Measured: seconds from the marks to every job's pods Running again on healthy
nodes (each job suspended, resumed, its pods re-created by the training-operator stand-in), and the
API requests dhc made per job. The emulator and its stand-ins are the tests' (tests/k8s_workloads.py).

Goal: all 100 jobs running again within 30 s with the default 5 s pass (two passes, plus the
operator's re-creation), at most 6 writes per interrupted job.

    python benchmarks/controller.py --scenario resume [--nodes 100]   (--nodes: the number of jobs)
"""

from __future__ import annotations

import argparse
import copy
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from k8s_emulator import Emulator  # noqa: E402
from k8s_workloads import Workloads  # noqa: E402

from dhc.k8s.client import Kube  # noqa: E402
from dhc.resume.loop import Resumer, ResumeSettings  # noqa: E402
from dhc.resume.state import ResumeKeys  # noqa: E402

KEYS = ResumeKeys("sagemaker.amazonaws.com")
READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}


def _job(index: int) -> dict:
    template = {"spec": {"nodeSelector": {KEYS.health: "Schedulable"},
                         "containers": [{"name": "pytorch", "image": "trainer:1"}]}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {
        "name": f"train-{index:03d}", "annotations": {KEYS.enabled: "true", KEYS.max_retries: "2"}},
        "spec": {"pytorchReplicaSpecs": {
            role: {"replicas": 1, "restartPolicy": "OnFailure", "template": copy.deepcopy(template)}
            for role in ("Master", "Worker")}}}


def _running(work: Workloads, jobs: int, avoid: set[str]) -> int:
    """Jobs whose two pods are Running, none on a node in ``avoid``."""
    with work.emulator.lock:
        pods = list(work.emulator.pods.values())
    per_job: dict[str, int] = {}
    for pod in pods:
        if pod["status"].get("phase") == "Running" and pod["spec"].get("nodeName") not in avoid \
                and "deletionTimestamp" not in pod["metadata"]:  # a Terminating pod is not running again
            job = pod["metadata"]["labels"]["training.kubeflow.org/job-name"]
            per_job[job] = per_job.get(job, 0) + 1
    return sum(1 for count in per_job.values() if count >= 2)


def _mark(emulator: Emulator, name: str) -> None:
    with emulator.lock:
        node = copy.deepcopy(emulator.nodes[name])
        node["metadata"]["labels"][KEYS.health] = "UnschedulablePendingReplacement"
        node["spec"]["taints"] = [{"key": KEYS.health, "value": "UnschedulablePendingReplacement",
                                   "effect": "NoSchedule"}]
        emulator._record("nodes", "MODIFIED", node)
        emulator.nodes[name] = node


def resume(args: argparse.Namespace) -> None:
    from kubernetes import client

    jobs = args.nodes or 100
    with Emulator() as emulator, Workloads(emulator) as work:
        for index in range(jobs * 3):
            emulator.add_node(f"gpu-{index:04d}", {KEYS.health: "Schedulable"}, status=copy.deepcopy(READY))
        for index in range(jobs):
            work.add("pytorchjobs", _job(index))
        while _running(work, jobs, set()) < jobs:
            time.sleep(0.1)
        configuration = client.Configuration(host=emulator.url)
        configuration.connection_pool_maxsize = 8
        resumer = Resumer(Kube(client.ApiClient(configuration), timeout_s=30), ResumeSettings())
        stop = threading.Event()
        threading.Thread(target=resumer.run, args=(stop,), daemon=True).start()
        while len(resumer.listed) < 3 or not resumer.passes:
            time.sleep(0.1)
        victims = {name: pod["spec"]["nodeName"] for name, pod in list(emulator.pods.items())
                   if name.endswith("-worker-0")}
        before, start = len(emulator.requests), time.perf_counter()
        for pod, node in victims.items():
            _mark(emulator, node)
            work.fail_pod(pod)
        bad = set(victims.values())
        while resumer.tally["resumed"] < jobs or _running(work, jobs, bad) < jobs:
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        stop.set()
        writes = [r for r in emulator.requests[before:] if r[0] in ("PATCH", "POST")]
    ok = seconds < 30.0 and len(writes) <= 6 * jobs
    print(f"job auto-resume: {jobs} jobs interrupted at once, all running again on healthy nodes in "
          f"{seconds:.1f} s (goal < 30 s) {'OK' if seconds < 30 else 'MISSED'}")
    print(f"writes per job: {len(writes) / jobs:.1f} (goal <= 6) {'OK' if ok else 'MISSED'}; "
          f"requests per job: {(len(emulator.requests) - before) / jobs:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100, help="the number of jobs (default 100)")
    resume(parser.parse_args())
