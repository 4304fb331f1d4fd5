"""stress.dcgm: NVIDIA DCGM diagnostics at the profile's level, judged per test and GPU.

dcgmi talks to a DCGM host engine: the node's own (DHC_DCGM_HOSTENGINE, else localhost:5555), or one
dhc starts for the run and always stops (see dhc.probes.dcgm_hostengine).
"""

import shutil
import time

import pytest

from dhc.errors import CheckIncomplete
from dhc.probes import dcgm


@pytest.mark.check("stress.dcgm")
def test_dcgm(dhc_check, dhc_run, dhc_devices):
    for lost in getattr(dhc_devices, "lost", ()):  # a GPU lost to NVML fails the check, even if DCGM cannot run
        dhc_check.fault(f"not diagnosed: {lost}", lost.device, lost.action)
    settings = dhc_run.settings
    dcgmi = shutil.which(settings.dcgmi)
    if dcgmi is None:
        raise CheckIncomplete(f"{dhc_check.instance_type} expects DCGM diagnostics, but {settings.dcgmi!r} "
                              "is not on PATH (install datacenter-gpu-manager or set DHC_DCGMI)")
    level = int(dhc_check.settings.get("level", 2))
    timeout_s = dhc_run.limits.timing("stress.dcgm").timeout_s
    budget_end = time.monotonic() + timeout_s - min(max(0.1 * timeout_s, 5.0), 0.5 * timeout_s)  # room to stop
    try:
        with dcgm.host_engine(dcgmi, settings.dcgm_hostengine, settings.nv_hostengine, dhc_run.out) as engine:
            output, exit_code = dcgm.run_diag(dcgmi, level, max(budget_end - time.monotonic(), 1.0), engine)
    except (dcgm.HostEngineUnavailable, dcgm.DcgmTimeout) as exc:
        raise CheckIncomplete(str(exc)) from None
    (dhc_run.out / "dcgm-diag.txt").write_text(output)
    faults, undecided, run = dcgm.assess(output, exit_code)
    by_index = {d.index: d for d in dhc_devices}
    dhc_check.covered(*dhc_devices)
    dhc_check.record("level", level, "count")
    if run is not None:
        for status in ("Pass", "Fail", "Warn", "Skip"):
            dhc_check.record(f"results_{status.lower()}", sum(r.status == status for r in run.results), "count")
    for fault in faults:
        dhc_check.fault(fault.message, by_index.get(fault.gpu), fault.action)
    if undecided and not faults:
        raise CheckIncomplete("; ".join(undecided) + f" [host engine: {engine.origin}]")
