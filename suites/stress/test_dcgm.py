"""stress.dcgm: NVIDIA DCGM diagnostics at the profile's level, judged per test and GPU.

dcgmi talks to a DCGM host engine: the node's own (DHC_DCGM_HOSTENGINE, else localhost:5555), or one
dhc starts for the run and always stops; inside a pod only with DHC_DCGM_START_HOSTENGINE=always (see
dhc.probes.dcgm_hostengine). dcgmi's output is kept as dcgm-diag.txt (0644, like every run file).
"""

import shutil
import time

import pytest

from dhc.errors import CheckIncomplete, ReportError
from dhc.probes import dcgm
from dhc.report.files import write_text_atomic


@pytest.mark.check("stress.dcgm")
def test_dcgm(dhc_check, dhc_run, dhc_devices):
    for lost in getattr(dhc_devices, "lost", ()):  # a GPU lost to NVML fails the check, even if DCGM cannot run
        dhc_check.fault(f"not diagnosed: {lost}", lost.device, lost.action)
    settings = dhc_run.settings
    dcgmi = shutil.which(settings.dcgmi)
    if dcgmi is None:
        raise CheckIncomplete(f"{dhc_check.instance_type} expects DCGM diagnostics, but {settings.dcgmi!r} "
                              "is not on PATH (install datacenter-gpu-manager or set DHC_DCGMI)")
    level = dhc_check.setting("level")
    budget = dhc_check.budgets("dcgmi")["diag"]  # the catalogue keeps room after it to stop and report
    budget_end = time.monotonic() + budget.seconds
    try:
        with dcgm.host_engine(dcgmi, settings.dcgm_hostengine, settings.nv_hostengine, dhc_run.out,
                              start=settings.dcgm_start_hostengine, in_pod=settings.in_kubernetes) as engine:
            output, exit_code = dcgm.run_diag(dcgmi, level, max(budget_end - time.monotonic(), 1.0), engine)
    except (dcgm.HostEngineUnavailable, dcgm.DcgmTimeout) as exc:
        raise CheckIncomplete(str(exc)) from None
    faults, undecided, run = dcgm.assess(output, exit_code)
    try:
        write_text_atomic(dhc_run.out / "dcgm-diag.txt", output)
    except ReportError as exc:  # a fault found still fails the check; a pass without its evidence does not pass
        undecided.append(f"dcgmi's output could not be kept: {exc}")
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
