"""The run's records summarized: one row per op and size, each engine's median beside pandas'."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gpu_notebooks.gpu.gpm import GPM_FIELDS
from gpu_notebooks.rapids_benchmark.checks import check_label
from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS, fmt_seconds, fmt_spread, format_rows


def summarize_records(
    records: list[dict], peak_bandwidth_gbs: float | None = None, achievable_gbs: float | None = None
) -> pd.DataFrame:
    """One row per (size, op): each engine's times and checks, speedups vs pandas and vs the fastest CPU engine.

    A size where pandas or every CPU engine is missing (beyond host RAM: Dask alone) keeps its row, with
    NaN speedups there.
    """
    if not records:
        return pd.DataFrame(columns=["rows", "op", "match", "check", "detail"])
    rec = pd.DataFrame(records)
    telemetry = ["energy_j", *GPM_FIELDS, "gpm_note"]  # GPU ops only; absent from other records
    for key in telemetry:
        if key not in rec:
            rec[key] = None
    cpu_engines = list(dict.fromkeys(rec.loc[~rec["on_gpu"].astype(bool), "engine"]))
    rows = []
    for (n, op), grp in rec.groupby(["rows", "op"], sort=False):
        row, checks, unchecked = {"rows": n, "op": op}, [], []
        for r in grp.itertuples():
            keys = ["median_s", "min_s", "max_s", "warmup_s", "load_s", "h2d_s", "d2h_s", "bytes_touched"]
            for key in keys + (telemetry if r.on_gpu else []):
                row[f"{r.engine}_{key}"] = getattr(r, key)
            if r.match is not None:
                checks.append((r.engine, bool(r.match), r.detail, r.checked_by))
            elif r.engine != "pandas":
                unchecked.append(r.engine)
        row["match"] = "" if not checks else ("✓" if all(ok for _, ok, _, _ in checks) else "✗")
        row["check"] = check_label(checks, unchecked)
        failed = [f"{eng}: {detail}" for eng, ok, detail, _ in checks if not ok]
        row["detail"] = "; ".join(failed or [f"{eng}: {detail}" for eng, _, detail, _ in checks])
        row["checked_by"] = ",".join(sorted({by for *_, by in checks}))
        row["unchecked"] = ",".join(unchecked)
        cpu = {e: row[f"{e}_median_s"] for e in cpu_engines if f"{e}_median_s" in row}
        row["fastest_cpu"] = min(cpu, key=cpu.get) if cpu else None
        row["fastest_cpu_s"] = cpu[row["fastest_cpu"]] if cpu else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    pandas_s = out["pandas_median_s"] if "pandas_median_s" in out else pd.Series(math.nan, index=out.index)
    for eng in ENGINE_LABELS:  # every engine that ran, against pandas, the same way
        if eng != "pandas" and f"{eng}_median_s" in out:
            out[speedup_column(eng)] = pandas_s / out[f"{eng}_median_s"]
    if "cudf_median_s" in out:
        out["speedup_vs_cpu"] = out["fastest_cpu_s"] / out["cudf_median_s"]
        out["h2d_s"], out["d2h_s"], out["gpu_bytes"] = (
            out["cudf_h2d_s"],
            out["cudf_d2h_s"],
            out["cudf_bytes_touched"],
        )
        out["end_to_end_s"] = out["h2d_s"] + out["cudf_median_s"] + out["d2h_s"]
        out["speedup_e2e"] = pandas_s / out["end_to_end_s"]
        out["bandwidth_gbs"] = out["gpu_bytes"] / out["cudf_median_s"] / 1e9
        if peak_bandwidth_gbs:
            out["bandwidth_pct"] = 100 * out["bandwidth_gbs"] / peak_bandwidth_gbs
        if achievable_gbs:
            out["bandwidth_achievable_pct"] = 100 * out["bandwidth_gbs"] / achievable_gbs
    if "cudf_pandas_median_s" in out and "cudf_median_s" in out:
        # how close zero code change gets to hand-written cuDF (1× = as fast)
        out["cudf_pandas_vs_cudf"] = out["cudf_median_s"] / out["cudf_pandas_median_s"]
    if "dask_cudf_median_s" in out and "cudf_median_s" in out:
        out["dask_vs_cudf"] = out["cudf_median_s"] / out["dask_cudf_median_s"]
    if "polars_gpu_median_s" in out and "polars_median_s" in out:
        out["polars_gpu_vs_polars"] = out["polars_median_s"] / out["polars_gpu_median_s"]
    return out


def speedup_column(engine: str) -> str:
    """The summary column of an engine's speedup over pandas (cuDF's is plain "speedup")."""
    return "speedup" if engine == "cudf" else f"{engine}_speedup"


# cuDF's other ratios, and the two measured against cuDF rather than pandas (table only: the chart is vs pandas).
CUDF_RATIOS = {"speedup_vs_cpu": "cuDF vs fastest CPU engine", "speedup_e2e": "cuDF vs pandas, with copies"}
VS_CUDF_RATIOS = {
    "dask_vs_cudf": "Dask-cuDF vs 1-GPU cuDF",
    "cudf_pandas_vs_cudf": "cudf.pandas vs hand-written cuDF",
}


def speedup_kinds(summary: pd.DataFrame, vs_cudf: bool = True) -> dict[str, str]:
    """The ratio columns this summary has, with their labels, in table order: every engine vs pandas first.

    The table and the chart both name their columns and bars from here, so an engine that ran appears in
    both the same way; `vs_cudf=False` leaves out VS_CUDF_RATIOS.
    """
    kinds = {
        speedup_column(eng): f"{label} vs pandas"
        for eng, label in ENGINE_LABELS.items()
        if eng != "pandas" and speedup_column(eng) in summary
    }
    extra = {**CUDF_RATIOS, **(VS_CUDF_RATIOS if vs_cudf else {})}
    kinds.update({col: label for col, label in extra.items() if col in summary})
    return kinds


def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Each engine's time per op and size (median with the min–max spread), after the result check."""
    out = pd.DataFrame({"rows": summary["rows"].map(format_rows), "operation": summary["op"]})
    if summary["check"].ne("").any():
        out["result check"] = summary["check"]
    for eng in ENGINE_LABELS:
        if f"{eng}_median_s" in summary:
            # One column per engine: median with the min–max spread (two columns each cut the table at 1280 px).
            out[f"{ENGINE_LABELS[eng]} median (min–max)"] = [
                fmt_spread(m, a, b) if m == m else "—"
                for m, a, b in zip(
                    summary[f"{eng}_median_s"], summary[f"{eng}_min_s"], summary[f"{eng}_max_s"], strict=True
                )
            ]
    return out


