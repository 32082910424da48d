"""The fast training path's plan: which speed-ups apply, and when compiling pays (measured)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from gpu_notebooks.llm_finetuning.formatting import fmt_count
from gpu_notebooks.llm_finetuning.loss import CausalLMBody, loss_chunk_fusable
from gpu_notebooks.llm_finetuning.models import architecture

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


def compile_break_even(eager_ms, compiled_ms, first_step_s, tokens_per_step):
    """(steps, tokens) after which a compiled run has caught up with the eager one.

    n eager steps take n·eager; compiled, the first step (compile included) then n−1 compiled steps.
    """
    saved_ms = eager_ms - compiled_ms
    if saved_ms <= 0:
        return math.inf, math.inf
    steps = math.ceil((first_step_s * 1000 - compiled_ms) / saved_ms)
    return steps, steps * tokens_per_step


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


def release_compiled_graphs():
    """Free the CUDA-graph memory pool that torch.compile's cudagraph trees keep for *this* thread only.

    Not `torch._dynamo.reset()`: that clears the compile caches of every viewer's session in the process.
    Dynamo's per-code caches stay (they hold guards, not this run's tensors); cudagraph trees live in
    thread-local storage, and each marimo session runs its cells on its own thread.
    """
    with contextlib.suppress(ImportError):
        from torch._inductor.cudagraph_trees import reset_cudagraph_trees

        reset_cudagraph_trees()
