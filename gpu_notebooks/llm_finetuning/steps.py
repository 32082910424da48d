"""The seven steps a Train click runs, each freeing what it held when it fails or is interrupted."""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from dataclasses import replace

import marimo as mo
import pandas as pd
import torch

from gpu_notebooks.gpu.gpm import GpmSampler
from gpu_notebooks.gpu.lock import GpuLease
from gpu_notebooks.gpu.nvml import energy_joules
from gpu_notebooks.llm_finetuning.adapter import (
    merge_check,
    peft_reload_check,
    save_adapter,
    save_base_recipe,
)
from gpu_notebooks.llm_finetuning.evaluation import evaluate_run
from gpu_notebooks.llm_finetuning.loading import load_model_and_tokenizer
from gpu_notebooks.llm_finetuning.lora import NoTargetModules, inject_lora
from gpu_notebooks.llm_finetuning.models import architecture_targets, tokenizer_corpus
from gpu_notebooks.llm_finetuning.precision import set_seed
from gpu_notebooks.llm_finetuning.settings import with_model_defaults
from gpu_notebooks.llm_finetuning.telemetry import (
    device_energy_mj,
    device_sampler,
    mfu,
    nvml_device_index,
    training_telemetry_plan,
)
from gpu_notebooks.llm_finetuning.tokens import NoExampleFits
from gpu_notebooks.llm_finetuning.training import (
    FineTuneRun,
    TrainingStopped,
    catch_out_of_memory,
    device_memory,
    prepare_training,
    train_steps,
)
from gpu_notebooks.llm_finetuning.warmup import warm_up_state
from gpu_notebooks.session import session_closed

# How often step 5 looks whether its viewer's session is gone (a peek at marimo's queue: cheap, not free).
SESSION_CHECK_S = 0.5
CLOSED_TAB = "The viewer's session closed (the tab was gone), so nobody would see the rest."


def load_step(settings, dataset, device, plan, on_wait=None, loader=None, on_turn=None):
    """Step 2: take this click's GPU lease, seed, read the memory baseline, load model + tokenizer onto the device.

    Returns (run, facts) with facts `waited_s`, `load_warning` and `out_of_memory` (then the run is already
    released). The lease stays with the run until `run.release()`; `on_wait()` is called if another run holds
    it, `on_turn()` once this run has it; `loader` replaces the app's own `load_model_and_tokenizer` (the
    benchmarks load GPT-2's shape with random weights).
    """
    run = FineTuneRun(settings=settings, device=device, plan=plan, lease=GpuLease())
    run.lease.acquire(on_wait=on_wait)
    if on_turn is not None:
        on_turn()
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


def closed_tab_check():
    """train_steps' `should_stop`: a sentence once this viewer's session is gone (a closed tab), looked at
    most every SESSION_CHECK_S; else None. The run then stops, frees its memory and gives the lease back."""
    checked = time.perf_counter()

    def should_stop():
        nonlocal checked
        if time.perf_counter() - checked < SESSION_CHECK_S:
            return None
        checked = time.perf_counter()
        return CLOSED_TAB if session_closed() else None

    return should_stop


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
        out["gpm"], energy_start = gpm, device_energy_mj(run.device)
        started = time.perf_counter()
        with device_sampler(run.device) as sampler:
            out["sampler"] = sampler
            if gpm is not None:
                gpm.start()
            try:
                for record in train_steps(run, should_stop=closed_tab_check()):
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
        out["energy_j"] = energy_joules(energy_start, device_energy_mj(run.device))
        out["samples"] = sampler.frame()
    if out["stop_reason"] is not None:
        run.release()  # steps 6 and 7 will not run: give the memory and the lease back now
    return out


def evaluate_step(run, eval_frame, answer_tokens):
    """Step 6: the "after" evaluation → (metrics, generations, None), or (None, None, stop) with the run released.

    A session closed since training ended (the tab went) stops here too: nobody would see the evaluation.
    """
    if session_closed():
        run.release()
        return (
            None,
            None,
            TrainingStopped(f"{CLOSED_TAB} Step 6 did not run.", "Press Train to start again.", None),
        )
    with release_on_interrupt(run):
        try:
            after, generations = evaluate_run(run, eval_frame, answer_tokens)
            return after, generations, None
        except TrainingStopped as stop:
            traceback.clear_frames(stop.__traceback__)  # the frames hold the failed evaluation's tensors
            stopped = stop.with_traceback(None)
    run.release()
    return None, None, stopped


def save_step(run, folder, prompts):
    """Step 7: save the adapter, check merge and PEFT reload, read the peak, release the run and its lease.

    Returns saved_files, merge_max_diff, peft_max_diff, peak_memory, release_report and `failure` (a
    sentence, or None). Caught: disk errors (OSError), out of memory, and PEFT's documented ValueError for
    a config it cannot read; anything else is a bug and raises (the run is still released). A session closed
    since step 6 (the tab went) saves nothing: the run is released at once.
    """
    out = {"saved_files": {}, "merge_max_diff": math.nan, "peft_max_diff": math.nan, "failure": None}
    if session_closed():
        out["failure"] = "the viewer's session closed (the tab was gone), so the adapter was not saved"
        out["peak_memory"], out["release_report"] = math.nan, run.release()
        return out
    with release_on_interrupt(run):
        try:
            out["saved_files"] = save_adapter(run.model, folder, run.settings, run.model_name)
            out["saved_files"] = save_base_recipe(run, folder)  # so the Try-it section can rebuild the base
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


def free_failed_run(run, error):
    """Release a run after `error`: first clear the frames its traceback holds (with the failed step's
    activations and batch), or the memory they pin would survive the release."""
    traceback.clear_frames(error.__traceback__)
    return run.release()


def step_done(number, title, seconds, details, kind="success"):
    """A step's completion callout: what it did and how long it took."""
    return mo.callout(
        mo.md(f"**Step {number} complete — {title}** ({seconds:.2f} s)\n\n{details}"), kind=kind
    )


def seed_note(device, seed):
    """Step 1's word on the seed: set in step 2, once this run holds the GPU (on a CPU: has its turn)."""
    holds = "this run holds the GPU" if device.type == "cuda" else "this run has its turn on this machine"
    return f"seed **{seed}** (set in step 2, once {holds})"


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


def show_waiting(device, progress=None):
    """Show this viewer the waiting message (step 2 replaces it once the run holds the GPU), and tell the status
    line beside Train (`progress`, a RunProgress) that the run waits for its turn."""
    mo.output.append(mo.callout(mo.md(waiting_message(device)), kind="warn"))
    if progress is not None:
        progress.wait_for_turn(device.type == "cuda")
