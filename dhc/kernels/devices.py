"""Which torch CUDA device is which NVML GPU: matched by UUID, never by index.

CUDA orders devices fastest-first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and
``CUDA_VISIBLE_DEVICES`` renumbers them, so ``cuda:{nvml index}`` can burn one GPU and blame
another's serial. NVML writes UUIDs as ``GPU-2f6a1c1e-...``; torch's
``get_device_properties(i).uuid`` prints the same UUID without the ``GPU-`` prefix. The matching is
pure (``match_by_uuid``); ``cuda_uuids`` asks torch. A GPU NVML lists that CUDA does not see is
returned as unseen, for the check to name.
"""

from __future__ import annotations

from collections.abc import Sequence

from dhc.model import Device


def normalize_uuid(uuid: object) -> str | None:
    if uuid is None:
        return None
    text = str(uuid).strip().lower()
    return text.removeprefix("gpu-") or None


def match_by_uuid(devices: Sequence[Device], cuda: Sequence[object]) -> tuple[list[tuple[Device, str]], list[Device]]:
    """([(device, "cuda:N")], [devices CUDA does not see]) for NVML devices and CUDA's UUIDs in CUDA order."""
    by_uuid = {normalize_uuid(u): i for i, u in enumerate(cuda) if normalize_uuid(u)}
    targets, unseen = [], []
    for device in devices:
        index = by_uuid.get(normalize_uuid(device.uuid))
        if index is None:
            unseen.append(device)
        else:
            targets.append((device, f"cuda:{index}"))
    return targets, unseen


def unseen_message(unseen: Sequence[Device], cuda_count: int) -> str:
    names = "; ".join(d.label() for d in unseen)
    return (f"NVML lists {len(unseen)} GPU(s) that CUDA does not see among its {cuda_count} device(s), so "
            f"they cannot be tested: {names} (is CUDA_VISIBLE_DEVICES hiding them, or MIG mode on?)")


def cuda_uuids() -> list[str]:
    """The UUID of each CUDA device, in CUDA's order (torch must have CUDA)."""
    import torch
    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]


def cuda_targets(devices: Sequence[Device]) -> tuple[list[tuple[Device, str]], list[Device], int]:
    uuids = cuda_uuids()
    targets, unseen = match_by_uuid(devices, uuids)
    return targets, unseen, len(uuids)
