"""Remediation: a node marked PendingReboot / PendingReplacement is cordoned, drained, acted on, re-checked.

Whoever marked it (the agent, a failed deep check, a person editing the label), one path:
breaker -> cordon -> drain (Eviction API, PDBs honoured, a bounded wait) -> actuator -> the node
rejoins -> uncordon and ``recheck`` (a new check generation: the join path) -> Schedulable again.

Every step is a phase written to the node's ``<prefix>/remediation`` annotation *before* the next
one starts, and finished actions go to ``<prefix>/remediation-history``; the controller holds no state
that a restart loses. ``acting`` is written before the actuator is called, so a controller that finds
``acting`` on a node (it died mid-call) never calls again: it records the action as unconfirmed and
says so; an actuator error that may hide a done action (a 5xx, a read timeout) is ``unconfirmed`` too.
``acted`` and ``rechecking`` wait at most ``rejoin_timeout_s``, then the node is ``stuck`` with an Event.
The default actuator ``label-only`` is a dry run: it changes nothing on the node but the annotation
and a Node Event saying what it would do; once another actuator is chosen, its nodes go to the breaker.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from dhc.controller import breaker, drain
from dhc.controller.marks import RemediationKeys, annotate, now_text, phase_ops, read_state
from dhc.errors import DhcError
from dhc.instance import provider_instance_id as instance_id
from dhc.k8s.client import K8sError
from dhc.k8s.scheme import load_annotation as load
from dhc.k8s.scheme import parse_time

log = logging.getLogger("dhc.controller.remediation")
PENDING = {"UnschedulablePendingReboot": "Reboot", "UnschedulablePendingReplacement": "Replace"}
LABEL_ONLY = "label-only"
IN_FLIGHT = ("draining", "acting", "acted", "rechecking", "stuck")  # hold a breaker slot
__all__ = ["Actuator", "RemediationKeys", "RemediationSettings", "Remediator", "instance_id"]


class Actuator(Protocol):
    name: str

    def act(self, action: str, ids: list[str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class RemediationSettings:
    actuator: str = LABEL_ONLY  # label-only | hyperpod | ec2
    breaker: breaker.BreakerSettings = field(default_factory=breaker.BreakerSettings)
    drain_timeout_s: float = 600.0
    act_after_drain_timeout: bool = False  # after the wait: act anyway, or leave the node for a person
    rejoin_timeout_s: float = 3600.0  # acted -> Ready again, and rechecking -> a verdict: then stuck, said


class Remediator:
    """One node's next remediation step, from its cached object; ``ctl`` is the Controller."""

    def __init__(self, ctl: Any, settings: RemediationSettings, actuator: Actuator | None):
        if settings.actuator != LABEL_ONLY and actuator is None:
            raise ValueError(f"remediation actuator {settings.actuator!r} needs its AWS client")
        self.ctl, self.settings, self.actuator = ctl, settings, actuator
        self.keys = RemediationKeys(ctl.settings.prefix)
        self._admitting = threading.RLock()  # the breaker's state below: admission, holds, ends
        self.admitted: set[str] = set()  # nodes this process let through, until they end
        self.marked: set[str] = set()  # nodes this process marked held since the breaker last tripped
        self.recoveries: list[float] = []  # seconds from detection to Schedulable again

    # -- reading ------------------------------------------------------------------------------------
    def state(self, node: dict[str, Any]) -> dict[str, Any]:
        """The node's phase; one that is not dhc's (hand-edited) is ``stuck``: it holds its slot, nothing is done."""
        return read_state(node, self.keys)

    def tripped(self) -> str:
        """Why the breaker is tripped ('' when it is not): the first held node's annotation."""
        for node in list(self.ctl.nodes.values()):
            held = (node["metadata"].get("annotations") or {}).get(self.keys.held)
            if held:
                return held
        return ""

    def in_flight(self) -> set[str]:
        busy = {n for n, node in list(self.ctl.nodes.items()) if self.state(node).get("phase") in IN_FLIGHT}
        return busy | (self.admitted & set(self.ctl.nodes))

    # -- the step -----------------------------------------------------------------------------------
    def forget(self, name: str) -> None:
        with self._admitting:
            self.admitted.discard(name)

    def step(self, node: dict[str, Any]) -> str:
        """Take the node's next step; returns its phase afterwards ('' when there is nothing to do)."""
        state, health = self.state(node), (node["metadata"].get("labels") or {}).get(self.ctl.keys.health)
        phase = state.get("phase", "")
        if phase in ("", "dry-run", "refused") and health in PENDING:
            if phase == "refused" or (phase == "dry-run" and self.settings.actuator == LABEL_ONLY):
                return phase
            return self._begin(node, PENDING[health])  # a dry run's node, once acting is on: the breaker decides
        if phase in ("dry-run", "refused"):  # the mark was lifted: forget the dry run
            self._write(node, None)
            return ""
        steps = {"draining": self._drain, "acting": self._resumed, "acted": self._acted,
                 "rechecking": self._rechecking}
        return steps[phase](node, state) if phase in steps else phase

    def _begin(self, node: dict[str, Any], action: str) -> str:
        name = node["metadata"]["name"]
        if self.settings.actuator == LABEL_ONLY:
            return self._dry_run(node, action)
        with self._admitting:
            history = load((node["metadata"].get("annotations") or {}).get(self.keys.history), [])
            acted = [t for t in (parse_time(h.get("at")) for h in history if isinstance(h, dict)) if t]
            watched, tripped = sum(1 for n in list(self.ctl.nodes.values()) if self.ctl.wants(n)), self.tripped()
            if not tripped:  # reset (or never tripped): a new trip marks its nodes anew
                self.marked.clear()
            admission = breaker.admit(self.settings.breaker, tripped, len(self.in_flight() - {name}),
                                      watched, acted, datetime.now(UTC))
            if admission.admitted:
                self.admitted.add(name)
                state = {"phase": "draining", "action": action, "detected": now_text(), "since": now_text(),
                         "generation": self._generation(node)}
                node = self._write(node, state, unschedulable=True)
            elif admission.trips:  # under the lock: the next admission sees it tripped, so it trips once
                node = self._hold(node, admission.reason)
                for busy in self.in_flight() - {name}:  # and on the nodes in flight: no one node holds it
                    if busy in self.ctl.nodes:
                        self._hold(self.ctl.nodes[busy], admission.reason)
        if not admission.admitted:
            return self._refuse(node, action, admission)
        self._event(node, "RemediationStarted", f"{action}: cordoned; draining through the Eviction API, then "
                                                f"{self.settings.actuator}", warning=False)
        return self._drain(node, state)

    def _dry_run(self, node: dict[str, Any], action: str) -> str:
        iid = instance_id((node.get("spec") or {}).get("providerID")) or "no instance id in its providerID"
        try:  # an RBAC without the pods rule (an older install) must not keep a dry run from being recorded
            pods = f"{sum(1 for p in self.ctl.kube.pods_on_node(node['metadata']['name']) if drain.evictable(p))} pods"
        except K8sError as exc:
            pods = f"its pods (cannot list them: {exc})"
        would = f"would cordon, drain {pods} through the Eviction API and {action} instance {iid}; " \
                "nothing done (remediation actuator label-only, a dry run)"
        state = {"phase": "dry-run", "action": action, "detected": now_text(), "would": would}
        self._say(node, state, "RemediationDryRun", would, False, "dry-run")
        return "dry-run"

    def _refuse(self, node: dict[str, Any], action: str, admission: breaker.Admission) -> str:
        if admission.trips:
            self._event(node, "RemediationBreakerTripped", f"{action} not started: {admission.reason}", warning=True)
            self.ctl.count("remediations", f"{action}/held")
            return "held"
        if self.tripped():  # already said in an Event; the mark goes on every node held, once (a person
            if node["metadata"]["name"] not in self.marked:  # removing the marks is not undone), so no
                self._hold(node, admission.reason)  # one node's deletion resets the breaker
            return "held"
        self._say(node, {"phase": "refused", "action": action, "why": admission.reason}, "RemediationRefused",
                  f"{action} not started: {admission.reason}", True, "refused")
        return "refused"

    def _hold(self, node: dict[str, Any], reason: str) -> dict[str, Any]:
        with self._admitting:
            self.marked.add(node["metadata"]["name"])
        if (node["metadata"].get("annotations") or {}).get(self.keys.held):
            return node
        node = self.ctl.kube.patch_node(node["metadata"]["name"], lambda n: annotate(
            n, {self.keys.held: f"{now_text()}: {reason}"}))
        self.ctl.nodes[node["metadata"]["name"]] = node
        return node

    def _drain(self, node: dict[str, Any], state: dict[str, Any]) -> str:
        name = node["metadata"]["name"]
        result = drain.drain_pass(self.ctl.kube, name)
        if result.done:
            return self._act(node, state, f"drained: {drain.summary(result)}")
        since = parse_time(state.get("since")) or datetime.now(UTC)
        if (datetime.now(UTC) - since).total_seconds() < self.settings.drain_timeout_s:
            return "draining"
        waited = f"drain not done after {self.settings.drain_timeout_s:g} s: {drain.summary(result)}"
        if self.settings.act_after_drain_timeout:
            return self._act(node, state, f"{waited}; acting anyway (configured)")
        self._say(node, state | {"phase": "stuck", "why": waited}, "RemediationStuck",
                  f"{waited}; left for a person (configured not to act anyway)", True, "stuck")
        return "stuck"

    def _act(self, node: dict[str, Any], state: dict[str, Any], drained: str) -> str:
        action, iid = state["action"], instance_id((node.get("spec") or {}).get("providerID"))
        if iid is None:
            return self._fail(node, state, f"{drained}; no EC2 instance id in providerID "
                                           f"{(node.get('spec') or {}).get('providerID')!r}")
        boot = ((node.get("status") or {}).get("nodeInfo") or {}).get("bootID", "")
        state = state | {"instance": iid, "boot": boot}
        node = self._write(node, state | {"phase": "acting", "since": now_text()})
        assert self.actuator is not None
        try:
            why = self.actuator.act(action, [iid]).get(iid, "not in the service's answer")
        except DhcError as exc:
            if getattr(exc, "unconfirmed", False):  # it may have been carried out: never called again
                return self._acted_now(node, state, "unconfirmed", f"{drained}; {self.actuator.name} {action} "
                                       f"{iid}: {exc}; it may have been carried out, not called again: check "
                                       "the instance", warning=True)
            why = str(exc)
        if why:
            return self._fail(node, state, f"{drained}; {self.actuator.name} {action} {iid}: {why}")
        return self._acted_now(node, state, "acted", f"{drained}; {self.actuator.name} {action} "
                               f"{iid} accepted", warning=False)

    def _resumed(self, node: dict[str, Any], state: dict[str, Any]) -> str:
        """``acting`` on a node at the start of a step: a controller stopped mid-call. Never call again."""
        return self._acted_now(node, state, "unconfirmed", f"a controller stopped while calling {state['action']} "
                               f"for {state.get('instance')}; not called again: check the instance", warning=True)

    def _acted_now(self, node: dict[str, Any], state: dict[str, Any], outcome: str, message: str,
                   warning: bool) -> str:
        entry = {"action": state["action"], "at": now_text(), "outcome": outcome, "instance": state.get("instance")}
        self._say(node, state | {"phase": "acted", "acted": now_text()}, "RemediationActed", message, warning,
                  outcome, history=entry)
        return "acted"

    def _fail(self, node: dict[str, Any], state: dict[str, Any], why: str) -> str:
        self._say(node, state | {"phase": "stuck", "why": why}, "RemediationFailed",
                  f"{state['action']} failed, left for a person: {why}", True, "failed")
        return "stuck"

    def _acted(self, node: dict[str, Any], state: dict[str, Any]) -> str:
        """Wait for the node to come back (Ready, and booted again or Ready anew since the action), then
        uncordon it and ask for a new check."""
        acted, status = parse_time(state.get("acted")), node.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        since, boot = parse_time(ready.get("lastTransitionTime")), (status.get("nodeInfo") or {}).get("bootID", "")
        rebooted = bool(boot and state.get("boot") and boot != state["boot"])
        if ready.get("status") != "True" or not (rebooted or (since and acted and since > acted)):
            return self._overdue(node, state, acted, "not Ready again after the action") or "acted"
        request = self.ctl.keys.request
        node = self._write(node, state | {"phase": "rechecking", "since": now_text()}, unschedulable=False,
                           labels={request: "recheck"})
        self._event(node, "RemediationRejoined", "Ready again after the action: a new deep health check before "
                                                 "it is Schedulable", warning=False)
        return "rechecking"

    def _rechecking(self, node: dict[str, Any], state: dict[str, Any]) -> str:
        labels = node["metadata"].get("labels") or {}
        health, action = labels.get(self.ctl.keys.health), state["action"]
        if health == "Schedulable" and labels.get(self.ctl.keys.check_status) == "Passed":
            detected = parse_time(state.get("detected")) or datetime.now(UTC)
            with self._admitting:
                self.recoveries.append((datetime.now(UTC) - detected).total_seconds())
            outcome, message = "recovered", "passed its deep health check again: Schedulable"
        elif health in PENDING and self._generation(node) > int(state.get("generation", 0)):
            outcome, message = "failed-again", "failed its deep health check again after the action"
        else:
            return self._overdue(node, state, parse_time(state.get("since")), "no new deep check verdict") \
                or "rechecking"
        self._write(node, None)
        self.forget(node["metadata"]["name"])
        self._event(node, f"Remediation{outcome.title().replace('-', '')}", message, warning=outcome != "recovered")
        self.ctl.count("remediations", f"{action}/{outcome}")
        return outcome

    def _overdue(self, node: dict[str, Any], state: dict[str, Any], since: datetime | None, what: str) -> str:
        """Past ``rejoin_timeout_s``: ``stuck``, said in an Event, its slot kept for a person ('' before)."""
        since = since or parse_time(state.get("since")) or parse_time(state.get("detected"))
        limit = self.settings.rejoin_timeout_s
        if since is None or (datetime.now(UTC) - since).total_seconds() < limit:
            return ""
        why = f"{what} {limit:g} s after {state['phase']} began ({state.get('instance')}): left for a person"
        self._say(node, state | {"phase": "stuck", "why": why}, "RemediationStuck", f"{state['action']}: {why}; it "
                  "holds its remediation slot until a person removes its remediation annotation", True, "stuck")
        return "stuck"

    # -- writing ------------------------------------------------------------------------------------
    def _generation(self, node: dict[str, Any]) -> int:
        text = (node["metadata"].get("annotations") or {}).get(self.ctl.keys.generation, "0")
        return int(text) if str(text).isdigit() else 0

    def _write(self, node: dict[str, Any], state: dict[str, Any] | None, unschedulable: bool | None = None,
               history: dict[str, Any] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
        name = node["metadata"]["name"]
        patched = self.ctl.kube.patch_node(name, lambda n: phase_ops(n, self.keys, state, unschedulable, history, labels))
        self.ctl.nodes[name] = patched
        return patched

    def _say(self, node: dict[str, Any], state: dict[str, Any], reason: str, message: str, warning: bool,
             outcome: str, history: dict[str, Any] | None = None) -> None:
        """Write the phase, say it in an Event, count the outcome."""
        node = self._write(node, state, history=history)
        self._event(node, reason, message, warning=warning)
        self.ctl.count("remediations", f"{state['action']}/{outcome}")

    def _event(self, node: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        (log.warning if warning else log.info)("node %s: %s: %s", node["metadata"]["name"], reason, message)
        self.ctl.kube.node_event(node, reason, message, warning=warning, namespace=self.ctl.settings.jobs.namespace)
