"""The CloudWatch Logs sink against moto in server mode over real HTTP: delivery, throttling, outage."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("moto.server", reason="moto[server] comes with the test extra")
boto3 = pytest.importorskip("boto3", reason="boto3 comes with dhc[cloud]")

from test_report import report_with_verdict  # noqa: E402

from dhc.model.report import Report  # noqa: E402
from dhc.sinks import cloudwatch  # noqa: E402

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-2"}


class Throttler:
    """A real HTTP proxy before moto that answers the first N PutLogEvents with ThrottlingException."""

    def __init__(self, upstream: str, throttle: int):
        self.upstream, self.remaining, self.throttled = upstream, throttle, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if "PutLogEvents" in self.headers.get("X-Amz-Target", "") and proxy.remaining > 0:
                    proxy.remaining -= 1
                    proxy.throttled += 1
                    return self._reply(400, b'{"__type":"ThrottlingException","message":"Rate exceeded"}',
                                       {"Content-Type": "application/x-amz-json-1.1"})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        self._reply(answer.status, answer.read(), dict(answer.headers))
                except urllib.error.HTTPError as err:
                    self._reply(err.code, err.read(), dict(err.headers))

            def _reply(self, status, body, headers):
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def events(endpoint, group, stream):
    logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-2",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    return [json.loads(e["message"]) for e in logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]]


def run_with_sink(tmp_path, endpoint, *args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "AWS_"))}
    base.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint, DHC_IMDS="off", DHC_INSTANCE_ID="i-0feedface",
                DHC_REGION="us-east-2", DHC_CLUSTER="train-a", DHC_CLUSTER_ID="abc123", **env)
    return subprocess.run([sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--sink", "cloudwatch",
                           "--out", str(tmp_path / "r"), *args], capture_output=True, text=True, env=base, timeout=120)


GROUP, STREAM = "/aws/sagemaker/Clusters/train-a/abc123", "DeepHealthCheckResults/i-0feedface"


@pytest.mark.slow
def test_a_run_delivers_its_verdict_to_hyperpods_log_group(tmp_path, moto):
    proc = run_with_sink(tmp_path, moto)
    assert proc.returncode == 0, proc.stderr
    assert f"sent 1 log event(s) to CloudWatch Logs {GROUP} / {STREAM}" in proc.stderr
    [line] = events(moto, GROUP, STREAM)
    assert line["msg"].startswith("Deep health check Passed. Region: us-east-2, InstanceType: cpu.")
    assert (line["level"], line["instance_id"], line["status"]) == ("info", "i-0feedface", "Passed")
    proc = run_with_sink(tmp_path, moto)  # group and stream exist now: still fine
    assert proc.returncode == 0 and len(events(moto, GROUP, STREAM)) == 2


@pytest.mark.slow
def test_throttling_is_retried(tmp_path, moto):
    proxy = Throttler(moto, throttle=2)
    try:
        proc = run_with_sink(tmp_path, proxy.url, "--log-group", "/dhc/throttled")
    finally:
        proxy.close()
    assert proc.returncode == 0 and "sent 1 log event(s)" in proc.stderr, proc.stderr
    assert proxy.throttled == 2 and len(events(moto, "/dhc/throttled", STREAM)) == 1


@pytest.mark.slow
def test_an_unreachable_endpoint_is_reported_and_loses_nothing(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = run_with_sink(tmp_path, closed)
    assert proc.returncode == 0  # the node's verdict does not depend on CloudWatch
    assert "sink cloudwatch failed, the local report is intact" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"]["status"] == "Passed"


def test_batches_respect_the_service_limits():
    lines = [{"i": i, "pad": "x" * 200} for i in range(12_000)]
    sizes = [len(b) for b in cloudwatch.batches(lines, 0)]
    assert sum(sizes) == 12_000 and max(sizes) <= cloudwatch.MAX_BATCH_EVENTS
    for batch in cloudwatch.batches(lines, 0):
        assert sum(len(e["message"].encode()) + 26 for e in batch) <= cloudwatch.MAX_BATCH_BYTES
    [[huge]] = list(cloudwatch.batches([{"blob": "y" * 400_000}], 0))
    assert len(huge["message"].encode()) <= cloudwatch.MAX_EVENT_BYTES and huge["message"].endswith("[truncated]")


def test_destination_defaults_to_hyperpods_names():
    document = report_with_verdict(instance_id="i-1")  # a whole report: the sink reads it typed
    where = cloudwatch.destination(Report.from_dict(document), "train-b", "xyz")
    assert (where.group, where.stream) == ("/aws/sagemaker/Clusters/train-b/xyz", "DeepHealthCheckResults/i-1")
    assert cloudwatch.destination(Report.from_dict(document), None, None, "/custom").group == "/custom"


def test_events_the_service_rejects_are_not_counted_and_a_deleted_group_is_named_then_created_again(moto, monkeypatch):
    from dhc.aws import logs

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    now = int(time.time() * 1000)
    stream = logs.LogStream("/dhc/gone", "s", "us-east-2", endpoint_url=moto)
    assert stream.put([(1_000, "from 1970: too old, the service rejects it"), (now, "one")]) == 1
    client = boto3.client("logs", endpoint_url=moto, region_name="us-east-2")
    client.delete_log_group(logGroupName="/dhc/gone")
    with pytest.raises(logs.LogsError, match=r"/dhc/gone / s: .*ResourceNotFoundException"):
        stream.put([(now + 1, "two")])
    assert stream.put([(now + 2, "three")]) == 1
    assert [e["message"] for e in client.get_log_events(logGroupName="/dhc/gone", logStreamName="s")["events"]] == ["three"]


def test_no_region_anywhere_is_a_named_error_never_a_guessed_region(monkeypatch, tmp_path):
    from dhc.aws import logs

    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(logs.LogsError, match=r"CloudWatch Logs /g / s: no AWS region"):
        logs.LogStream("/g", "s", None)
