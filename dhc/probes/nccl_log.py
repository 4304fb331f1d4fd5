"""Which transports NCCL really used, from its ``NCCL_DEBUG=INFO`` log.

A run at full speed over the wrong transport is still wrong: on an EFA instance type the network
must be the Libfabric (aws-ofi-nccl) plugin with provider ``efa`` and GPUDirect RDMA channels;
``Using network Socket`` there, or shared-memory channels between GPUs of an NVLink box, are faults.

What the real tools print (each line ``HOST:PID:TID [DEV] NCCL INFO ...``, on stdout or in
``NCCL_DEBUG_FILE``; nothing at all without ``NCCL_DEBUG=INFO``): NCCL names the network with
``Using network Socket|IB|Libfabric`` (``AWS Libfabric`` before aws-ofi-nccl 1.13, and on Neuron);
aws-ofi-nccl names the provider (``NET/OFI Selected Provider is efa (found 4 nics)``; 1.15+:
``Selected provider is efa, fabric is efa-direct (found 16 nics)``); channel lines name each hop
(``Ring 00 : 7 -> 8 [receive] via NET/AWS Libfabric/0``, ``Channel 05/1 : 6[6] -> 10[2] [send]
via NET/AWS Libfabric/1(2)/GDRDMA/Shared``, ``via NET/Libfabric/0/GDRDMA/flush=None``,
``via P2P/CUMEM/read``, ``via SHM/direct/direct``). What a log does not show is "unknown",
never "OK": a Libfabric network without channel lines leaves GPUDirect RDMA unproven. On a node
without EFA devices aws-ofi-nccl logs ``No eligible providers were found`` and NCCL falls back to
``Using network Socket`` (a fault on an EFA type), unless ``NCCL_NET`` forces the plugin and init fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NETWORK = re.compile(r"NCCL INFO Using network (?P<net>.+?)\s*$")
_PROVIDER = re.compile(r"NET/OFI Selected [Pp]rovider is (?P<provider>[\w-]+)(?:, fabric is (?P<fabric>[\w-]+))?")
_CHANNEL = re.compile(r"NCCL INFO (?:Channel|Ring) \d+(?:/\d+)?\s*:\s*(?P<src>\d+)(?:\[[^\]]*\])?\s*->\s*"
                      r"(?P<dst>\d+)(?:\[[^\]]*\])?\s*(?:\[(?:send|receive)\]\s*)?via\s+(?P<via>\S+(?: Libfabric\S*)?)")


@dataclass
class TransportSummary:
    networks: set[str] = field(default_factory=set)  # "Libfabric", "AWS Libfabric", "Socket", "IB"
    providers: set[str] = field(default_factory=set)  # libfabric providers: "efa", "tcp", ...
    fabrics: set[str] = field(default_factory=set)  # aws-ofi-nccl 1.15+: "efa-direct", "efa"
    channel_networks: set[str] = field(default_factory=set)  # the network named on channel lines
    net_channels: int = 0
    gdrdma_channels: int = 0
    socket_channels: int = 0
    p2p_channels: int = 0
    shm_channels: int = 0

    @property
    def uses_libfabric(self) -> bool:
        return any("Libfabric" in n for n in self.networks | self.channel_networks)

    @property
    def logged(self) -> bool:
        return bool(self.networks or self.providers or self.net_channels or self.p2p_channels or self.shm_channels)

    def describe(self) -> str:
        if not self.logged:
            return "unknown (no NCCL INFO transport lines; run with NCCL_DEBUG=INFO to prove it)"
        networks = ", ".join(sorted(self.networks | self.channel_networks)) or "network not named"
        provider = f", provider {', '.join(sorted(self.providers))}" if self.providers else ""
        fabric = f", fabric {', '.join(sorted(self.fabrics))}" if self.fabrics else ""
        return (f"{networks}{provider}{fabric}; channels: {self.net_channels} network ({self.gdrdma_channels} "
                f"GDRDMA), {self.p2p_channels} P2P, {self.shm_channels} SHM")


def parse(text: str) -> TransportSummary:
    summary = TransportSummary()
    for line in text.splitlines():
        if (found := _NETWORK.search(line)) is not None:
            summary.networks.add(found["net"])
        elif (found := _PROVIDER.search(line)) is not None:
            summary.providers.add(found["provider"])
            if found["fabric"]:
                summary.fabrics.add(found["fabric"])
        elif (found := _CHANNEL.search(line)) is not None:
            _count(summary, found["via"])
    return summary


def _count(summary: TransportSummary, via: str) -> None:
    if via.startswith("NET/"):
        summary.net_channels += 1
        summary.channel_networks.add(via[4:].split("/", 1)[0])
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
        used = summary.networks | summary.channel_networks
        if used and not summary.uses_libfabric:
            faults.append(f"NCCL did not use the Libfabric (aws-ofi-nccl) network; it used {', '.join(sorted(used))}")
        elif summary.providers and "efa" not in summary.providers:
            faults.append(f"libfabric provider was {', '.join(sorted(summary.providers))}, not efa")
        if summary.net_channels and summary.gdrdma_channels < summary.net_channels:
            faults.append(f"{summary.net_channels - summary.gdrdma_channels} of {summary.net_channels} network "
                          "channels ran without GPUDirect RDMA (GDRDMA)")
    if expects_nvlink and summary.shm_channels:
        faults.append(f"{summary.shm_channels} channel(s) between GPUs went through host shared memory (SHM) "
                      "instead of NVLink P2P")
    return faults


def transport_unknowns(summary: TransportSummary, expects_efa: bool, inter_node: bool) -> list[str]:
    """What the log leaves unproven about the transport (never read as "OK"); empty when it proves it all."""
    if not summary.logged:
        return ["transport unknown: the log has no NCCL INFO transport lines (run with NCCL_DEBUG=INFO)"]
    if not (expects_efa and inter_node):
        return []
    unknowns = []
    if not (summary.networks | summary.channel_networks):
        unknowns.append("network unknown: no 'Using network' or 'via NET/' line")
    if summary.uses_libfabric and not summary.providers:
        unknowns.append("libfabric provider unknown: no 'NET/OFI Selected provider' line")
    if not summary.net_channels:
        unknowns.append("GPUDirect RDMA unknown: no channel line shows a network hop ('via NET/...')")
    return unknowns
