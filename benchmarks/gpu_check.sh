#!/usr/bin/env bash
# The GPU check, for a single-GPU machine with CUDA torch preinstalled and no internet:
# install dhc from this working tree without touching the network, run the quick InstanceStress
# on the GPU, both benchmarks and the self-test, and print the numbers. Meant to end within 8 min.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-/tmp/dhc-gpu-check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 DHC_IMDS=off
step() { printf '\n=== %s (%ss) ===\n' "$1" "$SECONDS"; }

step "machine"
nvidia-smi -L || true
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' || exit 2

step "install dhc from the working tree (no network, no dependencies)"
if ! "$py" -m pip install --quiet --no-deps --no-index --no-build-isolation -e "$root" 2>"$out/pip.log"; then
  echo "pip could not build it here (no hatchling offline?): using the tree on PYTHONPATH instead"
  export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
fi
"$py" -c 'import dhc, yaml, pytest, xdist, pynvml; print("dhc", dhc.__version__)' || exit 2
dhc() { "$py" -m dhc "$@"; }

# One GPU of an 8-GPU H200 type: the p5e limits, one GPU, no EFA or NVLink expected; a shorter burn.
# The type goes right under `instance_types:` (appended at the end it would land in whatever
# section ends the file).
thresholds="$out/thresholds-single-h200.yaml"
cat > "$out/single-h200.yaml" <<'YAML'
  single-h200:
    extends: ml.p5e.48xlarge
    description: one H200 of a lent check machine (p5e limits, one GPU)
    gpus: 1
    efa: 0
    nvlinks_per_gpu: 0
    profiles:
      quick:
        stress.gemm: {duration_s: 20, expected_s: 30}
YAML
sed "/^instance_types:$/r $out/single-h200.yaml" "$root/thresholds.yaml" > "$thresholds"
dhc thresholds validate "$thresholds" || exit 2

step "quick InstanceStress on the GPU"
dhc run --suite InstanceStress --instance-type single-h200 --thresholds "$thresholds" --out "$out/stress" \
  2> "$out/stress-progress.log"
echo "exit code $? (dcgmi absent here makes stress.dcgm Incomplete, so 3 is expected)"
"$py" - "$out/stress/report.json" "$thresholds" <<'PY'
import json, sys
from dhc import thresholds
report = json.load(open(sys.argv[1]))
limits = thresholds.load(sys.argv[2]).resolve("single-h200", "quick")
print("wall time per check (report.json duration_s) against thresholds.yaml's expected_s and timeout_s:")
SHOWN = ("tflops_bf16", "copy_bandwidth", "verified_gb_per_s", "tested_gib", "coverage_of_free",
         "memory_errors", "temperature_c", "gpu_count", "relative_to_median")


def seconds(value):
    return "       -" if value is None else f"{value:8.1f}"


for check in report["checks"]:
    timing = limits.timing(check["check"])
    print(f"{check['check']:<22} {check['status']:<10} {seconds(check.get('duration_s'))} s  "
          f"(expected {timing.expected_s:g} s, timeout {timing.timeout_s:g} s)  {(check.get('reason') or '')[:90]}")
    for m in check["measurements"]:
        if m["name"] in SHOWN:
            print(f"    {m['name']:<20} {m['value']:>12} {m['unit']}")
print(f"whole run: {seconds(report['run'].get('duration_s')).strip()} s")
PY

step "the burn's reference matmul(a, b) and matmul(a, b, out=buf) give the same bits"
# the burn compares every matmul(out=buffer) with its first result; were the two calls to differ on
# this GPU (another cuBLAS algorithm for a preallocated output), every GPU would show as corrupting
"$py" - cuda 8192 <<'PY'
import sys

import torch

from dhc.kernels import gemm
from dhc.kernels.bitwise import words

device, size = torch.device(sys.argv[1]), int(sys.argv[2])
for name in ("bf16", "fp16", "tf32", "fp32"):
    generator = torch.Generator().manual_seed(20240815)
    a, b = (torch.randn(size, size, generator=generator).to(gemm.DTYPES[name]).to(device) for _ in range(2))
    with gemm._tf32(name):
        plain = torch.matmul(a, b)
        outs = [torch.empty_like(plain) for _ in range(2)]
        for out in outs + outs:
            torch.matmul(a, b, out=out)
    differing = [int(torch.count_nonzero(words(out) != words(plain))) for out in outs]
    verdict = "identical bits" if differing == [0, 0] else f"DIFFERENT BITS: {differing} differing words"
    print(f"{name:<5} {size}x{size}  matmul vs matmul(out=) on two buffers, twice: {verdict}")
PY

step "benchmark: GEMM burn vs bare matmul"
"$py" "$root/benchmarks/gemm.py" --seconds 2 --rounds 3

step "benchmark: memtest vs copy bandwidth"
"$py" "$root/benchmarks/memtest.py" --rounds 2

step "NCCL backend: one rank on the GPU through dhc's launcher"
cat > "$out/nccl_one_gpu.py" <<'PY'
from dhc.comm import allreduce, launch

if __name__ == "__main__":  # the launcher spawns ranks, which re-import this file
    sizes = allreduce.sweep_sizes(8, 1 << 30)
    [rows] = launch.run_local(1, "nccl", allreduce.rank_sweep, ("cuda", sizes), 300, {"NCCL_DEBUG": "WARN"})
    for size, seconds, wrong in rows[-4:]:
        print(f"{size:>12} B  algbw {size / seconds / 1e9:8.1f} GB/s  wrong elements {wrong}")
PY
"$py" "$out/nccl_one_gpu.py"

step "self-test: planted faults"
dhc selftest --instance-type single-h200 --thresholds "$thresholds" --out "$out/selftest" 2> "$out/selftest-progress.log"
echo "selftest exit code $?"

step "done"
