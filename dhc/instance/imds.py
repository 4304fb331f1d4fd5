"""A minimal EC2 instance metadata (IMDSv2) client: one token PUT, then GETs, under one total deadline.

What the real service does: ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
answers a token (200), or 403 where IMDS is disabled, or nothing at all off EC2 (the link-local
address does not route: connect times out). ``GET /latest/meta-data/<item>`` with the token answers
the item as short plain text, 401 for a missing or stale token, 404 for an item that does not exist.
Answers come in milliseconds; a hop limit of 1 drops the token PUT from inside a container.

A per-request socket timeout bounds each silence, not a server that trickles a byte every 0.4 s,
so the whole exchange runs under one deadline: at the deadline a watchdog shuts the socket down and
the read in progress fails at once.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from pathlib import Path

TOKEN_TTL_S = 300
MAX_ANSWER_BYTES = 4096
FIELDS = {
    "instance_id": "instance-id",
    "instance_type": "instance-type",
    "region": "placement/region",
    "availability_zone": "placement/availability-zone",
}


class ImdsUnavailable(Exception):
    pass


class _Failed(Exception):
    pass


def fetch(endpoint: str, timeout_s: float, deadline_s: float = 2.0,
          notes: list[str] | None = None) -> dict[str, str]:
    """The identity fields IMDS answers; raises ImdsUnavailable when the token PUT fails or time runs out.

    An item that cannot be read is left to the next source, and why is appended to ``notes``.
    """
    notes = [] if notes is None else notes
    client = _Client(endpoint, timeout_s, time.monotonic() + deadline_s)
    try:
        token = client.request("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
    except _Failed as exc:
        raise ImdsUnavailable(f"IMDSv2 token request to {endpoint} failed: {exc}") from None
    found: dict[str, str] = {}
    for name, path in FIELDS.items():
        try:
            value = client.request("GET", f"/latest/meta-data/{path}", {"X-aws-ec2-metadata-token": token})
        except _Failed as exc:
            notes.append(f"IMDS {path} not read: {exc}")
            if client.expired:
                raise ImdsUnavailable(f"IMDS at {endpoint} did not finish within {deadline_s:g} s") from None
            continue
        if value:
            found[name] = value
    return found


class _Client:
    def __init__(self, endpoint: str, timeout_s: float, deadline: float):
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname:
            raise ImdsUnavailable(f"IMDS endpoint {endpoint!r}: expected http://HOST[:PORT]")
        self.host, self.port = url.hostname, url.port or 80
        self.timeout_s, self.deadline = timeout_s, deadline

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def request(self, method: str, path: str, headers: dict[str, str]) -> str:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Failed("the IMDS deadline passed")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=min(self.timeout_s, left))
        watchdog = None
        try:
            conn.connect()  # bounded by the socket timeout
            # the response keeps reading this socket even after the connection lets go of it
            watchdog = threading.Timer(self.deadline - time.monotonic(), _shut, (conn.sock,))
            watchdog.daemon = True
            watchdog.start()
            return _exchange(conn, method, path, headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Failed("the IMDS deadline passed" if self.expired else _why(exc)) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            conn.close()


def _exchange(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str]) -> str:
    conn.request(method, path, body=b"" if method == "PUT" else None, headers=headers)
    resp = conn.getresponse()
    body = b""
    while len(body) < MAX_ANSWER_BYTES and (chunk := resp.read(MAX_ANSWER_BYTES - len(body))):
        body += chunk
    if resp.status != 200:
        raise ValueError(f"HTTP {resp.status}")
    if resp.length:  # bytes the server announced but never sent (cut at the deadline), or far too many
        raise ValueError(f"answer cut short after {len(body)} bytes")
    return body.decode("ascii", errors="strict").strip()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # a read blocked on it returns at once
    except OSError:
        pass


def looks_like_ec2(sys_root: Path = Path("/sys")) -> bool:
    """Cheap local evidence that this is an EC2 instance (so 'auto' mode asks IMDS)."""
    probes = [
        (sys_root / "devices/virtual/dmi/id/sys_vendor", lambda t: "Amazon EC2" in t),
        (sys_root / "devices/virtual/dmi/id/board_asset_tag", lambda t: t.startswith("i-")),
        (sys_root / "hypervisor/uuid", lambda t: t.lower().startswith("ec2")),
    ]
    for path, test in probes:
        try:
            if test(path.read_text(errors="replace").strip()):
                return True
        except OSError:
            continue
    return False


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__
