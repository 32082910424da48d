"""Where a training step's GPU time goes: torch.profiler over a few steps of the app's own path.

    source bench/device_setup.sh && python3 bench/profile_step.py --speeds fast,compile --batch 32 --length 512

Builds GPT-2 124M (random weights) with the app's LoRA (r=16, alpha 32, dropout 0.05 on c_attn, c_proj) the
way bench/lora_throughput.py does, runs --warmup steps, then profiles --steps steps and prints the kernels
that take the most CUDA time (grouped by name), the step's total CUDA time and its wall time.
"""

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lora_throughput import model_config, run_app_setup, synthetic_batches  # noqa: E402

from gpu_notebooks.llm_finetuning.models import build_offline_tokenizer, tokenizer_corpus
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.training import fast_train_step, train_one_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speeds", default="fast,compile")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=25, help="kernel rows to print")
    ap.add_argument("--targets", default="c_attn,c_proj")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mode", default="", help="override the compile mode (default, reduce-overhead, ...)")
    ap.add_argument(
        "--sdpa", default="", help="force an SDPA backend: flash, cudnn, efficient (default: torch's choice)"
    )
    args = ap.parse_args()
    args.targets = args.targets.split(",")
    device = torch.device("cuda")
    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    config = model_config(args, len(tokenizer))
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    batches = synthetic_batches(
        args.warmup + args.steps, args.batch, args.length, config.vocab_size, args.seed
    )
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    backends["efficient"] = SDPBackend.EFFICIENT_ATTENTION
    for speed in args.speeds.split(","):
        with sdpa_kernel(backends[args.sdpa]) if args.sdpa else contextlib.nullcontext():
            run, _, _ = run_app_setup(batches, config, args, device, tokenizer, speed, args.mode)
            params = [p for p in run.model.parameters() if p.requires_grad]
            step = fast_train_step if run.speed.deferred else train_one_step
            run.model.train()
            for batch in batches[: args.warmup]:
                step(run, batch, params, 1.0)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                started = time.perf_counter()
                for batch in batches[args.warmup :]:
                    step(run, batch, params, 1.0)
                torch.cuda.synchronize()
                wall = (time.perf_counter() - started) / args.steps
            events = prof.key_averages()
            kernels = sorted(
                (e for e in events if e.device_type.name == "CUDA"),
                key=lambda e: e.self_device_time_total,
                reverse=True,
            )
            total = sum(e.self_device_time_total for e in kernels) / args.steps / 1e3
            print(
                f"\n## {run.speed.name} {run.speed.compile_mode if run.speed.compile else ''} sdpa={args.sdpa or 'auto'} {args.batch}x{args.length}: wall {wall * 1e3:.1f} ms/step (profiled), "
                f"CUDA kernels {total:.1f} ms/step, {sum(e.count for e in kernels) // args.steps} launches/step"
            )
            print("| ms/step | share | calls/step | kernel |\n|---|---|---|---|")
            for e in kernels[: args.rows]:
                ms = e.self_device_time_total / args.steps / 1e3
                print(f"| {ms:.2f} | {100 * ms / total:.1f}% | {e.count // args.steps} | {e.key[:110]} |")
            run.release()
            del run
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
