"""Learner texts about the method: the baseline, the ops, cudf.pandas, multi-GPU and measurement."""

from __future__ import annotations

import math

from gpu_notebooks.rapids_benchmark.formatting import (
    ENGINE_LABELS,
    fmt_ratio,
    fmt_seconds,
    format_rows,
)
from gpu_notebooks.text import count_of

NUMBER_WORDS = "no one two three four five six seven eight nine ten eleven twelve".split()


def count_words(n: int) -> str:
    """3 → 'three'; past twelve, the digits."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else f"{n:,}"


def intro_text(names: list[str], samples_per_s: float) -> str:
    """The app's opening paragraphs: the operations' count and list from `names`, the sampling rate given."""
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    return (
        "# RAPIDS cuDF vs pandas — what does the GPU really buy you?\n\n"
        f"This app runs the same {count_words(len(names))} DataFrame operations — **{listed}** — with "
        "**pandas** on the CPU (beside **Polars** and **DuckDB** on all cores, where installed) and **cuDF** on "
        "your NVIDIA GPU, and measures them honestly: a warm-up call that is not counted, several timed repeats "
        "reported as **median with min/max**, the GPU **synchronized** before the clock stops, and the copies "
        "between host and GPU timed **separately**. Every cuDF result is compared with pandas' and marked ✓ or "
        "✗.\n\n"
        f"While it runs, NVML samplers record what the GPU is doing {count_words(round(samples_per_s))} times "
        "a second — utilization, power and clocks, and on Hopper and newer GPUs what the SMs, Tensor Cores, "
        "memory and PCIe really did (GPM) — so you can see each operation on the timeline below, with its "
        "energy and bandwidth beside its result. No GPU? The app still runs the whole pandas benchmark and "
        "tells you what is missing."
    )


def explain_baseline(host: dict, last: dict | None) -> str:
    """'Is pandas a fair baseline?' with this run's pandas, Polars and cuDF numbers."""
    text = [
        f"pandas runs each of these operations on **one core**; this machine has {host['cpu_count']}. Engines "
        "such as **Polars** and **DuckDB** (SQL) are columnar and multi-threaded: they split the rows across all cores, vectorise "
        "with SIMD and plan the query before running it. Comparing a GPU with single-threaded pandas "
        "therefore mixes two gains — *parallel columnar execution* and *the GPU itself*.",
        "",
        "So the table shows both: **cuDF vs pandas** (what you gain if you use pandas today) and **cuDF vs the "
        "fastest CPU engine** (what the GPU itself buys). The GPU still wins because its memory is several times "
        "faster than the CPU's and it runs tens of thousands of threads. It wins *least* where the CPU engine is "
        "already efficient.",
        "",
        "**Polars on the GPU.** With `cudf-polars` installed, the very same Polars code runs on the GPU with "
        '`collect(engine="gpu")`: no rewrite. Its input and output stay in host memory, so every collect '
        "copies data to the GPU and back — compare it with cuDF's *with copies* figure. Not every Polars "
        "feature runs there: cudf-polars 26.10 rejects categorical columns, so this app gives the GPU engine "
        "the `category` column as strings. By default an unsupported query falls back to the CPU without a "
        "word; this app asks for `raise_on_fail=True`, so a fallback shows as an error instead of a CPU time "
        "labelled GPU.",
    ]
    if last and ("polars_median_s" in last["summary"] or "duckdb_median_s" in last["summary"]):
        s = last["summary"]
        top = s[s["rows"] == s["rows"].max()]
        text.append(f"\n**This run, {format_rows(top['rows'].iloc[0])} rows:**\n")
        text.append(
            "| op | pandas | Polars | DuckDB | fastest CPU engine | cuDF | Polars GPU | cuDF vs fastest CPU |"
        )
        text.append("|---|---|---|---|---|---|---|---|")

        def cell(row, col):
            value = getattr(row, col, None) if col in s else None
            return fmt_seconds(value) if value is not None and value == value else "—"

        for r in top.itertuples():
            vs = (
                f"{r.speedup_vs_cpu:,.1f}×"
                if "speedup_vs_cpu" in s and r.speedup_vs_cpu == r.speedup_vs_cpu
                else "—"
            )
            fastest = ENGINE_LABELS.get(r.fastest_cpu, "—") if isinstance(r.fastest_cpu, str) else "—"
            text.append(
                f"| {r.op} | {cell(r, 'pandas_median_s')} | {cell(r, 'polars_median_s')} | "
                f"{cell(r, 'duckdb_median_s')} | {fastest} | "
                f"{cell(r, 'cudf_median_s')} | {cell(r, 'polars_gpu_median_s')} | {vs} |"
            )
    return "\n".join(text)


