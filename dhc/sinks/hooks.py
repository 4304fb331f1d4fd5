"""dhc's own hook: a verdict that stands goes to the sinks, each a plugin implementing ``pytest_dhc_verdict``.

Declared as pytest-xdist declares its hooks (``pytest_addhooks`` adds this module in ``dhc.plugin``) and
named with pytest's ``pytest_`` prefix, since pytest's plugin manager looks at no other name. The marks
are pluggy's under pytest's project name, so one sink object registers on pytest's manager (``pytest
suites/`` alone) and on the small manager ``manager()`` builds for ``dhc run``. pluggy comes with pytest but imports none of it:
the CLI and the sinks stay light.

Once per sink per run, from one process: the one that stands behind the report. Under ``dhc run`` that is
``dhc run`` itself, after it has decided whether to trust its child's report (``dhc.cli.trust``): the child
(``run_config.by_dhc_run``) delivers nothing, so no sink ever keeps a verdict its parent refused, and
``dhc run`` calls each sink once (a stop signal then is only noted: ``StopSignals.settle``). ``pytest
suites/`` alone delivers itself; a stop (KeyboardInterrupt) that cuts one sink short there costs only that
sink, and it is said. A sink that returned having delivered is journaled ``delivered`` (a record, read by
no one to decide anything); one that failed is not. A planted fault (``--inject``) never reaches a sink.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from dhc.model.report import Report
from dhc.report import Journal, utc_now

if TYPE_CHECKING:
    from dhc.runconfig import RunConfig

hookspec = pluggy.HookspecMarker("pytest")
hookimpl = pluggy.HookimplMarker("pytest")

DELIVERED = "delivered"  # journaled once a sink returned having delivered (a record of what went where)
HANDED_OVER = "report-handed-over"  # dhc run's child wrote its report and left the sinks to dhc run


@hookspec
def pytest_dhc_verdict(report: Report, run_config: RunConfig, say: Callable[[str], None]) -> bool:
    """The run's report is on disk and stands: deliver it. ``say`` reports what happened (one line, no prefix).

    Called once per sink per run, never for a run with a planted fault. Returns whether it delivered; an
    implementation that fails says so with ``say`` and returns False: the report and the other sinks stand."""


def manager(run_config: RunConfig) -> pluggy.PluginManager:
    """A plugin manager with dhc's hook and the sinks ``run_config`` names, for a process without pytest."""
    from dhc.sinks.plugins import sink_plugins  # the sinks import their clients only when called

    pm = pluggy.PluginManager("pytest")
    pm.add_hookspecs(sys.modules[__name__])
    for name, plugin in sink_plugins(run_config):
        pm.register(plugin, name)
    return pm


def deliver(pm: pluggy.PluginManager, report: Report, run_config: RunConfig, say: Callable[[str], None],
            journal: Journal) -> list[str]:
    """Call each sink once, in pluggy's order; return the ones that delivered (each journaled ``delivered``)."""
    if run_config.inject:
        return []
    done = []
    for impl in reversed(pm.hook.pytest_dhc_verdict.get_hookimpls()):
        kwargs = {"report": report, "run_config": run_config, "say": say}
        try:
            delivered = impl.function(*(kwargs[arg] for arg in impl.argnames))
        except KeyboardInterrupt:  # pytest alone, stopped: this sink is cut short, never the ones after it
            say(f"sink {_short(impl.plugin_name)} was cut short by a stop; it may not have the verdict")
            continue
        if delivered:
            done.append(impl.plugin_name)
            _journal(journal, impl.plugin_name, report, say)
    return done


def _journal(journal: Journal, sink: str, report: Report, say: Callable[[str], None]) -> None:
    try:
        journal.append({"event": DELIVERED, "sink": sink, "ts": utc_now(), "run_id": report.run.run_id,
                        "finished_at": report.run.finished_at})
    except OSError as exc:  # the sink has the verdict; only the record of it is lost
        say(f"cannot journal the delivery to sink {_short(sink)} in {journal.path} ({exc.strerror or exc})")


def _short(plugin_name: str) -> str:
    return plugin_name.removeprefix("dhc-sink-")
