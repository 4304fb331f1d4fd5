"""Bit-for-bit comparison of tensors, shared by the GEMM burn and the memtest.

On the CPU the bytes are compared with libc's ``memcmp`` (vectorised, one read of each side, no
temporary, exact: it cannot miss a flipped bit, and no two flips can cancel out as they can in a
checksum); it is about four times the speed of ``torch.equal`` on this kind of machine. Where libc
is not at hand (no ``memcmp`` in the process), ``torch.equal`` of integer views does the same job.
Integer views make the compare bitwise: -0.0 differs from 0.0 and identical NaNs are equal.
"""

from __future__ import annotations

import ctypes

import torch

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32,
         torch.int64: torch.int64, torch.int32: torch.int32}


def _libc_memcmp():
    """libc's memcmp from the running process (no library search, no subprocess); None where absent."""
    try:
        memcmp = ctypes.CDLL(None).memcmp
    except (OSError, AttributeError, TypeError):
        return None
    memcmp.restype, memcmp.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


MEMCMP = _libc_memcmp()


def words(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as 64-bit words where they divide evenly (half the compares of 32-bit)."""
    flat = t.view(-1)
    if flat.numel() * flat.element_size() % 8 == 0:
        return flat.view(torch.int64)
    return flat.view(_BITS[t.dtype])


def differs(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one dtype and shape differ in any bit (CPU tensors: one memcmp)."""
    assert a.dtype == b.dtype and a.shape == b.shape, "compare like with like"
    if MEMCMP is not None and a.device.type == b.device.type == "cpu" and a.is_contiguous() and b.is_contiguous():
        return MEMCMP(a.data_ptr(), b.data_ptr(), a.numel() * a.element_size()) != 0
    return not torch.equal(a.view(_BITS[a.dtype]), b.view(_BITS[b.dtype]))


def same_bits(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Bit-for-bit equality, compared on ``a``'s device: a result on another GPU comes over the
    device link, not through the host."""
    if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
        return False
    return not differs(a, b.to(a.device))
