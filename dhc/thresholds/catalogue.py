"""The catalogue of checks: ids, suites, the metrics each records (quantity, comparison, action).

``thresholds.yaml`` may only name checks and metrics listed here, so a typo is an error, not a
limit that silently never applies; and a check may only record the metrics its entry declares
(judged, or informational), so a typo in a check is an error too, never a value without a limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from dhc.model import Action, Comparison

SUITES = {"stress": "InstanceStress", "connectivity": "InstanceConnectivity"}


@dataclass(frozen=True)
class MetricSpec:
    quantity: str
    comparison: Comparison
    action: Action
    description: str


@dataclass(frozen=True)
class CheckSpec:
    id: str
    description: str
    metrics: dict[str, MetricSpec]
    settings: dict[str, type] = field(default_factory=dict)  # extra per-profile keys and their types
    info: tuple[str, ...] = ()  # informational metrics (fnmatch patterns): recorded for people, never judged

    @property
    def suite(self) -> str:
        return suite_of(self.id)

    def declares(self, metric: str) -> bool:
        """Whether the check may record ``metric``: a judged metric, or one of its informational patterns."""
        return metric in self.metrics or any(fnmatchcase(metric, pattern) for pattern in self.info)


def suite_of(check_id: str) -> str:
    return SUITES[check_id.split(".", 1)[0]]


def _m(quantity: str, comparison: str, action: Action, description: str) -> MetricSpec:
    return MetricSpec(quantity, Comparison(comparison), action, description)


R, B, N = Action.REPLACE, Action.REBOOT, Action.NONE

CATALOGUE: dict[str, CheckSpec] = {spec.id: spec for spec in (
    CheckSpec("stress.inventory", "devices present and healthy as the instance type promises", {
        "gpu_count": _m("count", "equals", R, "GPUs visible to NVML"),
        "cpu_cores": _m("count", "min", R, "online CPU cores"),
        "memory_gib": _m("memory", "min", R, "host memory"),
        "nvlinks_up": _m("count", "min", B, "NVLink links up per GPU"),
        "ecc_enabled": _m("count", "equals", B, "ECC mode on (1) or off (0)"),
        "ecc_uncorrected_volatile": _m("count", "max", B, "uncorrectable ECC errors since the driver loaded"),
        "remapped_rows_pending": _m("count", "max", B, "row remappings waiting for a GPU reset"),
        "remap_failure": _m("count", "max", R, "a row remapping that failed"),
        "retired_pages_pending": _m("count", "max", B, "page retirements waiting for a GPU reset"),
        "retired_pages": _m("count", "max", R, "retired memory pages (pre-Ampere GPUs)"),
        "pcie_width_ratio": _m("ratio", "min", B, "PCIe link width now over its maximum"),
        "temperature_c": _m("temperature", "max", R, "GPU temperature before the stress"),
    }, info=("ecc_uncorrected_aggregate", "pcie_gen", "pcie_gen_max", "nvml_unreadable_items", "kernel_log_readable",
             "xid_in_kernel_log", "sxid_in_kernel_log")),
    CheckSpec("stress.gemm", "matrix-multiply burn with silent-data-corruption detection", {
        "tflops_bf16": _m("compute", "min", R, "bf16 GEMM throughput per device"),
        "tflops_fp16": _m("compute", "min", R, "fp16 GEMM throughput per device"),
        "tflops_tf32": _m("compute", "min", R, "tf32 GEMM throughput per device"),
        "tflops_fp32": _m("compute", "min", R, "fp32 GEMM throughput per device"),
        "relative_to_median": _m("ratio", "min", R, "device throughput over the node's median"),
    }, {"duration_s": float, "matrix_size": int}, info=("clock_events_watched", "xid_events_watched",)),
    CheckSpec("stress.memtest", "device memory patterns and copy bandwidth", {
        "copy_bandwidth": _m("bandwidth", "min", R, "device-to-device copy, read + write"),
        "memory_errors": _m("count", "max", R, "words that read back wrong"),
    }, {"memory_fraction": float, "max_bytes": int},
        info=("tested_gib", "coverage_of_free", "verified_gb_per_s", "clock_events_watched", "xid_events_watched")),
    CheckSpec("stress.dcgm", "NVIDIA DCGM diagnostics", {}, {"level": int}, info=("level", "results_*")),
    CheckSpec("connectivity.efa", "EFA devices present as the instance type promises", {
        "efa_devices": _m("count", "equals", R, "EFA RDM domains"),
    }, info=("efa_sysfs_devices",)),
    CheckSpec("connectivity.allreduce", "all-reduce bus bandwidth within and across nodes", {
        "busbw_intra_node": _m("bandwidth", "min", R, "single-node all-reduce bus bandwidth"),
        "busbw_inter_node": _m("bandwidth", "min", R, "multi-node all-reduce bus bandwidth"),
    }, {"max_bytes": int, "cpu_ranks": int, "shm_bytes_per_rank": int},
        info=("busbw_*_at_largest_size", "busbw_*_ranks", "busbw_nvlink_only", "busbw_network_loopback",
              "p2p_channels", "shm_channels")),
    CheckSpec("connectivity.pairwise", "pairwise node bandwidth to find the slow node", {
        "busbw_pair": _m("bandwidth", "min", B, "two-node all-reduce bus bandwidth"),
    }, {"message_bytes": int}, info=("busbw_with_node_*", "suspect_nodes")),
)}
