"""On-demand deep checks: a ``HealthCheckRequest`` (dhc.dev/v1alpha1) for a node group or a list of nodes.

As HyperPod's StartClusterHealthCheck, one request is active at a time: the oldest unfinished one
(creationTimestamp, then name) runs; any other is ``Waiting`` with the name of the one it waits for.
Starting, the request records each target node's current check generation in its status, then labels
the nodes ``deep-health-check-request=recheck`` (the per-node re-check that already exists, so a
person's label and a request end the same way). Its status then counts the nodes ``pending`` (not
taken up yet), ``running`` (a new generation in progress) and ``done`` (a new verdict, or the request
taken up without one: a node dhc cannot judge, named in ``unjudged``); ``Done`` when none is left, with
the verdicts counted in ``results``. A spec naming no known group or node is ``Refused`` with the reason.
Everything lives in the request's status, so a restarted controller carries on where it was.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from dhc.k8s import custom
from dhc.k8s.client import K8sError, K8sNotFound

GROUP, VERSION, PLURAL = "dhc.dev", "v1alpha1", "healthcheckrequests"
FINISHED, VERDICTS = ("Done", "Refused"), ("Passed", "Failed", "Incomplete")
log = logging.getLogger("dhc.controller.requests")


class Requests:
    def __init__(self, ctl: Any, namespace: str, poll_s: float = 1.0):
        self.ctl, self.namespace, self.poll_s = ctl, namespace, poll_s
        self.said = ""  # the last problem logged: a missing CRD is said once, not every poll

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):
            try:
                self.tick()
                self.said = ""
            except K8sError as exc:  # the CRD not installed, or the API briefly away: said, tried again
                if str(exc) != self.said:
                    log.warning("on-demand requests (HealthCheckRequest): %s; will retry", exc)
                self.said = str(exc)

    def tick(self) -> None:
        items = custom.list_objects(self.ctl.kube, GROUP, VERSION, self.namespace, PLURAL)
        items.sort(key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]))
        active = None
        for item in items:
            status = item.get("status") or {}
            if status.get("phase") in FINISHED:
                continue
            if active is None:
                active = item["metadata"]["name"]
                self._advance(item, status)
            elif (status.get("phase"), status.get("waitingFor")) != ("Waiting", active):
                self._status(item, {"phase": "Waiting", "waitingFor": active,
                                    "reason": f"waits for request {active}: one request is active at a time"})

    def _advance(self, item: dict[str, Any], status: dict[str, Any]) -> None:
        if status.get("phase") != "Running":
            return self._start(item)
        since = {n: g for n, g in (status.get("generations") or {}).items() if isinstance(g, int)}
        states = {name: self._state(name, since[name], status.get("labelled") is True) for name in since}
        self._label([n for n, s in states.items() if s == "unlabelled"], item)
        counts = Counter("pending" if s == "unlabelled" else s for s in states.values())
        report = {"pending": counts["pending"], "running": counts["running"],
                  "done": counts["done"] + counts["unjudged"] + counts["gone"], "labelled": True,
                  "unjudged": sorted(n for n, s in states.items() if s in ("unjudged", "gone"))}
        if report["pending"] == report["running"] == 0:
            report |= {"phase": "Done", "results": dict(Counter(self._verdict(n) for n in since)),
                       "reason": f"{len(since)} nodes re-checked"}
        if any(status.get(k) != v for k, v in report.items()):
            self._status(item, report)

    def _start(self, item: dict[str, Any]) -> None:
        names, why = self._targets(item.get("spec") or {})
        if why:
            self._status(item, {"phase": "Refused", "reason": why})
            log.warning("request %s refused: %s", item["metadata"]["name"], why)
            return
        generations = {n: _generation(self._node(n) or {"metadata": {}}, self.ctl.keys) for n in names}
        self._status(item, {"phase": "Running", "reason": "", "waitingFor": "", "generations": generations,
                            "pending": len(names), "running": 0, "done": 0, "labelled": False})
        self._label(names, item)  # after the generations are recorded: a restart relabels, never loses a node
        self._status(item, {"labelled": True})

    def _targets(self, spec: dict[str, Any]) -> tuple[list[str], str]:
        """The request's nodes, or why there are none: exactly one of spec.group and spec.nodes."""
        group, nodes = spec.get("group"), spec.get("nodes")
        if (group is None) == (nodes is None):
            return [], "give exactly one of spec.group (a node group's name) and spec.nodes (a list of node names)"
        if group is not None:
            if not isinstance(group, str) or self.ctl.groups.named(group) is None:
                known = ", ".join(g.name for g in self.ctl.groups.groups) or "none (no --config file)"
                return [], f"no node group named {group!r}; groups: {known}"
            nodes, _ = self.ctl.kube.list_nodes()  # from the API: the cache may not be filled yet at start
            names = sorted(n["metadata"]["name"] for n in nodes if self.ctl.wants(n) and self.ctl.group(n).name == group)
            return names, "" if names else f"node group {group!r} has no node dhc checks"
        if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
            return [], f"spec.nodes: expected a non-empty list of node names, got {nodes!r}"
        missing = sorted(n for n in set(nodes) if not self.ctl.wants(self._node(n) or {"metadata": {"labels": {}}}))
        if missing:
            return [], f"not nodes dhc checks (unknown, or without GPUs): {', '.join(missing)}"
        return sorted(set(nodes)), ""

    def _node(self, name: str) -> dict[str, Any] | None:
        """The cached node, or read from the API (the cache may not be filled yet); None if there is none."""
        node = self.ctl.nodes.get(name)
        if node is None:
            try:
                node = self.ctl.kube.node(name)
            except K8sNotFound:
                return None
        return node

    def _state(self, name: str, since: int, labelled: bool) -> str:
        node = self._node(name)
        if node is None:
            return "gone"
        labels = node["metadata"].get("labels") or {}
        newer = _generation(node, self.ctl.keys) > since
        if newer:
            return "done" if labels.get(self.ctl.keys.check_status) in VERDICTS \
                and self.ctl.keys.request not in labels else "running"
        if self.ctl.keys.request in labels:
            return "pending"
        return "unjudged" if labelled else "unlabelled"  # taken up without a run: dhc cannot judge it

    def _verdict(self, name: str) -> str:
        node = self._node(name)
        return (node["metadata"].get("labels") or {}).get(self.ctl.keys.check_status, "none") if node else "gone"

    def _label(self, names: list[str], item: dict[str, Any]) -> None:
        for name in names:
            try:
                self.ctl.kube.patch_node(name, self._ask)  # the node watch brings the change into the cache
            except K8sNotFound:  # gone since: counted as such
                continue
        if names:
            log.info("request %s: re-check asked of %d nodes", item["metadata"]["name"], len(names))

    def _ask(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The JSON patch that labels the node for a re-check (none if it is labelled already)."""
        labels, key = node["metadata"].get("labels"), self.ctl.keys.request
        if labels is None:
            return [{"op": "add", "path": "/metadata/labels", "value": {key: "recheck"}}]
        escaped = key.replace("~", "~0").replace("/", "~1")
        return [] if labels.get(key) == "recheck" else \
            [{"op": "add", "path": f"/metadata/labels/{escaped}", "value": "recheck"}]

    def _status(self, item: dict[str, Any], status: dict[str, Any]) -> None:
        custom.patch_status(self.ctl.kube, GROUP, VERSION, self.namespace, PLURAL, item["metadata"]["name"], status)
        item.setdefault("status", {}).update(status)


def _generation(node: dict[str, Any], keys: Any) -> int:
    try:
        return int((node["metadata"].get("annotations") or {}).get(keys.generation, "0"))
    except ValueError:
        return 0
