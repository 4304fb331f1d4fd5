"""Device memory test: patterns written and verified on the device, tile by tile; and copy bandwidth.

Every pattern is a tile-sized template plus a per-tile offset (``expected = template + sign * base``),
so constant, walking-ones, own-address and seeded random patterns (and their complements) share one
write path and one verify path. A pattern is written over a whole chunk in one pass (one fill,
copy or broadcast add). A constant is verified by one min/max pass over the chunk's 32-bit words.
Any other pattern is verified tile by tile: on the CPU each tile is compared with its expected tile
(built in a cache-sized scratch tile) by one ``memcmp``; on a GPU the tile XOR its expected tile is
reduced to a min and max on the device, both 0 exactly when the tile is right, all tiles gathered
with one sync. The moving-inversions march goes tile by tile, checking each tile before it is
overwritten (on the CPU with memcmp and memcpy, no thread-pool hand-off per tile). Only a tile
that disagrees is searched word by word, to report the first failing offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from dhc.kernels.bitwise import copy, differs

WORD = 8  # bytes: patterns are 64-bit words
# torch runs an element-wise op of fewer elements than its grain (32768) on the calling thread: a
# per-tile op cut this fine never waits for the thread pool, which on a busy CPU costs more than the op
INLINE_WORDS = 16384
GOLDEN = -0x61C8864680B583EB  # 0x9E3779B97F4A7C15 as a signed 64-bit value: spreads per-tile offsets


class MemtestAllocationError(Exception):
    """Less memory could be taken than the test asked for."""


@dataclass(frozen=True)
class MemtestInjection:
    """Corrupt one word after a pattern is written (the self-test's planted fault)."""

    chunk: int = 0
    word: int = 4099
    pattern: str = "checkerboard"


@dataclass(frozen=True)
class WordError:
    chunk: int
    pattern: str
    byte_offset: int  # within the chunk
    expected: int
    actual: int


@dataclass
class MemtestResult:
    device: str
    bytes_covered: int = 0
    chunks: int = 0
    patterns: list[str] = field(default_factory=list)
    errors: int = 0
    first_errors: list[WordError] = field(default_factory=list)
    verified_bytes: int = 0
    elapsed_s: float = 0.0  # writing and verifying patterns
    setup_s: float = 0.0  # allocating and committing the memory

    @property
    def verified_bytes_per_s(self) -> float:
        return self.verified_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class _Pattern:
    name: str
    template: torch.Tensor
    sign: int  # expected tile k = template + sign * base(k)
    spread: int  # base(k) = k * spread (wrapping): 0 for tile-periodic patterns
    constant: int | None = None  # the one value of a constant pattern


def memtest(device: str, total_bytes: int, chunk_bytes: int, tile_bytes: int, seed: int = 7,
            inject: MemtestInjection | None = None, max_errors_listed: int = 8) -> MemtestResult:
    """Test ``total_bytes`` of ``device`` in chunks; lists up to ``max_errors_listed`` errors per chunk."""
    dev = torch.device(device)
    tile_words = max(64, tile_bytes // WORD // 64 * 64)
    chunk_words = max(tile_words, chunk_bytes // WORD // tile_words * tile_words)
    setup = time.perf_counter()
    chunks = _allocate(dev, total_bytes, chunk_words)
    _sync(dev)
    patterns = _patterns(dev, tile_words, seed)
    scratch = torch.empty(tile_words, dtype=torch.int64, device=dev)
    result = MemtestResult(device, sum(c.numel() for c in chunks) * WORD, len(chunks), [p.name for p in patterns])
    start = time.perf_counter()
    result.setup_s = start - setup
    for index, chunk in enumerate(chunks):
        tiles = chunk.view(-1, tile_words)
        for pattern in patterns:
            _write(tiles, pattern, range(tiles.shape[0]))
            if inject and inject.chunk == index and inject.pattern == pattern.name:
                chunk[inject.word] ^= 1 << 7
            _verify(tiles, pattern, scratch, index, result, max_errors_listed)
        _moving_inversions(tiles, patterns[0], scratch, index, result, max_errors_listed)
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
            # zero_() commits the pages now (Linux backs untouched memory with nothing to test)
            chunks.append(torch.empty(words, dtype=torch.int64, device=dev).zero_())
            remaining -= words
    except (torch.OutOfMemoryError, RuntimeError, MemoryError) as exc:
        got = sum(c.numel() for c in chunks) * WORD
        raise MemtestAllocationError(f"could allocate only {got / 2**30:.2f} of {total_bytes / 2**30:.2f} GiB "
                                     f"on {dev}: {str(exc).splitlines()[0][:200]}") from None
    return chunks


def _patterns(dev: torch.device, words: int, seed: int) -> list[_Pattern]:
    index = torch.arange(words, dtype=torch.int64, device=dev)
    random = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64,
                           generator=torch.Generator().manual_seed(seed)).to(dev)
    walking = torch.ones(words, dtype=torch.int64, device=dev) << (index % 64)

    def const(name: str, value: int) -> _Pattern:
        assert (value & 0xFFFFFFFF) == (value >> 32) & 0xFFFFFFFF, "constants repeat one 32-bit half"
        return _Pattern(name, torch.full((words,), value, dtype=torch.int64, device=dev), 0, 0, value)

    return [
        const("checkerboard", 0x5555555555555555),
        const("checkerboard-inverse", ~0x5555555555555555),
        const("zeros", 0),
        const("ones", -1),
        _Pattern("walking-ones", walking, 0, 0),
        _Pattern("walking-zeros", ~walking, 0, 0),
        _Pattern("own-address", index, 1, words),
        _Pattern("own-address-inverse", ~index, -1, words),
        _Pattern("random", random, 1, GOLDEN),
        _Pattern("random-inverse", ~random, -1, GOLDEN),
    ]


def _base(pattern: _Pattern, tile: int) -> int:
    value = (tile * pattern.spread) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _offset(pattern: _Pattern, tile: int) -> int:
    value = (pattern.sign * _base(pattern, tile)) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _write(tiles: torch.Tensor, pattern: _Pattern, order: Iterator[int] | range) -> None:
    if isinstance(order, range) and len(order) == tiles.shape[0]:  # the whole chunk in one pass
        if pattern.constant is not None:
            tiles.fill_(pattern.constant)
        elif pattern.sign:
            offsets = torch.tensor([_offset(pattern, k) for k in order], dtype=torch.int64, device=tiles.device)
            torch.add(pattern.template.expand_as(tiles), offsets[:, None], out=tiles)
        else:
            tiles.copy_(pattern.template.expand_as(tiles))
        return
    for k in order:
        if pattern.sign:
            torch.add(pattern.template, _offset(pattern, k), out=tiles[k])
        else:
            copy(tiles[k], pattern.template)


def _verify(tiles: torch.Tensor, pattern: _Pattern, scratch: torch.Tensor, chunk: int, result: MemtestResult,
            max_listed: int, order: Iterator[int] | range | None = None, then_write: _Pattern | None = None) -> None:
    """Check every tile against ``pattern``; with ``then_write``, overwrite each tile once it is checked."""
    full = order is None
    order = list(range(tiles.shape[0]) if order is None else order)
    result.verified_bytes += len(order) * tiles.shape[1] * WORD
    if full and pattern.constant is not None:
        # the constants repeat one 32-bit half, so one min/max pass over 32-bit words decides
        low, high = (int(x) for x in torch.aminmax(tiles.view(torch.int32)))
        bad = [] if low == high == _low_half(pattern.constant) else order
    elif tiles.device.type == "cpu":  # tile by tile with memcmp: one read of the tile, the expected tile in cache
        for k in order:
            if differs(tiles[k], _expected(pattern, k, scratch)):
                _locate(tiles, pattern, k, chunk, result, max_listed)
            if then_write is not None:
                _write(tiles, then_write, (k,))
        return
    else:  # gather per-tile results, one sync at the end
        found = [_xor_minmax(tiles, pattern, scratch, k) for k in order]
        flags = torch.stack([torch.stack(pair) for pair in found]).ne(0).any(dim=1).nonzero().flatten().tolist()
        bad = [order[i] for i in flags]
    for k in bad:
        _locate(tiles, pattern, k, chunk, result, max_listed)
    if then_write is not None:
        _write(tiles, then_write, order)


def _expected(pattern: _Pattern, k: int, scratch: torch.Tensor) -> torch.Tensor:
    if not pattern.sign:
        return pattern.template
    offset = _offset(pattern, k)
    if scratch.device.type != "cpu":
        return torch.add(pattern.template, offset, out=scratch)
    for start in range(0, scratch.numel(), INLINE_WORDS):  # each add on this thread, no pool hand-off
        torch.add(pattern.template[start:start + INLINE_WORDS], offset, out=scratch[start:start + INLINE_WORDS])
    return scratch


def _xor_minmax(tiles: torch.Tensor, pattern: _Pattern, scratch: torch.Tensor, k: int):
    """min and max of (tile XOR expected) as 32-bit words: both 0 exactly when the tile is right."""
    torch.bitwise_xor(tiles[k], _expected(pattern, k, scratch), out=scratch)
    return torch.aminmax(scratch.view(torch.int32))


def _low_half(value: int) -> int:
    low = value & 0xFFFFFFFF
    return low - (1 << 32) if low >= 1 << 31 else low


def _locate(tiles: torch.Tensor, pattern: _Pattern, k: int, chunk: int, result: MemtestResult,
            max_listed: int) -> None:
    """The rare path: find the failing words of one tile."""
    expected = pattern.template + _offset(pattern, k)
    tile = tiles[k]
    wrong = (tile != expected).nonzero().flatten()
    result.errors += wrong.numel()
    listed = sum(1 for e in result.first_errors if e.chunk == chunk)
    for word in wrong[: max(0, max_listed - listed)].tolist():
        offset = (k * tiles.shape[1] + word) * WORD
        result.first_errors.append(WordError(chunk, pattern.name, offset, int(expected[word]), int(tile[word])))


def _moving_inversions(tiles: torch.Tensor, pattern: _Pattern, scratch: torch.Tensor, chunk: int,
                       result: MemtestResult, max_listed: int) -> None:
    """March: up (verify p, write ~p), down (verify ~p, write p), then verify p."""
    inverse = _Pattern(f"{pattern.name}/inverted", ~pattern.template, -pattern.sign, pattern.spread,
                       None if pattern.constant is None else ~pattern.constant)
    count = tiles.shape[0]
    _write(tiles, pattern, range(count))
    _verify(tiles, pattern, scratch, chunk, result, max_listed, range(count), then_write=inverse)
    _verify(tiles, inverse, scratch, chunk, result, max_listed, range(count - 1, -1, -1), then_write=pattern)
    _verify(tiles, pattern, scratch, chunk, result, max_listed)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
