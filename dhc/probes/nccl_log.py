"""Which transports NCCL really used, from its ``NCCL_DEBUG=INFO`` log.

A run at full speed over the wrong transport is still wrong: on an EFA instance type the network
must be the Libfabric (aws-ofi-nccl) plugin with provider ``efa`` and GPUDirect RDMA channels;
``Using network Socket`` there, or shared-memory channels between GPUs of an NVLink box, are faults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NETWORK = re.compile(r"NCCL INFO Using network (?P<net>.+?)\s*$")
_PROVIDER = re.compile(r"NET/OFI Selected Provider is (?P<provider>\w+)")
_CHANNEL = re.compile(r"NCCL INFO (?:Channel|Ring) \d+(?:/\d+)?\s*:\s*(?P<src>\d+)(?:\[[^\]]*\])?\s*->\s*"
                      r"(?P<dst>\d+)(?:\[[^\]]*\])?\s*(?:\[(?:send|receive)\]\s*)?via\s+(?P<via>\S+(?: Libfabric\S*)?)")


@dataclass
class TransportSummary:
    networks: set[str] = field(default_factory=set)  # "Libfabric", "AWS Libfabric", "Socket", "IB"
    providers: set[str] = field(default_factory=set)  # libfabric providers: "efa", "tcp", ...
    net_channels: int = 0
    gdrdma_channels: int = 0
    socket_channels: int = 0
    p2p_channels: int = 0
    shm_channels: int = 0

    @property
    def uses_libfabric(self) -> bool:
        return any("Libfabric" in n for n in self.networks)


def parse(text: str) -> TransportSummary:
    summary = TransportSummary()
    for line in text.splitlines():
        if (found := _NETWORK.search(line)) is not None:
            summary.networks.add(found["net"])
        elif (found := _PROVIDER.search(line)) is not None:
            summary.providers.add(found["provider"])
        elif (found := _CHANNEL.search(line)) is not None:
            _count(summary, found["via"])
    return summary


def _count(summary: TransportSummary, via: str) -> None:
    if via.startswith("NET/"):
        summary.net_channels += 1
        summary.gdrdma_channels += "GDRDMA" in via
        summary.socket_channels += via.startswith("NET/Socket")
    elif via.startswith("P2P/"):
        summary.p2p_channels += 1
    elif via.startswith("SHM/"):
        summary.shm_channels += 1


def transport_faults(summary: TransportSummary, expects_efa: bool, expects_nvlink: bool,
                     inter_node: bool) -> list[str]:
    """What is wrong with the transports NCCL chose, for this instance type; empty when all is right."""
    faults = []
    if expects_efa and inter_node:
        if "Socket" in summary.networks or summary.socket_channels:
            faults.append("NCCL used the Socket transport on an EFA instance type (the EFA plugin did not load)")
        if not summary.uses_libfabric:
            faults.append(f"NCCL did not use the Libfabric (aws-ofi-nccl) network; it used "
                          f"{', '.join(sorted(summary.networks)) or 'no network it logged'}")
        elif "efa" not in summary.providers:
            faults.append(f"libfabric provider was {', '.join(sorted(summary.providers)) or 'not logged'}, not efa")
        if summary.net_channels and summary.gdrdma_channels < summary.net_channels:
            faults.append(f"{summary.net_channels - summary.gdrdma_channels} of {summary.net_channels} network "
                          "channels ran without GPUDirect RDMA (GDRDMA)")
    if expects_nvlink and summary.shm_channels:
        faults.append(f"{summary.shm_channels} channel(s) between GPUs went through host shared memory (SHM) "
                      "instead of NVLink P2P")
    return faults
