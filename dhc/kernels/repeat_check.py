"""The GEMM burn's repeat check: each result compared bit for bit with the first, at almost no cost.

``HostCheck`` (CPU): one ``memcmp`` of the result with the first, in place, right after each GEMM;
the differing 64-bit words are counted only when something differs (the rare path).

``DeviceCheck`` (GPU; on the CPU it runs inline, which is how the tests drive it): the GEMMs
alternate between two output buffers, and result i is compared on a side stream while GEMM i+1
runs on the main one. The main stream waits (on the device, never the host) for the compare of a
buffer before writing that buffer again. The count of differing words of each result stays on the
device; once per window of ``window`` results the counts are copied to pinned host memory without
a sync, and read only when the burn is over.

Both answer ``mismatches()``: {iteration: differing 64-bit words}, only for results that differ.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from dhc.kernels.bitwise import differs, words


class HostCheck:
    def __init__(self, reference: torch.Tensor, window: int):
        assert reference.is_contiguous() and reference.device.type == "cpu"
        self.reference, self.ref_words = reference, words(reference)
        self.out = torch.empty_like(reference)
        self.found: dict[int, int] = {}  # iteration -> differing words
        self.submitted = 0

    def buffer(self, iteration: int) -> torch.Tensor:
        return self.out

    def submit(self, out: torch.Tensor) -> None:
        if differs(out, self.reference):
            self.found[self.submitted] = int(torch.count_nonzero(words(out) != self.ref_words))
        self.submitted += 1

    def drain(self) -> None:
        """Nothing is queued on the CPU."""

    def mismatches(self) -> dict[int, int]:
        return dict(self.found)


class CudaStreams:
    """The CUDA calls ``DeviceCheck`` makes, in one place: the tests hand in a fake with the same
    methods (its streams and events answering as ``torch.cuda.Stream`` and ``torch.cuda.Event`` do)."""

    def __init__(self, device: torch.device):
        self.main = torch.cuda.current_stream(device)
        self.side = torch.cuda.Stream(device)

    def use(self, stream):
        """Kernels launched inside run on ``stream``."""
        return torch.cuda.stream(stream)

    def to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """Queue a copy to pinned host memory on the current stream; read it only after a sync."""
        return tensor.to("cpu", non_blocking=True)


class DeviceCheck:
    def __init__(self, reference: torch.Tensor, window: int, streams: CudaStreams | None = None):
        self.ref_words, self.size = words(reference), window
        self.buffers = [torch.empty_like(reference) for _ in range(2)]
        if streams is None and reference.device.type == "cuda":
            streams = CudaStreams(reference.device)
        self.streams = streams
        self.main, self.side = (streams.main, streams.side) if streams else (None, None)
        self.compared: list = [None, None]  # buffer k may be written again once its event is done
        self.window: list[torch.Tensor] = []
        self.windows: list[torch.Tensor] = []
        self.submitted = 0

    def buffer(self, iteration: int) -> torch.Tensor:
        event = self.compared[iteration % 2]
        if event is not None:
            self.main.wait_event(event)  # the GEMM waits on the device; the host does not
        return self.buffers[iteration % 2]

    def submit(self, out: torch.Tensor) -> None:
        with self._on_side():
            self.window.append(torch.count_nonzero(words(out) != self.ref_words))
            if len(self.window) == self.size:
                self._flush()
            if self.side is not None:
                self.compared[self.submitted % 2] = self.side.record_event()
        self.submitted += 1

    def _on_side(self):
        if self.side is None:
            return nullcontext()
        self.side.wait_stream(self.main)  # the compare starts once the GEMM has written `out`
        return self.streams.use(self.side)

    def _flush(self) -> None:
        counts = torch.stack(self.window)
        self.windows.append(self.streams.to_host(counts) if self.streams else counts)  # pinned: no sync
        self.window = []

    def drain(self) -> None:
        """Queue the last window's copy; the main stream (and so the burn's clock) waits for the compares."""
        with self._on_side():
            if self.window:
                self._flush()
        if self.side is not None:
            self.main.wait_stream(self.side)

    def mismatches(self) -> dict[int, int]:
        if self.side is not None:
            self.side.synchronize()  # the copies to the host are done
        counts = torch.cat(self.windows).tolist() if self.windows else []
        return {i: int(n) for i, n in enumerate(counts) if n}


CHECKS = {"cpu": HostCheck, "cuda": DeviceCheck}


def for_device(reference: torch.Tensor, window: int) -> HostCheck | DeviceCheck:
    return CHECKS.get(reference.device.type, DeviceCheck)(reference, window)
