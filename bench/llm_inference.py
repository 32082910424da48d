"""Inference cost at batch 1 on this device: prefill, decode tokens/s unmerged and merged, and the card's bound.

What it measures (issue 25), with the Try-it section's own code (`measure_costs` in
gpu_notebooks/llm_finetuning/inference_cost.py): GPT-2 124M's shape (`GPT2Config()`) and SmolLM2-135M's
shape (Llama: 30 layers, 576 wide, 9 query heads sharing 3 KV heads, tied embeddings), random weights (there
is no hub on the GPU box), a LoRA adapter made by PEFT itself (`get_peft_model`, r=16, alpha 32, on the
app's four target roles, A and B random so merging really changes the weights). Batch 1, a random prompt of
--prompt-tokens ids, then greedy decoding with the KV cache for --new-tokens steps, eos ignored:

- time to first token = one forward over the prompt (the prefill), median of three, device synchronized;
- decode tokens/s = new tokens ÷ the decode loop's wall time (nothing read back inside it, one untimed
  warm-up first), with the adapter beside the weights (PEFT, unmerged) and after `merge_and_unload()`;
- the bound = the card's datasheet memory bandwidth (gpu_notebooks/gpu/peaks.py) ÷ bytes read per token
  (every weight once, tied ones once, lookup-only tables left out, plus the KV cache at the mean context):
  no batch-1 decode can beat it. A datasheet figure, not a measurement; on a CPU there is none.

Each shape is built and measured --repeats times (fresh model each time, merging changes it); the table
shows the median run by merged decode tokens/s. Paste the printed block into notes/BENCHMARKS.md.

On the GPU box (from the repo root):
    source bench/device_setup.sh && python3 bench/llm_inference.py
A memory-bound case beside them (Llama-3.2-1B's shape: measured ÷ bound comes near 1 only there):
    source bench/device_setup.sh && python3 bench/llm_inference.py --shapes "GPT-2 124M" Llama-3.2-1B
Local sanity check (tiny shapes, CPU, seconds):
    .venv/bin/python bench/llm_inference.py --device cpu --tiny --prompt-tokens 16 --new-tokens 8 --repeats 1
"""

import argparse
import datetime
import json
import statistics
import sys
import warnings
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_notebooks.llm_finetuning.formatting import fmt_bytes, fmt_count
from gpu_notebooks.llm_finetuning.inference_cost import measure_costs

RANK, ALPHA = 16, 32
# SmolLM2-135M's published shape (as in bench/lora_throughput.py): random weights.
SMOLLM2_SHAPE = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49_152,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
# Llama-3.2-1B's published shape: 16 layers, 2048 wide, 32 query heads sharing 8 KV heads, a 128K vocabulary.
LLAMA_1B_SHAPE = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128_256,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHAPES = {
    "GPT-2 124M": (GPT2LMHeadModel, lambda: GPT2Config(), ["c_attn", "c_proj", "c_fc"], True),
    "SmolLM2-135M": (
        LlamaForCausalLM,
        lambda: LlamaConfig(**SMOLLM2_SHAPE),
        LLAMA_TARGETS,
        False,
    ),
    # ~2.5 GB of FP16 weights per token: batch-1 decoding comes near the memory bound (opt-in: --shapes)
    "Llama-3.2-1B": (
        LlamaForCausalLM,
        lambda: LlamaConfig(**LLAMA_1B_SHAPE),
        LLAMA_TARGETS,
        False,
    ),
}
DEFAULT_SHAPES = ["GPT-2 124M", "SmolLM2-135M"]
TINY = {
    "GPT-2 124M": lambda: GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=1000, bos_token_id=0, eos_token_id=0
    ),
    "SmolLM2-135M": lambda: LlamaConfig(
        **SMOLLM2_SHAPE
        | {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4}
        | {"num_key_value_heads": 2, "vocab_size": 1000}
    ),
    "Llama-3.2-1B": lambda: LlamaConfig(
        **LLAMA_1B_SHAPE
        | {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4}
        | {"num_key_value_heads": 2, "vocab_size": 1000}
    ),
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def peft_model(shape, dtype, device, tiny, seed=0):
    """The shape with random weights in `dtype` on `device`, wrapped by PEFT's LoRA (A and B random)."""
    model_class, config, targets, fan_in_fan_out = SHAPES[shape]
    torch.manual_seed(seed)
    with torch.device(device):  # built where it runs: a 1B model's random init on the host takes minutes
        model = model_class((TINY[shape] if tiny else config)()).to(dtype=dtype).eval()
    lora = LoraConfig(
        r=RANK,
        lora_alpha=ALPHA,
        lora_dropout=0.0,
        target_modules=targets,
        fan_in_fan_out=fan_in_fan_out,
        init_lora_weights=False,  # B ≠ 0: merging changes the weights, as after training
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora).eval()


