"""Job auto-resume on the command line: ``dhc controller --job-auto-resume`` runs it as a background
thread of the controller; ``dhc resume`` runs it alone (README: Job auto-resume)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from dhc.settings import Settings


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected seconds above 0")
    return seconds


def _retries(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: expected a whole number of at least 0")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser, alone: bool = False) -> None:
    group = parser.add_argument_group("job auto-resume", "restart opted-in training jobs interrupted by a node "
                                      "fault (README: Job auto-resume)")
    if not alone:
        group.add_argument("--job-auto-resume", action="store_true",
                           help="also run job auto-resume (needs containers/k8s/optional/rbac-job-auto-resume.yaml)")
    group.add_argument("--resume-default-max-retries", type=_retries, default=1, metavar="N",
                       help="restarts for a job that names no job-max-retry-count (default 1)")
    group.add_argument("--resume-wait-timeout-s", type=_seconds, default=3600.0, metavar="SECONDS",
                       help="longest wait for enough Schedulable nodes before giving up (default 3600)")
    group.add_argument("--resume-window-s", type=_seconds, default=120.0, metavar="SECONDS",
                       help="a pod failed on a node that turns faulty within this counts as a node fault (120)")
    group.add_argument("--resume-add-node-selector", action="store_true",
                       help="add the health nodeSelector to every interrupted job, asked by annotation or not")
    if alone:
        from dhc.cli.controller_cmd import _port

        group.add_argument("--metrics-port", type=_port, default=9402, metavar="PORT",
                           help="serve Prometheus metrics on PORT at /metrics (default: 9402; 0: off)")


def resumer(args: argparse.Namespace, kube: Any | None = None) -> Any:
    """The Resumer these options ask for (the key prefix from DHC_K8S_PREFIX, as every node key)."""
    from dhc.k8s.client import Kube
    from dhc.resume.loop import Resumer, ResumeSettings

    settings = ResumeSettings(prefix=Settings.from_env().k8s_prefix, window_s=args.resume_window_s,
                              wait_timeout_s=args.resume_wait_timeout_s,
                              default_max_retries=args.resume_default_max_retries,
                              add_node_selector=args.resume_add_node_selector)
    return Resumer(kube or Kube(), settings)


def start(args: argparse.Namespace, stop: threading.Event) -> Any:
    """Run job auto-resume in a daemon thread when ``--job-auto-resume`` asks; its metrics collector, or None."""
    if not getattr(args, "job_auto_resume", False):
        return None
    from dhc.resume.metrics import ResumeCollector

    running = resumer(args)
    threading.Thread(target=running.run, args=(stop,), daemon=True, name="job-auto-resume").start()
    logging.getLogger("dhc.resume").info("job auto-resume on: watching opted-in PyTorchJobs, Jobs and JobSets")
    return ResumeCollector(running.snapshot)


def resume_command(args: argparse.Namespace) -> int:
    from dhc.resume.metrics import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = resumer(args)
    if args.metrics_port:
        try:
            serve(running.snapshot, args.metrics_port)
        except OSError as exc:
            print(f"dhc resume: cannot serve metrics on port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running.run(stop)
    return 0
