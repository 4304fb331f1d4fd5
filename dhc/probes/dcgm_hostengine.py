"""Find or start the DCGM host engine (``nv-hostengine``) that ``dcgmi diag`` talks to, and stop what dhc started.

Clusters run DCGM one of two ways: a standalone host engine per node (the GPU Operator's DCGM pod,
or the ``nvidia-dcgm`` service, listening on TCP 5555), or none at all. dhc connects to the configured
one (``DHC_DCGM_HOSTENGINE``: ``HOST[:PORT]`` or ``unix:///path``), else to ``localhost`` (dcgmi's
default, port 5555); only when none answers does it start its own for the run, on a private unix
socket with a private pid file, and stop it afterwards, also on a timeout or an interrupt.

What the real tools do (NVIDIA/DCGM 4.6.0 hostengine/src/main.cpp, HostEngineCommandLine.cpp):
- ``nv-hostengine [-d SOCKET] [--pid FILE] [-f LOG]`` daemonizes: the parent exits 0 once the engine
  listens, after printing "Started host engine version X using socket path: SOCKET"; it prints "Host
  engine already running with pid N" (and fails) when its pid file names a live process, and "Err:
  Failed to start DCGM Server: N" when it cannot listen. ``nv-hostengine --term --pid FILE`` sends
  SIGTERM to the pid in FILE and waits; prints "Host engine successfully terminated." or "Unable to
  terminate host engine, it may not be running.".
- ``dcgmi discovery -l [--host H]`` exits 0 and lists the GPUs when a host engine answers, and exits 235
  with "Error: Unable to connect to host engine. ..." when none does.
NVIDIA does not support two host engines on one node (they do not coordinate and can deadlock the
driver): a live engine named by the well-known pid file that does not answer is reported, never joined
by a second one. dhc can see another engine only where this process can look: the pid file in its own
``/var/run`` and the processes in its own ``/proc``. Inside a container without ``hostPID`` (and without
the host's ``/var/run``) the GPU Operator's engine or dcgm-exporter's embedded one is invisible, so
inside a pod (``KUBERNETES_SERVICE_HOST`` set) dhc starts none unless ``DHC_DCGM_START_HOSTENGINE=always``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dhc.probes.tool import ToolMissing, ToolTimeout, locate, run_tool

# Stopping must fit in the watchdog's grace past a check's timeout (30 s): --term, then SIGKILL and wait.
PROBE_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S, KILL_WAIT_S = 20.0, 60.0, 15.0, 5.0
WELL_KNOWN_PID_FILES = ("/var/run/nvhostengine.pid", "/run/nvhostengine.pid")
_ALREADY_RUNNING = re.compile(r"Host engine already running with pid (\d+)")


class HostEngineUnavailable(Exception):
    """No host engine answers and dhc could not start one (the message says why and what to do)."""


@dataclass(frozen=True)
class Endpoint:
    address: str  # what ``dcgmi --host`` takes
    origin: str  # for people: which engine this is


def dcgmi_host_args(endpoint: Endpoint) -> list[str]:
    return ["--host", endpoint.address]


def answers(dcgmi: str, address: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Whether a host engine answers at ``address`` (``dcgmi discovery -l``), and what dcgmi said."""
    try:
        result = run_tool([dcgmi, "discovery", "-l", "--host", address], timeout_s, merge_stderr=True)
    except ToolTimeout as exc:
        return False, str(exc)
    return result.returncode == 0, result.tail(200)


@contextmanager
def host_engine(dcgmi: str, configured: str | None, nv_hostengine: str, log_dir: Path,
                pid_files: Sequence[str] = WELL_KNOWN_PID_FILES, proc: Path = Path("/proc"),
                start: str = "auto", in_pod: bool = False) -> Iterator[Endpoint]:
    """Yield the host engine to run against; stop the one dhc started on the way out, whatever happens.

    ``pid_files`` and ``proc`` are where other host engines on this node show (tests point them elsewhere);
    ``start`` (``auto`` | ``never`` | ``always``) and ``in_pod`` decide whether dhc may start its own.
    """
    tried = []
    for address, origin in _candidates(configured):
        ok, said = answers(dcgmi, address)
        if ok:
            yield Endpoint(address, origin)
            return
        tried.append(f"{address} ({said.splitlines()[-1] if said.strip() else 'no answer'})")
    _refuse_second_engine(_other_engines(pid_files, proc), tried)
    refusal = start_refusal(start, in_pod)
    if refusal:
        raise HostEngineUnavailable(f"no DCGM host engine answered at {'; '.join(tried)}; {refusal}")
    with _started(dcgmi, nv_hostengine, log_dir, tried) as endpoint:
        yield endpoint


def _candidates(configured: str | None) -> list[tuple[str, str]]:
    found = [(configured, f"the node's host engine at {configured} (DHC_DCGM_HOSTENGINE)")] if configured else []
    if not configured or configured.split(":")[0] not in ("localhost", "127.0.0.1"):
        found.append(("localhost", "the host engine at localhost:5555 (dcgmi's default)"))
    return found


