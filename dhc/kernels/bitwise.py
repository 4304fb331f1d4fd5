"""Bit-for-bit comparison of tensors, shared by the GEMM burn and the memtest.

On the CPU the bytes are compared with libc's ``memcmp`` (vectorised, one read of each side, no
temporary, exact: it cannot miss a flipped bit, and no two flips can cancel out as they can in a
checksum); it is about four times the speed of ``torch.equal`` on this kind of machine. Where libc
is not at hand (no ``memcmp`` in the process), ``torch.equal`` of integer views does the same job.
``copy`` is libc's ``memcpy`` between contiguous CPU tensors, for the same reason.
Integer views make the compare bitwise: -0.0 differs from 0.0 and identical NaNs are equal.
"""

from __future__ import annotations

import ctypes

import torch

_BITS = {torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32,
         torch.int64: torch.int64, torch.int32: torch.int32}


def _libc(name: str, restype):
    """A libc function from the running process (no library search, no subprocess); None where absent."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):
        return None
    function.restype, function.argtypes = restype, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return function


MEMCMP = _libc("memcmp", ctypes.c_int)
MEMCPY = _libc("memcpy", ctypes.c_void_p)


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


def copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)``; between contiguous CPU tensors one memcpy on this thread, which is what a
    tile-by-tile march wants (no thread-pool hand-off per tile; on a busy machine that hand-off can
    cost more than the copy)."""
    assert dst.dtype == src.dtype and dst.shape == src.shape, "copy like to like"
    if MEMCPY is not None and dst.device.type == src.device.type == "cpu" and dst.is_contiguous() and src.is_contiguous():
        MEMCPY(dst.data_ptr(), src.data_ptr(), dst.numel() * dst.element_size())
    else:
        dst.copy_(src)


def same_bits(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Bit-for-bit equality, compared on ``a``'s device: a result on another GPU comes over the
    device link, not through the host."""
    if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
        return False
    return not differs(a, b.to(a.device))
