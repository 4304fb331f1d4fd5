"""The guard against a GPU-less instance type on a host with GPUs: such a run would pass them unseen.

``dhc run`` and the plugin's controlling process (``pytest suites/``) both call ``refuse_unseen_gpus``
before any check runs, so ``--instance-type cpu`` (or ``DHC_INSTANCE_TYPE=cpu``) on a P5 is refused
however the run was started.

What NVML does here (nvml.h, nvidia-ml-py): without the driver or the library ``nvmlInit`` fails
(``NvmlUnavailable``): no GPU that NVML could show, nothing to refuse. With the driver loaded,
``nvmlDeviceGetCount`` returns the GPUs the driver enumerated, lost ones included; when that call
itself fails (UNKNOWN, NO_PERMISSION, GPU_IS_LOST...) the count is unknown, and unknown is refused
too: a GPU-less run must not be how a host whose GPUs cannot be counted gets a pass.
"""

from __future__ import annotations

from dhc.errors import UsageError
from dhc.model import Device
from dhc.probes.nvml import GpuUnusable, Nvml, NvmlQueryError, NvmlUnavailable


def refuse_unseen_gpus(named_by: str, nvml: Nvml | None = None) -> None:
    """Raise ``UsageError`` when NVML counts GPUs (or starts but cannot count them) on this host.

    ``named_by`` says where the GPU-less type came from, for the message: ``--instance-type cpu``.
    """
    try:
        with nvml or Nvml() as session:
            count = int(session.call("nvmlDeviceGetCount", Device("gpu", -1)))
    except (NvmlQueryError, GpuUnusable) as exc:
        raise UsageError(f"{named_by} names no GPUs, but NVML started here and could not count its GPUs "
                         f"({exc}): pass this host's GPU instance type") from None
    except NvmlUnavailable:
        return  # no driver, no library: no GPU that NVML could show
    if count:
        raise UsageError(f"{named_by} names no GPUs, but NVML sees {count} GPU(s) on this host; a run would "
                         f"pass them unseen: pass this host's GPU instance type")
