"""How the benchmark app writes rows, seconds and ratios."""

from __future__ import annotations

import math

ENGINE_LABELS = {
    "pandas": "pandas",
    "polars": "Polars",
    "duckdb": "DuckDB",
    "dask": "Dask (CPU)",
    "cudf": "cuDF",
    "cudf_pandas": "cudf.pandas",
    "polars_gpu": "Polars GPU",
    "dask_cudf": "Dask-cuDF",
}


def format_rows(n: float | None) -> str:
    """10_000_000 → '10M'."""
    if not n:
        return "—"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{int(n)}"


def fmt_seconds(s: float | None) -> str:
    """0.0123 → '12.3 ms'."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def fmt_spread(median: float, low: float, high: float) -> str:
    """'177.2 ms (159.5–230.4 ms)': the unit once when the range shares it (a narrower table column)."""
    m, a, b = fmt_seconds(median), fmt_seconds(low), fmt_seconds(high)
    unit_a, unit_b = a.rpartition(" ")[2], b.rpartition(" ")[2]
    if unit_a == unit_b and a != "—":
        a = a.rpartition(" ")[0]
    return f"{m} ({a}–{b})"


def fmt_ratio(x: float) -> str:
    """2.04 → '2.0×', 145.3 → '145×', 0.021 → '0.021×' (two significant digits below 0.1: never '0.0×')."""
    if x < 0.1:
        return f"{x:.2g}×"
    return f"{x:,.1f}×" if x < 10 else f"{x:,.0f}×"


def fmt_bytes(n: float) -> str:
    """84_000 → '84 kB', 72_000_000 → '72 MB', 2.1e9 → '2.1 GB' (decimal units, as disks count)."""
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:,.1f} {unit}" if n < 10 * div else f"{n / div:,.0f} {unit}"
    return f"{int(n)} B"
