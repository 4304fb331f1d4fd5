"""The CPU's memtest runner: chunks tested side by side, one chunk per thread, every tile by address.

Each chunk follows the whole schedule of ``dhc.kernels.patterns.passes`` (the ten patterns, each
checked then overwritten with the next, then the moving-inversions march up, down and a last check)
on one thread, tile by tile in the schedule's order, so the march's order holds inside the chunk.
Chunks run side by side, one per thread (``torch.get_num_threads()`` threads, at most one per chunk;
``chunk_bytes_for`` sizes the chunks so every thread has one),
which spreads every pass (the march's too) over the cores and keeps each thread's tiles in its own
cache while it checks and rewrites them.

A tile is checked by one libc ``memcmp`` against its expected tile (the pattern's template itself,
or for a pattern with a per-tile offset, the template plus the offset built in a tile-sized scratch
by one numpy add) and written by one ``memcpy`` or one numpy add straight into the chunk: one call
per tile and pass, at a precomputed address, no tensor made per tile; libc and numpy release the GIL,
so the threads run at once. Where libc's functions are absent, numpy compares and copies the arrays.
Only a tile that differs is searched word by word (``_Errors``); each chunk's errors are kept apart
and merged in chunk order, so the listing does not depend on which thread finished first.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from dhc.kernels import bitwise
from dhc.kernels.memtest_results import MemtestInjection, MemtestResult, _Errors
from dhc.kernels.patterns import WORD, Pass, Pattern, passes, tile_offset


def threads() -> int:
    """How many chunks the CPU runner tests at once."""
    return max(1, torch.get_num_threads())


def chunk_bytes_for(total_bytes: int, chunk_bytes: int, tile_bytes: int) -> int:
    """A CPU chunk size at most ``chunk_bytes`` (whole tiles) that cuts ``total_bytes`` into a multiple
    of the thread count, so the threads finish together: 1 GiB on 96 threads makes 93 chunks of
    11 MiB (one round), not 16 of 64 MiB (80 threads idle)."""
    count = _ceil(_ceil(total_bytes, chunk_bytes), threads()) * threads()
    return min(chunk_bytes, max(tile_bytes, _ceil(_ceil(total_bytes, count), tile_bytes) * tile_bytes))


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def host_chunks(chunks: list[torch.Tensor], patterns: list[Pattern], result: MemtestResult, tile_words: int,
                inject: MemtestInjection | None, max_listed: int) -> None:
    """Test every chunk (CPU tensors) on the memtest's threads; errors merged into ``result`` in chunk order."""
    with ThreadPoolExecutor(min(threads(), len(chunks)), thread_name_prefix="dhc-memtest") as pool:
        parts = list(pool.map(lambda index: _one_chunk(chunks[index], index, patterns, tile_words, inject,
                                                       MemtestResult(result.device), max_listed),
                              range(len(chunks))))
    for part in parts:
        result.merge(part)


def _one_chunk(chunk: torch.Tensor, index: int, patterns: list[Pattern], tile_words: int,
               inject: MemtestInjection | None, part: MemtestResult, max_listed: int) -> MemtestResult:
    tiles = HostTiles(chunk, tile_words, _Errors(part, index, max_listed))  # holding zeros, patterns[0]
    for step in passes(patterns, tiles.count):
        if inject:
            inject.plant(chunk, index, step)
        tiles.check_then_write(step)
    return part


class HostTiles:
    """One CPU chunk as tiles at known addresses: ``differs`` and ``write`` are one call per tile."""

    def __init__(self, chunk: torch.Tensor, tile_words: int, errors: _Errors):
        assert chunk.device.type == "cpu" and chunk.is_contiguous() and chunk.dtype == torch.int64
        self.tiles = chunk.view(-1, tile_words)  # for the rare path: a failing tile searched word by word
        self.array = chunk.numpy().reshape(-1, tile_words)
        self.count, self.tile_bytes, self.base = self.array.shape[0], tile_words * WORD, chunk.data_ptr()
        self.scratch = np.empty(tile_words, dtype=np.int64)
        self.errors = errors

    def check_then_write(self, step: Pass) -> None:
        self.errors.result.verified_bytes += len(step.order) * self.tile_bytes
        for k in step.order:
            if self.differs(step.pattern, k):
                self.errors.tile(step.pattern, k, self.tiles[k])
            if step.then_write is not None:
                self.write(step.then_write, k)

    def differs(self, pattern: Pattern, k: int) -> bool:
        """Whether tile ``k`` differs in any bit from ``pattern``'s tile ``k``."""
        expected = pattern.template.numpy()
        if pattern.sign:
            expected = np.add(expected, np.int64(tile_offset(pattern, k)), out=self.scratch)
        if bitwise.MEMCMP is None:
            return not np.array_equal(self.array[k], expected)
        return bitwise.MEMCMP(self.base + k * self.tile_bytes, expected.ctypes.data, self.tile_bytes) != 0

    def write(self, pattern: Pattern, k: int) -> None:
        """Tile ``k`` := ``pattern``'s tile ``k``."""
        if pattern.sign:
            np.add(pattern.template.numpy(), np.int64(tile_offset(pattern, k)), out=self.array[k])
        elif bitwise.MEMCPY is None:
            np.copyto(self.array[k], pattern.template.numpy())
        else:
            bitwise.MEMCPY(self.base + k * self.tile_bytes, pattern.template.data_ptr(), self.tile_bytes)
