"""The adapter in PEFT's format: save, zip, reload through PEFT, merge check, the kept folders."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import time
import warnings
import zipfile
from pathlib import Path

import marimo as mo
import torch
from safetensors.torch import save_file

from gpu_notebooks.first_imports import import_lock
from gpu_notebooks.llm_finetuning.lora import lora_layers, remove_lora, set_merged
from gpu_notebooks.llm_finetuning.models import TINY_LLAMA_NAME, TINY_MODEL_NAME
from gpu_notebooks.llm_finetuning.tokens import prompt_batch
from gpu_notebooks.registry import process_gpu_lock_guard, process_registry

# Beside the adapter: how to rebuild its base (the Try-it section reads it).
BASE_RECIPE_FILE = "base_model.json"
ADAPTERS_KEPT = 5  # adapter folders one server process keeps; older ones it wrote are deleted
ADAPTERS_ON_DISK = 20  # adapter folders the output folder keeps across restarts (older ones are deleted)
OUTPUT_ROOT = Path(
    os.environ.get("LLM_DASHBOARD_OUTPUT_DIR") or (mo.notebook_dir() or Path.cwd()) / "outputs" / "adapters"
)


def sanitize_name(text):
    """A folder-safe name: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "adapter"


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


def save_base_recipe(run, folder):
    """Write base_model.json (base name, seed, dtype, rank) and, for an offline model, the tokenizer it trained in
    memory, so the folder alone rebuilds the base (hub models come from the cache); returns the folder's files."""
    folder = Path(folder)
    offline = run.model_name in (TINY_MODEL_NAME, TINY_LLAMA_NAME)
    if offline:  # its vocabulary was learned from this run's data: the only copy is the run's tokenizer
        run.tokenizer.save_pretrained(str(folder))
    recipe = {
        "model_name": run.model_name,
        "offline": offline,
        "local": run.settings.model_source == "local" and not offline,
        "seed": run.settings.seed,
        "dtype": str(run.plan.param_dtype).removeprefix("torch."),
        "rank": run.settings.rank,
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (folder / BASE_RECIPE_FILE).write_text(json.dumps(recipe, indent=2))
    return {path.name: path.stat().st_size for path in sorted(folder.rglob("*")) if path.is_file()}


def zip_folder(folder):
    """The folder's files as zip bytes (for mo.download)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()


@torch.no_grad()
def peft_reload_check(run, folder, prompts):
    """Reload the saved adapter with PEFT onto the same base weights; max |Δ logits| vs our LoRA model."""
    with import_lock():  # imported here, under the lock of first imports: only step 7 needs PEFT itself
        from peft import PeftModel

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


def adapter_folder_for(run):
    """A new folder name under OUTPUT_ROOT for this run's adapter (model, rank, time, a random tag)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{run.model_name}-r{run.settings.rank}-{stamp}-{secrets.token_hex(3)}"  # unique across processes
    return OUTPUT_ROOT / sanitize_name(name)


def keep_recent_adapters(folder, keep=ADAPTERS_KEPT, owner=None):
    """Remember `folder` as written by this process (by `owner`: the session that trained it, or None) and
    delete the oldest beyond the last `keep` it wrote.

    Only folders this server process created are ever deleted; returns the ones removed.
    """
    import shutil

    with process_gpu_lock_guard():
        written = process_registry().setdefault("adapter_folders", [])
        owners = process_registry().setdefault("adapter_owners", {})
        written.append(Path(folder))
        owners[Path(folder).name] = owner
        removed, written[:] = written[:-keep], written[-keep:]
        for old in removed:
            owners.pop(old.name, None)
    for old in removed:
        shutil.rmtree(old, ignore_errors=True)
    return removed + prune_adapter_folders(Path(folder).parent, keep=ADAPTERS_ON_DISK)


def prune_adapter_folders(root, keep=ADAPTERS_ON_DISK):
    """Delete the oldest adapter folders under `root` beyond the newest `keep` (by time written), so runs over
    many server restarts do not fill the disk. Only folders this app writes (PEFT's config beside our base
    recipe) are touched; returns the ones removed."""
    import shutil

    ours = [
        path
        for path in Path(root).iterdir()
        if path.is_dir() and (path / BASE_RECIPE_FILE).is_file() and (path / "adapter_config.json").is_file()
    ]
    ours.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    for old in ours[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return ours[keep:]


def project_path(path):
    """`path` as a viewer may see it: relative to the project folder, else only its last two parts."""
    path = Path(path).resolve()
    root = Path(mo.notebook_dir() or Path.cwd()).resolve()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(Path(path.parent.name) / path.name)
