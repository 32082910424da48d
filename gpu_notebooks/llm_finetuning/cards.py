"""The cards and tables the page shows (marimo elements): this machine at the top, a run's results after it."""

from __future__ import annotations

import math

import marimo as mo
import pandas as pd
import torch
from transformers import GPT2Config

from gpu_notebooks.llm_finetuning.charts import loss_chart
from gpu_notebooks.llm_finetuning.evaluation import standard_error
from gpu_notebooks.llm_finetuning.explain.lora import why_lora_text
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes
from gpu_notebooks.llm_finetuning.lora import lora_plan
from gpu_notebooks.llm_finetuning.steps import step_done


def environment_cards(environment):
    """This machine at the top of the page: GPU (or "CPU only" with what that means), CPU, RAM and torch."""
    if environment["cuda_available"]:
        device_card = mo.stat(
            environment["gpu"].replace("NVIDIA ", ""),
            label="GPU (torch + NVML)",
            caption=f"{environment['gpu_memory_gib']:.0f} GiB · CC {environment['compute_capability']}"
            f" · driver {environment.get('driver', 'n/a')} · CUDA {environment['cuda']}",
            bordered=True,
        )
        note = None
    else:
        device_card = mo.stat(
            "CPU only", label="device", caption="no CUDA GPU visible to torch", bordered=True
        )
        note = mo.callout(
            mo.md(
                "**No CUDA GPU here, so everything runs on the CPU.** The settings default to the *tiny "
                "offline GPT-2* in FP32 (a run of seconds to minutes); FP16 would fall back to FP32 (explained "
                "in step 1). The steps, the adapter and the PEFT format are the same as on a GPU."
            ),
            kind="info",
        )
    cards = [
        device_card,
        mo.stat(f"{environment['cpu_cores']} cores", label="CPU", bordered=True),
        mo.stat(f"{environment['ram_gib']:.0f} GiB", label="RAM", bordered=True),
        mo.stat(f"torch {environment['torch']}", label="framework", bordered=True),
    ]
    return mo.vstack([mo.hstack(cards, widths="equal"), note])


def training_summary(history, eval_records, stop_reason, train_seconds, total_seconds, samples):
    """Step 5's final view: completion (or the reason it stopped), throughput, memory and the loss chart."""
    if stop_reason is not None:
        return mo.callout(
            mo.md(
                f"**Step 5 stopped after {stop_reason.step} optimizer steps.** {stop_reason.reason}\n\n"
                f"**What to do:** {stop_reason.advice}\n\nThe model, optimizer and batches were released."
            ),
            kind="danger",
        )
    real, padded, seconds = (
        history["real_tokens"].sum(),
        history["padded_tokens"].sum(),
        history["seconds"].sum(),
    )
    scaler_note = (
        f" · loss scale ends at {history['loss_scale'].iloc[-1]:,.0f}, {int(history['skipped'].sum())} steps "
        "skipped for inf/NaN gradients"
        if history["loss_scale"].iloc[-1] != 1.0
        else ""
    )
    details = (
        f"{len(history)} optimizer steps in {train_seconds:.1f} s (plus the baseline evaluation) · loss "
        f"{history['loss'].iloc[0]:.3f} → {history['loss'].iloc[-1]:.3f} · eval loss "
        f"{eval_records[0]['eval_loss']:.3f} → {eval_records[-1]['eval_loss']:.3f}{scaler_note}"
    )
    return mo.vstack(
        [
            step_done(5, "trained", total_seconds, details),
            mo.hstack(
                [
                    mo.stat(
                        f"{real / seconds:,.0f}",
                        label="tokens/s (real, no padding)",
                        caption="step time only",
                        bordered=True,
                    ),
                    mo.stat(
                        f"{padded / seconds:,.0f}",
                        label="tokens/s (incl. padding)",
                        caption="what was computed",
                        bordered=True,
                    ),
                    memory_card(history, samples),
                ],
                widths="equal",
            ),
            loss_chart(history.to_dict("records"), eval_records),
        ]
    )


def memory_card(history, samples):
    """Peak memory during training: torch's allocator on a GPU, the process's RSS on a CPU."""
    if history["memory_mib"].max() > 0:
        nvml_peak = (
            f" · NVML: up to {samples['memory_used_gb'].max():.1f} GB used on the GPU" if len(samples) else ""
        )
        return mo.stat(
            f"{history['peak_mib'].max():,.0f} MiB",
            label="torch peak allocated (this process, under the lease)",
            caption="max_memory_allocated since step 2: peaks inside a step and the evaluation before "
            "training included" + nvml_peak,
            bordered=True,
        )
    peak = samples["memory_used_gb"].max() if len(samples) else float("nan")
    return mo.stat(
        f"{peak:,.1f} GB", label="process memory (peak)", caption="psutil RSS — no GPU", bordered=True
    )


