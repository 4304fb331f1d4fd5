"""stress.gemm: all devices burn GEMMs at once; throughput floors, the node median, and SDC detection."""

from dataclasses import replace

import pytest

from dhc.errors import CheckIncomplete
from dhc.injections import LOGICAL_CPU_DEVICES
from dhc.kernels import devices as cuda_devices
from dhc.model import Action
from dhc.probes.watch import StressWatch

DTYPE_ORDER = ("bf16", "fp16", "tf32", "fp32")


@pytest.mark.check("stress.gemm")
def test_gemm(dhc_check, dhc_limits, dhc_devices, dhc_run):
    for lost in getattr(dhc_devices, "lost", ()):  # named first: the check is Failed on it even if it stops below
        dhc_check.fault(f"not burned: {lost}", lost.device, lost.action)
    gemm = _engine()
    planted = dhc_check.planted  # a self-test fault: set on the engine's injection object, on its device
    devices, names = _burn_targets(dhc_devices, dhc_limits, planted)
    dtypes = [d for d in DTYPE_ORDER if f"tflops_{d}" in dhc_check.config.limits] or ["fp32"]
    inject = gemm.GemmInjection(**{planted.seam: planted.device}, **planted.strength) if planted else None
    duration = dhc_check.setting("duration_s") / len(dtypes)
    size = dhc_check.setting("matrix_size")
    by_index = {d.index: d for d in devices if d.kind == "gpu"}
    with StressWatch(list(by_index)) as watch:
        for dtype in dtypes:
            _judge(dhc_check, gemm.burn(names, dtype, size, duration, inject=inject), devices)
    watch.conclude(dhc_check, by_index)  # a watch NVML stopped early makes the check Incomplete, named


def _judge(dhc_check, result, devices):
    median = result.median_tflops
    for w in result.workers:
        device = devices[w.worker]
        dhc_check.record(f"tflops_{result.dtype}", round(w.tflops, 4), "TFLOP/s", device)
        dhc_check.record("relative_to_median", round(w.tflops / median, 4) if median else 0.0, "ratio", device)
        if w.mismatched_iterations:
            dhc_check.fault(f"silent data corruption: {result.dtype} {result.size}x{result.size} result differed from "
                            f"this device's first result in {w.mismatched_iterations} of {w.iterations} iterations "
                            f"({w.mismatched_words} 64-bit words; first at iteration {w.first_mismatch_iteration})",
                            device, Action.REPLACE)
        if w.nonfinite_elements:
            dhc_check.fault(f"{result.dtype} GEMM of finite inputs gave {w.nonfinite_elements} non-finite elements",
                            device, Action.REPLACE)
    for worker in result.outvoted:
        dhc_check.fault(f"silent data corruption: {result.dtype} result differs bit for bit from those of its "
                        f"{len(devices) - len(result.outvoted)} sibling devices given the same inputs",
                        devices[worker], Action.REPLACE)
    if result.no_majority:
        dhc_check.fault(f"{result.dtype} results differ between devices and no majority agrees; "
                        "the faulty device cannot be told apart", None, Action.REPLACE)


def _engine():
    try:
        from dhc.kernels import gemm
    except ImportError as exc:
        raise CheckIncomplete(f"torch is needed for the GEMM burn ({exc}); install dhc[engines]") from None
    return gemm


def _burn_targets(dhc_devices, dhc_limits, planted):
    """torch device names per dhc device. An injection on fewer than three devices runs three logical
    workers on the first one, so that there are siblings to outvote and a median to fall below."""
    if dhc_limits.instance_type.gpus == 0:
        devices, names = [dhc_devices[0]], ["cpu"]
    else:
        import torch
        if not torch.cuda.is_available():
            raise CheckIncomplete("NVML sees GPUs but torch has no CUDA (is this a CPU-only torch build?)")
        targets, unseen, count = cuda_devices.cuda_targets(dhc_devices)  # matched by UUID, not by index
        if unseen:
            raise CheckIncomplete(cuda_devices.unseen_message(unseen, count))
        devices, names = [d for d, _ in targets], [name for _, name in targets]
    if planted and len(devices) < LOGICAL_CPU_DEVICES:
        base, name = devices[0], names[0]
        devices = [replace(base, index=i, name=f"{base.name} [logical worker {i} on {base.label()}]")
                   for i in range(LOGICAL_CPU_DEVICES)]
        names = [name] * LOGICAL_CPU_DEVICES
    return devices, names
