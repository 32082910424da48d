"""Every result compared with pandas': the check, its invariants and how it is shown."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS, format_rows

OP_ORDER = {
    "read_parquet": "rows",
    "read_csv": "rows",
    "pipeline": "unordered",
    "filter": "rows",
    "groupby_few": "unordered",
    "groupby_many": "unordered",
    "join": "unordered",
    "sort": "key:value",
}


def flatten_result(frame):
    """Group keys become columns, ('value', 'sum') columns become value_sum; a fresh 0..n-1 index."""
    if getattr(frame.columns, "nlevels", 1) > 1:
        frame = frame.copy(deep=False)
        frame.columns = [f"{column}_{agg}" for column, agg in frame.columns]
    if frame.index.name is not None or getattr(frame.index, "names", [None])[0] is not None:
        frame = frame.reset_index()
    return frame.reset_index(drop=True)


def agree(match, a, e):
    """`match` (element-wise: equal, or close) where it holds, or missing on both sides; never missing itself.

    With nullable types (pandas' Int64 and string, and every cuDF column) a comparison with a missing value is
    missing, not False, and `.sum()` skips it: a value against a gap would count as a match.
    """
    return match.fillna(False) | (a.isna() & e.isna())


def decimals_as_float(frame):
    """Decimal columns (Arrow/cuDF decimals, pandas' object column of Decimal) as float64.

    cuDF reads a Parquet decimal(10,2) as Decimal64(10,2), while pandas' Decimal objects moved to the GPU
    become decimal(4,2), and cuDF compares decimals only at equal precision and scale; a Decimal object
    never equals the float another engine returns. Compared as floats, within the float tolerance.
    """
    import decimal

    copied = False
    for col in frame.columns:
        dtype = str(frame[col].dtype).lower()
        is_decimal = "decimal" in dtype
        if dtype == "object" and isinstance(frame, pd.DataFrame):
            first = frame[col].dropna().head(1)
            is_decimal = len(first) == 1 and isinstance(first.iloc[0], decimal.Decimal)
        if is_decimal:
            if not copied:
                frame, copied = frame.copy(deep=False), True
            frame[col] = frame[col].astype("float64")
    return frame


def results_match(
    expected: pd.DataFrame,
    actual,
    order: str,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    to_library: Callable | None = None,
) -> tuple[bool, str]:
    """Compare a result from any DataFrame library with pandas' (order: 'rows', 'unordered' or 'key:<col>').

    `to_library` moves pandas' answer to where `actual` lives (e.g. `cudf.from_pandas`), so the check
    runs on the GPU instead of copying the result back to the host. Nothing is caught here: out of memory
    reaches run_benchmark (a failed measurement), any other error is a bug and must not read as ✗.
    """
    exp, act = decimals_as_float(flatten_result(expected)), decimals_as_float(flatten_result(actual))
    if len(exp) != len(act):
        return False, f"{len(act):,} rows, expected {len(exp):,}"
    if set(map(str, exp.columns)) != set(map(str, act.columns)):
        return False, f"columns {sorted(map(str, act.columns))}, expected {sorted(map(str, exp.columns))}"
    cols = list(exp.columns)
    act = act[cols]
    if to_library is not None and not isinstance(act, pd.DataFrame):
        exp = to_library(exp)
    if order.startswith("key:"):
        key = order.split(":", 1)[1]
        if not bool(agree(exp[key] == act[key], exp[key], act[key]).all()):
            return False, f"not sorted like pandas by {key}"
    if order != "rows":
        # Rows as a multiset: both sides in one canonical order (ties broken by every column).
        exp = exp.sort_values(cols).reset_index(drop=True)
        act = act.sort_values(cols).reset_index(drop=True)
    for col in cols:
        a, e = act[col], exp[col]
        if str(e.dtype).startswith("float"):
            # Infinities (a user's file may hold them) only by equality: inf - inf is NaN, and a tolerance
            # relative to an infinity would accept any value.
            within = ((a - e).abs() <= atol + rtol * e.abs()) & (e.abs() < float("inf"))
            close = agree(within | (a == e), a, e)
        else:
            close = agree(a == e, a, e)
        bad = int((~close).sum())
        if bad:
            return False, f"{bad:,} of {len(exp):,} values differ in column '{col}'"
    return True, f"{len(exp):,} rows identical" + (
        " (floats within tolerance)" if any(str(exp[c].dtype).startswith("float") for c in cols) else ""
    )


def results_match_polars(
    expected: pd.DataFrame, actual, order: str, rtol: float = 1e-7, atol: float = 1e-9
) -> tuple[bool, str]:
    """results_match for a Polars result, done in Polars (multi-threaded) so large checks stay fast; raises like it."""
    import polars as pl

    exp = pl.from_pandas(flatten_result(expected))
    if exp.height != actual.height:
        return False, f"{actual.height:,} rows, expected {exp.height:,}"
    if set(exp.columns) != set(actual.columns):
        return False, f"columns {sorted(actual.columns)}, expected {sorted(exp.columns)}"
    cols = exp.columns

    def normal(frame):
        # Categories compare as text, integers of any width as Int64, NaN as missing (pandas' answer cannot
        # tell them apart, and Polars sorts nulls first but NaN last).
        return frame.select(
            pl.col(c).cast(pl.String)
            if isinstance(frame.schema[c], (pl.Categorical, pl.Enum))
            else pl.col(c).cast(pl.Int64)
            if frame.schema[c].is_integer()
            else pl.col(c).fill_nan(None)
            if frame.schema[c].is_float()
            else pl.col(c)
            for c in cols
        )

    exp, act = normal(exp), normal(actual)
    if order.startswith("key:"):
        key = order.split(":", 1)[1]
        same = (exp[key] == act[key]).fill_null(False) | (exp[key].is_null() & act[key].is_null())
        if not same.all():  # a gap counts where it lies: `==` alone skips it
            return False, f"not sorted like pandas by {key}"
    if order != "rows":
        exp, act = exp.sort(cols), act.sort(cols)
    for col in cols:
        a, e = act[col], exp[col]
        if e.dtype.is_float():
            within = ((a - e).abs() <= atol + rtol * e.abs()) & e.is_finite()
            close = within.fill_null(False) | (a == e).fill_null(False) | (a.is_null() & e.is_null())
        else:
            close = (a == e).fill_null(False) | (a.is_null() & e.is_null())
        bad = int((~close).sum())
        if bad:
            return False, f"{bad:,} of {exp.height:,} values differ in column '{col}'"
    return True, f"{exp.height:,} rows identical (floats within tolerance)"


def invariant_check(op: str, df, lookup, result) -> tuple[bool, str]:
    """Check a result without a reference, from facts about the input (sizes only Dask-cuDF can hold).

    Every figure is computed from `df` by a different route than the op itself: row counts, key counts,
    sums over masks, group sums against counts × means, and for the sort the order inside and between
    partitions. Works on pandas, cuDF and Dask. Errors propagate: out of memory is reported by
    run_benchmark as a failed measurement, anything else is a bug.
    """

    def get(x):
        return x.compute() if hasattr(x, "compute") else x

    def host(x):
        x = get(x)
        return x.to_pandas() if hasattr(x, "to_pandas") else x

    def close(a, b):
        return abs(float(a) - float(b)) <= 1e-9 * max(abs(float(b)), 1.0) + 1e-6

    def count(frame):
        return int(get(frame.map_partitions(len).sum())) if hasattr(frame, "npartitions") else len(frame)

    n, rows = count(df), count(result)
    if op == "filter":
        mask = (df["value"] > 50.0) & (df["key_few"] < 50)
        want, want_sum = int(get(mask.sum())), get((df["value"] * mask).sum())
        bad = int(get(((result["value"] <= 50.0) | (result["key_few"] >= 50)).sum()))
        ok = rows == want and bad == 0 and close(get(result["value"].sum()), want_sum)
        return (
            ok,
            f"self-check: {rows:,} rows kept, {want:,} qualify, {bad:,} that should not, value sums",
        )
    if op in ("groupby_few", "groupby_many"):
        key = "key_few" if op == "groupby_few" else "key_many"
        counts, sums = result[("value", "count")], result[("value", "sum")]
        counted = int(get(counts.sum()))
        ok = counted == n and rows == int(get(df[key].nunique()))
        ok = ok and close(get(sums.sum()), get(df["value"].sum()))
        if ("value", "mean") in result.columns:  # each group's mean × count is its sum
            diff = (result[("value", "mean")] * counts - sums).abs() - (1e-9 * sums.abs() + 1e-6)
            ok = ok and int(get((diff > 0).sum())) == 0
        if ("value", "max") in result.columns:
            ok = ok and close(get(result[("value", "max")].max()), get(df["value"].max()))
        return ok, f"self-check: {rows:,} groups, counts add up to {counted:,} of {n:,}, sums, means, max"
    if op == "join":
        prices = host(lookup).set_index("key_many")["price"]
        hit = df["key_many"].isin(list(prices.index))
        want = int(get(hit.sum()))
        ok = rows == want and close(get(result["value"].sum()), get((df["value"] * hit).sum()))
        per_key = host(df["key_many"].value_counts())  # rows per key, then price × rows summed
        want_price = float((per_key.reindex(prices.index, fill_value=0) * prices).sum())
        ok = ok and close(get(result["price"].sum()), want_price)
        return ok, f"self-check: {rows:,} joined rows, {want:,} rows have a key in the lookup, sums"
    if op == "sort":
        ok = rows == n and close(get(result["value"].sum()), get(df["value"].sum()))
        ok = ok and int(get(result["key_many"].sum())) == int(get(df["key_many"].sum()))
        col = result["value"]
        if hasattr(col, "to_delayed"):  # per partition where it lives: size, min, max, sorted inside
            import dask

            def stats(part):
                if len(part) == 0:
                    return 0, 0.0, 0.0, True
                return len(part), float(part.min()), float(part.max()), bool(part.is_monotonic_increasing)

            parts = [p for p in dask.compute(*[dask.delayed(stats)(p) for p in col.to_delayed()]) if p[0]]
            ordered = all(p[3] for p in parts) and all(
                a[2] <= b[1] for a, b in zip(parts, parts[1:], strict=False)
            )
        else:
            ordered = bool(col.is_monotonic_increasing)
        ok = ok and ordered
        return ok, f"self-check: {rows:,} of {n:,} rows, {'in' if ordered else 'NOT in'} order, sums"
    return False, f"no self-check for {op}"


def check_label(checks: list[tuple], unchecked: list[str]) -> str:
    """The result-check cell of one (size, op): ✓/✗, against pandas or by self-check, or not checked."""
    if any(not ok for _, ok, _, _ in checks):
        return "✗"
    parts = []
    if any(by == "pandas" for *_, by in checks):
        parts.append("✓ vs pandas")
    if any(by == "self-check" for *_, by in checks):
        parts.append("✓ self-check")
    if unchecked:
        parts.append("not checked: " + ", ".join(ENGINE_LABELS.get(e, e) for e in unchecked))
    return "; ".join(parts)


def check_messages(
    summary: pd.DataFrame, errors: list[str], cause: Callable | None = None
) -> list[tuple[str, str]]:
    """The callouts above the results: (kind, markdown) for disagreements, failures, unchecked and passed checks.

    `cause(op, rows, detail)` names a known reason for a disagreement ("" when it knows none).
    """
    out = []
    bad = summary[summary["match"] == "✗"] if len(summary) else summary
    if len(bad):  # never hidden behind anything else
        whys = [cause(r.op, r.rows, r.detail) if cause else "" for r in bad.itertuples()]
        out.append(
            (
                "danger",
                "## ✗ Results DISAGREE\n\n"
                + "\n".join(
                    f"- **{r.op}** at {format_rows(r.rows)} rows: {r.detail}" + (f" — {why}" if why else "")
                    for r, why in zip(bad.itertuples(), whys, strict=True)
                )
                + (
                    "\n\nThe engines did different work here, so these operations' speed-ups compare unlike things."
                    if all(whys)
                    else "\n\nThe speedups for these operations are meaningless until this is explained."
                ),
            )
        )
    if errors:
        out.append(
            (
                "danger",
                "**Some measurements failed or were skipped:**\n\n" + "\n".join(f"- {e}" for e in errors),
            )
        )
    unchecked = summary[summary["unchecked"] != ""] if "unchecked" in summary else summary.iloc[0:0]
    if len(unchecked):
        out.append(
            (
                "warn",
                "**Not checked** — pandas, the reference, has no result for these, so nothing was compared:\n\n"
                + "\n".join(
                    f"- **{r.op}** at {format_rows(r.rows)} rows: "
                    + ", ".join(ENGINE_LABELS.get(e, e) for e in r.unchecked.split(","))
                    for r in unchecked.itertuples()
                ),
            )
        )
    checked = summary[summary["match"] != ""] if len(summary) else summary
    if len(checked) and not len(bad):
        by = {b for r in checked.itertuples() for b in r.checked_by.split(",") if b}
        engines = sorted({d.split(":")[0] for r in checked.itertuples() for d in r.detail.split("; ")})
        names = ", ".join(ENGINE_LABELS.get(e, e) for e in engines)
        compared = sum(len(r.detail.split("; ")) for r in checked.itertuples())  # one per engine and pair
        if by == {"pandas"}:
            text = (
                f"**✓ Every result matches pandas** — {compared} checks of {names} over {len(checked)} "
                "(size, operation) pairs: same rows, floats within 1e-7 relative."
            )
        else:
            text = (
                f"**✓ Every check passed** — {len(checked)} (size, operation) pairs of {names}: "
                + ("compared with pandas where pandas ran, " if "pandas" in by else "")
                + "self-checked from the input where it did not (see *Dask-cuDF* below)."
            )
        out.append(("success", text))
    if not len(checked) and not len(unchecked):
        out.append(("neutral", "pandas alone ran: there is no second result to check."))
    return out
