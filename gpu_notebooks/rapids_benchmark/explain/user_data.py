"""Learner texts for your own table: what happens to the file, what it holds, what runs on it and how it went."""

from __future__ import annotations

from gpu_notebooks.rapids_benchmark.data import N_FEW_KEYS, N_MANY_KEYS
from gpu_notebooks.rapids_benchmark.explain.results import speed_range_text
from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS, fmt_seconds, format_rows
from gpu_notebooks.rapids_benchmark.user_dataset import MAGNITUDE_TOLERANCE, PRICE_MAX
from gpu_notebooks.text import count_of

# The CPU engines the summary puts against pandas, in this order (cuDF has its own sentence).
CPU_ENGINES_AGAINST_PANDAS = ("polars", "duckdb", "dask")
KIND_WORDS = {
    "number": "number",
    "integer": "integer",
    "text": "text",
    "date": "date/time",
    "empty": "empty",
    "other": "other",
}


def user_intro_text(cap_bytes: int, server_table: bool) -> str:
    """The section's opening: what to upload, the cap, where the file lives and for how long."""
    server = (
        " This server was also started with a table of its own (`-- --data`): it is used until you upload one."
        if server_table
        else ""
    )
    return (
        "## 5 · Your own table\n\n"
        "What would the GPU buy **you**? Upload a **CSV** (comma-separated, UTF-8, a header line) or a "
        f"**Parquet** file of up to **{cap_bytes / 1e6:,.0f} MB**, map its columns to the roles the operations "
        "use, and run the same engines, timer and checks as above on it: a warm-up, repeats, median and "
        "min–max, every result compared with pandas'. A larger table: whoever starts the server can pass "
        "`marimo run rapids_benchmark_dashboard.py -- --data FILE`.\n\n"
        "Your file is kept in a private folder of **this session** only — no other viewer can see it — and "
        "is deleted when you close the page (the session ends), when you click *Delete my file*, or when the "
        f"server stops.{server}"
    )


def user_table_text(table) -> str:
    """What the file holds: format, size, rows, and each column's kind and missing values."""
    lines = [
        f"**{escape(table.label)}** — {table.kind.upper()}, {table.file_bytes / 1e6:,.1f} MB on disk, "
        f"**{table.rows:,} rows**, {len(table.columns)} columns.\n",
        "| column | kind | missing | note |",
        "|---|---|---|---|",
    ]
    for c in table.columns:
        missing = "not recorded" if c.nulls is None else f"{c.nulls:,}"
        lines.append(f"| {escape(c.name)} | {KIND_WORDS[c.kind]} | {missing} | {escape(c.note)} |")
    lines += [f"\n_{note}_" for note in table.notes]
    return "\n".join(lines)


def user_dataset_text(dataset, ops_text: dict) -> str:
    """What the run will take: the frame's rows and bytes, the key's cardinality, rows left out, and each op."""
    r = dataset.roles
    parts = [
        f"**In memory:** {dataset.rows:,} rows × {len(dataset.frame.columns)} columns, "
        f"{dataset.bytes_per_row * dataset.rows / 1e6:,.1f} MB ({dataset.bytes_per_row:,.0f} B a row). "
        f"The key **{escape(r['key'])}** has **{dataset.key_count:,} distinct values** — "
        + (
            f"few keys: many rows share each group, as in the app's {N_FEW_KEYS:,}-key group-by."
            if dataset.group_op == "groupby_few"
            else f"many keys: small groups, hashing dominates, as in the app's {N_MANY_KEYS:,}-key group-by."
        )
    ]
    if not dataset.complete:
        parts.append(
            f"**A sample:** the whole table ({dataset.table.rows:,} rows) does not fit the memory free here "
            f"for the engines that run, so a seeded random sample of {dataset.source_rows:,} rows was read."
        )
    if dataset.dropped:
        parts.append(
            f"**Left out:** {dataset.dropped:,} rows with a missing (or infinite) value in a role column — the "
            "engines disagree on what such a value means. The read and the pipeline read the file as it is "
            f"({dataset.table.rows:,} rows); the results label every operation with the {dataset.rows:,} rows the "
            "others work on."
        )
    parts.append(
        "**The operations** (the join's lookup holds every other distinct key, "
        f"{len(dataset.lookup):,} keys, with a seeded price below {PRICE_MAX:g} and one of "
        f"{dataset.lookup['region'].nunique()} regions):\n\n"
        + "\n".join(f"- **{op}** — {ops_text[op]}" for op in dataset.ops)
    )
    parts.append(
        f"**The files:** at the full size the {dataset.table.kind.upper()} read and the pipeline read "
        "your file, byte for byte as uploaded; the smaller sizes of a sweep read a random sample of its rows "
        f"(every column) that the app writes in the same format into your session's folder. Floats agree "
        f"within 1e-7 relative or {dataset.atol:.2g} absolute ({MAGNITUDE_TOLERANCE:g} of the values' total "
        f"magnitude × the largest price, {PRICE_MAX:g}): sums of signed values can cancel to nearly zero."
    )
    return "\n\n".join(parts)


