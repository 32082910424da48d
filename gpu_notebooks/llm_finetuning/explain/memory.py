"""Learner texts about memory: where it goes, QLoRA, what a reading covers, utilization."""

from __future__ import annotations

from gpu_notebooks.llm_finetuning.estimates import (
    activation_values_per_token,
    memory_levers,
    qlora_bytes,
    training_memory,
)
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes, fmt_count
from gpu_notebooks.llm_finetuning.precision import dtype_name


def memory_scope_note(run):
    """What the run's CUDA memory figures include: they are per process, read while this run holds the lease."""
    if run.device.type != "cuda":
        return ""
    return (
        "CUDA memory figures are this server process's torch allocator, read while this run holds the GPU "
        f"lease (no other run of the process allocates meanwhile); they include "
        f"{fmt_bytes(run.memory_baseline)} the process already held before this run (other sessions, warm-up)."
    )


def utilization_probe_text(rows, gpm_reason=""):
    """The "what utilization hides" callout, written from the probe's measured rows (what each metric said)."""
    tiny, matmul, copy = rows

    def pct(value):
        return "n/a" if value is None else f"{value:.0f}%"

    if tiny["classic_util_pct"] is None:
        return "NVML gave no utilization readings here, so there is nothing to compare."
    if tiny["sm_active_pct"] is None:
        return (
            f"GPM is not available here ({gpm_reason or 'no reading'}). Classic utilization alone read "
            f"{pct(tiny['classic_util_pct'])}, {pct(matmul['classic_util_pct'])} and {pct(copy['classic_util_pct'])} "
            "for tiny kernels, a matmul and a copy: it only says *some* kernel was running, so it cannot tell "
            "a launch-bound stream from a compute- or memory-bound one."
        )
    gap = tiny["classic_util_pct"] - tiny["sm_active_pct"]
    lines = [
        f"- **Tiny kernels:** classic utilization read **{pct(tiny['classic_util_pct'])}**, GPM's SM activity "
        f"**{pct(tiny['sm_active_pct'])}**. "
        + (
            f"Utilization counts the time *any* kernel runs, however small: {gap:.0f} points of it were launches "
            "with idle SMs — launch-bound (overhead-bound)."
            if gap >= 10
            else f"Here the two agreed within {abs(gap):.0f} points."
        ),
        f"- **Matmul:** SM activity **{pct(matmul['sm_active_pct'])}**, Tensor Core activity "
        f"**{pct(matmul['tensor_active_pct'])}** (classic utilization {pct(matmul['classic_util_pct'])}): "
        + (
            "the Tensor Cores did the work — compute-bound."
            if (matmul["tensor_active_pct"] or 0) >= 50
            else "the Tensor Cores were busy less than half the time: the card was not compute-bound here."
        ),
        f"- **Copy:** DRAM bandwidth **{pct(copy['dram_bw_pct'])}** with Tensor Core activity "
        f"{pct(copy['tensor_active_pct'])} (classic utilization {pct(copy['classic_util_pct'])}): "
        + (
            "memory-bound — busy by every classic measure, yet no arithmetic to speak of."
            if (copy["dram_bw_pct"] or 0) >= 50
            else "DRAM was busy less than half the time."
        ),
    ]
    return (
        "Measured just now on this GPU (medians over each workload):\n\n"
        + "\n".join(lines)
        + "\n\nRead step 5's "
        "GPM cards the same way: high utilization with low SM activity is launch-bound, high DRAM with low "
        "Tensor Core activity memory-bound, high Tensor Core activity compute-bound."
    )


def utilization_reference_text():
    """The probe's reference figures, labelled with card, date and source."""
    return (
        "For reference, measured on an NVIDIA H200, 2026-12-01 (`bench/device_probe_telemetry.py`, "
        "notes/BENCHMARKS.md): tiny kernels 28% utilization with 0% SM activity; a BF16 matmul 96.4% SM and "
        "93.5% Tensor Core activity; a device-to-device copy 88.4% DRAM bandwidth."
    )


