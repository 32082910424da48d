"""Learner texts about the results: the summary, the takeaways, the pipeline and the crossover."""

from __future__ import annotations

import pandas as pd

from gpu_notebooks.rapids_benchmark.formatting import (
    ENGINE_LABELS,
    fmt_ratio,
    fmt_seconds,
    format_rows,
)
from gpu_notebooks.rapids_benchmark.report import crossover_rows, speedup_column
from gpu_notebooks.text import count_of


def crossover_sentence(summary: pd.DataFrame) -> str | None:
    """Where cuDF overtook pandas in this run's size sweep, on average and per op; None without a sweep."""
    if "speedup" not in summary:
        return None
    both = summary.dropna(subset=["speedup"])
    if both["rows"].nunique() < 2:
        return None
    lo, hi = int(both["rows"].min()), int(both["rows"].max())

    def where(part: pd.DataFrame) -> str:
        first, last = part["rows"].min(), part["rows"].max()
        cross = crossover_rows(part) if part["rows"].nunique() > 1 else None
        if cross is None:
            return f"not reached by {format_rows(last)} rows" if part["speedup"].max() < 1 else "not swept"
        return f"below {format_rows(first)} rows" if cross <= first else f"about {format_rows(cross)} rows"

    per_op = "; ".join(f"{op} {where(part)}" for op, part in both.groupby("op", sort=False))
    return (
        f"In this run's size sweep ({format_rows(lo)} to {format_rows(hi)} rows) the crossover, where cuDF "
        f"overtakes pandas, was **{where(both)}** on the geometric mean over the operations (per operation: {per_op})."
    )


def speed_range_text(ratios: pd.Series, than: str) -> str:
    """'2.0×–3.1× faster than pandas', '0.4×–0.8× as fast as pandas (slower)', or a mixed range said so."""
    r = ratios.dropna()
    if r.empty:
        return f"not compared with {than}"
    lo, hi = float(r.min()), float(r.max())
    span = fmt_ratio(lo) if fmt_ratio(lo) == fmt_ratio(hi) else f"{fmt_ratio(lo)}–{fmt_ratio(hi)}"
    if lo >= 1:
        return f"{span} faster than {than}"
    if hi < 1:
        return f"{span} as fast as {than} (slower)"
    return f"{fmt_ratio(lo)} (slower) to {fmt_ratio(hi)} (faster) the speed of {than}, depending on the operation"


