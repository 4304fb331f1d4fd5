"""stress.inventory: the devices the instance type promises are present and healthy before the stress.

On GPUs, through NVML: count, GPUs lost (fallen off the bus) or needing a reset, ECC mode and
uncorrectable counts, row remapping, retired pages, NVLink links up, PCIe width, temperature; and
XIDs (SXids beside them) in the kernel log since boot, when readable. A metric the GPU does not
support is left out; one NVML failed to read makes the check Incomplete, naming it, unless a fault
already makes it Failed.
"""

from pathlib import Path

import pytest

from dhc.errors import CheckIncomplete
from dhc.model import Action
from dhc.probes import host, xid
from dhc.probes.nvml import GpuHealth, GpuUnusable, Nvml, NvmlQueryError


@pytest.mark.check("stress.inventory")
def test_inventory(dhc_check, dhc_limits, dhc_devices, dhc_run):
    cpu = host.cpu_device()
    dhc_check.record("cpu_cores", host.cpu_cores(), "count", cpu)
    dhc_check.record("memory_gib", round(host.memory_gib(), 2), "GiB", cpu)
    if not dhc_limits.instance_type.gpus:
        return
    lost = list(getattr(dhc_devices, "lost", ()))  # enumerated by NVML, but lost or needing a reset
    dhc_check.covered(*dhc_devices)
    dhc_check.record("gpu_count", len(dhc_devices), "count")
    unreadable = _health(dhc_check, dhc_devices, lost)
    for exc in lost:
        dhc_check.fault(str(exc), exc.device, exc.action)
    _kernel_log(dhc_check, [*dhc_devices, *(exc.device for exc in lost)], Path(dhc_run.settings.kernel_log))
    if unreadable and not dhc_check.findings():
        raise CheckIncomplete(f"NVML could not read {len(unreadable)} health item(s): {'; '.join(unreadable)}")


def _health(dhc_check, devices, lost):
    """Record each GPU's health; returns what NVML could not read. A GPU lost on the way joins ``lost``."""
    unreadable = []
    with Nvml() as nvml:
        for device in devices:
            try:
                health = nvml.health(device)
            except GpuUnusable as exc:
                lost.append(exc)
                continue
            except NvmlQueryError as exc:
                unreadable.append(f"all of {device.label()}: {exc}")
                continue
            for name, value, unit in health_measurements(health):
                dhc_check.record(name, value, unit, device)
            if health.unreadable:
                dhc_check.record("nvml_unreadable_items", len(health.unreadable), "count", device)
            unreadable += [f"{metric} on {device.label()}: {why}" for metric, why in health.unreadable.items()]
    return unreadable


def _kernel_log(dhc_check, devices, path):
    log = xid.read_kernel_log(path)
    dhc_check.record("kernel_log_readable", int(log is not None), "count")
    for event in xid.parse_kernel_log(log or ""):
        device = next((d for d in devices if xid.same_pci_device(event.pci_bus_id, d.pci_bus_id)), None)
        dhc_check.record("xid_in_kernel_log", event.xid, "count", device)
        if event.action is not Action.NONE:
            where = f" on PCI {event.pci_bus_id}, a GPU NVML does not list" if device is None and event.pci_bus_id else ""
            dhc_check.fault(f"{event.describe()} in the kernel log since boot{where}: {event.text}",
                            device, event.action)
    for sxid in xid.parse_sxids(log or ""):  # NVSwitch errors: reported, not judged as GPU XIDs
        dhc_check.record("sxid_in_kernel_log", sxid.sxid, "count")


def health_measurements(health: GpuHealth):
    """(metric, value, unit) for each health item this GPU supports."""
    items = [
        ("ecc_enabled", health.ecc_enabled, "count"),
        ("ecc_uncorrected_volatile", health.ecc_uncorrected_volatile, "count"),
        ("ecc_uncorrected_aggregate", health.ecc_uncorrected_aggregate, "count"),
        ("remapped_rows_pending", health.remapped_rows_pending, "count"),
        ("remap_failure", health.remap_failure, "count"),
        ("retired_pages", health.retired_pages, "count"),
        ("retired_pages_pending", health.retired_pages_pending, "count"),
        ("nvlinks_up", health.nvlinks_up, "count"),
        ("temperature_c", health.temperature_c, "C"),
    ]
    items = [(name, int(value), unit) for name, value, unit in items if value is not None]
    if health.pcie_width and health.pcie_width[1] > 0:  # a maximum of 0 lanes is in health.unreadable instead
        items.append(("pcie_width_ratio", round(health.pcie_width[0] / health.pcie_width[1], 4), "ratio"))
    if health.pcie_gen:  # idle GPUs drop their link generation: recorded, not judged
        items += [("pcie_gen", health.pcie_gen[0], "count"), ("pcie_gen_max", health.pcie_gen[1], "count")]
    return items
