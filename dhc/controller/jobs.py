"""The Job that checks one node: pinned to it, tolerating dhc's and the usual GPU/EFA taints,
asking for all its GPUs and EFA devices, bounded by the profile's timeouts, named deterministically.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from dhc.k8s.scheme import Keys

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
    command = ["dhc", "run", "--suite", settings.suite, "--profile", settings.profile, "--instance-type",
               instance_type, "--sink", "kubernetes", *settings.extra_args]
    labels = {JOB_LABEL: "dhc", NODE_LABEL: _label_safe(node), ATTEMPT_LABEL: f"g{generation}-a{attempt}"}
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


def _label_safe(value: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("-._")
    return cleaned or "node"
