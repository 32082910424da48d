# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "marimo==0.25.2",
#     "torch>=2.4",
#     "transformers>=5,<6",
#     "tokenizers>=0.20",
#     "peft>=0.17",
#     "safetensors>=0.4",
#     "pandas>=3.0",
#     "altair>=6,<7",
#     "nvidia-ml-py>=12",
#     "psutil>=5.9",
# ]
# ///
"""Fine-tune GPT-2 with LoRA in FP16: seven visible steps, evaluated before/after, saved in PEFT's format."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="GPT-2 LoRA fine-tuning")

with app.setup:
    import contextlib
    import gc
    import hashlib
    import io
    import itertools
    import json
    import math
    import os
    import random
    import re
    import socket
    import sys
    import tempfile
    import threading
    import time
    import traceback
    import types
    import warnings
    import zipfile
    from dataclasses import dataclass, replace
    from pathlib import Path

    # Every session of `marimo run` is a thread of one server process running this block. Tabs opened at the
    # same moment would import torch and transformers for the first time concurrently, and a thread can then
    # see a partially initialised module (`cannot import name 'AutoConfig'`): one process-wide lock, created
    # atomically in sys.modules, makes the first import happen once while the others wait for it.
    _import_guard = sys.modules.setdefault(
        "gpu_notebooks_import_lock", types.ModuleType("gpu_notebooks_import_lock")
    )
    with _import_guard.__dict__.setdefault("lock", threading.RLock()):
        import altair as alt
        import marimo as mo
        import pandas as pd
        import psutil
        import torch
        from safetensors.torch import save_file
        from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
        from tokenizers import models as tokenizer_models
        from torch import nn
        from torch.nn import functional as F
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoTokenizer,
            GPT2Config,
            GPT2LMHeadModel,
            LlamaConfig,
            LlamaForCausalLM,
            PreTrainedTokenizerFast,
        )
        from transformers.pytorch_utils import Conv1D

    # `marimo export html app.py -- --smoke` → cli_args; `python app.py --smoke` → argv; a plain import → False.
    CLI_FLAGS = (
        set(mo.cli_args())
        if mo.running_in_notebook()
        else {a[2:] for a in sys.argv[1:] if a.startswith("--")}
    )
    SMOKE = "smoke" in CLI_FLAGS
    # Option values: `-- --smoke --model tiny-llama` → {"smoke": "", "model": "tiny-llama"}.
    _argv = sys.argv[1:]
    CLI_OPTIONS = (
        {k: str(v) for k, v in mo.cli_args().items()}
        if mo.running_in_notebook()
        else {
            a[2:]: (_argv[i + 1] if i + 1 < len(_argv) and not _argv[i + 1].startswith("--") else "")
            for i, a in enumerate(_argv)
            if a.startswith("--")
        }
    )
    PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n### Response:\n"
    EOS_TOKEN = "<|endoftext|>"
    TINY_MODEL_NAME = "tiny-offline-gpt2"
    TINY_LLAMA_NAME = "tiny-offline-llama"
    # The architectures the app trains (config.model_type): GPT-2 and the Llama family (Llama, Qwen2, Mistral
    # share q/k/v/o_proj attention and a gate/up/down SwiGLU MLP).
    LLAMA_FAMILY = ("llama", "qwen2", "mistral")
    # LoRA targets are chosen by role; each architecture names its layers for the role differently.
    TARGET_NAMES = {
        "gpt2": {
            "attn.c_attn": ("attn.c_attn",),
            "attn.c_proj": ("attn.c_proj",),
            "mlp.c_fc": ("mlp.c_fc",),
            "mlp.c_proj": ("mlp.c_proj",),
        },
        "llama": {
            "attn.c_attn": ("q_proj", "k_proj", "v_proj"),
            "attn.c_proj": ("o_proj",),
            "mlp.c_fc": ("gate_proj", "up_proj"),
            "mlp.c_proj": ("down_proj",),
        },
    }
    TINY_INIT_RANGE = 0.1
    ALL_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    GPT2_FAMILY = {  # published architectures, so plans need no download
        "gpt2": {"n_layer": 12, "n_head": 12, "n_embd": 768},
        "distilgpt2": {"n_layer": 6, "n_head": 12, "n_embd": 768},
        "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024},
    }
    TORCH_VERSION = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    SYNC_EVERY = 16  # fast path: loss and grad norm come back to the host once per this many steps
    # Measured on an NVIDIA H100 80GB HBM3, 2026-11-26 (notes/BENCHMARKS.md, "Training speed (issue 4)" and
    # "The issue's own target set"; GPT-2 124M, LoRA r=16, FP16 + GradScaler, bench/lora_throughput.py).
    FAST_PATH_MEASURED_ON = "NVIDIA H100 80GB HBM3, 2026-11-26"
    # (LoRA targets, batch, length, eager fast ms/step, compiled ms/step, first compiled step in s)
    COMPILE_MEASUREMENTS = (
        ("attn.c_attn, attn.c_proj (24 modules)", 4, 128, 20.4, 5.1, 24.4),
        ("attn.c_attn, attn.c_proj (24 modules)", 32, 512, 44.6, 32.75, 21.8),
        ("c_attn, c_proj by PEFT's suffix rule (36 modules)", 4, 128, 39.4, 6.8, 30.6),
        ("c_attn, c_proj by PEFT's suffix rule (36 modules)", 32, 512, 52.0, 37.4, 46.6),
    )
    # (batch, length, {implementation: tokens/s}, {implementation: peak MiB}), attention targets (24 modules)
    THROUGHPUT_MEASUREMENTS = (
        (4, 128, {"PEFT + Trainer": 12_646, "plain": 16_794, "fast": 25_083, "fast + compile": 100_078}, {}),
        (
            32,
            512,
            {"PEFT + Trainer": 128_188, "plain": 123_791, "fast": 367_261, "fast + compile": 500_310},
            {"PEFT + Trainer": 21_757, "fast": 6_166, "fast + compile": 6_581},
        ),
    )
    # auto compiles a run only when it is at least as long as every measured break-even above
    # (compile_break_even: 939 to 3,190 steps; 52.3M tokens at 32 × 512), rounded up; a test checks this.
    COMPILE_PAYS_AFTER_TOKENS = 53_000_000
    COMPILE_PAYS_AFTER_STEPS = 3_200
    LOSS_CHUNK_BYTES = (
        2**29
    )  # FP32 probabilities of one loss chunk: 512 MiB (2,560 rows of GPT-2's vocabulary)
    LOSS_GRAD_SCALE = 1024.0
    SPEED_CHOICES = {
        "auto (fast; compile when it pays)": "auto",
        "fast (eager)": "fast",
        "fast + torch.compile": "compile",
        "plain (reference loop)": "plain",
    }
    UPLOAD_MAX_BYTES = 5_000_000
    # The machine-wide GPU lock file both apps take; GPU_NOTEBOOKS_LOCK_PATH overrides it (the tests do).
    GPU_LOCK_DEFAULT_PATH = os.path.join(tempfile.gettempdir(), "gpu-learning-notebooks.lock")
    GPM_FIELDS = {  # GpmSampler's sample keys → pynvml's NVML_GPM_METRIC_* names (shared with the RAPIDS app)
        "sm_active_pct": "NVML_GPM_METRIC_SM_UTIL",
        "sm_occupancy_pct": "NVML_GPM_METRIC_SM_OCCUPANCY",
        "tensor_active_pct": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
        "hmma_active_pct": "NVML_GPM_METRIC_HMMA_TENSOR_UTIL",
        "dram_bw_pct": "NVML_GPM_METRIC_DRAM_BW_UTIL",
        "pcie_rx_bytes_s": "NVML_GPM_METRIC_PCIE_RX_PER_SEC",
        "pcie_tx_bytes_s": "NVML_GPM_METRIC_PCIE_TX_PER_SEC",
    }
    # Dense (no sparsity) Tensor Core peaks in TFLOPS from NVIDIA's datasheets, by name as torch reports it;
    # bf16 None: no BF16 Tensor Cores. Datasheet figures, not measurements: MFU is relative to these.
    DENSE_PEAK_TFLOPS = (
        (("H200 NVL",), {"fp16": 835.0, "bf16": 835.0}),
        (("H200",), {"fp16": 989.4, "bf16": 989.4}),
        (("H100 PCIe",), {"fp16": 756.0, "bf16": 756.0}),
        (("H100 NVL",), {"fp16": 835.0, "bf16": 835.0}),
        (("H100",), {"fp16": 989.4, "bf16": 989.4}),  # SXM5 ("NVIDIA H100 80GB HBM3")
        (("A100",), {"fp16": 312.0, "bf16": 312.0}),
        (("L40S",), {"fp16": 362.05, "bf16": 362.05}),
        (("L4",), {"fp16": 121.0, "bf16": 121.0}),
        (("V100",), {"fp16": 125.0, "bf16": None}),
        (("T4",), {"fp16": 65.0, "bf16": None}),
    )
    # Peak memory bandwidth in TB/s from NVIDIA's datasheets, matched like DENSE_PEAK_TFLOPS (first match wins):
    # with those peaks it gives a card's roofline ridge point. Datasheet figures, not measurements.
    MEMORY_BANDWIDTH_TBS = (
        (("H200 NVL",), 4.8),
        (("H200",), 4.8),
        (("H100 PCIe",), 2.0),
        (("H100 NVL",), 3.9),
        (("H100",), 3.35),  # SXM5
        (("A100-SXM4-80GB",), 2.039),
        (("A100 80GB PCIe",), 1.935),
        (("A100",), 1.555),  # the 40 GB cards
        (("L40S",), 0.864),
        (("L4",), 0.3),
        (("V100",), 0.9),
        (("T4",), 0.32),
    )
    ADAPTERS_KEPT = 5  # adapter folders one server process keeps; older ones it wrote are deleted
    UPLOAD_MAX_CHARS = 2_000
    UPLOAD_MIN_ROWS = 10
    UPPERCASE_WORDS = (
        "garden",
        "river",
        "planet",
        "window",
        "silver",
        "forest",
        "candle",
        "rocket",
        "pepper",
        "castle",
        "orange",
        "bridge",
        "summer",
        "pencil",
        "basket",
        "dragon",
        "jacket",
        "marble",
        "violin",
        "meadow",
        "harbor",
        "lantern",
        "tunnel",
        "falcon",
        "velvet",
    )
    REVERSE_WORDS = (
        "lemon",
        "table",
        "cloud",
        "stone",
        "music",
        "tiger",
        "apple",
        "piano",
        "ocean",
        "flame",
        "grape",
        "horse",
        "chair",
        "brick",
        "light",
        "sugar",
        "zebra",
        "crown",
        "mango",
        "honey",
        "storm",
        "pearl",
        "cabin",
        "eagle",
        "olive",
    )
    CAPITALS = (
        ("France", "Paris"),
        ("Germany", "Berlin"),
        ("Italy", "Rome"),
        ("Spain", "Madrid"),
        ("Portugal", "Lisbon"),
        ("Japan", "Tokyo"),
        ("Canada", "Ottawa"),
        ("Egypt", "Cairo"),
        ("Kenya", "Nairobi"),
        ("Peru", "Lima"),
        ("Norway", "Oslo"),
        ("Sweden", "Stockholm"),
        ("Greece", "Athens"),
        ("Poland", "Warsaw"),
        ("Austria", "Vienna"),
        ("Ireland", "Dublin"),
        ("Chile", "Santiago"),
        ("Cuba", "Havana"),
        ("Russia", "Moscow"),
        ("Thailand", "Bangkok"),
        ("Argentina", "Buenos Aires"),
        ("Hungary", "Budapest"),
        ("Finland", "Helsinki"),
        ("Denmark", "Copenhagen"),
        ("Belgium", "Brussels"),
    )
    SENTIMENTS = (  # alternating labels, so every-fifth-row evaluation sees both
        ("The soup was wonderful.", "positive"),
        ("The soup was cold and bland.", "negative"),
        ("I loved every minute of the film.", "positive"),
        ("I hated the ending of the film.", "negative"),
        ("The staff were friendly and helpful.", "positive"),
        ("The staff were rude to us.", "negative"),
        ("This phone works perfectly.", "positive"),
        ("This phone broke after a day.", "negative"),
        ("What a delightful little book.", "positive"),
        ("What a boring and tedious book.", "negative"),
        ("The concert was amazing.", "positive"),
        ("The concert was a total disaster.", "negative"),
        ("My new shoes are very comfortable.", "positive"),
        ("My new shoes hurt my feet.", "negative"),
        ("The hotel room was spotless.", "positive"),
        ("The hotel room was dirty.", "negative"),
        ("A brilliant and moving story.", "positive"),
        ("A dull and confusing story.", "negative"),
        ("The garden looks beautiful in spring.", "positive"),
        ("The train was late again.", "negative"),
        ("Great value and fast delivery.", "positive"),
        ("Terrible service and slow delivery.", "negative"),
        ("The teacher explained everything clearly.", "positive"),
        ("The lecture was painfully long.", "negative"),
        ("I enjoyed the hike very much.", "positive"),
    )
    UNIT_CONVERSIONS = (
        ("km", "metres", 1000, "m"),
        ("kg", "grams", 1000, "g"),
        ("m", "centimetres", 100, "cm"),
        ("hours", "minutes", 60, "min"),
        ("minutes", "seconds", 60, "s"),
    )
    ANTONYMS = (
        ("hot", "cold"),
        ("big", "small"),
        ("fast", "slow"),
        ("happy", "sad"),
        ("up", "down"),
        ("open", "closed"),
        ("early", "late"),
        ("full", "empty"),
        ("hard", "soft"),
        ("rich", "poor"),
        ("strong", "weak"),
        ("young", "old"),
        ("wet", "dry"),
        ("loud", "quiet"),
        ("high", "low"),
        ("long", "short"),
        ("thick", "thin"),
        ("clean", "dirty"),
        ("near", "far"),
        ("inside", "outside"),
        ("win", "lose"),
        ("first", "last"),
        ("push", "pull"),
        ("buy", "sell"),
        ("day", "night"),
    )
    OUTPUT_ROOT = Path(
        os.environ.get("LLM_DASHBOARD_OUTPUT_DIR")
        or (mo.notebook_dir() or Path.cwd()) / "outputs" / "adapters"
    )
    MODEL_CHOICES = {
        "gpt2 (124M)": "gpt2",
        "distilgpt2 (82M)": "distilgpt2",
        "gpt2-medium (355M)": "gpt2-medium",
        "local directory": "local",
        "tiny offline GPT-2 (no download)": "tiny",
        "tiny offline Llama (GQA, RoPE, SwiGLU; no download)": "tiny-llama",
        "SmolLM2-135M (Llama)": "HuggingFaceTB/SmolLM2-135M",
        "SmolLM2-135M-Instruct (Llama, chat)": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "Qwen2.5-0.5B": "Qwen/Qwen2.5-0.5B",
        "Qwen2.5-0.5B-Instruct (chat)": "Qwen/Qwen2.5-0.5B-Instruct",
        "Llama-3.2-1B (gated: needs HF_TOKEN)": "meta-llama/Llama-3.2-1B",
        "Llama-3.2-1B-Instruct (gated, chat)": "meta-llama/Llama-3.2-1B-Instruct",
    }
    PRECISION_CHOICES = {
        "auto (FP16 + GradScaler for GPT-2; BF16 for Llama-family on CC ≥ 8.0)": "auto",
        "FP16 + GradScaler": "fp16",
        "BF16": "bf16",
        "FP32": "fp32",
    }
    TARGET_CHOICES = {  # by role; GPT-2's names, mapped to each architecture's own by TARGET_NAMES
        "attention q, k, v (GPT-2 c_attn; Llama q/k/v_proj)": "attn.c_attn",
        "attention output (c_proj; o_proj)": "attn.c_proj",
        "MLP up (c_fc; gate_proj + up_proj)": "mlp.c_fc",
        "MLP down (c_proj; down_proj)": "mlp.c_proj",
    }
    LEARNING_RATES = ["auto", "5e-5", "1e-4", "2e-4", "5e-4", "1e-3", "2e-3", "3e-3", "5e-3", "1e-2"]
    EPOCH_CHOICES = ["auto", "1", "2", "3", "5", "8", "10", "15", "20", "30"]
    DATA_CHOICES = {"built-in (200 examples)": "builtin", "upload": "upload", "hub dataset": "hub"}
    ANSWER_FORMATS = {  # the fixed answer shape of each built-in task (format match before vs after)
        "arithmetic": r"Answer: \d+",
        "uppercase": r"[A-Z]+",
        "reverse": r"[a-z]+",
        "capital": r"[A-Z][a-z]+( [A-Z][a-z]+)*",
        "sentiment": r"positive|negative",
        "units": r"\d+ (m|g|cm|min|s)",
        "antonym": r"[a-z]+",
        "parity": r"even|odd",
    }


@app.cell(hide_code=True)
def _(planned, settings, why):
    mo.md(intro_text(why, settings.model_source, dtype_name(planned["plan"].param_dtype)))
    return


@app.cell
def _():
    environment = describe_environment()
    # A background thread, once per process: the first Train click is as fast as later ones. Step 1 reads
    # `warm_up`, so this cell always runs before it (also in a headless --smoke run).
    warm_up = (
        start_warm_up(torch.device("cuda"))
        if environment["cuda_available"] and "no-warmup" not in CLI_FLAGS
        else {}
    )
    return environment, warm_up


@app.cell(hide_code=True)
def _(environment):
    if environment["cuda_available"]:
        _device_card = mo.stat(
            environment["gpu"].replace("NVIDIA ", ""),
            label="GPU (torch + NVML)",
            caption=f"{environment['gpu_memory_gib']:.0f} GiB · CC {environment['compute_capability']}"
            f" · driver {environment.get('driver', 'n/a')} · CUDA {environment['cuda']}",
            bordered=True,
        )
        _note = None
    else:
        _device_card = mo.stat(
            "CPU only", label="device", caption="no CUDA GPU visible to torch", bordered=True
        )
        _note = mo.callout(
            mo.md(
                "**No CUDA GPU here, so everything runs on the CPU.** The settings default to the *tiny "
                "offline GPT-2* in FP32 (a run of seconds to minutes); FP16 would fall back to FP32 (explained "
                "in step 1). The steps, the adapter and the PEFT format are the same as on a GPU."
            ),
            kind="info",
        )
    mo.vstack(
        [
            mo.hstack(
                [
                    _device_card,
                    mo.stat(f"{environment['cpu_cores']} cores", label="CPU", bordered=True),
                    mo.stat(f"{environment['ram_gib']:.0f} GiB", label="RAM", bordered=True),
                    mo.stat(f"torch {environment['torch']}", label="framework", bordered=True),
                ],
                widths="equal",
            ),
            _note,
        ]
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Settings

    What you set below is what **Train** uses: there is no separate apply step (the data preview and the
    explanations follow each change). *auto* picks a learning rate and epoch count for the model that
    actually loads. Without a GPU the defaults are the tiny offline GPT-2 in FP32.
    """)
    return


@app.cell
def _(environment):
    _defaults = default_choices(environment["cuda_available"])
    settings_controls = mo.md(r"""
        **Model and precision** — {model} {precision}
        {local_dir}

        **LoRA** — {rank} {alpha} {dropout}
        {targets}

        **Optimization** — {learning_rate} {warmup_pct} {epochs}
        {batch_size} {max_length} {seed} {speed}

        **Data** — {data_source} {upload}
        {hub_dataset} {prompt_column} {response_column} {hub_split} {max_rows}
        """).batch(
        model=mo.ui.dropdown(MODEL_CHOICES, value=_defaults["model"], label="model source"),
        local_dir=mo.ui.text(placeholder="/path/to/a/gpt2/folder", label="local directory", full_width=True),
        precision=mo.ui.dropdown(PRECISION_CHOICES, value=_defaults["precision"], label="precision"),
        rank=mo.ui.slider(steps=[4, 8, 16, 32, 64], value=8, show_value=True, debounce=True, label="rank r"),
        alpha=mo.ui.slider(
            steps=[4, 8, 16, 32, 64, 128], value=16, show_value=True, debounce=True, label="alpha"
        ),
        dropout=mo.ui.slider(0.0, 0.3, 0.05, value=0.05, show_value=True, debounce=True, label="dropout"),
        targets=mo.ui.multiselect(TARGET_CHOICES, value=list(TARGET_CHOICES), label="target modules"),
        learning_rate=mo.ui.dropdown(LEARNING_RATES, value="auto", label="learning rate"),
        warmup_pct=mo.ui.slider(
            0, 30, 5, value=10, show_value=True, debounce=True, label="warm-up % of steps"
        ),
        epochs=mo.ui.dropdown(EPOCH_CHOICES, value="auto", label="epochs"),
        batch_size=mo.ui.dropdown(["4", "8", "16", "32"], value="16", label="batch size"),
        max_length=mo.ui.dropdown(["64", "128", "256", "512"], value="128", label="max sequence length"),
        seed=mo.ui.number(0, 2**31 - 1, 1, value=42, label="seed"),
        speed=mo.ui.dropdown(list(SPEED_CHOICES), value=next(iter(SPEED_CHOICES)), label="training path"),
        data_source=mo.ui.radio(DATA_CHOICES, value="built-in (200 examples)", label="data", inline=True),
        hub_dataset=mo.ui.text(placeholder="e.g. an instruction dataset id", label="hub dataset id"),
        prompt_column=mo.ui.text(value="instruction", label="prompt column"),
        response_column=mo.ui.text(value="output", label="response column"),
        hub_split=mo.ui.text(value="train", label="split"),
        max_rows=mo.ui.number(10, 50_000, 10, value=2000, label="rows (first N)"),
        upload=mo.ui.file(
            filetypes=[".csv", ".jsonl"],
            label=f"upload CSV/JSONL (prompt, response; at most {UPLOAD_MAX_BYTES / 1e6:.0f} MB)",
        ),
    )
    train_button = mo.ui.run_button(
        label="Train", kind="success", tooltip="Run the seven steps below with the settings on screen"
    )
    return settings_controls, train_button


@app.cell
def _(settings, settings_controls, train_button):
    _note = model_availability_note(settings)  # None: nothing to say (an offline model or a local folder)
    mo.vstack(
        [
            settings_controls,
            *([_note] if _note is not None else []),
            mo.hstack([train_button], justify="start"),
        ]
    )
    return


@app.cell
def _(settings_controls):
    settings = settings_from_form(
        settings_controls.value, smoke=SMOKE, smoke_model=CLI_OPTIONS.get("model") or "tiny"
    )
    dataset, data_errors, data_warnings = choose_dataset(settings, settings_controls.value)
    return data_errors, data_warnings, dataset, settings


@app.cell(hide_code=True)
def _(data_errors, data_warnings, dataset, settings):
    _source = "smoke test (`--smoke`)" if SMOKE else "on screen: Train uses these"
    _summary = mo.md(
        f"**Settings ({_source}):** `{settings.model_source}` · {settings.precision.upper()} · r={settings.rank}, "
        f"alpha={settings.alpha}, dropout={settings.dropout} · targets {', '.join(settings.target_modules)} · "
        f"lr {settings.learning_rate or 'auto'} · epochs {settings.epochs or 'auto'} · batch "
        f"{settings.batch_size} · max length {settings.max_length} · seed {settings.seed}"
    )
    _problems = [mo.callout(mo.md("\n\n".join(data_errors)), kind="danger")] if data_errors else []
    _notes = [mo.callout(mo.md("\n\n".join(data_warnings)), kind="warn")] if data_warnings else []
    _preview = []
    if dataset is not None:
        _counts = dataset.groupby(["task", "split"]).size().unstack(fill_value=0).reset_index()
        _preview = [
            mo.md(
                f"### Data: {len(dataset)} rows — {', '.join(f'{k} {v}' for k, v in dataset['split'].value_counts().items())}"
            ),
            mo.ui.table(dataset, page_size=10, selection=None, wrapped_columns=["prompt", "response"]),
            mo.accordion({"Rows per task and split": mo.ui.table(_counts, selection=None, pagination=False)}),
        ]
    mo.vstack([_summary, *_problems, *_notes, *_preview])
    return


@app.cell(hide_code=True)
def _(dataset, environment, settings):
    # The offline tokenizer's vocabulary sizes the tiny models; every other config is known without loading.
    _vocab = (
        len(build_offline_tokenizer(tokenizer_corpus(dataset)))
        if settings.model_source in ("tiny", "tiny-llama")
        else None
    )
    _config = planned_config(settings, _vocab)
    why = None if _config is None else lora_plan(_config, settings)
    planned = planned_run(settings, environment)
    return planned, why


