#!/usr/bin/env bash
# Issue 14 on the device (H200): the fine-tuning app's GPM telemetry, MFU and energy for the default demo and
# 32 x 512, the samplers' overhead on a timed training step (target < 2%), the telemetry GPU tests, and the
# smoke export with GPM on. Carry .gpu/py.tar.xz. Every part runs; the exit status says if any failed.
set -uo pipefail
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
status=0
date -u
python3 -c "import pynvml as n; n.nvmlInit(); h=n.nvmlDeviceGetHandleByIndex(0); print('GPM supported:', n.nvmlGpmQueryDeviceSupport(h).isSupportedDevice)" \
  2>&1 | tee "$OUT/gpm_support.log" || status=1
python3 bench/llm_telemetry.py --json "$OUT/llm_telemetry.json" 2>&1 | grep -v -i warn | tee "$OUT/llm_telemetry.log" || status=1
python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_llm_gpu.py -k "gpm or telemetry or lease or bf16" 2>&1 \
  | tail -15 | tee "$OUT/llm_gpu_telemetry_tests.log" || status=1
python3 -m marimo export html llm_finetuning_dashboard.py -o "$OUT/llm_smoke_gpm.html" -- --smoke 2>&1 | tail -3 \
  | tee "$OUT/llm_smoke_gpm.log" || status=1
grep -o "SM activity (GPM)[^<]\{0,200\}" "$OUT/llm_smoke_gpm.html" | head -3 | tee -a "$OUT/llm_smoke_gpm.log"
echo "device_llm_gpm.sh exit status $status"
exit $status