def training_memory_text(facts, settings, plan, speed, tokens, loss_rows, measured=None):
    """Where one training step's memory goes, estimated from the config; after a CUDA run, the measured peak.

    `measured`: None before a run; after one {"device_type", "peak", "baseline"} (peak None on a CPU).
    """
    parts = training_memory(facts, plan, speed, tokens, loss_rows)
    total = sum(parts.values())
    rows = "\n".join(f"| {name} | {fmt_bytes(n)} | {100 * n / total:.0f}% |" for name, n in parts.items())
    levers = memory_levers(facts, parts, plan, speed, tokens, settings.max_length, settings.batch_size)
    if measured is None:
        scope = f"batch {settings.batch_size} × max length {settings.max_length}, the most a batch can hold"
        compared = "After a run on a CUDA GPU, step 5 puts torch's measured peak beside this estimate."
    elif measured.get("peak"):
        scope = "the largest batch this run built"
        added = max(measured["peak"] - measured["baseline"], 1)
        compared = (
            f"**Measured** (torch `max_memory_allocated`, this process from step 2 on, the evaluation before "
            f"training included): **{fmt_bytes(measured['peak'])}**, of which {fmt_bytes(measured['baseline'])} the "
            f"process held before this run; the estimate is **{total / added:.2f}×** what this run added. The gap "
            "is what the estimate leaves out: norm outputs autocast keeps in FP32, dropout masks, the "
            "evaluation's own tensors, the allocator's rounding, and tensors that briefly overlap."
        )
    else:
        scope = "the largest batch this run built"
        compared = "Not measured: torch's allocator statistics exist on CUDA only; this run was on a CPU."
    return f"""
_Estimated from the model's config for **{tokens:,} token positions per batch** ({scope}), {loss_rows:,} of them
carrying loss, in {plan.name}, on the **{speed.name}** path. Estimates, not measurements._

| part | bytes | share |
|---|---|---|
{rows}
| **total (estimated)** | **{fmt_bytes(total)}** | |

LoRA shrinks the optimizer's part to the adapters ({fmt_bytes(16 * facts["lora_params"])} for weights, gradients and
AdamW's two moments together); the activations grow with batch × length × layers × width and stay. Per layer
and token the backward needs about {activation_values_per_token(facts["shape"], speed.fast_gelu):,} values
(`activation_values_per_token` lists them).

{compared}

- **Gradient checkpointing** (`torch.utils.checkpoint`; not offered by this app) keeps only each block's input
  and recomputes the block in backward: activations {fmt_bytes(levers["activations"])} →
  **{fmt_bytes(levers["checkpointed_activations"])}**, for one extra forward pass, about
  **{100 * levers["extra_flops_share"]:.0f}% more FLOPs** per step here (forward ÷ forward + backward with a frozen
  base, from `lora_flops_per_token`; full fine-tuning pays about a third, since its backward also computes weight
  gradients).
- **Gradient accumulation** (not offered either) runs the batch of {settings.batch_size} as
  {levers["accumulation_steps"]} micro-batches of {levers["micro_batch"]} and steps the optimizer once: the same
  update, activations and logits {fmt_bytes(parts["activations kept for backward"] + parts["logits and loss"])} →
  **{fmt_bytes(levers["accumulated_activations"])}**, the same FLOPs, {levers["accumulation_steps"]} smaller
  passes in a row per step (smaller matmuls use the GPU less well).
"""


def qlora_text(facts, plan, model_name, estimated_total):
    """QLoRA as the next memory lever: a pointer, with this model's base-weight bytes now and in 4-bit."""
    now, nf4 = qlora_bytes(facts, plan.param_dtype.itemsize)
    return f"""
**QLoRA** (Dettmers et al. 2023, arXiv:2305.14314) keeps the frozen base in **4-bit NormalFloat (NF4)**,
quantises the quantisation constants too (double quantization), and pages optimizer state to CPU memory at
spikes; gradients flow through the 4-bit base into 16-bit LoRA adapters. **This app does not implement it**
(in the PEFT ecosystem it takes bitsandbytes and a CUDA GPU).

For `{model_name}` the frozen base takes **{fmt_bytes(now)}** stored in {dtype_name(plan.param_dtype)}. With its
{fmt_count(facts["linear_params"])} linear-layer weights in NF4 (4 bits + 0.127 bits of constants each) and the
rest (embeddings, norms, biases) in 16-bit it would take **{fmt_bytes(nf4)}**, {now / nf4:.1f}× less
(arithmetic, `qlora_bytes`). That is {100 * (now - nf4) / max(estimated_total, 1):.0f}% of this step's estimated
{fmt_bytes(estimated_total)} (the memory section above): QLoRA pays when the base model is what does not fit;
when activations dominate, checkpointing, a smaller batch or a shorter length are the levers.
"""
