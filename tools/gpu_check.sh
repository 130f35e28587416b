#!/usr/bin/env bash
# One GPU check (issue 21): run after the README's set-up on a host with an NVIDIA GPU.
#   tools/gpu_check.sh [OUT]      (OUT default: gpu-check-<date>; everything goes under it)
# Builds the CUDA variant of the study engine (architecture from nvidia-smi), runs the smoke config
# and then the full-size OLMoE and Llama-3.2-1B twins on cuda-dgpu (config/experiments/gpu-check.yaml),
# profiles them with node timing, measures the profiler-off overhead (patched / unpatched llama-bench,
# paired) and samples the GPU's memory through nvidia-smi (NVML). Prints tok/s, node coverage, the
# routing share of MoE-block time, the overhead and the peak GPU memory; exits non-zero on any failed
# check. Refuses, naming what it looked for, on a host without an NVIDIA GPU.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}")
PY="$ROOT/.venv/bin/python"
SMK="$ROOT/.venv/bin/snakemake"

refuse() { echo "gpu_check: refused: $1 (this check needs an NVIDIA GPU with its driver: it looked for nvidia-smi on PATH, a GPU in 'nvidia-smi -L' and /dev/nvidia0)" >&2; exit 2; }
command -v nvidia-smi >/dev/null || refuse "no nvidia-smi on PATH"
nvidia-smi -L 2>/dev/null | grep -q "^GPU " || refuse "nvidia-smi -L lists no GPU"
[ -e /dev/nvidia0 ] || refuse "no /dev/nvidia0"
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || refuse "no CUDA compiler (nvcc; ./setup.sh pipeline,cuda-build)"
[ -x "$SMK" ] || { echo "gpu_check: run ./setup.sh pipeline first (no $SMK)" >&2; exit 2; }

mkdir -p "$OUT"
WORK="$OUT/work"
[ -d "$WORK/.git" ] || git clone -q "$ROOT" "$WORK"   # a work folder of its own: results/ and figures/ under OUT
cd "$WORK"
export PATH="/usr/local/cuda/bin:$PATH" EDGEMOE_HOST_DEVICE=cuda-dgpu
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv | tee "$OUT/gpu.csv"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/gpu-memory-mib.log" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT
t0=$(date +%s)
echo "== smoke (tiny twins) ==";  "$SMK" --cores all figures/all --configfile config/smoke.yaml --config device=cuda-dgpu > "$OUT/smoke.log" 2>&1 \
  || { tail -30 "$OUT/smoke.log"; echo "gpu_check: FAILED: the smoke run (log: $OUT/smoke.log)" >&2; exit 1; }
cp -r figures "$OUT/smoke-figures"
t1=$(date +%s)
echo "== full-size OLMoE and Llama-3.2-1B twins =="
"$SMK" --cores all figures/all --configfile config/experiments/gpu-check.yaml --config device=cuda-dgpu > "$OUT/full.log" 2>&1 \
  || { tail -30 "$OUT/full.log"; echo "gpu_check: FAILED: the full-size run (log: $OUT/full.log)" >&2; exit 1; }
echo "== profiler-off overhead (patched / unpatched llama-bench, paired) =="
"$SMK" --cores all results/engine/llama.cpp-f7cd133np/build/cuda-dgpu/build-info.json --configfile config/experiments/gpu-check.yaml --config device=cuda-dgpu > "$OUT/unpatched-build.log" 2>&1
for m in olmoe-1b-7b llama-3.2-1b; do
  "$PY" "$ROOT/tools/profiler_overhead.py" --patched results/engine/llama.cpp-f7cd13301/build/cuda-dgpu/bin/llama-bench \
    --unpatched results/engine/llama.cpp-f7cd133np/build/cuda-dgpu/bin/llama-bench -m results/models/$m/*/Q4_K_M.gguf \
    -k 6 -n 64 -t "$(nproc)" --extra "-ngl 99" --json "$OUT/overhead-$m.json" > "$OUT/overhead-$m.log" 2>&1
done
kill $SAMPLER 2>/dev/null || true
cp -r figures "$OUT/figures"; cp results/runs.parquet "$OUT/"
echo "smoke $((t1 - t0)) s, full size and overhead $(( $(date +%s) - t1 )) s"
"$PY" "$ROOT/tools/gpu_check_report.py" --out "$OUT"
