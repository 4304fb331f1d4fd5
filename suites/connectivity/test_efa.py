"""connectivity.efa: the EFA devices the instance type promises are there, to libfabric and the kernel."""

from pathlib import Path

import pytest

from dhc.errors import CheckIncomplete
from dhc.model import Action
from dhc.probes import efa


@pytest.mark.check("connectivity.efa")
def test_efa_devices(dhc_check, dhc_limits, dhc_run):
    expected = dhc_limits.instance_type.efa
    try:
        output = efa.run_fi_info(dhc_run.settings.fi_info)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise CheckIncomplete(f"{dhc_limits.instance_type.name} expects {expected} EFA devices, but {exc}") from None
    domains = efa.rdm_domains(output)
    dhc_check.record("efa_devices", len(domains), "count")
    kernel = efa.sysfs_devices(Path(dhc_run.settings.sys_infiniband))
    if kernel is not None:
        dhc_check.record("efa_sysfs_devices", len(kernel), "count")
        if len(kernel) != len(domains):
            dhc_check.fault(f"the kernel shows {len(kernel)} EFA devices but libfabric offers {len(domains)} "
                            f"RDM domains", None, Action.REBOOT)
