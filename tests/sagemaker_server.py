"""A local SageMaker endpoint for tests, over real HTTP: the JSON 1.1 protocol of the batch node calls.

moto (5.x) does not serve ``BatchRebootClusterNodes`` / ``BatchReplaceClusterNodes``, so this does,
as the service does: ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>`` and a JSON body, checked
against botocore's own model of the operation (types, 1 to 25 ids, the ``i-`` id pattern): a malformed
call answers 400 ``ValidationException`` and fails the test that made it. Known instance ids succeed
(each recorded once in ``actions``); unknown ones come back in ``Failed``. ``throttle(n)`` answers
the next ``n`` calls with 400 ``ThrottlingException`` without acting, as the service does when a
caller exceeds its rate. ``fail_after_acting(n)`` carries out the next ``n`` calls and then answers
500 ``InternalFailure``, as a service that failed after acting (or a lost answer) looks to a caller.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

OPERATIONS = {"BatchRebootClusterNodes": "Reboot", "BatchReplaceClusterNodes": "Replace"}


class SageMaker:
    def __init__(self, cluster: str, instances: set[str]):
        self.cluster, self.instances = cluster, set(instances)
        self.model = botocore.session.get_session().get_service_model("sagemaker")
        self.lock = threading.Lock()
        self.calls: list[tuple[str, list[str]]] = []  # (operation, NodeIds) of every call, throttled too
        self.actions: list[tuple[str, str]] = []  # (Reboot | Replace, instance id) actually carried out
        self.throttled = 0
        self.failing = 0  # calls carried out, then answered 500
        self.rejected: list[str] = []  # why malformed calls were refused
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = server.answer(self.headers.get("X-Amz-Target", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-RequestId", "test-request")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> SageMaker:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def throttle(self, calls: int) -> None:
        with self.lock:
            self.throttled += calls

    def fail_after_acting(self, calls: int) -> None:
        with self.lock:
            self.failing += calls

    def answer(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        prefix, _, operation = target.partition(".")
        if prefix != "SageMaker" or operation not in OPERATIONS:
            return 400, {"__type": "UnknownOperationException", "message": f"unknown target {target!r}"}
        try:
            params = json.loads(body)
        except ValueError:
            return 400, {"__type": "SerializationException", "message": "the body is not JSON"}
        problem = self._invalid(operation, params)
        with self.lock:
            self.calls.append((operation, list(params.get("NodeIds") or [])))
            if problem:
                self.rejected.append(problem)
                return 400, {"__type": "ValidationException", "message": problem}
            if self.throttled:
                self.throttled -= 1
                return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
            answer = self._act(OPERATIONS[operation], params)
            if self.failing:
                self.failing -= 1
                return 500, {"__type": "InternalFailure", "message": "We encountered an internal error."}
            return 200, answer

    def _invalid(self, operation: str, params: dict[str, Any]) -> str:
        shape = self.model.operation_model(operation).input_shape
        report = ParamValidator().validate(params, shape)
        if report.has_errors():
            return report.generate_report()
        most = shape.members["NodeIds"].metadata["max"]  # botocore checks minimums only; the service, both
        if len(params.get("NodeIds") or []) > most:
            return f"1 validation error detected: NodeIds must have length less than or equal to {most}"
        pattern = shape.members["NodeIds"].member.metadata["pattern"]
        bad = [i for i in params.get("NodeIds") or [] if not re.fullmatch(pattern, i)]
        if bad:
            return f"1 validation error detected: NodeIds {bad} must satisfy {pattern}"
        if params.get("ClusterName") != self.cluster:
            return f"cluster {params.get('ClusterName')!r} not found"
        return ""

    def _act(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        ok = [i for i in params["NodeIds"] if i in self.instances]
        self.actions.extend((action, i) for i in ok)
        failed = [{"NodeId": i, "ErrorCode": "InstanceIdNotFound", "Message": f"Node {i} not found in cluster"}
                  for i in params["NodeIds"] if i not in self.instances]
        return {"Successful": ok, "Failed": failed}
