"""``dhc controller``: run the Kubernetes controller until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from dhc.settings import Settings
from dhc.thresholds import DEFAULT_PROFILE, PROFILES, load


def _pinned(value: str) -> str:
    from dhc.controller.jobs import pinned_image

    try:
        return pinned_image(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a TCP port, 1-65535 (0: no metrics)")
    return int(value)


def _share(value: str) -> float:
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = -1.0
    if not 0.0 < share <= 1.0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a share of the nodes, 0.1 or 10% (above 0, at most 1)")
    return share


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a whole number of at least 1")
    return int(value)


def add_remediation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("remediation", "what happens to nodes marked PendingReboot / "
                                      "PendingReplacement (README: Turning remediation on safely)")
    group.add_argument("--remediation", choices=["label-only", "hyperpod", "ec2"], default="label-only",
                       help="the actuator; label-only (default) is a dry run: an annotation and an Event only")
    group.add_argument("--remediation-max-share", type=_share, default=0.10, metavar="SHARE",
                       help="circuit breaker: share of the watched nodes remediated at once (default 10%%)")
    group.add_argument("--remediation-max-nodes", type=_positive, metavar="N",
                       help="circuit breaker: a fixed number of nodes at once instead of the share")
    group.add_argument("--remediation-max-actions-per-node", type=_positive, default=2, metavar="N",
                       help="actions on one node within the window before it is left for a person (default 2)")
    group.add_argument("--remediation-window-s", type=_positive, default=86400, metavar="SECONDS")
    group.add_argument("--drain-timeout-s", type=_positive, default=600, metavar="SECONDS",
                       help="how long PodDisruptionBudgets may hold up a drain (default 600)")
    group.add_argument("--drain-timeout-action", choices=["wait", "act"], default="wait",
                       help="after the drain timeout: leave the node for a person (wait) or act anyway")
    group.add_argument("--hyperpod-cluster", default="", metavar="NAME",
                       help="the HyperPod cluster's name or ARN (--remediation hyperpod)")
    group.add_argument("--aws-region", metavar="REGION", help="default: the AWS SDK's own (AWS_REGION, IMDS)")


def remediation_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """(RemediationSettings, actuator or None) from the options; ValueError names what is wrong."""
    from dhc.controller.breaker import BreakerSettings
    from dhc.controller.remediation import RemediationSettings

    breaker = BreakerSettings(args.remediation_max_share, args.remediation_max_nodes,
                              args.remediation_max_actions_per_node, float(args.remediation_window_s))
    settings = RemediationSettings(args.remediation, breaker, float(args.drain_timeout_s),
                                   args.drain_timeout_action == "act")
    if args.remediation == "label-only":
        return settings, None
    from dhc.aws.actuators import build

    return settings, build(args.remediation, args.hyperpod_cluster, args.aws_region)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default="dhc", help="where the check Jobs run (default: dhc)")
    parser.add_argument("--image", required=True, type=_pinned,
                        help="the node image the Jobs run, pinned: a tag other than latest, or @sha256:<digest>")
    parser.add_argument("--service-account", default="dhc-node",
                        help="the Jobs' ServiceAccount (needs no role: the pods make no API calls)")
    parser.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE)
    parser.add_argument("--max-attempts", type=int, default=3, help="tries before an undecided node is Failed")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")
    parser.add_argument("--config", metavar="FILE", help="node groups: deep checks on join, profile and NodeRecovery "
                        "per label selector (README: Node groups and on-demand checks); default: one group, as above")
    parser.add_argument("--metrics-port", type=_port, default=9400, metavar="PORT",
                        help="serve Prometheus metrics on PORT at /metrics (default: 9400; 0: off)")
    add_remediation_arguments(parser)
    from dhc.cli import resume_cmd

    resume_cmd.add_arguments(parser)
    add_grouping_arguments(parser)


def add_grouping_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connectivity groups", "which nodes test their fabric together "
                                      "(README: Connectivity groups and network topology)")
    group.add_argument("--group-size", type=_positive, default=16, metavar="N",
                       help="the most nodes in one connectivity group (default 16)")
    group.add_argument("--min-group-size", type=_positive, default=2, metavar="N",
                       help="the fewest nodes of an inter-node group; fewer wait for peers (default 2)")
    group.add_argument("--topology-label", default="", metavar="KEY",
                       help="the node label that places a node in the network (e.g. a placement group); "
                       "default: EKS's topology.k8s.aws/network-node-layer-1..4")
    group.add_argument("--alone-after-s", type=_positive, metavar="SECONDS",
                       help="a node with no peer this long tests alone, intra-node only (default: five batch "
                       "windows, 300)")


def controller_command(args: argparse.Namespace) -> int:
    from dhc.controller import groups as node_groups
    from dhc.controller.jobs import JobSettings
    from dhc.controller.loop import Controller, ControllerSettings
    from dhc.controller.topology import Grouping
    from dhc.errors import ConfigError
    from dhc.k8s.client import Kube

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    jobs = JobSettings(namespace=args.namespace, image=args.image, service_account=args.service_account,
                       profile=args.profile)
    try:
        grouping = Grouping(args.group_size, args.min_group_size, args.topology_label, args.alone_after_s)
        remediation, actuator = remediation_settings(args)
        groups = node_groups.load(args.config, args.profile) if args.config else None
    except (ValueError, ConfigError) as exc:
        print(f"dhc controller: {exc}", file=sys.stderr)
        return 2
    controller = Controller(Kube(), load(args.thresholds or settings.thresholds_file),
                            ControllerSettings(jobs=jobs, prefix=settings.k8s_prefix, max_attempts=args.max_attempts,
                                               workers=args.workers, remediation=remediation,
                                               groups=groups, requests_poll_s=2.0, grouping=grouping), actuator)
    stop = threading.Event()
    from dhc.cli import resume_cmd

    resuming = resume_cmd.start(args, stop)  # --job-auto-resume: a sibling loop beside the node controller
    if args.metrics_port:
        from dhc.controller.metrics import serve

        try:
            serve(controller.snapshot, args.metrics_port, extra=(resuming,) if resuming else ())
        except OSError as exc:  # the port is taken, or not ours to bind
            print(f"dhc controller: cannot serve metrics on port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("dhc.controller").info("watching nodes; Jobs in namespace %s run %s", args.namespace, args.image)
    controller.run(stop)
    return 0
