"""Precision: FP16 + GradScaler or BF16 by what the card has natively, the device and the seed."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch

from gpu_notebooks.llm_finetuning.models import planned_architecture

TORCH_VERSION = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])


@dataclass(frozen=True)
class PrecisionPlan:
    """What actually runs for a requested precision on a device, and why."""

    requested: str
    name: str
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    use_grad_scaler: bool
    note: str


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


def choose_device():
    """The CUDA device when one is usable, else the CPU."""
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )


def set_seed(seed):
    """Seed Python's and torch's generators (every CUDA device included)."""
    random.seed(seed)
    torch.manual_seed(seed)


def autocast_context(run):
    """torch.amp.autocast for the run's plan (a no-op context in FP32)."""
    dtype = run.plan.autocast_dtype
    return torch.amp.autocast(
        device_type=run.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
    )


def bf16_native(device):
    """True on GPUs with native BF16 Tensor Cores (compute capability 8.0, Ampere, and newer).

    Not torch.cuda.is_bf16_supported(): it also says True on Volta/Turing, where BF16 is emulated and slow.
    """
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


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


def precision_callout_kind(plan):
    """Step 1's colour: a warning when the precision that runs is not the one requested."""
    return "warn" if is_fallback(plan) else "success"


def is_fallback(plan):
    """True when the precision that runs is not the one requested."""
    return plan.requested.upper() not in plan.name.upper()


def dtype_name(dtype):
    """torch.float16 → 'FP16' (BF16, FP32 likewise)."""
    return {torch.float16: "FP16", torch.bfloat16: "BF16", torch.float32: "FP32"}.get(dtype, str(dtype))
