"""The controller's Prometheus metrics, scraped over real HTTP while the controller works the emulated API server.

Every test waits for the value it expects to show up in a scrape (a positive signal), never for time.
"""

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

pytest.importorskip("kubernetes", reason="the controller needs the kubernetes client (dhc[kubernetes])")
prometheus_client = pytest.importorskip("prometheus_client", reason="the metrics need prometheus_client (dhc[kubernetes])")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from test_controller import KEYS, P5, Running, finish, labels, wait_for  # noqa: E402

from dhc.controller import metrics  # noqa: E402
from dhc.controller.jobs import job_name  # noqa: E402

GPU8 = {"capacity": {"nvidia.com/gpu": "8"}}


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def shows(port, *expected):
    """True once a scrape shows every (name, labels, value) in ``expected``."""
    try:
        seen = scrape(port)
    except OSError:
        return False
    return all(seen.get((name, tuple(sorted(lbl.items())))) == value for name, lbl, value in expected)


def test_the_gauges_and_counters_follow_the_controller(emulator):
    emulator.add_node("gpu-a", P5)
    emulator.add_node("gpu-cpu", {"node.kubernetes.io/instance-type": "cpu"}, status=GPU8)  # cannot be judged
    emulator.add_node("gpu-p", dict(P5, **{KEYS.check_status: "Passed", KEYS.health: "Schedulable"}))  # unearned
    with Running(emulator, batch_window_s=3600) as running:
        server, _ = metrics.serve(running.controller.snapshot, 0, "127.0.0.1")
        try:
            port = server.server_port
            wait_for(lambda: shows(
                port,
                ("dhc_nodes_cannot_judge", {}, 1.0),
                ("dhc_nodes", {"check_status": "InProgress"}, 2.0),
                ("dhc_nodes", {"check_status": "Incomplete"}, 1.0),
                ("dhc_nodes", {"check_status": "Passed"}, 0.0),
                ("dhc_nodes_health", {"health": "Unschedulable"}, 3.0),
                ("dhc_nodes_health", {"health": "Schedulable"}, 0.0),
                ("dhc_jobs_started_total", {"stage": "stress"}, 2.0),
                ("dhc_unearned_labels_total", {}, 1.0),
                ("dhc_verdicts_written_total", {"status": "Failed"}, 0.0),
            ), what="the first scrape's values")
            finish(emulator, job_name("gpu-a", 1, 1), "gpu-a", "Failed", "Replace")
            wait_for(lambda: shows(
                port,
                ("dhc_verdicts_written_total", {"status": "Failed"}, 1.0),
                ("dhc_nodes", {"check_status": "Failed"}, 1.0),
                ("dhc_nodes_health", {"health": "UnschedulablePendingReplacement"}, 1.0),
            ), what="the Failed verdict counted")
            emulator.set_node_labels("gpu-cpu", {"node.kubernetes.io/instance-type": "p5.48xlarge"})  # fixed
            wait_for(lambda: shows(port, ("dhc_nodes_cannot_judge", {}, 0.0),
                                          ("dhc_jobs_started_total", {"stage": "stress"}, 3.0)),
                     what="the corrected node judged and checked")
        finally:
            server.shutdown()
    assert labels(emulator, "gpu-cpu")[KEYS.check_status] == "InProgress"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig(tmp_path, url):
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{url}"}}}}]
users: [{{name: me, user: {{token: test}}}}]
contexts: [{{name: emu, context: {{cluster: emu, user: me}}}}]
current-context: emu
""")
    return path


def controller_env(tmp_path, emulator):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "DHC_"))}
    return env | {"KUBECONFIG": str(kubeconfig(tmp_path, emulator.url)), "HOME": str(tmp_path)}


def test_dhc_controller_serves_metrics_on_its_port(emulator, tmp_path):
    emulator.add_node("gpu-cpu", {"node.kubernetes.io/instance-type": "ml.cpu", "dhc.dev/deep-health-check": "enabled"},
                      status=GPU8)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dhc", "controller", "--image", "dhc-node:0.1.0",
                             "--metrics-port", str(port)], env=controller_env(tmp_path, emulator),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: shows(port, ("dhc_nodes_cannot_judge", {}, 1.0)) or proc.poll() is not None,
                 timeout=60, what="the controller's metrics")
        assert proc.poll() is None, proc.stderr.read()
        assert emulator.jobs == {}  # the GPU node is not checked against the ml.cpu profile
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("port", ["-1", "70000", "http"])
def test_a_bad_metrics_port_exits_2(port):
    proc = subprocess.run([sys.executable, "-m", "dhc", "controller", "--image", "dhc-node:0.1.0",
                           "--metrics-port", port], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "expected a TCP port, 1-65535 (0: no metrics)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_taken_metrics_port_exits_2_with_the_reason(emulator, tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "dhc", "controller", "--image", "dhc-node:0.1.0",
                               "--metrics-port", str(port)], env=controller_env(tmp_path, emulator),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"cannot serve metrics on port {port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_prometheus_client_lives_in_the_metrics_module_alone():
    import ast
    from pathlib import Path
    root = Path(metrics.__file__).resolve().parents[1]
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "prometheus_client" for n in names):
                importers.add(path.relative_to(root).as_posix())
    assert importers == {"controller/metrics.py", "agent/metrics.py", "resume/metrics.py"}  # one per program
    proc = subprocess.run([sys.executable, "-c", "import sys, dhc.cli, dhc.controller.loop; "
                           "print('prometheus_client' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr  # the controller runs without it when --metrics-port is 0
