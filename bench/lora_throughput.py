"""LoRA training throughput: the app's own training step against PEFT + Hugging Face Trainer, one card, one run.

What it measures (issue 4). Both sides train the same model with the same LoRA config on the same batches:
GPT-2 124M (`GPT2Config()`, random weights with the same seed on both sides: there is no hub on the GPU box),
LoRA r=16, alpha 32, dropout 0.05 on the modules named by --targets (default "c_attn,c_proj", PEFT's
suffix rule, which the app shares: in GPT-2 that is attn.c_attn, attn.c_proj AND mlp.c_proj; pass
"attn.c_attn,attn.c_proj" for attention only). The batches are synthetic: random token ids, labels = input
ids, attention mask all ones, every row the full length, so there is no padding and tokens/s counts every
position. Configs are batch x sequence length (default 4x128 and 32x512).

- "app plain | fast | compile": the notebook's path, imported from `llm_finetuning_dashboard.py` and driven as
  the app trains: `offline_gpt2` → `inject_lora` → `prepare_training` (AdamW on adapter parameters, warm-up/
  cosine schedule, GradScaler) → the `train_steps` generator, whose loader is replaced by the synthetic
  batches. FP16 frozen base, FP32 adapters, FP16 autocast, GradScaler, clipping at 1.0 on every path. The
  speed plan is fixed per row (the app's "auto" picks fast or compile by run length): plain = the reference
  loop (full logits, padding mask, host sync every step); fast = chunked LM-head loss on loss positions,
  no padding mask (flash SDPA), fused AdamW with the schedule on the device, read-back every 16 steps,
  one-kernel GELU; compile = fast + torch.compile of the transformer blocks (CUDA graphs at batch ≤ 8).
- "peft+trainer": `peft.get_peft_model` on `GPT2LMHeadModel` with `transformers.Trainer`, fp16=True (AMP:
  FP32 weights, FP16 autocast, GradScaler), lr 2e-4, its default optimizer, clipping at 1.0, sequential
  sampling over the same batches.

Timing is the same for every row: the first --warmup steps (default 17, which includes any compile) are
excluded, then --steps (default 48) run in windows of 16 steps with a CUDA synchronize at each window edge
only (syncing every step would stop the CPU queueing ahead, which neither the Trainer nor the fast path
does). ms/step = the median window's wall time ÷ 16 (min–max over windows beside it); tokens/s = batch ×
length ÷ ms/step; "first step s" shows the set-up and compile cost that the warm-up hides; peak =
`torch.cuda.max_memory_allocated` (reset before each run, after the previous one is freed). The speedup is
tokens/s ÷ baseline tokens/s. With --device cpu nothing runs in FP16 (the app falls back to FP32 and the
Trainer gets fp16=False): both sides are FP32 and the header says so.

On the GPU box (from the repo root):
    source bench/device_setup.sh && python3 bench/lora_throughput.py --json $OUT/lora.json
Local smoke check (tiny model, sizes 4x32 and 8x64, about a minute on 2 CPU cores):
    .venv/bin/python bench/lora_throughput.py --device cpu --tiny --steps 16 --warmup 1

Reference from the issue, for context: PEFT + Trainer FP16 on an H100 80GB HBM3 ≈ 119K tokens/s at
32x512 and ≈ 10.8K tokens/s at 4x128.
"""

import argparse
import copy
import dataclasses
import datetime
import gc
import inspect
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_pipeline import print_table, warm_up  # noqa: E402  (the sibling bench script; bench/ is sys.path[0])

