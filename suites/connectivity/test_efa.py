"""connectivity.efa: the EFA devices the instance type promises are there, to libfabric and the kernel.

Verdicts:
- libfabric lists the promised number of distinct EFA devices (and the kernel agrees): Passed.
- fewer or more devices than promised: Failed, action Replace (an EFA interface is attached when
  the instance is launched; a reboot does not bring back a missing one).
- no EFA device at all (``fi_getinfo: -61``) while the kernel lists none either: Failed, 0 of N, Replace.
- the kernel lists EFA devices but libfabric opens none: Incomplete (the container cannot reach
  ``/dev/infiniband`` or the efa provider does not load: software, not this node's hardware).
- the kernel and libfabric disagree on a count above zero: Failed, Replace, naming the NICs libfabric
  does not offer (a count below the promise is judged Replace whoever sees it; the node verdict
  would take the stronger action anyway).
- a type that promises no EFA (``efa: 0``) and is not skipped by its thresholds: Skipped, saying so.
- fi_info missing, hung, crashed, failing otherwise or printing what cannot be read: Incomplete, named.
"""

from pathlib import Path

import pytest

from dhc.errors import CheckIncomplete, NotApplicable
from dhc.model import Action
from dhc.probes import efa
from dhc.probes.tool import ToolMissing, ToolTimeout


@pytest.mark.check("connectivity.efa")
def test_efa_devices(dhc_check, dhc_limits, dhc_run):
    node_type = dhc_limits.instance_type
    if not node_type.efa:  # nothing promised, nothing to judge: a count without a limit cannot fail
        raise NotApplicable(f"{node_type.name} promises no EFA device (efa: 0 in the thresholds file)")
    expected = f"{node_type.name} expects {node_type.efa} EFA devices"
    budget = dhc_check.budgets("fi_info")["fi_info"]
    try:
        found = efa.query(dhc_run.settings.fi_info, budget.seconds)
    except ToolTimeout as exc:
        raise CheckIncomplete(budget.reason(f"{expected}, but {exc}")) from None
    except (ToolMissing, efa.FiInfoError, OSError) as exc:
        raise CheckIncomplete(f"{expected}, but {exc}") from None
    sysfs = Path(dhc_run.settings.sys_infiniband)
    kernel = efa.sysfs_devices(sysfs)
    if not found.devices and kernel:
        raise CheckIncomplete(
            f"{expected}; the kernel lists {len(kernel)} under {sysfs} ({_some(kernel)}) but libfabric "
            f"opens none ({found.no_data}): is /dev/infiniband mounted in this container (request "
            "vpc.amazonaws.com/efa) and does the efa provider load (FI_LOG_LEVEL=warn fi_info -p efa)?")
    dhc_check.record("efa_devices", len(found.devices), "count")
    if not found.devices:
        dhc_check.fault(f"libfabric finds no EFA device ({found.no_data}) and the kernel lists none "
                        f"under {sysfs}: 0 of the {node_type.efa} EFA devices {node_type.name} promises",
                        None, Action.REPLACE)
    if kernel is not None:
        dhc_check.record("efa_sysfs_devices", len(kernel), "count")
        if kernel and len(kernel) != len(found.devices):
            unseen = sorted(set(kernel) - set(found.devices))
            dhc_check.fault(f"the kernel shows {len(kernel)} EFA devices but libfabric offers {len(found.devices)}"
                            + (f" (not offered: {_some(unseen)})" if unseen else ""), None, Action.REPLACE)


def _some(names, count=8):
    return ", ".join(names[:count]) + (f" and {len(names) - count} more" if len(names) > count else "")
