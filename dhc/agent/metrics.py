"""The agent's Prometheus metrics: the one module of ``dhc.agent`` that imports ``prometheus_client``
(the controller has its own, ``dhc.controller.metrics``: one per program, each its own process).

Served on ``dhc agent --metrics-port`` (``/metrics``), built from the ``Tally`` at scrape time:

- ``dhc_agent_fault{detector,node}``: 1 once the detector raised a fault on this node in this run;
- ``dhc_agent_detections_total{detector,action}``: faults raised;
- ``dhc_agent_duplicates_total``: detections not raised again (already raised this boot);
- ``dhc_agent_kernel_lines_total``, ``dhc_agent_polls_total``: work done (a line read is counted
  after it was judged, so a test can wait for it);
- ``dhc_agent_watching{source}``: 1 while the kernel log / NVML is being watched, 0 when it cannot be
  (alert on 0: a blind agent finds nothing, which must never read as a healthy node);
- ``dhc_agent_publish_errors_total``: node writes that failed;
- ``dhc_agent_cloudwatch_errors_total``: CloudWatch Logs deliveries that failed (``--sink cloudwatch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dhc.agent.tally import Tally


class AgentCollector:
    def __init__(self, tally: Tally):
        self.tally = tally

    def collect(self) -> Iterator[Metric]:
        t = self.tally
        with t.lock:
            fault = GaugeMetricFamily("dhc_agent_fault", "1 once this detector raised a fault on the node",
                                      labels=["detector", "node"])
            for detector, value in sorted(t.raised.items()):
                fault.add_metric([detector, t.node], value)
            detections = CounterMetricFamily("dhc_agent_detections", "Faults the agent raised",
                                             labels=["detector", "action"])
            for (detector, action), count in sorted(t.detections.items()):
                detections.add_metric([detector, action], count)
            watching = GaugeMetricFamily("dhc_agent_watching", "1 while the source is watched", labels=["source"])
            for source, value in sorted(t.watching.items()):
                watching.add_metric([source], value)
            plain = [(CounterMetricFamily, name, doc, getattr(t, attr)) for name, doc, attr in _PLAIN]
        yield fault
        yield detections
        yield watching
        for family, name, doc, value in plain:
            yield family(name, doc, value=value)


_PLAIN = (("dhc_agent_duplicates", "Detections not raised again (already raised this boot)", "duplicates"),
          ("dhc_agent_kernel_lines", "Kernel-log lines read and judged", "kernel_lines"),
          ("dhc_agent_polls", "NVML, sysfs and disk polls completed", "polls"),
          ("dhc_agent_publish_errors", "Node writes that failed", "publish_errors"),
          ("dhc_agent_cloudwatch_errors", "CloudWatch Logs deliveries that failed", "cloudwatch_errors"))


def serve(tally: Tally, port: int, address: str = "0.0.0.0") -> tuple[Any, Any]:
    """Serve ``/metrics`` in a daemon thread (port 0: any free port). Returns (server, thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(tally))
    return start_http_server(port, address, registry)
