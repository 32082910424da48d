"""The fine-tuning app's Altair charts: loss, step time, throughput, the device timeline, parameters."""

from __future__ import annotations

import altair as alt
import pandas as pd

from gpu_notebooks.llm_finetuning.formatting import fmt_count


def smoothed(values, alpha=0.2):
    """Exponential moving average (pandas ewm, bias-corrected)."""
    return pd.Series(values, dtype="float64").ewm(alpha=alpha).mean().tolist()


def loss_chart(train_records, eval_records, title="Loss against step"):
    """Train loss (raw and smoothed) and eval loss (per epoch, step 0 = before training) against step."""
    train = pd.DataFrame(train_records, columns=["step", "loss"])
    rows = [
        {"step": s, "loss": v, "series": "train (raw)"}
        for s, v in zip(train["step"], train["loss"], strict=True)
    ]
    rows += [
        {"step": s, "loss": v, "series": "train (smoothed)"}
        for s, v in zip(train["step"], smoothed(train["loss"]), strict=True)
    ]
    rows += [{"step": r["step"], "loss": r["eval_loss"], "series": "eval"} for r in eval_records]
    frame = pd.DataFrame(rows, columns=["step", "loss", "series"])
    colors = alt.Scale(
        domain=["train (raw)", "train (smoothed)", "eval"], range=["#9ecae1", "#08519c", "#e6550d"]
    )
    base = alt.Chart(frame).encode(
        x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("loss:Q", title="cross-entropy loss"),
        color=alt.Color("series:N", scale=colors, title=None),
        tooltip=["series", "step", alt.Tooltip("loss", format=".4f")],
    )
    lines = base.transform_filter(alt.datum.series != "eval").mark_line()
    points = base.transform_filter(alt.datum.series == "eval").mark_line(point=True, strokeDash=[4, 2])
    return (lines + points).properties(title=title, width="container", height=240)


def step_chart(history, column, title, y_title):
    """One per-step metric (learning rate, tokens/s, memory) as a line."""
    return (
        alt.Chart(history)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y(f"{column}:Q", title=y_title),
            tooltip=["step", alt.Tooltip(column, format=".4g")],
        )
        .properties(title=title, width="container", height=180)
    )


def throughput_chart(history):
    """Tokens per second per step: real (non-pad) tokens and padded tokens, labelled."""
    frame = history.melt(
        id_vars="step",
        value_vars=["tokens_per_s", "padded_tokens_per_s"],
        var_name="counted",
        value_name="rate",
    )
    frame["counted"] = frame["counted"].map(
        {"tokens_per_s": "real tokens (no padding)", "padded_tokens_per_s": "all tokens (with padding)"}
    )
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("step:Q", title="optimizer step", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("rate:Q", title="tokens per second"),
            color=alt.Color("counted:N", title=None),
            tooltip=["counted", "step", alt.Tooltip("rate:Q", format=",.0f")],
        )
        .properties(title="Training throughput", width="container", height=180)
    )


def device_timeline_chart(samples, source):
    """Utilization and memory from the background sampler against wall time."""
    frame = samples.melt(
        id_vars="t", value_vars=["util_pct", "memory_used_gb"], var_name="metric", value_name="value"
    )
    labels = {"util_pct": f"utilization % ({source})", "memory_used_gb": f"memory used GB ({source})"}
    frame["metric"] = frame["metric"].map(labels)
    return (
        alt.Chart(frame)
        .mark_line()
        .encode(
            x=alt.X("t:Q", title="seconds since training started", axis=alt.Axis(labelFlush=True)),
            y=alt.Y("value:Q", title=None),
            tooltip=["metric", alt.Tooltip("t:Q", format=".1f"), alt.Tooltip("value:Q", format=",.1f")],
        )
        .properties(width="container", height=130)
        .facet(row=alt.Row("metric:N", title=None), title=f"Device timeline ({source}, sampled at 10 Hz)")
        .resolve_scale(y="independent")
    )


def parameter_chart(breakdown):
    """Horizontal bars: parameters per group, labelled with count and share (the LoRA bar is thin)."""
    frame = breakdown.rename(columns={"share %": "share"}).assign(
        label=[
            f"{fmt_count(n)} ({s:.2f}%)"
            for n, s in zip(breakdown["parameters"], breakdown["share %"], strict=True)
        ]
    )
    base = alt.Chart(frame).encode(
        y=alt.Y("group:N", sort="-x", title=None),
        x=alt.X(
            "parameters:Q", title="parameters", scale=alt.Scale(domain=[0, 1.25 * frame["parameters"].max()])
        ),
    )
    bars = base.mark_bar().encode(
        color=alt.condition(
            alt.datum.group == "LoRA adapters (trainable)", alt.value("#e6550d"), alt.value("#6baed6")
        ),
        tooltip=["group", alt.Tooltip("parameters:Q", format=","), alt.Tooltip("share:Q", format=".3f")],
    )
    labels = base.mark_text(align="left", dx=4).encode(text="label:N")
    return (bars + labels).properties(
        title="Where the parameters are (each tensor counted once; lm_head is tied to the embeddings)",
        width="container",
        height=170,
    )
