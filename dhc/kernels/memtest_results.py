"""What a memtest finds and reports: the result, each wrong word with its offset, the planted fault.

Pure data and the error bookkeeping the compares share (``_Errors``: a failing tile searched word by
word, counted, and the first ``max_listed`` per chunk kept); ``dhc.kernels.memtest`` runs the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dhc.kernels.patterns import WORD, Pass, Pattern, tile_offset


class MemtestAllocationError(Exception):
    """Less memory could be taken than the test asked for."""


@dataclass(frozen=True)
class MemtestInjection:
    """Corrupt one word after a pattern is written (the self-test's planted fault)."""

    chunk: int = 0
    word: int = 4099
    pattern: str = "checkerboard"

    def plant(self, chunk: torch.Tensor, index: int, step: Pass) -> None:
        """Flip bit 7 of the word, in chunk ``index`` right before its ``pattern`` is checked (not in the march)."""
        if self.chunk == index and self.pattern == step.pattern.name and not step.march:
            chunk[self.word] ^= 1 << 7


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

    def merge(self, part: MemtestResult) -> None:
        """Add the errors and verified bytes of a part (one chunk's, tested on its own thread)."""
        self.errors += part.errors
        self.first_errors.extend(part.first_errors)
        self.verified_bytes += part.verified_bytes

    @property
    def verified_bytes_per_s(self) -> float:
        return self.verified_bytes / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class _Errors:
    """Where a failing tile's words are counted and listed (up to ``max_listed`` per chunk)."""

    result: MemtestResult
    chunk: int
    max_listed: int

    def tile(self, pattern: Pattern, k: int, actual: torch.Tensor) -> None:
        """The rare path: find the failing words of tile ``k``, whose words read ``actual``."""
        self.add(self.found(pattern, k, actual))

    def found(self, pattern: Pattern, k: int, actual: torch.Tensor) -> tuple[int, list[WordError]]:
        """Tile ``k``'s count of failing words and the first of them (touches no shared state: any
        thread may call it, before the tile is overwritten)."""
        expected = pattern.template + tile_offset(pattern, k)
        wrong = (actual != expected).nonzero().flatten()
        return wrong.numel(), [WordError(self.chunk, pattern.name, (k * actual.numel() + word) * WORD,
                                         int(expected[word]), int(actual[word]))
                               for word in wrong[: self.max_listed].tolist()]

    def add(self, found: tuple[int, list[WordError]]) -> None:
        count, first = found
        self.result.errors += count
        listed = sum(1 for e in self.result.first_errors if e.chunk == self.chunk)
        self.result.first_errors.extend(first[: max(0, self.max_listed - listed)])
