"""The connectivity stage: batches of nodes whose stress passed, each tested together in one Indexed Job.

``Batches`` is a mixin of the ``Controller``: its background thread forms batches from the nodes
waiting in ``candidates`` (node -> when its stress passed) once the batch window has passed, creates
each batch's headless Service and Indexed Job (``jobs.batch_manifests``) and marks its nodes
InProgress at the connectivity stage.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from dhc.controller.jobs import batch_manifests
from dhc.controller.nodeinfo import allocatable as _allocatable
from dhc.controller.nodeinfo import attempts as _attempts
from dhc.controller.requests import Requests
from dhc.k8s import scheme
from dhc.k8s.client import K8sError

log = logging.getLogger("dhc.controller")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


class Batches:
    """The connectivity stage of a ``Controller`` (which provides every attribute used here)."""

    candidates: dict[str, float]
    _batching: threading.Lock
    nodes: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    settings: Any
    thresholds: Any
    keys: scheme.Keys
    kube: Any
    # and group(node), count(what, kind), _type(itype), _deadline(itype, profile, suite)

    def background(self) -> list[tuple[str, Any]]:
        on_demand = Requests(self, self.settings.jobs.namespace, self.settings.requests_poll_s)  # type: ignore[arg-type]
        return [("batcher", self._batcher)] + ([("requests", on_demand.run)] if self.settings.requests_poll_s else [])

    def _batcher(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            try:
                self._form_batches()
            except K8sError as exc:
                log.warning("forming a connectivity batch failed (%s); will retry", exc)

    def _form_batches(self) -> None:
        with self._batching:
            now, groups = time.monotonic(), {}
            for name, since in list(self.candidates.items()):
                node = self.nodes.get(name)
                if node is not None:
                    itype = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL)
                    if itype in self.thresholds.names:  # an unknown type never passed its stress stage
                        groups.setdefault((itype, self.group(node).profile), []).append((since, name))
            for (itype, profile), members in groups.items():
                if now - min(since for since, _ in members) >= self.settings.batch_window_s:
                    self._start_batch(itype, profile, sorted(name for _, name in members))

    def _start_batch(self, itype: str, profile: str, names: list[str]) -> None:
        limits, jobs = self._type(itype), replace(self.settings.jobs, profile=profile)
        attempt = max(_attempts(self.nodes[n], self.keys) for n in names)
        deadline = self._deadline(itype, profile, "InstanceConnectivity")
        service, job = batch_manifests(names, attempt, itype, limits.gpus, limits.efa, deadline, self.keys,
                                       jobs, _allocatable(self.nodes[names[0]]))
        self.kube.create_service(service)
        if self.kube.create_job(job):  # False: it exists already (a restarted controller)
            self.count("jobs", "connectivity")
        self.jobs.setdefault(job["metadata"]["name"], job)
        for name in names:
            annotations = {self.keys.stage: "connectivity", self.keys.batch: job["metadata"]["name"]}
            state = scheme.NodeState("InProgress", "Unschedulable")
            self.nodes[name] = self.kube.patch_node(
                name, lambda n, a=annotations, s=state: scheme.node_ops(n, self.keys, s, a))
            self.candidates.pop(name, None)
        log.info("connectivity batch %s: %d %s nodes", job["metadata"]["name"], len(names), itype)
