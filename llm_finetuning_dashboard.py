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

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")

with app.setup:
    import contextlib
    import gc
    import hashlib
    import io
    import json
    import math
    import os
    import random
    import re
    import socket
    import sys
    import threading
    import time
    import types
    import zipfile
    from dataclasses import dataclass, replace
    from pathlib import Path

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
        PreTrainedTokenizerFast,
    )
    from transformers.pytorch_utils import Conv1D

    # `marimo export html app.py -- --smoke` → cli_args; `python app.py --smoke` → argv; a plain import → False.
    SMOKE = "smoke" in mo.cli_args() if mo.running_in_notebook() else "--smoke" in sys.argv[1:]
    PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n### Response:\n"
    EOS_TOKEN = "<|endoftext|>"
    TINY_MODEL_NAME = "tiny-offline-gpt2"
    TINY_INIT_RANGE = 0.1
    ALL_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    GPT2_FAMILY = {  # published architectures, so plans need no download
        "gpt2": {"n_layer": 12, "n_head": 12, "n_embd": 768},
        "distilgpt2": {"n_layer": 6, "n_head": 12, "n_embd": 768},
        "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024},
    }
    UPLOAD_MAX_BYTES = 5_000_000
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
def _():
    mo.md(r"""
    ## Library

    The pure helpers below are what the cells above call. Each is an `@app.function` (or
    `@app.class_definition`), so the tests and `bench/llm_pipeline.py` import them directly:
    `from llm_finetuning_dashboard import inject_lora, train_steps, ...`.
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


@app.function
def settings_from_form(value, smoke=False):
    """TrainSettings from the form's value (None before the first submit; smoke → tiny model, few steps)."""
    if smoke:
        return TrainSettings(model_source="tiny")
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
    )


@app.function
def with_model_defaults(settings, model_name):
    """Fill 'auto' learning rate and epochs for the model that actually loaded.

    A pretrained GPT-2 only has to learn the answer formats (1e-3, 5 epochs); the tiny offline model
    starts from random weights and needs bigger and more steps (3e-3, 15 epochs).
    """
    tiny = model_name == TINY_MODEL_NAME
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
    """Deterministic train/eval labels from a hash of each prompt (same prompt → same split, any order)."""
    buckets = [int(hashlib.sha256(p.encode("utf-8")).hexdigest()[:8], 16) % 1000 for p in prompts]
    labels = ["eval" if bucket < eval_share * 1000 else "train" for bucket in buckets]
    if len(labels) > 1 and "eval" not in labels:
        labels[buckets.index(min(buckets))] = "eval"
    if len(labels) > 1 and "train" not in labels:
        labels[buckets.index(max(buckets))] = "train"
    return labels


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
    columns = {str(key).strip().lower(): key for key in (records[0] if records else {})}
    missing = [name for name in ("prompt", "response") if name not in columns]
    if missing:
        found = ", ".join(f"`{c}`" for c in columns) or "none"
        return (
            None,
            [f"`{filename}` needs columns `prompt` and `response`; missing {missing}, found {found}."],
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
        errors.append(f"`{filename}` has {len(unique)} usable row(s); at least {UPLOAD_MIN_ROWS} are needed.")
        return None, errors, warnings
    frame = pd.DataFrame(unique, columns=["prompt", "response"])
    frame.insert(0, "task", "upload")
    frame["split"] = split_by_hash(frame["prompt"].tolist())
    return frame, errors, warnings


@app.function
def format_prompt(prompt):
    """The one prompt template used for training, evaluation and generation."""
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
def offline_gpt2(tokenizer, config=None, seed=0):
    """A randomly initialised GPT2LMHeadModel (tiny by default) whose special ids match `tokenizer`."""
    config = config or tiny_gpt2_config(len(tokenizer))
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


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
        if not hub_reachable():
            raise ModelUnavailable(
                f"`{name}` is not in the local cache and huggingface.co cannot be reached (no network)."
            ) from None
        try:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as hub_error:
            raise ModelUnavailable(f"Downloading `{name}` failed: {str(hub_error).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token; padding never carries loss here
    return model, tokenizer


@app.function
def load_model_and_tokenizer(settings, dtype, corpus):
    """(model, tokenizer, name, warning): the chosen model, or the tiny offline GPT-2 with a warning."""
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
                "This GPU has no BF16 support (pre-Ampere): using FP16 with GradScaler instead.",
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
            bf16_supported=torch.cuda.is_bf16_supported(),
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

    def __init__(self, base_layer, r, alpha, dropout=0.0):
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
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device = base_layer.weight.device
        # Adapters live in FP32 (the optimizer's master copy) whatever the frozen base dtype is.
        self.lora_A = nn.Linear(in_features, r, bias=False, device=device, dtype=torch.float32)
        self.lora_B = nn.Linear(r, out_features, bias=False, device=device, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
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
        update = self.lora_B(self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype))))
        return result + (update * self.scaling).to(result.dtype)


