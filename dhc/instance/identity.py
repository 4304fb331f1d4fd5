"""Resolve the instance identity: CLI flags > environment > EC2 IMDSv2 > local fallback.

Every field remembers its source so a report can say why it believes it runs on, say, a p5: ``cli``,
``env:NAME``, ``provider-id``, ``imds``, ``hostname``, ``no-gpu`` or ``unknown``. The fields are the
report's own (``dhc.model.report.Instance``), so what is resolved here is what a report carries.

Every value is checked against a strict pattern before it is believed (``FORMS``): an instance ID
is EC2's ``i-`` + 8 or 17 lowercase hex digits, or, only where a person named it (flag, environment)
or the hostname fallback derived it, a local name of 1-63 of ``[A-Za-z0-9._-]`` starting with a
letter or digit. IMDS and a providerID must give EC2's form. A bad value named by a person is a
``UsageError`` naming its source (exit 2); a bad value discovered (providerID, IMDS) is dropped
with a note. So no instance ID, type or name can carry a newline into a log line or a page.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

from dhc.errors import UsageError
from dhc.instance import imds
from dhc.model.codec import Coded
from dhc.model.report import Instance, Sourced
from dhc.settings import Settings

EC2_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_LOCAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
FORMS: dict[str, tuple[re.Pattern[str], str]] = {
    "instance_id": (re.compile(f"{EC2_INSTANCE_ID.pattern}|{_LOCAL_NAME.pattern}"),
                    "i- and 8 or 17 hex digits, or a local name of 1-63 letters, digits, '.', '_' or '-'"),
    "instance_type": (re.compile(r"[a-z0-9][a-z0-9.-]{0,63}"),
                      "an instance type such as p5.48xlarge: 1-64 lowercase letters, digits, '.' or '-'"),
    "node_name": (re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?"),
                  "a node name: 1-253 letters, digits, '.', '_' or '-'"),
    "region": (re.compile(r"[a-z]{2}(?:-[a-z0-9]+){2,4}"), "a region such as us-east-2"),
    "availability_zone": (re.compile(r"[a-z]{2}(?:-[a-z0-9]+){2,5}"), "a zone such as us-east-2a"),
    "cluster": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}"), "a cluster name: 1-128 letters, digits, '.', '_', ':', '/' or '-'"),
}
_DISCOVERED_FORMS = {"instance_id": EC2_INSTANCE_ID}  # what EC2 itself hands out

_PROVIDER_ID = re.compile(r"^aws:///(?P<zone>[a-z0-9-]+)/(?P<instance>i-(?:[0-9a-f]{8}|[0-9a-f]{17}))$")
_PROVIDER_TAIL = re.compile(r"^aws:///.*/(i-(?:[0-9a-f]{8}|[0-9a-f]{17}))$")
_REGION_OF_ZONE = re.compile(r"^([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d+)")


@dataclass(frozen=True)
class InstanceIdentity(Instance, Coded):
    """The report's ``Instance`` as resolved here (``notes``: what discovery dropped or could not reach)."""

    notes: tuple[str, ...] = field(default=())


def provider_instance_id(provider_id: str | None) -> str | None:
    """The EC2 instance id that ends a node's providerID, in EKS's ``aws:///<zone>/<id>`` or HyperPod's
    ``aws:///<region>/sagemaker/cluster/<id>`` form; None when it ends in none."""
    match = _PROVIDER_TAIL.search((provider_id or "").strip().rstrip("/"))
    return match.group(1) if match else None


def parse_provider_id(provider_id: str) -> tuple[str, str, str | None]:
    """``aws:///us-east-2a/i-0abc`` -> (instance id, availability zone, region)."""
    match = _PROVIDER_ID.match(provider_id.strip())
    if not match:
        raise ValueError(f"not an AWS providerID (aws:///<zone>/<instance-id>): {provider_id!r}")
    zone = match["zone"]
    region = _REGION_OF_ZONE.match(zone)
    return match["instance"], zone, region.group(1) if region else None