def measure(shape, dtype, device, tiny, prompt_tokens, new_tokens, repeats):
    """`measure_costs` on a fresh PEFT model per repeat; the run with the median merged decode speed."""
    runs = []
    for repeat in range(repeats):
        model = peft_model(shape, dtype, device, tiny, seed=repeat)
        vocab = model.get_base_model().config.vocab_size
        prompt = torch.randint(0, vocab, (1, prompt_tokens), generator=torch.Generator().manual_seed(repeat))
        runs.append(measure_costs(model, prompt.to(device), new_tokens, device))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    runs.sort(key=lambda c: c["merged"]["decode_tokens_per_s"])
    return runs[len(runs) // 2], [c["merged"]["decode_tokens_per_s"] for c in runs]


def table(results):
    """The results as a markdown table, one row per shape."""
    lines = [
        "| shape | params | TTFT ms unmerged / merged | decode tok/s unmerged | decode tok/s merged | merge Δ | "
        "bytes/token | bound tok/s | merged ÷ bound |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, (c, _) in results.items():
        u, m = c["unmerged"], c["merged"]
        bound = m["bound_tokens_per_s"]
        share = "—" if bound is None else f"{100 * m['decode_tokens_per_s'] / bound:.1f}%"
        lines.append(
            f"| {shape} | {fmt_count(c['parameters'])} | {1e3 * u['prefill_s']:.2f} / {1e3 * m['prefill_s']:.2f} | "
            f"{u['decode_tokens_per_s']:,.1f} | {m['decode_tokens_per_s']:,.1f} | "
            f"{100 * (m['decode_tokens_per_s'] / u['decode_tokens_per_s'] - 1):+.1f}% | "
            f"{fmt_bytes(m['bytes']['total'])} | {'none' if bound is None else f'{bound:,.0f}'} | "
            f"{share} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="default: fp16 on CUDA, fp32 on a CPU")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="2-layer stand-ins of both shapes (a sanity run)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--shapes", nargs="+", choices=list(SHAPES), default=DEFAULT_SHAPES, help="default: %(default)s"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("fp16" if device.type == "cuda" else "fp32")]
    warnings.filterwarnings("ignore", category=FutureWarning)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    results = {
        shape: measure(shape, dtype, device, args.tiny, args.prompt_tokens, args.new_tokens, args.repeats)
        for shape in args.shapes
    }
    first = next(iter(results.values()))[0]
    print(
        f"### Inference at batch 1 — {card}, {datetime.date.today().isoformat()}"
        + (" (tiny stand-ins, not the real shapes)" if args.tiny else "")
    )
    print(
        f"\n`python3 {' '.join(sys.argv)}` · torch {torch.__version__} · transformers {transformers.__version__} "
        f"· peft {peft.__version__} · {str(dtype).removeprefix('torch.')} · LoRA r={RANK} (PEFT, unmerged vs "
        f"`merge_and_unload`) · prompt {args.prompt_tokens} random tokens · {args.new_tokens} greedy decode "
        f"steps with the KV cache · median of {args.repeats} builds · bound: "
        + (
            f"{first['bandwidth'] / 1e12:.2f} TB/s ({first['bandwidth_source']}) ÷ bytes per token"
            if first["bandwidth"]
            else first["bandwidth_source"]
        )
        + "\n"
    )
    print(table(results))
    for shape, (_, speeds) in results.items():
        print(f"\n{shape}: merged decode tok/s over the builds: {', '.join(f'{s:,.1f}' for s in speeds)}")
        print(f"  spread {100 * (max(speeds) - min(speeds)) / statistics.median(speeds):.1f}% of the median")
    if args.json:
        args.json.write_text(json.dumps({shape: costs for shape, (costs, _) in results.items()}, indent=2))


if __name__ == "__main__":
    main()