from gpu_notebooks.llm_finetuning.lora import inject_lora
from gpu_notebooks.llm_finetuning.models import (
    architecture_targets,
    build_offline_tokenizer,
    offline_gpt2,
    offline_llama,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import bf16_native, resolve_precision, set_seed
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS, TrainSettings
from gpu_notebooks.llm_finetuning.speed import SYNC_EVERY, choose_speed_plan
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.training import (
    FineTuneRun,
    TrainingStopped,
    device_memory,
    prepare_training,
    train_steps,
)

MiB = 2**20
LEARNING_RATE = 2e-4
RANK, ALPHA, DROPOUT = 16, 32, 0.05
TINY_CONFIG = {"n_layer": 2, "n_embd": 64, "n_head": 2, "vocab_size": 1000}
# SmolLM2-135M's published shape (issue 15's reference): random weights, as there is no hub on the GPU box.
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
TINY_LLAMA_SHAPE = {**SMOLLM2_SHAPE, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2}
TINY_LLAMA_SHAPE |= {"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}


def parse_configs(text):
    """'4x128,32x512' → [(4, 128), (32, 512)]."""
    configs = []
    for item in text.split(","):
        batch, _, length = item.strip().lower().partition("x")
        configs.append((int(batch), int(length)))
    return configs


def synchronizer(device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def free_device(device):
    """Collect garbage and hand cached blocks back, then restart the peak counter for the next run."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def synthetic_batches(count, batch_size, length, vocab_size, seed):
    """`count` identical-shape batches of random ids on the CPU (as a DataLoader would yield them)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (count, batch_size, length), generator=generator)
    return [
        {"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]), "labels": ids[i].clone()}
        for i in range(count)
    ]


class RowDataset(torch.utils.data.Dataset):
    """The synthetic batches as rows, in order: with sequential sampling the Trainer rebuilds the same batches."""

    def __init__(self, batches):
        self.rows = [
            {key: value[row] for key, value in b.items()}
            for b in batches
            for row in range(len(b["input_ids"]))
        ]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


class StepTimer(TrainerCallback):
    """Host time at the end of every optimizer step, with a CUDA synchronize only at window edges.

    Syncing after every step would stop the CPU from queueing the next step while the GPU works, which
    is not how the Trainer runs; so the clock is synchronized only at the window edges (`sync_at`, step
    numbers counted from 1), where a window's wall time then covers every kernel of its steps.
    """

    def __init__(self, device, sync_at):
        self.synchronize = synchronizer(device)
        self.sync_at = set(sync_at)
        self.seconds, self.ends, self.skipped = [], [], []
        self.trainer = None
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if len(self.ends) + 1 in self.sync_at:
            self.synchronize()
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self.ends.append(now)
        self._last = now
        self.skipped.append(bool(self.trainer and self.trainer.accelerator.optimizer_step_was_skipped))


def model_config(args, vocab_size):
    """GPT2Config() (124M), SmolLM2-135M's LlamaConfig (--arch llama), or their tiny smoke-check configs."""
    if args.arch == "llama":
        shape = TINY_LLAMA_SHAPE if args.tiny else SMOLLM2_SHAPE
        return LlamaConfig(**{**shape, "vocab_size": max(shape["vocab_size"], vocab_size)})
    if args.tiny:
        return GPT2Config(**{**TINY_CONFIG, "vocab_size": max(TINY_CONFIG["vocab_size"], vocab_size)})
    return GPT2Config()


def run_app_setup(batches, config, args, device, tokenizer, speed="plain", mode=""):
    """The app's path: offline_gpt2 → inject_lora → prepare_training, its loader replaced by the batches.

    Returns (run, the inject_lora table, device memory allocated before the model was built).

    `speed` is the app's SpeedPlan choice (plain / fast / compile), fixed here rather than left to "auto".
    """
    batch_size, length = batches[0]["input_ids"].shape
    llama = args.arch == "llama"
    settings = TrainSettings(
        model_source="tiny-llama" if llama else "gpt2",
        # the app's "auto": BF16 for the Llama family where it is native, FP16 + GradScaler for GPT-2
        precision="bf16" if llama and bf16_native(device) else "fp16",
        rank=RANK,
        alpha=ALPHA,
        dropout=DROPOUT,
        target_modules=tuple(args.targets),
        learning_rate=LEARNING_RATE,
        epochs=1,
        batch_size=batch_size,
        max_length=length,
        seed=args.seed,
        speed=speed,
    )
    set_seed(settings.seed)
    plan = resolve_precision(settings.precision, device.type, bf16_native(device))
    before = device_memory(device)["allocated"]
    build = offline_llama if llama else offline_gpt2
    model = build(tokenizer, copy.deepcopy(config), seed=settings.seed).to(
        device=device, dtype=plan.param_dtype
    )
    run = FineTuneRun(
        settings=settings,
        device=device,
        plan=plan,
        model=model,
        tokenizer=tokenizer,
        model_name=("smollm2-135M-shape-random" if llama else "gpt2-124M-random")
        if not args.tiny
        else "tiny-random",
        memory_baseline=before,
    )
    del model
    if llama:  # the chosen roles in Llama's layer names, as the app's step 3 maps them
        settings = dataclasses.replace(
            settings, target_modules=architecture_targets(run.model, settings.target_modules)
        )
        run.settings = settings
    run.speed = choose_speed_plan(speed, device.type)
    if mode and run.speed.compile:
        run.speed = dataclasses.replace(run.speed, compile_mode=mode)
    wrapped = inject_lora(run.model, settings.target_modules, settings.rank, settings.alpha, settings.dropout)
    # The app's own optimizer, scheduler and scaler; its loaders (built from the built-in data) are replaced.
    frame = builtin_examples()
    prepare_training(run, frame[frame["split"] == "train"], frame[frame["split"] == "eval"])
    run.train_loader, run.eval_loader = batches, []
    run.total_steps = len(
        batches
    )  # the scheduler's lambda reads it; the learning rate does not change the cost
    return run, wrapped, before


def run_app(batches, config, args, device, tokenizer, speed="plain"):
    """Time the app's train_steps over the batches (see run_app_setup)."""
    run, wrapped, before = run_app_setup(batches, config, args, device, tokenizer, speed)
    plan = run.plan
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    attn_impl = getattr(run.model.config, "_attn_implementation", None)
    seconds, ends, skipped = [], [], []
    try:
        for record in train_steps(run):
            if record["kind"] != "train":
                break
            ends.append(time.perf_counter())
            seconds.append(record["seconds"])
            skipped.append(bool(record["skipped"]))
            if len(seconds) == len(batches):
                break  # skip the end-of-epoch evaluation
        error = None
    except TrainingStopped as stopped:
        error = stopped.reason
    synchronizer(device)()
    peak = device_memory(device)["peak"]
    run.release()
    return {
        "precision": plan.name
        + f" · {run.speed.name}"
        + (f" ({run.speed.compile_mode})" if run.speed.compile else ""),
        "seconds": seconds,
        "ends": ends,
        "skipped": skipped,
        "peak": peak,
        "allocated_before": before,
        "trainable": trainable,
        "modules": sorted(wrapped["module"]),
        "attn_impl": attn_impl,
        "error": error,
    }


def run_baseline(batches, config, args, device):
    """PEFT LoRA + transformers.Trainer (FP16 AMP on CUDA, FP32 on CPU) over the same batches."""
    batch_size, _ = batches[0]["input_ids"].shape
    before = device_memory(device)["allocated"]
    torch.manual_seed(args.seed)  # the same init as offline_gpt2 / offline_llama(seed) on the app side
    llama = args.arch == "llama"
    base = (LlamaForCausalLM if llama else GPT2LMHeadModel)(copy.deepcopy(config))
    lora = LoraConfig(
        r=RANK,
        lora_alpha=ALPHA,
        lora_dropout=DROPOUT,
        target_modules=list(architecture_targets(base, args.targets)) if llama else list(args.targets),
        fan_in_fan_out=not llama,  # GPT-2's Conv1D stores weights [in, out]; Llama's nn.Linear [out, in]
        task_type="CAUSAL_LM",
    )
    bf16 = llama and bf16_native(device)
    model = get_peft_model(base, lora)
    del base
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    modules = sorted(
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if isinstance(module, peft.tuners.lora.LoraLayer)
    )
    timer = StepTimer(device, window_edges(args.warmup, args.steps, args.window))
    with tempfile.TemporaryDirectory() as tmp:
        # Sequential sampling rebuilds the app's exact batches; a transformers without the option samples the
        # same rows at random (same shapes, same cost).
        ordered = "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters
        training_args = TrainingArguments(
            output_dir=tmp,
            fp16=device.type == "cuda" and not bf16,
            bf16=bf16,
            use_cpu=device.type == "cpu",
            per_device_train_batch_size=batch_size,
            max_steps=len(batches),
            learning_rate=LEARNING_RATE,
            max_grad_norm=1.0,
            logging_steps=10**6,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            remove_unused_columns=False,
            disable_tqdm=True,
            seed=args.seed,
            **({"train_sampling_strategy": "sequential"} if ordered else {}),
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=RowDataset(batches),
            data_collator=default_data_collator,
            callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)  # it would print the end-of-training metrics dict
        timer.trainer = trainer
        del model
        error = None
        try:
            trainer.train()
        except torch.OutOfMemoryError as exc:
            error = f"out of memory: {exc}".splitlines()[0]
        synchronizer(device)()
        peak = device_memory(device)["peak"]
        attn_impl = getattr(trainer.model.config, "_attn_implementation", None)
        trainer.accelerator.free_memory()
        trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
        del trainer
    timer.trainer = None
    return {
        "precision": ("BF16 AMP (Trainer bf16=True)" if bf16 else "FP16 AMP (Trainer fp16=True)")
        if device.type == "cuda"
        else "FP32 (CPU)",
        "seconds": timer.seconds,
        "ends": timer.ends,
        "skipped": timer.skipped,
        "peak": peak,
        "allocated_before": before,
        "trainable": trainable,
        "modules": modules,
        "attn_impl": attn_impl,
        "error": error,
        "same_batch_order": ordered,
    }


def window_edges(warmup, steps, window):
    """Step numbers (from 1) that close a timing window: warmup, warmup + window, ... (all synchronized)."""
    return list(range(warmup, warmup + steps + 1, window))


def summarize(result, warmup, steps, window, tokens_per_step):
    """Per-step time of each window (wall time between synchronized edges ÷ its steps): median, min, max."""
    ends = result["ends"]
    edges = [e for e in window_edges(warmup, steps, window) if e <= len(ends)]
    per_step = [(ends[b - 1] - ends[a - 1]) / (b - a) for a, b in zip(edges, edges[1:], strict=False)]
    if not per_step:
        return None
    median = statistics.median(per_step)
    return {
        "steps": edges[-1] - edges[0],
        "windows": len(per_step),
        "median_ms": median * 1e3,
        "min_ms": min(per_step) * 1e3,
        "max_ms": max(per_step) * 1e3,
        "tokens_per_s": tokens_per_step / median,
        "skipped_measured": sum(result["skipped"][warmup:]),
        "skipped_warmup": sum(result["skipped"][:warmup]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide GPT-2 for a CPU smoke check")
    ap.add_argument("--steps", type=int, default=3 * SYNC_EVERY, help="measured steps (after warm-up)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=1 + SYNC_EVERY,
        help="steps run first and excluded; 1 + k·window puts the edges where the app's fast path syncs",
    )
    ap.add_argument("--configs", default=None, help="BxS list; default 4x128,32x512 (--tiny: 4x32,8x64)")
    ap.add_argument(
        "--targets", default=None, help="LoRA targets (PEFT's suffix rule); default c_attn,c_proj"
    )
    ap.add_argument(
        "--arch",
        choices=["gpt2", "llama"],
        default="gpt2",
        help="llama: SmolLM2-135M's shape (LoRA on all seven linear types, BF16 where native)",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--apps",
        default="plain,fast,compile",
        help="the app's speed plans to time beside the baseline (plain, fast, compile)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write meta, rows and raw step times here")
    args = ap.parse_args()
    default_targets = ",".join(ALL_TARGETS) if args.arch == "llama" else "c_attn,c_proj"
    args.targets = [t.strip() for t in (args.targets or default_targets).split(",") if t.strip()]
    args.apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    args.window = SYNC_EVERY
    if (args.warmup - 1) % args.window or args.steps % args.window:
        sys.exit(f"--warmup must be 1 + a multiple of {args.window} and --steps a multiple of {args.window}")
    configs = parse_configs(args.configs or ("4x32,8x64" if args.tiny else "4x128,32x512"))

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("CUDA requested but torch sees no GPU; use --device cpu --tiny for a local check")
        device = torch.device("cuda", torch.cuda.current_device())
    transformers.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    for category in (UserWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)

    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    config = model_config(args, len(tokenizer))
    vocab_size = max(config.vocab_size, len(tokenizer))  # what offline_gpt2 builds; the baseline matches it
    config.vocab_size = vocab_size
    config.bos_token_id = config.eos_token_id = config.pad_token_id = (
        tokenizer.eos_token_id
    )  # as offline_gpt2
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    meta = {
        "card": card,
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "model": ("tiny " if args.tiny else "")
        + (
            "SmolLM2-135M shape (LlamaConfig), random weights"
            if args.arch == "llama"
            else "GPT2Config() 124M"
        )
        + (" (smoke check)" if args.tiny else ", random weights"),
        "n_layer": getattr(config, "n_layer", None) or config.num_hidden_layers,
        "n_embd": getattr(config, "n_embd", None) or config.hidden_size,
        "vocab_size": vocab_size,
        "lora": {"r": RANK, "alpha": ALPHA, "dropout": DROPOUT, "targets": args.targets},
        "learning_rate": LEARNING_RATE,
        "warmup_steps": args.warmup,
        "measured_steps": args.steps,
        "seed": args.seed,
    }
    print(f"# LoRA training throughput — {card} — {meta['date_utc']}")
    print(
        f"# torch {torch.__version__} (CUDA {torch.version.cuda}) | transformers {transformers.__version__} "
        f"| peft {peft.__version__}"
    )
    print(
        f"# model: {meta['model']} (n_layer {meta['n_layer']}, n_embd {meta['n_embd']}, vocab {vocab_size}) "
        f"| LoRA r={RANK} alpha={ALPHA} dropout={DROPOUT} on {args.targets} | lr {LEARNING_RATE}"
    )
    if device.type == "cpu":
        print(
            "# CPU run: no FP16 on either side — the app falls back to FP32, the Trainer runs with fp16=False"
        )
    print(
        f"# {args.warmup} warm-up steps excluded; {args.steps} measured steps in windows of {args.window} "
        "(CUDA synchronize at each window edge only); ms/step = median window's wall time ÷ its steps; synthetic batches "
        "(random ids, no padding): tokens/s counts every position"
    )
    warm_up(device)

    rows, raw, speedups = [], [], []
    for batch_size, length in configs:
        batches = synthetic_batches(args.warmup + args.steps, batch_size, length, vocab_size, args.seed)
        tokens_per_step = batch_size * length
        label = f"{batch_size}x{length}"
        results = {}
        runners = [("peft+trainer", lambda b=batches: run_baseline(b, config, args, device))]
        for speed in args.apps:
            runners.append(
                (f"app {speed}", lambda b=batches, sp=speed: run_app(b, config, args, device, tokenizer, sp))
            )
        for name, runner in runners:
            free_device(device)
            result = runner()
            free_device(device)
            result["summary"] = summarize(result, args.warmup, args.steps, args.window, tokens_per_step)
            results[name] = result
            raw.append({"config": label, "implementation": name, **result})
        base = results["peft+trainer"]
        for name, app in results.items():
            if name != "peft+trainer" and (
                base["modules"] != app["modules"] or base["trainable"] != app["trainable"]
            ):
                print(
                    f"# WARNING {label}: the two sides differ — PEFT wraps {len(base['modules'])} modules "
                    f"({base['trainable']:,} trainable), {name} {len(app['modules'])} ({app['trainable']:,})"
                )
        base_tps = base["summary"]["tokens_per_s"] if base["summary"] else None
        for name, result in results.items():
            s = result["summary"]
            row = {
                "config (BxS)": label,
                "implementation": name,
                "precision": result["precision"],
                "tokens/s": f"{s['tokens_per_s']:,.0f}" if s else "—",
                "ms/step median": f"{s['median_ms']:.2f}" if s else "—",
                "ms/step min–max": f"{s['min_ms']:.2f}–{s['max_ms']:.2f}" if s else "—",
                "first step s": f"{result['seconds'][0]:.2f}" if result["seconds"] else "—",
                "peak MiB": f"{result['peak'] / MiB:,.0f}" if device.type == "cuda" else "n/a (CPU)",
                "vs baseline": f"{s['tokens_per_s'] / base_tps:.2f}x" if s and base_tps else "—",
                "LoRA modules / trainable": f"{len(result['modules'])} / {result['trainable']:,}",
            }
            if result["error"]:
                row["tokens/s"] = f"stopped: {result['error'][:60]}"
            rows.append(row)
        for name, app in results.items():
            if name == "peft+trainer" or not (app["summary"] and base["summary"]):
                continue
            speedup = app["summary"]["tokens_per_s"] / base["summary"]["tokens_per_s"]
            memory = app["peak"] / base["peak"] if device.type == "cuda" and base["peak"] else None
            speedups.append(
                f"{label} {name}: ÷ PEFT+Trainer tokens/s = {speedup:.2f}x"
                + (f"; peak memory ÷ baseline = {memory:.2f}" if memory else "")
                + f"; GradScaler skips in measured steps: {app['summary']['skipped_measured']} "
                f"(baseline {base['summary']['skipped_measured']})"
                + ("" if base["same_batch_order"] else "; the Trainer drew the same rows in random order")
            )
        for name, result in results.items():
            if result["allocated_before"] > 64 * MiB:
                print(
                    f"# WARNING {label} {name}: {result['allocated_before'] / MiB:.0f} MiB held before the run"
                )
    print()
    print_table(rows)
    print()
    for line in speedups:
        print(f"- {line}")
    if args.json:
        for entry in raw:
            entry.pop("ends")
            entry["ms_per_step"] = [round(s * 1e3, 4) for s in entry.pop("seconds")]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "runs": raw}, indent=2, default=str))


if __name__ == "__main__":
    main()
