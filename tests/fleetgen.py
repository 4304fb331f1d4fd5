"""Synthetic fleets of schema-valid node reports with known answers (tests and benchmarks/fleet.py).

Every node is a p5.48xlarge with 8 GPUs and every check of the quick profile, with the measurements
the suites record (NVML health per GPU, GEMM, memtest, DCGM, EFA, all-reduce, pairwise): about
170 measurements, the size of a real report. Chosen nodes miss a GPU (Failed), have DCGM missing
(Incomplete), or carry one GPU far below its fleet yet above the floor (a planted suspect).
Values spread uniformly (never past ~1.4 robust deviations), so only planted suspects stand out.

``write_fleet`` is fast: each verdict variant is built once with ``assemble`` and serialised
with placeholders; a node is that text with its identity and values filled in.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from dhc.model import Action, CheckResult, Comparison, Device, Finding, Limit, Measurement, Status
from dhc.model.report import Report, Run
from dhc.report import fleetrow
from dhc.report.document import assemble

TFLOPS = Limit(Comparison.MIN, 700, "TFLOP/s", "H100 measured 794", Action.REPLACE)
COPY = Limit(Comparison.MIN, 1900, "GB/s", "DCGM 0.75 x 2.54 TB/s", Action.REPLACE)
COUNT = Limit(Comparison.EQUALS, 8, "count", "ml.p5.48xlarge: 8 GPUs", Action.REPLACE)
ZERO = Limit(Comparison.MAX, 0, "count", "any is a fault", Action.REPLACE)
RATIO = Limit(Comparison.MIN, 0.9, "ratio", "dhc policy: 10% below the node's median GPU", Action.REPLACE)
HOT = Limit(Comparison.MAX, 87, "C", "H100 slowdown temperature", Action.REBOOT)
NVLINKS = Limit(Comparison.EQUALS, 18, "count", "ml.p5.48xlarge: 18 NVLinks per GPU", Action.REPLACE)
EFA = Limit(Comparison.EQUALS, 32, "count", "ml.p5.48xlarge: 32 EFA", Action.REPLACE)
INTRA = Limit(Comparison.MIN, 460, "GB/s", "8x H100 NVLink", Action.REPLACE)
INTER = Limit(Comparison.MIN, 430, "GB/s", "two p5.48xlarge over EFA 487 GB/s; floor 0.88x", Action.REPLACE)
PAIR = Limit(Comparison.MIN, 40, "GB/s", "dhc policy: pairwise floor", Action.REPLACE)

# per GPU: (check, metric, unit, centre, half-width of the uniform spread, limit)
PER_GPU = [
    ("stress.inventory", "ecc_enabled", "count", 1, 0, None),
    ("stress.inventory", "ecc_uncorrected_volatile", "count", 0, 0, ZERO),
    ("stress.inventory", "ecc_uncorrected_aggregate", "count", 0, 0, ZERO),
    ("stress.inventory", "remapped_rows_pending", "count", 0, 0, ZERO),
    ("stress.inventory", "remap_failure", "count", 0, 0, ZERO),
    ("stress.inventory", "retired_pages", "count", 0, 0, None),
    ("stress.inventory", "retired_pages_pending", "count", 0, 0, ZERO),
    ("stress.inventory", "nvlinks_up", "count", 18, 0, NVLINKS),
    ("stress.inventory", "temperature_c", "C", 40, 6, HOT),
    ("stress.inventory", "pcie_width_ratio", "ratio", 1.0, 0, None),
    ("stress.inventory", "pcie_gen", "count", 5, 0, None),
    ("stress.inventory", "pcie_gen_max", "count", 5, 0, None),
    ("stress.gemm", "tflops_bf16", "TFLOP/s", 790, 6, TFLOPS),
    ("stress.gemm", "relative_to_median", "ratio", 1.0, 0.008, RATIO),
    ("stress.memtest", "copy_bandwidth", "GB/s", 4300, 40, COPY),
    ("stress.memtest", "memory_errors", "count", 0, 0, ZERO),
    ("stress.memtest", "tested_gib", "GiB", 39.2, 0, None),
    ("stress.memtest", "coverage_of_free", "ratio", 0.5, 0, None),
    ("stress.memtest", "verified_gb_per_s", "GB/s", 3500, 40, None),
]
# per node: (check, metric, unit, centre, half-width, limit, device kind or None)
PER_NODE = [
    ("stress.inventory", "cpu_cores", "count", 192, 0, None, "cpu"),
    ("stress.inventory", "memory_gib", "GiB", 2048, 0, None, "cpu"),
    ("stress.inventory", "gpu_count", "count", 8, 0, COUNT, None),
    ("stress.inventory", "kernel_log_readable", "count", 1, 0, None, None),
    ("stress.dcgm", "level", "count", 2, 0, None, None),
    ("stress.dcgm", "results_pass", "count", 24, 0, None, None),
    ("stress.dcgm", "results_fail", "count", 0, 0, ZERO, None),
    ("stress.dcgm", "results_warn", "count", 0, 0, None, None),
    ("stress.dcgm", "results_skip", "count", 3, 0, None, None),
    ("connectivity.efa", "efa_devices", "count", 32, 0, EFA, None),
    ("connectivity.efa", "efa_sysfs_devices", "count", 32, 0, None, None),
    ("connectivity.allreduce", "busbw_intra_node", "GB/s", 480, 4, INTRA, None),
    ("connectivity.allreduce", "busbw_intra_node_at_largest_size", "GB/s", 478, 4, None, None),
    ("connectivity.allreduce", "busbw_intra_node_ranks", "count", 8, 0, None, None),
    ("connectivity.allreduce", "busbw_inter_node", "GB/s", 487, 5, INTER, None),
    ("connectivity.allreduce", "busbw_inter_node_at_largest_size", "GB/s", 485, 5, None, None),
    ("connectivity.allreduce", "busbw_inter_node_ranks", "count", 16, 0, None, None),
    ("connectivity.allreduce", "p2p_channels", "count", 32, 0, None, None),
    ("connectivity.pairwise", "busbw_with_node_a", "GB/s", 48, 1, PAIR, None),
    ("connectivity.pairwise", "busbw_with_node_b", "GB/s", 48, 1, PAIR, None),
    ("connectivity.pairwise", "suspect_nodes", "count", 0, 0, ZERO, None),
]
SUSPECT_TFLOPS = 712.0  # above 700, far below ~790
CHECKS = ["stress.inventory", "stress.dcgm", "stress.gemm", "stress.memtest", "connectivity.efa",
          "connectivity.allreduce", "connectivity.pairwise"]


def _gpus(index: int) -> list[Device]:
    return [Device("gpu", g, "NVIDIA H100 80GB HBM3", f"GPU-{index:08x}-{g:04x}", f"1652{index}{g}",
                   f"00000000:{0x53 + g:02X}:00.0") for g in range(8)]


def _value(centre: float, half: float, rng: random.Random) -> float:
    return round(centre + rng.uniform(-half, half), 3) if half else centre


def _measurements(index: int, rng: random.Random, failed: bool, suspect_gpu: int | None) -> dict[str, list]:
    gpus, cpu = _gpus(index), Device("cpu", 0, "host CPU")
    out: dict[str, list] = {check: [] for check in CHECKS}
    for check, metric, unit, centre, half, limit in PER_GPU:  # metric by metric: all GPUs of one metric together
        for gpu in gpus:
            value = SUSPECT_TFLOPS if metric == "tflops_bf16" and gpu.index == suspect_gpu else _value(centre, half, rng)
            out[check].append(Measurement(check, metric, value, unit, gpu, limit))
    for check, metric, unit, centre, half, limit, kind in PER_NODE:
        value = 7 if failed and metric == "gpu_count" else _value(centre, half, rng)
        out[check].append(Measurement(check, metric, value, unit, cpu if kind == "cpu" else None, limit))
    return out


def node_report(index: int, rng: random.Random, *, failed: bool = False, incomplete: bool = False,
                suspect_gpu: int | None = None) -> dict:
    """One node's report, built by dhc's own ``assemble`` (so it is schema-valid by construction)."""
    gpus = _gpus(index)
    measured = _measurements(index, rng, failed, suspect_gpu)
    results = []
    for check in CHECKS:
        status, reason, findings = Status.PASSED, "", ()
        if check == "stress.inventory" and failed:
            count = next(m for m in measured[check] if m.name == "gpu_count")
            status, reason, findings = Status.FAILED, "missing GPU", (Finding.from_measurement(count),)
        if check == "stress.dcgm" and incomplete:
            measured[check] = []
            status, reason = Status.INCOMPLETE, "dcgmi is not on PATH"
            findings = (Finding("stress.dcgm", Status.INCOMPLETE, "dcgmi is not on PATH"),)
        results.append(CheckResult(check, "InstanceStress" if check.startswith("stress") else "InstanceConnectivity", status,
                                   reason, tuple(gpus), tuple(measured[check]), findings, duration_s=30.0, nodeid=check))
    run = Run.started(f"run{index}", "2026-11-29T10:00:00.000000Z", "quick").ended("2026-11-29T10:01:40.000000Z", None)
    identity = {k: {"value": None, "source": "unknown"} for k in ("availability_zone", "cluster")} | {
        "region": {"value": "us-east-2", "source": "imds"},
        "instance_id": {"value": f"i-{index:017x}", "source": "imds"},
        "instance_type": {"value": "p5.48xlarge", "source": "imds"},
        "node_name": {"value": f"node-{index}", "source": "env:NODE_NAME"}, "notes": []}
    thresholds = {"file": "thresholds.yaml", "sha256": "0" * 64, "profile": "quick", "instance_type": "ml.p5.48xlarge",
                  "requested_as": "p5.48xlarge", "gpus": 8, "efa": 32, "checks": {}}
    return assemble(run, identity, thresholds, {"dhc": "0.1.0", "python": "3.11"}, gpus, results).to_dict()


_MARK = 987654321  # a node index whose decimal and hex spellings appear nowhere else in a report


class _Template:
    """One verdict variant's report text, split where a node's identity or a measured value goes."""

    def __init__(self, failed: bool, incomplete: bool) -> None:
        document = node_report(_MARK, random.Random(0), failed=failed, incomplete=incomplete)
        self.spread: list[tuple[float, float]] = []
        for check in document["checks"]:
            for m in check["measurements"]:
                if isinstance(m["value"], float):
                    spec = _SPREAD[(m["check"], m["name"])]
                    if spec[1]:
                        m["value"] = f"\x00{len(self.spread)}\x00"
                        self.spread.append(spec)
        text = json.dumps(document, indent=2).replace('"\\u0000', "\x00").replace('\\u0000"', "\x00")
        for token, spelling in (("\x01x\x01", f"{_MARK:017x}"), ("\x01h\x01", f"{_MARK:08x}"),
                                ("\x01n\x01", str(_MARK))):
            text = text.replace(spelling, token)
        self.parts = text.split("\x00")
        self.row_parts = _row_template(document, self.spread).split("\x00")

    def render(self, index: int, rng: random.Random, suspect_gpu: int | None) -> tuple[str, list[str]]:
        """The report's text, and the values filled in (for its row)."""
        values = [repr(_value(centre, half, rng)) for centre, half in self.spread]
        if suspect_gpu is not None:  # the first 8 values of tflops_bf16 follow the PER_GPU order
            slot = [i for i, (c, _) in enumerate(self.spread) if c == 790][suspect_gpu]
            values[slot] = repr(SUSPECT_TFLOPS)
        return _identity("".join(p if i % 2 == 0 else values[int(p)] for i, p in enumerate(self.parts)), index), values

    def render_row(self, index: int, values: list[str], report: bytes, info: os.stat_result) -> str:
        """The fleet row of the report just written: ``fleet_row``'s own text with this node's values and stamp."""
        stamp = fleetrow.report_stamp(report, info)
        fill = {**dict(enumerate(values)), "s": str(stamp["size"]), "m": str(stamp["mtime_ns"]), "i": str(stamp["ino"]),
                "h": f'"{stamp["sha256"]}"'}
        text = "".join(p if i % 2 == 0 else fill[int(p) if p.isdigit() else p] for i, p in enumerate(self.row_parts))
        return _identity(text, index)


