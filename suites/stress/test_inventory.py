"""stress.inventory: the devices the instance type promises are present."""

import pytest

from dhc.probes import host


@pytest.mark.check("stress.inventory")
def test_inventory(dhc_check, dhc_limits, dhc_devices):
    node_type = dhc_limits.instance_type
    cpu = host.cpu_device()
    dhc_check.record("cpu_cores", host.cpu_cores(), "count", cpu)
    dhc_check.record("memory_gib", round(host.memory_gib(), 2), "GiB", cpu)
    if node_type.gpus:
        dhc_check.covered(*dhc_devices)
        dhc_check.record("gpu_count", len(dhc_devices), "count")
