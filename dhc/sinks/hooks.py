"""dhc's own hook: a verdict that stands goes to the sinks, each a plugin implementing ``pytest_dhc_verdict``.

Declared as pytest-xdist declares its hooks (``pytest_addhooks`` adds this module in ``dhc.plugin``) and
named with pytest's ``pytest_`` prefix, since pytest's plugin manager looks at no other name. The marks
are pluggy's under pytest's project name, so one sink object registers on pytest's manager (the run's
child, or ``pytest suites/`` alone) and on the small manager ``manager()`` builds for ``dhc run``, which
delivers to every sink its child did not deliver to. pluggy comes with pytest but imports none of it:
the CLI and the sinks stay light.

Once per sink per run: ``deliver`` calls the sinks one at a time, journaling ``delivering`` before and
``delivered`` after each (``DELIVERING``, ``DELIVERED``, with the sink's name). A stop (KeyboardInterrupt:
Ctrl-C, or SIGTERM during the child's ``pytest_sessionfinish``) that cuts one sink short costs only that
sink, which is never journaled as delivered, so ``dhc run`` delivers it. A child of ``dhc run`` that
cannot journal a delivery leaves that sink to ``dhc run``; ``pytest suites/`` alone has no one after it
and delivers anyway. A planted fault (``--inject``) never reaches a sink.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

from dhc.model.report import Report
from dhc.report import Journal, utc_now

if TYPE_CHECKING:
    from dhc.runconfig import RunConfig

hookspec = pluggy.HookspecMarker("pytest")
hookimpl = pluggy.HookimplMarker("pytest")

DELIVERING = "delivering"  # journaled before a process calls one sink, with the sink's name
DELIVERED = "delivered"  # journaled once that sink returned: no process calls it again for this run
SINK_NOTE = "sink-note"  # the journal event that keeps what a sink said, for dhc run to repeat


@hookspec
def pytest_dhc_verdict(report: Report, run_config: RunConfig, say: Callable[[str], None]) -> None:
    """The run's report is on disk and stands: deliver it. ``say`` reports what happened (one line, no prefix).

    Called once per sink per run, never for a run with a planted fault. An implementation that fails says
    so with ``say`` and returns: the report and the other sinks stand."""


def manager(run_config: RunConfig) -> pluggy.PluginManager:
    """A plugin manager with dhc's hook and the sinks ``run_config`` names, for a process without pytest."""
    from dhc.sinks.plugins import sink_plugins  # the sinks import their clients only when called

    pm = pluggy.PluginManager("pytest")
    pm.add_hookspecs(sys.modules[__name__])
    for name, plugin in sink_plugins(run_config):
        pm.register(plugin, name)
    return pm


def delivered(events: list[dict[str, Any]], run_id: str) -> set[str]:
    """The sinks a process of run ``run_id`` delivered to (journaled ``DELIVERED``)."""
    return {str(e.get("sink")) for e in events if e.get("event") == DELIVERED and e.get("run_id") == run_id}


def deliver(pm: pluggy.PluginManager, report: Report, run_config: RunConfig, say: Callable[[str], None],
            journal: Journal, last_resort: bool) -> list[str]:
    """Call each sink that has not had this run's verdict, in pluggy's order; return the ones called.

    The ``last_resort`` (``dhc run`` itself, or ``pytest suites/`` alone) delivers even when the journal
    cannot be written; the child of ``dhc run`` then leaves that sink to its parent."""
    if run_config.inject:
        return []
    done, called = delivered(journal.events(), run_config.run_id), []
    for impl in reversed(pm.hook.pytest_dhc_verdict.get_hookimpls()):
        name = impl.plugin_name
        if name in done:
            continue
        if not _journal(journal, DELIVERING, name, report, say) and not last_resort:
            continue
        kwargs = {"report": report, "run_config": run_config, "say": say}
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except KeyboardInterrupt:  # a stop cuts this sink short, never the ones after it
            say(f"sink {_short(name)} was cut short by a stop; "
                + ("dhc run delivers to it" if not last_resort else "it may not have the verdict"))
            continue
        called.append(name)
        _journal(journal, DELIVERED, name, report, say)
    return called


def _journal(journal: Journal, event: str, sink: str, report: Report, say: Callable[[str], None]) -> bool:
    try:
        journal.append({"event": event, "sink": sink, "ts": utc_now(), "run_id": report.run.run_id,
                        "finished_at": report.run.finished_at})
    except OSError as exc:
        say(f"cannot journal the delivery to sink {_short(sink)} in {journal.path} ({exc.strerror or exc})")
        return False
    return True


def _short(plugin_name: str) -> str:
    return plugin_name.removeprefix("dhc-sink-")
