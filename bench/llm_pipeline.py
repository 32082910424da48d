"""Run the LLM dashboard's pipeline end to end (imported from the notebook) and print one table.

Usage on a GPU box:   python bench/llm_pipeline.py                      (GPT-2 124M size, both configs)
Quick local check:    python bench/llm_pipeline.py --device cpu --tiny --epochs 2

Each config runs the app's seven steps: seed → load (random weights at GPT2Config() size, vocabulary
50257, the app's offline BPE tokenizer: there is no hub on the GPU box) → inject LoRA → tokenize, loaders,
optimizer, scheduler, GradScaler → baseline eval → train → eval → save (PEFT format) + PEFT reload check →
release. "wall" is that whole sequence (the app's click → result). Train tokens/s divides by the summed
step times (each step ends with a CUDA synchronize); "real" counts non-pad tokens, "padded" counts every
position the GPU computed.

Configs: "defaults" = the app's defaults (batch 16, max length 128, built-in data, auto epochs/lr);
"b32s512" = batch 32 x max length 512 on SYNTHETIC text: the built-in prompts with responses made of
concatenated built-in examples, long enough to fill 512 tokens.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_notebooks.llm_finetuning.adapter import peft_reload_check, save_adapter
from gpu_notebooks.llm_finetuning.evaluation import evaluate_run
from gpu_notebooks.llm_finetuning.loading import load_pretrained
from gpu_notebooks.llm_finetuning.lora import inject_lora
from gpu_notebooks.llm_finetuning.models import (
    TINY_MODEL_NAME,
    build_offline_tokenizer,
    offline_gpt2,
    tiny_gpt2_config,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import bf16_native, resolve_precision, set_seed
from gpu_notebooks.llm_finetuning.settings import TrainSettings, with_model_defaults
from gpu_notebooks.llm_finetuning.tasks import builtin_examples, format_prompt
from gpu_notebooks.llm_finetuning.tokens import answer_token_budget
from gpu_notebooks.llm_finetuning.training import FineTuneRun, device_memory, prepare_training, train_steps
from gpu_notebooks.llm_finetuning.warmup import warm_up_kernels

CONFIGS = {
    "defaults": {"batch_size": 16, "max_length": 128, "synthetic": False},
    "b32s512": {"batch_size": 32, "max_length": 512, "synthetic": True},
}


def synthetic_long_examples(tokenizer, target_tokens):
    """Built-in prompts whose responses are built-in examples strung together until they fill target_tokens."""
    frame = builtin_examples()
    pieces = [f"{p} {r}." for p, r in zip(frame["prompt"], frame["response"], strict=True)]
    responses = []
    for row, prompt in enumerate(frame["prompt"]):
        budget = target_tokens - len(tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"])
        words, index = [], row
        while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < budget:
            words.append(pieces[index % len(pieces)])
            index += 7
        responses.append(" ".join(words))
    return frame.assign(response=responses)


def run_pipeline(name, config, args, device, output_root, speed="auto"):
    """The app's steps 1-7 for one config; returns the table row."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = device_memory(device)["allocated"]
    started = time.perf_counter()
    settings = TrainSettings(
        model_source="tiny" if args.tiny else "gpt2",
        precision=args.precision,
        batch_size=config["batch_size"],
        max_length=config["max_length"],
        epochs=args.epochs,
        speed=speed,
    )
    set_seed(settings.seed)  # step 1
    plan = resolve_precision(settings.precision, device.type, bf16_native(device))
    base_frame = builtin_examples()
    phases, mark = {}, time.perf_counter()

    def phase(name):
        nonlocal mark
        synchronize()
        now = time.perf_counter()
        phases[name] = round(now - mark, 2)
        mark = now

    if args.cached:  # step 2 as the app does it for a model already on disk: from_pretrained
        model, tokenizer = load_pretrained("local", plan.param_dtype, str(args.cached))
        model_name = f"{args.cached} (from disk)"
    else:
        tokenizer = build_offline_tokenizer(tokenizer_corpus(base_frame))  # step 2
        model_config = tiny_gpt2_config(len(tokenizer)) if args.tiny else GPT2Config()
        model_name = TINY_MODEL_NAME if args.tiny else "gpt2-124M-random"
        model = offline_gpt2(tokenizer, model_config, seed=settings.seed)
    model = model.to(device=device, dtype=plan.param_dtype)
    frame = synthetic_long_examples(tokenizer, config["max_length"]) if config["synthetic"] else base_frame
    run = FineTuneRun(
        settings=with_model_defaults(settings, model_name),
        device=device,
        plan=plan,
        model=model,
        tokenizer=tokenizer,
        model_name=model_name,
        memory_baseline=baseline,
    )
    del model
    phase("load")
    inject_lora(run.model, settings.target_modules, settings.rank, settings.alpha, settings.dropout)  # step 3
    train_frame, eval_frame = frame[frame["split"] == "train"], frame[frame["split"] == "eval"]
    stats = prepare_training(run, train_frame, eval_frame)  # step 4
    phase("lora+prep")
    budget = answer_token_budget(tokenizer, frame["response"])
    before, _ = evaluate_run(run, eval_frame, budget)  # step 5: baseline, then training
    phase("eval0")
    records = list(train_steps(run))
    steps = [r for r in records if r["kind"] == "train"]
    phase("train")
    after, _ = evaluate_run(run, eval_frame, budget)  # step 6
    phase("eval1")
    folder = output_root / name  # step 7
    save_adapter(run.model, folder, run.settings, model_name)
    peft_diff = peft_reload_check(run, folder, eval_frame["prompt"].head(8).tolist())
    phase("save+peft")
    peak = device_memory(device)["peak"]
    run_speed = run.speed.name + (f" ({run.speed.compile_mode})" if run.speed.compile else "")
    released = run.release()
    wall = time.perf_counter() - started
    step_seconds = sum(r["seconds"] for r in steps)
    return {
        "config": name,
        "batch x len": f"{config['batch_size']} x {config['max_length']}"
        + (" (synthetic)" if config["synthetic"] else ""),
        "precision": plan.name,
        "speed plan": run_speed,
        "steps": len(steps),
        "wall s (steps 1-7)": round(wall, 2),
        "phases s": " ".join(f"{k} {v}" for k, v in phases.items()),
        "train s (steps only)": round(step_seconds, 2),
        "real tok/s (non-pad)": round(sum(r["real_tokens"] for r in steps) / step_seconds),
        "padded tok/s (all)": round(sum(r["padded_tokens"] for r in steps) / step_seconds),
        "loss-token share": round(stats["train"]["loss_share_of_real"], 3),
        "peak alloc MiB": round(peak / 2**20, 1),
        "after release MiB": round(released["allocated_after"] / 2**20, 1),
        "before load MiB": round(baseline / 2**20, 1),
        "loss first->last": f"{steps[0]['loss']:.3f}->{steps[-1]['loss']:.3f}",
        "eval loss before->after": f"{before['eval_loss']:.3f}->{after['eval_loss']:.3f}",
        "skipped (scaler)": sum(bool(r["skipped"]) for r in steps),
        "PEFT max abs dlogit": f"{peft_diff:.2e}",
    }