def start_refusal(start: str, in_pod: bool) -> str | None:
    """Why dhc must not start a host engine of its own here, or None when it may."""
    if start == "never":
        return "dhc does not start one (DHC_DCGM_START_HOSTENGINE=never)"
    if start == "auto" and in_pod:
        return ("dhc does not start one inside a pod, where the node's other host engines (the GPU Operator's, "
                "dcgm-exporter's embedded one) cannot be seen without hostPID (set DHC_DCGM_HOSTENGINE to the "
                "node's engine, or DHC_DCGM_START_HOSTENGINE=always to allow starting one)")
    return None


def _other_engines(pid_files: Sequence[str], proc: Path) -> list[str]:
    """Live host engines this process can see: named by a well-known pid file, or by name in ``proc``.

    Only this process's view: in a container without hostPID neither shows an engine on the host."""
    found = {pid: f"pid {pid}, from {path}" for path in pid_files
             if (pid := _read_pid(Path(path))) is not None and _alive(pid)}
    for comm in proc.glob("[0-9]*/comm"):
        if not (comm.parent.name.isascii() and comm.parent.name.isdigit()):
            continue
        pid = int(comm.parent.name)
        if pid not in found and _comm(comm) == "nv-hostengine" and _alive(pid):
            found[pid] = f"pid {pid}, seen in {proc}"
    return list(found.values())


def _comm(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()  # any process may name itself in any bytes
    except OSError:  # the process ended while we looked
        return ""


def _refuse_second_engine(others: list[str], tried: list[str]) -> None:
    if others:
        raise HostEngineUnavailable(
            f"another nv-hostengine runs on this node ({'; '.join(others)}) but does not answer "
            f"(tried {'; '.join(tried)}); NVIDIA does not support two host engines on one node, so dhc "
            "did not start its own: set DHC_DCGM_HOSTENGINE to that engine's address, or stop it")


@contextmanager
def _started(dcgmi: str, binary: str, log_dir: Path, tried: list[str]) -> Iterator[Endpoint]:
    path = _locate(binary, tried)
    private = Path(tempfile.mkdtemp(prefix="dhc-hostengine-"))  # short: a unix socket path has 107 bytes
    socket_path, pid_file = private / "nv-hostengine.sock", private / "nv-hostengine.pid"
    argv = [path, "-d", str(socket_path), "--pid", str(pid_file), "-f", str(log_dir / "nv-hostengine.log")]
    ours = (f"the nv-hostengine dhc started ({path}, socket {socket_path}; no other engine was visible from this "
            "process's /proc and pid files)")
    try:
        _start(argv, ours)
        endpoint = Endpoint(f"unix://{socket_path}", ours)
        ok, said = answers(dcgmi, endpoint.address)
        if not ok:
            raise HostEngineUnavailable(f"{ours} does not answer: {said}")
        yield endpoint
    finally:
        stop(path, pid_file)
        shutil.rmtree(private, ignore_errors=True)


def _locate(binary: str, tried: list[str]) -> str:
    try:
        return locate(binary, "install datacenter-gpu-manager, or set DHC_NV_HOSTENGINE")
    except ToolMissing as exc:
        raise HostEngineUnavailable(f"no DCGM host engine answers (tried {'; '.join(tried)}), and dhc cannot "
                                    f"start one: {exc}; or set DHC_DCGM_HOSTENGINE to the node's engine") from None


def _start(argv: list[str], ours: str) -> None:
    try:
        result = run_tool(argv, START_TIMEOUT_S, merge_stderr=True)
    except ToolTimeout as exc:
        raise HostEngineUnavailable(f"{ours} did not finish starting: {exc}") from None
    other = _ALREADY_RUNNING.search(result.stdout)
    if other:
        raise HostEngineUnavailable(
            f"{ours} refused to start: another nv-hostengine already runs (pid {other.group(1)}); NVIDIA does not "
            "support two host engines on one node: set DHC_DCGM_HOSTENGINE to that engine's address, or stop it")
    if result.returncode != 0:
        raise HostEngineUnavailable(f"{ours} failed to start (exit {result.returncode}): {result.tail()}")


def stop(binary: str, pid_file: Path) -> None:
    """``nv-hostengine --term``, then SIGKILL the pid dhc's own pid file names if it is still alive."""
    pid = _read_pid(pid_file)
    try:
        run_tool([binary, "--term", "--pid", str(pid_file)], STOP_TIMEOUT_S, merge_stderr=True)
    except (ToolTimeout, OSError):
        pass
    finally:  # also when the check's own timeout fires while --term runs
        if pid is not None and _alive(pid):
            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_WAIT_S
    while _alive(pid) and time.monotonic() < deadline:  # not our child: init reaps it
        time.sleep(0.05)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        return None  # not a pid (a stray file, or a number os.kill cannot take)
    return int(text) if 0 < int(text) < 2**22 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text(errors="replace").rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