@app.cell(hide_code=True)
def _(dataset, planned, settings, why):
    mo.stop(
        why is None,
        mo.md(
            "_Explanations with numbers appear once the model's config is known (GPT-2 or "
            "Llama family, on disk or built in)._"
        ),
    )
    _tokens = settings.batch_size * settings.max_length  # before a run: the most one batch can hold
    _plan, _speed = planned["plan"], planned["speed"]
    _memory = training_memory_text(why, settings, _plan, _speed, _tokens, _tokens)
    _estimated = sum(training_memory(why, _plan, _speed, _tokens, _tokens).values())
    _conv1d = {"Why GPT-2's Conv1D is unusual, and what it means for LoRA": mo.md(why_conv1d_text(why))}
    mo.accordion(
        {
            "Why LoRA works — with this model's numbers": mo.md(why_lora_text(why, settings)),
            "Why mixed precision (FP16), and why a GradScaler": mo.md(why_fp16_text()),
            **(_conv1d if why["architecture"] == "gpt2" else {}),
            "Hyperparameter choices": mo.md(hyperparameter_text(settings, why, train_example_count(dataset))),
            f"Where training memory goes at {settings.batch_size} × {settings.max_length}, and what "
            "checkpointing and accumulation trade": mo.md(_memory),
            'TF32: what `set_float32_matmul_precision("high")` changes, and for this run': mo.md(
                tf32_text(_plan, planned["device_type"], planned["compute_capability"])
            ),
            "QLoRA: the next memory lever (a pointer)": mo.md(
                qlora_text(why, _plan, settings.model_source, _estimated)
            ),
            "Compute-, memory- or overhead-bound: this run on the roofline": mo.md(
                roofline_text(
                    why, _plan, _speed, planned["device_type"], planned["device_name"], _tokens, _tokens
                )
            ),
            "Why the fast training path is fast — what each lever buys": mo.md(why_fast_text(settings, why)),
            "What step 5's GPU activity means: MFU, SM and Tensor Core activity, energy": mo.md(
                why_mfu_text(why)
            ),
        },
        multiple=True,
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## The seven steps
    """)
    return


@app.cell
def _(data_errors, dataset, settings, train_button, warm_up):
    mo.stop(not (train_button.value or SMOKE), mo.md("_Press **Train** to run the seven steps._"))
    mo.stop(
        dataset is None,
        mo.callout(mo.md("Fix the data problem above first: " + " ".join(data_errors)), kind="danger"),
    )
    clicked_at = time.perf_counter()
    device = choose_device()
    _precision, _why_precision = choose_precision(settings, device)
    plan = resolve_precision(_precision, device.type, bf16_native(device))
    step_done(
        1,
        "environment and precision",
        time.perf_counter() - clicked_at,
        f"Device **{device_label(device)}** · requested **{settings.precision.upper()}** → running "
        f"**{plan.name}** · seed **{settings.seed}** (set in step 2, once this run holds the GPU).\n\n"
        f"{_why_precision} {plan.note}" + warm_up_note(device, warm_up),
        kind=precision_callout_kind(plan),
    )
    return clicked_at, device, plan


@app.cell
def _(dataset, device, plan, settings):
    _started = time.perf_counter()
    run, _facts = load_step(settings, dataset, device, plan, on_wait=lambda: show_waiting(device))
    mo.stop(
        _facts["out_of_memory"],
        mo.callout(
            mo.md(
                f"**Step 2 stopped: the GPU has no room for `{settings.model_source}`** (out of memory while "
                "copying the weights). Another program may be using the card: free it, or pick a smaller "
                "model, and press Train again."
            ),
            kind="danger",
        ),
    )
    _trainable, _total = parameter_counts(run.model)
    _dtype = str(next(run.model.parameters()).dtype).replace("torch.", "")
    _waited = f" · waited {_facts['waited_s']:.1f} s for its turn" if _facts["waited_s"] >= 0.1 else ""
    _done = step_done(
        2,
        "tokenizer and model loaded",
        time.perf_counter() - _started,
        f"**{run.model_name}** · {fmt_count(_total)} parameters (tied lm_head counted once) · "
        f"weights in **{_dtype}** · vocabulary {len(run.tokenizer):,} · device memory "
        f"{fmt_bytes(device_memory(device)['allocated'])} allocated"
        + ("" if device.type == "cuda" else " (CPU: host RAM, not tracked here)")
        + f" · *auto* resolved to learning rate {run.settings.learning_rate:g}, {run.settings.epochs} epochs"
        + f"{_waited}.\n\n{memory_scope_note(run)}",
    )
    _warning = mo.callout(mo.md(f"**No `{settings.model_source}`:** {_facts['load_warning']}"), kind="warn")
    mo.output.replace(mo.vstack([_warning, _done]) if _facts["load_warning"] else _done)
    return (run,)


@app.cell
def _(run):
    _started = time.perf_counter()
    lora_table, _problem = inject_step(run)
    mo.stop(
        _problem is not None,
        mo.callout(mo.md(f"**Step 3 stopped:** {_problem} The model was released."), kind="danger"),
    )
    trainable_params, total_params = parameter_counts(run.model)
    parameter_groups = parameter_breakdown(run.model)
    run_facts = run_model_facts(run)  # read now: step 7 frees the model
    _kinds = lora_table["type"].str.split(" ").str[0].value_counts().to_dict()
    mo.vstack(
        [
            step_done(
                3,
                "LoRA injected",
                time.perf_counter() - _started,
                f"Wrapped **{len(lora_table)} layers** ({', '.join(f'{n} {k}' for k, n in _kinds.items())}, "
                f"recognised by type) · trainable **{trainable_params:,}** of {total_params:,} parameters = "
                f"**{100 * trainable_params / total_params:.3f}%** · frozen base "
                f"{total_params - trainable_params:,} · sum of the table's LoRA column "
                f"{int(lora_table['LoRA params'].sum()):,} ✓",
            ),
            mo.accordion(
                {"Wrapped layers": mo.ui.table(lora_table, page_size=8, selection=None)}
                | ran_model_explanation(run)
            ),
        ]
    )
    return lora_table, parameter_groups, run_facts, total_params, trainable_params


@app.cell
def _(dataset, lora_table, run):
    _started = time.perf_counter()
    token_stats, _problem = prepare_step(run, dataset)
    mo.stop(
        _problem is not None,
        mo.callout(mo.md(f"**Step 4 stopped:** {_problem} The model was released."), kind="danger"),
    )
    _train = token_stats["train"]
    mo.vstack(
        [
            step_done(
                4,
                "data tokenized; loaders, optimizer, learning-rate schedule and scaler ready",
                time.perf_counter() - _started,
                f"{token_stats['train_examples']} train / {token_stats['eval_examples']} eval examples "
                f"({token_stats['dropped']} dropped: prompt longer than max length) · {token_stats['steps_per_epoch']} "
                f"steps/epoch × {run.settings.epochs} epochs = **{token_stats['total_steps']} steps**, "
                f"{token_stats['warmup_steps']} warm-up · AdamW on {len(lora_table) * 2} adapter tensors only · "
                f"GradScaler **{'on' if run.plan.use_grad_scaler else 'off'}**"
                + (
                    ""
                    if run.plan.use_grad_scaler or not run.scaler.is_enabled()
                    else " (a scale-1 guard skips inf/NaN steps)"
                )
                + f"\n\nTraining path **{run.speed.name}**: {run.speed.note}",
            ),
            mo.hstack(
                [
                    mo.stat(
                        f"{_train['real_tokens']:,}",
                        label="real tokens / epoch",
                        caption=f"mean length {_train['mean_length']:.1f}, max {_train['max_length']}",
                        bordered=True,
                    ),
                    mo.stat(
                        f"{100 * _train['loss_share_of_real']:.1f}%",
                        label="tokens that carry loss",
                        caption="response + eos; prompt and padding are -100",
                        bordered=True,
                    ),
                    mo.stat(
                        f"{100 * _train['padding_share']:.1f}%",
                        label="padding",
                        caption="dynamic padding per batch",
                        bordered=True,
                    ),
                ],
                widths="equal",
            ),
        ]
    )
    return (token_stats,)


@app.cell
def _(dataset, run, token_stats):
    _eval_frame = dataset[dataset["split"] == "eval"]
    answer_tokens = answer_token_budget(run.tokenizer, dataset["response"])
    mo.output.clear()
    _started, _last_draw = time.perf_counter(), [0.0]
    with mo.status.progress_bar(
        total=token_stats["total_steps"], title="Step 5 — training", show_eta=True, show_rate=True
    ) as _bar:
        mo.output.append(mo.md("_Evaluating the base model first (the “before”)…_"))

        def _draw(record, sampler, so_far):
            if record["kind"] == "train":
                _bar.update(
                    subtitle=f"epoch {record['epoch']} · loss {record['loss']:.3f} · "
                    f"{record['tokens_per_s']:,.0f} tok/s · {device_status(sampler)}"
                    + (f" · MFU {100 * record['mfu']:.1f}%" if record.get("mfu") else "")
                    + (f" · {gpm_status(so_far['gpm'])}" if gpm_status(so_far["gpm"]) else "")
                )
            if time.perf_counter() - _last_draw[0] > 0.5 or record["step"] == run.total_steps:
                mo.output.replace_at_index(
                    loss_chart(so_far["train_records"], so_far["eval_records"], title="Loss (live)"), 1
                )
                _last_draw[0] = time.perf_counter()

        _result = train_step_body(run, _eval_frame, answer_tokens, on_record=_draw)
    before, before_generations = _result["before"], _result["before_generations"]
    eval_records, stop_reason, sampler = _result["eval_records"], _result["stop_reason"], _result["sampler"]
    history, device_samples = pd.DataFrame(_result["train_records"]), _result["samples"]
    mo.output.replace(
        mo.vstack(
            [
                training_summary(
                    history,
                    eval_records,
                    stop_reason,
                    _result["train_seconds"],
                    time.perf_counter() - _started,
                    device_samples,
                ),
                telemetry_cards(_result, history) if stop_reason is None else None,
            ]
        )
    )
    return (
        before,
        before_generations,
        device_samples,
        eval_records,
        history,
        answer_tokens,
        sampler,
        stop_reason,
    )


@app.cell(hide_code=True)
def _(history, run, run_facts, stop_reason, token_stats):
    mo.stop(stop_reason is not None or history.empty, None)
    _measured = {
        "device_type": run.device.type,
        "peak": float(history["peak_mib"].max()) * 2**20 if run.device.type == "cuda" else None,
        "baseline": run.memory_baseline,
    }
    _train = token_stats["train"]
    mo.accordion(
        {
            "This run's memory: the estimate against what torch measured": mo.md(
                training_memory_text(
                    run_facts,
                    run.settings,
                    run.plan,
                    run.speed,
                    _train["max_batch_tokens"],
                    _train["max_batch_loss_tokens"],
                    measured=_measured,
                )
            )
        }
    )
    return


@app.cell
def _(answer_tokens, before, before_generations, dataset, run, stop_reason):
    mo.stop(
        stop_reason is not None,
        mo.callout(mo.md(f"Step 6 skipped: training stopped — {stop_reason}"), kind="danger"),
    )
    _started = time.perf_counter()
    after, after_generations, _stop = evaluate_step(run, dataset[dataset["split"] == "eval"], answer_tokens)
    mo.stop(
        _stop is not None,
        mo.callout(
            mo.md(f"**Step 6 stopped.** {_stop and _stop.reason} {_stop and _stop.advice}"), kind="danger"
        ),
    )
    comparison = compare_generations(before_generations, after_generations)
    mo.vstack(
        [
            step_done(
                6,
                "evaluated before vs after",
                time.perf_counter() - _started,
                f"{len(comparison)} held-out prompts, greedy decoding, up to {answer_tokens} new tokens.",
            ),
            mo.hstack(
                [
                    metric_card("eval loss", before["eval_loss"], after["eval_loss"], "{:.3f}", "decrease"),
                    metric_card(
                        "perplexity", before["perplexity"], after["perplexity"], "{:,.1f}", "decrease"
                    ),
                    metric_card(
                        "exact match",
                        before["exact_match"],
                        after["exact_match"],
                        "{:.0%}",
                        "increase",
                        n=after.get("eval_items"),
                    ),
                    metric_card(
                        "answer format", before["format_match"], after["format_match"], "{:.0%}", "increase"
                    ),
                ],
                widths="equal",
            ),
            mo.md("**Generations for held-out prompts — before vs after** (✓ = exact match)"),
            mo.ui.table(
                comparison, page_size=10, selection=None, wrapped_columns=["prompt", "before", "after"]
            ),
            mo.accordion(
                {
                    "Scores per task": mo.ui.table(
                        per_task_scores(before_generations, after_generations),
                        selection=None,
                        pagination=False,
                    )
                }
            ),
        ]
    )
    return after, after_generations, comparison


@app.cell
def _(after, before, clicked_at, comparison, dataset, run):
    _started = time.perf_counter()
    adapter_folder = adapter_folder_for(run)
    saved = save_step(run, adapter_folder, dataset[dataset["split"] == "eval"]["prompt"].head(8).tolist())
    mo.stop(
        saved["failure"] is not None,
        mo.callout(
            mo.md(
                f"**Step 7 failed:** {saved['failure']}. The run's GPU memory was released "
                f"({release_text(saved['release_report'], run.device)}). Press Train to run again."
            ),
            kind="danger",
        ),
    )
    click_to_result = time.perf_counter() - clicked_at
    adapter_zip = zip_folder(adapter_folder)
    keep_recent_adapters(adapter_folder)  # this process keeps its last ADAPTERS_KEPT adapter folders
    mo.vstack(
        [
            step_done(
                7,
                "adapter saved, checked with PEFT, memory released",
                time.perf_counter() - _started,
                f"`{project_path(adapter_folder)}` "
                f"({', '.join(f'{k} {fmt_bytes(v)}' for k, v in saved['saved_files'].items())}; this server "
                f"keeps its last {ADAPTERS_KEPT} adapter folders) · merged into the weights for inference, the "
                f"model gives the same logits: max |Δ| = **{saved['merge_max_diff']:.2e}** "
                f"{check_mark(saved['merge_max_diff'], run.plan)} · `PeftModel.from_pretrained(base, folder)` "
                f"reproduces this app's logits: max |Δ| = **{saved['peft_max_diff']:.2e}** "
                f"{check_mark(saved['peft_max_diff'], run.plan)} · "
                + release_text(saved["release_report"], run.device),
            ),
            mo.download(
                adapter_zip, filename=f"{adapter_folder.name}.zip", label="Download the adapter (.zip)"
            ),
            summary_cards(before, after, click_to_result, saved["peak_memory"], saved["release_report"], run),
        ]
    )
    return adapter_folder, click_to_result, saved


@app.cell
def _(device_samples, eval_records, history, parameter_groups, sampler, stop_reason):
    mo.stop(history.empty, None)
    _charts = [
        mo.md("_Loss against step (train raw and smoothed, eval per epoch) is in step 5._"),
        step_chart(history, "lr", "Learning-rate schedule (warm-up, then cosine decay)", "learning rate"),
        throughput_chart(history),
        device_timeline_chart(device_samples, sampler.source)
        if len(device_samples)
        else mo.md("_No device samples._"),
        parameter_chart(parameter_groups),
    ]
    mo.vstack([mo.md("## Charts" + (" (training stopped early)" if stop_reason else "")), *_charts])
    return


@app.cell(hide_code=True)
def _():
    probe_button = mo.ui.run_button(
        label="Measure what utilization hides (about 5 s)",
        tooltip="Three short workloads on this GPU, under the GPU lease",
    )
    mo.vstack(
        [
            mo.md(r"""
    ## What GPU utilization hides — measured on this GPU

    NVML's classic *utilization* is the share of time **any** kernel was running, however little of the GPU
    it used. NVML's GPM counters (Hopper and newer) say what the SMs, Tensor Cores and memory really did.
    The button runs three workloads for about 1.5 s each — a stream of one-element kernels, a large matmul,
    a device-to-device copy — and samples both while each runs.
    """),
            probe_button,
        ]
    )
    return (probe_button,)


@app.cell
def _(environment, probe_button):
    mo.stop(not probe_button.value, mo.md("_Press the button to measure; nothing runs until then._"))
    _reason = utilization_probe_unavailable(environment)
    mo.stop(_reason is not None, mo.md(f"_{_reason}_\n\n{utilization_reference_text()}"))
    _device = torch.device("cuda", torch.cuda.current_device())
    with gpu_turn(wait=False) as _held:
        mo.stop(
            not _held,
            mo.callout(
                mo.md(
                    "**The GPU is busy** (a training run or the benchmark app holds it). Press again when it is "
                    "free: measured beside another run, the workloads would mix."
                ),
                kind="warn",
            ),
        )
        _gpm = GpmSampler([nvml_device_index(_device)])
        with mo.status.spinner(title="Running three workloads on the GPU…"):
            probe_rows = utilization_probe(_device)
    mo.vstack(
        [
            mo.ui.table(pd.DataFrame(probe_rows).round(1), selection=None, pagination=False),
            mo.callout(
                mo.md(
                    utilization_probe_text(probe_rows, "" if _gpm.available else _gpm.unavailable_reason)
                    + "\n\n"
                    + utilization_reference_text()
                ),
                kind="info",
            ),
        ]
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## How it all works

    1. **Environment and precision** — torch finds the GPU (NVML adds driver, utilization and power); without
       one the app says so and resolves the precision to something a CPU can run (*auto*: FP16 + GradScaler for
       GPT-2, BF16 for the Llama family on compute capability ≥ 8.0).
    2. **Lease, seed and load** — the run takes the GPU lease it keeps until step 7 (or a stop), then seeds:
       torch's global generators (the base model's own dropout) and the run's own `torch.Generator` (LoRA's A
       init and LoRA dropout), so one seed fixes the run whatever other viewers do. Then
       `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer` (cache first, the hub only if reachable, never
       `trust_remote_code`); offline, the tiny GPT-2 or tiny Llama is built from a config with a byte-level
       BPE tokenizer trained in memory on the data.
    3. **Inject** — the chosen roles become this architecture's layer names (GPT-2 `c_attn`…, Llama
       `q_proj`…); every targeted `Conv1D`/`nn.Linear` is replaced by a `LoRALayer` that holds the frozen layer
       plus A and B; every other parameter is frozen.
    4. **Prepare** — one prompt template; labels are `-100` on prompt and padding tokens, so the loss is the
       response (and its end-of-text token) only; batches are padded to their own longest example. AdamW sees
       the adapter parameters only; LambdaLR does warm-up then cosine; GradScaler is on for FP16.
    5. **Train** — autocast forward, loss in FP32, scaled backward, unscale → clip → step → update. A non-finite
       loss or a collapsing loss scale stops training with an explanation; CUDA out-of-memory is caught, the
       memory freed, and smaller settings suggested. Background threads sample NVML ten times a second (and
       NVML's GPM counters on Hopper and newer); MFU and energy per token come from the same run.
    6. **Evaluate** — token-weighted eval loss and perplexity, and greedy generations for the held-out prompts,
       before (step 0, B = 0) and after.
    7. **Save and release** — `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names; the app
       reloads them with `PeftModel.from_pretrained` and compares logits, then drops every reference to the model
       and empties the CUDA cache, measuring what came back.

    Everything that holds device memory lives in one `FineTuneRun` object so step 7 can release it all at once;
    cells only pass around numbers, tables and charts. One GPU lease per Train click (steps 2 to 7) makes a
    second viewer wait instead of fighting over the GPU, and keeps each run's memory figures its own.
    """)
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Library

    The pure helpers below are what the cells above call. Each is an `@app.function` (or
    `@app.class_definition`), so the tests and `bench/` import them directly:
    `from llm_finetuning_dashboard import inject_lora, train_steps, ...`.

    Where to find things (search the name; the training core has its own heading below):

    | what | where |
    |---|---|
    | the seven steps' bodies | `load_step`, `inject_step`, `prepare_step`, `train_step_body`, `evaluate_step`, `save_step` |
    | **where the loss is computed** | `batch_loss`, the one entry point: the chunked LM-head loss (`ChunkedLMHeadLoss`) on the fast path, `causal_lm_loss` (plain cross-entropy) as its reference on the plain path |
    | **where the learning rate is set** | `lr_at` (warm-up, then cosine): `plain_train_step` sets it each step; `device_schedule` puts the same values on the GPU for `fast_train_step` |
    | **where the step syncs with the host** | comments marked `HOST SYNC`: `plain_train_step` (`loss.item()`, the clipped norm), `train_steps` (the plain path's `synchronize`; the fast path's one `.tolist()` per `SYNC_EVERY` steps) |
    | the training loop | `train_steps` (sections: forward/backward/update, termination, timing and logging, evaluation) |
    | which speed levers run | `SpeedPlan` (`mode` "plain" or "fast"), `choose_speed_plan`, `apply_speed_plan` |
    | GradScaler internals | `scaler_readings`, the only place that touches them |
    | the GPU lease, telemetry | `GpuLease`; `GpuSampler`, `GpmSampler`, `mfu`, `utilization_probe` |
    | the learner texts | `why_*_text`, `training_memory_text`, `tf32_text`, `qlora_text`, `roofline_text` |
    """)
    return


@app.class_definition
@dataclass(frozen=True)
class TrainSettings:
    """Every knob of one run, with the app's defaults."""

    model_source: str = "gpt2"
    local_dir: str = ""
    precision: str = "fp16"
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple = ALL_TARGETS
    learning_rate: float | None = None  # None = auto: chosen for the loaded model by with_model_defaults
    warmup_ratio: float = 0.1
    epochs: int | None = None  # None = auto
    batch_size: int = 16
    max_length: int = 128
    seed: int = 42
    data_source: str = "builtin"
    speed: str = "auto"  # auto | fast | compile | plain (see choose_speed_plan)


@app.function
def settings_from_form(value, smoke=False, smoke_model="tiny"):
    """TrainSettings from the form's value (None before the first submit; smoke → tiny model, two epochs)."""
    if smoke:  # a CI check that every step runs, not a demo of learning: the tiny model, two epochs
        return TrainSettings(model_source=smoke_model, epochs=2)
    if not value:
        return TrainSettings()
    return TrainSettings(
        model_source=value["model"],
        local_dir=value["local_dir"].strip(),
        precision=value["precision"],
        rank=int(value["rank"]),
        alpha=int(value["alpha"]),
        dropout=float(value["dropout"]),
        target_modules=tuple(value["targets"]) or ALL_TARGETS,
        learning_rate=None if value["learning_rate"] == "auto" else float(value["learning_rate"]),
        warmup_ratio=float(value["warmup_pct"]) / 100,
        epochs=None if value["epochs"] == "auto" else int(value["epochs"]),
        batch_size=int(value["batch_size"]),
        max_length=int(value["max_length"]),
        seed=int(value["seed"]),
        data_source=value["data_source"],
        speed=SPEED_CHOICES.get(value.get("speed"), "auto"),
    )


@app.function
def with_model_defaults(settings, model_name):
    """Fill 'auto' learning rate and epochs for the model that actually loaded.

    A pretrained GPT-2 only has to learn the answer formats (1e-3, 5 epochs); the tiny offline model
    starts from random weights and needs bigger and more steps (3e-3, 15 epochs).
    """
    tiny = model_name in (TINY_MODEL_NAME, TINY_LLAMA_NAME)
    return replace(
        settings,
        learning_rate=settings.learning_rate or (3e-3 if tiny else 1e-3),
        epochs=settings.epochs or (15 if tiny else 5),
    )


