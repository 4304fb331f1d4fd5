"""Synthetic fleets of schema-valid node reports with known answers (tests and benchmarks/fleet.py).

Every node is a p5.48xlarge with 8 GPUs. Chosen nodes miss a GPU (Failed), have DCGM missing
(Incomplete), or carry one GPU far below its fleet yet above the floor (a planted suspect).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from dhc.model import Action, CheckResult, Comparison, Device, Finding, Limit, Measurement, Status
from dhc.report import RunInfo, build_report

TFLOPS = Limit(Comparison.MIN, 700, "TFLOP/s", "H100 measured 794", Action.REPLACE)
COPY = Limit(Comparison.MIN, 1.9, "TB/s", "DCGM 0.75 x 2.54", Action.REPLACE)
COUNT = Limit(Comparison.EQUALS, 8, "count", "ml.p5.48xlarge: 8 GPUs", Action.REPLACE)


def node_report(index: int, rng: random.Random, *, failed: bool = False, incomplete: bool = False,
                suspect_gpu: int | None = None) -> dict:
    iid = f"i-{index:017x}"
    gpus = [Device("gpu", g, "NVIDIA H100 80GB HBM3", f"GPU-{index:08x}-{g:04x}", None, f"00000000:{0x53 + g:02X}:00.0")
            for g in range(8)]
    gemm = []
    for gpu in gpus:
        value = 712.0 if gpu.index == suspect_gpu else rng.gauss(790, 4)  # 712: above 700, far below ~790
        gemm.append(Measurement("stress.gemm", "tflops_bf16", round(value, 2), "TFLOP/s", gpu, TFLOPS))
    memtest = [Measurement("stress.memtest", "copy_bandwidth", round(rng.gauss(4300, 30), 1), "GB/s", g, COPY)
               for g in gpus]
    count = Measurement("stress.inventory", "gpu_count", 7 if failed else 8, "count", None, COUNT)
    inventory = CheckResult("stress.inventory", "InstanceStress", Status.FAILED if failed else Status.PASSED,
                            "missing GPU" if failed else "", tuple(gpus), (count,),
                            (Finding.from_measurement(count),) if failed else (), duration_s=0.4, nodeid="inv")
    dcgm = CheckResult("stress.dcgm", "InstanceStress", Status.INCOMPLETE if incomplete else Status.PASSED,
                       "dcgmi is not on PATH" if incomplete else "", (), (),
                       (Finding("stress.dcgm", Status.INCOMPLETE, "dcgmi is not on PATH"),) if incomplete else (),
                       duration_s=1.0, nodeid="dcgm")
    results = [inventory, CheckResult("stress.gemm", "InstanceStress", Status.PASSED, "", tuple(gpus), tuple(gemm),
                                      duration_s=31.0, nodeid="gemm"),
               CheckResult("stress.memtest", "InstanceStress", Status.PASSED, "", tuple(gpus), tuple(memtest),
                           duration_s=60.0, nodeid="mem"), dcgm]
    run = RunInfo(f"run{index}", "2026-11-29T10:00:00.000000Z", "quick", finished_at="2026-11-29T10:01:40.000000Z")
    identity = {k: {"value": None, "source": "unknown"} for k in
                ("region", "availability_zone", "cluster")} | {
        "instance_id": {"value": iid, "source": "imds"}, "instance_type": {"value": "p5.48xlarge", "source": "imds"},
        "node_name": {"value": f"node-{index}", "source": "env:NODE_NAME"}, "notes": []}
    thresholds = {"file": "thresholds.yaml", "sha256": "0" * 64, "profile": "quick", "instance_type": "ml.p5.48xlarge",
                  "requested_as": "p5.48xlarge", "gpus": 8, "efa": 32, "checks": {}}
    return build_report(run, identity, thresholds, {"dhc": "0.1.0", "python": "3.11"}, gpus, results)


def write_fleet(folder: Path, nodes: int, failed: set[int] = frozenset(), incomplete: set[int] = frozenset(),
                suspects: dict[int, int] | None = None, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    suspects = suspects or {}
    paths = []
    for index in range(nodes):
        document = node_report(index, rng, failed=index in failed, incomplete=index in incomplete,
                               suspect_gpu=suspects.get(index))
        path = folder / f"node-{index:05d}" / "report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
        paths.append(path)
    return paths
