"""GEMM burn: every device multiplies the same fixed-seed matrices for a while, all at once.

Silent data corruption is caught three ways: each result is compared bit for bit with the first
result on that device (counted on the device, no sync per iteration); the first results of all
devices must be bit-identical (a device outvoted by the others is named); and a non-finite first
result is a fault. Throughput is timed with CUDA events on GPUs and the wall clock on CPU.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32, "fp32": torch.float32}
_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}
SYNC_EVERY = 8  # iterations between host syncs: bounds the queue so the duration is honoured


@dataclass(frozen=True)
class GemmInjection:
    """Faults planted at the engine seam by the self-test, by worker index."""

    flip_bit_worker: int | None = None  # one bit flipped in one result on this worker
    flip_at_iteration: int = 2
    differ_worker: int | None = None  # this worker multiplies perturbed inputs: outvoted by the rest
    slow_worker: int | None = None  # this worker idles so each iteration takes `slow_factor` times as long
    slow_factor: int = 4


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
    reference: torch.Tensor | None = field(default=None, repr=False)  # first result, on the CPU

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
            if _same_bits(ref, references[group[0]]):
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


def _mismatches(out_words: torch.Tensor, ref_words: torch.Tensor) -> torch.Tensor | int:
    """Words that differ. On a GPU counted on the device (no sync); on the CPU an equality test
    first, which is cheaper, and a count only when something differs."""
    if out_words.device.type == "cpu" and torch.equal(out_words, ref_words):
        return 0
    return torch.count_nonzero(out_words != ref_words)


def _words(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as 64-bit words where they divide evenly (half the compares of 32-bit)."""
    flat = t.view(-1)
    if flat.numel() * flat.element_size() % 8 == 0:
        return flat.view(torch.int64)
    return flat.view(_BITS[t.dtype])


def _same_bits(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Bit-for-bit equality (-0.0 differs from 0.0; identical NaNs are equal)."""
    if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.view(_BITS[a.dtype]), b.view(_BITS[b.dtype]))


def _guarded(errors: list[BaseException], fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # surfaced to the caller's thread
        errors.append(exc)


def _burn_one(result: WorkerResult, a_host: torch.Tensor, b_host: torch.Tensor, duration_s: float,
              inject: GemmInjection, min_iterations: int, start_together: threading.Barrier) -> None:
    device = torch.device(result.device)
    a, b = a_host.to(device), b_host.to(device)
    if inject.differ_worker == result.worker:
        a = a.clone()
        a.view(_BITS[a.dtype])[0, 0] ^= 1  # one input bit: every result of this worker differs
    size = a.shape[0]
    result._flops = 2.0 * size**3
    out = torch.empty_like(a)
    torch.matmul(a, b, out=out)
    reference = out.clone()
    ref_words, out_words = _words(reference), _words(out)
    slow = inject.slow_worker == result.worker
    result.nonfinite_elements = int((~torch.isfinite(reference)).sum())
    result.reference = reference.cpu()
    counts = []
    clock = _Clock(device)
    start_together.wait(timeout=600)
    clock.start()
    deadline = time.monotonic() + duration_s
    last = time.perf_counter()
    while result.iterations < min_iterations or time.monotonic() < deadline:
        torch.matmul(a, b, out=out)
        if slow:
            clock.sync()
            time.sleep((inject.slow_factor - 1) * (time.perf_counter() - last))
            last = time.perf_counter()
        if inject.flip_bit_worker == result.worker and result.iterations == inject.flip_at_iteration:
            out.view(_BITS[a.dtype])[size // 2, size // 3] ^= 1 << 3
        counts.append(_mismatches(out_words, ref_words))
        result.iterations += 1
        if result.iterations % SYNC_EVERY == 0:
            clock.sync()
    result.elapsed_s = clock.stop()
    if counts and all(isinstance(c, torch.Tensor) for c in counts):
        per_iteration = torch.stack(counts).cpu().tolist()  # one copy off the GPU for all of them
    else:
        per_iteration = [int(c) for c in counts]
    bad = [i for i, n in enumerate(per_iteration) if n]
    result.mismatched_iterations, result.mismatched_words = len(bad), int(sum(per_iteration))
    result.first_mismatch_iteration = bad[0] if bad else None


class _Clock:
    """CUDA events on a GPU (device time, not launch time); the monotonic clock on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        if self.cuda:
            self.begin, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        if self.cuda:
            self.begin.record(torch.cuda.current_stream(self.device))
        self.t0 = time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def stop(self) -> float:
        if self.cuda:
            self.end.record(torch.cuda.current_stream(self.device))
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
