"""What a check pod may do and use: its security context, resources, volumes and environment.

Why each grant is there (and why the rest is not):

- GPUs and EFA devices come from the device plugins (``nvidia.com/gpu``, ``vpc.amazonaws.com/efa``
  requests): the container runtime puts exactly those device nodes in the container, which is all
  NVML, CUDA and libfabric need. No ``privileged``, no hostPath.
- ``IPC_LOCK``: libfabric's EFA provider and NCCL pin (register) memory for RDMA; without it the
  registration is capped by RLIMIT_MEMLOCK. Every other capability is dropped.
- DCGM: ``dcgmi diag`` talks to the GPU Operator's standalone host engine on the node
  (``DHC_DCGM_HOSTENGINE=$(HOST_IP):5555``, ``HOST_IP`` from the downward API), so the pod needs
  neither the host network nor SYS_ADMIN.
- The kernel log (XIDs since boot, ``/dev/kmsg``) needs a privileged container (the device cgroup
  blocks the char device otherwise), so the check pod does not read it: the check records
  ``kernel_log_readable = 0``; reading the kernel log is the node agent's job. NVML's XID events
  during the run are still watched.
- ``/dev/shm``: a container gets 64 MiB by default; NCCL's shared-memory transport and torch's rank
  processes need far more. A memory-backed emptyDir of 1 GiB per GPU (NVIDIA's NGC guidance for
  containers is ``--shm-size=1g`` or more), at least 1 GiB. It counts against the memory limit.
- No ServiceAccount token: the pod hands its verdict over in its termination message.
- CPU and memory: requests small enough to fit any GPU node beside its daemons (a quarter of the
  node's allocatable at most), limits up to the node's allocatable, so a check is not OOM-killed on
  a large node nor unschedulable on a small one.
"""

from __future__ import annotations

import re
from typing import Any

DCGM_PORT = 5555
SHM_GIB_PER_GPU = 1
TERMINATION_LOG = "/dev/termination-log"
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
          "Ti": 2**40, "m": 10**-3}


def quantity(text: str | None) -> float | None:
    """A Kubernetes quantity ("191450m", "2097152Ki", "16Gi", "8") as a number; None when unreadable."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kMGT]i?|Ki|m)?\s*", str(text or ""))
    if not match:
        return None
    try:
        return float(match.group(1)) * _UNITS[match.group(2) or ""]
    except (ValueError, KeyError):
        return None


def shm_gib(gpus: int) -> int:
    return max(1, SHM_GIB_PER_GPU * gpus)


def resources(gpus: int, efa: int, allocatable: dict[str, str] | None, cpu: float, memory_gib: float) -> dict[str, Any]:
    """Requests that fit the node, limits up to what the node has; devices requested whole."""
    alloc = allocatable or {}
    node_cpu, node_mem = quantity(alloc.get("cpu")), quantity(alloc.get("memory"))
    shm = shm_gib(gpus) * 2**30
    cpu_request = min(cpu, node_cpu / 4) if node_cpu else cpu
    mem_request = (min(memory_gib * 2**30, node_mem / 4) if node_mem else memory_gib * 2**30) + shm
    cpu_limit = node_cpu if node_cpu else 4 * cpu
    mem_limit = max(node_mem, mem_request) if node_mem else 4 * memory_gib * 2**30 + shm
    devices = ({"nvidia.com/gpu": str(gpus)} if gpus else {}) | ({"vpc.amazonaws.com/efa": str(efa)} if efa else {})
    return {"requests": {"cpu": _millis(cpu_request), "memory": _mebi(mem_request), **devices},
            "limits": {"cpu": _millis(cpu_limit), "memory": _mebi(mem_limit), **devices}}


def _millis(cores: float) -> str:
    return f"{max(1, int(cores * 1000))}m"


def _mebi(size: float) -> str:
    return f"{max(1, int(size // 2**20))}Mi"


def security_context() -> dict[str, Any]:
    return {"privileged": False, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]}}


def pod_security_context() -> dict[str, Any]:
    return {"seccompProfile": {"type": "RuntimeDefault"}}


def volumes(gpus: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): reports in the pod's own scratch space, and a /dev/shm large enough for NCCL."""
    vols = [{"name": "reports", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(gpus)}Gi"}}]
    mounts = [{"name": "reports", "mountPath": "/var/lib/dhc/reports"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    return vols, mounts


def env() -> list[dict[str, Any]]:
    """The node's name and address from the downward API; DCGM's standalone host engine on that address."""
    return [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "DHC_DCGM_HOSTENGINE", "value": f"$(HOST_IP):{DCGM_PORT}"},
            {"name": "DHC_TERMINATION_LOG", "value": TERMINATION_LOG}]
