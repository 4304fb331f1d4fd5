"""Settings from the environment. The only module in dhc that reads environment variables.

Command-line flags win over these; these win over what dhc discovers (IMDS, hostname).
Every value is checked here, before anything runs: a bad one is a ``UsageError`` naming the
variable (exit 2), never a traceback or a failure found an hour later inside a collective. ``problem``
is that one check of the values; a run configuration carrying these settings (``dhc.runconfig``) is
checked by it too, named by its keys. ``Settings.absolute`` fixes relative paths against the caller's cwd.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    imds_timeout_s: float = 0.5  # each IMDS request
    imds_deadline_s: float = 2.0  # the whole IMDS exchange, however slowly a server trickles
    thresholds_file: str | None = None
    suites_dir: str | None = None
    out_dir: str | None = None
    dcgmi: str = "dcgmi"  # the dcgmi binary: a name looked up on PATH, or a path
    dcgm_hostengine: str | None = None  # HOST[:PORT] of the node's standalone nv-hostengine (DHC_DCGM_HOSTENGINE)
    nv_hostengine: str = "nv-hostengine"  # started for the run when no host engine answers (DHC_NV_HOSTENGINE)
    dcgm_start_hostengine: str = "auto"  # auto (not inside a pod) | never | always (DHC_DCGM_START_HOSTENGINE)
    in_kubernetes: bool = False  # KUBERNETES_SERVICE_HOST is set: dhc runs inside a pod
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
        """Read and parse the variables, then check the values with ``problem`` (named by variable)."""
        env = os.environ if environ is None else environ
        endpoint = env.get("DHC_IMDS_ENDPOINT") or env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        mode = env.get("DHC_IMDS", "auto").lower()
        if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
            mode = "off"
        elif endpoint and mode == "auto":
            mode = "on"  # an endpoint named on purpose is meant to be asked
        origins: dict[str, str] = {}
        identity = {name: _first(env, origins, name, *keys) for name, keys in _IDENTITY_VARS.items()}
        index_key = "DHC_NODE_INDEX" if env.get("DHC_NODE_INDEX") else "JOB_COMPLETION_INDEX"
        settings = cls(
            **identity,
            imds_mode=mode,
            imds_endpoint=(endpoint or IMDS_DEFAULT_ENDPOINT).rstrip("/"),
            imds_timeout_s=_seconds(env, "DHC_IMDS_TIMEOUT_S", 0.5),
            imds_deadline_s=_seconds(env, "DHC_IMDS_DEADLINE_S", 2.0),
            thresholds_file=env.get("DHC_THRESHOLDS") or None,
            suites_dir=env.get("DHC_SUITES") or None,
            out_dir=env.get("DHC_OUT") or None,
            dcgmi=env.get("DHC_DCGMI") or "dcgmi",
            dcgm_hostengine=env.get("DHC_DCGM_HOSTENGINE") or None,
            nv_hostengine=env.get("DHC_NV_HOSTENGINE") or "nv-hostengine",
            dcgm_start_hostengine=(env.get("DHC_DCGM_START_HOSTENGINE") or "auto").strip().lower(),
            in_kubernetes=bool(env.get("KUBERNETES_SERVICE_HOST")),
            kernel_log=env.get("DHC_KERNEL_LOG") or "/dev/kmsg",
            fi_info=env.get("DHC_FI_INFO") or "fi_info",
            nccl_tests=env.get("DHC_NCCL_TESTS") or None,
            sys_infiniband=env.get("DHC_SYS_INFINIBAND") or "/sys/class/infiniband",
            cluster_id=env.get("DHC_CLUSTER_ID") or None,
            k8s_prefix=env.get("DHC_K8S_PREFIX") or "sagemaker.amazonaws.com",
            termination_log=env.get("DHC_TERMINATION_LOG") or "/dev/termination-log",
            log_group=env.get("DHC_CLOUDWATCH_LOG_GROUP") or None,
            nodes=_whole(env, "DHC_NODES", 1, f"1 to {MAX_NODES}"),
            node_index=_whole(env, index_key, 0, f"0 to {MAX_NODES - 1}"),
            rendezvous=(env.get("DHC_RENDEZVOUS") or "").strip() or None,
            watchdog_grace_s=_seconds(env, "DHC_WATCHDOG_GRACE_S", 30.0),
            collect_timeout_s=_seconds(env, "DHC_COLLECT_TIMEOUT_S", 300.0),
            origins=origins,
        )
        found = problem(settings, lambda name: index_key if name == "node_index" else _VARIABLES[name])
        if found:
            raise UsageError(found[1])
        return settings

    def absolute(self) -> Settings:
        """These settings with every path made absolute against this process's cwd (a child runs elsewhere);
        a tool named without a slash (``dcgmi``) stays a name looked up on PATH."""
        paths = {name: str(Path(value).absolute()) for name in _PATHS if (value := getattr(self, name))}
        tools = {name: str(Path(value).absolute()) for name in _TOOLS if (value := getattr(self, name)) and "/" in value}
        return replace(self, **paths, **tools)


_PATHS = ("thresholds_file", "suites_dir", "out_dir", "kernel_log", "sys_infiniband", "termination_log")
_TOOLS = ("dcgmi", "nv_hostengine", "fi_info", "nccl_tests")  # a name on PATH, or a path
_VARIABLES = {"imds_mode": "DHC_IMDS", "imds_timeout_s": "DHC_IMDS_TIMEOUT_S", "imds_deadline_s": "DHC_IMDS_DEADLINE_S",
              "dcgm_start_hostengine": "DHC_DCGM_START_HOSTENGINE", "nodes": "DHC_NODES", "node_index": "DHC_NODE_INDEX",
              "rendezvous": "DHC_RENDEZVOUS", "watchdog_grace_s": "DHC_WATCHDOG_GRACE_S",
              "collect_timeout_s": "DHC_COLLECT_TIMEOUT_S"}
_DAY_S = 86400.0
_SECONDS_MAX = {"imds_timeout_s": 60.0, "imds_deadline_s": 300.0, "watchdog_grace_s": _DAY_S, "collect_timeout_s": _DAY_S}
_CHOICES = {"imds_mode": ("auto", "on", "off"), "dcgm_start_hostengine": ("auto", "never", "always")}


def problem(settings: Settings, name: Callable[[str], str]) -> tuple[str, str] | None:
    """(field, what is wrong with it) for the first value out of range, or None: the one check of resolved
    settings, for the environment (``from_env``) and a carried run configuration alike. ``name`` says how
    the caller spells a field (``DHC_NODES``, ``settings.nodes``); the wording starts with it."""
    for key, choices in _CHOICES.items():
        value = getattr(settings, key)
        if value not in choices:
            return key, f"{name(key)}: expected {', '.join(choices[:-1])} or {choices[-1]}, got {str(value)[:100]!r}"
    for key, maximum in _SECONDS_MAX.items():
        value = getattr(settings, key)
        if not isinstance(value, int | float) or not math.isfinite(value) or not 0 < value <= maximum:
            return key, f"{name(key)}: expected a number of seconds above 0 and at most {maximum:g}, got {value!r}"
    return _placement_problem(settings, name) or _rendezvous_problem(settings.rendezvous, name)


def _placement_problem(settings: Settings, name: Callable[[str], str]) -> tuple[str, str] | None:
    nodes, index = settings.nodes, settings.node_index
    if not 1 <= nodes <= MAX_NODES:
        return "nodes", f"{name('nodes')}: expected a whole number from 1 to {MAX_NODES}, got {nodes!r}"
    if not 0 <= index < nodes:
        return "node_index", (f"{name('node_index')}={index} is not a node of {name('nodes')}={nodes} "
                              f"(expected 0 to {nodes - 1})")
    return None


def _rendezvous_problem(raw: str | None, name: Callable[[str], str]) -> tuple[str, str] | None:
    if raw is None:
        return None
    match = _RENDEZVOUS.fullmatch(raw)
    if not match or len(match["host"]) > 253 or not 1 <= int(match["port"]) <= 65535:
        return "rendezvous", (f"{name('rendezvous')}: expected HOST:PORT (a host name, IPv4 or [IPv6] address and a "
                              f"port from 1 to 65535), got {raw[:100]!r}")
    return None


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


MAX_NODES = 4096
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() accepts '²' and int() then fails
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_RENDEZVOUS = re.compile(rf"(?P<host>{_HOST}|\[[0-9A-Fa-f:.]{{2,45}}\]):(?P<port>[0-9]{{1,5}})")


def _whole(env: Mapping[str, str], key: str, default: int, span: str) -> int:
    """A whole number as written (its range, ``span`` in words, is ``problem``'s to check)."""
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw.strip()):
        raise UsageError(f"{key}: expected a whole number from {span}, got {raw[:100]!r}")
    return int(raw.strip())


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    """A number of seconds as written (its range is ``problem``'s to check: NaN and inf are no durations)."""
    raw = env.get(key)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"{key}: expected a number of seconds, got {raw[:100]!r}") from None


def apply_environment(variables: Mapping[str, str]) -> None:
    """Set variables for this process and its children (a rank's NCCL settings, say)."""
    os.environ.update(variables)


def pytest_child_environment() -> dict[str, str]:
    """The environment of ``dhc run``'s pytest child: the caller's own pytest settings (PYTEST_ADDOPTS,
    PYTEST_PLUGINS, PYTEST_DEBUG, ...) left out, and no plugin loaded merely for being installed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return env | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra``, for a tool dhc starts."""
    return {**os.environ, **(extra or {})}