def resolve_identity(flags: dict[str, str | None], settings: Settings, *,
                     sys_root: Path = Path("/sys"), proc_root: Path = Path("/proc"),
                     dev_root: Path = Path("/dev")) -> InstanceIdentity:
    names = [f.name for f in fields(InstanceIdentity) if f.name != "notes"]
    found: dict[str, Sourced] = {}
    notes: list[str] = []
    for name in names:
        if flags.get(name):
            found[name] = _named(name, flags[name], "cli", f"--{name.replace('_', '-')}")
        elif getattr(settings, name, None):
            variable = settings.origins.get(name, name)
            found[name] = _named(name, getattr(settings, name), f"env:{variable}", variable)
    _fill_from_provider_id(found, settings, notes)
    if any(n not in found for n in imds.FIELDS) and _should_ask_imds(settings, sys_root):
        _fill_from_imds(found, settings, notes)
    _fill_fallbacks(found, proc_root, dev_root)
    iid = found["instance_id"]
    if iid.source != "hostname" and not EC2_INSTANCE_ID.fullmatch(iid.value or ""):
        notes.append(f"instance ID {iid.value!r} ({iid.source}) is not EC2's form (i- and 8 or 17 hex digits); "
                     "used as a local name")
    return InstanceIdentity(**{n: found.get(n, Sourced(None, "unknown")) for n in names},
                            notes=tuple(notes))


def problem_with(name: str, value: str, discovered: bool = False) -> str | None:
    """Why ``value`` cannot be the field ``name``, or None when it can."""
    pattern, expected = FORMS[name]
    if discovered and name in _DISCOVERED_FORMS:
        pattern, expected = _DISCOVERED_FORMS[name], "i- and 8 or 17 lowercase hex digits"
    if isinstance(value, str) and pattern.fullmatch(value):
        return None
    return f"expected {expected}, got {str(value)[:80]!r}"


def _named(name: str, value: str, source: str, where: str) -> Sourced:
    problem = problem_with(name, value)
    if problem:
        raise UsageError(f"{where}: {problem}")
    return Sourced(value, source)


def has_nvidia_gpu(proc_root: Path = Path("/proc"), dev_root: Path = Path("/dev")) -> bool:
    """Whether the NVIDIA driver shows any GPU, without loading NVML."""
    gpus = proc_root / "driver/nvidia/gpus"
    try:
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
    except OSError:
        pass
    return any(dev_root.glob("nvidia[0-9]*"))


def _fill_from_provider_id(found: dict[str, Sourced], settings: Settings, notes: list[str]) -> None:
    if not settings.provider_id:
        return
    try:
        instance_id, zone, region = parse_provider_id(settings.provider_id)
    except ValueError as exc:
        notes.append(f"DHC_PROVIDER_ID ignored: {exc}")
        return
    for name, value in (("instance_id", instance_id), ("availability_zone", zone), ("region", region)):
        if value and name not in found:
            found[name] = Sourced(value, "provider-id")


def _should_ask_imds(settings: Settings, sys_root: Path) -> bool:
    if settings.imds_mode == "auto":
        return imds.looks_like_ec2(sys_root)
    return settings.imds_mode == "on"


def _fill_from_imds(found: dict[str, Sourced], settings: Settings, notes: list[str]) -> None:
    try:
        answered = imds.fetch(settings.imds_endpoint, settings.imds_timeout_s, settings.imds_deadline_s, notes)
    except imds.ImdsUnavailable as exc:
        notes.append(str(exc))
        return
    for name, value in answered.items():
        problem = problem_with(name, value, discovered=True)
        if problem:
            notes.append(f"IMDS {imds.FIELDS[name]} ignored: {problem}")
        elif name not in found:
            found[name] = Sourced(value, "imds")


def local_name(hostname: str) -> str:
    """The hostname's first label as a local name: other characters become '-', at most 63."""
    label = re.sub(r"[^A-Za-z0-9._-]", "-", hostname.split(".")[0] or "localhost")[:63].strip("._-")
    return label or "localhost"


def _fill_fallbacks(found: dict[str, Sourced], proc_root: Path, dev_root: Path) -> None:
    host = local_name(socket.gethostname())
    found.setdefault("node_name", Sourced(host, "hostname"))
    found.setdefault("instance_id", Sourced(host, "hostname"))
    if "instance_type" not in found and not has_nvidia_gpu(proc_root, dev_root):
        found["instance_type"] = Sourced("cpu", "no-gpu")
    if "region" not in found and "availability_zone" in found:
        region = _REGION_OF_ZONE.match(found["availability_zone"].value or "")
        if region:
            found["region"] = Sourced(region.group(1), found["availability_zone"].source)
