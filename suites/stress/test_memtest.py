"""stress.memtest: patterns over a share of free device memory, verified on the device; copy bandwidth."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from dhc.errors import CheckIncomplete
from dhc.kernels import devices as cuda_devices
from dhc.model import Action
from dhc.probes import host
from dhc.probes.watch import StressWatch

GIB = 2**30
# (tile, chunk, copy buffer) sizes: tiles sized for the cache that holds the scratch tile
SIZES = {"cpu": (2**20, 64 * 2**20, 256 * 2**20), "cuda": (32 * 2**20, GIB, 2 * GIB)}


@pytest.mark.check("stress.memtest")
def test_memtest(dhc_check, dhc_limits, dhc_devices, dhc_run):
    for lost in getattr(dhc_devices, "lost", ()):  # named first: the check is Failed on it even if it stops below
        dhc_check.fault(f"memory not tested: {lost}", lost.device, lost.action)
    memtest = _engine()
    targets = _targets(dhc_devices, dhc_limits)
    planted = dhc_check.planted  # a self-test fault: one corrupted word on the device it names
    fraction, cap = dhc_check.setting("memory_fraction"), dhc_check.setting("max_bytes")
    by_index = {d.index: d for d, _ in targets if d.kind == "gpu"}

    def inject(device):
        return memtest.MemtestInjection() if planted and device.index == planted.device else None

    with StressWatch(list(by_index)) as watch, ThreadPoolExecutor(max_workers=len(targets)) as pool:
        runs = list(pool.map(lambda t: _test_one(memtest, t, fraction, cap, inject(t[0])), targets))
    for run in runs:
        _judge(dhc_check, *run)
    watch.conclude(dhc_check, by_index)  # a watch NVML stopped early makes the check Incomplete, named


def _judge(dhc_check, device, free, result, copy):
    dhc_check.record("copy_bandwidth", round(2 * copy / 1e9, 3), "GB/s", device)  # read + write
    dhc_check.record("memory_errors", result.errors, "count", device)
    dhc_check.record("tested_gib", round(result.bytes_covered / GIB, 3), "GiB", device)
    dhc_check.record("coverage_of_free", round(result.bytes_covered / free, 4), "ratio", device)
    dhc_check.record("verified_gb_per_s", round(result.verified_bytes_per_s / 1e9, 3), "GB/s", device)
    if result.errors:
        listed = "; ".join(_describe(e) for e in result.first_errors)  # up to 8 per chunk
        dhc_check.fault(f"{result.errors} word(s) of device memory read back wrong ({len(result.patterns)} patterns "
                        f"+ moving inversions over {result.bytes_covered / GIB:.2f} GiB); first: {listed}",
                        device, Action.REPLACE)


def _describe(error):
    return (f"chunk {error.chunk} {error.pattern} at byte {error.byte_offset}: "
            f"expected {error.expected & (2**64 - 1):#018x} read {error.actual & (2**64 - 1):#018x}")


def _test_one(memtest, target, fraction, cap, inject):
    device, name = target
    kind = "cuda" if name.startswith("cuda") else "cpu"
    tile, chunk, copy_buffer = SIZES[kind]
    free = _free_bytes(name)
    if free <= 0:
        raise CheckIncomplete(f"memtest on {device.label()}: no free memory to test ({free} bytes free)")
    want = min(int(free * fraction), cap)
    try:
        if kind == "cpu":  # a chunk per thread at once
            chunk = memtest.chunk_bytes_for(want, chunk, tile)
        result = memtest.memtest(name, want, min(chunk, max(want, tile)), tile, inject=inject)
    except memtest.MemtestAllocationError as exc:
        raise CheckIncomplete(f"memtest on {device.label()}: {exc}") from None
    return device, free, result, memtest.copy_bytes_per_s(name, min(copy_buffer, max(want // 4, tile)))


def _free_bytes(name):
    if name == "cpu":
        return host.memory_available_bytes()
    import torch
    free, _total = torch.cuda.mem_get_info(torch.device(name))
    return free


def _engine():
    try:
        from dhc.kernels import memtest
    except ImportError as exc:
        raise CheckIncomplete(f"torch is needed for the memory test ({exc}); install dhc[engines]") from None
    return memtest


def _targets(dhc_devices, dhc_limits):
    if dhc_limits.instance_type.gpus == 0:
        return [(dhc_devices[0], "cpu")]
    import torch
    if not torch.cuda.is_available():
        raise CheckIncomplete("NVML sees GPUs but torch has no CUDA (is this a CPU-only torch build?)")
    targets, unseen, count = cuda_devices.cuda_targets(dhc_devices)  # matched by UUID, not by index
    if unseen:
        raise CheckIncomplete(cuda_devices.unseen_message(unseen, count))
    return targets
