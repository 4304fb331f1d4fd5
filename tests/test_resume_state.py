"""Job auto-resume's pure parts: which node is faulty or may take a resumed pod, and the metrics a scrape shows."""

import pytest

from dhc.resume import state
from dhc.resume.state import ResumeKeys

PREFIX = "sagemaker.amazonaws.com"
KEYS = ResumeKeys(PREFIX)
HEALTH = f"{PREFIX}/node-health-status"


@pytest.mark.parametrize("fault,why", [
    ("deleted", "node deleted"), ("notready", "node NotReady (NodeStatusUnknown)"),
    ("check-failed", f"node {PREFIX}/deep-health-check-status=Failed"),
    ("pending", f"node {HEALTH}=UnschedulablePendingReboot"), ("healthy", "")])
def test_every_node_fault_shape_is_named_and_a_healthy_node_is_none(fault, why):
    node = {"metadata": {"name": "n", "labels": {HEALTH: "Schedulable"}}, "status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}
    if fault == "notready":
        node["status"]["conditions"][0] |= {"status": "Unknown", "reason": "NodeStatusUnknown"}
    if fault == "check-failed":
        node["metadata"]["labels"][f"{PREFIX}/deep-health-check-status"] = "Failed"
    if fault == "pending":
        node["metadata"]["labels"][HEALTH] = "UnschedulablePendingReboot"
    assert state.node_fault(None if fault == "deleted" else node, KEYS) == why
    assert state.schedulable(node, KEYS, {}) is (fault in ("healthy", "deleted"))  # "deleted": the node object was healthy


def test_the_metrics_show_resumed_waiting_given_up_and_the_time_to_running():
    from prometheus_client import CollectorRegistry, generate_latest

    from dhc.resume.metrics import ResumeCollector

    registry = CollectorRegistry(auto_describe=False)
    from dhc.resume.metrics import Recoveries

    seen = Recoveries()
    for seconds in (45.0, 400.0):
        seen.add(seconds)
    registry.register(ResumeCollector(lambda: {"tally": {"resumed": 3, "given-up": 1}, "waiting": 2,
                                               "recoveries": seen.snapshot()}))
    text = generate_latest(registry).decode()
    for line in ("dhc_jobs_resumed_total 3.0", "dhc_jobs_resume_waiting 2.0", "dhc_jobs_resume_given_up_total 1.0",
                 'dhc_jobs_resume_seconds_bucket{le="60"} 1.0', 'dhc_jobs_resume_seconds_bucket{le="900"} 2.0',
                 "dhc_jobs_resume_seconds_count 2.0", "dhc_jobs_resume_seconds_sum 445.0"):
        assert line in text, text


@pytest.mark.parametrize("text,limit,note", [(None, 1, ""), ("3", 3, ""), (" 0 ", 0, ""),
                                             ("two", 1, "'two' is not a whole number >= 0; using 1")])
def test_the_retry_limit_is_read_or_the_default_said(text, limit, note):
    job = {"metadata": {"annotations": {} if text is None else {KEYS.max_retries: text}}}
    found, why = state.max_retries(job, KEYS, 1)
    assert found == limit and (note in why if note else why == "")


def test_an_unreadable_record_is_a_fresh_one_never_a_crash():
    job = {"metadata": {"annotations": {KEYS.state: "{not json"}}}
    record = state.Record.of(job, KEYS)
    assert record.retries == 0 and record.phase == "running" and record.interruptions == []