def speedup_table(summary: pd.DataFrame) -> pd.DataFrame | None:
    """Every engine's speedup over pandas per op and size, then cuDF's copies and energy; None without any."""
    kinds = speedup_kinds(summary)
    if not kinds:
        return None
    out = pd.DataFrame({"rows": summary["rows"].map(format_rows), "operation": summary["op"]})
    for col, label in kinds.items():
        out[label] = summary[col].map(lambda x: f"{x:,.1f}×" if x == x else "—")
    if "speedup_vs_cpu" in summary:
        out.insert(
            out.columns.get_loc("cuDF vs fastest CPU engine"),
            "fastest CPU engine",
            summary["fastest_cpu"].map(ENGINE_LABELS.get),
        )
        out["host→GPU copy"] = summary["h2d_s"].map(fmt_seconds)
        out["GPU→host copy"] = summary["d2h_s"].map(fmt_seconds)
    if "cudf_energy_j" in summary and summary["cudf_energy_j"].notna().any():
        out["cuDF energy per call"] = summary["cudf_energy_j"].map(
            lambda j: "—" if j is None or j != j else f"{j:,.3f} J"
        )
    return out


def crossover_rows(summary: pd.DataFrame) -> float | None:
    """Rows at which the geometric-mean speedup first reaches 1×, interpolated on log–log axes."""
    if "speedup" not in summary or summary["rows"].nunique() < 2:
        return None
    g = summary.assign(ls=np.log(summary["speedup"])).groupby("rows")["ls"].mean().sort_index()
    xs, ys = np.log10(g.index.to_numpy(dtype=float)), g.to_numpy()
    if ys[0] >= 0:
        return float(10 ** xs[0])
    for i in range(1, len(ys)):
        if ys[i] >= 0 > ys[i - 1]:
            frac = -ys[i - 1] / (ys[i] - ys[i - 1])
            return float(10 ** (xs[i - 1] + frac * (xs[i] - xs[i - 1])))
    return None
