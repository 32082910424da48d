"""GPU telemetry of the fine-tuning app on a real card: what GPM shows during training, MFU, energy, and
what the samplers cost (issue 14).

Part 1, "runs": the app's own step helpers (load_step → inject_step → prepare_step → train_step_body,
imported from the notebook, as its cells call them) on GPT-2 124M's shape (GPT2Config(), random weights,
the app's offline tokenizer: no hub on the GPU box), for the default demo (batch 16 x max length 128,
built-in data, auto epochs) and 32 x 512 (synthetic long responses, as bench/llm_pipeline.py builds them).
Per run: steps, real tokens/s, MFU (the app's formula and datasheet peak), GPM means over training (SM
activity, SM occupancy, Tensor Core any / HMMA, DRAM bandwidth, PCIe RX/TX), GPM windows per second, and
joules per 1M real tokens from NVML's energy counter.

Part 2, "overhead": one 32 x 512 run prepared once; its training epoch (40 optimizer steps over the built-in
rows repeated 8 times) is timed without samplers, with the classic GpuSampler (10 Hz), and with GpuSampler
+ GpmSampler (10 Hz), in the order none, classic, both, both, classic, none, ... for --repeats rounds.
Per variant: the median of the per-step seconds the app's train_steps records (the fast path reads back
in groups of 16; the first group, with any warm-up, is dropped) and the overhead against "none", paired by
round (bench/paired.py: a 95% bootstrap interval and a verdict). Target:
< 2% on the median.

On the GPU box (from the repo root):   source bench/device_setup.sh && python3 bench/llm_telemetry.py
Local check (no GPU: GPM unavailable, the overhead of the psutil sampler):
    .venv/bin/python bench/llm_telemetry.py --device cpu --tiny --repeats 1
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import GPT2Config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from llm_pipeline import synthetic_long_examples
from paired import paired_overhead, verdict  # noqa: E402

from gpu_notebooks.gpu.gpm import GPM_FIELDS, GpmSampler
from gpu_notebooks.llm_finetuning.models import (
    TINY_MODEL_NAME,
    build_offline_tokenizer,
    offline_gpt2,
    tiny_gpt2_config,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import bf16_native, resolve_precision
from gpu_notebooks.llm_finetuning.settings import TrainSettings
from gpu_notebooks.llm_finetuning.steps import (
    inject_step,
    load_step,
    prepare_step,
    save_step,
    train_step_body,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.telemetry import device_sampler, mfu, nvml_device_index
from gpu_notebooks.llm_finetuning.tokens import answer_token_budget
from gpu_notebooks.llm_finetuning.training import train_steps

CONFIGS = {"defaults": (16, 128, False), "b32s512": (32, 512, True)}


def loader_for(tiny):
    """Step 2's loader: GPT-2 124M's shape with random weights (or the app's tiny model)."""

    def load(settings, dtype, corpus):
        tokenizer = build_offline_tokenizer(corpus)
        config = tiny_gpt2_config(len(tokenizer)) if tiny else GPT2Config()
        model = offline_gpt2(tokenizer, config, seed=settings.seed).to(dtype)
        return model, tokenizer, TINY_MODEL_NAME if tiny else "gpt2-124M-random", None

    return load


def frame_for(synthetic, tiny, max_length, repeat=1):
    data = builtin_examples()
    if synthetic:
        tokenizer = build_offline_tokenizer(tokenizer_corpus(data))
        data = synthetic_long_examples(tokenizer, max_length)
    if repeat > 1:
        train = data[data["split"] == "train"]
        data = pd.concat([*([train] * repeat), data[data["split"] == "eval"]], ignore_index=True)
    return data


def prepared_run(args, device, batch, length, synthetic, epochs=None, repeat=1):
    """Steps 1-4 through the app's helpers; returns (run, data)."""
    settings = TrainSettings(
        model_source="tiny" if args.tiny else "gpt2", batch_size=batch, max_length=length, epochs=epochs
    )
    data = frame_for(synthetic, args.tiny, length, repeat)
    plan = resolve_precision(settings.precision, device.type, bf16_native(device))
    run, facts = load_step(settings, data, device, plan, loader=loader_for(args.tiny))
    assert not facts["out_of_memory"], "out of memory while loading"
    assert inject_step(run)[1] is None
    assert prepare_step(run, data)[1] is None
    return run, data


def fmt(value, pattern="{:.1f}"):
    return "n/a" if value is None else pattern.format(value)


def telemetry_row(name, args, device):
    batch, length, synthetic = CONFIGS[name]
    run, data = prepared_run(args, device, batch, length, synthetic)
    eval_frame = data[data["split"] == "eval"]
    result = train_step_body(run, eval_frame, answer_token_budget(run.tokenizer, data["response"]))
    steps = result["train_records"]
    seconds = sum(r["seconds"] for r in steps)
    real = sum(r["real_tokens"] for r in steps)
    gpm = result["gpm"]
    means = gpm.means() if gpm is not None and gpm.available else {}
    achieved = mfu(real / seconds, result["flops_per_token"], result["peak_flops"])
    energy = result["energy_j"]
    row = {
        "config": f"{name} ({batch} x {length})",
        "steps": len(steps),
        "real tok/s": round(real / seconds),
        "FLOPs/token": result["flops_per_token"],
        "MFU %": fmt(None if achieved is None else 100 * achieved),
        "peak": result["peak_source"],
        "GPM windows/s": fmt(len(gpm.samples) / result["train_seconds"]) if means else "n/a",
        "J / 1M tokens": fmt(None if energy is None else energy / real * 1e6, "{:,.0f}"),
    }
    for key in GPM_FIELDS:
        value = means.get(key)
        if key.startswith("pcie_"):
            row[key.replace("_bytes_s", " MB/s")] = fmt(None if value is None else value / 1e6)
        else:
            row[key.replace("_pct", " %")] = fmt(value)
    if not means:
        row["GPM"] = "unavailable: " + ("no GPU" if gpm is None else gpm.unavailable_reason)
    save_step(run, Path(args.output) / name, eval_frame["prompt"].head(8).tolist())
    return row


def step_seconds(run, variant):
    """Median per-step seconds of one training epoch, with the variant's samplers running."""
    classic = device_sampler(run.device) if variant in ("classic", "both") else None
    gpm = GpmSampler([nvml_device_index(run.device)], hz=10) if variant == "both" else None
    if classic is not None:
        classic.__enter__()
    if gpm is not None:
        gpm.start()
    try:
        records = [r for r in train_steps(run) if r["kind"] == "train"]
    finally:
        if gpm is not None:
            gpm.stop()
        if classic is not None:
            classic.__exit__(None, None, None)
    group = run.speed.sync_every if run.speed.deferred else 1
    kept = records[1 + group :] or records  # the first step alone and the first group carry set-up
    return statistics.median(r["seconds"] for r in kept)


def overhead_rows(args, device):
    run, _ = prepared_run(args, device, 32, 512 if not args.tiny else 128, True, epochs=1, repeat=8)
    step_seconds(run, "none")  # warm: kernels, allocator, any compile
    times = {"none": [], "classic": [], "both": []}
    order = ["none", "classic", "both", "both", "classic", "none"]  # one round: each variant twice, mirrored
    rounds = {v: [] for v in times}
    for _ in range(args.repeats):
        this_round = {v: [] for v in times}
        for variant in order:
            this_round[variant].append(step_seconds(run, variant))
        for variant, values in this_round.items():
            times[variant] += values
            rounds[variant].append(statistics.median(values))
    run.release()
    rows = []
    for variant, values in times.items():
        row = {
            "samplers": variant,
            "rounds": len(rounds[variant]),
            "median ms/step": round(1000 * statistics.median(values), 3),
            "min-max ms": f"{1000 * min(values):.3f}-{1000 * max(values):.3f}",
        }
        if variant != "none":
            mid, low, high = paired_overhead(rounds[variant], rounds["none"])
            row["overhead %, paired (95%)"] = f"{100 * mid:+.2f} ({100 * low:+.2f} to {100 * high:+.2f})"
            row["verdict"] = verdict(low, high)
        rows.append(row)
    return rows


def print_table(rows):
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    sys.stdout.write(" | ".join(c.ljust(widths[c]) for c in columns) + "\n")
    for row in rows:
        sys.stdout.write(" | ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the app's tiny offline model (CPU check)")
    parser.add_argument("--configs", default="defaults,b32s512")
    parser.add_argument("--parts", default="runs,overhead")
    parser.add_argument("--repeats", type=int, default=8, help="rounds of the none/classic/both order")
    parser.add_argument("--output", default="/tmp/llm_telemetry_adapters")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sys.stdout.write(f"# llm_telemetry {stamp} | {card} | torch {torch.__version__}\n")
    out = {"card": card, "date": stamp}
    parts = args.parts.split(",")
    failed = False
    if "runs" in parts:
        rows = []
        for name in args.configs.split(","):
            try:
                rows.append(telemetry_row(name, args, device))
            except (torch.OutOfMemoryError, AssertionError) as error:  # one config's failure keeps the rest
                rows.append({"config": name, "error": f"{type(error).__name__}: {error}"})
                failed = True
        print_table(rows)
        out["runs"] = rows
    if "overhead" in parts:
        rows = overhead_rows(args, device)
        sys.stdout.write("# sampler overhead on a timed training step (target < 2% on the median)\n")
        print_table(rows)
        out["overhead"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
