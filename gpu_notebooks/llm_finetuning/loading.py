"""Loading a model: the hub (whether it answers, what is cached) or the tiny offline models."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import marimo as mo
from transformers import AutoModelForCausalLM, AutoTokenizer

from gpu_notebooks.llm_finetuning.models import (
    LLAMA_FAMILY,
    TINY_LLAMA_NAME,
    TINY_MODEL_NAME,
    architecture,
    build_offline_tokenizer,
    offline_gpt2,
    offline_llama,
)
from gpu_notebooks.llm_finetuning.settings import PRECISION_CHOICES, SERVER_PATHS_OFF
from gpu_notebooks.registry import process_gpu_lock_guard, process_registry


class ModelUnavailable(RuntimeError):
    """The requested model could not be loaded (no network, not cached, bad folder)."""


def hub_reachable(host="huggingface.co", timeout=2.0):
    """True when a TCP connection to the model hub opens within `timeout` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


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


def model_cached(name):
    """True when the hub model `name` has a config.json in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def default_choices(cuda_available):
    """The form's default model and precision: GPT-2 in FP16 on a GPU, the tiny offline GPT-2 in FP32 on a CPU."""
    if cuda_available:
        return {"model": "gpt2 (124M)", "precision": next(iter(PRECISION_CHOICES))}  # auto
    return {"model": "tiny offline GPT-2 (no download)", "precision": "FP32"}


def model_availability_note(settings):
    """Beside the model picker, before Train: will the chosen hub model load, or fall back to the tiny one?"""
    if settings.local_refused:
        return mo.callout(
            mo.md(
                "**A local model folder cannot be used here: Train uses the tiny offline GPT-2 instead.** "
                + SERVER_PATHS_OFF
            ),
            kind="warn",
        )
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


def is_gated_error(error):
    """True when huggingface_hub's GatedRepoError is in the error's cause chain (no token, or no access)."""
    from huggingface_hub.errors import GatedRepoError

    while error is not None:
        if isinstance(error, GatedRepoError):
            return True
        error = error.__cause__ or error.__context__
    return False


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
    else:  # chosen, or put in place of a model folder a `marimo run` viewer may not use
        warning = (
            f"{SERVER_PATHS_OFF} The tiny offline GPT-2 runs instead." if settings.local_refused else None
        )
    tokenizer = build_offline_tokenizer(corpus)
    model = offline_gpt2(tokenizer, seed=settings.seed).to(dtype)
    return model, tokenizer, TINY_MODEL_NAME, warning
