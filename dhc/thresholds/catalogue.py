"""The catalogue of checks: each check's whole contract, one entry per check id.

An entry (``CheckSpec``, shaped in ``contract``) declares the metrics the check judges (quantity,
comparison, action) and those it only reports, the settings it reads from its profile, how its
timeout splits across sub-runs, and the faults the self-test plants in it with what each must be
caught as. ``thresholds.yaml`` may only name checks, metrics and settings listed here, so a typo is
an error, not a limit that silently never applies; a check may only record the metrics its entry
declares, so a typo in a check is an error too, never a value without a limit.
"""

from __future__ import annotations

from dhc.model import Action, Comparison, Status
from dhc.model.choices import SUITES
from dhc.thresholds.contract import Budget, Caught, CheckSpec, MetricSpec, PlantedFault, SubRun, split_timeout

__all__ = ["CATALOGUE", "SUITES", "Budget", "Caught", "CheckSpec", "MetricSpec", "PlantedFault", "SubRun",
           "planted_fault", "split_timeout", "suite_of", "unknown_check"]



def suite_of(check_id: str) -> str:
    return SUITES[check_id.split(".", 1)[0]]


def _m(quantity: str, comparison: str, action: Action, description: str) -> MetricSpec:
    return MetricSpec(quantity, Comparison(comparison), action, description)


def _fault(name: str, planted: str, seam: str, device: int | None, action: Action, words: str,
           multi_node: bool = False, **strength: float) -> PlantedFault:
    return PlantedFault(name, planted, seam, device, Caught(Status.FAILED, action, words), multi_node, strength)


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
    }, {"duration_s": float, "matrix_size": int}, info=("clock_events_watched", "xid_events_watched"), faults=(
        _fault("gemm-bitflip", "one bit flipped in one GEMM result on device 1", "flip_bit_worker", 1, R,
               "silent data corruption"),
        _fault("gemm-sibling", "device 2 multiplies a perturbed input, so its results differ from its siblings'",
               "differ_worker", 2, R, "sibling"),
        _fault("gemm-slow", "device 0 idles so that each GEMM takes {slow_factor} times as long", "slow_worker", 0, R,
               "relative_to_median", slow_factor=4),
    )),
    CheckSpec("stress.memtest", "device memory patterns and copy bandwidth", {
        "copy_bandwidth": _m("bandwidth", "min", R, "device-to-device copy, read + write"),
        "memory_errors": _m("count", "max", R, "words that read back wrong"),
    }, {"memory_fraction": float, "max_bytes": int},
        info=("tested_gib", "coverage_of_free", "verified_gb_per_s", "clock_events_watched", "xid_events_watched"),
        faults=(_fault("memtest-word", "one word of device memory corrupted after a pattern is written",
                       "MemtestInjection", 0, R, "read back wrong"),)),
    CheckSpec("stress.dcgm", "NVIDIA DCGM diagnostics", {}, {"level": int}, {"level": 2}, info=("level", "results_*"),
              timeout_split={"dcgmi": (SubRun("diag", 0.9, "dcgmi diag -r <level>, with the host engine's start and stop",
                                              room_s=5.0),)}),
    CheckSpec("connectivity.efa", "EFA devices present as the instance type promises", {
        "efa_devices": _m("count", "equals", R, "EFA RDM domains"),
    }, info=("efa_sysfs_devices",),
        timeout_split={"fi_info": (SubRun("fi_info", 0.5, "fi_info -p efa, listing the EFA domains"),)}),
    CheckSpec("connectivity.allreduce", "all-reduce bus bandwidth within and across nodes", {
        "busbw_intra_node": _m("bandwidth", "min", R, "single-node all-reduce bus bandwidth"),
        "busbw_inter_node": _m("bandwidth", "min", R, "multi-node all-reduce bus bandwidth"),
    }, {"max_bytes": int, "cpu_ranks": int, "shm_bytes_per_rank": int}, {"cpu_ranks": 2},
        info=("busbw_*_at_largest_size", "busbw_*_ranks", "busbw_nvlink_only", "busbw_network_loopback",
              "p2p_channels", "shm_channels"),
        timeout_split={
            "torch": (SubRun("intra_node", 0.2, "this node's ranks, every transport NCCL picks"),
                      SubRun("inter_node", 0.2, "the ranks of every node of a multi-node run"),
                      SubRun("nvlink_only", 0.2, "this node's ranks over NVLink alone"),
                      SubRun("network_loopback", 0.2, "this node's ranks through its EFA NICs alone")),
            "nccl-tests": (SubRun("all_reduce_perf", 0.9, "nccl-tests' all_reduce_perf, one process for every GPU"),),
        }),
    CheckSpec("connectivity.pairwise", "pairwise node bandwidth to find the slow node", {
        "busbw_pair": _m("bandwidth", "min", B, "two-node all-reduce bus bandwidth"),
    }, {"message_bytes": int}, info=("busbw_with_node_*", "suspect_nodes"),
        timeout_split={"torch": (SubRun("pair_rounds", 0.4, "every pair of nodes, in rounds"),
                                 SubRun("retest_rounds", 0.4, "suspects again with known-good partners"))},
        faults=(_fault("pairwise-slow-node", "this node idles {slow_s} s in every iteration of every pair's all-reduce "
                       "(a multi-node run)", "slow_rank", None, R, "slow with known-good partners", multi_node=True,
                       slow_s=0.2),)),
)}


def unknown_check(check: str) -> str | None:
    """What is wrong with ``check`` as a check id (the one wording, for flags and files), or None."""
    return None if check in CATALOGUE else f"unknown check id {check!r}; known: {', '.join(CATALOGUE)}"


def planted_fault(name: str | None, check: str | None = None) -> PlantedFault | None:
    """The fault called ``name``, when it is planted in ``check`` (any check when None)."""
    specs = [CATALOGUE[check]] if check is not None else CATALOGUE.values()
    return next((fault for spec in specs for fault in spec.faults if fault.name == name), None)