@app.function
def matches_target(module_name, targets):
    """PEFT's rule: a module is targeted when its name equals a target or ends with '.' + target."""
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


@app.function
def inject_lora(model, target_modules, r, alpha, dropout=0.0):
    """Freeze the model, wrap every targeted Linear/Conv1D in a LoRALayer, and describe what was wrapped."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if matches_target(name, target_modules) and not isinstance(module, LoRALayer)
    ]
    if not targets:
        raise ValueError(
            f"No module matches {list(target_modules)}: the LoRA targets expect GPT-2's layer names."
        )
    rows = []
    for name, module in targets:
        parent_name, _, child_name = name.rpartition(".")
        wrapped = LoRALayer(module, r, alpha, dropout)
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
        elif ".wte." in name or ".wpe." in name:
            group = "embeddings (token + position; lm_head tied)"
        elif ".attn." in name:
            group = "attention (c_attn, c_proj)"
        elif ".mlp." in name:
            group = "MLP (c_fc, c_proj)"
        elif ".ln_" in name:
            group = "layer norms"
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
    """The GPT-2 config a run will use, known without downloading weights (None if unknown)."""
    if settings.model_source in GPT2_FAMILY:
        return GPT2Config(**GPT2_FAMILY[settings.model_source])
    if settings.model_source == "tiny":
        return tiny_gpt2_config(tokenizer_vocab or 1024)
    try:
        config = AutoConfig.from_pretrained(settings.local_dir, local_files_only=True)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, GPT2Config) else None


@app.function
def lora_plan(config, settings):
    """Parameter and memory arithmetic for LoRA vs full fine-tuning, from a model built on the meta device."""
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    _, base_total = parameter_counts(model)
    wrapped = inject_lora(model, settings.target_modules, settings.rank, settings.alpha)
    lora_total = int(wrapped["LoRA params"].sum())
    weight_bytes = {"fp16": 2, "bf16": 2, "fp32": 4}[settings.precision]
    # Full fine-tuning with AdamW: FP32 weights + grads + two moments = 16 bytes per parameter.
    full_bytes = 16 * base_total
    lora_bytes = weight_bytes * base_total + 16 * lora_total
    c_attn = wrapped[wrapped["module"].str.endswith("attn.c_attn")]
    return {
        "base_params": base_total,
        "lora_params": lora_total,
        "layers": len(wrapped),
        "trainable_pct": 100 * lora_total / (base_total + lora_total),
        "full_ft_bytes": full_bytes,
        "lora_bytes": lora_bytes,
        "c_attn_in": int(c_attn["in"].iloc[0]) if len(c_attn) else config.n_embd,
        "c_attn_out": int(c_attn["out"].iloc[0]) if len(c_attn) else 3 * config.n_embd,
        "n_layer": config.n_layer,
        "n_embd": config.n_embd,
    }


@app.function
def tokenize_examples(frame, tokenizer, max_length):
    """Token ids and labels per row: prompt tokens and padding get -100, so only the response is learned."""
    eos = tokenizer.eos_token_id
    examples, dropped = [], 0
    for prompt, response in zip(frame["prompt"], frame["response"], strict=True):
        prompt_ids = tokenizer(format_prompt(prompt), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos]
        input_ids = (prompt_ids + response_ids)[:max_length]
        labels = ([-100] * len(prompt_ids) + response_ids)[:max_length]
        if all(label == -100 for label in labels):
            dropped += 1  # the prompt alone fills max_length: nothing left to learn from
            continue
        examples.append({"input_ids": input_ids, "labels": labels})
    return examples, dropped


@app.function
def collate_batch(examples, pad_id):
    """Pad a list of examples to the longest in the batch (dynamic padding); padded labels are -100."""
    width = max(len(e["input_ids"]) for e in examples)
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
def make_loader(examples, batch_size, pad_id, shuffle, seed=0):
    """A DataLoader with dynamic padding; shuffling uses its own seeded generator (reproducible order)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=lambda batch: collate_batch(batch, pad_id),
    )