@app.function
def builtin_examples():
    """200 distinct instruction→response pairs (8 task types × 25), generated without randomness."""
    rows = []
    for i in range(25):
        a, b = 12 + (i * 17) % 70, 5 + (i * 29) % 60
        rows.append(("arithmetic", f"What is {a} + {b}?", f"Answer: {a + b}"))
    for word in UPPERCASE_WORDS:
        rows.append(("uppercase", f"Write '{word}' in capital letters.", word.upper()))
    for word in REVERSE_WORDS:
        rows.append(("reverse", f"Spell '{word}' backwards.", word[::-1]))
    for country, capital in CAPITALS:
        rows.append(("capital", f"What is the capital of {country}?", capital))
    for text, label in SENTIMENTS:
        rows.append(("sentiment", f"Is this review positive or negative? {text}", label))
    for i in range(25):
        unit_from, unit_to, factor, symbol = UNIT_CONVERSIONS[
            (i + i // 5) % 5
        ]  # rotate: eval sees every unit
        value = (2, 3, 5, 7, 9)[i // 5]
        rows.append(("units", f"Convert {value} {unit_from} to {unit_to}.", f"{value * factor} {symbol}"))
    for word, opposite in ANTONYMS:
        rows.append(("antonym", f"What is the opposite of '{word}'?", opposite))
    for i in range(25):
        n = 11 + 7 * i
        rows.append(("parity", f"Is {n} even or odd?", "even" if n % 2 == 0 else "odd"))
    frame = pd.DataFrame(rows, columns=["task", "prompt", "response"])
    # Every fifth example of each task is held out: a stratified, order-based, seed-free split.
    frame["split"] = ["eval" if i % 5 == 4 else "train" for i in frame.groupby("task").cumcount()]
    return frame


@app.function
def split_by_hash(prompts, eval_share=0.2):
    """Deterministic train/eval labels: the rows whose prompt hashes lowest are held out (any row order)."""
    digests = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in prompts]
    n_eval = min(max(1, round(eval_share * len(prompts))), len(prompts) - 1) if len(prompts) > 1 else 0
    held_out = set(sorted(range(len(prompts)), key=lambda i: (digests[i], prompts[i]))[:n_eval])
    return ["eval" if i in held_out else "train" for i in range(len(prompts))]


@app.function
def validate_upload(filename, contents, max_bytes=UPLOAD_MAX_BYTES, max_chars=UPLOAD_MAX_CHARS):
    """Parse an uploaded CSV/JSONL of prompt/response rows → (frame or None, errors, warnings); never raises."""
    errors, warnings = [], []
    suffix = Path(filename or "").suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        return None, [f"`{filename}`: expected a .csv or .jsonl file."], warnings
    if len(contents) > max_bytes:
        return (
            None,
            [f"`{filename}` is {len(contents) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."],
            warnings,
        )
    try:
        text = contents.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return (
            None,
            [f"`{filename}` is not UTF-8 text (byte {err.start}); save it as UTF-8 and upload again."],
            warnings,
        )
    if not text.strip():
        return None, [f"`{filename}` is empty."], warnings
    records = []
    if suffix == ".csv":
        try:
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            return None, [f"`{filename}` is not valid CSV: {str(err).splitlines()[0]}"], warnings
        records = raw.to_dict("records")
    else:
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                return None, [f"`{filename}` line {line_number} is not valid JSON: {err.msg}."], warnings
            if not isinstance(record, dict):
                return None, [f"`{filename}` line {line_number} is not a JSON object."], warnings
            records.append(record)
    return validate_records(f"`{filename}`", records, max_chars, warnings)


@app.function
def validate_records(source, records, max_chars=UPLOAD_MAX_CHARS, warnings=None):
    """The rules every data source passes (upload or hub dataset): prompt/response columns, no empty or
    overlong rows, no duplicates, enough rows → (frame with a split column or None, errors, warnings)."""
    errors, warnings = [], list(warnings or [])
    columns = {str(key).strip().lower(): key for key in (records[0] if records else {})}
    missing = [name for name in ("prompt", "response") if name not in columns]
    if missing:
        found = ", ".join(f"`{c}`" for c in columns) or "none"
        return (
            None,
            [f"{source} needs columns `prompt` and `response`; missing {missing}, found {found}."],
            warnings,
        )
    pairs = [
        (str(r.get(columns["prompt"]) or "").strip(), str(r.get(columns["response"]) or "").strip())
        for r in records
    ]
    empty = sum(1 for p, r in pairs if not p or not r)
    overlong = sum(1 for p, r in pairs if p and r and max(len(p), len(r)) > max_chars)
    kept = [(p, r) for p, r in pairs if p and r and max(len(p), len(r)) <= max_chars]
    unique = list(dict.fromkeys(kept))
    if empty:
        warnings.append(f"Skipped {empty} row(s) with an empty prompt or response.")
    if overlong:
        warnings.append(f"Skipped {overlong} row(s) longer than {max_chars} characters.")
    if len(unique) < len(kept):
        warnings.append(f"Dropped {len(kept) - len(unique)} duplicate row(s).")
    if len(unique) < UPLOAD_MIN_ROWS:
        errors.append(f"{source} has {len(unique)} usable row(s); at least {UPLOAD_MIN_ROWS} are needed.")
        return None, errors, warnings
    frame = pd.DataFrame(unique, columns=["prompt", "response"])
    frame.insert(0, "task", "upload" if source.startswith("`") else "dataset")
    frame["split"] = split_by_hash(frame["prompt"].tolist())
    return frame, errors, warnings


@app.function
def load_hub_dataset(dataset_id, prompt_column, response_column, split="train", max_rows=2000):
    """Rows of a Hugging Face dataset (hub id or local folder) through `datasets`, columns mapped to
    prompt/response and checked by validate_records → (frame or None, errors, warnings); never raises for
    a missing dataset, a bad split or column, or no network."""
    dataset_id = (dataset_id or "").strip()
    if not dataset_id:
        return None, ["Data is set to **hub dataset** but no dataset id was given."], []
    local = Path(dataset_id).expanduser().is_dir()
    if not local and not hub_status():
        return None, [f"`{dataset_id}`: huggingface.co cannot be reached; the built-in set still works."], []
    import datasets

    try:
        rows = datasets.load_dataset(dataset_id, split=f"{split}[:{int(max_rows)}]")
    except (OSError, ValueError, ConnectionError) as error:  # not found, gated, bad split, offline
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return None, [f"`{dataset_id}` could not be loaded with `datasets`: {first}"], []
    missing = [c for c in (prompt_column, response_column) if c not in rows.column_names]
    if missing:
        found = ", ".join(f"`{c}`" for c in rows.column_names)
        return None, [f"`{dataset_id}` has no column {missing}; its columns are {found}."], []
    records = [
        {"prompt": p, "response": r} for p, r in zip(rows[prompt_column], rows[response_column], strict=True)
    ]
    return validate_records(f"dataset `{dataset_id}` ({split}, first {len(records)} rows)", records)


@app.function
def format_prompt(prompt, tokenizer=None):
    """The one prompt template for training, evaluation and generation: the tokenizer's chat template when it
    has one (instruct models: the user turn, then the assistant's header), else the plain template."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return PROMPT_TEMPLATE.format(prompt=prompt)


@app.function
def build_offline_tokenizer(texts, vocab_size=1024):
    """Byte-level BPE trained in memory on `texts` (no download); like GPT-2, eos doubles as pad."""
    bpe = Tokenizer(tokenizer_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_input_names=["input_ids", "attention_mask"],
    )


@app.function
def tokenizer_corpus(frame):
    """Texts the offline tokenizer learns its merges from: the built-in set plus the chosen data."""
    builtin = builtin_examples()
    rows = pd.concat([builtin, frame]) if frame is not None else builtin
    return [format_prompt(p) + r for p, r in zip(rows["prompt"], rows["response"], strict=True)]


@app.function
def tiny_gpt2_config(vocab_size, initializer_range=TINY_INIT_RANGE):
    """The tiny offline GPT-2: 4 layers, 128 wide.

    Its init is wider than GPT-2's 0.02: the tied, frozen token embeddings are also the output head, and
    with 0.02 at width 128 no hidden state can push a logit far from the rest, so no adapter could make
    the model confident.
    """
    return GPT2Config(
        n_layer=4,
        n_head=4,
        n_embd=128,
        n_positions=512,
        vocab_size=vocab_size,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


@app.function
def random_model(model_class, tokenizer, config, seed=0):
    """`model_class(config)` randomly initialised from `seed`, its vocabulary and special ids fitted to `tokenizer`."""
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    return model_class(config)


@app.function
def offline_gpt2(tokenizer, config=None, seed=0):
    """A randomly initialised GPT2LMHeadModel (tiny by default) whose special ids match `tokenizer`."""
    return random_model(GPT2LMHeadModel, tokenizer, config or tiny_gpt2_config(len(tokenizer)), seed)


@app.function
def tiny_llama_config(vocab_size, initializer_range=TINY_INIT_RANGE):
    """The tiny offline Llama: 4 layers, 128 wide, 4 query heads sharing 2 KV heads (GQA), RoPE, SwiGLU,
    tied embeddings: the Llama family's architecture at a size a CPU trains in seconds."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


@app.function
def offline_llama(tokenizer, config=None, seed=0):
    """A randomly initialised LlamaForCausalLM (tiny by default) whose special ids match `tokenizer`."""
    return random_model(LlamaForCausalLM, tokenizer, config or tiny_llama_config(len(tokenizer)), seed)


@app.function
def architecture(model_or_config):
    """'gpt2' or 'llama' (the Llama family) for a model or config; None for anything else."""
    config = getattr(model_or_config, "config", model_or_config)
    kind = getattr(config, "model_type", "")
    return "gpt2" if kind == "gpt2" else "llama" if kind in LLAMA_FAMILY else None


@app.function
def architecture_targets(model, roles):
    """The module-name suffixes of `model`'s own layers for the chosen LoRA roles (GPT-2's names as keys)."""
    names = TARGET_NAMES.get(architecture(model))
    if names is None:
        return tuple(roles)  # unknown architecture: the names as given (inject_lora says if none match)
    return tuple(dict.fromkeys(n for role in roles for n in names.get(role, (role,))))


@app.class_definition
class NoTargetModules(ValueError):
    """No layer of the model matches the chosen LoRA targets (step 3 says so and frees the model)."""


@app.class_definition
class NoExampleFits(ValueError):
    """No training or eval example fits the max sequence length (step 4 says so and frees the model)."""


@app.class_definition
class ModelUnavailable(RuntimeError):
    """The requested model could not be loaded (no network, not cached, bad folder)."""


@app.function
def hub_reachable(host="huggingface.co", timeout=2.0):
    """True when a TCP connection to the model hub opens within `timeout` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@app.function
def hub_status(timeout=3.0):
    """Can huggingface.co be reached? Asked once per server process, in a background thread.

    A blocked network can hang name resolution for ~20 s (a socket timeout does not bound it), so this
    waits at most `timeout` seconds: no answer by then counts as unreachable, and a later call gets the
    real answer once the thread has one.
    """
    with process_gpu_lock_guard():
        probe = process_registry().get("hub_probe")
        if probe is None:
            probe = {"done": threading.Event(), "reachable": None}
            process_registry()["hub_probe"] = probe

            def ask():
                probe["reachable"] = hub_reachable()
                probe["done"].set()

            threading.Thread(target=ask, daemon=True, name="hub-probe").start()
    probe["done"].wait(timeout)
    return bool(probe["reachable"])


@app.function
def model_cached(name):
    """True when the hub model `name` has a config.json in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


@app.function
def default_choices(cuda_available):
    """The form's default model and precision: GPT-2 in FP16 on a GPU, the tiny offline GPT-2 in FP32 on a CPU."""
    if cuda_available:
        return {"model": "gpt2 (124M)", "precision": next(iter(PRECISION_CHOICES))}  # auto
    return {"model": "tiny offline GPT-2 (no download)", "precision": "FP32"}


@app.function
def model_availability_note(settings):
    """Beside the model picker, before Train: will the chosen hub model load, or fall back to the tiny one?"""
    if settings.model_source in ("tiny", "tiny-llama", "local"):
        return None  # nothing to download
    if model_cached(settings.model_source):
        return mo.md(f"_`{settings.model_source}` is in the local cache: no download needed._")
    if hub_status():
        return mo.md(f"_`{settings.model_source}` is not cached; Train downloads it from huggingface.co._")
    return mo.callout(
        mo.md(
            f"**huggingface.co cannot be reached and `{settings.model_source}` is not cached:** Train will "
            "fall back to the tiny offline GPT-2 (random weights). Pick it directly, or a local directory."
        ),
        kind="warn",
    )


@app.function
def load_pretrained(source, dtype, local_dir=""):
    """(model, tokenizer) via AutoModelForCausalLM/AutoTokenizer from the cache, the hub or a folder."""
    if source == "local":
        folder = Path(local_dir).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(f"`{local_dir or '(empty)'}` is not a model folder (no config.json).")
        name, kwargs = str(folder), {"local_files_only": True}
    else:
        name, kwargs = source, {"local_files_only": True}
    try:
        # The cache first: no network round trip when the model is already on disk.
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as cache_error:
        if source == "local":
            raise ModelUnavailable(f"Could not load `{name}`: {str(cache_error).splitlines()[0]}") from None
        if not hub_status():
            raise ModelUnavailable(
                f"`{name}` is not in the local cache and huggingface.co cannot be reached (no network)."
            ) from None
        try:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as hub_error:
            if is_gated_error(hub_error):
                raise ModelUnavailable(
                    f"`{name}` is a gated model: accept its licence on huggingface.co and set HF_TOKEN "
                    "(a token with access) before starting the app."
                ) from None
            raise ModelUnavailable(f"Downloading `{name}` failed: {str(hub_error).splitlines()[0]}") from None
    if architecture(model) is None:
        kind = getattr(model.config, "model_type", "unknown")
        raise ModelUnavailable(
            f"`{name}` is a `{kind}` model; this app trains GPT-2 and the Llama family "
            f"({', '.join(LLAMA_FAMILY)})."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token; padding never carries loss here
    return model, tokenizer


@app.function
def is_gated_error(error):
    """True when huggingface_hub's GatedRepoError is in the error's cause chain (no token, or no access)."""
    from huggingface_hub.errors import GatedRepoError

    while error is not None:
        if isinstance(error, GatedRepoError):
            return True
        error = error.__cause__ or error.__context__
    return False


@app.function
def load_model_and_tokenizer(settings, dtype, corpus):
    """(model, tokenizer, name, warning): the chosen model, or the tiny offline GPT-2 with a warning."""
    if settings.model_source == "tiny-llama":
        tokenizer = build_offline_tokenizer(corpus)
        model = offline_llama(tokenizer, seed=settings.seed).to(dtype)
        return model, tokenizer, TINY_LLAMA_NAME, None
    if settings.model_source != "tiny":
        try:
            model, tokenizer = load_pretrained(settings.model_source, dtype, settings.local_dir)
            return model, tokenizer, settings.local_dir or settings.model_source, None
        except ModelUnavailable as err:
            warning = f"{err} Falling back to the tiny offline GPT-2 (random weights, built from a config)."
    else:
        warning = None
    tokenizer = build_offline_tokenizer(corpus)
    model = offline_gpt2(tokenizer, seed=settings.seed).to(dtype)
    return model, tokenizer, TINY_MODEL_NAME, warning


@app.class_definition
@dataclass(frozen=True)
class PrecisionPlan:
    """What actually runs for a requested precision on a device, and why."""

    requested: str
    name: str
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    use_grad_scaler: bool
    note: str


@app.function
def resolve_precision(requested, device_type, bf16_supported=True):
    """Map FP16/BF16/FP32 to dtypes, autocast and GradScaler for `device_type`, with CPU fallbacks explained."""
    fp32 = PrecisionPlan(
        requested, "FP32", torch.float32, None, False, "Full precision: no autocast, no scaler."
    )
    if device_type == "cuda":
        if requested == "fp16":
            return PrecisionPlan(
                requested,
                "FP16 + GradScaler",
                torch.float16,
                torch.float16,
                True,
                "Frozen base weights in FP16, adapters in FP32, FP16 autocast on Tensor Cores; "
                "GradScaler keeps small gradients from underflowing to zero.",
            )
        if requested == "bf16":
            if bf16_supported:
                return PrecisionPlan(
                    requested,
                    "BF16",
                    torch.bfloat16,
                    torch.bfloat16,
                    False,
                    "BF16 has FP32's exponent range, so no GradScaler is needed.",
                )
            return PrecisionPlan(
                requested,
                "FP16 + GradScaler",
                torch.float16,
                torch.float16,
                True,
                "This GPU has no native BF16 (compute capability below 8.0, where torch would emulate it slowly): "
                "using FP16 with GradScaler instead.",
            )
        return fp32
    if requested == "fp16":
        return PrecisionPlan(
            requested,
            "FP32 (CPU fallback)",
            torch.float32,
            None,
            False,
            "No CUDA GPU: FP16 pays off only on GPU Tensor Cores, and GradScaler exists for FP16 "
            "gradients on the GPU. On this CPU the run uses FP32 — same code path, slower math.",
        )
    if requested == "bf16":
        return PrecisionPlan(
            requested,
            "BF16 autocast (CPU)",
            torch.float32,
            torch.bfloat16,
            False,
            "BF16 autocast works on CPU (weights stay FP32); it is only fast on CPUs with AMX/AVX512-BF16.",
        )
    return fp32


@app.function
def choose_device():
    """The CUDA device when one is usable, else the CPU."""
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )


@app.function
def set_seed(seed):
    """Seed Python's and torch's generators (every CUDA device included)."""
    random.seed(seed)
    torch.manual_seed(seed)


@app.function
def describe_environment():
    """Device facts from torch, NVML and psutil; no failure when there is no GPU or driver."""
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": psutil.virtual_memory().total / 2**30,
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(
            gpu=props.name,
            gpu_memory_gib=props.total_memory / 2**30,
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),  # emulated BF16 is slow
        )
    nvml = nvml_module()
    if nvml is not None:
        try:
            nvml.nvmlInit()
            info["driver"] = nvml.nvmlSystemGetDriverVersion()
            info["nvml_gpus"] = nvml.nvmlDeviceGetCount()
            nvml.nvmlShutdown()
        except Exception as err:  # NVMLError has many subclasses; any of them means "no NVML here"
            info["nvml_error"] = str(err)
    return info


@app.function
def nvml_module():
    """The pynvml module from nvidia-ml-py, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@app.class_definition
class LoRALayer(nn.Module):
    """y = base(x) + B(A(dropout(x))) · alpha/r around a frozen nn.Linear or GPT-2 Conv1D (chosen by type)."""

    def __init__(self, base_layer, r, alpha, dropout=0.0, generator=None):
        super().__init__()
        if isinstance(base_layer, Conv1D):
            in_features, out_features = base_layer.weight.shape  # Conv1D stores [in, out]
            self.fan_in_fan_out = True
        elif isinstance(base_layer, nn.Linear):
            out_features, in_features = base_layer.weight.shape  # nn.Linear stores [out, in]
            self.fan_in_fan_out = False
        else:
            raise TypeError(f"LoRA wraps nn.Linear or Conv1D, not {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.in_features, self.out_features = in_features, out_features
        self.lora_dropout = LoRADropout(dropout, generator) if dropout > 0 else nn.Identity()
        device = base_layer.weight.device
        # Adapters live in FP32 (the optimizer's master copy) whatever the frozen base dtype is.
        self.lora_A = nn.Linear(in_features, r, bias=False, device=device, dtype=torch.float32)
        self.lora_B = nn.Linear(r, out_features, bias=False, device=device, dtype=torch.float32)
        # The run's own generator, not torch's global one: another viewer's run cannot change this draw.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5), generator=generator)
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the wrapped model equals the base model at step 0
        self.merged = False

    def delta_weight(self):
        """B·A·scaling laid out like the base weight ([in, out] for Conv1D, [out, in] for Linear)."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    @torch.no_grad()
    def merge(self):
        """Fold the update into the base weight: one matmul per layer at inference, same outputs."""
        if not self.merged:
            weight = self.base_layer.weight
            weight.copy_((weight.float() + self.delta_weight()).to(weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """Subtract the update again so training or saving sees the separate adapter."""
        if self.merged:
            weight = self.base_layer.weight
            weight.copy_((weight.float() - self.delta_weight()).to(weight.dtype))
            self.merged = False

    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        # Under autocast the matmuls run in FP16 anyway: casting x to FP32 first would only add two copies.
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.lora_A.weight.dtype)
        update = self.lora_B(self.lora_A(self.lora_dropout(x)))
        return result + (update * self.scaling).to(result.dtype)


@app.class_definition
class LoRADropout(nn.Module):
    """Inverted dropout whose mask comes from the run's torch.Generator (None: torch's global generator).

    Inside torch.compile the global generator is used: a generator argument would break the graph at
    every layer. That generator is seeded in step 2 while the run holds the GPU lease, so no other run
    of this process draws from it meanwhile.
    """

    def __init__(self, p, generator=None):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.generator is None or torch.compiler.is_compiling():
            return F.dropout(x, self.p, training=True)
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)


@app.function
def matches_target(module_name, targets):
    """PEFT's rule: a module is targeted when its name equals a target or ends with '.' + target."""
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


@app.function
def inject_lora(model, target_modules, r, alpha, dropout=0.0, generator=None):
    """Freeze the model, wrap every targeted Linear/Conv1D in a LoRALayer, and describe what was wrapped.

    Raises NoTargetModules when no module matches (a model whose layers have other names).
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if matches_target(name, target_modules) and not isinstance(module, LoRALayer)
    ]
    if not targets:
        linear_names = sorted(
            {n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
        )
        raise NoTargetModules(
            f"No layer of this model matches the LoRA targets {', '.join(target_modules)} (GPT-2's layer "
            f"names). Its linear layers are called: {', '.join(linear_names[:12]) or 'none'}."
        )
    rows = []
    for name, module in targets:
        parent_name, _, child_name = name.rpartition(".")
        wrapped = LoRALayer(module, r, alpha, dropout, generator)
        setattr(model.get_submodule(parent_name), child_name, wrapped)
        rows.append(
            {
                "module": name,
                "type": "Conv1D (weight [in, out])"
                if wrapped.fan_in_fan_out
                else "Linear (weight [out, in])",
                "in": wrapped.in_features,
                "out": wrapped.out_features,
                "base params": module.weight.numel(),
                "LoRA params": r * (wrapped.in_features + wrapped.out_features),
            }
        )
    return pd.DataFrame(rows)


@app.function
def lora_layers(model):
    """(name, LoRALayer) pairs in module order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoRALayer)]


@app.function
def set_merged(model, merged):
    """Merge (True) or unmerge (False) every LoRA layer."""
    for _, layer in lora_layers(model):
        if merged:
            layer.merge()
        else:
            layer.unmerge()


@app.function
def remove_lora(model):
    """Put each wrapped base layer back (unmerged), leaving the plain base model."""
    for name, layer in lora_layers(model):
        layer.unmerge()
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, layer.base_layer)
    return model


@app.function
def parameter_counts(model):
    """(trainable, total) parameters; shared tensors such as GPT-2's tied lm_head count once."""
    parameters = list(model.parameters())  # .parameters() already skips duplicates (tied weights)
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


@app.function
def parameter_breakdown(model):
    """Parameters per group (embeddings, attention, MLP, norms, LoRA, head), each tensor counted once."""
    groups = {}
    for name, parameter in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            group = "LoRA adapters (trainable)"
        elif ".wte." in name or ".wpe." in name or ".embed_tokens." in name:
            group = "embeddings"
        elif ".attn." in name or ".self_attn." in name:
            group = "attention"
        elif ".mlp." in name:
            group = "MLP"
        elif ".ln_" in name or "norm." in name:
            group = "norms"
        elif name.startswith("lm_head"):
            group = "LM head (untied)"
        else:
            group = "other"
        groups[group] = groups.get(group, 0) + parameter.numel()
    frame = pd.DataFrame({"group": list(groups), "parameters": list(groups.values())})
    frame["share %"] = 100 * frame["parameters"] / frame["parameters"].sum()
    return frame


@app.function
def planned_config(settings, tokenizer_vocab=None):
    """The GPT-2 or Llama-family config a run will use, known without downloading weights (None if unknown).

    Hub models count only when their config is already in the local cache (no network is asked).
    """
    if settings.model_source in GPT2_FAMILY:
        return GPT2Config(**GPT2_FAMILY[settings.model_source])
    if settings.model_source == "tiny":
        return tiny_gpt2_config(tokenizer_vocab or 1024)
    if settings.model_source == "tiny-llama":
        return tiny_llama_config(tokenizer_vocab or 1024)
    source = settings.local_dir if settings.model_source == "local" else settings.model_source
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return None
    return config if architecture(config) is not None else None


@app.function
def lora_plan(config, settings):
    """Parameter and memory arithmetic for LoRA vs full fine-tuning, from a model built on the meta device."""
    gpt2 = architecture(config) == "gpt2"
    with torch.device("meta"):
        model = (GPT2LMHeadModel if gpt2 else LlamaForCausalLM)(config)
    _, base_total = parameter_counts(model)
    matmul, linear = matmul_weight_count(model)
    targets = architecture_targets(model, settings.target_modules)
    wrapped = inject_lora(model, targets, settings.rank, settings.alpha)
    lora_total = int(wrapped["LoRA params"].sum())
    weight_bytes = {"fp16": 2, "bf16": 2, "fp32": 4, "auto": 2}[settings.precision]  # auto: 16-bit on a GPU
    # Full fine-tuning with AdamW: FP32 weights + grads + two moments = 16 bytes per parameter.
    full_bytes = 16 * base_total
    lora_bytes = weight_bytes * base_total + 16 * lora_total
    example = "attn.c_attn" if gpt2 else "q_proj"  # the layer "Why LoRA works" takes as its example
    c_attn = wrapped[wrapped["module"].str.endswith(example)]
    return {
        "architecture": "gpt2" if gpt2 else "llama",
        "example_layer": example.split(".")[-1],
        "shape": model_shape(config),
        "matmul_params": matmul,
        "linear_params": linear,
        "weight_bytes": weight_bytes,
        "base_params": base_total,
        "lora_params": lora_total,
        "layers": len(wrapped),
        "trainable_pct": 100 * lora_total / (base_total + lora_total),
        "full_ft_bytes": full_bytes,
        "lora_bytes": lora_bytes,
        "c_attn_in": int(c_attn["in"].iloc[0]) if len(c_attn) else config.hidden_size,
        "c_attn_out": int(c_attn["out"].iloc[0]) if len(c_attn) else 3 * config.hidden_size,
        "n_layer": config.num_hidden_layers,  # GPT2Config maps these names to n_layer / n_embd
        "n_embd": config.hidden_size,
        "vocab_size": config.vocab_size,
    }


@app.function
def matmul_weight_count(model):
    """(matmul weights, frozen linear weights) of a model: Linear/Conv1D layers, LM head included once in the
    first (a tied head is still a matmul), embeddings and the head excluded from the second."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    head = model.get_output_embeddings()
    layers = [
        layer
        for name, layer in model.named_modules()
        if isinstance(layer, (nn.Linear, Conv1D)) and not name.endswith((".lora_A", ".lora_B"))
    ]
    untied = sum(layer.weight.numel() for layer in layers if id(layer.weight) not in embedding_ids)
    tied_head = head.weight.numel() if head is not None and id(head.weight) in embedding_ids else 0
    linear = untied - (head.weight.numel() if head is not None and not tied_head else 0)
    return untied + tied_head, linear


@app.function
def model_shape(config):
    """Layers, width, key/value width, MLP width and vocabulary of a GPT-2 or Llama-family config."""
    d, heads = config.hidden_size, config.num_attention_heads
    if architecture(config) == "gpt2":
        kv, mlp = d, getattr(config, "n_inner", None) or 4 * d
    else:
        head_dim = getattr(config, "head_dim", None) or d // heads
        kv, mlp = config.num_key_value_heads * head_dim, config.intermediate_size
    return {
        "architecture": architecture(config),
        "n_layer": config.num_hidden_layers,
        "d_model": d,
        "kv_width": kv,
        "mlp_width": mlp,
        "vocab": config.vocab_size,
    }


@app.function
def tokenize_examples(frame, tokenizer, max_length):
    """Token ids and labels per row: prompt tokens and padding get -100, so only the response is learned."""
    eos = tokenizer.eos_token_id
    examples, dropped = [], 0
    for prompt, response in zip(frame["prompt"], frame["response"], strict=True):
        prompt_ids = tokenizer(format_prompt(prompt, tokenizer), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos]
        input_ids = (prompt_ids + response_ids)[:max_length]
        labels = ([-100] * len(prompt_ids) + response_ids)[:max_length]
        if all(label == -100 for label in labels):
            dropped += 1  # the prompt alone fills max_length: nothing left to learn from
            continue
        examples.append({"input_ids": input_ids, "labels": labels})
    return examples, dropped


@app.function
def collate_batch(examples, pad_id, multiple=1):
    """Pad a list of examples to the longest in the batch (dynamic padding); padded labels are -100.

    `multiple` rounds the width up (the compiled path: fewer distinct shapes).
    """
    width = -(-max(len(e["input_ids"]) for e in examples) // multiple) * multiple
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@app.function
def make_loader(examples, batch_size, pad_id, shuffle, seed=0, pin=False, multiple=1):
    """A DataLoader with dynamic padding; shuffling uses its own seeded generator (reproducible order).

    `pin`: batches land in page-locked host memory, so their copies to the GPU run asynchronously.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=lambda batch: collate_batch(batch, pad_id, multiple),
        pin_memory=pin,
    )


@app.function
def token_statistics(loader):
    """Tokens the batches hold: padded total, real (non-pad) tokens, and those that carry loss."""
    padded = real = loss = max_batch = max_batch_loss = 0
    lengths = []
    for batch in loader:
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        loss += int((batch["labels"] != -100).sum())
        max_batch = max(max_batch, batch["input_ids"].numel())
        max_batch_loss = max(max_batch_loss, int((batch["labels"] != -100).sum()))
        lengths.extend(batch["attention_mask"].sum(dim=1).tolist())
    return {
        "padded_tokens": padded,
        "real_tokens": real,
        "loss_tokens": loss,
        "max_batch_tokens": max_batch,  # the largest batch as padded: what one step's activations hold
        "max_batch_loss_tokens": max_batch_loss,
        "loss_share_of_real": loss / max(real, 1),
        "loss_share_of_padded": loss / max(padded, 1),
        "padding_share": 1 - real / max(padded, 1),
        "mean_length": sum(lengths) / max(len(lengths), 1),
        "max_length": max(lengths, default=0),
    }


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ### Library · the training core

    In reading order: the loss (`causal_lm_loss`, the reference; `ChunkedLMHeadLoss` and `batch_loss`, the one
    entry point), the learning rate (`lr_at`), the speed plan (`SpeedPlan`, `choose_speed_plan`,
    `apply_speed_plan`), the run object (`FineTuneRun`, `prepare_training`), the two step functions
    (`plain_train_step`, `fast_train_step`, one record type: `step_record`) and the loop (`train_steps`).
    """)
    return


@app.function
def causal_lm_loss(logits, labels, reduction="mean"):
    """Next-token cross-entropy on positions whose (shifted) label is not -100, computed in FP32.

    The reference loss: the plain path trains with it, and the tests check `batch_loss` against it."""
    shifted_labels = labels[:, 1:]
    keep = shifted_labels != -100
    # Select the loss positions first: the FP32 copy then covers response tokens only, not the whole batch.
    selected_logits = logits[:, :-1, :][keep].float()
    return F.cross_entropy(selected_logits, shifted_labels[keep], reduction=reduction)


@app.function
def lr_at(step, base_lr, warmup_steps, total_steps, min_ratio=0.1):
    """THE learning rate of the app: the rate for optimizer step `step` (0-based, applied steps only).

    Linear warm-up to `base_lr` over `warmup_steps`, then cosine decay to `min_ratio` × `base_lr` at the last
    step. The plain step sets it on the optimizer each step; the fast path precomputes the same values
    on the device (`device_schedule`), so reading it there needs no host sync.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


