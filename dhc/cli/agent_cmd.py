"""``dhc agent``: the passive health watch on a GPU node, until SIGTERM or Ctrl-C.

Exit codes: 0 after a stop signal, 2 for a usage or configuration error (a bad thresholds file, no
node name with ``--sink kubernetes``, a metrics port that cannot be bound, ``--sink cloudwatch``
without boto3).

Sinks (``--sink``, repeatable or comma-separated): stdout (always), kubernetes (the node),
cloudwatch (each detection's log line also to CloudWatch Logs, group
``/aws/sagemaker/Clusters/<cluster>/<cluster id>`` or ``--log-group``, stream
``SagemakerHealthMonitoringAgent/<node group>/<instance id>``).
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


SINKS = ("stdout", "kubernetes", "cloudwatch")
NODE_GROUP_LABEL = "sagemaker.amazonaws.com/instance-group-name"  # HyperPod's instance group of the node
DEFAULT_NODE_GROUP = "unknown-node-group"


class _Sinks(argparse.Action):
    """``--sink a --sink b`` and ``--sink a,b`` add up (a later flag never silently drops an earlier one)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001, ANN204
        for name in str(values).split(","):
            if name not in SINKS:
                parser.error(f"argument --sink: {name!r}: expected one of {', '.join(SINKS)}")
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if before in (None, "stdout") else f"{before},{values}")


def sinks(args: argparse.Namespace) -> set[str]:
    return set(str(args.sink).split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sink", action=_Sinks, default="stdout",
                        help="stdout: JSON log lines only; kubernetes: also conditions, labels, taint, Events on the "
                        "node; cloudwatch: also the log lines to CloudWatch Logs (repeatable, or a,b)")
    parser.add_argument("--node-group", help="the node group in the CloudWatch stream name (default: the node's "
                        f"{NODE_GROUP_LABEL} label with --sink kubernetes, else {DEFAULT_NODE_GROUP})")
    parser.add_argument("--log-group", help="CloudWatch log group (default: DHC_CLOUDWATCH_LOG_GROUP, or "
                        "/aws/sagemaker/Clusters/<DHC_CLUSTER>/<DHC_CLUSTER_ID>)")
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
    shipper = _cloudwatch(args, settings, node, kube, agent.publisher, tally) if "cloudwatch" in sinks(args) else None
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    try:
        agent.run()
    finally:
        if shipper is not None:
            shipper.close()
    return 0


def _cloudwatch(args: argparse.Namespace, settings: Settings, node: str, kube, publisher, tally):  # noqa: ANN001, ANN202
    """The detections' stream; a delivery that fails is an error line and dhc_agent_cloudwatch_errors_total."""
    try:
        from dhc.aws.logs import LogsError, LogStream, hyperpod_group
        from dhc.aws.logship import Shipper
    except ImportError as exc:
        raise UsageError(f"--sink cloudwatch needs boto3 (pip install 'dhc[cloud]'): {exc}") from None
    labels, instance_id = _node_facts(kube, node, publisher)
    group = args.log_group or settings.log_group or hyperpod_group(settings.cluster, settings.cluster_id)
    stream = (f"SagemakerHealthMonitoringAgent/{args.node_group or labels.get(NODE_GROUP_LABEL) or DEFAULT_NODE_GROUP}"
              f"/{settings.instance_id or instance_id or node}")
    try:
        target = LogStream(group, stream, settings.region)
    except LogsError as exc:
        raise UsageError(str(exc)) from None

    def failed(text: str) -> None:
        tally.add("cloudwatch_errors")
        publisher.say(text)

    publisher.note(f"detections also go to CloudWatch Logs {group} / {stream}", level="info")
    shipper = Shipper(target, failed)
    publisher.forward = shipper.ship
    return shipper


def _node_facts(kube, node: str, publisher) -> tuple[dict[str, str], str | None]:  # noqa: ANN001
    """The node's labels and the instance id that ends its providerID (``aws:///<zone>/<id>`` on EKS,
    ``aws:///<region>/sagemaker/cluster/<id>`` on HyperPod's EKS nodes), when the node can be read."""
    from dhc.instance import provider_instance_id
    from dhc.k8s.client import K8sError

    if kube is None:
        return {}, None
    try:
        found = kube.node(node)
    except K8sError as exc:
        publisher.note(f"could not read node {node} for the CloudWatch stream name: {exc}")
        return {}, None
    return found["metadata"].get("labels") or {}, provider_instance_id((found.get("spec") or {}).get("providerID"))


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
    if "kubernetes" not in sinks(args):
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
