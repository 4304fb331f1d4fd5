"""Device memory test: patterns written and verified on the device, tile by tile; and copy bandwidth.

The first pattern (``dhc.kernels.patterns``) is written over a whole chunk in one pass. Then each
pattern is checked tile by tile, and each tile, once checked, is overwritten with the next pattern
(after the last, with the march's): every byte is written with every pattern and read back a whole
chunk's pass later, and a chunk is read once and written once per pattern, as a copy reads and
writes it. The tiles are compared by one of two compares, chosen by device type in ``COMPARES``
(tests force either on the CPU): ``memcmp`` (the CPU's: each tile against its expected tile, built
in a tile-sized scratch, by one ``memcmp``; these passes cut the chunk into one run of tiles per
torch thread, each on its own thread) or ``gathered`` (a GPU's: tile XOR expected reduced to a min
and max on the device, both 0 exactly when the tile is right). The moving-inversions march goes
tile by tile, in order, on one thread: tile k is checked, then overwritten, then tile k+1, up then
down, then a last check (for a constant, one min/max pass over the chunk's 32-bit words). On a GPU
a tile is overwritten before its flag reaches the host, so its XOR is kept in a ring slot and the
flags are read a window of tiles behind. Only a tile that disagrees is searched word by word, to
report the first failing offsets (counted and listed in tile order).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from dhc.kernels.bitwise import differs
from dhc.kernels.memtest_results import MemtestAllocationError, MemtestInjection, MemtestResult, WordError, _Errors
from dhc.kernels.patterns import WORD, Pattern, expected_tile, low_half, make_patterns, tile_offset, write

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
    scratch = torch.empty(tile_words, dtype=torch.int64, device=dev)
    result = MemtestResult(device, sum(c.numel() for c in chunks) * WORD, len(chunks), [p.name for p in patterns])
    start = time.perf_counter()
    result.setup_s = start - setup
    for index, chunk in enumerate(chunks):
        tiles, errors = chunk.view(-1, tile_words), _Errors(result, index, max_errors_listed)
        _write_all(tiles, patterns[0])
        for i, pattern in enumerate(patterns):
            if inject and inject.chunk == index and inject.pattern == pattern.name:
                chunk[inject.word] ^= 1 << 7
            # each tile checked, then overwritten with the next pattern (after the last: the march's first)
            _verify(tiles, pattern, scratch, errors, then_write=patterns[(i + 1) % len(patterns)], ordered=False)
        _moving_inversions(tiles, patterns[0], scratch, errors, written=True)
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


def _verify(tiles: torch.Tensor, pattern: Pattern, scratch: torch.Tensor, errors: _Errors,
            order: Sequence[int] | None = None, then_write: Pattern | None = None, ordered: bool = True) -> None:
    """Check every tile (or those of ``order``, in that order) against ``pattern``; with ``then_write``,
    overwrite each tile right after it is checked. ``ordered`` (the march): tile by tile on one
    thread, the next tile checked only after this one is written; else the CPU splits the tiles
    among its threads."""
    full = order is None
    order = list(range(tiles.shape[0]) if order is None else order)
    errors.result.verified_bytes += len(order) * tiles.shape[1] * WORD
    if full and then_write is None and pattern.constant is not None and tiles.device.type != "cpu":
        # the constants repeat one 32-bit half, so one min/max pass over 32-bit words decides
        low, high = (int(x) for x in torch.aminmax(tiles.view(torch.int32)))
        for k in [] if low == high == low_half(pattern.constant) else order:
            errors.tile(pattern, k, tiles[k])
        return
    COMPARES.get(tiles.device.type, _gathered_tiles)(tiles, pattern, scratch, errors, order, then_write, ordered)


def _memcmp_tiles(tiles: torch.Tensor, pattern: Pattern, scratch: torch.Tensor, errors: _Errors,
                  order: list[int], then_write: Pattern | None, ordered: bool = True) -> None:
    """CPU: each tile against its expected tile (built in a tile-sized scratch) by one memcmp, then
    overwritten. Unordered, the tiles are cut into one run per torch thread, each run on its own
    thread with its own scratch (memcmp, memcpy and numpy's adds release the GIL); the failing
    tiles are counted in tile order once all runs are done."""
    runs = _runs(order, ordered)
    scratches = [scratch] + [torch.empty_like(scratch) for _ in runs[1:]]
    for record in _in_threads([(_check_run, tiles, pattern, s, errors, run, then_write)
                               for s, run in zip(scratches, runs, strict=True)]):
        errors.add(record)


def _write_all(tiles: torch.Tensor, pattern: Pattern) -> None:
    """A chunk's first write: on the CPU in runs of tiles on the memtest's own threads (an op on
    torch's pool leaves its threads spinning a while after, taking the cores the next pass needs)."""
    if tiles.device.type != "cpu":
        write(tiles, pattern, range(tiles.shape[0]))
        return
    _in_threads([(_write_run, tiles, pattern, run) for run in _runs(list(range(tiles.shape[0])), False)])


def _write_run(tiles: torch.Tensor, pattern: Pattern, run: list[int]) -> list:
    for k in run:
        write(tiles, pattern, (k,))
    return []


def _runs(order: list[int], ordered: bool) -> list[list[int]]:
    """``order`` whole when ordered, else cut into one run per torch thread."""
    parts = 1 if ordered else max(1, min(torch.get_num_threads(), len(order)))
    return [order[len(order) * i // parts: len(order) * (i + 1) // parts] for i in range(parts)]


def _in_threads(calls: list[tuple]) -> list:
    """Each ``(fn, *args)`` on its own thread (the first on this one); their lists joined in order."""
    helpers = [_helpers(len(calls) - 1).submit(*call) for call in calls[1:]]
    return calls[0][0](*calls[0][1:]) + [item for helper in helpers for item in helper.result()]


def _check_run(tiles: torch.Tensor, pattern: Pattern, scratch: torch.Tensor, errors: _Errors,
               run: list[int], then_write: Pattern | None) -> list[tuple[int, list[WordError]]]:
    found = []
    for k in run:
        if differs(tiles[k], expected_tile(pattern, k, scratch)):
            found.append(errors.found(pattern, k, tiles[k]))
        if then_write is not None:
            write(tiles, then_write, (k,))
    return found


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _helpers(count: int) -> ThreadPoolExecutor:
    """``count`` threads beside the caller's for the CPU's unordered passes (made once per count)."""
    if count not in _POOLS:
        _POOLS[count] = ThreadPoolExecutor(max(1, count), thread_name_prefix="dhc-memtest")
    return _POOLS[count]


def _gathered_tiles(tiles: torch.Tensor, pattern: Pattern, scratch: torch.Tensor, errors: _Errors,
                    order: list[int], then_write: Pattern | None, ordered: bool = True) -> None:
    """GPU: tile XOR expected reduced on the device; the flags of all tiles read with one sync."""
    if then_write is not None:
        _gathered_march(tiles, pattern, errors, order, then_write)
        return
    flags = _flags([_xor_minmax(tiles[k], pattern, k, scratch) for k in order]).tolist()
    for i in (i for i, bad in enumerate(flags) if bad):
        errors.tile(pattern, order[i], tiles[order[i]])


def _gathered_march(tiles: torch.Tensor, pattern: Pattern, errors: _Errors, order: list[int],
                    then_write: Pattern) -> None:
    """GPU march step: tile k is checked, then written, then tile k+1. A tile is overwritten before
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


COMPARES = {"cpu": _memcmp_tiles, "cuda": _gathered_tiles}  # by device type; tests force either


def _moving_inversions(tiles: torch.Tensor, pattern: Pattern, scratch: torch.Tensor, errors: _Errors,
                       written: bool = False) -> None:
    """March: (write p unless ``written``) up (verify p, write ~p), down (verify ~p, write p), then verify p."""
    inverse = Pattern(f"{pattern.name}/inverted", ~pattern.template, -pattern.sign, pattern.spread,
                       None if pattern.constant is None else ~pattern.constant)
    count = tiles.shape[0]
    if not written:
        write(tiles, pattern, range(count))
    _verify(tiles, pattern, scratch, errors, range(count), then_write=inverse)
    _verify(tiles, inverse, scratch, errors, range(count - 1, -1, -1), then_write=pattern)
    _verify(tiles, pattern, scratch, errors, ordered=False)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


__all__ = ["COMPARES", "MemtestAllocationError", "MemtestInjection", "MemtestResult", "WordError", "copy_bytes_per_s",
           "memtest"]
