"""dhc's own hook: a verdict that stands goes to the sinks, each a plugin implementing ``pytest_dhc_verdict``.

Declared as pytest-xdist declares its hooks (``pytest_addhooks`` adds this module in ``dhc.plugin``) and
named with pytest's ``pytest_`` prefix, since pytest's plugin manager looks at no other name. The marks
are pluggy's under pytest's project name, so one sink object registers on pytest's manager (the run's
child, or ``pytest suites/`` alone) and on the small manager ``manager()`` builds for ``dhc run``, which
calls it only for a report it rebuilt after the child ended without delivering one. pluggy comes with
pytest but imports none of it: the CLI and the sinks stay light.

Once per run: the process that delivers journals ``{"event": "delivering"}`` first (``DELIVERING``), and
``dhc run`` delivers only when its child did not. A planted fault (``--inject``) never reaches a sink.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from dhc.report import Journal, utc_now

if TYPE_CHECKING:
    from dhc.runconfig import RunConfig

hookspec = pluggy.HookspecMarker("pytest")
hookimpl = pluggy.HookimplMarker("pytest")

DELIVERING = "delivering"  # the journal event a process writes before it calls the sinks
SINK_NOTE = "sink-note"  # the journal event that keeps what a sink said, for dhc run to repeat


@hookspec
def pytest_dhc_verdict(report: dict[str, Any], run_config: RunConfig, say: Callable[[str], None]) -> None:
    """The run's report is on disk and stands: deliver it. ``say`` reports what happened (one line, no prefix).

    Called once per run, never for a run with a planted fault. An implementation that fails says so with
    ``say`` and returns: the report and the other sinks stand."""


def manager(run_config: RunConfig) -> pluggy.PluginManager:
    """A plugin manager with dhc's hook and the sinks ``run_config`` names, for a process without pytest."""
    from dhc.sinks.plugins import sink_plugins  # the sinks import their clients only when called

    pm = pluggy.PluginManager("pytest")
    pm.add_hookspecs(sys.modules[__name__])
    for name, plugin in sink_plugins(run_config):
        pm.register(plugin, name)
    return pm


def deliver(hook: Any, report: dict[str, Any], run_config: RunConfig, say: Callable[[str], None],
            journal: Journal, last_resort: bool = False) -> bool:
    """Journal ``DELIVERING``, then call the sinks with ``report``; False when nothing was called: a planted
    fault, or a journal that cannot be written outside the ``last_resort`` (dhc run delivers instead)."""
    if run_config.inject:
        return False
    try:
        journal.append({"event": DELIVERING, "ts": utc_now(), "run_id": run_config.run_id,
                        "finished_at": report["run"]["finished_at"]})
    except OSError as exc:
        say(f"cannot journal the delivery to the sinks in {journal.path} ({exc.strerror or exc})")
        if not last_resort:
            return False
    hook.pytest_dhc_verdict(report=report, run_config=run_config, say=say)
    return True
