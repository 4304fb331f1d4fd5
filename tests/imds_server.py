"""A small IMDSv2 server for tests: token PUT first, GETs with the token, real HTTP on loopback.

``trickle_s`` makes it answer the token one byte at a time, that many seconds apart, forever
(a body that never ends): per-request socket timeouts never fire, only a total deadline helps.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "AQAEAFakeTokenForTests=="


class ImdsServer:
    def __init__(self, metadata: dict[str, str], delay_s: float = 0.0, token_status: int = 200,
                 trickle_s: float | None = None):
        self.metadata, self.delay_s, self.token_status = metadata, delay_s, token_status
        self.trickle_s = trickle_s
        self.trickled = threading.Event()  # set once the first byte has trickled out
        self.stop = threading.Event()
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_PUT(self):
                server.requests.append(("PUT", self.path))
                time.sleep(server.delay_s)
                if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._send(400, "")
                if server.trickle_s is not None:
                    return self._trickle()
                self._send(server.token_status, TOKEN if server.token_status == 200 else "")

            def do_GET(self):
                server.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    return self._send(401, "")
                key = self.path.removeprefix("/latest/meta-data/")
                if key in server.metadata:
                    return self._send(200, server.metadata[key])
                self._send(404, "Not Found")

            def _trickle(self):
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                try:
                    while not server.stop.is_set():
                        self.wfile.write(b"A")
                        self.wfile.flush()
                        server.trickled.set()
                        server.stop.wait(server.trickle_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            def _send(self, status, body):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as a slow-IMDS test intends

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ImdsServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