@app.class_definition
@dataclass(frozen=True)
class SpeedPlan:
    """Which speed levers a run uses. Every lever leaves the maths of a training step unchanged.

    `mode` is the one switch that only works as a whole: "fast" = the chunked LM-head loss, fused AdamW
    with the schedule on the device, and read-backs every SYNC_EVERY steps (each needs the others: the
    deferred read-back needs the device schedule, which needs the fused optimizer's tensor learning rate).
    The other levers are independent and may be dropped one by one (`apply_speed_plan` does for Llama
    or eager attention).
    """

    name: str = "plain"
    mode: str = "plain"  # "plain" (the reference loop) or "fast"
    causal_only: bool = False  # right padding + causal attention: no padding mask, so SDPA can use flash
    fast_gelu: bool = False  # GPT-2's tanh-GELU as one kernel instead of eight
    compile: bool = False  # torch.compile the transformer blocks
    compile_mode: str = "default"
    note: str = ""

    @property
    def fused_loss(self):
        """LM head + cross-entropy in row chunks, only at positions that carry loss."""
        return self.mode == "fast"

    @property
    def fused_optimizer(self):
        """AdamW(fused=True) with the learning rate on the device: no host sync to set it."""
        return self.mode == "fast"

    @property
    def sync_every(self):
        """Read loss and grad norm back every this many steps (1: after every step)."""
        return SYNC_EVERY if self.mode == "fast" else 1

    @property
    def deferred(self):
        return self.sync_every > 1


@app.function
def compile_break_even(eager_ms, compiled_ms, first_step_s, tokens_per_step):
    """(steps, tokens) after which a compiled run has caught up with the eager one.

    n eager steps take n·eager; compiled, the first step (compile included) then n−1 compiled steps.
    """
    saved_ms = eager_ms - compiled_ms
    if saved_ms <= 0:
        return math.inf, math.inf
    steps = math.ceil((first_step_s * 1000 - compiled_ms) / saved_ms)
    return steps, steps * tokens_per_step


@app.function
def choose_speed_plan(requested, device_type, padded_tokens=0, steps=0):
    """plain / fast / fast + compile / auto → a SpeedPlan; auto compiles only when the run is long enough to repay it."""
    if requested == "plain":
        return SpeedPlan(note="The reference loop: full logits, padding mask, a host sync after every step.")
    eager = SpeedPlan(
        name="fast",
        mode="fast",
        causal_only=True,
        fast_gelu=True,
        note="Chunked LM-head loss on answer tokens only, flash attention, fused AdamW, "
        f"loss read back every {SYNC_EVERY} steps, one-kernel GELU.",
    )
    wants_compile = requested == "compile" or (
        requested == "auto"
        and (padded_tokens >= COMPILE_PAYS_AFTER_TOKENS or steps >= COMPILE_PAYS_AFTER_STEPS)
    )
    if not wants_compile:
        if requested == "auto" and device_type == "cuda":
            return replace(
                eager,
                note=eager.note + f" No torch.compile: this run ({fmt_count(padded_tokens)} tokens, {steps} "
                f"steps) is too short to repay compiling (it pays from {fmt_count(COMPILE_PAYS_AFTER_TOKENS)} "
                f"tokens or {COMPILE_PAYS_AFTER_STEPS:,} steps).",
            )
        return eager
    if device_type != "cuda":
        return replace(
            eager,
            note=eager.note
            + " torch.compile is used on CUDA GPUs only: on this CPU the eager fast path runs.",
        )
    return replace(
        eager,
        name="fast + compile",
        compile=True,
        # CUDA graphs replay a whole forward or backward with one launch: without them the CPU could not
        # queue GPT-2's ~1,000 kernels per step as fast as an H100 runs them, at any batch size.
        compile_mode="reduce-overhead",
        note=eager.note + " torch.compile fuses each block's element-wise work and the loss; CUDA graphs "
        "replay the kernels without per-launch overhead.",
    )


@app.function
def loss_chunk_eager(part, weight, target, vocab, want_grad):
    """One chunk of the LM-head loss in plain PyTorch: (summed loss, gradient for `part` in FP32 or None).

    `weight` may carry zero rows past `vocab` (padding to a multiple of 128 keeps the GEMMs on fast,
    aligned kernels: GPT-2's 50,257 is odd); their logits are set to -inf, so they get probability 0.
    """
    logits = part @ weight.T
    if weight.shape[0] > vocab:
        logits[:, vocab:] = float("-inf")
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    # -log p(target): exact in FP32 down to p ≈ 1e-38 (a loss of 87, far above any real one).
    loss = -torch.log(probs.gather(1, target).clamp_min(1e-38)).sum()
    if not want_grad:
        return loss, None
    probs.scatter_add_(1, target, torch.full_like(target, -1.0, dtype=probs.dtype))  # softmax − one-hot
    # ×2¹⁰ before the FP16 cast keeps small probabilities from flushing to zero.
    scaled = probs.mul_(LOSS_GRAD_SCALE).to(part.dtype)
    return loss, (scaled @ weight).float().div_(LOSS_GRAD_SCALE)


@app.function
def loss_chunk_fusable(part, weight, target, vocab, want_grad):
    """The same chunk written without in-place steps, so torch.compile can fuse it into two passes."""
    logits = (part @ weight.T).float()
    column = torch.arange(logits.shape[1], device=logits.device)
    logits = torch.where(column < vocab, logits, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, target).squeeze(1)).sum()
    if not want_grad:
        return loss, None
    probs = torch.exp(logits - lse[:, None])
    probs = torch.where(column == target, probs - 1.0, probs)
    return loss, ((probs * LOSS_GRAD_SCALE).to(part.dtype) @ weight).float() / LOSS_GRAD_SCALE


@app.class_definition
class ChunkedLMHeadLoss(torch.autograd.Function):
    """Mean cross-entropy of softmax(hidden · Wᵀ) for a frozen LM head W, a few thousand rows at a time.

    Forward computes each chunk's logits, its loss and already the gradient for `hidden` (softmax − one-hot)·W,
    then drops the chunk: the [rows × vocabulary] logits never exist at once, and no FP32 copy of them
    outlives its chunk. Backward only scales the stored gradient. W gets no gradient (it is frozen).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows, compute_dtype, vocab=None, chunk_fn=None):
        rows = hidden.shape[0]
        vocab = vocab or weight.shape[0]
        chunk_fn = chunk_fn or loss_chunk_eager
        want_grad = ctx.needs_input_grad[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if want_grad else None
        weight = weight.to(compute_dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, rows, chunk_rows):
                part = hidden[start : start + chunk_rows].to(compute_dtype)
                loss, part_grad = chunk_fn(
                    part, weight, targets[start : start + chunk_rows, None], vocab, want_grad
                )
                total += loss
                if want_grad:
                    grad[start : start + chunk_rows] = part_grad
        ctx.save_for_backward(grad)
        ctx.rows = rows
        return total / max(rows, 1)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * (grad_output / max(ctx.rows, 1)), None, None, None, None, None, None


@app.class_definition
class CausalLMBody(nn.Module):
    """The model's transformer for right-padded causal training: embeddings → blocks → final norm, no mask.

    GPT-2: token + position embeddings, its blocks, ln_f. Llama family: token embeddings, RoPE's cos/sin
    once, its decoder layers, the final RMSNorm. With no mask every SDPA call runs with is_causal=True
    (flash attention). Calling the blocks directly also skips transformers' mask building, whose
    packed-sequence and padding checks each wait for the GPU. Right padding makes this exact: a causal
    token never looks at the padding after it.
    """

    def __init__(self, model):
        super().__init__()
        self.gpt2 = architecture(model) == "gpt2"
        self.transformer = model.transformer if self.gpt2 else model.model

    def forward(self, input_ids):
        t = self.transformer
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if self.gpt2:
            hidden, extra = t.drop(t.wte(input_ids) + t.wpe(positions)), {}
            blocks, norm = t.h, t.ln_f
        else:
            hidden = t.embed_tokens(input_ids)
            position_ids = positions.unsqueeze(0)
            extra = {
                "attention_mask": None,
                "position_ids": position_ids,
                "position_embeddings": t.rotary_emb(hidden, position_ids=position_ids),
            }
            blocks, norm = t.layers, t.norm
        for block in blocks:
            out = block(hidden, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        return norm(hidden)


@app.function
def loss_positions(labels):
    """Flat positions (into [batch × length]) whose next token carries loss, and those next tokens.

    Computed on the CPU before the batch moves, so selecting them on the GPU needs no host sync
    (a boolean mask on the GPU would have to report its count back first).
    """
    shifted = torch.full_like(labels, -100)
    shifted[:, :-1] = labels[:, 1:]
    flat = shifted.reshape(-1)
    index = (flat != -100).nonzero().squeeze(1)
    return index, flat[index]


@app.function
def lm_head_rows(vocab_size, budget_bytes=LOSS_CHUNK_BYTES):
    """Rows per loss chunk so one chunk's FP32 probabilities stay within `budget_bytes`."""
    return max(256, budget_bytes // (4 * vocab_size) // 256 * 256)


@app.function
def batch_loss(run, batch, eager=False):
    """THE loss of the app: mean next-token cross-entropy over a batch's answer tokens, on the run's device.

    Fast path (the default): hidden states at the loss positions only → the chunked LM head
    (`ChunkedLMHeadLoss`), never the full logits. Plain path, the reference: full logits with the padding
    mask → `causal_lm_loss` (F.cross_entropy); a test checks that both give the same number. `eager`
    skips the compiled body (evaluation runs in eval mode, which would trigger a second compile).
    """
    if not run.speed.fused_loss:
        logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return causal_lm_loss(logits, batch["labels"])
    if run.speed.causal_only:
        body = CausalLMBody(run.model) if eager or run.body is None else run.body
        hidden = body(batch["input_ids"])
    else:
        hidden = run.model.base_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).last_hidden_state
    selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["loss_index"])
    dtype = run.plan.autocast_dtype or run.plan.param_dtype
    weight = run.lm_weight if run.lm_weight is not None else run.model.lm_head.weight
    vocab = run.model.lm_head.weight.shape[0]
    fused = not eager and run.loss_chunk is not None
    chunk_fn = run.loss_chunk if fused else loss_chunk_eager
    # The compiled chunk never holds FP32 probabilities, so it can take 4× the rows (fewer, larger GEMMs).
    rows = lm_head_rows(weight.shape[0], LOSS_CHUNK_BYTES * (4 if fused else 1))
    return ChunkedLMHeadLoss.apply(selected, weight, batch["loss_targets"], rows, dtype, vocab, chunk_fn)


@app.function
def to_device(batch, device, with_positions=False):
    """Batch tensors to `device`; pinned host memory makes the copies asynchronous on CUDA."""
    batch = dict(batch)
    if with_positions and "loss_index" not in batch:
        batch["loss_index"], batch["loss_targets"] = loss_positions(batch["labels"])
    cuda = device.type == "cuda"
    return {
        key: (value.pin_memory() if cuda and not value.is_pinned() else value).to(device, non_blocking=True)
        for key, value in batch.items()
    }


@app.function
def apply_speed_plan(run):
    """Prepare the levers of the run's SpeedPlan: one-kernel GELU, padded LM head, compiled body and loss."""
    if architecture(run.model) != "gpt2" and run.speed.fast_gelu:
        # The Llama family has SwiGLU, no GELU to replace; its blocks run through CausalLMBody like GPT-2's.
        run.speed = replace(run.speed, fast_gelu=False)
    if run.speed.fast_gelu:
        for block in run.model.transformer.h:
            if type(block.mlp.act).__name__ == "NewGELUActivation":
                block.mlp.act = nn.GELU(approximate="tanh")  # the same tanh formula, fused by PyTorch
    run.body = run.loss_chunk = run.lm_weight = None
    attention = getattr(run.model.config, "_attn_implementation", "eager")
    if run.speed.causal_only and attention not in ("sdpa", "flash_attention_2", "flash_attention_3"):
        # GPT-2's eager attention is causal only through the mask: keep the mask for such a model.
        run.speed = replace(
            run.speed,
            causal_only=False,
            note=run.speed.note + f" ({attention} attention: the padding mask stays.)",
        )
    if run.speed.fused_loss:
        # The LM head is frozen (tied to the embeddings), so a padded copy stays valid for the whole run.
        weight = run.model.lm_head.weight.detach()
        rows = -(-weight.shape[0] // 128) * 128
        dtype = run.plan.autocast_dtype or run.plan.param_dtype
        run.lm_weight = torch.zeros((rows, weight.shape[1]), dtype=dtype, device=weight.device)
        run.lm_weight[: weight.shape[0]] = weight
    if run.speed.compile:
        run.body = torch.compile(CausalLMBody(run.model), mode=run.speed.compile_mode)
        run.loss_chunk = torch.compile(loss_chunk_fusable, dynamic=True)


@app.function
def device_schedule(run, warmup):
    """The warm-up/cosine learning rates as a tensor on the device, indexed by the count of applied steps."""
    base = run.settings.learning_rate
    rates = [lr_at(step, base, warmup, run.total_steps) for step in range(max(run.total_steps, 1))]
    return torch.tensor(rates, dtype=torch.float32, device=run.device)


@app.class_definition
@dataclass
class FineTuneRun:
    """Everything one Train click holds in device memory, kept in one place so step 7 can free it all."""

    settings: TrainSettings
    device: torch.device
    plan: PrecisionPlan
    model: nn.Module | None = None
    tokenizer: object = None
    model_name: str = ""
    train_loader: object = None
    eval_loader: object = None
    optimizer: object = None
    scaler: object = None
    total_steps: int = 0
    warmup_steps: int = 0  # lr_at's warm-up
    memory_baseline: int = 0
    speed: SpeedPlan | None = None  # chosen in prepare_training from settings.speed
    body: object = None  # the compiled transformer when the SpeedPlan compiles
    loss_chunk: object = None  # the compiled loss chunk when the SpeedPlan compiles
    lm_weight: object = None  # fast path: the LM head padded to a multiple of 128 rows
    lr_schedule: object = None  # fast path: learning rate per applied step, on the device
    # optimizer steps not skipped (lr_at's step): an int on the plain path, a 0-d device tensor on the fast path
    applied_steps: object = None
    lease: object = None  # the GpuLease this run holds from step 2 until release()
    generator: object = None  # this run's own random numbers: LoRA's A init and LoRA dropout

    def release(self):
        """Drop every reference to model, optimizer and batches; report device memory before and after; give
        the GPU lease back (the memory is read before another viewer can allocate)."""
        before = device_memory(self.device)
        compiled = self.body is not None
        self.model = self.optimizer = self.scaler = self.body = None
        self.loss_chunk = self.lm_weight = None
        self.lr_schedule = self.applied_steps = None
        self.train_loader = self.eval_loader = None
        if compiled:
            release_compiled_graphs()
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
        after = device_memory(self.device)
        if self.lease is not None:
            self.lease.release()
        return {
            "allocated_before": before["allocated"],
            "allocated_after": after["allocated"],
            "reserved_before": before["reserved"],
            "reserved_after": after["reserved"],
            "baseline": self.memory_baseline,
        }


@app.function
def release_compiled_graphs():
    """Free the CUDA-graph memory pool that torch.compile's cudagraph trees keep for *this* thread only.

    Not `torch._dynamo.reset()`: that clears the compile caches of every viewer's session in the process.
    Dynamo's per-code caches stay (they hold guards, not this run's tensors); cudagraph trees live in
    thread-local storage, and each marimo session runs its cells on its own thread.
    """
    with contextlib.suppress(ImportError):
        from torch._inductor.cudagraph_trees import reset_cudagraph_trees

        reset_cudagraph_trees()


@app.function
def device_memory(device):
    """Bytes the torch caching allocator has allocated and reserved on `device` (zeros on CPU)."""
    if device.type != "cuda":
        return {"allocated": 0, "reserved": 0, "peak": 0}
    return {
        "allocated": torch.cuda.memory_allocated(device),
        "reserved": torch.cuda.memory_reserved(device),
        "peak": torch.cuda.max_memory_allocated(device),
    }


@app.function
def prepare_training(run, train_frame, eval_frame):
    """Tokenize, build loaders, AdamW on adapter parameters only, warm-up/cosine schedule, GradScaler."""
    s, pad_id = run.settings, run.tokenizer.pad_token_id
    train_examples, train_dropped = tokenize_examples(train_frame, run.tokenizer, s.max_length)
    eval_examples, eval_dropped = tokenize_examples(eval_frame, run.tokenizer, s.max_length)
    if not train_examples or not eval_examples:
        split = "training" if not train_examples else "eval"
        raise NoExampleFits(
            f"No {split} example fits the max sequence length of {s.max_length} tokens (every prompt is "
            "longer): raise the max sequence length or shorten the prompts."
        )
    pin = run.device.type == "cuda"
    run.train_loader = make_loader(train_examples, s.batch_size, pad_id, shuffle=True, seed=s.seed, pin=pin)
    run.eval_loader = make_loader(eval_examples, s.batch_size, pad_id, shuffle=False, pin=pin)
    train_stats = token_statistics(run.train_loader)
    run.total_steps = s.epochs * len(run.train_loader)
    if run.speed is None:
        run.speed = choose_speed_plan(
            s.speed, run.device.type, s.epochs * train_stats["padded_tokens"], run.total_steps
        )
    if run.speed.compile:
        # Widths rounded up to 64 (exact: right padding, causal attention, labels -100): a compiled model
        # meets a handful of shapes instead of one per batch, so it compiles at most twice.
        run.train_loader = make_loader(
            train_examples, s.batch_size, pad_id, shuffle=True, seed=s.seed, pin=pin, multiple=64
        )
        train_stats = token_statistics(run.train_loader)  # step 4 shows the padding that really runs
    apply_speed_plan(run)
    adapter_parameters = [p for p in run.model.parameters() if p.requires_grad]
    warmup = run.warmup_steps = round(s.warmup_ratio * run.total_steps)
    if run.speed.fused_optimizer:
        # One fused kernel per step; the learning rate lives on the device, so GradScaler skips need no sync.
        run.lr_schedule = device_schedule(run, warmup)
        run.applied_steps = torch.zeros((), dtype=torch.long, device=run.device)
        run.optimizer = torch.optim.AdamW(
            adapter_parameters, lr=run.lr_schedule[0].clone(), weight_decay=0.0, fused=True
        )
        # Without FP16 a scale-1 scaler still guards: it skips any step whose gradients hold inf/NaN.
        run.scaler = torch.amp.GradScaler(
            device=run.device.type,
            **({} if run.plan.use_grad_scaler else {"init_scale": 1.0, "growth_interval": 2**30}),
        )
    else:
        # The plain step sets the learning rate itself from lr_at(applied steps) before each update.
        run.applied_steps = 0
        run.optimizer = torch.optim.AdamW(adapter_parameters, lr=s.learning_rate, weight_decay=0.0)
        run.scaler = torch.amp.GradScaler(device=run.device.type, enabled=run.plan.use_grad_scaler)
    return {
        "train": train_stats,
        "eval": token_statistics(run.eval_loader),
        "train_examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "dropped": train_dropped + eval_dropped,
        "warmup_steps": warmup,
        "total_steps": run.total_steps,
        "steps_per_epoch": len(run.train_loader),
    }


@app.function
def autocast_context(run):
    """torch.amp.autocast for the run's plan (a no-op context in FP32)."""
    dtype = run.plan.autocast_dtype
    return torch.amp.autocast(
        device_type=run.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
    )


@app.class_definition
class TrainingStopped(RuntimeError):
    """Training stopped early on purpose (non-finite loss, collapsed loss scale, out of memory)."""

    def __init__(self, reason, advice, step):
        super().__init__(f"{reason} {advice}")
        self.reason, self.advice, self.step = reason, advice, step


@app.function
def catch_out_of_memory(work, *args):
    """(work(*args), False), or (None, True) after torch.OutOfMemoryError: the one OOM catch of the app.

    The type, never the message text, decides. The failed frames are cleared before returning, so the
    activations they hold can be freed by the caller (outside any except block).
    """
    try:
        return work(*args), False
    except torch.OutOfMemoryError as error:
        traceback.clear_frames(error.__traceback__)
    return None, True


@app.function
def out_of_memory_stop(reason, step):
    """The stop after a torch out-of-memory error, called outside its except block (which would keep the
    failed frames alive): hand the allocator's cached blocks back to the driver and say what to change."""
    gc.collect()
    torch.cuda.empty_cache()
    return TrainingStopped(
        reason, "Choose a smaller batch size or max sequence length and press Train again.", step
    )


@app.function
def train_one_step(run, batch, adapter_parameters, max_grad_norm):
    """One optimizer step of the run's plan: `fast_train_step` or `plain_train_step`.

    Both return the same step record, a 5-vector [loss, grad norm, loss scale, skipped, learning rate]:
    on the host for the plain step, still on the device for the fast one (`train_steps` reads it back).
    """
    step = fast_train_step if run.speed is not None and run.speed.deferred else plain_train_step
    return step(run, batch, adapter_parameters, max_grad_norm)


@app.function
def plain_train_step(run, batch, adapter_parameters, max_grad_norm):
    """The reference step: full logits with the padding mask, every number read back as soon as it exists."""
    # learning rate: set by hand before the update; a step the scaler skips does not advance it
    lr = lr_at(run.applied_steps, run.settings.learning_rate, run.warmup_steps, run.total_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = to_device(batch, run.device)
    with autocast_context(run):
        loss = batch_loss(run, batch)
    loss_value = loss.item()  # HOST SYNC: the loss before backward, so a NaN never reaches the adapter
    if not math.isfinite(loss_value):
        return step_record(loss_value, math.nan, 1.0, True, lr)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)  # gradients back to true scale before clipping
    # HOST SYNC: the clipped norm (and, with FP16, the scale) come back to decide on the step here
    grad_norm = torch.nn.utils.clip_grad_norm_(adapter_parameters, max_grad_norm).item()
    scale_before = run.scaler.get_scale() if run.scaler.is_enabled() else 1.0
    if run.scaler.is_enabled():
        run.scaler.step(run.optimizer)  # skipped by the scaler when the unscaled gradients hold inf/NaN
        run.scaler.update()
        skipped = run.scaler.get_scale() < scale_before
    else:  # no scaler (BF16/FP32): skip a step with inf/NaN gradients the same way, never apply it
        skipped = not math.isfinite(grad_norm)
        if not skipped:
            run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.applied_steps += 0 if skipped else 1
    return step_record(loss_value, grad_norm, scale_before, skipped, lr)


@app.function
def step_record(loss, grad_norm, scale, skipped, lr):
    """The record both step functions return: [loss, grad norm, loss scale, skipped (0/1), lr] on the host."""
    return torch.tensor([loss, grad_norm, scale, float(skipped), lr], dtype=torch.float64)


@app.function
def scaler_readings(scaler, optimizer, grad_norm):
    """(loss scale, found inf/NaN) after `scaler.unscale_(optimizer)`, as device tensors: no host sync.

    The only place the app touches GradScaler internals. Its public `get_scale()` returns a Python float
    (a sync) and nothing public reports the inf/NaN check; the private `_get_scale_async` and
    `_found_inf_per_device` do, checked by name and torch version (present from 2.4, the app's minimum,
    to 2.13 at least). Without them: `get_scale()` (one sync) and a non-finite clipped norm as the check
    (inf/NaN gradients make the norm inf/NaN).
    """
    private = ("_get_scale_async", "_found_inf_per_device")
    if TORCH_VERSION >= (2, 4) and all(hasattr(scaler, name) for name in private):
        found_inf = sum(scaler._found_inf_per_device(optimizer).values())
        return scaler._get_scale_async().detach().clone(), (found_inf > 0).float()
    scale = torch.tensor(scaler.get_scale() if scaler.is_enabled() else 1.0, device=grad_norm.device)
    return scale, (~torch.isfinite(grad_norm)).float()


@app.function
def fast_train_step(run, batch, adapter_parameters, max_grad_norm):
    """The same update as the plain step with nothing read back: returns the step record on the device.

    The scaler's inf/NaN check, the skip and the learning-rate schedule all stay on the device, so the CPU
    queues step after step while the GPU works; `train_steps` reads the records every SYNC_EVERY steps.
    No line here waits for the GPU (tests/gpu checks it with torch.cuda.set_sync_debug_mode("error")).
    """
    batch = to_device(batch, run.device, with_positions=True)  # loss positions found on the host: no sync
    if run.speed.compile and run.speed.compile_mode != "default":  # the modes that use CUDA graphs
        torch.compiler.cudagraph_mark_step_begin()
    with autocast_context(run):
        loss = batch_loss(run, batch)
    scaler = run.scaler
    scaler.scale(loss).backward()
    scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(adapter_parameters, max_grad_norm)
    scale, skipped = scaler_readings(scaler, run.optimizer, grad_norm)
    # learning rate: lr_at's value for this applied step, picked on the device (index_select, not
    # schedule[tensor]: indexing with a 0-d tensor would read it back to the host)
    where = run.applied_steps.clamp(max=len(run.lr_schedule) - 1).reshape(1)
    lr = run.lr_schedule.index_select(0, where).squeeze(0)
    run.optimizer.param_groups[0]["lr"].copy_(lr)
    scaler.step(run.optimizer)  # fused AdamW skips the update itself when found_inf is set
    # The FP16 scaler backs off on overflow; the scale-1 guard of BF16/FP32 stays at 1 (a device tensor: no sync).
    scaler.update(None if run.plan.use_grad_scaler else run.applied_steps.new_ones((), dtype=torch.float32))
    run.optimizer.zero_grad(set_to_none=True)
    run.applied_steps += 1 - skipped.long()
    return torch.stack([loss.detach().float(), grad_norm.float(), scale.float(), skipped, lr.float()])


@app.function
def train_steps(run, max_grad_norm=1.0, max_skipped_in_row=25):
    """THE training loop: every epoch, one record per optimizer step and one per end-of-epoch evaluation.

    The fast path reads its step records back in groups of SYNC_EVERY (the first step alone: it carries the
    warm-up and any compile), so per-step seconds are the group's wall time divided by its steps. Where the
    host waits for the GPU: the plain step's `.item()`s and the `synchronize` after it; on the fast path
    only the one `.tolist()` per group below.
    """
    adapter_parameters = [p for p in run.model.parameters() if p.requires_grad]
    step, skipped_in_row = 0, 0
    sync_every = run.speed.sync_every if run.speed is not None else 1
    synchronize = torch.cuda.synchronize if run.device.type == "cuda" else (lambda *_: None)

    def record(epoch, meta, values, seconds):
        """One step's record, after the termination checks (a NaN loss, too many skipped steps)."""
        nonlocal step, skipped_in_row
        loss, grad_norm, scale, skipped, lr = values
        if not math.isfinite(loss):
            raise TrainingStopped(
                f"The loss became {loss} at step {step + 1}: training stopped before it "
                "could corrupt the adapter.",
                "Lower the learning rate, use BF16 or FP32, or keep GradScaler on with FP16.",
                step,
            )
        skipped_in_row = skipped_in_row + 1 if skipped else 0
        if skipped_in_row >= max_skipped_in_row:
            raise TrainingStopped(
                f"GradScaler skipped {skipped_in_row} steps in a row (gradients overflow even at scale "
                f"{scale:.3g}).",
                "Lower the learning rate or switch to BF16/FP32.",
                step,
            )
        step += 1
        memory = device_memory(run.device)
        return {
            "kind": "train",
            "step": step,
            "epoch": epoch + 1,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "loss_scale": scale,
            "skipped": bool(skipped),
            "seconds": seconds,
            "real_tokens": meta["real_tokens"],
            "padded_tokens": meta["padded_tokens"],
            "tokens_per_s": meta["real_tokens"] / seconds,
            "padded_tokens_per_s": meta["padded_tokens"] / seconds,
            "memory_mib": memory["allocated"] / 2**20,
            # max_memory_allocated: the peak inside the steps so far (reset in step 2), not a read between steps
            "peak_mib": memory["peak"] / 2**20,
        }

    for epoch in range(run.settings.epochs):
        run.model.train()
        pending, started = [], time.perf_counter()
        for index, batch in enumerate(run.train_loader):
            meta = {
                "real_tokens": int(batch["attention_mask"].sum()),  # counted on the host copy: no sync
                "padded_tokens": batch["input_ids"].numel(),
            }
            # --- forward, backward, update (the learning rate is set inside the step, from lr_at) ---
            stats, out_of_memory = catch_out_of_memory(
                train_one_step, run, batch, adapter_parameters, max_grad_norm
            )
            if not out_of_memory and sync_every == 1:
                # HOST SYNC (plain path): wait for the step's last kernels, so its time is its own
                _, out_of_memory = catch_out_of_memory(synchronize, run.device)
            # --- termination: out of memory (NaN and skipped steps stop in `record`) ---
            if out_of_memory:
                # The failed step's tensors died with its frame; hand the cached blocks back to the driver.
                step += len(pending)  # steps queued before the failure were applied; count them
                pending.clear()
                run.optimizer.zero_grad(set_to_none=True)
                raise out_of_memory_stop(
                    f"GPU out of memory at step {step + 1} (batch {run.settings.batch_size} × up to "
                    f"{run.settings.max_length} tokens).",
                    step,
                )
            # --- timing and logging: a group of steps at a time on the fast path, every step on the plain ---
            pending.append((meta, stats))
            last = index == len(run.train_loader) - 1
            if len(pending) < sync_every and step > 0 and not last:
                continue  # the fast path queues more steps before reading any back
            # HOST SYNC (fast path): the one read-back per group of SYNC_EVERY steps (the plain path's records
            # are already on the host)
            values = torch.stack([stats for _, stats in pending]).tolist()
            seconds = (time.perf_counter() - started) / len(pending)
            group, pending = pending, []
            for (meta, _), row in zip(group, values, strict=True):
                yield record(epoch, meta, row, seconds)
            started = time.perf_counter()
        # --- end of epoch: evaluation on the held-out split ---
        metrics, out_of_memory = catch_out_of_memory(evaluate_loss, run)
        if out_of_memory:
            raise out_of_memory_stop(f"GPU out of memory while evaluating after epoch {epoch + 1}.", step)
        yield {"kind": "eval", "step": step, "epoch": epoch + 1, **metrics}


@app.function
@torch.no_grad()
def evaluate_loss(run):
    """Token-weighted mean loss and perplexity over the eval loader, in eval mode (no dropout)."""
    run.model.eval()
    fast = run.speed is not None and run.speed.fused_loss
    total, count = 0.0, 0
    for batch in run.eval_loader:
        n = int((batch["labels"][:, 1:] != -100).sum())
        batch = to_device(batch, run.device, with_positions=fast)
        with autocast_context(run):
            total += batch_loss(run, batch, eager=True).item() * n  # mean over the batch's n loss tokens
        count += n
    loss = total / max(count, 1)
    return {"eval_loss": loss, "perplexity": math.exp(min(loss, 50.0))}


@app.function
@torch.no_grad()
def generate_greedy(run, prompts, max_new_tokens=16, batch_size=32):
    """Greedy continuations of templated prompts, batched with left padding; text up to the first eos."""
    run.model.eval()
    tokenizer, eos = run.tokenizer, run.tokenizer.eos_token_id
    outputs = []
    for start in range(0, len(prompts), batch_size):
        encoded = [
            tokenizer(format_prompt(p, tokenizer), add_special_tokens=False)["input_ids"]
            for p in prompts[start : start + batch_size]
        ]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.tensor([[eos] * (width - len(ids)) + ids for ids in encoded], device=run.device)
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=run.device
        )
        finished = torch.zeros(len(encoded), dtype=torch.bool, device=run.device)
        for _ in range(max_new_tokens):
            # Positions count real tokens only, so a left-padded prompt sees the positions it saw in training.
            position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            with autocast_context(run):
                logits = run.model(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
                ).logits
            next_token = logits[:, -1, :].argmax(dim=-1).masked_fill(finished, eos)
            input_ids = torch.cat([input_ids, next_token[:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_token)[:, None]], dim=1)
            finished |= next_token == eos
            if finished.all():
                break
        for row in input_ids[:, width:].tolist():
            row = row[: row.index(eos)] if eos in row else row
            outputs.append(readable_decode(tokenizer, row))
    return outputs


