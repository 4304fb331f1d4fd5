"""Where a raised detection goes: a JSON log line on stdout, and with ``--sink kubernetes`` the node.

The log line has the shape of HyperPod's health-monitoring agent (``"msg":"NPD caught event: %v"``,
``"details: "`` with severity, timestamp, reason and the ``Node condition X is now: True`` message,
and ``"HealthMonitoringAgentDetectionEvent":"HealthEvent"``) plus dhc's machine-readable fields
(node, instance, check, device, metric, value, limit, unit, action), one JSON object per physical line.

On the node: the detector's condition (``nodes/status``); for Reboot / Replace also the
node-health-status label ``UnschedulablePendingReboot|UnschedulablePendingReplacement`` with its
NoSchedule taint and an annotation with the reason (never milder than what the node has, never
Schedulable); and a Warning Event. A write that fails is logged and counted, and ``publish`` /
``deliver`` say so: the caller keeps the detection pending (in its state file) and delivers it again
at the next tick, after a restart too.

With ``--sink cloudwatch`` each detection's log line is also handed to ``forward`` (a CloudWatch
Logs shipper that delivers from its own thread, so a failing service never holds up the watch).
Lines are written whole under a lock: the shipper's thread reports its failures here too.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from dhc.agent.detection import Detection, where
from dhc.agent.tally import Tally
from dhc.k8s import scheme
from dhc.k8s.client import K8sError, Kube
from dhc.k8s.conditions import condition, set_conditions
from dhc.model import Action

HEALTH = {Action.REBOOT: "UnschedulablePendingReboot", Action.REPLACE: "UnschedulablePendingReplacement"}


class Publisher:
    def __init__(self, node: str, tally: Tally, instance: dict[str, str | None], kube: Kube | None = None,
                 keys: scheme.Keys | None = None, events_namespace: str = "default", stream: TextIO | None = None,
                 forward: Callable[[dict[str, Any]], None] | None = None):
        self.node, self.tally, self.instance, self.kube, self.forward = node, tally, instance, kube, forward
        self.write_lock = threading.Lock()
        self.keys, self.events_namespace = keys or scheme.Keys(), events_namespace
        self.stream = stream or sys.stdout
        self.noted: set[str] = set()

    def publish(self, found: Detection) -> bool:
        """The log line (and the forward), then the node; whether it was delivered to the node."""
        record = log_line(found, self.node, self.instance)
        self.line(record)
        if self.forward is not None:
            self.forward(record)
        return self.deliver(found)

    def deliver(self, found: Detection) -> bool:
        """Write ``found`` onto the node; True once written (or with no node to write), False when refused."""
        return self.kube is None or self._to_node(found)

    def note(self, text: str, level: str = "warning") -> None:
        """A line about the agent itself (what it cannot see), once per distinct text."""
        if text not in self.noted:
            self.noted.add(text)
            self.say(text, level)

    def say(self, text: str, level: str = "error") -> None:
        """A line about the agent itself, every time (a sink failing again is news again)."""
        self.line({"level": level, "ts": _now(), "msg": f"dhc agent: {text}", "node": self.node})

    def line(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, separators=(",", ":")) + "\n"
        with self.write_lock:
            self.stream.write(text)
            self.stream.flush()

    def _to_node(self, found: Detection) -> bool:
        assert self.kube is not None
        try:
            set_conditions(self.kube, self.node, [condition(found.condition_type, True, found.reason,
                                                            found.finding.message)])
            node = self.kube.node(self.node)
            if found.action in HEALTH:
                node = self.kube.patch_node(self.node, lambda n: scheme.pending_ops(
                    n, self.keys, HEALTH[found.action], {self.keys.agent_reasons: _annotation(found)}))
            self.kube.node_event(node, found.reason, f"{found.detector}: {found.finding.message} (action: "
                                 f"{found.action.value})", warning=True, namespace=self.events_namespace,
                                 component="dhc-agent")
            return True
        except K8sError as exc:
            self.tally.add("publish_errors")
            self.line({"level": "error", "ts": _now(), "msg": f"dhc agent: could not write {found.detector} onto "
                       f"node {self.node} (retried at the next tick): {exc}", "node": self.node})
            return False


def log_line(found: Detection, node: str, instance: dict[str, str | None]) -> dict[str, Any]:
    f, now = found.finding, _now()
    severity = "warn" if f.action is Action.NONE else "error"
    said = f'Node condition {found.condition_type} is now: True, reason: {found.reason}, message: "{f.message}"'
    device = f.device
    return {"level": "warning" if f.action is Action.NONE else "error", "ts": now, "msg": "NPD caught event: %v",
            "details: ": {"severity": severity, "timestamp": now, "reason": found.reason, "message": said},
            "HealthMonitoringAgentDetectionEvent": "HealthEvent",
            "node": node, **instance, "check": f.check, "status": f.status.value, "action": f.action.value,
            "condition": found.condition_type, "reason": found.reason, "message": f.message,
            "device": where(device), "device_uuid": device and device.uuid,
            "device_pci_bus_id": device and device.pci_bus_id, "metric": f.metric, "value": f.value,
            "limit": f.limit, "unit": f.unit}


def _annotation(found: Detection) -> str:
    f = found.finding
    return json.dumps({"detector": f.check, "action": f.action.value, "reason": found.reason, "message": f.message[:1000],
                       "device": where(f.device), "ts": _now()}, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