def explain_cudf_pandas(last: dict | None) -> str:
    """How cudf.pandas works, when fallbacks cost more than they save, how to turn it on; this run's numbers."""
    text = [
        "**How it works.** After `cudf.pandas.install()` (or `python -m cudf.pandas script.py`, or "
        "`%load_ext cudf.pandas` in Jupyter), `import pandas` gives proxy objects. Each call is tried on the "
        "*fast path* (cuDF, on the GPU) first; what cuDF cannot do runs on the *slow path* (real pandas, on the "
        "CPU), and the proxy copies the data between GPU and host memory as the path changes.",
        "",
        "**When a fallback costs more than it saves:** a CPU step in the middle of GPU work copies the data to "
        "the host and, for the next GPU step, back again; a row-wise Python function (`apply(..., axis=1)`) "
        "runs on the CPU at pandas' speed plus those copies. The profiler below names every such call.",
        "",
        "**Turning it on:** in a script, `python -m cudf.pandas script.py`; in Jupyter, `%load_ext cudf.pandas` "
        "before `import pandas`; in marimo (or any program), `import cudf.pandas; cudf.pandas.install()` "
        "before the first `import pandas` of the process. This app imports pandas at start-up for its other "
        "engines, so it runs the accelerated code in a worker process. See what ran where with "
        "`from cudf.pandas import Profiler` and `with Profiler() as p: ...; p.print_per_function_stats()`.",
    ]
    if last and "cudf_pandas_median_s" in last["summary"]:
        s = last["summary"].dropna(subset=["cudf_pandas_median_s"])
        top = s[s["rows"] == s["rows"].max()]
        parts = []
        for r in top.itertuples():
            vs = (
                f", {fmt_ratio(r.cudf_pandas_vs_cudf)} the speed of hand-written cuDF"
                if getattr(r, "cudf_pandas_vs_cudf", math.nan) == getattr(r, "cudf_pandas_vs_cudf", 0)
                else ""
            )
            parts.append(f"{r.op} {fmt_seconds(r.cudf_pandas_median_s)}{vs}")
        text.append(f"\n**This run, {format_rows(int(top['rows'].max()))} rows:** " + "; ".join(parts) + ".")
    else:
        text.append("\n_Switch on **cudf.pandas** (needs cuDF on a GPU) and run to see this card's numbers._")
    return "\n".join(text)


