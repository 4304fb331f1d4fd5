"""The Job that checks one node: pinned to it, tolerating dhc's and the usual GPU/EFA taints,
asking for all its GPUs and EFA devices, bounded by the profile's timeouts, named deterministically.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from dhc.k8s.scheme import Keys, label_value

JOB_LABEL = "app.kubernetes.io/managed-by"
NODE_LABEL = "dhc.dev/node"
ATTEMPT_LABEL = "dhc.dev/attempt"


@dataclass(frozen=True)
class JobSettings:
    namespace: str = "dhc"
    image: str = "dhc-node:latest"
    service_account: str = "dhc-node"
    profile: str = "quick"
    suite: str = "InstanceStress"
    ttl_s: int = 3600
    extra_args: tuple[str, ...] = ()
    connectivity: bool = True  # after stress passes, nodes that joined together test their fabric
    rendezvous_port: int = 29500


def job_name(node: str, generation: int, attempt: int) -> str:
    """Deterministic and valid (<= 63 chars): a restarted controller finds, never duplicates, its Jobs."""
    base = re.sub(r"[^a-z0-9-]", "-", node.lower()).strip("-")
    suffix = f"-g{generation}-a{attempt}"
    if len(base) + len(suffix) + 4 > 63:
        digest = hashlib.sha256(node.encode()).hexdigest()[:8]
        base = f"{base[: 63 - len(suffix) - 4 - 9]}-{digest}"
    return f"dhc-{base}{suffix}"


def job_manifest(node: str, generation: int, attempt: int, instance_type: str, gpus: int, efa: int,
                 deadline_s: int, keys: Keys, settings: JobSettings) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    if efa:
        limits["vpc.amazonaws.com/efa"] = str(efa)
    stage = ["--stage", "stress"] if settings.connectivity else []
    command = ["dhc", "run", "--suite", settings.suite, "--profile", settings.profile, "--instance-type",
               instance_type, "--sink", "kubernetes", *stage, *settings.extra_args]
    labels = {JOB_LABEL: "dhc", NODE_LABEL: label_value(node), ATTEMPT_LABEL: f"g{generation}-a{attempt}"}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(node, generation, attempt), "namespace": settings.namespace, "labels": labels,
                     "annotations": {"dhc.dev/node-name": node}},
        "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": int(deadline_s), "ttlSecondsAfterFinished": settings.ttl_s,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeName": node, "restartPolicy": "Never", "serviceAccountName": settings.service_account,
                    "tolerations": [
                        {"key": keys.health, "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "vpc.amazonaws.com/efa", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [{
                        "name": "dhc", "image": settings.image, "command": command,
                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "DHC_K8S_PREFIX", "value": keys.check_status.split("/")[0]}],
                        "workingDir": "/var/lib/dhc",  # reports land in /var/lib/dhc/reports/<instance>-<time>
                        "resources": {"limits": limits, "requests": dict(limits)},
                        "securityContext": {"privileged": True},  # DCGM, NVML and the kernel log need the host
                        "volumeMounts": [{"name": "reports", "mountPath": "/var/lib/dhc/reports"}],
                    }],
                    "volumes": [{"name": "reports", "hostPath": {"path": "/var/lib/dhc/reports",
                                                                 "type": "DirectoryOrCreate"}}],
                },
            },
        },
    }


BATCH_LABEL = "dhc.dev/batch"


def batch_name(nodes: list[str], attempt: int) -> str:
    """Deterministic for the same nodes and try: a restarted controller re-creates nothing."""
    digest = hashlib.sha256("\n".join(sorted(nodes)).encode()).hexdigest()[:10]
    return f"dhc-fabric-{digest}-a{attempt}"


def batch_manifests(nodes: list[str], attempt: int, instance_type: str, gpus: int, efa: int, deadline_s: int,
                    keys: Keys, settings: JobSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """A headless Service and an Indexed Job: one pod on each node, meeting at pod 0 for torch's rendezvous."""
    name = batch_name(nodes, attempt)
    labels = {JOB_LABEL: "dhc", BATCH_LABEL: name}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
               "spec": {"clusterIP": "None", "selector": {BATCH_LABEL: name}, "publishNotReadyAddresses": True,
                        "ports": [{"name": f"rendezvous-{i}", "port": settings.rendezvous_port + i} for i in range(3)]}}
    job = job_manifest(nodes[0], 0, attempt, instance_type, gpus, efa, deadline_s, keys, settings)
    job["metadata"].update(name=name, labels=dict(labels),
                           annotations={"dhc.dev/nodes": ",".join(sorted(nodes))})
    spec = job["spec"]
    spec.update(completionMode="Indexed", completions=len(nodes), parallelism=len(nodes))
    pod = spec["template"]["spec"]
    spec["template"]["metadata"]["labels"] = dict(labels)
    del pod["nodeName"]
    pod["subdomain"] = name
    pod["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": sorted(nodes)}]}]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {BATCH_LABEL: name}}, "topologyKey": "kubernetes.io/hostname"}]},
    }
    container = pod["containers"][0]
    container["command"] = ["dhc", "run", "--suite", "InstanceConnectivity", "--profile", settings.profile,
                            "--instance-type", instance_type, "--sink", "kubernetes", *settings.extra_args]
    container["env"] += [{"name": "DHC_NODES", "value": str(len(nodes))},
                         {"name": "DHC_RENDEZVOUS", "value": f"{name}-0.{name}:{settings.rendezvous_port}"}]
    return service, job
