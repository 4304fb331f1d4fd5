"""Faults the self-test plants at an engine's seam, to prove each detector still catches its fault.

Names only (no torch here): the checks turn a name into the engine's own injection object.
"""

from __future__ import annotations

INJECTIONS: dict[str, tuple[str, str]] = {
    # name: (check it targets, what is planted)
    "gemm-bitflip": ("stress.gemm", "one bit flipped in one GEMM result on device 1"),
    "gemm-sibling": ("stress.gemm", "device 2 multiplies a perturbed input, so its results differ from its siblings'"),
    "gemm-slow": ("stress.gemm", "device 0 idles so that each GEMM takes four times as long"),
    "memtest-word": ("stress.memtest", "one word of device memory corrupted after a pattern is written"),
    "pairwise-slow-node": ("connectivity.pairwise", "this node idles in every pair's all-reduce (a multi-node run)"),
}
MULTI_NODE = {"pairwise-slow-node"}  # planted in one node of a group; the self-test of one node skips it

# A GEMM injection on a machine with fewer devices runs this many logical workers on its first
# device, so that there are siblings to outvote and a median to fall below.
LOGICAL_CPU_DEVICES = 3


def check_of(name: str) -> str:
    return INJECTIONS[name][0]
