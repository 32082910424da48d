#!/usr/bin/env bash
# Issue 4 on the device: the LoRA throughput table (app plain / fast / compile vs PEFT + Trainer), the app's
# default demo end to end, and the fast-path GPU tests. Carry .gpu/py.tar.xz. Stages: bench | tests | all.
set -u
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}
stage=${1:-all}
date -u
if [ "$stage" = all ] || [ "$stage" = bench ]; then
  python3 bench/lora_throughput.py --json "$OUT/lora.json" 2>&1 | grep -v -i warn | tee "$OUT/lora.log"
  python3 bench/llm_pipeline.py --speeds auto,plain,auto --json "$OUT/llm_defaults.json" 2>&1 | tee "$OUT/llm_defaults.log"
  # the first Train click after the app starts: each row in a new process (cold kernels, first imports)
  python3 bench/llm_pipeline.py --configs defaults --speeds auto,plain --fresh --json "$OUT/llm_cold.json" 2>&1 \
    | tee "$OUT/llm_cold.log"
fi
if [ "$stage" = all ] || [ "$stage" = tests ]; then
  python3 -m pytest -q -p no:cacheprovider tests/gpu/test_llm_gpu.py 2>&1 | tail -25 | tee "$OUT/llm_gpu_tests.log"
fi
