#!/usr/bin/env bash
# Issue 4 on the device: the LoRA throughput table (app plain / fast / compile vs PEFT + Trainer), the app's
# default demo end to end, and the fast-path GPU tests. Carry .gpu/py.tar.xz. Stages: bench | attn | cold | llama | tests | all.
set -uo pipefail  # a failing stage fails its pipeline through grep/tee; every stage still runs
source bench/device_setup.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}
stage=${1:-all}
status=0
date -u
if [ "$stage" = all ] || [ "$stage" = bench ]; then
  python3 bench/lora_throughput.py --json "$OUT/lora.json" 2>&1 | grep -v -i warn | tee "$OUT/lora.log" || status=1
  python3 bench/llm_pipeline.py --speeds auto,plain,auto --json "$OUT/llm_defaults.json" 2>&1 | tee "$OUT/llm_defaults.log" || status=1
  # the first Train click after the app starts: each row in a new process (cold kernels, first imports)
  python3 bench/llm_pipeline.py --configs defaults --speeds auto,plain --fresh --json "$OUT/llm_cold.json" 2>&1 \
    | tee "$OUT/llm_cold.log" || status=1
fi
if [ "$stage" = attn ]; then
  # the literal target set: attention c_attn and c_proj only (24 modules; "c_proj" alone also takes mlp.c_proj)
  python3 bench/lora_throughput.py --targets attn.c_attn,attn.c_proj --json "$OUT/lora_attn.json" 2>&1 \
    | grep -v -i warn | tee "$OUT/lora_attn.log" || status=1
  python3 bench/profile_step.py --speeds compile --targets attn.c_attn,attn.c_proj --rows 30 2>&1 \
    | grep -v -i warn | tee "$OUT/profile_attn.log" || status=1
fi
if [ "$stage" = all ] || [ "$stage" = cold ]; then
  # the demo from a model already on disk (from_pretrained, as with cached weights): warm process, then
  # the first click in a fresh process without and with the app's start-up warm-up
  python3 bench/llm_pipeline.py --configs defaults --speeds auto,plain,auto --cached --json "$OUT/llm_cached.json" \
    2>&1 | tee "$OUT/llm_cached.log" || status=1
  python3 bench/llm_pipeline.py --configs defaults --speeds auto,auto --cached --fresh --json "$OUT/llm_cold.json" \
    2>&1 | tee "$OUT/llm_cold.log" || status=1
  python3 bench/llm_pipeline.py --configs defaults --speeds auto,auto --cached --fresh --warm \
    --json "$OUT/llm_cold_warmed.json" 2>&1 | tee "$OUT/llm_cold_warmed.log" || status=1
fi
if [ "$stage" = all ] || [ "$stage" = llama ]; then
  # issue 15: SmolLM2-135M's shape (random weights), LoRA on all seven linear types, BF16 on the H200;
  # compile: the Llama blocks through CausalLMBody (no mask), compiled like GPT-2's
  python3 bench/lora_throughput.py --arch llama --configs 4x128,16x512 --apps plain,fast,compile --json "$OUT/lora_llama.json" 2>&1 \
    | grep -v -i warn | tee "$OUT/lora_llama.log" || status=1
fi
if [ "$stage" = all ] || [ "$stage" = tests ]; then
  python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_llm_gpu.py 2>&1 | tail -25 | tee "$OUT/llm_gpu_tests.log" || status=1
fi
echo "device_llm_speed.sh exit status $status"
exit $status