@app.function
def token_statistics(loader):
    """Tokens the batches hold: padded total, real (non-pad) tokens, and those that carry loss."""
    padded = real = loss = 0
    lengths = []
    for batch in loader:
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        loss += int((batch["labels"] != -100).sum())
        lengths.extend(batch["attention_mask"].sum(dim=1).tolist())
    return {
        "padded_tokens": padded,
        "real_tokens": real,
        "loss_tokens": loss,
        "loss_share_of_real": loss / max(real, 1),
        "loss_share_of_padded": loss / max(padded, 1),
        "padding_share": 1 - real / max(padded, 1),
        "mean_length": sum(lengths) / max(len(lengths), 1),
        "max_length": max(lengths, default=0),
    }


@app.function
def causal_lm_loss(logits, labels, reduction="mean"):
    """Next-token cross-entropy on positions whose (shifted) label is not -100, computed in FP32."""
    shifted_labels = labels[:, 1:]
    keep = shifted_labels != -100
    # Select the loss positions first: the FP32 copy then covers response tokens only, not the whole batch.
    selected_logits = logits[:, :-1, :][keep].float()
    return F.cross_entropy(selected_logits, shifted_labels[keep], reduction=reduction)


@app.function
def lr_factor(step, warmup_steps, total_steps, min_ratio=0.1):
    """Linear warm-up to 1, then cosine decay to `min_ratio` at the last step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


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
    scheduler: object = None
    scaler: object = None
    total_steps: int = 0
    memory_baseline: int = 0

    def release(self):
        """Drop every reference to model, optimizer and batches; report device memory before and after."""
        before = device_memory(self.device)
        self.model = self.optimizer = self.scheduler = self.scaler = None
        self.train_loader = self.eval_loader = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
        after = device_memory(self.device)
        return {
            "allocated_before": before["allocated"],
            "allocated_after": after["allocated"],
            "reserved_before": before["reserved"],
            "reserved_after": after["reserved"],
            "baseline": self.memory_baseline,
        }


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
        raise ValueError("No example fits max sequence length: raise it or shorten the prompts.")
    run.train_loader = make_loader(train_examples, s.batch_size, pad_id, shuffle=True, seed=s.seed)
    run.eval_loader = make_loader(eval_examples, s.batch_size, pad_id, shuffle=False)
    adapter_parameters = [p for p in run.model.parameters() if p.requires_grad]
    run.optimizer = torch.optim.AdamW(adapter_parameters, lr=s.learning_rate, weight_decay=0.0)
    run.total_steps = s.epochs * len(run.train_loader)
    warmup = round(s.warmup_ratio * run.total_steps)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(
        run.optimizer, lambda step: lr_factor(step, warmup, run.total_steps)
    )
    run.scaler = torch.amp.GradScaler(device=run.device.type, enabled=run.plan.use_grad_scaler)
    return {
        "train": token_statistics(run.train_loader),
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
def train_one_step(run, batch, adapter_parameters, max_grad_norm):
    """Forward under autocast → scaled backward → unscale → clip → step → update; returns step facts."""
    batch = {key: value.to(run.device, non_blocking=True) for key, value in batch.items()}
    with autocast_context(run):
        logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = causal_lm_loss(logits, batch["labels"])
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        return {"loss": loss_value, "finite": False}
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)  # gradients back to true scale before clipping
    grad_norm = torch.nn.utils.clip_grad_norm_(adapter_parameters, max_grad_norm).item()
    scale_before = run.scaler.get_scale() if run.scaler.is_enabled() else 1.0
    run.scaler.step(run.optimizer)  # skipped by the scaler when the unscaled gradients hold inf/NaN
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    skipped = run.scaler.is_enabled() and run.scaler.get_scale() < scale_before
    if not run.scaler.is_enabled() and not math.isfinite(grad_norm):
        return {"loss": loss_value, "finite": False}
    if not skipped:
        run.scheduler.step()
    return {
        "loss": loss_value,
        "finite": True,
        "grad_norm": grad_norm,
        "scale": scale_before,
        "skipped": skipped,
    }


@app.function
def train_steps(run, max_grad_norm=1.0, max_skipped_in_row=25):
    """Run every epoch, yielding one record per optimizer step and one per end-of-epoch evaluation."""
    adapter_parameters = [p for p in run.model.parameters() if p.requires_grad]
    step, skipped_in_row = 0, 0
    synchronize = torch.cuda.synchronize if run.device.type == "cuda" else (lambda *_: None)
    for epoch in range(run.settings.epochs):
        run.model.train()
        for batch in run.train_loader:
            real_tokens = int(batch["attention_mask"].sum())
            padded_tokens = batch["input_ids"].numel()
            lr = run.optimizer.param_groups[0]["lr"]
            out_of_memory = False
            started = time.perf_counter()
            try:
                facts = train_one_step(run, batch, adapter_parameters, max_grad_norm)
                synchronize(run.device)
            except torch.OutOfMemoryError:
                out_of_memory = True
            if out_of_memory:
                # The failed step's tensors died with its frame; hand the cached blocks back to the driver.
                run.optimizer.zero_grad(set_to_none=True)
                gc.collect()
                torch.cuda.empty_cache()
                raise TrainingStopped(
                    f"GPU out of memory at step {step + 1} (batch {run.settings.batch_size} × up to "
                    f"{run.settings.max_length} tokens).",
                    "Choose a smaller batch size or max sequence length and press Train again.",
                    step,
                )
            seconds = time.perf_counter() - started
            if not facts["finite"]:
                raise TrainingStopped(
                    f"The loss became {facts['loss']} at step {step + 1}: training stopped before it "
                    "could corrupt the adapter.",
                    "Lower the learning rate, use BF16 or FP32, or keep GradScaler on with FP16.",
                    step,
                )
            skipped_in_row = skipped_in_row + 1 if facts["skipped"] else 0
            if skipped_in_row >= max_skipped_in_row:
                raise TrainingStopped(
                    f"GradScaler skipped {skipped_in_row} steps in a row (gradients overflow even at scale "
                    f"{facts['scale']:.3g}).",
                    "Lower the learning rate or switch to BF16/FP32.",
                    step,
                )
            step += 1
            yield {
                "kind": "train",
                "step": step,
                "epoch": epoch + 1,
                "loss": facts["loss"],
                "lr": lr,
                "grad_norm": facts["grad_norm"],
                "loss_scale": facts["scale"],
                "skipped": facts["skipped"],
                "seconds": seconds,
                "real_tokens": real_tokens,
                "padded_tokens": padded_tokens,
                "tokens_per_s": real_tokens / seconds,
                "padded_tokens_per_s": padded_tokens / seconds,
                "memory_mib": device_memory(run.device)["allocated"] / 2**20,
            }
        yield {"kind": "eval", "step": step, "epoch": epoch + 1, **evaluate_loss(run)}


@app.function
@torch.no_grad()
def evaluate_loss(run):
    """Token-weighted mean loss and perplexity over the eval loader, in eval mode (no dropout)."""
    run.model.eval()
    total, count = 0.0, 0
    for batch in run.eval_loader:
        batch = {key: value.to(run.device) for key, value in batch.items()}
        with autocast_context(run):
            logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        total += causal_lm_loss(logits, batch["labels"], reduction="sum").item()
        count += int((batch["labels"][:, 1:] != -100).sum())
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
            tokenizer(format_prompt(p), add_special_tokens=False)["input_ids"]
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
            outputs.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return outputs


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
    scored["format_match"] = [
        bool(re.fullmatch(ANSWER_FORMATS.get(task, r".+"), normalize_answer(g)))
        for task, g in zip(scored["task"], generations, strict=True)
    ]
    return scored


@app.function
def evaluate_run(run, eval_frame, max_new_tokens):
    """Eval loss, perplexity and scored greedy generations for the held-out prompts."""
    metrics = evaluate_loss(run)
    generations = generate_greedy(run, eval_frame["prompt"].tolist(), max_new_tokens)
    scored = score_generations(eval_frame, generations)
    metrics.update(exact_match=scored["exact_match"].mean(), format_match=scored["format_match"].mean())
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

    batch = collate_batch(
        [
            {"input_ids": ids, "labels": ids}
            for ids in run.tokenizer([format_prompt(p) for p in prompts], add_special_tokens=False)[
                "input_ids"
            ]
        ],
        run.tokenizer.pad_token_id,
    )
    inputs = {
        "input_ids": batch["input_ids"].to(run.device),
        "attention_mask": batch["attention_mask"].to(run.device),
    }
    run.model.eval()
    ours = run.model(**inputs).logits.float()
    base = remove_lora(run.model)
    run.model = PeftModel.from_pretrained(base, str(folder)).to(run.device).eval()
    theirs = run.model(**inputs).logits.float()
    keep = inputs["attention_mask"].bool()
    return (ours[keep] - theirs[keep]).abs().max().item()


@app.function
def process_gpu_lock():
    """One lock per server process: each `marimo run` viewer re-runs the setup, so it lives in sys.modules."""
    holder = sys.modules.setdefault("llm_finetuning_dashboard_gpu_lock", types.ModuleType("gpu_lock"))
    return holder.__dict__.setdefault("lock", threading.Lock())


@app.function
@contextlib.contextmanager
def gpu_turn(on_wait=None):
    """Hold the process-wide GPU lock; call `on_wait()` first when another viewer holds it."""
    lock = process_gpu_lock()
    if not lock.acquire(blocking=False):
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@app.class_definition
class GpuSampler:
    """Background thread sampling NVML (utilization, memory, temperature, power) at `hz`; psutil without NVML."""

    def __init__(self, device=None, hz=10.0):
        self.interval, self.samples = 1.0 / hz, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpu-sampler")
        self.device = device or torch.device("cpu")
        self.source, self._nvml, self._handle = "psutil (CPU)", None, None
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
            }
        nvml, handle = self._nvml, self._handle
        util = nvml.nvmlDeviceGetUtilizationRates(handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        return {
            "util_pct": util.gpu,
            "memory_mib": memory.used / 2**20,
            "temperature_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
            "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
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
        return pd.DataFrame(
            list(self.samples), columns=["t", "util_pct", "memory_mib", "temperature_c", "power_w"]
        )


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
        x=alt.X("step:Q", title="optimizer step"),
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
            x=alt.X("step:Q", title="optimizer step"),
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
        var_name="count",
        value_name="tokens/s",
    )
    frame["count"] = frame["count"].map(
        {"tokens_per_s": "real tokens (no padding)", "padded_tokens_per_s": "all tokens (with padding)"}
    )
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="optimizer step"),
            y=alt.Y("tokens/s:Q"),
            color=alt.Color("count:N", title=None),
            tooltip=["count", "step", alt.Tooltip("tokens/s:Q", format=",.0f")],
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
    """Horizontal bars: parameters per group (log scale, so the small LoRA bar stays visible)."""
    return (
        alt.Chart(breakdown)
        .mark_bar()
        .encode(
            y=alt.Y("group:N", sort="-x", title=None),
            x=alt.X("parameters:Q", scale=alt.Scale(type="log"), title="parameters (log scale)"),
            color=alt.condition(
                alt.datum.group == "LoRA adapters (trainable)", alt.value("#e6550d"), alt.value("#6baed6")
            ),
            tooltip=[
                "group",
                alt.Tooltip("parameters:Q", format=","),
                alt.Tooltip("share %:Q", format=".3f"),
            ],
        )
        .properties(
            title="Where the parameters are (each tensor counted once)", width="container", height=170
        )
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
