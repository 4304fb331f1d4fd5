"""A minimal EC2 instance metadata (IMDSv2) client: one token PUT, then GETs, each with a short timeout."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

TOKEN_TTL_S = 300
FIELDS = {
    "instance_id": "instance-id",
    "instance_type": "instance-type",
    "region": "placement/region",
    "availability_zone": "placement/availability-zone",
}


# IMDS is link-local: never route it through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ImdsUnavailable(Exception):
    pass


def fetch(endpoint: str, timeout_s: float) -> dict[str, str]:
    """Return the identity fields IMDS answers; raises ImdsUnavailable when the token PUT fails."""
    try:
        token = _request("PUT", f"{endpoint}/latest/api/token", timeout_s,
                         {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ImdsUnavailable(f"IMDSv2 token request to {endpoint} failed: {_why(exc)}") from exc
    found: dict[str, str] = {}
    for name, path in FIELDS.items():
        try:
            value = _request("GET", f"{endpoint}/latest/meta-data/{path}", timeout_s,
                             {"X-aws-ec2-metadata-token": token})
        except (OSError, urllib.error.URLError, ValueError):
            continue  # a missing item is left to the next source
        if value:
            found[name] = value
    return found


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


def _request(method: str, url: str, timeout_s: float, headers: dict[str, str]) -> str:
    req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "PUT" else None)
    with _OPENER.open(req, timeout=timeout_s) as resp:
        body = resp.read(4096)
    return body.decode("ascii", errors="strict").strip()


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return str(reason or exc) or type(exc).__name__
