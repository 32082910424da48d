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


# The probe's reference run, as recorded in notes/BENCHMARKS.md ("GPU telemetry: classic utilization against
# NVML GPM"): the card and date every reference figure is labelled with, and the medians of the three workloads
# this app's probe runs (tests/test_llm_probe.py reads them back from the notes).
UTILIZATION_REFERENCE = {
    "card": "NVIDIA H200",
    "date": "2026-12-01",
    "source": "`bench/device_probe_telemetry.py`, notes/BENCHMARKS.md",
    "rows": [
        {
            "workload": "a stream of tiny kernels (1 element each)",
            "classic_util_pct": 28.0,
            "sm_active_pct": 0.0,
            "tensor_active_pct": 0.0,
            "dram_bw_pct": 0.0,
        },
        {
            "workload": "BF16 matmul 8,192 × 8,192",
            "classic_util_pct": 100.0,
            "sm_active_pct": 96.4,
            "tensor_active_pct": 93.5,
            "dram_bw_pct": 16.2,
        },
        {
            "workload": "device-to-device copy of 1.00 GiB",
            "classic_util_pct": 100.0,
            "sm_active_pct": 98.7,
            "tensor_active_pct": 0.0,
            "dram_bw_pct": 88.4,
        },
    ],
}
PROBE_COLUMNS = {
    "workload": "workload",
    "classic_util_pct": "classic utilization %",
    "sm_active_pct": "SM active % (GPM)",
    "tensor_active_pct": "Tensor Core active % (GPM)",
    "dram_bw_pct": "DRAM bandwidth % (GPM)",
}


def reference_label(reference=UTILIZATION_REFERENCE):
    """Where the reference figures come from: 'measured on an NVIDIA H200 on 2026-12-01'."""
    return f"measured on an {reference['card']} on {reference['date']}"


def utilization_section_text(cuda_available, reference=UTILIZATION_REFERENCE):
    """The section's heading and what the probe does; the heading says whose figures the section shows."""
    whose = "measured on this GPU" if cuda_available else reference_label(reference)
    return f"""
## What GPU utilization hides — {whose}

NVML's classic *utilization* is the share of time **any** kernel was running, however little of the GPU
it used. NVML's GPM counters (Hopper and newer) say what the SMs, Tensor Cores and memory really did.
On a CUDA GPU the button runs three workloads for about 1.5 s each — a stream of one-element kernels, a large matmul,
a device-to-device copy — and samples both while each runs.
"""


def utilization_table_text(rows, label):
    """A probe's rows (what the app measured, or the reference) as a markdown table under its bold label."""
    header = "| " + " | ".join(PROBE_COLUMNS.values()) + " |\n|" + "---|" * len(PROBE_COLUMNS)

    def cell(value):
        return "n/a" if value is None else value if isinstance(value, str) else f"{value:.1f}"

    body = "\n".join("| " + " | ".join(cell(row.get(key)) for key in PROBE_COLUMNS) + " |" for row in rows)
    return f"**{label[0].upper()}{label[1:]}** (medians over each workload):\n\n{header}\n{body}"


def utilization_reference_table_text(reference=UTILIZATION_REFERENCE):
    """The reference run's table, labelled with its card, date and source."""
    return utilization_table_text(reference["rows"], f"{reference_label(reference)} ({reference['source']})")


def utilization_reference_text(reference=UTILIZATION_REFERENCE):
    """The probe's reference figures in one sentence, labelled with card, date and source."""
    tiny, matmul, copy = reference["rows"]
    return (
        f"For reference, {reference_label(reference)} ({reference['source']}): tiny kernels "
        f"{tiny['classic_util_pct']:.0f}% utilization with {tiny['sm_active_pct']:.0f}% SM activity; a BF16 matmul "
        f"{matmul['sm_active_pct']}% SM and {matmul['tensor_active_pct']}% Tensor Core activity; a "
        f"device-to-device copy {copy['dram_bw_pct']}% DRAM bandwidth."
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
    carrying = (
        "every one counted as carrying loss (the most there can be: step 4 counts the share that really does)"
        if measured is None and loss_rows >= tokens
        else f"{loss_rows:,} of them carrying loss"
    )
    return f"""
_Estimated from the model's config for **{tokens:,} token positions per batch** ({scope}), {carrying}, in
{plan.name}, on the **{speed.name}** path. Estimates, not measurements._

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
