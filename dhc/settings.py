"""Settings from the environment. The only module in dhc that reads environment variables.

Command-line flags win over these; these win over what dhc discovers (IMDS, hostname).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dhc.errors import UsageError

IMDS_DEFAULT_ENDPOINT = "http://169.254.169.254"


@dataclass(frozen=True)
class Settings:
    instance_id: str | None = None
    instance_type: str | None = None
    node_name: str | None = None
    region: str | None = None
    cluster: str | None = None
    provider_id: str | None = None  # a Kubernetes node's spec.providerID, passed in by the controller
    imds_mode: str = "auto"  # auto: only where the machine says it is EC2 | on | off
    imds_endpoint: str = IMDS_DEFAULT_ENDPOINT
    imds_timeout_s: float = 0.5
    thresholds_file: str | None = None
    suites_dir: str | None = None
    out_dir: str | None = None
    dcgmi: str = "dcgmi"  # the dcgmi binary: a name looked up on PATH, or a path
    dcgm_hostengine: str | None = None  # HOST[:PORT] of the node's standalone nv-hostengine (DHC_DCGM_HOSTENGINE)
    nv_hostengine: str = "nv-hostengine"  # started for the run when no host engine answers (DHC_NV_HOSTENGINE)
    kernel_log: str = "/dev/kmsg"  # where XIDs since boot are read from (a file works too)
    fi_info: str = "fi_info"  # libfabric's fi_info: a name looked up on PATH, or a path
    nccl_tests: str | None = None  # all_reduce_perf to measure with instead of torch (DHC_NCCL_TESTS)
    sys_infiniband: str = "/sys/class/infiniband"  # where the kernel lists EFA devices
    cluster_id: str | None = None  # for the CloudWatch log group name (DHC_CLUSTER_ID)
    k8s_prefix: str = "sagemaker.amazonaws.com"  # key prefix of the node labels, taint and annotations
    termination_log: str = "/dev/termination-log"  # --sink termination writes the verdict here (DHC_TERMINATION_LOG)
    log_group: str | None = None  # a CloudWatch log group instead of HyperPod's (DHC_CLOUDWATCH_LOG_GROUP)
    nodes: int = 1  # nodes in a multi-node run (DHC_NODES)
    node_index: int = 0  # this node's place in it (DHC_NODE_INDEX, or a Kubernetes Indexed Job's index)
    rendezvous: str | None = None  # host:port of node 0's rendezvous (a headless Service name on Kubernetes)
    watchdog_grace_s: float = 30.0  # how far past its timeout a silent check may run before dhc kills it
    collect_timeout_s: float = 300.0  # how long pytest may take to collect the checks
    origins: dict[str, str] = field(default_factory=dict)  # field -> the variable it came from

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        endpoint = env.get("DHC_IMDS_ENDPOINT") or env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        mode = env.get("DHC_IMDS", "auto").lower()
        if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
            mode = "off"
        elif endpoint and mode == "auto":
            mode = "on"  # an endpoint named on purpose is meant to be asked
        if mode not in ("auto", "on", "off"):
            raise UsageError(f"DHC_IMDS: expected auto, on or off, got {mode!r}")
        origins: dict[str, str] = {}
        identity = {name: _first(env, origins, name, *keys) for name, keys in _IDENTITY_VARS.items()}
        return cls(
            **identity,
            imds_mode=mode,
            imds_endpoint=(endpoint or IMDS_DEFAULT_ENDPOINT).rstrip("/"),
            imds_timeout_s=_positive_float(env, "DHC_IMDS_TIMEOUT_S", 0.5),
            thresholds_file=env.get("DHC_THRESHOLDS") or None,
            suites_dir=env.get("DHC_SUITES") or None,
            out_dir=env.get("DHC_OUT") or None,
            dcgmi=env.get("DHC_DCGMI") or "dcgmi",
            dcgm_hostengine=env.get("DHC_DCGM_HOSTENGINE") or None,
            nv_hostengine=env.get("DHC_NV_HOSTENGINE") or "nv-hostengine",
            kernel_log=env.get("DHC_KERNEL_LOG") or "/dev/kmsg",
            fi_info=env.get("DHC_FI_INFO") or "fi_info",
            nccl_tests=env.get("DHC_NCCL_TESTS") or None,
            sys_infiniband=env.get("DHC_SYS_INFINIBAND") or "/sys/class/infiniband",
            cluster_id=env.get("DHC_CLUSTER_ID") or None,
            k8s_prefix=env.get("DHC_K8S_PREFIX") or "sagemaker.amazonaws.com",
            termination_log=env.get("DHC_TERMINATION_LOG") or "/dev/termination-log",
            log_group=env.get("DHC_CLOUDWATCH_LOG_GROUP") or None,
            nodes=_whole(env, "DHC_NODES", 1, minimum=1),
            node_index=_whole(env, "DHC_NODE_INDEX", _whole(env, "JOB_COMPLETION_INDEX", 0, 0), 0),
            rendezvous=env.get("DHC_RENDEZVOUS") or None,
            watchdog_grace_s=_positive_float(env, "DHC_WATCHDOG_GRACE_S", 30.0),
            collect_timeout_s=_positive_float(env, "DHC_COLLECT_TIMEOUT_S", 300.0),
            origins=origins,
        )


_IDENTITY_VARS = {
    "instance_id": ("DHC_INSTANCE_ID",),
    "instance_type": ("DHC_INSTANCE_TYPE",),
    "node_name": ("NODE_NAME", "DHC_NODE_NAME"),
    "region": ("DHC_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    "cluster": ("DHC_CLUSTER",),
    "provider_id": ("DHC_PROVIDER_ID",),
}


def _first(env: Mapping[str, str], origins: dict[str, str], name: str, *keys: str) -> str | None:
    for key in keys:
        if env.get(key):
            origins[name] = key
            return env[key]
    return None


def _whole(env: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or int(raw) < minimum:
        raise UsageError(f"{key}: expected a whole number >= {minimum}, got {raw!r}")
    return int(raw)


def _positive_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{key}: expected a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise UsageError(f"{key}: expected a positive number of seconds, got {raw!r}")
    return value


def apply_environment(variables: Mapping[str, str]) -> None:
    """Set variables for this process and its children (a rank's NCCL settings, say)."""
    os.environ.update(variables)


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra``, for a tool dhc starts."""
    return {**os.environ, **(extra or {})}