def explain_multi_gpu(gpus: list[dict], last: dict | None) -> str:
    """When several GPUs help, what a shuffle costs, and why small data gets slower."""
    total = sum(g["memory_total_gb"] for g in gpus)
    p = max(len(gpus), 2)
    moved = f"{p - 1}/{p} with {p} GPUs" + (" (this machine)" if len(gpus) >= 2 else "")
    text = [
        f"This machine has **{count_of(len(gpus), 'GPU')}**"
        + (f" with {total:,.0f} GB of memory together." if gpus else "."),
        "",
        "**Dask-cuDF** splits one DataFrame into partitions — here one per generated chunk of at most 10M rows — "
        "and runs one Dask worker per GPU (`dask-cuda`'s `LocalCUDACluster`). The app generates each partition "
        "on its worker, so the data never passes through this process, and persists it before timing.",
        "",
        "- **When it helps:** data that does not fit one card (the size limit becomes the sum of all GPUs' "
        "memory) and operations that are embarrassingly parallel — filters and group-bys combine small "
        "per-partition results.",
        "- **What a shuffle costs:** a sort must sample the data to choose split points, then send each row to "
        "the worker that owns its range. With P workers and evenly spread keys about (P−1)/P of the rows leave "
        f"their worker ({moved}). This app starts the cluster with Dask's default TCP protocol, so each "
        "partition travels GPU → host memory → socket → host memory → GPU; GPU-to-GPU transfers over NVLink "
        'happen only on a UCX cluster (`LocalCUDACluster(protocol="ucx")`, with UCX installed). A join with our '
        "small lookup table avoids the shuffle: the table (one partition) is broadcast to every worker.",
        "- **Why small data gets slower:** each step becomes a task graph; the scheduler, inter-process messages "
        "and per-partition kernel launches add milliseconds that one GPU never pays. On 10M rows one GPU usually "
        "wins; Dask pays off near and beyond one card's memory.",
        "- **Checked without a reference:** at sizes no single GPU (or pandas) can hold there is nothing to "
        "compare with, so each Dask-cuDF result is checked against facts computed from the input by another "
        "route — rows that pass the filter, group counts adding up to the row count, sums, join keys, and the "
        "sort's order inside and between partitions. The table says *self-check* there.",
    ]
    if last and "dask_vs_cudf" in last["summary"]:
        s = last["summary"].dropna(subset=["dask_vs_cudf"])
        if len(s):
            text.append(
                "\n**This run:** Dask-cuDF vs one-GPU cuDF — "
                + ", ".join(f"{r.op} {r.dask_vs_cudf:,.2f}× at {format_rows(r.rows)}" for r in s.itertuples())
                + "."
            )
    return "\n".join(text)


def csv_parquet_size_text(last: dict | None) -> str:
    """How much larger this run's CSV file was than its Parquet file, at the largest size that wrote both."""
    sizes = [g for g in (last or {}).get("bench", {}).get("generation", []) if g.get("file_bytes")]
    if not sizes:
        return " (a run with the file operations shows by how much on this data)"
    top = max(sizes, key=lambda g: g["rows"])
    csv, parquet = top["file_bytes"]["csv"], top["file_bytes"]["parquet"]
    return (
        f" (in this run, at {format_rows(top['rows'])} rows: {csv / 1e6:,.1f} MB of CSV against "
        f"{parquet / 1e6:,.1f} MB of Parquet, {csv / parquet:.1f}×)"
    )


def explain_operations(last: dict | None) -> str:
    """What each op does on CPU and GPU and what bounds it, with this run's times when there are some."""
    times = {}
    if last is not None and "cudf_median_s" in last["summary"]:
        s = last["summary"]
        top = s[s["rows"] == s["rows"].max()]
        times = {
            r.op: f" _This run: pandas {fmt_seconds(r.pandas_median_s)}, cuDF {fmt_seconds(r.cudf_median_s)}._"
            for r in top.itertuples()
        }
    return "\n".join(
        [
            "| Operation | On the CPU (pandas) | On the GPU (cuDF) | Bound by |",
            "|---|---|---|---|",
            "| **filter** | evaluates the mask column by column, then copies the kept rows | one thread per row "
            "computes the mask; a stream compaction (prefix sum) gathers the kept rows | memory traffic over several passes |",
            "| **groupby, 100 keys** (sum, mean, max, count of `value`; std of `value2`) | hashes each key, updates "
            "100 groups' accumulators one row at a time; they fit in cache | since cuDF 24.12 (PR #16619) a thread "
            "block that sees fewer than 128 distinct keys aggregates its rows in shared memory, then merges one "
            "partial result per key into global memory; with 100 keys every block takes this path | not "
            "established: why it is slower than the 100k-key op (more aggregations and columns among the "
            "candidates) is a hypothesis until profiled |",
            "| **groupby, 100k keys** (sum, count of `value`) | a hash table of 100k groups, an estimated few MB, "
            "which can still sit in the CPU's L2/L3 caches (an estimate, not measured) | blocks see more than 127 "
            "keys, so they update a global-memory hash set with atomics; libcudf sizes that set by the number of "
            "input rows, not of distinct keys | hashing and random memory access |",
            "| **join** | builds a hash table on the lookup table, probes it row by row, gathers both sides | "
            "builds the hash table in GPU memory, probes all rows in parallel, gathers | random access, output size |",
            "| **sort** | comparison sort, O(n log n), on one core, then reorders every column | radix sort: a few "
            "passes over the key bits, then a gather of every column | several full passes over memory |",
            "| **read_parquet** | pyarrow decompresses (snappy) and decodes the column chunks on CPU threads, then "
            "builds pandas columns | cuDF copies the compressed file to the GPU and decompresses and decodes it there "
            "(nvCOMP, thousands of pages at once) | the disk or page cache, then decode work |",
            "| **read_csv** | pyarrow's CSV reader parses text on CPU threads: find row breaks, convert every number "
            "from digits | cuDF parses on the GPU, many rows per thread block | parsing: every value is text |",
            "| **pipeline** | the whole job in one library: read, filter, join, derive, group, sort, answer in pandas "
            "| the same code on cuDF; only the 56-row answer comes back | whatever step dominates |",
            "",
            "**Why CSV differs from Parquet:** Parquet stores typed, compressed columns with their schema, so a "
            "reader decodes binary data; CSV is text, so every value must be found and converted from digits, the "
            f"file is larger{csv_parquet_size_text(last)}, and types are guessed. Reading is an operation here "
            "because real jobs start from files: the file's bytes never have to pass through a pandas frame.",
            "",
            *[f"- **{op}**:{t}" for op, t in times.items()],
        ]
    )