def warm_up(device):
    """Create the CUDA context and cuBLAS handles outside the timed runs (the app has them after page load)."""
    if device.type == "cuda":
        a = torch.randn(256, 256, device=device, dtype=torch.float16, requires_grad=True)
        (a @ a).sum().backward()
        torch.cuda.synchronize()
        del a
        torch.cuda.empty_cache()


def print_table(rows):
    """A plain markdown table."""
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    ap.add_argument("--tiny", action="store_true", help="the tiny offline model instead of GPT-2 124M size")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {list(CONFIGS)}")
    ap.add_argument("--precision", choices=["fp16", "bf16", "fp32"], default="fp16")
    ap.add_argument("--epochs", type=int, default=None, help="default: the app's auto choice")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--speeds", default="auto", help="the app's speed settings to run, e.g. auto,plain")
    ap.add_argument(
        "--cached",
        nargs="?",
        const="auto",
        default=None,
        help="load GPT-2 124M (random weights) from a folder with the app's from_pretrained path, as for a "
        "model already in the cache; 'auto' (no value) saves one to a temporary folder first, untimed",
    )
    ap.add_argument(
        "--warm",
        action="store_true",
        help="run the app's start-up warm-up (warm_up_kernels, untimed) before the timed runs, as the app "
        "does when it opens on a GPU",
    )
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="run every config/speed in a new process: the first Train click after the app starts (cold)",
    )
    args = ap.parse_args()
    if args.cached and args.tiny:
        ap.error("--cached loads GPT-2 124M from a folder; it does not combine with --tiny")
    with tempfile.TemporaryDirectory() as cache_dir:
        if args.cached == "auto":
            args.cached = save_cached_model(Path(cache_dir))
        elif args.cached:
            args.cached = Path(args.cached)
        run_all(args)


def save_cached_model(folder):
    """GPT-2 124M with random weights and the offline tokenizer, saved like a downloaded model (untimed)."""
    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    offline_gpt2(tokenizer, GPT2Config(), seed=42).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_all(args):
    if args.fresh:
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.configs.split(","):
                for speed in args.speeds.split(","):
                    out = Path(tmp) / f"{name}-{speed}.json"
                    command = [sys.executable, __file__, "--device", args.device, "--configs", name]
                    command += ["--speeds", speed, "--precision", args.precision, "--json", str(out)]
                    command += ["--tiny"] if args.tiny else []
                    command += ["--cached", str(args.cached)] if args.cached else []
                    command += ["--warm"] if args.warm else []
                    command += ["--epochs", str(args.epochs)] if args.epochs else []
                    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                    rows += [{**row, "process": "fresh"} for row in json.loads(out.read_text())]
        print_table(rows)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("CUDA requested but torch sees no GPU; use --device cpu --tiny for a local check")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# device: {card} | torch {torch.__version__} | model: {'tiny offline' if args.tiny else 'GPT2Config() 124M, random weights'}"
    )
    warm_up(device)
    warm_s = round(warm_up_kernels(device, TrainSettings(precision=args.precision)), 2) if args.warm else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            for speed in args.speeds.split(","):
                rows.append(run_pipeline(name, CONFIGS[name], args, device, Path(tmp), speed))
                if warm_s is not None:
                    rows[-1]["start-up warm-up s (untimed)"] = warm_s
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
