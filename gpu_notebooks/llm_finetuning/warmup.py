"""The start-up warm-up: the demo's kernels run once per server process so the first Train is fast."""

from __future__ import annotations

import gc
import itertools
import tempfile
import threading
import time
import traceback
from dataclasses import replace

import torch
from transformers import GPT2Config

from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.llm_finetuning.adapter import merge_check, peft_reload_check, save_adapter
from gpu_notebooks.llm_finetuning.evaluation import evaluate_run
from gpu_notebooks.llm_finetuning.lora import inject_lora
from gpu_notebooks.llm_finetuning.models import build_offline_tokenizer, offline_gpt2, tokenizer_corpus
from gpu_notebooks.llm_finetuning.precision import bf16_native, resolve_precision
from gpu_notebooks.llm_finetuning.settings import TrainSettings, with_model_defaults
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.tokens import answer_token_budget
from gpu_notebooks.llm_finetuning.training import FineTuneRun, prepare_training, train_steps
from gpu_notebooks.registry import process_gpu_lock_guard, process_registry


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


def warm_up_state():
    """This process's warm-up: {"status": "running" | "done" | "failed", "seconds", "error"}; {} if none."""
    return process_registry().setdefault("warm_up", {})


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
            with gpu_turn(wait=False) as lease:
                held = bool(lease)  # read now: a lease is false again once given back
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
