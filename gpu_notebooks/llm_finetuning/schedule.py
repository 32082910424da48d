"""The learning-rate schedule: linear warm-up, then cosine decay to a tenth."""

from __future__ import annotations

import math

import torch


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


def device_schedule(run, warmup):
    """The warm-up/cosine learning rates as a tensor on the device, indexed by the count of applied steps."""
    base = run.settings.learning_rate
    rates = [lr_at(step, base, warmup, run.total_steps) for step in range(max(run.total_steps, 1))]
    return torch.tensor(rates, dtype=torch.float32, device=run.device)
