"""The benchmark app's Altair charts and the live GPU panel."""

from __future__ import annotations

import math

import altair as alt
import marimo as mo
import pandas as pd

from gpu_notebooks.gpu.sampler import reading
from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS, format_rows
from gpu_notebooks.rapids_benchmark.ops import ALL_OPS
from gpu_notebooks.rapids_benchmark.report import speedup_column, speedup_kinds

# One colour per engine in every chart (times, speedups, sweeps, the timeline's shading), whichever engines
# ran: a colour scheme assigned per chart gave Polars one colour in the times chart and another beside it in
# the speedups. cuDF's two extra ratios are shades of cuDF's green.
ENGINE_COLORS = {
    "pandas": "#4c78a8",
    "Polars": "#f58518",
    "DuckDB": "#e45756",
    "Dask (CPU)": "#72b7b2",
    "cuDF": "#54a24b",
    "cudf.pandas": "#b79a20",
    "Polars GPU": "#b279a2",
    "Dask-cuDF": "#9d755d",
}
CUDF_RATIO_COLORS = {"speedup_vs_cpu": "#a0d28d", "speedup_e2e": "#2f6b2a"}


def engine_colors(labels) -> alt.Scale:
    """The fixed colour scale for these engine labels, in ENGINE_LABELS order (a name it does not know: grey)."""
    seen = set(labels)
    present = [label for label in ENGINE_LABELS.values() if label in seen]
    present += sorted(seen - set(present))
    return alt.Scale(domain=present, range=[ENGINE_COLORS.get(label, "#8c8c8c") for label in present])


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 tick values covering [lo, hi] on a log axis."""
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10**exp for m in (1, 2, 5) if lo <= m * 10**exp <= hi]
    return ticks


def speedup_chart(summary: pd.DataFrame):
    """Bars of every engine's speedup over pandas this run has (and cuDF's other two), log scale, largest size."""
    kinds = speedup_kinds(summary, vs_cudf=False)
    top = summary[summary["rows"] == summary["rows"].max()]
    parts = [pd.DataFrame({"op": top["op"], "kind": k, "speedup": top[c]}) for c, k in kinds.items()]
    if not parts:
        return mo.md("_Speedups appear when a second engine (Polars, DuckDB or cuDF) runs beside pandas._")
    data = pd.concat(parts).dropna()
    if data.empty:
        return mo.md("_No speedup at the largest size: only one engine ran there._")
    lo = min(0.5, float(data["speedup"].min()) / 1.5)
    hi = max(2.0, float(data["speedup"].max()) * 1.2)
    x = alt.X(
        "speedup:Q",
        scale=alt.Scale(type="log", domain=[lo, hi]),
        # Explicit 1-2-5 ticks: Vega's own log ticks left a bar reaching 2× with no label above 1×.
        axis=alt.Axis(values=log_ticks(lo, hi), format="~g", labelFlush=True),
        title="speedup (×, log scale; dashed line = 1×)",
    )
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("op:N", title=None, sort=list(ALL_OPS)),
            yOffset=alt.YOffset("kind:N", sort=list(kinds.values())),
            x=x,
            x2=alt.datum(lo),
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(domain=list(kinds.values()), range=[kind_color(c) for c in kinds]),
                legend=alt.Legend(orient="bottom", columns=1),
            ),
            tooltip=["op", "kind", alt.Tooltip("speedup:Q", format=",.1f")],
        )
    )
    rule = alt.Chart(pd.DataFrame({"speedup": [1.0]})).mark_rule(strokeDash=[4, 4]).encode(x=x)
    return (bars + rule).properties(
        title=f"Speedups at {format_rows(top['rows'].iloc[0])} rows", width=320, height=260
    )


def kind_color(column: str) -> str:
    """A speedup column's colour: the engine's own ("polars_speedup" → Polars'), cuDF's ratios a shade of it."""
    if column in CUDF_RATIO_COLORS:
        return CUDF_RATIO_COLORS[column]
    engine = next((e for e in ENGINE_LABELS if speedup_column(e) == column), None)
    return ENGINE_COLORS[ENGINE_LABELS[engine]] if engine is not None else "#8c8c8c"


def times_chart(summary: pd.DataFrame):
    """Median time per op and engine (dots) with min–max whiskers, log scale, largest size only."""
    top = summary[summary["rows"] == summary["rows"].max()]
    parts = []
    for eng, label in ENGINE_LABELS.items():
        if f"{eng}_median_s" in top:
            parts.append(
                pd.DataFrame(
                    {
                        "op": top["op"],
                        "engine": label,
                        "median_ms": top[f"{eng}_median_s"] * 1e3,
                        "min_ms": top[f"{eng}_min_s"] * 1e3,
                        "max_ms": top[f"{eng}_max_s"] * 1e3,
                    }
                )
            )
    data = pd.concat(parts)
    scale = alt.Scale(type="log")
    base = alt.Chart(data).encode(
        y=alt.Y("op:N", title=None, sort=list(ALL_OPS)),
        yOffset=alt.YOffset("engine:N", sort=list(ENGINE_LABELS.values())),
        color=alt.Color("engine:N", scale=engine_colors(data["engine"]), legend=alt.Legend(orient="bottom")),
    )
    dots = base.mark_point(filled=True, size=90).encode(
        x=alt.X("median_ms:Q", scale=scale, title="median time (ms, log scale; whiskers = min–max)"),
        tooltip=[
            "op",
            "engine",
            alt.Tooltip("median_ms:Q", format=",.3f"),
            alt.Tooltip("min_ms:Q", format=",.3f"),
            alt.Tooltip("max_ms:Q", format=",.3f"),
        ],
    )
    whiskers = base.mark_bar(height=3, opacity=0.7).encode(x=alt.X("min_ms:Q", scale=scale), x2="max_ms:Q")
    return (whiskers + dots).properties(
        title=f"Time per operation at {format_rows(top['rows'].iloc[0])} rows", width=320, height=220
    )


def sweep_chart(summary: pd.DataFrame):
    """Speedup against rows for each op (log–log), or None without a sweep."""
    if "speedup" not in summary or summary["rows"].nunique() < 2:
        return None
    line = (
        alt.Chart(summary)
        .mark_line(point=True)
        .encode(
            x=alt.X("rows:Q", scale=alt.Scale(type="log"), title="rows (log scale)"),
            y=alt.Y("speedup:Q", scale=alt.Scale(type="log"), title="cuDF speedup over pandas (×)"),
            color=alt.Color("op:N", sort=list(ALL_OPS)),
            tooltip=["op", alt.Tooltip("rows:Q", format=","), alt.Tooltip("speedup:Q", format=",.2f")],
        )
    )
    rule = alt.Chart(pd.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[4, 4], color="gray").encode(y="y:Q")
    return (line + rule).properties(width=640, height=280)


def sweep_times_chart(summary: pd.DataFrame):
    """Median time against rows for every engine that ran, one small panel per op (log–log); None without a sweep."""
    if summary["rows"].nunique() < 2:
        return None
    parts = [
        pd.DataFrame(
            {
                "rows": summary["rows"],
                "op": summary["op"],
                "engine": label,
                "median_ms": summary[f"{eng}_median_s"] * 1e3,
            }
        )
        for eng, label in ENGINE_LABELS.items()
        if f"{eng}_median_s" in summary
    ]
    data = pd.concat(parts).dropna()
    ops = [o for o in ALL_OPS if o in set(data["op"])]
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("rows:Q", scale=alt.Scale(type="log"), title="rows", axis=alt.Axis(format="~s")),
            y=alt.Y("median_ms:Q", scale=alt.Scale(type="log"), title="median time (ms)"),
            color=alt.Color(
                "engine:N",
                scale=engine_colors(data["engine"]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=[
                "op",
                "engine",
                alt.Tooltip("rows:Q", format=","),
                alt.Tooltip("median_ms:Q", format=",.3f"),
            ],
        )
        .properties(width=130, height=150)
        .facet(column=alt.Column("op:N", sort=ops, title=None))
    )


def timeline_chart(samples: pd.DataFrame, spans: pd.DataFrame, gpm: pd.DataFrame | None = None):
    """NVML metrics over time, one panel per metric (classic, clocks, then GPM), each op's span shaded."""
    classic = {
        "util_pct": "utilization (%)",
        "memory_used_gb": "memory used (GB)",
        "power_w": "power (W)",
        "temp_c": "temperature (°C)",
        "sm_clock_mhz": "SM clock (MHz)",
        "mem_clock_mhz": "memory clock (MHz)",
    }
    gpm_panels = {
        "sm_active_pct": "SM active (%, GPM)",
        "tensor_active_pct": "Tensor Cores active (%, GPM)",
        "dram_bw_pct": "DRAM bandwidth (%, GPM)",
        "pcie_gbs": "PCIe RX + TX (GB/s, GPM)",
    }
    if gpm is not None and len(gpm):
        gpm = gpm.assign(
            pcie_gbs=(gpm["pcie_rx_bytes_s"].astype(float) + gpm["pcie_tx_bytes_s"].astype(float)) / 1e9
        )
    shaded = (
        spans[["engine", "op", "rows", "start", "end"]].assign(
            engine=spans["engine"].map(lambda e: ENGINE_LABELS.get(e, e))
        )
        if len(spans)
        else spans
    )
    # labelFlush keeps the last tick's label inside the chart instead of cut at its edge.
    x = alt.X("t:Q", title="seconds since start", axis=alt.Axis(labelFlush=True))
    wanted = [(samples, c, t) for c, t in classic.items() if c in samples and samples[c].notna().any()]
    if gpm is not None and len(gpm):
        wanted += [(gpm, c, t) for c, t in gpm_panels.items() if gpm[c].notna().any()]
    panels = []
    for i, (data, col, title) in enumerate(wanted):
        legend = {} if i == 0 else {"legend": None}
        line = (
            alt.Chart(data)
            .mark_line()
            .encode(x=x, y=alt.Y(f"{col}:Q", title=title), color=alt.Color("gpu:N", title="GPU", **legend))
        )
        panels.append(shade_spans(line, shaded, legend).properties(width=640, height=90))
    if "clock_events" in samples and samples["clock_events"].notna().any():
        events = samples[["t", "gpu", "clock_events"]].dropna()
        strip = (
            alt.Chart(events)
            .mark_tick(thickness=3)
            .encode(
                x=x,
                y=alt.Y("clock_events:N", title="clocks held by"),
                color=alt.Color("gpu:N", legend=None),
                tooltip=["t", "gpu", "clock_events"],
            )
        )
        panels.append(strip.properties(width=640))
    return alt.vconcat(*panels)


def shade_spans(line, shaded: pd.DataFrame, legend: dict):
    """`line` over a shaded rectangle for each op's span, coloured by engine (unchanged without spans)."""
    if not len(shaded):
        return line
    shade = (
        alt.Chart(shaded)
        .mark_rect(opacity=0.25)
        .encode(
            x="start:Q",
            x2="end:Q",
            color=alt.Color(
                "engine:N", scale=engine_colors(shaded["engine"]), title="engine running", **legend
            ),
            tooltip=[
                "engine",
                "op",
                "rows",
                alt.Tooltip("start:Q", format=".2f"),
                alt.Tooltip("end:Q", format=".2f"),
            ],
        )
    )
    return alt.layer(shade, line).resolve_scale(color="independent")


def live_gpu_panel(gpus: list[dict], gpm_line: str = ""):
    """Cards with each GPU's utilization, memory, temperature, power, clocks and what holds the clocks down."""
    rows = []
    for g in gpus:
        rows.append(
            mo.hstack(
                [
                    mo.stat(
                        value=reading(g.get("util_pct"), "{}", "%"),
                        label=f"GPU {g['index']} utilization",
                        bordered=True,
                    ),
                    mo.stat(
                        value=f"{reading(g.get('memory_used_gb'), '{:.1f}')} / {g.get('memory_total_gb') or 0:.0f} GB",
                        label="memory",
                        bordered=True,
                    ),
                    mo.stat(value=reading(g.get("temp_c"), "{}", " °C"), label="temperature", bordered=True),
                    mo.stat(
                        value=f"{reading(g.get('power_w'), '{:.0f}')} / {reading(g.get('power_limit_w'), '{:.0f}')} W",
                        label="power / limit",
                        bordered=True,
                    ),
                    mo.stat(
                        value=f"{reading(g.get('sm_clock_mhz'), '{:,}')} / {reading(g.get('mem_clock_mhz'), '{:,}')} MHz",
                        label="SM / memory clock",
                        caption=f"clocks held by: {g.get('clock_events') or 'not reported'}",
                        bordered=True,
                    ),
                ],
                wrap=True,
                justify="start",
            )
        )
    if gpm_line:
        rows.append(mo.md(f"_{gpm_line}_"))
    return mo.vstack(rows)