def user_run_text(bench: dict, plan: dict, left_out: list[str]) -> str:
    """The run's one-line outcome, and the engines that did not take part."""
    text = (
        f"Finished in **{bench['wall_s']:.1f} s** — {len(bench['records'])} measurements of your table over "
        f"{count_of(len(plan['sizes']), 'size')} ({', '.join(format_rows(n) for n in plan['sizes'])} rows)."
    )
    if left_out:
        names = ", ".join(ENGINE_LABELS.get(e.split(":")[0], e) for e in left_out)
        text += f" Not run on your table: {names} (they run on the generated data only)."
    return text


def escape(text: str) -> str:
    """Text from a user's file, safe inside markdown (no links, tables or HTML from column names)."""
    out = str(text)
    for ch in "\\`*_[]<>|#":
        out = out.replace(ch, "\\" + ch)
    return out


def user_ops_text(spec: dict, roles: dict, key_count: int) -> dict:
    """Each op's line, in the user's column names (for the page and the results table)."""
    v, k, s = (f"**{escape(roles[r])}**" for r in ("value", "key", "sort"))
    what = "few" if spec["group_op"] == "groupby_few" else "many"
    return {
        "pipeline": f"read your file → {v} above the threshold → join → revenue by region → sort by revenue",
        spec["read_op"]: f"read {', '.join(f'**{escape(c)}**' for c in spec['names'])} from your file",
        "filter": f"keep the rows where {v} > {spec['threshold']:.6g} (the chosen quantile)",
        spec["group_op"]: f"group by {k} ({key_count:,} keys: {what}): sum, mean, max and count of {v}",
        "join": f"inner join on {k} with the lookup (price, region)",
        "sort": f"sort every row by {s}",
    }


def user_disagreement_causes(dataset):
    """cause(op, rows, detail) for check_messages: why a check on your table disagrees, where the file explains
    it (its blank lines in Polars' read); "" otherwise."""
    blank, rows_in_file = dataset.table.blank_lines, dataset.table.rows
    blank_read = (
        f"polars: {rows_in_file + blank:,} rows, expected {rows_in_file:,}"  # the file itself, read whole
    )

    def cause(op: str, rows: int, detail: str) -> str:
        if op == "read_csv" and blank and blank_read in detail:
            return (
                f"the file's {count_of(blank, 'blank line')}, which Polars reads as rows of empty values and "
                "the other engines skip (see the note under your table)"
            )
        return ""

    return cause


def user_summary_text(summary) -> str:
    """The run on your table in a few sentences from its numbers: the whole job, then the GPU against the CPU."""
    if summary.empty:
        return "_Nothing was measured: see the messages above._"
    n = int(summary["rows"].max())
    top = summary[summary["rows"] == n]
    lines = [f"**Your table at {format_rows(n)} rows:**"]
    job = top[top["op"] == "pipeline"]
    if len(job):
        row = job.iloc[0]
        times = {
            label: row[f"{e}_median_s"]
            for e, label in ENGINE_LABELS.items()
            if f"{e}_median_s" in row and row[f"{e}_median_s"] == row[f"{e}_median_s"]
        }
        lines.append(
            "the whole job (read, filter, join, group, sort) took "
            + ", ".join(f"**{k}** {fmt_seconds(v)}" for k, v in sorted(times.items(), key=lambda kv: kv[1]))
            + "."
        )
    for engine in CPU_ENGINES_AGAINST_PANDAS:  # every CPU engine that ran, said the same way
        if f"{engine}_speedup" in top and top[f"{engine}_speedup"].notna().any():
            label = "Polars on all cores" if engine == "polars" else ENGINE_LABELS[engine]
            lines.append(f"{label} was {speed_range_text(top[f'{engine}_speedup'], 'pandas')}.")
    if "speedup_vs_cpu" in top:
        lines.append(
            f"cuDF was {speed_range_text(top['speedup_vs_cpu'], 'the fastest CPU engine')} "
            f"and {speed_range_text(top['speedup'], 'pandas')} per operation (data already on the GPU)."
        )
    else:
        lines.append("cuDF did not run (no GPU with cuDF here): the GPU columns stay empty.")
    return " ".join(lines)
