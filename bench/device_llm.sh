#!/usr/bin/env bash
# The fine-tuning dashboard's GPU runs, as made for notes/BENCHMARKS.md. Run from the repo root on the device.
# Carry .gpu/py.tar.xz (marimo, altair, datasets); if .gpu/pl/ is carried too, Polars is installed into
# /tmp/site for the RAPIDS call that follows (the machine keeps /tmp while warm).
set -u
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if ls .gpu/pl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/pl/*.whl && echo "polars installed"
fi
date -u
python3 -m pytest -q -p no:cacheprovider tests/gpu/test_llm_gpu.py 2>&1 | tail -15 | tee "$OUT/llm_gpu_tests.log"
python3 bench/llm_pipeline.py --json "$OUT/llm_pipeline.json" 2>&1 | tee "$OUT/llm_pipeline.log"
/usr/bin/time -f "llm smoke export wall %e s" python3 -m marimo export html llm_finetuning_dashboard.py \
  -o "$OUT/llm_smoke.html" -- --smoke 2>&1 | tail -2 | tee -a "$OUT/llm_pipeline.log"