def compare_generations(before, after):
    """Before/after generations side by side, one row per held-out prompt."""
    return pd.DataFrame(
        {
            "task": before["task"],
            "prompt": before["prompt"],
            "expected": before["response"],
            "before": [
                f"{'✓' if ok else '✗'} {text or '(empty)'}"
                for ok, text in zip(before["exact_match"], before["generated"], strict=True)
            ],
            "after": [
                f"{'✓' if ok else '✗'} {text or '(empty)'}"
                for ok, text in zip(after["exact_match"], after["generated"], strict=True)
            ],
        }
    )


def evaluation_cards(before, after):
    """Step 6's four before → after cards: eval loss, perplexity, exact match (± s.e.), answer format."""
    return mo.hstack(
        [
            metric_card("eval loss", before["eval_loss"], after["eval_loss"], "{:.3f}", "decrease"),
            metric_card("perplexity", before["perplexity"], after["perplexity"], "{:,.1f}", "decrease"),
            exact_match_card(before, after),
            metric_card("answer format", before["format_match"], after["format_match"], "{:.0%}", "increase"),
        ],
        widths="equal",
    )


def exact_match_card(before, after):
    """The exact-match card (steps 6 and 7): before → after, with its ±1 s.e. over this run's n."""
    return metric_card(
        "exact match",
        before["exact_match"],
        after["exact_match"],
        "{:.0%}",
        "increase",
        n=after.get("eval_items"),
    )


def metric_card(label, before, after, fmt, better, n=None):
    """mo.stat showing after, with before in the caption and an arrow coloured by the better direction.

    `n`: the rate was measured on n items; the card then shows ±1 standard error with both values.
    """
    if math.isnan(after) or math.isnan(before):
        return mo.stat("n/a", label=label, caption="uploaded data has no fixed answer format", bordered=True)
    direction = None if after == before else ("increase" if after > before else "decrease")
    if n:
        return mo.stat(
            f"{fmt.format(after)} ± {fmt.format(standard_error(after, n))}",
            label=label,
            caption=f"before: {fmt.format(before)} ± {fmt.format(standard_error(before, n))} · ±1 s.e. = "
            f"√(p(1−p)/n), n = {n}",
            direction=direction,
            target_direction=better,
            bordered=True,
        )
    return mo.stat(
        fmt.format(after),
        label=label,
        caption=f"before: {fmt.format(before)}",
        direction=direction,
        target_direction=better,
        bordered=True,
    )


def peft_tolerance(plan):
    """How far PEFT's logits may sit from ours: rounding differs only in where the update is cast."""
    return {torch.float32: 1e-3, torch.float16: 5e-2}.get(plan.param_dtype, 2.5e-1)


def check_mark(max_difference, plan):
    """✓ when a logits difference is within the rounding expected for the run's dtype, else ✗."""
    return "✓" if max_difference < peft_tolerance(plan) else "✗"


def release_text(report, device):
    """One sentence on what releasing the run gave back."""
    if device.type != "cuda":
        return "References to model, optimizer and loaders dropped (CPU: host memory returns to Python's allocator)."
    return (
        f"Released: torch allocated {fmt_bytes(report['allocated_before'])} → **{fmt_bytes(report['allocated_after'])}** "
        f"(before loading: {fmt_bytes(report['baseline'])}), reserved {fmt_bytes(report['reserved_before'])} → "
        f"{fmt_bytes(report['reserved_after'])}."
    )


def summary_cards(before, after, click_to_result, peak_memory, release_report, run):
    """Step 7's metric cards for the whole run."""
    cards = [
        mo.stat(f"{click_to_result:.1f} s", label="click → result", caption="steps 1–7", bordered=True),
        metric_card("eval loss", before["eval_loss"], after["eval_loss"], "{:.3f}", "decrease"),
        exact_match_card(before, after),
    ]
    if run.device.type == "cuda":
        cards += [
            mo.stat(
                fmt_bytes(peak_memory),
                label="peak CUDA memory (this process, this run's lease)",
                caption=f"max_memory_allocated since step 2; {fmt_bytes(run.memory_baseline)} of it held before",
                bordered=True,
            ),
            mo.stat(
                fmt_bytes(release_report["allocated_after"]),
                label="after release (this process)",
                caption=f"memory_allocated; {fmt_bytes(run.memory_baseline)} before this run loaded",
                bordered=True,
            ),
        ]
    return mo.hstack(cards, widths="equal")


def ran_model_explanation(run):
    """{title: text} of "Why LoRA works" for the model that ran, when it is not the one picked (a fallback)."""
    if run.model_name == run.settings.model_source or not isinstance(run.model.config, GPT2Config):
        return {}
    why = lora_plan(run.model.config, run.settings)
    title = f"Why LoRA works — with the numbers of the model that ran (`{run.model_name}`)"
    return {title: mo.md(why_lora_text(why, run.settings, run.model_name, ran=True))}
