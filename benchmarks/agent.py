"""dhc agent's footprint: CPU share and RSS while it watches 8 recorded GPUs and a busy kernel log,
and the latency from a kernel line (XID 79) to the node's PendingReplacement label.

Aims: < 2% of one core, < 100 MB RSS, < 5 s from the line to the label. The GPUs are the NVML
stand-in answering from a recorded p5.48xlarge (tests/fakes, tests/data/nvml_p5_h100.json); the
node is the test API emulator over real HTTP; the kernel log is a FIFO fed ``--rate`` lines a
second (kernel chatter, NVRM lines that are no XID). NVML is polled at thresholds.yaml's ``poll_s``.

    python benchmarks/agent.py [--seconds 60] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(TESTS))
from k8s_emulator import Emulator  # noqa: E402

NOISE = ["6,{seq},{usec},-;eth0: renamed from veth{seq:x}",
         "6,{seq},{usec},-;cni0: port 3(veth{seq:x}) entered forwarding state",
         "4,{seq},{usec},-;NVRM: GPU at PCI:0000:53:00: GPU-2f6a1c1e-8d0b-4e51-9a3c-6c1b0f7d2a01",
         "6,{seq},{usec},-;EXT4-fs (nvme1n1): mounted filesystem with ordered data mode. Quota mode: none."]
XID79 = "3,{seq},{usec},-;NVRM: Xid (PCI:0000:53:00): 79, pid=1914, name=python3, GPU has fallen off the bus."
LABEL = "sagemaker.amazonaws.com/node-health-status"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(key))
    return int(line.split()[1]) / 1024


def feed(fifo: Path, rate: float, stop: threading.Event, seq: list[int]) -> None:
    writer = _open_writer(fifo)
    start = time.monotonic()
    while not stop.is_set():
        seq[0] += 1
        line = NOISE[seq[0] % len(NOISE)].format(seq=seq[0], usec=int((time.monotonic() - start) * 1e6))
        os.write(writer, (line + "\n").encode())
        stop.wait(max(0.0, start + seq[0] / rate - time.monotonic()))
    os.close(writer)


def _open_writer(fifo: Path) -> int:
    for _ in range(600):
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the agent never opened the kernel log")


def start_agent(tmp: Path, api: Emulator, fifo: Path) -> subprocess.Popen:
    (tmp / "boot_id").write_text("bench-boot\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_NVML"))}
    env |= {"PYTHONPATH": str(TESTS / "fakes"), "FAKE_NVML_FILE": str(TESTS / "data" / "nvml_p5_h100.json"),
            "NODE_NAME": "gpu-1", "KUBECONFIG": str(api.kubeconfig(tmp)), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dhc", "agent", "--sink", "kubernetes", "--kernel-log", str(fifo),
                             "--state-file", str(tmp / "state.json"), "--boot-id-file", str(tmp / "boot_id"),
                             "--instance-type", "p5.48xlarge", "--sys-infiniband", str(tmp / "sysfs")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="kernel-log lines per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, Emulator() as api:
        tmp = Path(folder)
        (tmp / "sysfs").mkdir()
        for index in range(32):
            (tmp / "sysfs" / f"rdmap{index}s0").mkdir()
        api.add_node("gpu-1", labels={"node.kubernetes.io/instance-type": "ml.p5.48xlarge"}, status={"conditions": []})
        fifo = tmp / "kmsg"
        os.mkfifo(fifo)
        agent = start_agent(tmp, api, fifo)
        stop, seq = threading.Event(), [0]
        feeder = threading.Thread(target=feed, args=(fifo, args.rate, stop, seq), daemon=True)
        feeder.start()
        print(json.dumps(measure(agent, api, args, stop, seq, fifo)))
        agent.terminate()
        agent.wait(timeout=20)


def measure(agent: subprocess.Popen, api: Emulator, args: argparse.Namespace, stop: threading.Event,
            seq: list[int], fifo: Path) -> dict[str, object]:
    time.sleep(3)  # start-up (imports, first NVML poll) is not the steady state being measured
    cpu0, t0, peak, lines0 = cpu_seconds(agent.pid), time.monotonic(), 0.0, seq[0]
    while time.monotonic() - t0 < args.seconds:
        peak = max(peak, rss_mb(agent.pid))
        time.sleep(0.5)
    share = (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
    fed = seq[0] - lines0
    stop.set()
    time.sleep(0.3)
    writer = _open_writer(fifo)
    sent = time.monotonic()
    os.write(writer, (XID79.format(seq=seq[0] + 10, usec=0) + "\n").encode())
    while api.nodes["gpu-1"]["metadata"]["labels"].get(LABEL) != "UnschedulablePendingReplacement":
        if time.monotonic() - sent > 30:
            raise SystemExit("no PendingReplacement label within 30 s")
        time.sleep(0.01)
    latency = time.monotonic() - sent
    os.close(writer)
    return {"seconds": round(args.seconds, 1), "kernel_lines_fed": fed, "gpus": 8,
            "cpu_share_of_one_core": round(share, 4), "cpu_aim": 0.02, "rss_mb_peak": round(peak, 1),
            "rss_mb_high_water": round(rss_mb(agent.pid, "VmHWM"), 1), "rss_aim_mb": 100,
            "line_to_label_s": round(latency, 3), "latency_aim_s": 5}


if __name__ == "__main__":
    main()
