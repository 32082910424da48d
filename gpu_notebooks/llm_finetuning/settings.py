"""A training run's settings: the form's choices, their defaults per model."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpu_notebooks.llm_finetuning.models import TINY_LLAMA_NAME, TINY_MODEL_NAME
from gpu_notebooks.llm_finetuning.tasks import builtin_examples

ALL_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
SPEED_CHOICES = {
    "auto (fast; compile when it pays)": "auto",
    "fast (eager)": "fast",
    "fast + torch.compile": "compile",
    "plain (reference loop)": "plain",
}
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
DATA_CHOICES = {
    f"built-in ({len(builtin_examples())} examples)": "builtin",
    "upload": "upload",
    "hub dataset": "hub",
}


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
    server_paths: bool = True  # may a folder on the server be typed? (see server_paths_allowed)
    local_refused: bool = False  # a model folder was chosen where folders are off: the tiny GPT-2 runs


# Why a `marimo run` viewer cannot type a folder on the server, and how the person who starts it allows it.
SERVER_PATHS_OFF = (
    "Folders on the server are off for viewers of this read-only app (`marimo run`): a typed path would let "
    "any viewer read that server's files. Open the app with `marimo edit`, or start it with "
    "`marimo run llm_finetuning_dashboard.py -- --allow-server-paths` on a machine only you can reach."
)


def server_paths_allowed(mode, cli):
    """Whether this session may load a model or dataset from a folder it types (never a `marimo run` viewer's
    by default: a path is a way to read the server's files)."""
    return mode != "run" or "allow-server-paths" in cli or "allow_server_paths" in cli


def settings_from_form(value, smoke=False, smoke_model="tiny", server_paths=True):
    """TrainSettings from the form's value (None before the first submit; smoke → tiny model, two epochs).

    Without `server_paths` a typed folder is dropped here, so nothing downstream looks at that path, and a
    model folder chosen anyway gives way to the tiny offline GPT-2 (the title, plan and estimates follow it).
    """
    if smoke:  # a CI check that every step runs, not a demo of learning: the tiny model, two epochs
        return TrainSettings(model_source=smoke_model, epochs=2)
    if not value:
        return TrainSettings(server_paths=server_paths)
    refused = value["model"] == "local" and not server_paths
    return TrainSettings(
        server_paths=server_paths,
        local_refused=refused,
        model_source="tiny" if refused else value["model"],
        local_dir=value["local_dir"].strip() if server_paths else "",
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