def summary_text(summary: pd.DataFrame, bench: dict) -> str:
    """A short paragraph written from this run's numbers (any mix of engines and sizes)."""
    n = int(summary["rows"].max())
    top = summary[summary["rows"] == n]
    gen = next((g["seconds"] for g in bench["generation"] if g["rows"] == n), None)
    lines = [
        f"**{format_rows(n)} rows**, {count_of(bench['plan']['repeats'], 'timed repeat')} after a warm-up; "
        f"data generated in {fmt_seconds(gen)}; whole run {bench['wall_s']:.1f} s."
    ]
    ran = {e for e in ENGINE_LABELS if f"{e}_median_s" in summary and summary[f"{e}_median_s"].notna().any()}
    with_pandas = pandas_rows(summary)
    versus = engines_vs_pandas_text(with_pandas, skip=("cudf",))  # cuDF has its own sentences below
    if versus:
        at = (
            ""
            if len(with_pandas) and with_pandas["rows"].iloc[0] == n
            else (f" at {format_rows(int(with_pandas['rows'].iloc[0]))} rows")
        )
        lines.append(f"Each engine against pandas (one core){at}: {versus}.")
    # The cuDF comparison at the largest size where both pandas and cuDF ran.
    both = summary.dropna(subset=["speedup"]) if "speedup" in summary else summary.iloc[0:0]
    if len(both):
        m = int(both["rows"].max())
        at = both[both["rows"] == m]
        lead = "" if m == n else f"At {format_rows(m)} rows (the largest size pandas also ran), "
        best, worst = at.loc[at["speedup"].idxmax()], at.loc[at["speedup"].idxmin()]
        vs_cpu = at.dropna(subset=["speedup_vs_cpu"])
        if len(vs_cpu) and (vs_cpu["fastest_cpu"] != "pandas").any():
            won = ", ".join(sorted({ENGINE_LABELS.get(e, e) for e in vs_cpu["fastest_cpu"] if e != "pandas"}))
            lines.append(
                f"{lead}**{'against' if lead else 'Against'} the fastest CPU engine** ({won} on all cores, where "
                f"it beat pandas) cuDF was **{speed_range_text(vs_cpu['speedup_vs_cpu'], 'it')}** — the honest "
                "figure."
            )
        lines.append(
            f"{lead}cuDF did best relative to pandas on **{best.op}** ({fmt_ratio(best.speedup)} — "
            f"{fmt_seconds(best.pandas_median_s)} vs {fmt_seconds(best.cudf_median_s)}) and least on "
            f"**{worst.op}** ({fmt_ratio(worst.speedup)}). Counting the copy of the data to the GPU and of the "
            f"result back (data that starts and ends in pandas), cuDF was "
            f"{speed_range_text(at['speedup_e2e'], 'pandas')}: moving {format_rows(m)} rows to the GPU took "
            f"{fmt_seconds(at['h2d_s'].iloc[0])}."
        )
    if "dask_cudf" in ran:
        dask_top = top.dropna(subset=["dask_cudf_median_s"]) if "dask_cudf_median_s" in top else top.iloc[0:0]
        alone = len(dask_top) and not any(
            f"{e}_median_s" in top and top[f"{e}_median_s"].notna().any() for e in ran - {"dask_cudf"}
        )
        if alone:
            lines.append(
                f"At {format_rows(n)} rows only **Dask-cuDF** ran (the data fits neither one GPU nor host RAM): "
                + ", ".join(f"{r.op} {fmt_seconds(r.dask_cudf_median_s)}" for r in dask_top.itertuples())
                + "; its results were self-checked from the input."
            )
    if "cudf_pandas_vs_cudf" in summary and summary["cudf_pandas_vs_cudf"].notna().any():
        cp = summary.dropna(subset=["cudf_pandas_vs_cudf"])
        cp = cp[cp["rows"] == cp["rows"].max()]
        lines.append(
            f"**cudf.pandas** (the pandas code unchanged) at {format_rows(int(cp['rows'].iloc[0]))} rows ran at "
            + ", ".join(f"{fmt_ratio(r.cudf_pandas_vs_cudf)} on {r.op}" for r in cp.itertuples())
            + " the speed of hand-written cuDF (1× = as fast)."
        )
    if not ran & {"cudf", "cudf_pandas", "polars_gpu", "dask_cudf"}:
        lines.append("No GPU engine ran; the box at the top says why and how to enable it.")
    elif bench.get("peak_gpu_memory_gb"):
        lines.append(f"Peak GPU memory in use during the run: {bench['peak_gpu_memory_gb']:.1f} GB (NVML).")
    return " ".join(line.strip() for line in lines)


def pandas_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's rows at the largest size pandas ran (where every engine has its speedup); maybe empty."""
    if "pandas_median_s" not in summary:
        return summary.iloc[0:0]
    ran = summary.dropna(subset=["pandas_median_s"])
    return ran[ran["rows"] == ran["rows"].max()]


def engines_vs_pandas_text(top: pd.DataFrame, skip: tuple[str, ...] = ()) -> str:
    """'**Polars** 1.5×–18× faster than pandas; **DuckDB** …' for every engine in this summary (one size)."""
    parts = []
    for eng, label in ENGINE_LABELS.items():
        col = speedup_column(eng)
        if eng != "pandas" and eng not in skip and col in top and top[col].notna().any():
            parts.append(f"**{label}** {speed_range_text(top[col], 'pandas')}")
    return "; ".join(parts)


def pipeline_winner_text(summary: pd.DataFrame) -> str | None:
    """Which engine ran the whole job (the pipeline) fastest at its largest size, beside pandas; None without it."""
    rows = summary[summary["op"] == "pipeline"]
    if rows.empty:
        return None
    top = rows[rows["rows"] == rows["rows"].max()].iloc[0]
    times = {
        e: top[f"{e}_median_s"]
        for e in ENGINE_LABELS
        if f"{e}_median_s" in top and top[f"{e}_median_s"] == top[f"{e}_median_s"]
    }
    if len(times) < 2:
        return None
    best = min(times, key=times.get)
    pandas_s = times.get("pandas")
    beside = f" against pandas' {fmt_seconds(pandas_s)}" if pandas_s is not None and best != "pandas" else ""
    return (
        f"On the whole job (the pipeline, {format_rows(int(top['rows']))} rows) the fastest engine was "
        f"**{ENGINE_LABELS[best]}**: {fmt_seconds(times[best])}{beside}."
    )


