#!/usr/bin/env bash
# The fine-tuning dashboard's GPU runs, as made for notes/BENCHMARKS.md. Run from the repo root on the device.
# Carry .gpu/py.tar.xz (marimo, altair, datasets); if .gpu/pl/ is carried too, Polars is installed into
# /tmp/site for the RAPIDS call that follows (the machine keeps /tmp while warm).
# pipefail: a failing pytest or bench fails its pipeline through `tail | tee`; every part still runs, and
# the script exits non-zero if any part failed.
set -uo pipefail
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
status=0
if ls .gpu/pl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/pl/*.whl && echo "polars installed"
fi
date -u
python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_llm_gpu.py 2>&1 | tail -15 | tee "$OUT/llm_gpu_tests.log" || status=1
python3 bench/llm_pipeline.py --json "$OUT/llm_pipeline.json" 2>&1 | tee "$OUT/llm_pipeline.log" || status=1
/usr/bin/time -f "llm smoke export wall %e s" python3 -m marimo export html llm_finetuning_dashboard.py \
  -o "$OUT/llm_smoke.html" -- --smoke 2>&1 | tail -2 | tee -a "$OUT/llm_pipeline.log" || status=1
echo "device_llm.sh exit status $status"
exit $status
