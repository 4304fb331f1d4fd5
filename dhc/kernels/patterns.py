"""Memtest patterns: each a tile-sized template plus a per-tile offset (``expected = template + sign * base``),
so constant, walking-ones, own-address and seeded random patterns (and their complements) share one
write path and one expected-tile path. ``write`` fills a whole chunk in one pass (torch's thread pool)
or single tiles (on the CPU on the calling thread, without the pool: see ``_add_here``). ``passes``
is a chunk's schedule of checks and writes, the one both memtest runners (CPU and GPU) follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from dhc.kernels.bitwise import copy

WORD = 8  # bytes: patterns are 64-bit words
GOLDEN = -0x61C8864680B583EB  # 0x9E3779B97F4A7C15 as a signed 64-bit value: spreads per-tile offsets


@dataclass(frozen=True)
class Pattern:
    name: str
    template: torch.Tensor
    sign: int  # expected tile k = template + sign * base(k)
    spread: int  # base(k) = k * spread (wrapping): 0 for tile-periodic patterns
    constant: int | None = None  # the one value of a constant pattern


def make_patterns(dev: torch.device, words: int, seed: int) -> list[Pattern]:
    index = torch.arange(words, dtype=torch.int64, device=dev)
    random = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64,
                           generator=torch.Generator().manual_seed(seed)).to(dev)
    walking = torch.ones(words, dtype=torch.int64, device=dev) << (index % 64)

    def const(name: str, value: int) -> Pattern:
        assert (value & 0xFFFFFFFF) == (value >> 32) & 0xFFFFFFFF, "constants repeat one 32-bit half"
        return Pattern(name, torch.full((words,), value, dtype=torch.int64, device=dev), 0, 0, value)

    return [  # zeros first: the allocation's commit (zero_) is that pattern's write
        const("zeros", 0),
        const("ones", -1),
        const("checkerboard", 0x5555555555555555),
        const("checkerboard-inverse", ~0x5555555555555555),
        Pattern("walking-ones", walking, 0, 0),
        Pattern("walking-zeros", ~walking, 0, 0),
        Pattern("own-address", index, 1, words),
        Pattern("own-address-inverse", ~index, -1, words),
        Pattern("random", random, 1, GOLDEN),
        Pattern("random-inverse", ~random, -1, GOLDEN),
    ]


@dataclass(frozen=True)
class Pass:
    """Check every tile of ``order`` against ``pattern``; then (unless None) overwrite it with ``then_write``."""

    pattern: Pattern
    order: range
    then_write: Pattern | None
    march: bool  # one of the moving-inversions march's passes (its order matters; no fault is planted in it)


MARCH = "checkerboard"  # the moving-inversions march's pattern (p), after the ten


def passes(patterns: list[Pattern], tiles: int) -> list[Pass]:
    """A chunk's passes once ``patterns[0]`` is over it: each pattern checked and each tile then
    overwritten with the next pattern (after the last, with the march's), so every byte is read back
    a whole chunk's pass after it was written; then the moving-inversions march: up (check p, write
    ~p), down (check ~p, write p), and a last check of p."""
    march = next(p for p in patterns if p.name == MARCH)
    inverse, then = inverted(march), [*patterns[1:], march]
    steps = [Pass(p, range(tiles), then[i], False) for i, p in enumerate(patterns)]
    return steps + [Pass(march, range(tiles), inverse, True), Pass(inverse, range(tiles - 1, -1, -1), march, True),
                    Pass(march, range(tiles), None, True)]


def inverted(pattern: Pattern) -> Pattern:
    """Every bit of ``pattern`` flipped (~x = -1 - x: template ~t, offset negated)."""
    return Pattern(f"{pattern.name}/inverted", ~pattern.template, -pattern.sign, pattern.spread,
                   None if pattern.constant is None else ~pattern.constant)


def _base(pattern: Pattern, tile: int) -> int:
    value = (tile * pattern.spread) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def tile_offset(pattern: Pattern, tile: int) -> int:
    value = (pattern.sign * _base(pattern, tile)) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def low_half(value: int) -> int:
    low = value & 0xFFFFFFFF
    return low - (1 << 32) if low >= 1 << 31 else low


def expected_tile(pattern: Pattern, k: int, scratch: torch.Tensor) -> torch.Tensor:
    if not pattern.sign:
        return pattern.template
    if scratch.device.type != "cpu":
        return torch.add(pattern.template, tile_offset(pattern, k), out=scratch)
    _add_here(scratch, pattern, k)
    return scratch


def _add_here(out: torch.Tensor, pattern: Pattern, k: int) -> None:
    """``out = template + offset(k)`` on this thread (numpy: one call, no pool hand-off, the GIL
    released while it runs, so tiles of one chunk can be handled by several threads at once)."""
    np.add(pattern.template.numpy(), np.int64(tile_offset(pattern, k)), out=out.numpy())


def write(tiles: torch.Tensor, pattern: Pattern, order: Iterable[int]) -> None:
    if isinstance(order, range) and len(order) == tiles.shape[0]:  # the whole chunk in one pass
        if pattern.constant is not None:
            tiles.fill_(pattern.constant)
        elif pattern.sign:
            offsets = torch.tensor([tile_offset(pattern, k) for k in order], dtype=torch.int64, device=tiles.device)
            torch.add(pattern.template.expand_as(tiles), offsets[:, None], out=tiles)
        else:
            tiles.copy_(pattern.template.expand_as(tiles))
        return
    for k in order:
        if pattern.sign and tiles.device.type == "cpu":
            _add_here(tiles[k], pattern, k)
        elif pattern.sign:
            torch.add(pattern.template, tile_offset(pattern, k), out=tiles[k])
        else:
            copy(tiles[k], pattern.template)
