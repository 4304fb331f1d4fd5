"""stress.inventory: the devices the instance type promises are present and healthy before the stress.

On GPUs, through NVML: count, ECC mode and uncorrectable counts, row remapping, retired pages,
NVLink links up, PCIe width, temperature; and XIDs in the kernel log since boot, when readable.
"""

from pathlib import Path

import pytest

from dhc.probes import host, xid
from dhc.probes.nvml import GpuHealth, Nvml


@pytest.mark.check("stress.inventory")
def test_inventory(dhc_check, dhc_limits, dhc_devices, dhc_run):
    cpu = host.cpu_device()
    dhc_check.record("cpu_cores", host.cpu_cores(), "count", cpu)
    dhc_check.record("memory_gib", round(host.memory_gib(), 2), "GiB", cpu)
    if not dhc_limits.instance_type.gpus:
        return
    dhc_check.covered(*dhc_devices)
    dhc_check.record("gpu_count", len(dhc_devices), "count")
    with Nvml() as nvml:
        for device in dhc_devices:
            for name, value, unit in health_measurements(nvml.health(device.index)):
                dhc_check.record(name, value, unit, device)
    log = xid.read_kernel_log(Path(dhc_run.settings.kernel_log))
    dhc_check.record("kernel_log_readable", int(log is not None), "count")
    for event in xid.parse_kernel_log(log or ""):
        device = next((d for d in dhc_devices if xid.same_pci_device(event.pci_bus_id, d.pci_bus_id)), None)
        dhc_check.record("xid_in_kernel_log", event.xid, "count", device)
        if event.action.value != "None":
            dhc_check.fault(f"XID {event.xid} ({event.meaning}) in the kernel log since boot: {event.text}",
                            device, event.action)


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
    if health.pcie_width:
        items.append(("pcie_width_ratio", round(health.pcie_width[0] / health.pcie_width[1], 4), "ratio"))
    if health.pcie_gen:  # idle GPUs drop their link generation: recorded, not judged
        items += [("pcie_gen", health.pcie_gen[0], "count"), ("pcie_gen_max", health.pcie_gen[1], "count")]
    return [(name, int(value), unit) for name, value, unit in items if value is not None]