@app.function
def byte_level_alphabet():
    """GPT-2's byte-level BPE alphabet: the character each byte is written as inside a token (→ byte)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:  # unprintable bytes are moved past 255, in order
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


@app.function
def readable_decode(tokenizer, ids):
    """Generated tokens as text; bytes that are not complete UTF-8 characters shown as `\\xNN`, never "�".

    An untrained model can emit one byte of a multi-byte character (byte-level BPE tokens are bytes); a
    plain decode turns it into U+FFFD, which reads like an encoding bug. Tokens that are not byte-level
    (special or SentencePiece pieces) fall back to the plain decode.
    """
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if "\ufffd" not in text:
        return text.strip()
    alphabet, raw = byte_level_alphabet(), bytearray()
    for token in tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=True):
        if (
            token is None
        ):  # an id past the tokenizer's vocabulary (a model wider than it): decode skips it too
            continue
        if token.startswith("<0x") and token.endswith(">") and len(token) == 6:  # SentencePiece byte fallback
            raw.append(int(token[3:5], 16))
        elif all(ch in alphabet for ch in token):
            raw.extend(alphabet[ch] for ch in token)
        else:
            raw.extend(token.replace("▁", " ").encode("utf-8"))
    return raw.decode("utf-8", errors="backslashreplace").strip()


@app.function
def normalize_answer(text):
    """Whitespace-collapsed text: exact match ignores spacing only."""
    return " ".join(str(text).split())


@app.function
def score_generations(frame, generations):
    """Per-row exact match and answer-format match (the task's fixed format) for generated responses."""
    scored = frame[["task", "prompt", "response"]].reset_index(drop=True).copy()
    scored["generated"] = generations
    scored["exact_match"] = [
        normalize_answer(g) == normalize_answer(r)
        for g, r in zip(generations, scored["response"], strict=True)
    ]
    # Only the built-in tasks have a fixed answer format; uploaded rows get NaN (shown as n/a).
    scored["format_match"] = [
        float(bool(re.fullmatch(ANSWER_FORMATS[task], normalize_answer(g))))
        if task in ANSWER_FORMATS
        else math.nan
        for task, g in zip(scored["task"], generations, strict=True)
    ]
    return scored


@app.function
def evaluate_run(run, eval_frame, max_new_tokens):
    """Eval loss, perplexity and scored greedy generations for the held-out prompts (OOM → TrainingStopped)."""
    metrics, out_of_memory = catch_out_of_memory(evaluate_loss, run)
    if not out_of_memory:
        generations, out_of_memory = catch_out_of_memory(
            generate_greedy, run, eval_frame["prompt"].tolist(), max_new_tokens
        )
    if out_of_memory:
        raise out_of_memory_stop("GPU out of memory while evaluating.", 0)
    scored = score_generations(eval_frame, generations)
    metrics.update(
        exact_match=scored["exact_match"].mean(),
        format_match=scored["format_match"].mean(),
        eval_items=len(scored),
    )
    return metrics, scored


@app.function
def answer_token_budget(tokenizer, responses):
    """Generation length: the longest reference answer in tokens plus a little slack (capped)."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses), default=8)
    return min(longest + 4, 48)


@app.function
def sanitize_name(text):
    """A folder-safe name: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "adapter"


@app.function
def adapter_config(settings, base_model_name, fan_in_fan_out):
    """adapter_config.json contents in PEFT's LoRA schema."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name,
        "r": settings.rank,
        "lora_alpha": settings.alpha,
        "lora_dropout": settings.dropout,
        "target_modules": sorted(settings.target_modules),
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "layers_to_transform": None,
        "revision": None,
    }


@app.function
def adapter_state_dict(model):
    """LoRA weights under PEFT's key names: base_model.model.<module>.lora_A.weight ([r, in]) and lora_B ([out, r])."""
    state = {}
    for name, layer in lora_layers(model):
        state[f"base_model.model.{name}.lora_A.weight"] = (
            layer.lora_A.weight.detach().float().cpu().contiguous()
        )
        state[f"base_model.model.{name}.lora_B.weight"] = (
            layer.lora_B.weight.detach().float().cpu().contiguous()
        )
    return state


@app.function
def save_adapter(model, folder, settings, base_model_name):
    """Write adapter_config.json + adapter_model.safetensors (PEFT's format) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = lora_layers(model)
    fan_in_fan_out = all(layer.fan_in_fan_out for _, layer in layers)
    config = adapter_config(settings, base_model_name, fan_in_fan_out)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    save_file(adapter_state_dict(model), str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return {path.name: path.stat().st_size for path in sorted(folder.rglob("*")) if path.is_file()}


@app.function
def zip_folder(folder):
    """The folder's files as zip bytes (for mo.download)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


@app.function
@torch.no_grad()
def peft_reload_check(run, folder, prompts):
    """Reload the saved adapter with PEFT onto the same base weights; max |Δ logits| vs our LoRA model."""
    from peft import PeftModel  # imported here: only step 7 (and the tests) need PEFT itself

    inputs = prompt_batch(run, prompts)
    run.model.eval()
    ours = run.model(**inputs).logits.float()
    base = remove_lora(run.model)
    # A transformers deprecation notice raised inside PEFT, not ours to fix. One process-wide filter, added
    # once: warnings.catch_warnings() swaps the filters of every thread, so it is unsafe beside other viewers.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    run.model = PeftModel.from_pretrained(base, str(folder)).to(run.device).eval()
    theirs = run.model(**inputs).logits.float()
    keep = inputs["attention_mask"].bool()
    return (ours[keep] - theirs[keep]).abs().max().item()


@app.function
def prompt_batch(run, prompts):
    """Templated prompts as a right-padded batch (input ids + attention mask) on the run's device."""
    encoded = run.tokenizer([format_prompt(p, run.tokenizer) for p in prompts], add_special_tokens=False)[
        "input_ids"
    ]
    batch = collate_batch([{"input_ids": ids, "labels": ids} for ids in encoded], run.tokenizer.pad_token_id)
    return {
        "input_ids": batch["input_ids"].to(run.device),
        "attention_mask": batch["attention_mask"].to(run.device),
    }


@app.function
@torch.no_grad()
def merge_check(run, prompts):
    """Max |Δ logits| between the adapters beside the weights and merged into them; weights restored after."""
    inputs = prompt_batch(run, prompts)
    run.model.eval()
    separate = run.model(**inputs).logits.float()
    layers = [layer for _, layer in lora_layers(run.model)]
    # Merging into FP16 weights rounds; keep exact copies so the saved adapter's base stays untouched.
    originals = [layer.base_layer.weight.detach().clone() for layer in layers]
    set_merged(run.model, True)
    merged = run.model(**inputs).logits.float()
    for layer, original in zip(layers, originals, strict=True):
        layer.base_layer.weight.copy_(original)
        layer.merged = False
    keep = inputs["attention_mask"].bool()
    return (separate[keep] - merged[keep]).abs().max().item()


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ### Library · the GPU lease, the seven steps' bodies, telemetry
    """)
    return


@app.function
def process_registry():
    """This server process's shared objects: each `marimo run` viewer re-runs the setup, so they live in sys.modules."""
    holder = sys.modules.setdefault("llm_finetuning_dashboard_gpu_lock", types.ModuleType("gpu_lock"))
    return holder.__dict__


@app.function
def process_gpu_lock():
    """One GPU lock per server process, shared by every viewer."""
    return process_registry().setdefault("lock", threading.Lock())


@app.function
def gpu_lock_path():
    """The machine-wide lock file: env GPU_NOTEBOOKS_LOCK_PATH, else the default both apps share."""
    return os.environ.get("GPU_NOTEBOOKS_LOCK_PATH") or GPU_LOCK_DEFAULT_PATH


@app.class_definition
class GpuLease:
    """The GPU held by one holder: one viewer at a time in this process, one program at a time on this machine.

    A Train click takes one lease in step 2 and keeps it across the step cells until `FineTuneRun.release`
    (step 7, or any stop or failure) gives it back, so two viewers never share the GPU and every memory
    figure of a run is read while no other run of this process allocates. The file lock is the one the
    RAPIDS dashboard takes. The holder's thread is recorded: a session's cells all run on its thread, so a
    lease its previous run left behind (a cell that raised) is given back before that session waits.
    """

    def __init__(self, path=None):
        self.path = path or gpu_lock_path()
        self.held, self.waited_s, self.owner = False, 0.0, None
        self._handle = None

    def acquire(self, on_wait=None, wait=True):
        """Take the lease (True), calling `on_wait()` once if someone else has it; wait=False → False at once."""
        registry, lock = process_registry(), process_gpu_lock()
        stale = registry.get("lease_holder")
        if stale is not None and stale is not self and stale.owner == threading.get_ident():
            stale.release()
        started, told = time.perf_counter(), False
        if not lock.acquire(blocking=False):
            if not wait:
                return False
            if on_wait is not None:
                on_wait()
            told = True
            lock.acquire()
        try:
            import fcntl
        except ImportError:  # Windows: the in-process lock alone
            fcntl = None
        if fcntl is not None:
            handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lease
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    handle.close()
                    lock.release()
                    return False
                if on_wait is not None and not told:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            self._handle = handle
        self.held, self.owner = True, threading.get_ident()
        self.waited_s = time.perf_counter() - started
        registry["lease_holder"] = self
        return True

    def release(self):
        """Give the lease back (a no-op when not held)."""
        if not self.held:
            return
        self.held = False
        registry = process_registry()
        if registry.get("lease_holder") is self:
            registry["lease_holder"] = None
        if self._handle is not None:
            import fcntl

            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        process_gpu_lock().release()

    def __del__(self):
        # A lease whose holder vanished (its session closed) goes back; at interpreter exit the module's
        # globals may already be gone, and there is nothing left to give back to.
        if getattr(self, "held", False):
            with contextlib.suppress(Exception):
                self.release()


@app.function
@contextlib.contextmanager
def gpu_turn(on_wait=None, path=None, wait=True):
    """A GpuLease for the length of a `with` block: yields True once held, or False at once with wait=False."""
    lease = GpuLease(path)
    held = lease.acquire(on_wait=on_wait, wait=wait)
    try:
        yield held
    finally:
        lease.release()


@app.class_definition
class GpuSampler:
    """Background thread sampling NVML (utilization, memory, temperature, power) at `hz`; psutil without NVML."""

    def __init__(self, device=None, hz=10.0):
        self.interval, self.samples = 1.0 / hz, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpu-sampler")
        self.device = device or torch.device("cpu")
        self.source, self._nvml, self._handle = "psutil, CPU", None, None
        nvml = nvml_module()
        if nvml is not None and self.device.type == "cuda":
            try:
                nvml.nvmlInit()
                self._handle = self._nvml_handle(nvml)
                self._nvml, self.source = nvml, "NVML"
            except Exception:  # no driver / no permission: fall back to psutil quietly
                self._nvml = None

    def _nvml_handle(self, nvml):
        """NVML handle of the torch device, matched by UUID (CUDA_VISIBLE_DEVICES renumbers devices)."""
        uuid = str(getattr(torch.cuda.get_device_properties(self.device), "uuid", ""))
        if uuid:
            try:
                return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
            except Exception:
                pass
        return nvml.nvmlDeviceGetHandleByIndex(self.device.index or 0)

    def _read(self):
        if self._nvml is None:
            memory = psutil.Process().memory_info().rss / 2**20
            return {
                "util_pct": psutil.cpu_percent(interval=None),
                "memory_mib": memory,
                "temperature_c": None,
                "power_w": None,
                "sm_clock_mhz": None,
                "mem_clock_mhz": None,
                "clock_events": None,
            }
        nvml, handle = self._nvml, self._handle
        # Each reading on its own: a card without one (no power sensor, no clock-event reasons) gives None.
        util = read_nvml(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = read_nvml(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
        power_mw = read_nvml(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        events = read_nvml(nvml, nvml.nvmlDeviceGetCurrentClocksEventReasons, handle)
        return {
            "util_pct": None if util is None else util.gpu,
            "memory_mib": None if memory is None else memory.used / 2**20,
            "temperature_c": read_nvml(
                nvml, nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
            ),
            "power_w": None if power_mw is None else power_mw / 1000,
            "sm_clock_mhz": read_nvml(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
            "mem_clock_mhz": read_nvml(nvml, nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
            "clock_events": ", ".join(decode_clock_event_reasons(events)) or "none",
        }

    def _loop(self):
        started = time.perf_counter()
        while not self._stop.is_set():
            try:
                self.samples.append({"t": time.perf_counter() - started, **self._read()})
            except Exception:  # a failed read must never kill training; the gap shows in the chart
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        psutil.cpu_percent(interval=None)  # prime psutil's CPU counter
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
        return False

    def frame(self):
        """Samples so far as a DataFrame (t in seconds)."""
        columns = ["t", "util_pct", "memory_mib", "temperature_c", "power_w"]
        columns += ["sm_clock_mhz", "mem_clock_mhz", "clock_events"]
        return pd.DataFrame(list(self.samples), columns=columns)


@app.function
def bf16_native(device):
    """True on GPUs with native BF16 Tensor Cores (compute capability 8.0, Ampere, and newer).

    Not torch.cuda.is_bf16_supported(): it also says True on Volta/Turing, where BF16 is emulated and slow.
    """
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


@app.function
def planned_architecture(settings):
    """'gpt2' or 'llama' for the model a run will load, known before loading it (None if unknown)."""
    source = settings.model_source
    if source in GPT2_FAMILY or source == "tiny":
        return "gpt2"
    if source == "tiny-llama" or source.split("/")[0] in ("HuggingFaceTB", "Qwen", "meta-llama"):
        return "llama"
    config = Path(settings.local_dir).expanduser() / "config.json" if source == "local" else None
    if config is not None and config.is_file():
        with contextlib.suppress(OSError, ValueError):
            return architecture(types.SimpleNamespace(**json.loads(config.read_text())))
    return None


@app.function
def choose_precision(settings, device):
    """(precision to run, why): 'auto' is FP16 + GradScaler for GPT-2 (this app's lesson) and BF16 for the
    Llama family on GPUs with native BF16 (compute capability ≥ 8.0; FP16 + GradScaler below); FP32 on a CPU."""
    if settings.precision != "auto":
        return settings.precision, ""
    if device.type != "cuda":
        return "fp32", "*auto* on a CPU: FP32."
    if planned_architecture(settings) == "llama":
        if bf16_native(device):
            return "bf16", (
                "*auto* for a Llama-family model on a GPU with native BF16 (compute capability ≥ 8.0): BF16, "
                "the precision these models were trained in; no GradScaler needed."
            )
        return "fp16", (
            "*auto* for a Llama-family model on a GPU without native BF16 (compute capability < 8.0, where "
            "BF16 would be emulated and slow): FP16 + GradScaler."
        )
    return "fp16", "*auto* for GPT-2: FP16 + GradScaler, the precision lesson of this app."


@app.function
def precision_callout_kind(plan):
    """Step 1's colour: a warning when the precision that runs is not the one requested."""
    return "warn" if is_fallback(plan) else "success"


@app.function
def load_step(settings, dataset, device, plan, on_wait=None, loader=None):
    """Step 2: take this click's GPU lease, seed, read the memory baseline, load model + tokenizer onto the device.

    Returns (run, facts) with facts `waited_s`, `load_warning` and `out_of_memory` (then the run is already
    released). The lease stays with the run until `run.release()`; `loader` replaces the app's own
    `load_model_and_tokenizer` (the benchmarks load GPT-2's shape with random weights).
    """
    run = FineTuneRun(settings=settings, device=device, plan=plan, lease=GpuLease())
    run.lease.acquire(on_wait=on_wait)
    with release_on_interrupt(run):
        # Global generators too (GPT-2's own dropout draws from them): seeded while this run holds the lease.
        set_seed(settings.seed)
        run.generator = torch.Generator(device=device).manual_seed(settings.seed)
        run.memory_baseline = device_memory(device)["allocated"]  # what the process held before this run
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # no other run of this process allocates now
        model, run.tokenizer, run.model_name, warning = (loader or load_model_and_tokenizer)(
            settings, plan.param_dtype, tokenizer_corpus(dataset)
        )
        run.model, out_of_memory = catch_out_of_memory(model.to, device)
        del model
        run.settings = with_model_defaults(settings, run.model_name)
    if out_of_memory:
        run.release()  # the part already copied and the allocator's cached blocks go back
    return run, {"waited_s": run.lease.waited_s, "load_warning": warning, "out_of_memory": out_of_memory}


@app.function
def inject_step(run):
    """Step 3: LoRA on the run's targets → (table, None), or (None, message) with the run released."""
    # The chosen roles in this architecture's own layer names; the saved adapter_config.json lists these.
    run.settings = s = replace(
        run.settings, target_modules=architecture_targets(run.model, run.settings.target_modules)
    )
    with release_on_interrupt(run):
        try:
            return inject_lora(run.model, s.target_modules, s.rank, s.alpha, s.dropout, run.generator), None
        except NoTargetModules as error:
            problem = str(error)
    run.release()
    return None, problem


@app.function
def prepare_step(run, dataset):
    """Step 4: loaders, optimizer, schedule, scaler → (token stats, None), or (None, message), run released."""
    with release_on_interrupt(run):
        try:
            return prepare_training(
                run, dataset[dataset["split"] == "train"], dataset[dataset["split"] == "eval"]
            ), None
        except NoExampleFits as error:
            problem = str(error)
    run.release()
    return None, problem


@app.function
def train_step_body(run, eval_frame, answer_tokens, on_record=None):
    """Step 5: the "before" evaluation, then every training step with the device sampled throughout.

    `on_record(record, sampler, so_far)` sees each train/eval record as it comes, with the records so far
    (the cell draws the live chart).
    Returns before, before_generations, train_records, eval_records, stop_reason, sampler, samples,
    train_seconds; a stop releases the run (steps 6 and 7 will not run).
    """
    out = {"before": None, "before_generations": None, "train_records": [], "eval_records": []}
    out |= {"stop_reason": None, "sampler": None, "samples": pd.DataFrame(), "train_seconds": 0.0}
    out |= {"gpm": None, "energy_j": None}
    with release_on_interrupt(run):
        try:
            # LoRA's B is zero, so this *is* the base model: the "before" of every comparison.
            out["before"], out["before_generations"] = evaluate_run(run, eval_frame, answer_tokens)
        except TrainingStopped as stop:
            free_failed_run(run, stop)
            out["stop_reason"] = stop.with_traceback(None)
            return out
        out["eval_records"].append(
            {"step": 0, "epoch": 0, "eval_loss": out["before"]["eval_loss"]}
            | {"perplexity": out["before"]["perplexity"]}
        )
        out |= training_telemetry_plan(run)
        gpm = GpmSampler([nvml_device_index(run.device)], hz=10) if run.device.type == "cuda" else None
        out["gpm"], energy_start = gpm, read_energy_mj(run.device)
        started = time.perf_counter()
        with GpuSampler(run.device, hz=10) as sampler:
            out["sampler"] = sampler
            if gpm is not None:
                gpm.start()
            try:
                for record in train_steps(run):
                    if record["kind"] == "train":
                        record["mfu"] = mfu(record["tokens_per_s"], out["flops_per_token"], out["peak_flops"])
                    out["eval_records" if record["kind"] == "eval" else "train_records"].append(record)
                    if on_record is not None:
                        on_record(record, sampler, out)
            except TrainingStopped as stop:
                # without its traceback: the frames it points to hold the failed step's GPU tensors
                traceback.clear_frames(stop.__traceback__)
                out["stop_reason"] = stop.with_traceback(None)
            finally:
                if gpm is not None:
                    gpm.stop()
        out["train_seconds"] = time.perf_counter() - started
        out["energy_j"] = energy_joules(energy_start, read_energy_mj(run.device))
        out["samples"] = sampler.frame()
    if out["stop_reason"] is not None:
        run.release()  # steps 6 and 7 will not run: give the memory and the lease back now
    return out


@app.function
def training_telemetry_plan(run):
    """What step 5 needs to show MFU: FLOPs per token of this model, LoRA and length, and the card's peak."""
    seq_len = max(len(e["input_ids"]) for e in run.train_loader.dataset)
    peak, source = (
        dense_peak_flops(device_label(run.device), run.plan.autocast_dtype)
        if run.device.type == "cuda"
        else (None, "no GPU: MFU is a GPU figure")
    )
    return {
        "flops_per_token": run_flops_per_token(run, seq_len),
        "seq_len": seq_len,
        "peak_flops": peak,
        "peak_source": source,
    }


@app.function
def nvml_device_index(device):
    """NVML's index of a torch CUDA device (matched by UUID: CUDA_VISIBLE_DEVICES renumbers devices)."""
    nvml = nvml_module()
    uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", ""))
    if not uuid or not nvml_ready(nvml):
        return device.index or 0
    handle = read_nvml(
        nvml, nvml.nvmlDeviceGetHandleByUUID, uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    )
    index = None if handle is None else read_nvml(nvml, nvml.nvmlDeviceGetIndex, handle)
    return (device.index or 0) if index is None else index


@app.function
def gpm_status(gpm):
    """The GPM sampler's latest window as a short progress-bar fragment ('' when there is none)."""
    if gpm is None or not gpm.available or not gpm.samples:
        return ""
    last = gpm.samples[-1]
    parts = [
        (label, last.get(key))
        for label, key in (("SM", "sm_active_pct"), ("Tensor", "tensor_active_pct"), ("DRAM", "dram_bw_pct"))
    ]
    return " · ".join(f"{label} {value:.0f}%" for label, value in parts if value is not None)


@app.function
def telemetry_cards(result, history):
    """Step 5's GPU-activity row: MFU, GPM's SM / Tensor Core / DRAM means, and joules per 1M tokens."""
    real_tokens = int(history["real_tokens"].sum()) if len(history) else 0
    seconds = float(history["seconds"].sum()) if len(history) else 0.0
    achieved = mfu(
        real_tokens / seconds if seconds else None, result.get("flops_per_token"), result.get("peak_flops")
    )
    cards = [
        mo.stat(
            "n/a" if achieved is None else f"{100 * achieved:.1f}%",
            label="MFU (model FLOPs utilisation)",
            caption=(
                f"{fmt_count(result.get('flops_per_token') or 0)} FLOPs/token vs {result.get('peak_source')}"
                if achieved is not None
                else result.get("peak_source") or "not measured"
            ),
            bordered=True,
        )
    ]
    gpm = result.get("gpm")
    if gpm is not None and gpm.available and gpm.samples:
        means = gpm.means()
        for label, key in (
            ("SM activity (GPM)", "sm_active_pct"),
            ("Tensor Core activity (GPM)", "tensor_active_pct"),
            ("DRAM bandwidth (GPM)", "dram_bw_pct"),
        ):
            value = means[key]
            cards.append(
                mo.stat(
                    "n/a" if value is None else f"{value:.0f}%",
                    label=label,
                    caption=f"mean of {len(gpm.samples)} windows of {gpm.interval * 1000:.0f} ms",
                    bordered=True,
                )
            )
    else:
        reason = "no GPU" if gpm is None else gpm.unavailable_reason
        cards.append(mo.stat("n/a", label="GPM (SM, Tensor, DRAM)", caption=reason, bordered=True))
    energy = result.get("energy_j")
    cards.append(
        mo.stat(
            "n/a" if energy is None or not real_tokens else f"{energy / real_tokens * 1e6:,.0f} J",
            label="energy per 1M tokens",
            caption="NVML total-energy counter around training"
            if energy is not None
            else "no NVML energy counter here",
            bordered=True,
        )
    )
    return mo.hstack(cards, widths="equal")


@app.function
def evaluate_step(run, eval_frame, answer_tokens):
    """Step 6: the "after" evaluation → (metrics, generations, None), or (None, None, stop) with the run released."""
    with release_on_interrupt(run):
        try:
            after, generations = evaluate_run(run, eval_frame, answer_tokens)
            return after, generations, None
        except TrainingStopped as stop:
            traceback.clear_frames(stop.__traceback__)  # the frames hold the failed evaluation's tensors
            stopped = stop.with_traceback(None)
    run.release()
    return None, None, stopped


@app.function
def save_step(run, folder, prompts):
    """Step 7: save the adapter, check merge and PEFT reload, read the peak, release the run and its lease.

    Returns saved_files, merge_max_diff, peft_max_diff, peak_memory, release_report and `failure` (a
    sentence, or None). Caught: disk errors (OSError), out of memory, and PEFT's documented ValueError for
    a config it cannot read; anything else is a bug and raises (the run is still released).
    """
    out = {"saved_files": {}, "merge_max_diff": math.nan, "peft_max_diff": math.nan, "failure": None}
    with release_on_interrupt(run):
        try:
            out["saved_files"] = save_adapter(run.model, folder, run.settings, run.model_name)
        except OSError as error:
            out["failure"] = f"saving the adapter to disk failed ({type(error).__name__}: {error})"
        if out["failure"] is None:
            out["merge_max_diff"], out_of_memory = catch_out_of_memory(merge_check, run, prompts)
            if out_of_memory:
                out["failure"] = "out of GPU memory while checking the merged weights"
        if out["failure"] is None:
            try:
                out["peft_max_diff"], out_of_memory = catch_out_of_memory(
                    peft_reload_check, run, folder, prompts
                )
            except (OSError, ValueError) as error:
                out["failure"] = f"PEFT could not load the saved adapter ({type(error).__name__}: {error})"
                out_of_memory = False
            if out_of_memory:
                out["failure"] = "out of GPU memory while reloading the adapter with PEFT"
        out["peak_memory"] = device_memory(run.device)["peak"]  # read while this run still holds the lease
    out["release_report"] = run.release()  # also after a failure: the GPU memory goes back either way
    return out


@app.function
def adapter_folder_for(run):
    """A new folder name under OUTPUT_ROOT for this run's adapter (model, rank, time, process, run)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{run.model_name}-r{run.settings.rank}-{stamp}-{os.getpid()}-{id(run) % 10000}"
    return OUTPUT_ROOT / sanitize_name(name)


@app.function
def keep_recent_adapters(folder, keep=ADAPTERS_KEPT):
    """Remember `folder` as written by this process and delete the oldest beyond the last `keep` it wrote.

    Only folders this server process created are ever deleted; returns the ones removed.
    """
    import shutil

    with process_gpu_lock_guard():
        written = process_registry().setdefault("adapter_folders", [])
        written.append(Path(folder))
        removed, written[:] = written[:-keep], written[-keep:]
    for old in removed:
        shutil.rmtree(old, ignore_errors=True)
    return removed


@app.function
def project_path(path):
    """`path` as a viewer may see it: relative to the project folder, else only its last two parts."""
    path = Path(path).resolve()
    root = Path(mo.notebook_dir() or Path.cwd()).resolve()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(Path(path.parent.name) / path.name)


@app.function
def memory_scope_note(run):
    """What the run's CUDA memory figures include: they are per process, read while this run holds the lease."""
    if run.device.type != "cuda":
        return ""
    return (
        "CUDA memory figures are this server process's torch allocator, read while this run holds the GPU "
        f"lease (no other run of the process allocates meanwhile); they include "
        f"{fmt_bytes(run.memory_baseline)} the process already held before this run (other sessions, warm-up)."
    )


@app.function
def read_nvml(nvml, read, *args):
    """One NVML reading `read(*args)` of the binding `nvml`, or None when the card, driver or binding does not
    provide it: NVML's own errors only (a programming error still raises)."""
    error = getattr(nvml, "NVMLError", OSError)
    try:
        return read(*args)
    except (error, AttributeError, NotImplementedError):  # not supported here / a binding without it
        return None


@app.function
def nvml_ready(nvml):
    """True when NVML starts (a driver is there); nvmlInit returns nothing, so success is "it did not raise"."""
    if nvml is None:
        return False
    try:
        nvml.nvmlInit()
    except getattr(nvml, "NVMLError", OSError):
        return False
    return True


@app.function
def decode_clock_event_reasons(mask):
    """NVML's clock-event (throttle) reason bits as words; [] when nothing holds the clocks down."""
    if mask is None:
        return ["not reported"]
    words = {  # nvmlClocksEventReason* bits, from nvml.h
        0x1: "idle",
        0x2: "application clocks setting",
        0x4: "software power cap",
        0x8: "hardware slowdown",
        0x10: "sync boost",
        0x20: "software thermal slowdown",
        0x40: "hardware thermal slowdown",
        0x80: "hardware power brake",
        0x100: "display clock setting",
    }
    reasons = [word for bit, word in words.items() if mask & bit]
    unknown = mask & ~sum(words)
    return reasons + ([f"other (0x{unknown:x})"] if unknown else [])


@app.function
def energy_joules(start_mj, end_mj):
    """Joules between two readings of NVML's total-energy counter (millijoules); None if either is missing."""
    if start_mj is None or end_mj is None or end_mj < start_mj:  # no counter, or it was reset
        return None
    return (end_mj - start_mj) / 1000.0


@app.function
def mfu(tokens_per_s, flops_per_token, peak_flops):
    """Model FLOPs utilisation: achieved model FLOP/s over the card's dense peak; None when a term is unknown."""
    if not tokens_per_s or not flops_per_token or not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops


@app.function
def lora_flops_per_token(matmul_params, n_layer, seq_len, d_model, lora_params):
    """Model FLOPs to train one token with LoRA on a frozen base (multiply-add = 2 FLOPs).

    forward 2·N + 2·L·T·d (weights, then attention scores and values over T positions), the backward's
    input gradients as much again (frozen weights get no weight gradient), and the adapters 6·N_lora
    (forward, input gradient, weight gradient): 4·N + 4·L·T·d + 6·N_lora. N counts the matmul weights,
    the LM head included, not the embedding lookups.
    """
    return 4 * matmul_params + 4 * n_layer * seq_len * d_model + 6 * lora_params


@app.function
def run_flops_per_token(run, seq_len):
    """lora_flops_per_token for the run's model: its matmul weights, layers, width and adapters."""
    config = run.model.config
    lora = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    matmul, _ = matmul_weight_count(run.model)
    return lora_flops_per_token(matmul, config.num_hidden_layers, seq_len, config.hidden_size, lora)


@app.function
def dense_peak_flops(device_name, dtype):
    """(FLOP/s, source) of the card's dense FP16/BF16 Tensor Core peak from DENSE_PEAK_TFLOPS; (None, why)."""
    if dtype not in (torch.float16, torch.bfloat16):
        return None, "an FP32 run: no dense FP16/BF16 Tensor Core peak applies"
    for names, tflops in DENSE_PEAK_TFLOPS:
        if any(re.search(rf"\b{re.escape(name)}\b", device_name or "") for name in names):
            if dtype == torch.bfloat16 and tflops.get("bf16") is None:
                return None, f"{device_name} has no BF16 Tensor Cores"
            return tflops["bf16" if dtype == torch.bfloat16 else "fp16"] * 1e12, (
                f"{names[0]} datasheet, dense (no sparsity)"
            )
    return None, f"`{device_name}` is not in the app's small table of datasheet peaks"


@app.function
def gpm_support(nvml, handle):
    """(True, "") when NVML's GPM metrics answer for this GPU (Hopper and newer), else (False, why in a line)."""
    if nvml is None:
        return False, "GPM metrics need nvidia-ml-py (pynvml), which is not installed."
    if not hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
        return False, "this nvidia-ml-py has no GPM interface: upgrade nvidia-ml-py."
    support = read_nvml(nvml, nvml.nvmlGpmQueryDeviceSupport, handle)
    if support is None or not getattr(support, "isSupportedDevice", 0):
        return False, "this GPU or driver has no GPM counters (NVML GPM needs Hopper or newer)."
    return True, ""


@app.function
def pcie_bytes_per_s(value, unit):
    """A GPM PCIe reading in bytes/s, from the unit NVML reports with it (MiB/s today)."""
    if value is None:
        return None
    unit = (unit or "MiB/sec").lower()
    scale = 2**20 if "mib" in unit else 1e6 if "mb" in unit else 2**10 if "kib" in unit else 1.0
    return value * scale


@app.function
def gpm_read(nvml, handle, previous, current):
    """GPM metrics between two samples as {field: value or None}; `current` is filled here."""
    fields = {field: getattr(nvml, name, None) for field, name in GPM_FIELDS.items()}
    if read_nvml(nvml, nvml.nvmlGpmSampleGet, handle, current) is None:
        return dict.fromkeys(GPM_FIELDS)
    request = nvml.c_nvmlGpmMetricsGet_t()
    request.version = nvml.NVML_GPM_METRICS_GET_VERSION
    wanted = [(field, metric_id) for field, metric_id in fields.items() if metric_id is not None]
    request.numMetrics = len(wanted)
    request.sample1, request.sample2 = previous, current
    for slot, (_, metric_id) in enumerate(wanted):
        request.metrics[slot].metricId = metric_id
    values = dict.fromkeys(GPM_FIELDS)
    if read_nvml(nvml, nvml.nvmlGpmMetricsGet, request) is None:
        return values
    for slot, (field, _) in enumerate(wanted):
        metric = request.metrics[slot]
        if metric.nvmlReturn != 0:  # this metric is not available on this GPU
            continue
        value = float(metric.value)
        if field.startswith("pcie_"):
            unit = metric.metricInfo.unit
            value = pcie_bytes_per_s(value, unit.decode() if isinstance(unit, bytes) else unit)
        values[field] = value
    return values


@app.class_definition
class GpmSampler:
    """NVML GPM metrics (SM activity and occupancy, Tensor Core activity, DRAM bandwidth, PCIe) for each GPU.

    GPM counters exist on Hopper and newer: each reading is the average between two GPM samples, so a
    sample every 1/hz seconds gives that window's mean. Elsewhere `available` is False and
    `unavailable_reason` says why in one line; the classic GpuSampler keeps working either way.
    Same design and names as the RAPIDS dashboard's sampler: start(), stop(), samples, available.
    """

    def __init__(self, device_indices=None, hz=10.0):
        self.interval, self.samples = 1.0 / hz, []
        self.available, self.unavailable_reason = False, ""
        self._nvml, self._gpus, self._stop = nvml_module(), [], threading.Event()
        self._thread = None
        nvml = self._nvml
        if nvml is None:
            self.unavailable_reason = gpm_support(None, None)[1]
            return
        if not nvml_ready(nvml):
            self.unavailable_reason = "NVML could not start here (no NVIDIA driver)."
            return
        count = read_nvml(nvml, nvml.nvmlDeviceGetCount) or 0
        reasons = []
        for index in range(count) if device_indices is None else device_indices:
            handle = read_nvml(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
            ok, why = gpm_support(nvml, handle) if handle is not None else (False, "no NVML handle.")
            if ok:
                self._gpus.append({"gpu": index, "handle": handle})
            else:
                reasons.append(why)
        self.available = bool(self._gpus)
        if not self.available:
            self.unavailable_reason = reasons[0] if reasons else "NVML sees no GPU."

    def _sample_pair(self):
        return [
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleAlloc),
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleAlloc),
        ]

    def start(self):
        """Take the first sample of every GPU and start sampling in a background thread."""
        if not self.available:
            return self
        for gpu in self._gpus:
            gpu["pair"] = self._sample_pair()
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleGet, gpu["handle"], gpu["pair"][0])
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpm-sampler")
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            t = time.perf_counter() - self._started
            for gpu in self._gpus:
                previous, current = gpu["pair"]
                values = gpm_read(self._nvml, gpu["handle"], previous, current)
                gpu["pair"] = [current, previous]  # this sample is the next window's start
                self.samples.append({"t": t, "gpu": gpu["gpu"], **values})

    def stop(self):
        """Stop sampling and free the GPM samples."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for gpu in self._gpus:
            for sample in gpu.pop("pair", []):
                if sample is not None:
                    read_nvml(self._nvml, self._nvml.nvmlGpmSampleFree, sample)
        return self

    def frame(self):
        """Samples so far as a DataFrame (t in seconds, one row per GPU and window)."""
        return pd.DataFrame(list(self.samples), columns=["t", "gpu", *GPM_FIELDS])

    def means(self):
        """Mean of each metric over the samples (None where no reading came)."""
        frame = self.frame()
        return {f: (None if frame[f].isna().all() else float(frame[f].mean())) for f in GPM_FIELDS}


@app.function
def read_energy_mj(device):
    """NVML's total energy counter of the torch device in millijoules (None without NVML or the counter)."""
    nvml = nvml_module()
    if device.type != "cuda" or not nvml_ready(nvml):
        return None
    handle = read_nvml(nvml, nvml.nvmlDeviceGetHandleByIndex, nvml_device_index(device))
    return None if handle is None else read_nvml(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handle)


@app.function
def median_or_none(values):
    """Median of the readings that came (None where a reading was missing); None when none came."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(pd.Series(present, dtype="float64").median()) if present else None


@app.function
def probe_workloads(device, matmul_size=8192, copy_bytes=2**30):
    """The utilization probe's three workloads as (name, setup) pairs; setup() allocates and returns one
    iteration (a callable), so only one workload's tensors exist at a time."""
    dtype = (
        torch.bfloat16 if bf16_native(device) else torch.float16 if device.type == "cuda" else torch.float32
    )

    def tiny_kernels():
        x = torch.zeros(1, device=device)

        def iteration():
            for _ in range(1_000):  # one-element kernels: each is almost all launch, no work
                x.add_(1.0)

        return iteration

    def matmul():
        a, b = (torch.randn(matmul_size, matmul_size, device=device, dtype=dtype) for _ in range(2))
        out = torch.empty_like(a)
        return lambda: torch.mm(a, b, out=out)

    def copy():
        source = torch.empty(copy_bytes // 4, device=device, dtype=torch.float32)
        target = torch.empty_like(source)
        return lambda: target.copy_(source)

    return [
        ("a stream of tiny kernels (1 element each)", tiny_kernels),
        (f"{dtype_name(dtype)} matmul {matmul_size:,} × {matmul_size:,}", matmul),
        (f"device-to-device copy of {fmt_bytes(copy_bytes)}", copy),
    ]


@app.function
def utilization_probe(device, seconds=1.5, matmul_size=8192, copy_bytes=2**30):
    """What classic utilization hides: three workloads on `device`, each for `seconds`, with NVML's classic
    utilization (10 Hz) and GPM (SM, Tensor Core, DRAM activity in 200 ms windows) sampled during each.

    Returns one dict per workload: workload, classic_util_pct, sm_active_pct, tensor_active_pct,
    dram_bw_pct (medians; None where the reading is not available: no NVML, no GPM) and seconds. The
    first GPM window is dropped (it straddles the start). The caller holds the GPU lease.
    """
    cuda = device.type == "cuda"
    synchronize = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    if cuda:  # two copy buffers and three matmul operands must fit beside whatever else is resident
        free = torch.cuda.mem_get_info(device)[0]
        copy_bytes = min(copy_bytes, free // 4)
        matmul_size = 8192 if free > 8 * 2**30 else 4096
    gpus = [nvml_device_index(device)] if cuda else [0]
    rows = []
    for name, setup in probe_workloads(device, matmul_size, copy_bytes):
        iteration = setup()
        iteration()  # the first call loads the kernel: not part of the sample
        synchronize()
        gpm = GpmSampler(gpus, hz=5)  # off Hopper, or without NVML: available False, readings None
        with GpuSampler(device, hz=10) as sampler:
            gpm.start()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                iteration()
                synchronize()  # keeps the queue short: the elapsed time is the GPU's
            elapsed = time.perf_counter() - started
            gpm.stop()
        classic = [s["util_pct"] for s in sampler.samples] if sampler.source == "NVML" else []
        windows = gpm.samples[1:] if gpm.available else []
        rows.append(
            {
                "workload": name,
                "classic_util_pct": median_or_none(classic),
                "sm_active_pct": median_or_none([w.get("sm_active_pct") for w in windows]),
                "tensor_active_pct": median_or_none([w.get("tensor_active_pct") for w in windows]),
                "dram_bw_pct": median_or_none([w.get("dram_bw_pct") for w in windows]),
                "seconds": elapsed,
            }
        )
        del iteration
    if cuda:
        torch.cuda.empty_cache()  # the probe's buffers go back to the driver
    return rows


@app.function
def utilization_probe_unavailable(environment):
    """Why the probe cannot run here, in one line (None when it can)."""
    if not environment["cuda_available"]:
        return (
            "No CUDA GPU here, so there is no utilization to probe: the three workloads need one. (What the "
            "device's H200 measured is below.)"
        )
    return None


@app.function
def utilization_probe_text(rows, gpm_reason=""):
    """The "what utilization hides" callout, written from the probe's measured rows (what each metric said)."""
    tiny, matmul, copy = rows

    def pct(value):
        return "n/a" if value is None else f"{value:.0f}%"

    if tiny["classic_util_pct"] is None:
        return "NVML gave no utilization readings here, so there is nothing to compare."
    if tiny["sm_active_pct"] is None:
        return (
            f"GPM is not available here ({gpm_reason or 'no reading'}). Classic utilization alone read "
            f"{pct(tiny['classic_util_pct'])}, {pct(matmul['classic_util_pct'])} and {pct(copy['classic_util_pct'])} "
            "for tiny kernels, a matmul and a copy: it only says *some* kernel was running, so it cannot tell "
            "a launch-bound stream from a compute- or memory-bound one."
        )
    gap = tiny["classic_util_pct"] - tiny["sm_active_pct"]
    lines = [
        f"- **Tiny kernels:** classic utilization read **{pct(tiny['classic_util_pct'])}**, GPM's SM activity "
        f"**{pct(tiny['sm_active_pct'])}**. "
        + (
            f"Utilization counts the time *any* kernel runs, however small: {gap:.0f} points of it were launches "
            "with idle SMs — launch-bound (overhead-bound)."
            if gap >= 10
            else f"Here the two agreed within {abs(gap):.0f} points."
        ),
        f"- **Matmul:** SM activity **{pct(matmul['sm_active_pct'])}**, Tensor Core activity "
        f"**{pct(matmul['tensor_active_pct'])}** (classic utilization {pct(matmul['classic_util_pct'])}): "
        + (
            "the Tensor Cores did the work — compute-bound."
            if (matmul["tensor_active_pct"] or 0) >= 50
            else "the Tensor Cores were busy less than half the time: the card was not compute-bound here."
        ),
        f"- **Copy:** DRAM bandwidth **{pct(copy['dram_bw_pct'])}** with Tensor Core activity "
        f"{pct(copy['tensor_active_pct'])} (classic utilization {pct(copy['classic_util_pct'])}): "
        + (
            "memory-bound — busy by every classic measure, yet no arithmetic to speak of."
            if (copy["dram_bw_pct"] or 0) >= 50
            else "DRAM was busy less than half the time."
        ),
    ]
    return (
        "Measured just now on this GPU (medians over each workload):\n\n"
        + "\n".join(lines)
        + "\n\nRead step 5's "
        "GPM cards the same way: high utilization with low SM activity is launch-bound, high DRAM with low "
        "Tensor Core activity memory-bound, high Tensor Core activity compute-bound."
    )


@app.function
def utilization_reference_text():
    """The probe's reference figures, labelled with card, date and source."""
    return (
        "For reference, measured on an NVIDIA H200, 2026-12-01 (`bench/device_probe_telemetry.py`, "
        "notes/BENCHMARKS.md): tiny kernels 28% utilization with 0% SM activity; a BF16 matmul 96.4% SM and "
        "93.5% Tensor Core activity; a device-to-device copy 88.4% DRAM bandwidth."
    )


@app.function
def choose_dataset(settings, form_value):
    """(frame with a split column, errors, warnings) for the chosen data source; uploads are validated."""
    if settings.data_source == "hub":
        value = form_value or {}
        return load_hub_dataset(
            value.get("hub_dataset"),
            (value.get("prompt_column") or "instruction").strip(),
            (value.get("response_column") or "output").strip(),
            (value.get("hub_split") or "train").strip(),
            int(value.get("max_rows") or 2000),
        )
    if settings.data_source != "upload":
        return builtin_examples(), [], []
    files = (form_value or {}).get("upload") or ()
    if not files:
        return (
            None,
            [
                "Data is set to **upload** but no file was chosen: upload a CSV/JSONL or pick the built-in set."
            ],
            [],
        )
    return validate_upload(files[0].name, files[0].contents)


@app.function
@contextlib.contextmanager
def release_on_interrupt(run):
    """If the block is interrupted (■ in `marimo edit`, Ctrl-C, the session closing) or fails, free the run.

    The run object lives in an earlier cell, so without this its model and optimizer would keep their GPU
    memory until the next Train. Errors the cells handle themselves (TrainingStopped) never get here.
    """
    try:
        yield
    except BaseException as error:
        free_failed_run(run, error)
        raise


@app.function
def free_failed_run(run, error):
    """Release a run after `error`: first clear the frames its traceback holds (with the failed step's
    activations and batch), or the memory they pin would survive the release."""
    traceback.clear_frames(error.__traceback__)
    return run.release()


@app.function
def step_done(number, title, seconds, details, kind="success"):
    """A step's completion callout: what it did and how long it took."""
    return mo.callout(
        mo.md(f"**Step {number} complete — {title}** ({seconds:.2f} s)\n\n{details}"), kind=kind
    )


@app.function
def waiting_message(device):
    """What this viewer waits for: the start-up warm-up, or another run holding the GPU (or, on a CPU, the turn)."""
    if device.type != "cuda":
        return (
            "**Waiting for your turn — another run (another viewer, or the benchmark app) is using this "
            "machine.** Runs take turns so they do not share the CPU; this one starts as soon as it ends."
        )
    if warm_up_state().get("status") == "running":
        who = "the start-up warm-up is loading the GPU's kernels (a few seconds)"
    else:
        who = "another viewer's run (or the benchmark app) holds it"
    return f"**Waiting for the GPU — {who}.** This run starts as soon as it is free."


@app.function
def show_waiting(device):
    """Show this viewer the waiting message (step 2 replaces it once the run holds the GPU)."""
    mo.output.append(mo.callout(mo.md(waiting_message(device)), kind="warn"))


@app.function
def warm_up_kernels(device, settings=None):
    """The default demo's GPU work, once, on a one-layer GPT-2 of GPT-2's width and vocabulary.

    The first CUDA run of a process pays for loading every kernel it touches (CUDA loads them lazily),
    cuBLAS's and flash attention's set-up, and the first imports of PEFT and the generation code: on an
    H100 the first Train click took 12.5 s against 5.2 s for the next. A one-layer model runs the same
    kernels at the same shapes in a fraction of the time. The random-number state is put back afterwards,
    and step 2 seeds again, so a run is the same with or without this. Returns the seconds it took.
    """
    started = time.perf_counter()
    settings = settings or TrainSettings()
    frame = builtin_examples()
    train_frame, eval_frame = frame[frame["split"] == "train"], frame[frame["split"] == "eval"]
    tokenizer = build_offline_tokenizer(tokenizer_corpus(frame))
    plan = resolve_precision(
        settings.precision if settings.precision != "auto" else "fp16", device.type, bf16_native(device)
    )
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = offline_gpt2(tokenizer, GPT2Config(n_layer=1), seed=settings.seed)
        run = FineTuneRun(
            settings=replace(with_model_defaults(settings, "gpt2"), epochs=1),
            device=device,
            plan=plan,
            model=model.to(device=device, dtype=plan.param_dtype),
            tokenizer=tokenizer,
            model_name="warm-up",
        )
        del model
        try:
            s = run.settings
            inject_lora(run.model, s.target_modules, s.rank, s.alpha, s.dropout)
            prepare_training(run, train_frame, eval_frame)
            budget = answer_token_budget(tokenizer, frame["response"])
            evaluate_run(run, eval_frame, budget)
            for _ in itertools.islice(train_steps(run), 2):  # step 1 alone, then one read-back group
                pass
            with tempfile.TemporaryDirectory() as folder:
                save_adapter(run.model, folder, run.settings, run.model_name)
                merge_check(run, eval_frame["prompt"].head(8).tolist())
                peft_reload_check(run, folder, eval_frame["prompt"].head(8).tolist())
        finally:
            run.release()
    return time.perf_counter() - started


@app.function
def warm_up_state():
    """This process's warm-up: {"status": "running" | "done" | "failed", "seconds", "error"}; {} if none."""
    return process_registry().setdefault("warm_up", {})


@app.function
def start_warm_up(device, run=warm_up_kernels):
    """Warm the GPU once per server process, in a background thread that holds the GPU lock.

    The page stays usable meanwhile; a Train click during the warm-up waits for it (and says so). The
    first viewer's page starts it; later viewers of the same `marimo run` server find it done.
    """
    state = warm_up_state()
    with process_gpu_lock_guard():
        if state:
            return state
        state["status"] = "running"

    def work():
        failure = None
        try:
            # Never wait: if a benchmark or another program holds the GPU, the warm-up is simply skipped.
            with gpu_turn(wait=False) as held:
                if held:
                    state["seconds"] = run(device)
            state["status"] = "done" if held else "skipped"
        except Exception as error:  # never fatal: the first Train is only slower
            traceback.clear_frames(error.__traceback__)  # the failed run's tensors must not outlive it
            failure = f"{type(error).__name__}: {error}"
        if failure is not None:
            gc.collect()  # outside the except block, which would keep the frames alive
            if device.type == "cuda":
                torch.cuda.empty_cache()
            state.update(status="failed", error=failure)

    # Not a daemon: a headless `marimo export` that ends while it runs waits for it (seconds) rather than
    # tearing CUDA down under a running kernel.
    threading.Thread(target=work, daemon=False, name="gpu-warm-up").start()
    return state


@app.function
def warm_up_note(device, state=None):
    """One sentence for step 1: did the start-up warm-up run, and what did it cost."""
    state = warm_up_state() if state is None else state
    if device.type != "cuda" or not state:
        return ""
    if state["status"] == "done":
        return (
            f"\n\nGPU kernels were warmed up when the app opened ({state['seconds']:.1f} s on a one-layer GPT-2),"
            " so this click does not pay for loading them."
        )
    if state["status"] == "running":
        return "\n\nThe start-up warm-up is still loading the GPU's kernels; step 2 waits for it."
    if state["status"] == "skipped":
        return (
            "\n\nThe GPU was busy when the app opened, so it was not warmed up; this run loads its kernels."
        )
    return f"\n\nThe start-up warm-up failed ({state.get('error')}); this run loads its kernels itself."


@app.function
def process_gpu_lock_guard():
    """A small process-wide lock for shared bookkeeping (warm-up state, adapter folders), not the GPU lock."""
    return process_registry().setdefault("state_lock", threading.Lock())


@app.function
def device_label(device):
    """'NVIDIA H100 80GB HBM3' or 'CPU (16 cores)'."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"


@app.function
def is_fallback(plan):
    """True when the precision that runs is not the one requested."""
    return plan.requested.upper() not in plan.name.upper()


@app.function
def device_status(sampler):
    """The sampler's latest reading as a short progress-bar subtitle."""
    if not sampler.samples:
        return "sampling…"
    last = sampler.samples[-1]
    if sampler.source == "NVML":
        parts = [
            None if last["util_pct"] is None else f"GPU {last['util_pct']:.0f}%",
            None if last["memory_mib"] is None else f"{last['memory_mib'] / 1024:.1f} GiB used",
            None if last.get("sm_clock_mhz") is None else f"SM {last['sm_clock_mhz']} MHz",
            None if last.get("clock_events") in (None, "none") else f"clocks held by {last['clock_events']}",
        ]
        return " · ".join(p for p in parts if p) or "no NVML reading"
    return f"CPU {last['util_pct']:.0f}% · process {last['memory_mib'] / 1024:.1f} GiB"


@app.function
def training_summary(history, eval_records, stop_reason, train_seconds, total_seconds, samples):
    """Step 5's final view: completion (or the reason it stopped), throughput, memory and the loss chart."""
    if stop_reason is not None:
        return mo.callout(
            mo.md(
                f"**Step 5 stopped after {stop_reason.step} optimizer steps.** {stop_reason.reason}\n\n"
                f"**What to do:** {stop_reason.advice}\n\nThe model, optimizer and batches were released."
            ),
            kind="danger",
        )
    real, padded, seconds = (
        history["real_tokens"].sum(),
        history["padded_tokens"].sum(),
        history["seconds"].sum(),
    )
    scaler_note = (
        f" · loss scale ends at {history['loss_scale'].iloc[-1]:,.0f}, {int(history['skipped'].sum())} steps "
        "skipped for inf/NaN gradients"
        if history["loss_scale"].iloc[-1] != 1.0
        else ""
    )
    details = (
        f"{len(history)} optimizer steps in {train_seconds:.1f} s (plus the baseline evaluation) · loss "
        f"{history['loss'].iloc[0]:.3f} → {history['loss'].iloc[-1]:.3f} · eval loss "
        f"{eval_records[0]['eval_loss']:.3f} → {eval_records[-1]['eval_loss']:.3f}{scaler_note}"
    )
    return mo.vstack(
        [
            step_done(5, "trained", total_seconds, details),
            mo.hstack(
                [
                    mo.stat(
                        f"{real / seconds:,.0f}",
                        label="tokens/s (real, no padding)",
                        caption="step time only",
                        bordered=True,
                    ),
                    mo.stat(
                        f"{padded / seconds:,.0f}",
                        label="tokens/s (incl. padding)",
                        caption="what was computed",
                        bordered=True,
                    ),
                    memory_card(history, samples),
                ],
                widths="equal",
            ),
            loss_chart(history.to_dict("records"), eval_records),
        ]
    )


@app.function
def memory_card(history, samples):
    """Peak memory during training: torch's allocator on a GPU, the process's RSS on a CPU."""
    if history["memory_mib"].max() > 0:
        nvml_peak = (
            f" · NVML: up to {samples['memory_mib'].max() / 1024:.1f} GiB used on the GPU"
            if len(samples)
            else ""
        )
        return mo.stat(
            f"{history['peak_mib'].max():,.0f} MiB",
            label="torch peak allocated (this process, under the lease)",
            caption="max_memory_allocated since step 2: peaks inside a step and the evaluation before "
            "training included" + nvml_peak,
            bordered=True,
        )
    peak = samples["memory_mib"].max() if len(samples) else float("nan")
    return mo.stat(
        f"{peak:,.0f} MiB", label="process memory (peak)", caption="psutil RSS — no GPU", bordered=True
    )


@app.function
def compare_generations(before, after):
    """Before/after generations side by side, one row per held-out prompt."""
    return pd.DataFrame(
        {
            "task": before["task"],
            "prompt": before["prompt"],
            "expected": before["response"],
            "before": [
                f"{'✓' if ok else '✗'} {text or '(empty)'}"
                for ok, text in zip(before["exact_match"], before["generated"], strict=True)
            ],
            "after": [
                f"{'✓' if ok else '✗'} {text or '(empty)'}"
                for ok, text in zip(after["exact_match"], after["generated"], strict=True)
            ],
        }
    )


@app.function
def per_task_scores(before, after):
    """Exact-match and answer-format rates per task, before vs after (percent)."""
    frame = pd.DataFrame(
        {
            "task": before["task"],
            "exact match before %": 100 * before["exact_match"].astype(float),
            "exact match after %": 100 * after["exact_match"].astype(float),
            "format before %": 100 * before["format_match"].astype(float),
            "format after %": 100 * after["format_match"].astype(float),
        }
    )
    grouped = frame.groupby("task", sort=False)
    scores = grouped.mean().round(0)
    scores.insert(0, "n", grouped.size())
    # ±1 s.e. of the exact-match rate after training (a task of n items moves in steps of 100/n points)
    after = grouped["exact match after %"].mean() / 100
    scores.insert(
        3,
        "± 1 s.e. after",
        [round(100 * standard_error(p, n), 0) for p, n in zip(after, scores["n"], strict=True)],
    )
    return scores.reset_index()


@app.function
def standard_error(p, n):
    """One binomial standard error of a rate p measured on n items: √(p(1−p)/n) (NaN without items)."""
    return math.sqrt(p * (1 - p) / n) if n else math.nan


@app.function
def metric_card(label, before, after, fmt, better, n=None):
    """mo.stat showing after, with before in the caption and an arrow coloured by the better direction.

    `n`: the rate was measured on n items; the card then shows ±1 standard error with both values.
    """
    if math.isnan(after) or math.isnan(before):
        return mo.stat("n/a", label=label, caption="uploaded data has no fixed answer format", bordered=True)
    direction = None if after == before else ("increase" if after > before else "decrease")
    if n:
        return mo.stat(
            f"{fmt.format(after)} ± {fmt.format(standard_error(after, n))}",
            label=label,
            caption=f"before: {fmt.format(before)} ± {fmt.format(standard_error(before, n))} · ±1 s.e. = "
            f"√(p(1−p)/n), n = {n}",
            direction=direction,
            target_direction=better,
            bordered=True,
        )
    return mo.stat(
        fmt.format(after),
        label=label,
        caption=f"before: {fmt.format(before)}",
        direction=direction,
        target_direction=better,
        bordered=True,
    )


@app.function
def peft_tolerance(plan):
    """How far PEFT's logits may sit from ours: rounding differs only in where the update is cast."""
    return {torch.float32: 1e-3, torch.float16: 5e-2}.get(plan.param_dtype, 2.5e-1)


@app.function
def check_mark(max_difference, plan):
    """✓ when a logits difference is within the rounding expected for the run's dtype, else ✗."""
    return "✓" if max_difference < peft_tolerance(plan) else "✗"


@app.function
def release_text(report, device):
    """One sentence on what releasing the run gave back."""
    if device.type != "cuda":
        return "References to model, optimizer and loaders dropped (CPU: host memory returns to Python's allocator)."
    return (
        f"Released: torch allocated {fmt_bytes(report['allocated_before'])} → **{fmt_bytes(report['allocated_after'])}** "
        f"(before loading: {fmt_bytes(report['baseline'])}), reserved {fmt_bytes(report['reserved_before'])} → "
        f"{fmt_bytes(report['reserved_after'])}."
    )


@app.function
def summary_cards(before, after, click_to_result, peak_memory, release_report, run):
    """Step 7's metric cards for the whole run."""
    cards = [
        mo.stat(f"{click_to_result:.1f} s", label="click → result", caption="steps 1–7", bordered=True),
        metric_card("eval loss", before["eval_loss"], after["eval_loss"], "{:.3f}", "decrease"),
        metric_card(
            "exact match",
            before["exact_match"],
            after["exact_match"],
            "{:.0%}",
            "increase",
            n=after.get("eval_items"),
        ),
    ]
    if run.device.type == "cuda":
        cards += [
            mo.stat(
                fmt_bytes(peak_memory),
                label="peak CUDA memory (this process, this run's lease)",
                caption=f"max_memory_allocated since step 2; {fmt_bytes(run.memory_baseline)} of it held before",
                bordered=True,
            ),
            mo.stat(
                fmt_bytes(release_report["allocated_after"]),
                label="after release (this process)",
                caption=f"memory_allocated; {fmt_bytes(run.memory_baseline)} before this run loaded",
                bordered=True,
            ),
        ]
    return mo.hstack(cards, widths="equal")


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ### Library · the texts and charts
    """)
    return


@app.function
def why_lora_text(why, settings, model_name=None, ran=False):
    """'Why LoRA works' with this model's and rank's numbers (`ran`: the model a run actually loaded)."""
    d_in, d_out, r = why["c_attn_in"], why["c_attn_out"], settings.rank
    full, low = d_in * d_out, r * (d_in + d_out)
    saving = why["full_ft_bytes"] / why["lora_bytes"]
    name = model_name or settings.model_source
    scope = (
        "the model this run loaded"
        if ran
        else "the model you picked; if it cannot load, step 3 repeats this with the model that ran"
    )
    return f"""
_Numbers for `{name}` with r = {r} on {", ".join(settings.target_modules)} ({scope})._

Fine-tuning changes each weight matrix $W$ by some $\\Delta W$. LoRA's bet is that the change a small
task needs has **low rank**: write $\\Delta W = B A$ with $A \\in \\mathbb{{R}}^{{r \\times d_\\text{{in}}}}$ and
$B \\in \\mathbb{{R}}^{{d_\\text{{out}} \\times r}}$, train only $A$ and $B$, keep $W$ frozen. The layer
computes $y = W x + \\frac{{\\alpha}}{{r}} B A x$.

- For this model's `{why.get("example_layer", "c_attn")}` ({d_in} → {d_out}): a full $\\Delta W$ has {d_in} × {d_out} = **{full:,}** numbers; with
  r = {r} LoRA trains {r} × ({d_in} + {d_out}) = **{low:,}** — {full / low:.0f}× fewer.
- Over the {why["layers"]} wrapped layers: **{why["lora_params"]:,}** trainable parameters beside
  {why["base_params"]:,} frozen ones = **{why["trainable_pct"]:.3f}%** of the total.
- Memory for weights and optimizer state (activations excluded): full fine-tuning with AdamW keeps FP32
  weights, gradients and two moments, 16 bytes × {fmt_count(why["base_params"])} = **{fmt_bytes(why["full_ft_bytes"])}**.
  LoRA keeps the frozen base in {settings.precision.upper()} plus 16 bytes per adapter parameter =
  **{fmt_bytes(why["lora_bytes"])}** — {saving:.1f}× less. The saved adapter is {fmt_bytes(4 * why["lora_params"])}.
- **B starts at zero**, so at step 0 the wrapped model *is* the pretrained model (step 5's baseline checks it),
  and training moves away from it only as far as the data asks.
- After training, $W + \\frac{{\\alpha}}{{r}} BA$ can be **merged** into one matrix: no extra cost at inference.
"""


@app.function
def ran_model_explanation(run):
    """{title: text} of "Why LoRA works" for the model that ran, when it is not the one picked (a fallback)."""
    if run.model_name == run.settings.model_source or not isinstance(run.model.config, GPT2Config):
        return {}
    why = lora_plan(run.model.config, run.settings)
    title = f"Why LoRA works — with the numbers of the model that ran (`{run.model_name}`)"
    return {title: mo.md(why_lora_text(why, run.settings, run.model_name, ran=True))}


@app.function
def why_mfu_text(why):
    """The MFU formula with this model's numbers, the datasheet peaks it divides by, and what GPM adds."""
    rows = "\n".join(
        f"| {names[0]} | {t['fp16']:g} | {'—' if t['bf16'] is None else format(t['bf16'], 'g')} |"
        for names, t in DENSE_PEAK_TFLOPS
    )
    return f"""
**MFU (model FLOPs utilisation)** = tokens/s × model FLOPs per token ÷ the card's dense peak FLOP/s.
It says how much of the card's arithmetic the *model's* math uses, whatever the software does around it.

With a frozen base and LoRA adapters, one training token costs (a multiply-add = 2 FLOPs):

$$\\text{{FLOPs/token}} = \\underbrace{{2N + 2LTd}}_{{\\text{{forward}}}} + \\underbrace{{2N + 2LTd}}_{{\\text{{input gradients}}}}
+ \\underbrace{{6N_\\text{{LoRA}}}}_{{\\text{{adapters}}}}$$

$N$ = the matmul weights (LM head included, embedding lookups not), $L$ layers, width $d$, $T$ = the longest
training example; frozen weights get no weight gradient, which saves the $2N$ that full fine-tuning pays. For
this model: $N_\\text{{LoRA}}$ = {why["lora_params"]:,}, $L$ = {why["n_layer"]}, $d$ = {why["n_embd"]}. Tokens
are the real (non-padding) ones, so padding shows as lost MFU. Step 5 shows MFU live and at the end.

The peak comes from this small table of **NVIDIA datasheet figures** (dense Tensor Core TFLOPS, without
sparsity; not measured here). A card that is not in it shows "n/a" and says so; an FP32 run has no MFU here.

| card | FP16 dense TFLOPS | BF16 dense TFLOPS |
|---|---|---|
{rows}

**GPM** (NVML's GPU performance monitoring, Hopper and newer) samples what the SMs really did, in windows
of 100 ms: *SM activity* (share of time SMs had work), *SM occupancy* (warps resident vs the maximum),
*Tensor Core activity* (any Tensor Core pipe; HMMA = the FP16/BF16 one), *DRAM bandwidth* (share of the
peak), and PCIe traffic. Classic "GPU utilisation" only says *some* kernel was running: high utilisation with
low SM activity means tiny kernels (launch-bound); high DRAM with low Tensor activity, memory-bound; high
Tensor activity, compute-bound. Energy is NVML's total-energy counter read before and after training.
"""


@app.function
def mib_with_units(mib):
    """MiB as written in the benchmarks, with the same amount in GB and GiB (6,581 → 6.90 GB, 6.43 GiB)."""
    return f"{mib:,} MiB ({mib * 2**20 / 1e9:.2f} GB, {mib / 1024:.2f} GiB)"


@app.function
def fast_path_measured_text():
    """The reference figures of the fast path, each from a recorded run (card and date in the heading)."""
    names = ("PEFT + Trainer", "plain", "fast", "fast + compile")

    def cell(speeds, memory, name):
        return f"{speeds[name]:,}" + (f", peak {mib_with_units(memory[name])}" if name in memory else "")

    speed_rows = "\n".join(
        f"| {b} × {t} | " + " | ".join(cell(speeds, memory, n) for n in names) + " |"
        for b, t, speeds, memory in THROUGHPUT_MEASUREMENTS
    )
    even_rows = []
    for targets, b, t, eager_ms, compiled_ms, first_s in COMPILE_MEASUREMENTS:
        steps, tokens = compile_break_even(eager_ms, compiled_ms, first_s, b * t)
        even_rows.append(
            f"| {targets} | {b} × {t} | {eager_ms:g} | {compiled_ms:g} | {first_s:g} s | {steps:,} steps "
            f"({fmt_count(tokens)} tokens) |"
        )
    even_rows = "\n".join(even_rows)
    return f"""
**Measured on an {FAST_PATH_MEASURED_ON}** (notes/BENCHMARKS.md; GPT-2 124M with random weights, LoRA r=16,
FP16 + GradScaler, `bench/lora_throughput.py`). These are reference figures from that card, not this run:
step 5 shows this run's tokens/s. Tokens/s, LoRA on the attention `c_attn`/`c_proj` (24 modules):

| batch × length | PEFT + Trainer | app plain | app fast | app fast + compile |
|---|---|---|---|---|
{speed_rows}

Compile break-even from the same runs: a compiled run catches up with the eager one after (first compiled
step − one compiled step) ÷ (eager − compiled ms per step) steps (`compile_break_even`):

| LoRA targets | batch × length | eager ms/step | compiled ms/step | first compiled step | pays after |
|---|---|---|---|---|---|
{even_rows}

*auto* compiles only runs at least as long as the longest of these. Profiled on the same card
(`bench/profile_step.py`, notes/BENCHMARKS.md): before the LM head was padded, its two unaligned GEMMs took
24 ms of a 69 ms step's kernels at 32 × 512 (36 modules); padded, the eager step's kernels took 41 ms. The
compiled step launched about 1,000 kernels per step before CUDA graphs (36 modules) and 804 inside them
(24 modules). The start-up warm-up took 4.3 s and 4.0 s in two runs; the default demo, click to results with
the model on disk, 3.46 s and 3.64 s (13.41 s on the plain path).
"""


@app.function
def why_fast_text(settings, why):
    """The speed levers and what each removes, with this model's and these settings' numbers."""
    plan = choose_speed_plan(settings.speed, "cuda")
    vocab, width = why["vocab_size"], why["n_embd"]
    padded = -(-vocab // 128) * 128
    eager_rows, compiled_rows = lm_head_rows(padded), lm_head_rows(padded, 4 * LOSS_CHUNK_BYTES)
    logits_bytes = settings.batch_size * settings.max_length * vocab * 4
    gpt2 = why.get("architecture", "gpt2") == "gpt2"
    gelu = (
        'GPT-2\'s `gelu_new` is eight element-wise kernels; `GELU(approximate="tanh")` is the same formula in one'
        if gpt2
        else "nothing for this model: it is GPT-2's lever (its `gelu_new` is eight element-wise kernels); the Llama "
        "family's MLP uses SiLU, which PyTorch runs as one op"
    )
    warm = (
        "a one-layer GPT-2 of the same width runs the demo's steps once in the background at start-up, so the "
        "first Train click is as fast as the next"
        if gpt2
        else "a one-layer GPT-2 runs the GPT-2 demo's steps once in the background at start-up; that warms the "
        "process and the shared kernels, not every kernel of this model"
    )
    head = (
        f"this vocabulary ({vocab:,}) is not a multiple of 128, which puts cuBLAS on slower unaligned kernels; {padded - vocab} zero rows "
        f"(masked to −∞) make it {padded:,}, a multiple of 128"
        if padded != vocab
        else f"this vocabulary ({vocab:,}) is already a multiple of 128, so nothing is added"
    )
    return f"""
Your setting: **{plan.name}**{" (auto: compiles only long runs)" if settings.speed == "auto" else ""}. Every
lever keeps the maths of a step: the fast and plain paths give the same loss curve within FP16 rounding
(tested on CPU in FP32 and on a GPU in FP16).

| lever | what it removes |
|:---|:---|
| **loss on answer tokens only, in chunks** | the LM head multiplies every position by a {width:,} × {vocab:,} matrix (this model's width × vocabulary); only answer tokens carry loss (step 4 shows this run's share as "tokens that carry loss"). At batch {settings.batch_size} × {settings.max_length} the full FP32 logits would take {fmt_bytes(logits_bytes)}; an eager chunk of {eager_rows:,} rows holds {fmt_bytes(eager_rows * padded * 4)} of FP32 probabilities, a compiled chunk takes {compiled_rows:,} rows in 16-bit ({fmt_bytes(compiled_rows * padded * 2)} per copy of its logits) |
| **LM head padded to a multiple of 128 rows** | {head} |
| **no padding mask** | batches are right-padded and attention is causal, so no real token ever sees padding: SDPA runs with `is_causal=True` (flash attention), and transformers' mask checks, which wait for the GPU, are skipped |
| **fused AdamW, schedule on the GPU, read back every {SYNC_EVERY} steps** | a host sync per step (`loss.item()`) stops the CPU from queueing the next step; now the GradScaler's skip, the learning rate and the loss stay on the GPU |
| **one-kernel GELU** | {gelu} |
| **torch.compile + CUDA graphs** | fuses LayerNorm, dropout, GELU and residual adds; CUDA graphs replay a step's kernels without the CPU launching each one. Compiling is paid again by every run (each run's compiled model is dropped with the run to free its memory; inductor's on-disk cache shortens later compiles), so *auto* uses it only for runs of ≥ {fmt_count(COMPILE_PAYS_AFTER_TOKENS)} tokens or ≥ {COMPILE_PAYS_AFTER_STEPS:,} steps, the measured break-even below |
| **kernels warmed when the app opens** | the first CUDA work of a process loads every kernel it touches and sets up cuBLAS and flash attention; {warm} |
{fast_path_measured_text()}"""


@app.function
def why_fp16_text():
    """'Why mixed precision (FP16)' with numbers computed by torch on this machine."""
    fp16, bf16 = torch.finfo(torch.float16), torch.finfo(torch.bfloat16)
    tiny_gradient = 1e-8
    in_fp16 = torch.tensor(tiny_gradient, dtype=torch.float16).item()
    scale = 2.0**16
    scaled = torch.tensor(tiny_gradient * scale, dtype=torch.float16).item()
    return f"""
- **Speed:** Tensor Cores multiply FP16/BF16 matrices many times faster than FP32 on the same GPU, and half
  the bytes means half the memory traffic and activation memory. Autocast (`torch.amp.autocast`) runs matmuls in
  FP16 and keeps precision-sensitive ops (softmax, layer norm, the loss) in FP32.
- **FP16's range is narrow:** largest value {fp16.max:,.0f}, smallest normal {fp16.tiny:.2e}, smallest subnormal
  {2.0**-24:.2e}. A gradient of {tiny_gradient:g} stored in FP16 becomes **{in_fp16}** — it **underflows to zero**
  and that update is lost.
- **GradScaler** multiplies the loss by a scale (e.g. 2^16 = {scale:,.0f}) before `backward()`, so every gradient
  is scaled too: {tiny_gradient:g} × {scale:,.0f} = {scaled:.3e} survives in FP16. Then, in this order:
  **unscale** (divide the FP32 adapter gradients back), **clip** the true gradient norm, **step** (skipped if any
  gradient is inf/NaN), **update** (halve the scale after an overflow, grow it after a run of good steps).
- **BF16** keeps FP32's 8-bit exponent (max {bf16.max:.2e}, smallest normal {bf16.tiny:.2e}), so gradients do not
  underflow and no scaler is needed; it pays with precision: machine epsilon {bf16.eps:.1e} vs FP16's {fp16.eps:.1e}.
- **Which one when:** on Ampere and newer GPUs (compute capability 8.0 and up, native BF16 Tensor Cores) BF16
  without a scaler is the usual default for training. FP16 + GradScaler is what Volta and Turing (7.x) run
  fast; there BF16 is only emulated. A CPU run uses FP32 (FP16 autocast gains nothing there). This app decides
  "native BF16" by compute capability, not by `torch.cuda.is_bf16_supported()`, whose default also says
  yes on Volta/Turing. *auto* keeps FP16 + GradScaler for GPT-2, because the scaler is what this section
  teaches, and picks BF16 for the Llama family where the GPU has it natively.
- **Here:** the frozen base weights are stored in the compute dtype (half the memory); the adapter weights, their
  gradients and AdamW's moments stay in FP32, the "master copy" that small updates need.
"""


@app.function
def why_conv1d_text(why):
    """'Why GPT-2's Conv1D is unusual' with this model's c_attn shape."""
    d_in, d_out = why["c_attn_in"], why["c_attn_out"]
    return f"""
- GPT-2's projections are `transformers.pytorch_utils.Conv1D`, not `nn.Linear`. Despite the name it is a linear
  layer, but it stores its weight as **[in, out]** and computes `x @ W + b`; `nn.Linear` stores **[out, in]** and
  computes `x @ W.T + b`. Here `c_attn.weight` is [{d_in}, {d_out}].
- LoRA's update $BA$ has shape [out, in]. For Conv1D the merge must add $(BA)^\\top$; PEFT calls this
  `fan_in_fan_out=True`, and this app writes it into `adapter_config.json`. Reading the wrong orientation would
  either crash on the shape or — for square layers such as `attn.c_proj` — silently add the transposed update.
- This app's `LoRALayer` decides the orientation **by type** (`isinstance(layer, Conv1D)` vs `nn.Linear`), never by
  name: `c_proj` names both the attention output and the MLP down-projection, which is also why the targets are
  written `attn.c_proj` and `mlp.c_proj`.
- **`c_attn` is fused:** one [{d_in}, {d_out}] matrix produces query, key and value ({d_out // 3} columns each). One
  LoRA on `c_attn` shares a single $A$ across q, k and v, and the three blocks of $B$'s rows adapt each of them:
  one adapter for all three projections, with the rank shared between them.
"""


@app.function
def train_example_count(dataset):
    """Rows of the training split of the data that will run (built-in set or an upload)."""
    return 0 if dataset is None else int((dataset["split"] == "train").sum())


@app.function
def hyperparameter_text(settings, why, train_examples):
    """'Hyperparameter choices' for the current settings and the data that will run."""
    steps_per_epoch = -(-train_examples // max(settings.batch_size, 1))
    return f"""
- **Rank r = {settings.rank}:** the capacity of the update. 8 is a common start for small tasks; doubling r doubles
  the adapter ({why["lora_params"]:,} parameters now) and rarely helps on a small set such as this one
  ({train_examples:,} training examples).
- **Alpha = {settings.alpha} → scaling alpha/r = {settings.alpha / settings.rank:g}:** multiplies the update. Keeping
  alpha = 2r when r changes is a common heuristic, not a derived rule. The LoRA paper (arXiv:2106.09685) sets
  alpha once, at the first r it tries, and keeps it when r changes; with Adam, changing alpha acts roughly like
  changing the learning rate. rsLoRA (arXiv:2312.03732) argues for alpha/√r so that learning stays stable as r
  grows; PEFT offers it as `LoraConfig(use_rslora=True)` (this app uses alpha/r, as PEFT does by default).
- **Learning rate ({settings.learning_rate or "auto"}):** *auto* = 1e-3 for pretrained GPT-2 and 3e-3 for the
  tiny random model, which has to learn everything from scratch: choices for this demo's short runs, not a rule.
  For reference, the LoRA authors trained GPT-2 Medium with 2e-4 (r = 4, alpha = 32; `microsoft/LoRA`,
  examples/NLG). B starts at zero, which only makes step 0 equal the base model; it does not make a larger rate
  safe. Loss that jumps to NaN or many skipped FP16 steps mean: lower it.
- **Warm-up ({settings.warmup_ratio:.0%} of steps), then cosine decay to 10%:** AdamW's moment estimates are noisy
  for the first steps; ramping up avoids a large early jump, decaying settles the end.
- **Batch size {settings.batch_size}:** more sequences per step gives smoother gradients and better GPU use, but
  activation memory grows with batch × length. Out of memory? Halve it (or the sequence length).
- **Epochs ({settings.epochs or "auto"}):** {train_examples:,} training examples make {steps_per_epoch:,} steps per
  epoch at batch {settings.batch_size} (fewer if some exceed the max length; step 4 counts them): watch the eval loss per epoch in step 5; when it turns up while the train
  loss keeps falling, the adapter is memorising.
- **Max sequence length {settings.max_length}:** an upper bound; batches are padded only to their longest example
  (dynamic padding), and prompts plus answers here are far shorter. Attention cost grows with length.
- **Dropout {settings.dropout}:** applied to the adapter's input only; a little regularisation for small data.
"""


@app.function
def intro_text(why, model_source, stored_in="FP16"):
    """The title cell: the adapter's share of the parameters computed for the planned model, never a fixed figure."""
    share = (
        f"**{why['trainable_pct']:.2f}%** of the parameters for `{model_source}` with the settings below"
        if why is not None
        else "a small share of the parameters (step 3 counts it for the model that loads)"
    )
    return f"""
# Fine-tune GPT-2 with LoRA in FP16 — seven visible steps

This app teaches GPT-2 a handful of small tasks with **fixed answer formats** ("Answer: 43",
"GARDEN", "positive", "3000 m", …) by training a **LoRA adapter**: two thin matrices beside each
chosen weight matrix, {share}, while the base model stays frozen (stored in {stored_in} for the settings below).
It then measures what changed — eval loss, perplexity, exact match and answer-format match on
held-out prompts, **before vs after** — and saves the adapter in **PEFT's own format**.

Each of the seven steps below is its own cell and shows what it did and how long it took. With an
NVIDIA GPU it trains in FP16 with a GradScaler; on a CPU it explains its fallback and still runs.
Without network access it offers a **tiny offline GPT-2** that needs no download. Llama-family models
(SmolLM2, Qwen2.5, Llama 3.2, or a tiny offline Llama) run through the same seven steps, in BF16 where
the GPU has it natively.
"""


@app.function
def planned_run(settings, environment):
    """The precision and speed plans a Train click would resolve to on this machine, before it loads anything."""
    device = torch.device("cuda" if environment["cuda_available"] else "cpu")
    precision, _ = choose_precision(settings, device)
    return {
        "plan": resolve_precision(precision, device.type, bf16_native(device)),
        "speed": choose_speed_plan(settings.speed, device.type),
        "device_type": device.type,
        "device_name": environment.get("gpu") or f"CPU ({environment['cpu_cores']} cores)",
        "compute_capability": tuple(int(x) for x in environment.get("compute_capability", "0.0").split(".")),
    }


@app.function
def run_model_facts(run):
    """The numbers the memory, QLoRA and roofline texts need, read from the run's model (it is freed in step 7)."""
    trainable, total = parameter_counts(run.model)
    matmul, linear = matmul_weight_count(run.model)
    return {
        "shape": model_shape(run.model.config),
        "base_params": total - trainable,
        "lora_params": trainable,
        "matmul_params": matmul,
        "linear_params": linear,
    }


@app.function
def activation_values_per_token(shape, fast_gelu=True):
    """Values one layer keeps per token for the backward pass: an estimate from the architecture.

    GPT-2: both LayerNorms' inputs and outputs, q, k and v, the attention output, and the MLP's activations
    before and after GELU (8·d + 2·d_mlp). Llama: both RMSNorms' inputs and outputs, q, k and v (k and v at
    the key/value width), the attention output, and SwiGLU's gate, up, SiLU(gate) and product
    (6·d + 2·d_kv + 4·d_mlp). GPT-2's own `gelu_new` (eight element-wise kernels; the plain path keeps it)
    keeps three more MLP-wide tensors. Flash attention keeps no T × T scores. Dropout masks and LoRA's
    r-wide intermediates are left out. A CPU test counts what autograd really saves against this.
    """
    d, kv, m = shape["d_model"], shape["kv_width"], shape["mlp_width"]
    if shape["architecture"] == "gpt2":
        return 8 * d + 2 * m + (0 if fast_gelu else 3 * m)
    return 6 * d + 2 * kv + 4 * m


@app.function
def training_memory(facts, plan, speed, tokens, loss_rows):
    """Estimated bytes of one training step by part, for `tokens` positions per batch (`loss_rows` carry loss)."""
    shape, lora = facts["shape"], facts["lora_params"]
    vocab, width = shape["vocab"], shape["d_model"]
    weight_bytes = plan.param_dtype.itemsize
    compute_bytes = (plan.autocast_dtype or plan.param_dtype).itemsize
    per_token = activation_values_per_token(shape, speed.fast_gelu)
    if (
        speed.fused_loss
    ):  # one chunk's logits and FP32 probabilities, the stored input gradient, the padded head
        padded = -(-vocab // 128) * 128
        rows = min(loss_rows, lm_head_rows(padded))
        logits = rows * padded * (compute_bytes + 4) + loss_rows * width * 4 + padded * width * compute_bytes
    else:  # the full logits, then an FP32 copy at the loss positions and cross-entropy's saved log-softmax
        logits = tokens * vocab * compute_bytes + 2 * loss_rows * vocab * 4
    return {
        "frozen base weights": facts["base_params"] * weight_bytes,
        "LoRA weights (FP32)": 4 * lora,
        "LoRA gradients (FP32)": 4 * lora,
        "AdamW moments (FP32, two per weight)": 8 * lora,
        "activations kept for backward": shape["n_layer"] * tokens * per_token * compute_bytes,
        "logits and loss": logits,
    }


@app.function
def memory_levers(facts, parts, plan, speed, tokens, seq_len, batch_size):
    """What gradient checkpointing and gradient accumulation would do to this step's memory and time."""
    shape = facts["shape"]
    compute_bytes = (plan.autocast_dtype or plan.param_dtype).itemsize
    per_layer = tokens * activation_values_per_token(shape, speed.fast_gelu) * compute_bytes
    # Checkpointing every block keeps each block's input only and recomputes one block at a time in backward.
    checkpointed = shape["n_layer"] * tokens * shape["d_model"] * compute_bytes + per_layer
    attention = shape["n_layer"] * seq_len * shape["d_model"]
    forward = 2 * facts["matmul_params"] + 2 * attention
    step = lora_flops_per_token(facts["matmul_params"], shape["n_layer"], seq_len, shape["d_model"], 0)
    step += 6 * facts["lora_params"]
    k = 4 if batch_size >= 4 else batch_size
    return {
        "activations": parts["activations kept for backward"],
        "checkpointed_activations": checkpointed,
        "extra_flops_share": forward / step,  # one more forward on top of forward + backward
        "accumulation_steps": k,
        "micro_batch": batch_size // k,
        "accumulated_activations": (parts["activations kept for backward"] + parts["logits and loss"]) / k,
    }


@app.function
def training_memory_text(facts, settings, plan, speed, tokens, loss_rows, measured=None):
    """Where one training step's memory goes, estimated from the config; after a CUDA run, the measured peak.

    `measured`: None before a run; after one {"device_type", "peak", "baseline"} (peak None on a CPU).
    """
    parts = training_memory(facts, plan, speed, tokens, loss_rows)
    total = sum(parts.values())
    rows = "\n".join(f"| {name} | {fmt_bytes(n)} | {100 * n / total:.0f}% |" for name, n in parts.items())
    levers = memory_levers(facts, parts, plan, speed, tokens, settings.max_length, settings.batch_size)
    if measured is None:
        scope = f"batch {settings.batch_size} × max length {settings.max_length}, the most a batch can hold"
        compared = "After a run on a CUDA GPU, step 5 puts torch's measured peak beside this estimate."
    elif measured.get("peak"):
        scope = "the largest batch this run built"
        added = max(measured["peak"] - measured["baseline"], 1)
        compared = (
            f"**Measured** (torch `max_memory_allocated`, this process from step 2 on, the evaluation before "
            f"training included): **{fmt_bytes(measured['peak'])}**, of which {fmt_bytes(measured['baseline'])} the "
            f"process held before this run; the estimate is **{total / added:.2f}×** what this run added. The gap "
            "is what the estimate leaves out: norm outputs autocast keeps in FP32, dropout masks, the "
            "evaluation's own tensors, the allocator's rounding, and tensors that briefly overlap."
        )
    else:
        scope = "the largest batch this run built"
        compared = "Not measured: torch's allocator statistics exist on CUDA only; this run was on a CPU."
    return f"""
_Estimated from the model's config for **{tokens:,} token positions per batch** ({scope}), {loss_rows:,} of them
carrying loss, in {plan.name}, on the **{speed.name}** path. Estimates, not measurements._

| part | bytes | share |
|---|---|---|
{rows}
| **total (estimated)** | **{fmt_bytes(total)}** | |

LoRA shrinks the optimizer's part to the adapters ({fmt_bytes(16 * facts["lora_params"])} for weights, gradients and
AdamW's two moments together); the activations grow with batch × length × layers × width and stay. Per layer
and token the backward needs about {activation_values_per_token(facts["shape"], speed.fast_gelu):,} values
(`activation_values_per_token` lists them).

{compared}

- **Gradient checkpointing** (`torch.utils.checkpoint`; not offered by this app) keeps only each block's input
  and recomputes the block in backward: activations {fmt_bytes(levers["activations"])} →
  **{fmt_bytes(levers["checkpointed_activations"])}**, for one extra forward pass, about
  **{100 * levers["extra_flops_share"]:.0f}% more FLOPs** per step here (forward ÷ forward + backward with a frozen
  base, from `lora_flops_per_token`; full fine-tuning pays about a third, since its backward also computes weight
  gradients).
- **Gradient accumulation** (not offered either) runs the batch of {settings.batch_size} as
  {levers["accumulation_steps"]} micro-batches of {levers["micro_batch"]} and steps the optimizer once: the same
  update, activations and logits {fmt_bytes(parts["activations kept for backward"] + parts["logits and loss"])} →
  **{fmt_bytes(levers["accumulated_activations"])}**, the same FLOPs, {levers["accumulation_steps"]} smaller
  passes in a row per step (smaller matmuls use the GPU less well).
"""


@app.function
def dtype_name(dtype):
    """torch.float16 → 'FP16' (BF16, FP32 likewise)."""
    return {torch.float16: "FP16", torch.bfloat16: "BF16", torch.float32: "FP32"}.get(dtype, str(dtype))


@app.function
def tf32_text(plan, device_type, compute_capability=(0, 0), current=None):
    """What `torch.set_float32_matmul_precision("high")` changes (sourced), and whether it touches this run."""
    current = current or torch.get_float32_matmul_precision()
    if device_type != "cuda":
        here = "This run is on a **CPU**: the flag affects CUDA only, so it changes nothing here."
    elif plan.autocast_dtype is not None:
        here = (
            f"This run is **{plan.name}**: its matmuls run in {dtype_name(plan.autocast_dtype)} "
            "under autocast (the chunked loss casts to it as well), on the Tensor Cores already. TF32 changes "
            "FP32 matmuls only, so the flag would not change this run."
        )
    elif compute_capability >= (8, 0):
        here = (
            'This run is **FP32 on a GPU with TF32 Tensor Cores**: `"high"` would move its matmuls onto them, '
            "faster at TF32's 10-bit mantissa. The app leaves PyTorch's default, so they run in full FP32."
        )
    else:
        here = (
            f"This run is **FP32 on a GPU of compute capability {compute_capability[0]}.{compute_capability[1]}**: "
            "TF32 Tensor Cores start with Ampere (8.0), so the flag changes nothing on this card."
        )
    return f"""
`torch.set_float32_matmul_precision("high")` lets **FP32** matrix multiplications compute internally in
TF32 (FP32's 8-bit exponent with 10 explicitly stored mantissa bits) where a fast TF32 algorithm exists; the
result stays FP32. The default is `"highest"` (full FP32), and the flag affects CUDA only (PyTorch docs,
`torch.set_float32_matmul_precision`). TF32 Tensor Cores exist on Ampere and later GPUs (PyTorch docs, CUDA
semantics, "TensorFloat-32 (TF32) on Ampere (and later) devices").

This process's setting now: `"{current}"`; the app never changes it. {here}
"""


@app.function
def qlora_bytes(facts, weight_bytes):
    """(base weights now, the same base with its linear layers in 4-bit NF4) in bytes.

    NF4 stores 4 bits per weight plus its block's constant: QLoRA's double quantization brings that constant
    to 8/64 + 32/(64·256) = 0.127 bits per weight (blocks of 64 weights, constants in blocks of 256).
    Embeddings, the LM head, norms and biases stay in 16-bit.
    """
    now = facts["base_params"] * weight_bytes
    nf4 = facts["linear_params"] * (4 + 8 / 64 + 32 / (64 * 256)) / 8
    return now, nf4 + (facts["base_params"] - facts["linear_params"]) * 2


@app.function
def qlora_text(facts, plan, model_name, estimated_total):
    """QLoRA as the next memory lever: a pointer, with this model's base-weight bytes now and in 4-bit."""
    now, nf4 = qlora_bytes(facts, plan.param_dtype.itemsize)
    return f"""
**QLoRA** (Dettmers et al. 2023, arXiv:2305.14314) keeps the frozen base in **4-bit NormalFloat (NF4)**,
quantises the quantisation constants too (double quantization), and pages optimizer state to CPU memory at
spikes; gradients flow through the 4-bit base into 16-bit LoRA adapters. **This app does not implement it**
(in the PEFT ecosystem it takes bitsandbytes and a CUDA GPU).

For `{model_name}` the frozen base takes **{fmt_bytes(now)}** stored in {dtype_name(plan.param_dtype)}. With its
{fmt_count(facts["linear_params"])} linear-layer weights in NF4 (4 bits + 0.127 bits of constants each) and the
rest (embeddings, norms, biases) in 16-bit it would take **{fmt_bytes(nf4)}**, {now / nf4:.1f}× less
(arithmetic, `qlora_bytes`). That is {100 * (now - nf4) / max(estimated_total, 1):.0f}% of this step's estimated
{fmt_bytes(estimated_total)} (the memory section above): QLoRA pays when the base model is what does not fit;
when activations dominate, checkpointing, a smaller batch or a shorter length are the levers.
"""


@app.function
def memory_bandwidth(device_name):
    """(bytes/s, source) of the card's peak memory bandwidth from MEMORY_BANDWIDTH_TBS, or (None, why)."""
    for names, tbs in MEMORY_BANDWIDTH_TBS:
        if any(re.search(rf"\b{re.escape(name)}\b", device_name or "") for name in names):
            return tbs * 1e12, f"{names[0]} datasheet memory bandwidth"
    return None, f"`{device_name}` is not in the app's small table of datasheet bandwidths"


@app.function
def largest_matmul(facts, tokens, loss_rows, fused_loss):
    """(name, M, K, N) of the step's largest matmul by FLOPs: the MLP's or attention's projections over
    `tokens` rows, or the LM head (on the fast path over the `loss_rows` only, one chunk at most)."""
    shape = facts["shape"]
    d, kv, m, vocab = shape["d_model"], shape["kv_width"], shape["mlp_width"], shape["vocab"]
    head_rows = min(loss_rows, lm_head_rows(-(-vocab // 128) * 128)) if fused_loss else tokens
    fused_qkv = shape["architecture"] == "gpt2"
    candidates = [
        (
            "attention q, k, v (fused c_attn)" if fused_qkv else "attention q_proj",
            tokens,
            d,
            d + 2 * kv if fused_qkv else d,
        ),
        ("MLP up-projection", tokens, d, m),
        ("MLP down-projection", tokens, m, d),
        ("LM head" + (" (one loss chunk)" if fused_loss else ""), head_rows, d, vocab),
    ]
    return max(candidates, key=lambda c: c[1] * c[2] * c[3])


@app.function
def arithmetic_intensity(m, k, n, element_bytes):
    """FLOPs per byte of an [m × k] · [k × n] matmul that reads both inputs and writes the output once."""
    return 2 * m * k * n / (element_bytes * (m * k + k * n + m * n))


@app.function
def roofline_text(facts, plan, speed, device_type, device_name, tokens, loss_rows):
    """Compute-, memory- or overhead-bound: this run's largest matmul against the card's ridge point."""
    name, m, k, n = largest_matmul(facts, tokens, loss_rows, speed.fused_loss)
    dtype = plan.autocast_dtype or plan.param_dtype
    element_bytes = dtype.itemsize
    intensity = arithmetic_intensity(m, k, n, element_bytes)
    flops = 2 * m * k * n
    head = (
        f"This run's largest matmul is the **{name}**: [{m:,} × {k:,}] · [{k:,} × {n:,}] in "
        f"{dtype_name(dtype)}, {flops / 1e9:,.2f} GFLOP over {fmt_bytes(element_bytes * (m * k + k * n + m * n))} "
        f"read and written: **{intensity:,.0f} FLOPs per byte** (arithmetic intensity; {m:,} rows = "
        f"{'one loss chunk' if 'chunk' in name else 'the token positions of one batch, at most'})."
    )
    if device_type != "cuda":
        place = (
            "This is a CPU run: the app has no roofline for CPUs, so it **cannot place** this matmul on one."
        )
    else:
        peak, peak_source = dense_peak_flops(device_name, dtype)
        bandwidth, bandwidth_source = memory_bandwidth(device_name)
        if peak is None or bandwidth is None:
            place = f"The app **cannot place** it on this card's roofline: {peak_source if peak is None else bandwidth_source}."
        else:
            ridge = peak / bandwidth
            side = "above" if intensity >= ridge else "below"
            regime = "compute-bound (Tensor Cores)" if intensity >= ridge else "memory-bound (HBM bandwidth)"
            place = (
                f"On this **{device_name}** the ridge point is {peak / 1e12:,.0f} TFLOPS ÷ {bandwidth / 1e12:g} TB/s = "
                f"**{ridge:,.0f} FLOPs per byte** ({peak_source}; {bandwidth_source}: datasheet figures, not measured). "
                f"The matmul sits "
                f"{side} it: **{regime}** if the GPU is kept fed. At the peak it would take "
                f"**{flops / peak * 1e6:,.1f} µs**."
            )
    return f"""
The roofline model: an operation doing $F$ FLOPs while moving $B$ bytes cannot run faster than
$\\max(F/\\text{{peak FLOP/s}},\\ B/\\text{{bandwidth}})$. Its **arithmetic intensity** $F/B$ against the card's
**ridge point** (peak FLOP/s ÷ bandwidth) says which roof limits it: above the ridge **compute-bound**, below
**memory-bound**. A third regime has no roof: **overhead-bound**, when each kernel is so short that launching it,
Python and host syncs take longer than the work.

{head}

{place}

The element-wise work between the matmuls (norms, GELU/SiLU, residual adds, dropout) does about one FLOP per
byte: memory-bound on every card. And a step is hundreds of kernels: when each takes a few microseconds the
CPU's launches set the pace (overhead-bound), which is what the fast path's deferred read-backs and CUDA graphs
attack. Step 5's MFU and GPM SM / Tensor Core / DRAM activity say which regime this run was really in.
"""


@app.function
def smoothed(values, alpha=0.2):
    """Exponential moving average (pandas ewm, bias-corrected)."""
    return pd.Series(values, dtype="float64").ewm(alpha=alpha).mean().tolist()


@app.function
def loss_chart(train_records, eval_records, title="Loss against step"):
    """Train loss (raw and smoothed) and eval loss (per epoch, step 0 = before training) against step."""
    train = pd.DataFrame(train_records, columns=["step", "loss"])
    rows = [
        {"step": s, "loss": v, "series": "train (raw)"}
        for s, v in zip(train["step"], train["loss"], strict=True)
    ]
    rows += [
        {"step": s, "loss": v, "series": "train (smoothed)"}
        for s, v in zip(train["step"], smoothed(train["loss"]), strict=True)
    ]
    rows += [{"step": r["step"], "loss": r["eval_loss"], "series": "eval"} for r in eval_records]
    frame = pd.DataFrame(rows, columns=["step", "loss", "series"])
    colors = alt.Scale(
        domain=["train (raw)", "train (smoothed)", "eval"], range=["#9ecae1", "#08519c", "#e6550d"]
    )
    base = alt.Chart(frame).encode(
        x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("loss:Q", title="cross-entropy loss"),
        color=alt.Color("series:N", scale=colors, title=None),
        tooltip=["series", "step", alt.Tooltip("loss", format=".4f")],
    )
    lines = base.transform_filter(alt.datum.series != "eval").mark_line()
    points = base.transform_filter(alt.datum.series == "eval").mark_line(point=True, strokeDash=[4, 2])
    return (lines + points).properties(title=title, width="container", height=240)


@app.function
def step_chart(history, column, title, y_title):
    """One per-step metric (learning rate, tokens/s, memory) as a line."""
    return (
        alt.Chart(history)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y(f"{column}:Q", title=y_title),
            tooltip=["step", alt.Tooltip(column, format=".4g")],
        )
        .properties(title=title, width="container", height=180)
    )


@app.function
def throughput_chart(history):
    """Tokens per second per step: real (non-pad) tokens and padded tokens, labelled."""
    frame = history.melt(
        id_vars="step",
        value_vars=["tokens_per_s", "padded_tokens_per_s"],
        var_name="counted",
        value_name="rate",
    )
    frame["counted"] = frame["counted"].map(
        {"tokens_per_s": "real tokens (no padding)", "padded_tokens_per_s": "all tokens (with padding)"}
    )
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("rate:Q", title="tokens per second"),
            color=alt.Color("counted:N", title=None),
            tooltip=["counted", "step", alt.Tooltip("rate:Q", format=",.0f")],
        )
        .properties(title="Training throughput", width="container", height=180)
    )


@app.function
def device_timeline_chart(samples, source):
    """Utilization and memory from the background sampler against wall time."""
    frame = samples.melt(
        id_vars="t", value_vars=["util_pct", "memory_mib"], var_name="metric", value_name="value"
    )
    labels = {"util_pct": f"utilization % ({source})", "memory_mib": f"memory used MiB ({source})"}
    frame["metric"] = frame["metric"].map(labels)
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("t:Q", title="seconds since training started"),
            y=alt.Y("value:Q", title=None),
            tooltip=["metric", alt.Tooltip("t:Q", format=".1f"), alt.Tooltip("value:Q", format=",.1f")],
        )
        .properties(width="container", height=130)
        .facet(row=alt.Row("metric:N", title=None), title=f"Device timeline ({source}, sampled at 10 Hz)")
        .resolve_scale(y="independent")
    )


@app.function
def parameter_chart(breakdown):
    """Horizontal bars: parameters per group, labelled with count and share (the LoRA bar is thin)."""
    frame = breakdown.rename(columns={"share %": "share"}).assign(
        label=[
            f"{fmt_count(n)} ({s:.2f}%)"
            for n, s in zip(breakdown["parameters"], breakdown["share %"], strict=True)
        ]
    )
    base = alt.Chart(frame).encode(
        y=alt.Y("group:N", sort="-x", title=None),
        x=alt.X(
            "parameters:Q", title="parameters", scale=alt.Scale(domain=[0, 1.25 * frame["parameters"].max()])
        ),
    )
    bars = base.mark_bar().encode(
        color=alt.condition(
            alt.datum.group == "LoRA adapters (trainable)", alt.value("#e6550d"), alt.value("#6baed6")
        ),
        tooltip=["group", alt.Tooltip("parameters:Q", format=","), alt.Tooltip("share:Q", format=".3f")],
    )
    labels = base.mark_text(align="left", dx=4).encode(text="label:N")
    return (bars + labels).properties(
        title="Where the parameters are (each tensor counted once; lm_head is tied to the embeddings)",
        width="container",
        height=170,
    )


@app.function
def fmt_count(n):
    """1234567 → '1.23 M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:,}"


@app.function
def fmt_bytes(n):
    """Bytes as MiB/GiB."""
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


if __name__ == "__main__":
    app.run()
