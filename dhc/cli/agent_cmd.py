"""``dhc agent``: the passive health watch on a GPU node, until SIGTERM or Ctrl-C.

Exit codes: 0 after a stop signal, 2 for a usage or configuration error (a bad thresholds file, no
node name with ``--sink kubernetes``, a metrics port that cannot be bound).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from dhc.errors import UnknownInstanceType, UsageError
from dhc.settings import Settings


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a TCP port, 0-65535 (0: any free port)")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sink", choices=["stdout", "kubernetes"], default="stdout",
                        help="stdout: JSON log lines only; kubernetes: also conditions, labels, taint, Events on the node")
    parser.add_argument("--node", help="this node's name (default: NODE_NAME, or this host's name)")
    parser.add_argument("--instance-type", help="for the GPU and EFA counts (default: DHC_INSTANCE_TYPE, or the "
                        "node's node.kubernetes.io/instance-type label)")
    parser.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")
    parser.add_argument("--state-file", default="/var/lib/dhc-agent/state.json",
                        help="what the agent remembers across restarts and reboots ('': nothing)")
    parser.add_argument("--kernel-log", help="default: DHC_KERNEL_LOG or /dev/kmsg (a file or FIFO works too)")
    parser.add_argument("--boot-id-file", default="/proc/sys/kernel/random/boot_id")
    parser.add_argument("--sys-infiniband", help="default: DHC_SYS_INFINIBAND or /sys/class/infiniband")
    parser.add_argument("--disk", default="/", help="the root filesystem as the agent sees it (default: /)")
    parser.add_argument("--poll-s", type=float, help="override thresholds.yaml's agent poll_s")
    parser.add_argument("--metrics-port", type=_port, help="serve Prometheus metrics on PORT at /metrics")
    parser.add_argument("--events-namespace", default="default", help="where node Events go (default: default)")


def agent_command(args: argparse.Namespace) -> int:
    from dhc.agent.tally import Tally

    settings = Settings.from_env()
    node = args.node or settings.node_name or _hostname()
    kube = _kube(args)
    tally = Tally(node)
    agent = _agent(args, settings, node, kube, tally)
    if args.metrics_port is not None:
        from dhc.agent.metrics import serve

        try:
            server, _ = serve(tally, args.metrics_port)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on port {args.metrics_port}: {exc}") from None
        agent.publisher.note(f"metrics on port {server.server_port} at /metrics", level="info")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    agent.run()
    return 0


def _agent(args: argparse.Namespace, settings: Settings, node: str, kube, tally):  # noqa: ANN001, ANN202
    from dhc.agent.kernel import KernelDetectors
    from dhc.agent.poll import Poller
    from dhc.agent.publish import Publisher
    from dhc.agent.run import Agent
    from dhc.agent.state import State, boot_id
    from dhc.k8s.scheme import Keys
    from dhc.thresholds.agent import load_agent

    thresholds = args.thresholds or settings.thresholds_file
    limits = load_agent(thresholds)
    instance_type = args.instance_type or settings.instance_type or _node_type(kube, node)
    expected, problem = _expected(thresholds, instance_type)
    publisher = Publisher(node, tally, {"instance_id": settings.instance_id, "instance_type": instance_type,
                                        "region": settings.region}, kube, Keys(settings.k8s_prefix),
                          args.events_namespace, sys.stdout)
    if problem:
        publisher.note(problem)
    poller = Poller(limits, expected, sys_infiniband=Path(args.sys_infiniband or settings.sys_infiniband),
                    disk=Path(args.disk))
    state = State(Path(args.state_file) if args.state_file else None, boot_id(Path(args.boot_id_file)),
                  limits.escalation_window_s)
    kernel = KernelDetectors(limits, lambda: poller.gpus)
    publisher.note(f"watching node {node} (instance type {instance_type or 'unknown'}): kernel log "
                   f"{args.kernel_log or settings.kernel_log}, NVML every {args.poll_s or limits.poll_s:g} s", "info")
    return Agent(state, kernel, poller, publisher, tally, Path(args.kernel_log or settings.kernel_log),
                 args.poll_s or limits.poll_s, threading.Event())


def _expected(thresholds: str | None, instance_type: str | None):  # noqa: ANN202
    from dhc.agent.poll import Expected
    from dhc.thresholds import load

    if not instance_type:
        return Expected(), "no instance type known: agent.gpu-count and agent.efa are off"
    try:
        found = load(thresholds).resolve(instance_type).instance_type
    except UnknownInstanceType:
        return Expected(), f"instance type {instance_type} is not in thresholds.yaml: agent.gpu-count and agent.efa are off"
    return Expected(found.gpus or None, found.efa or None, found.nvlinks_per_gpu or None), None


def _kube(args: argparse.Namespace):  # noqa: ANN202  (a Kube, or None: kubernetes stays unimported)
    if args.sink != "kubernetes":
        return None
    from dhc.k8s.client import Kube

    return Kube()


def _node_type(kube, node: str) -> str | None:  # noqa: ANN001
    if kube is None:
        return None
    return (kube.node(node)["metadata"].get("labels") or {}).get("node.kubernetes.io/instance-type")


def _hostname() -> str:
    import socket

    return socket.gethostname()