def _identity(text: str, index: int) -> str:
    return (text.replace("\x01x\x01", f"{index:017x}").replace("\x01h\x01", f"{index:08x}")
            .replace("\x01n\x01", str(index)))


_SENTINEL = 1e15  # value k of the spread becomes 1e15 + k: no real value comes near


def _row_template(document: dict, spread: list[tuple[float, float]]) -> str:
    """``fleetrow.fleet_row`` of the template, with \\x00k\\x00 where spread value k goes.

    The row is made twice: from the spread's centres (judgements, fixed values; no spread crosses a
    limit) and from sentinels, which say where each spread value lands in the row's columns."""
    marked, real = json.loads(json.dumps(document)), json.loads(json.dumps(document))
    for doc, sentinel in ((marked, True), (real, False)):
        for check in doc["checks"]:
            for m in check["measurements"]:
                if isinstance(m["value"], str):
                    k = int(m["value"].strip("\x00"))
                    m["value"] = _SENTINEL + k if sentinel else spread[k][0]
    stamp = {"size": "\x00s\x00", "mtime_ns": "\x00m\x00", "ino": "\x00i\x00", "sha256": "\x00h\x00"}
    rows = [fleetrow.fleet_row(Report.from_dict(doc), stamp) for doc in (marked, real)]
    rows[1]["measurements"]["value"] = [f"\x00{int(v - _SENTINEL)}\x00" if v is not None and v >= _SENTINEL else v
                                        for v in rows[0]["measurements"]["value"]]
    text = fleetrow.dumps(rows[1]).replace('"\\u0000', "\x00").replace('\\u0000"', "\x00")
    for token, spelling in (("\x01x\x01", f"{_MARK:017x}"), ("\x01h\x01", f"{_MARK:08x}"), ("\x01n\x01", str(_MARK))):
        text = text.replace(spelling, token)
    return text


_SPREAD = {(c, m): (centre, half) for c, m, _, centre, half, *_ in PER_GPU + PER_NODE}


def write_fleet(folder: Path, nodes: int, failed: set[int] = frozenset(), incomplete: set[int] = frozenset(),
                suspects: dict[int, int] | None = None, seed: int = 7, start: int = 0, rows: bool = True) -> list[Path]:
    """Reports of nodes ``start`` .. ``start + nodes - 1`` in ``folder/node-NNNNN/report.json``, each with
    its ``fleet-row.json`` (``rows=False``: as a run before dhc wrote rows left them)."""
    rng = random.Random(seed + start)
    suspects = suspects or {}
    templates: dict[tuple[bool, bool], _Template] = {}
    paths = []
    for index in range(start, start + nodes):
        variant = (index in failed, index in incomplete)
        template = templates.get(variant) or templates.setdefault(variant, _Template(*variant))
        path = folder / f"node-{index:05d}" / "report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        text, values = template.render(index, rng, suspects.get(index))
        data = text.encode()
        path.write_bytes(data)
        if rows:
            row = template.render_row(index, values, data, path.stat())
            (path.parent / fleetrow.ROW_NAME).write_text(row)
        paths.append(path)
    return paths
