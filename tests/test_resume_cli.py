"""Job auto-resume as a user runs it: ``dhc resume`` and ``dhc controller --job-auto-resume`` in a
subprocess against the emulator, metrics scraped over HTTP, stopped by SIGTERM."""

import signal
import subprocess
import sys

from k8s_emulator import Emulator
from k8s_workloads import Workloads
from test_metrics import controller_env, free_port, scrape
from test_resume import KEYS, add_nodes, events, pod_on, pytorchjob, record, running, set_health, wait_for


def _sample(port, name):
    """The value of the unlabelled sample ``name`` in a scrape, or None (not served yet, or absent)."""
    try:
        return scrape(port).get((name, ()))
    except OSError:
        return None


def _stop(proc):
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr


def test_dhc_resume_resumes_a_job_and_counts_it(tmp_path):
    with Emulator() as emulator, Workloads(emulator) as work:
        add_nodes(emulator, ("n0", "n1", "n2"))
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "dhc", "resume", "--metrics-port", str(port),
                                 "--resume-window-s", "5"], env=controller_env(tmp_path, emulator),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _sample(port, "dhc_jobs_resume_waiting") is not None or proc.poll() is not None, timeout=60,
                     what="dhc resume serving metrics")
            wait_for(lambda: any("watch=true" in r[1] and "training.kubeflow.org" in r[1] for r in emulator.requests),
                     timeout=30, what="dhc resume watching the pods")
            set_health(emulator, "n1", "UnschedulablePendingReplacement")
            work.fail_pod(pod_on(work, "n1")["metadata"]["name"])
            wait_for(lambda: record(work).retries == 1 and events(emulator, "JobResumed"), timeout=60,
                     what="the job resumed")
            wait_for(lambda: _sample(port, "dhc_jobs_resumed_total") == 1, timeout=30,
                     what="the restart counted")
        finally:
            _stop(proc)


def test_the_controller_runs_job_auto_resume_beside_it_when_asked(tmp_path):
    with Emulator() as emulator, Workloads(emulator, served=()):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "dhc", "controller", "--image", "dhc-node:0.1.0",
                                 "--metrics-port", str(port), "--job-auto-resume"],
                                env=controller_env(tmp_path, emulator), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (_sample(port, "dhc_jobs_resume_given_up_total") == 0
                              and _sample(port, "dhc_nodes_cannot_judge") == 0) or proc.poll() is not None, timeout=60, what="both collectors on one port")
            assert proc.poll() is None
            wait_for(lambda: any(r[1] == "/apis/jobset.x-k8s.io/v1alpha2" for r in emulator.requests), timeout=30,
                     what="discovery asked")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
        assert "does not serve pytorchjobs" in stderr and stderr.count("does not serve pytorchjobs") == 1
        assert KEYS.enabled.startswith("sagemaker.amazonaws.com/")