def explain_measurement(last: dict | None) -> str:
    """Warm-up, synchronization, transfers, median — and the cost of one naive timing, from this run."""
    text = [
        "1. **Warm-up.** The first cuDF call loads GPU kernels and makes its first allocations, and a GPU that sat "
        "idle while pandas ran has dropped its clocks: cuDF's warm-up repeats for at least 0.25 s, none of it "
        "counted. "
        "pandas has no such start-up cost, so its warm-up runs on a 1M-row slice to save minutes.",
        "2. **Synchronization.** GPU work is queued asynchronously: a timer stopped when the Python call returns "
        "can miss the work still running. We call `cudaDeviceSynchronize` before every clock stop.",
        "3. **Repeats and median.** Each op is timed several times; the median ignores one-off hiccups and the "
        "min–max range shows the spread.",
        "4. **Transfers apart.** Copying data to the GPU (`cudf.from_pandas`) and results back (`.to_pandas()`) "
        "are timed separately: the *on GPU* speedup is what you get when data lives on the GPU, the "
        "*end-to-end* speedup what you get for a single operation on pandas data.",
        "5. **Results stay on the GPU** while timed, and every result is compared with pandas'.",
    ]
    if last and "cudf_median_s" in last["summary"]:
        s = last["summary"]
        r = s[s["rows"] == s["rows"].max()].iloc[0]
        naive = r["cudf_warmup_s"] + r["d2h_s"]
        text.append(
            f"\n**What one naive timing would have said (this run, {r['op']}, {format_rows(r['rows'])} rows):** "
            f"timing a single `op().to_pandas()` gives {fmt_seconds(naive)} — the first call plus the copy back — "
            f"for a speedup of **{r['pandas_median_s'] / naive:,.1f}×**, while the honest median on the GPU is "
            f"{fmt_seconds(r['cudf_median_s'])}, **{r['speedup']:,.1f}×**."
        )
    return "\n".join(text)


def fallback_table_intro(sample_rows: int, fallback_step: str) -> str:
    """The heading and paragraph above cudf.pandas' fallback table: how the profile was taken (on a sample of
    `sample_rows` rows), and why; `fallback_step` is the op included to show a fallback."""
    return (
        "### What ran on the GPU under cudf.pandas, and what fell back\n\n"
        "From `cudf.pandas.profiler.Profiler`, one profiled call per operation on a "
        f"{sample_rows:,}-row sample (the profiler traces every Python call, so a fallback that runs "
        "Python per row is far slower under it; the timings above come from unprofiled runs): each pandas "
        f"function that ran on the GPU and each that fell back to the CPU. **{fallback_step}** is a realistic "
        "step included to show what a fallback looks like and what it costs."
    )
