"""``dhc controller``: run the Kubernetes controller until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from dhc.settings import Settings
from dhc.thresholds import load


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default="dhc", help="where the check Jobs run (default: dhc)")
    parser.add_argument("--image", required=True, type=_pinned,
                        help="the node image the Jobs run, pinned: a tag other than latest, or @sha256:<digest>")
    parser.add_argument("--service-account", default="dhc-node",
                        help="the Jobs' ServiceAccount (needs no role: the pods make no API calls)")
    parser.add_argument("--profile", choices=["quick", "full"], default="quick")
    parser.add_argument("--max-attempts", type=int, default=3, help="tries before an undecided node is Failed")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")
    parser.add_argument("--metrics-port", type=_port, default=9400, metavar="PORT",
                        help="serve Prometheus metrics on PORT at /metrics (default: 9400; 0: off)")


def controller_command(args: argparse.Namespace) -> int:
    from dhc.controller.jobs import JobSettings
    from dhc.controller.loop import Controller, ControllerSettings
    from dhc.k8s.client import Kube

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    jobs = JobSettings(namespace=args.namespace, image=args.image, service_account=args.service_account,
                       profile=args.profile)
    controller = Controller(Kube(), load(args.thresholds or settings.thresholds_file),
                            ControllerSettings(jobs=jobs, prefix=settings.k8s_prefix, max_attempts=args.max_attempts,
                                               workers=args.workers))
    if args.metrics_port:
        from dhc.controller.metrics import serve

        try:
            serve(controller.snapshot, args.metrics_port)
        except OSError as exc:  # the port is taken, or not ours to bind
            print(f"dhc controller: cannot serve metrics on port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("dhc.controller").info("watching nodes; Jobs in namespace %s run %s", args.namespace, args.image)
    controller.run(stop)
    return 0