def takeaways_text(last: dict | None) -> str:
    """The takeaways, each claim filled from the last run and naming only columns its table has."""
    lines = ["## Takeaways", ""]
    if last is None:
        return "\n".join(
            lines + ["_Run the benchmark: the takeaways are written from its numbers, on this machine._"]
        )
    s = last["summary"]
    n = int(s["rows"].max())
    top = s[s["rows"] == n]
    gpu = "speedup" in s and s["speedup"].notna().any()
    with_pandas = pandas_rows(s)
    versus = engines_vs_pandas_text(with_pandas)
    if versus:
        rows = format_rows(int(with_pandas["rows"].iloc[0]))
        lines.append(f"- At {rows} rows, each engine against pandas (one core): {versus}.")
    winner = pipeline_winner_text(s)
    if winner:
        lines.append(
            f"- {winner} That is the number to decide on: it counts reading the file and the answer."
        )
    if gpu:
        cross = crossover_sentence(s)
        lines.append(
            "- A GPU wins when there is **enough data to fill it**; below that, its fixed costs per operation "
            "(dispatch, kernel launches, allocation, synchronization) cost more than the work. "
            + (cross or "This run had one size, so the crossover was **not measured**: run a *size sweep*.")
        )
        at = s.dropna(subset=["speedup"])
        at = at[at["rows"] == at["rows"].max()].sort_values("speedup", ascending=False)
        lines.append(
            f"- At {format_rows(int(at['rows'].iloc[0]))} rows cuDF's gain over pandas ranged from "
            f"**{fmt_ratio(at['speedup'].iloc[0])}** ({at['op'].iloc[0]}) to **{fmt_ratio(at['speedup'].iloc[-1])}** "
            f"({at['op'].iloc[-1]}) in this run."
        )
        if "speedup_vs_cpu" in s and (s["fastest_cpu"].dropna() != "pandas").any():
            won = ", ".join(
                sorted({ENGINE_LABELS.get(e, e) for e in s["fastest_cpu"].dropna() if e != "pandas"})
            )
            lines.append(
                f"- pandas uses **one core**. Against {won} on all cores the GPU's lead is smaller — compare the "
                "*cuDF vs fastest CPU engine* column before you decide."
            )
        lines.append(
            "- **Copies count.** If your data starts in pandas and must return to pandas, the *with copies* "
            f"column is the honest one ({speed_range_text(at['speedup_e2e'], 'pandas')} here); keep data on the "
            "GPU across several operations to amortize the copy."
        )
    else:
        lines.append(
            "- No GPU engine ran, so this run says nothing about the GPU; the box at the top says why."
        )
        parallel = [ENGINE_LABELS[e] for e in ("polars", "duckdb") if f"{e}_median_s" in top]
        if parallel:
            lines.append(
                f"- pandas uses **one core**; {' and '.join(parallel)} use all of them: a parallel CPU engine is "
                "the fair baseline for any GPU comparison."
            )
    return "\n".join(lines)


def pipeline_text(summary: pd.DataFrame) -> str | None:
    """The whole-job headline: each engine's pipeline time at the largest size, fastest first; None if it did not run."""
    rows = summary[summary["op"] == "pipeline"]
    if rows.empty:
        return None
    top = rows[rows["rows"] == rows["rows"].max()].iloc[0]
    times = {
        label: top[f"{e}_median_s"]
        for e, label in ENGINE_LABELS.items()
        if f"{e}_median_s" in top and top[f"{e}_median_s"] == top[f"{e}_median_s"]
    }
    if not times:
        return None
    order = sorted(times, key=times.get)
    lines = ", ".join(f"**{label}** {fmt_seconds(times[label])}" for label in order)
    return (
        f"**The whole job first** — read Parquet → filter → join → group by → sort → the small answer in pandas, "
        f"at {format_rows(int(top['rows']))} rows: {lines}. This is the number to decide on: it counts reading "
        f"the file and returning the result, which the per-operation rows below leave out. "
        f"Results {'agree across engines ✓' if top['match'] == '✓' else 'checked: ' + (top['check'] or 'pandas alone ran')}."
    )
