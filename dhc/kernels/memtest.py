"""Device memory test: patterns written and verified on the device, tile by tile; and copy bandwidth.

Every chunk follows one schedule (``dhc.kernels.patterns.passes``): the first pattern (zeros) is
written over the chunk when it is allocated (the write that commits its pages), then each pattern
is checked tile by tile, each tile once checked overwritten with the next pattern (after the last,
with the march's): every byte is written with every pattern and read back
a whole chunk's pass later, and a chunk is read once and written once per pattern, as a copy reads
and writes it; then the moving-inversions march, tile by tile in order, up then down, then a last
check. Two runners follow it, chosen by device type in ``RUNNERS`` (tests force either on the CPU):
the CPU's (``dhc.kernels.memtest_host``: chunks side by side on threads, one libc call a tile) and
the GPU's (here: chunks one after another on the device's stream). On a GPU a tile is compared as
tile XOR expected reduced to a min and max on the device, both 0 exactly when the tile is right; a
tile is overwritten before its flag reaches the host, so its XOR is kept in a ring slot and the
flags are read a window of tiles behind (a last check of a constant is one min/max pass over the
chunk's 32-bit words). Only a tile that disagrees is searched word by word, to report the first
failing offsets (counted and listed in tile order).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from dhc.kernels.memtest_host import chunk_bytes_for, host_chunks
from dhc.kernels.memtest_results import MemtestAllocationError, MemtestInjection, MemtestResult, WordError, _Errors
from dhc.kernels.patterns import WORD, Pass, Pattern, expected_tile, low_half, make_patterns, passes, tile_offset, write

MARCH_WINDOW = 4  # tiles per flag read-back in a GPU march (their XORs kept meanwhile: 2 windows of tiles)


def memtest(device: str, total_bytes: int, chunk_bytes: int, tile_bytes: int, seed: int = 7,
            inject: MemtestInjection | None = None, max_errors_listed: int = 8) -> MemtestResult:
    """Test ``total_bytes`` of ``device`` in chunks; lists up to ``max_errors_listed`` errors per chunk."""
    dev = torch.device(device)
    tile_words = max(64, tile_bytes // WORD // 64 * 64)
    chunk_words = max(tile_words, chunk_bytes // WORD // tile_words * tile_words)
    setup = time.perf_counter()
    chunks = _allocate(dev, total_bytes, chunk_words)
    _sync(dev)
    patterns = make_patterns(dev, tile_words, seed)
    assert patterns[0].constant == 0, "the chunks hold zeros (the allocation's commit): the first pattern's write"
    result = MemtestResult(device, sum(c.numel() for c in chunks) * WORD, len(chunks), [p.name for p in patterns])
    start = time.perf_counter()
    result.setup_s = start - setup
    RUNNERS.get(dev.type, _device_chunks)(chunks, patterns, result, tile_words, inject, max_errors_listed)
    _sync(dev)
    result.elapsed_s = time.perf_counter() - start
    return result


def copy_bytes_per_s(device: str, nbytes: int, repeats: int = 10) -> float:
    """Bytes copied per second by ``tensor.copy_`` (each byte read once and written once)."""
    dev = torch.device(device)
    src = torch.ones(max(1, nbytes // WORD), dtype=torch.int64, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    _sync(dev)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    _sync(dev)
    return repeats * src.numel() * WORD / (time.perf_counter() - start)


def _allocate(dev: torch.device, total_bytes: int, chunk_words: int) -> list[torch.Tensor]:
    chunks: list[torch.Tensor] = []
    remaining = total_bytes // WORD // chunk_words * chunk_words or chunk_words
    try:
        while remaining > 0:
            words = min(chunk_words, remaining)
            # zero_() commits the pages now (Linux backs untouched memory with nothing to test), and
            # is the first pattern's (zeros') write
            chunks.append(_empty(dev, words).zero_())
            remaining -= words
    except (torch.OutOfMemoryError, RuntimeError, MemoryError) as exc:
        got = sum(c.numel() for c in chunks) * WORD
        raise MemtestAllocationError(f"could allocate only {got / 2**30:.2f} of {total_bytes / 2**30:.2f} GiB "
                                     f"on {dev}: {str(exc).splitlines()[0][:200]}") from None
    return chunks


def _device_chunks(chunks: list[torch.Tensor], patterns: list[Pattern], result: MemtestResult, tile_words: int,
                   inject: MemtestInjection | None, max_listed: int) -> None:
    """The GPU's runner: chunk after chunk, each pass queued on the device's stream."""
    scratch = torch.empty(tile_words, dtype=torch.int64, device=chunks[0].device)
    for index, chunk in enumerate(chunks):
        tiles, errors = chunk.view(-1, tile_words), _Errors(result, index, max_listed)
        for step in passes(patterns, tiles.shape[0]):
            if inject:
                inject.plant(chunk, index, step)
            _verify(tiles, step, scratch, errors)


def _empty(dev: torch.device, words: int) -> torch.Tensor:
    """A chunk; on the CPU allocated by numpy, which asks Linux for transparent huge pages for large
    arrays (MADV_HUGEPAGE): a 1 MiB tile then spans one page, not 256, and the passes walk the chunk
    with few TLB misses (some 10% faster here, side by side). The bytes tested are the same."""
    if dev.type == "cpu":
        return torch.from_numpy(np.empty(words, dtype=np.int64))
    return torch.empty(words, dtype=torch.int64, device=dev)


def _verify(tiles: torch.Tensor, step: Pass, scratch: torch.Tensor, errors: _Errors) -> None:
    """Check the tiles of ``step.order`` against its pattern, each then overwritten (``then_write``)."""
    order, pattern = list(step.order), step.pattern
    errors.result.verified_bytes += len(order) * tiles.shape[1] * WORD
    if step.then_write is not None:
        _gathered_march(tiles, pattern, errors, order, step.then_write)
    elif pattern.constant is not None and len(order) == tiles.shape[0]:
        # the constants repeat one 32-bit half, so one min/max pass over 32-bit words decides
        low, high = (int(x) for x in torch.aminmax(tiles.view(torch.int32)))
        for k in [] if low == high == low_half(pattern.constant) else order:
            errors.tile(pattern, k, tiles[k])
    else:
        _gathered_tiles(tiles, pattern, scratch, errors, order)


def _gathered_tiles(tiles: torch.Tensor, pattern: Pattern, scratch: torch.Tensor, errors: _Errors,
                    order: list[int]) -> None:
    """Tile XOR expected reduced on the device; the flags of all tiles read with one sync."""
    flags = _flags([_xor_minmax(tiles[k], pattern, k, scratch) for k in order]).tolist()
    for i in (i for i, bad in enumerate(flags) if bad):
        errors.tile(pattern, order[i], tiles[order[i]])


def _gathered_march(tiles: torch.Tensor, pattern: Pattern, errors: _Errors, order: list[int],
                    then_write: Pattern) -> None:
    """A pass that rewrites as it checks: tile k is checked, then written, then tile k+1. A tile is overwritten before
    its flag is read, so its XOR stays in a ring slot until then: the flags of a window of tiles
    are read one window behind (after the next window is queued, so the device never idles)."""
    ring = torch.empty(2 * MARCH_WINDOW, tiles.shape[1], dtype=tiles.dtype, device=tiles.device)
    behind = None
    for start in range(0, len(order), MARCH_WINDOW):
        window, half = order[start:start + MARCH_WINDOW], (start // MARCH_WINDOW) % 2 * MARCH_WINDOW
        found = []
        for j, k in enumerate(window):
            found.append(_xor_minmax(tiles[k], pattern, k, ring[half + j]))
            write(tiles, then_write, (k,))
        queued = (window, ring[half:half + len(window)], _to_host(_flags(found)), _queued_event(tiles.device))
        if behind:
            _read_window(pattern, errors, *behind)
        behind = queued
    if behind:
        _read_window(pattern, errors, *behind)


def _read_window(pattern: Pattern, errors: _Errors, window: list[int], diffs: torch.Tensor,
                 flags: torch.Tensor, event) -> None:
    if event is not None:
        event.synchronize()  # this window's flags are on the host; later windows still run
    for j in (j for j, bad in enumerate(flags.tolist()) if bad):
        k = window[j]
        errors.tile(pattern, k, (pattern.template + tile_offset(pattern, k)) ^ diffs[j])  # what tile k read


def _flags(found: list) -> torch.Tensor:
    """Per tile, whether its XOR with the expected tile had any bit set."""
    return torch.stack([torch.stack(pair) for pair in found]).ne(0).any(dim=1)


def _to_host(flags: torch.Tensor) -> torch.Tensor:
    return flags.to("cpu", non_blocking=True) if flags.device.type == "cuda" else flags


def _queued_event(dev: torch.device):
    return torch.cuda.current_stream(dev).record_event() if dev.type == "cuda" else None


def _xor_minmax(tile: torch.Tensor, pattern: Pattern, k: int, diff: torch.Tensor):
    """min and max of (tile XOR expected) as 32-bit words, the XOR left in ``diff``: both 0 exactly
    when the tile is right."""
    torch.bitwise_xor(tile, expected_tile(pattern, k, diff), out=diff)
    return torch.aminmax(diff.view(torch.int32))


RUNNERS = {"cpu": host_chunks}  # by device type (anything else: _device_chunks); tests force either on the CPU


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


__all__ = ["RUNNERS", "chunk_bytes_for", "MemtestAllocationError", "MemtestInjection", "MemtestResult", "WordError", "copy_bytes_per_s",
           "memtest"]
