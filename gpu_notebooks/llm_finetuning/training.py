"""The training loop: one step (plain or fast), the run's state, out-of-memory and stop handling."""

from __future__ import annotations

import gc
import math
import time
import traceback
from dataclasses import dataclass

import torch
from torch import nn

from gpu_notebooks.llm_finetuning.loss import batch_loss, to_device
from gpu_notebooks.llm_finetuning.precision import TORCH_VERSION, PrecisionPlan, autocast_context
from gpu_notebooks.llm_finetuning.schedule import device_schedule, lr_at
from gpu_notebooks.llm_finetuning.settings import TrainSettings
from gpu_notebooks.llm_finetuning.speed import (
    SpeedPlan,
    apply_speed_plan,
    choose_speed_plan,
    release_compiled_graphs,
)
from gpu_notebooks.llm_finetuning.tokens import (
    NoExampleFits,
    make_loader,
    token_statistics,
    tokenize_examples,
)


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


def device_memory(device):
    """Bytes the torch caching allocator has allocated and reserved on `device` (zeros on CPU)."""
    if device.type != "cuda":
        return {"allocated": 0, "reserved": 0, "peak": 0}
    return {
        "allocated": torch.cuda.memory_allocated(device),
        "reserved": torch.cuda.memory_reserved(device),
        "peak": torch.cuda.max_memory_allocated(device),
    }


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


class TrainingStopped(RuntimeError):
    """Training stopped early on purpose (non-finite loss, collapsed loss scale, out of memory)."""

    def __init__(self, reason, advice, step):
        super().__init__(f"{reason} {advice}")
        self.reason, self.advice, self.step = reason, advice, step


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


def out_of_memory_stop(reason, step):
    """The stop after a torch out-of-memory error, called outside its except block (which would keep the
    failed frames alive): hand the allocator's cached blocks back to the driver and say what to change."""
    gc.collect()
    torch.cuda.empty_cache()
    return TrainingStopped(
        reason, "Choose a smaller batch size or max sequence length and press Train again.", step
    )


def train_one_step(run, batch, adapter_parameters, max_grad_norm):
    """One optimizer step of the run's plan: `fast_train_step` or `plain_train_step`.

    Both return the same step record, a 5-vector [loss, grad norm, loss scale, skipped, learning rate]:
    on the host for the plain step, still on the device for the fast one (`train_steps` reads it back).
    """
    step = fast_train_step if run.speed is not None and run.speed.deferred else plain_train_step
    return step(run, batch, adapter_parameters, max_grad_norm)


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


def step_record(loss, grad_norm, scale, skipped, lr):
    """The record both step functions return: [loss, grad norm, loss scale, skipped (0/1), lr] on the host."""
    return torch.tensor([loss, grad_norm, scale, float(skipped), lr], dtype=torch.float64)


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


def train_steps(run, max_grad_norm=1.0, max_skipped_in_row=25, should_stop=None):
    """THE training loop: every epoch, one record per optimizer step and one per end-of-epoch evaluation.

    `should_stop()` is asked after each group of steps is read back (every step on the plain path): a
    sentence (why) stops training there with TrainingStopped, every applied step recorded and counted.

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
            why = should_stop() if should_stop is not None else None
            if why:
                raise TrainingStopped(
                    f"{why} Training stopped after step {step}.", "Press Train to start again.", step
                )
            started = time.perf_counter()
        # --- end of epoch: evaluation on the held-out split ---
        metrics, out_of_memory = catch_out_of_memory(evaluate_loss, run)
        if out_of_memory:
            raise out_of_memory_stop(f"GPU out of memory while evaluating after epoch {epoch + 1}.", step)
        yield {"kind": "eval", "step": step, "epoch": epoch + 1, **metrics}


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
