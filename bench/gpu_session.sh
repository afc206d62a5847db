#!/usr/bin/env bash
# One prepared device run for the GPU numbers issues 19 and 20 ask for (the device tool's
# machine: Python 3.12 with torch, no network). From the repository root:
#
#   here:   bash scripts/device_wheels.sh            # once: .whl/ with what the device lacks
#   device: run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=540)
#
# It installs .whl/ into /tmp/site, then runs, each under its own time limit, and writes the
# numbers to $OUT (the device tool brings them back):
#   1. bench/gpu_smoke.py: both nuclei detectors batched on the device, CPU baseline in the
#      same run, the out-of-memory backoff check            -> gpu_smoke.log
#   2. bench/bench_slide.py --device cuda on a synthetic excision of $TISSUE_MM2 mm² (default
#      20: painted on the machine first, ~1 min): the whole default run, per stage, issue 19's
#      >= 100 mm²/min target                                  -> bench_slide_gpu.json / .log
#   3. the same with --nuclei-model stardist-monuseg: issue 20's nuclei stage >= 300 mm²/min
#                                                             -> bench_slide_stardist.json / .log
# Locally (CPU, to check the script): NO_WHEELS=1 DEVICE=cpu TISSUE_MM2=2 SMOKE_SIZE=1024 PYTHON=.venv/bin/python bash bench/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
MM2=${TISSUE_MM2:-20}
SMOKE_SIZE=${SMOKE_SIZE:-4096}
export PYTHONUNBUFFERED=1 WSI_BENCH_CACHE=${WSI_BENCH_CACHE:-/tmp/wsi-bench-cache}
if [ -z "${NO_WHEELS:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
"$PY" -c "import torch, wsi_pipeline, tiling, detectors.stardist.predict; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  2>&1 | tee "$OUT/env.log" || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/env.log"
step() {  # name, seconds, command...
  local name=$1 secs=$2; shift 2
  echo "== $name (limit ${secs}s)"; local t0=$SECONDS
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  tail -n 40 "$OUT/$name.log"; echo "== $name: exit $rc after $((SECONDS - t0)) s"
}
step gpu_smoke 150 "$PY" bench/gpu_smoke.py --device "$DEVICE" --size "$SMOKE_SIZE"
step bench_slide_gpu 240 "$PY" bench/bench_slide.py --device "$DEVICE" --tissue-mm2 "$MM2" --json "$OUT/bench_slide_gpu.json"
step bench_slide_stardist 150 "$PY" bench/bench_slide.py --device "$DEVICE" --tissue-mm2 "$MM2" \
  --nuclei-model stardist-monuseg --json "$OUT/bench_slide_stardist.json"
