"""GEMM burn: every device multiplies the same fixed-seed matrices for a while, all at once.

Silent data corruption is caught three ways, at almost no cost to the burn: every result is
compared bit for bit with the first result on that device; the first results of all devices must be
bit-identical (a device outvoted by the others is named; compared on the devices, never copied to
the host); and a non-finite first result is a fault (a later result equal to it in every bit is no
different).

Each result is compared by ``repeat_check`` (memcmp on the CPU; on a GPU on a side stream,
overlapped with the next GEMM, counts read back once per window without stopping the GPU). The
host never drains the GPU's queue: it waits for the event recorded a window earlier.
Throughput is timed with CUDA events on GPUs and the wall clock on CPU.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from dhc.kernels import repeat_check
from dhc.kernels.bitwise import same_bits
from dhc.thresholds.catalogue import CATALOGUE

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}
_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}
SYNC_EVERY = 8  # iterations per window: the queue the host lets run ahead, and per read-back of the counts


@dataclass(frozen=True)
class GemmInjection:
    """Faults planted at the engine seam by the self-test, by worker index."""

    flip_bit_worker: int | None = None  # one bit flipped in one result on this worker
    flip_at_iteration: int = 2
    differ_worker: int | None = None  # this worker multiplies perturbed inputs: outvoted by the rest
    slow_worker: int | None = None  # this worker idles so each iteration takes `slow_factor` times as long
    slow_factor: float = CATALOGUE["stress.gemm"].fault("gemm-slow").strength["slow_factor"]  # type: ignore[union-attr]


@dataclass
class WorkerResult:
    worker: int
    device: str
    iterations: int = 0
    elapsed_s: float = 0.0
    mismatched_iterations: int = 0
    mismatched_words: int = 0  # 64-bit words that differed, summed over iterations
    first_mismatch_iteration: int | None = None
    nonfinite_elements: int = 0
    reference: torch.Tensor | None = field(default=None, repr=False)  # first result, on its device

    @property
    def tflops(self) -> float:
        return 0.0 if self.elapsed_s <= 0 else self._flops * self.iterations / self.elapsed_s / 1e12

    _flops: float = 0.0


@dataclass
class BurnResult:
    dtype: str
    size: int
    workers: list[WorkerResult]
    outvoted: list[int]  # workers whose results differ from the majority
    no_majority: bool  # the workers disagree and no strict majority agrees

    @property
    def median_tflops(self) -> float:
        return statistics.median(w.tflops for w in self.workers)


def burn(devices: list[str], dtype: str, size: int, duration_s: float, seed: int = 20240815,
         inject: GemmInjection | None = None, min_iterations: int = 3) -> BurnResult:
    """Burn every device in its own thread; they start together after their warm-up."""
    inject = inject or GemmInjection()
    torch_dtype = DTYPES[dtype]
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(size, size, generator=generator).to(torch_dtype)
    b = torch.randn(size, size, generator=generator).to(torch_dtype)
    results = [WorkerResult(i, d) for i, d in enumerate(devices)]
    start_together = threading.Barrier(len(devices))
    errors: list[BaseException] = []
    with _tf32(dtype):
        threads = [threading.Thread(target=_guarded, args=(errors, _burn_one, r, a, b, duration_s, inject,
                                                           min_iterations, start_together), daemon=True)
                   for r in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    outvoted, no_majority = vote([r.reference for r in results])
    for r in results:
        r.reference = None  # the vote is done; free the copies
    return BurnResult(dtype, size, results, outvoted, no_majority)


def vote(references: list[torch.Tensor | None]) -> tuple[list[int], bool]:
    """Group bit-identical results; the workers outside a strict majority are outvoted."""
    groups: list[list[int]] = []
    for index, ref in enumerate(references):
        for group in groups:
            if same_bits(ref, references[group[0]]):
                group.append(index)
                break
        else:
            groups.append([index])
    if len(groups) <= 1:
        return [], False
    sizes = Counter({i: len(g) for i, g in enumerate(groups)})
    best, best_size = sizes.most_common(1)[0]
    if best_size * 2 <= len(references):
        return [], True
    return sorted(i for k, g in enumerate(groups) if k != best for i in g), False


def _guarded(errors: list[BaseException], fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # surfaced to the caller's thread
        errors.append(exc)


def _burn_one(result: WorkerResult, a_host: torch.Tensor, b_host: torch.Tensor, duration_s: float,
              inject: GemmInjection, min_iterations: int, start_together: threading.Barrier) -> None:
    device = torch.device(result.device)
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
        a, b = a_host.to(device), b_host.to(device)
        if inject.differ_worker == result.worker:
            a = a.clone()
            a.view(_BITS[a.dtype])[0, 0] ^= 1  # one input bit: every result of this worker differs
        result._flops = 2.0 * a.shape[0] ** 3
        # computed as every later result is (out=): a plain matmul may take another cuBLAS algorithm
        reference = torch.matmul(a, b, out=torch.empty_like(a))
        result.nonfinite_elements = int((~torch.isfinite(reference)).sum())
        result.reference = reference  # stays on its device for the vote
        check = repeat_check.for_device(reference, SYNC_EVERY)
        start_together.wait(timeout=600)
        _loop(result, a, b, check, inject, duration_s, min_iterations)
        mismatches = check.mismatches()
    result.mismatched_iterations, result.mismatched_words = len(mismatches), sum(mismatches.values())
    result.first_mismatch_iteration = min(mismatches, default=None)


def _loop(result: WorkerResult, a: torch.Tensor, b: torch.Tensor, check: repeat_check.HostCheck | repeat_check.DeviceCheck,
          inject: GemmInjection, duration_s: float, min_iterations: int) -> None:
    flip = inject.flip_bit_worker == result.worker
    slow = inject.slow_worker == result.worker
    clock = _Clock(a.device)
    clock.start()
    deadline = time.monotonic() + duration_s
    last = time.perf_counter()
    while result.iterations < min_iterations or time.monotonic() < deadline:
        out = check.buffer(result.iterations)
        torch.matmul(a, b, out=out)
        if slow:
            clock.sync()
            time.sleep((inject.slow_factor - 1) * (time.perf_counter() - last))
            last = time.perf_counter()
        if flip and result.iterations == inject.flip_at_iteration:
            out.view(_BITS[out.dtype])[out.shape[0] // 2, out.shape[1] // 3] ^= 1 << 3
        check.submit(out)
        result.iterations += 1
        if result.iterations % SYNC_EVERY == 0:
            clock.pace()
    check.drain()
    result.elapsed_s = clock.stop()


class _Clock:
    """CUDA events on a GPU (device time, not launch time); the monotonic clock on CPU. ``pace``
    keeps the host at most two windows ahead of the GPU without ever letting the queue run dry.
    ``stream`` and ``timing_event`` stand in for the current CUDA stream and
    ``torch.cuda.Event(enable_timing=True)`` (the tests hand in fakes that log their calls)."""

    def __init__(self, device: torch.device, stream=None, timing_event=None):
        self.cuda = device.type == "cuda" or stream is not None
        self.device = device
        self.window_end = None
        if self.cuda:
            self.stream = stream if stream is not None else torch.cuda.current_stream(device)
            make = timing_event or (lambda: torch.cuda.Event(enable_timing=True))
            self.begin, self.end = make(), make()

    def start(self) -> None:
        if self.cuda:
            self.begin.record(self.stream)
        self.t0 = time.perf_counter()

    def pace(self) -> None:
        if not self.cuda:
            return
        previous, self.window_end = self.window_end, self.stream.record_event()
        if previous is not None:
            previous.synchronize()  # the window before this one is done; this one is still queued

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def stop(self) -> float:
        if self.cuda:
            self.end.record(self.stream)
            self.end.synchronize()
            return self.begin.elapsed_time(self.end) / 1000.0
        return time.perf_counter() - self.t0


class _tf32:
    """tf32 is fp32 storage with TF32 tensor-core math; everything else runs without TF32."""

    def __init__(self, dtype: str):
        self.enable = dtype == "tf32"

    def __enter__(self) -> None:
        self.saved = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.enable

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32 = self.saved
