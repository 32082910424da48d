# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "marimo==0.25.2",
#     "pandas>=3.0,<3.1",
#     "numpy>=2.0",
#     "pyarrow>=20",
#     "altair>=6,<7",
#     "nvidia-ml-py>=12",
#     "psutil>=5.9",
#     "polars>=1.35,<1.45",
#     "duckdb>=1.1",
# ]
# ///
"""RAPIDS cuDF vs pandas: honest DataFrame benchmarks with live NVML GPU metrics."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="RAPIDS cuDF vs pandas")

with app.setup:
    import contextlib
    import functools
    import gc
    import math
    import os
    import re
    import statistics
    import sys
    import tempfile
    import threading
    import time
    import traceback
    from collections.abc import Callable
    from dataclasses import dataclass, field
    from typing import Any

    import altair as alt
    import marimo as mo
    import numpy as np
    import pandas as pd

    # The five operations, in the order they run. Each is one function that receives the library.
    OPS = {
        "filter": "Filter: keep rows where value > 50 and key_few < 50",
        "groupby_few": "Group by 100 keys: sum, mean, max, std, count",
        "groupby_many": "Group by 100k keys: sum and count",
        "join": "Inner join with a 50k-row lookup table",
        "sort": "Sort all rows by a float column",
    }
    # Operations that start from a file (written once per size, not timed) and the whole-job pipeline.
    FILE_OPS = {
        "read_parquet": "Read the data from a Parquet file (snappy)",
        "read_csv": "Read the data from a CSV file",
        "pipeline": "Pipeline: read Parquet → filter → join → group by → sort → small result in pandas",
    }
    CACHE_DIR_NAME = "rapids-benchmark-data-cache"
    # Disk a size's files take, per row: Parquet ~20 B, CSV ~50 B (measured at 1M rows), with margin.
    FILE_BYTES_PER_ROW = 90
    # How each op's result is compared with pandas: in row order, as a set of rows, or ordered by a key.
    DASK_SLOW_SORT_ROWS = 200_000_000  # above this, Dask-cuDF's TCP shuffle sort takes minutes per pass
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
    ROW_STEPS = [
        1_000,
        10_000,
        100_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        20_000_000,
        50_000_000,
        100_000_000,
        200_000_000,
        500_000_000,
    ]
    # Every op the app offers, in the order they run and are shown: the whole job first, then the reads.
    ALL_OPS = {
        "pipeline": FILE_OPS["pipeline"],
        "read_parquet": FILE_OPS["read_parquet"],
        "read_csv": FILE_OPS["read_csv"],
        **OPS,
    }
    N_FEW_KEYS = 100
    N_MANY_KEYS = 100_000
    CATEGORIES = ["books", "games", "garden", "grocery", "health", "home", "music", "sports"]
    # Peak working memory as a multiple of the input data: an op's result, the previous repeat's result
    # being freed, sort/join scratch and the comparison copy. Measured peaks stay below these.
    # measured (NVML, CUDA context included): 10.4 GB for 100M rows, 69.3 GB for 500M rows (139 B/row)
    GPU_WORKING_FACTOR = 6.0
    # Host working memory per engine, as multiples of the data frame's bytes, summed over the engines a run
    # uses. Measured with bench/rapids_host_memory.py (peak RSS above the baseline over one run of the five
    # ops; 2-core 24 GB CPU machine, 2026-12-01), then × 1.2 margin. pandas' share holds the data, its
    # generation and the reference results kept while the other engines run.
    HOST_FACTORS = {
        "pandas": 4.8,  # measured 3.98× at 2M rows, 2.88× at 10M
        "polars": 9.0,  # measured 6.58× at 2M, 7.45× at 10M: its frame, results, checks made in Polars
        "cudf": 6.0,  # host side only (results copied back and checked): measured 4.08× at 2M, 4.95× at 10M
        "polars_gpu": 9.3,  # its string-category frame and host results: measured 7.24× at 2M, 7.74× at 10M
        "dask": 4.8,  # the CPU stand-in the tests use keeps its partitions in this process, like pandas
        "dask_cudf": 1.0,  # data lives in the workers' GPUs; results come back here only to be checked
        "duckdb": 12.7,  # measured 10.54× at 2M, 10.33× at 10M: Arrow results, checks in Polars, its buffers
        # Not measured: this process regenerates the data and the reference results to check the worker's
        # (read back from Parquet); the worker holds the proxies' host copies. An estimate, like Polars'.
        "cudf_pandas": 9.0,
    }
    # The sum is conservative: all four together peaked at 13.7× at 2M rows against a 21.9× sum of shares.
    HOST_WORKING_FACTOR = HOST_FACTORS["pandas"] + HOST_FACTORS["polars"]  # the CPU engines of a default run
    MEMORY_HEADROOM = 0.85
    HOST_TO_GPU = "host→GPU copy"
    # pandas has no JIT and no device pool: its warm-up runs on a slice of this many rows.
    CPU_WARMUP_ROWS = 1_000_000
    DATA_CHUNK_ROWS = 10_000_000
    # GPU warm-up lasts at least this long, so the clocks have left idle before the first timed call.
    GPU_MIN_WARMUP_S = 0.25
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
    # cudf.pandas: the user's snippet is capped in size and time; the worker's whole run in time.
    SNIPPET_MAX_CHARS = 4_000
    SNIPPET_TIMEOUT_S = 60
    WORKER_TIMEOUT_S = 300  # a whole cudf.pandas run; the GPU lock is held meanwhile
    # The realistic step shown falling back to the CPU under cudf.pandas. Candidates are measured by
    # bench/cudf_pandas_fallbacks.py on the device; swap the name here once one is measured to fall back.
    FALLBACK_STEP = "rowwise_label"
    # cudf.pandas' profiler inspects the whole call stack on every proxied call: a step that runs Python per
    # row costs per row under it (on an H100, 50,000 rows of `apply(axis=1)` ran for hours). Which functions
    # fall back does not depend on the row count, so the profiled call runs on a few hundred rows and is
    # stopped after PROFILE_TIMEOUT_S whatever it does (see profile_fallbacks).
    PROFILE_SAMPLE_ROWS = 300
    PROFILE_TIMEOUT_S = 20.0
    # RAPIDS platform support (26.x): CUDA 12 wheels from Volta, CUDA 13 wheels from Turing (CUDA 13 dropped Volta).
    CUDF_GPU_REQUIREMENT = (
        "compute capability 7.0 (Volta) or newer with the CUDA 12 wheels, `cudf-cu12`; "
        "7.5 (Turing) or newer with the CUDA 13 wheels, `cudf-cu13`"
    )
    # One machine-wide lock file shared with the fine-tuning app; tests point GPU_NOTEBOOKS_LOCK_PATH elsewhere.
    GPU_LOCK_ENV = "GPU_NOTEBOOKS_LOCK_PATH"
    DEFAULT_GPU_LOCK_PATH = os.path.join(tempfile.gettempdir(), "gpu-learning-notebooks.lock")
    GPM_FIELDS = {  # GpmSampler's sample keys → pynvml's NVML_GPM_METRIC_* names (shared with the fine-tuning app)
        "sm_active_pct": "NVML_GPM_METRIC_SM_UTIL",
        "sm_occupancy_pct": "NVML_GPM_METRIC_SM_OCCUPANCY",
        "tensor_active_pct": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
        "hmma_active_pct": "NVML_GPM_METRIC_HMMA_TENSOR_UTIL",
        "dram_bw_pct": "NVML_GPM_METRIC_DRAM_BW_UTIL",
        "pcie_rx_bytes_s": "NVML_GPM_METRIC_PCIE_RX_PER_SEC",
        "pcie_tx_bytes_s": "NVML_GPM_METRIC_PCIE_TX_PER_SEC",
    }
    PROBE_SECONDS = 1.5  # each workload of the "what utilization hides" probe
    # its buffers: two 8192² FP16 matrices and two 512 MiB copy buffers (arithmetic)
    PROBE_BYTES = 2 * 8192**2 * 2 + 2 * 512 * 2**20
    GPM_HZ = 10.0  # GPM windows per second and GPU (one window = the mean between two GPM samples)
    # An op's GPM figures count only when its timed repeats fill at least this share of the windows they
    # touch; below it the windows mostly hold other work (warm-up, checks, idle) and the op is marked short.
    GPM_MIN_COVER = 0.5
    # The roofline labels' thresholds (the app's choice, not measurements): an op within this many times its
    # time on FLOOR_ROWS rows is overhead-bound; one whose achieved bandwidth (bytes_touched ÷ median) is at
    # least this share of the card's measured device-to-device copy rate is memory-bound.
    OVERHEAD_BOUND_TIMES = 2.0
    MEMORY_BOUND_SHARE = 0.5
    FLOOR_ROWS = (
        1_000  # the per-op floor: each op timed on this many rows, where fixed costs are all there is
    )


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    # RAPIDS cuDF vs pandas — what does the GPU really buy you?

    This app runs the same five DataFrame operations — **filter, group by (few and many keys), join,
    sort** — with **pandas** on the CPU and **cuDF** on your NVIDIA GPU, and measures them honestly:
    a warm-up call that is not counted, several timed repeats reported as **median with min/max**, the GPU
    **synchronized** before the clock stops, and the copies between host and GPU timed **separately**.
    Every cuDF result is compared with pandas' and marked ✓ or ✗.

    While it runs, NVML samplers record what the GPU is doing ten times a second — utilization, power and
    clocks, and on Hopper and newer GPUs what the SMs, Tensor Cores, memory and PCIe really did (GPM) — so you
    can see each operation on the timeline below, with its energy and bandwidth beside its result. No GPU? The app still runs the
    whole pandas benchmark and tells you what is missing.
    """)
    return


@app.cell
def _():
    cli = parse_cli_args(mo.cli_args())
    return (cli,)


@app.cell
def _(cli):
    gpus = read_gpu_status()
    cudf_module, cudf_message = detect_cudf(len(gpus), force_cpu=cli["cpu"])
    polars_module, polars_gpu, polars_message = detect_polars(cudf_module, force_cpu=cli["cpu"])
    dask_ok, dask_message = detect_dask(len(gpus) if cudf_module is not None else 0)
    duckdb_module, duckdb_message = detect_duckdb()
    host = read_host_status()
    gpm_line = gpm_status_line(gpus)
    return (
        cudf_message,
        cudf_module,
        dask_message,
        dask_ok,
        duckdb_message,
        duckdb_module,
        gpm_line,
        gpus,
        host,
        polars_gpu,
        polars_message,
        polars_module,
    )


@app.cell(hide_code=True)
def _(cudf_message, cudf_module, duckdb_message, gpus, host, polars_message):
    _cards = [
        mo.stat(
            value=g["name"].replace("NVIDIA ", ""),
            label=f"GPU {g['index']}",
            caption=(
                f"{g['memory_total_gb']:.0f} GB · peak bandwidth {g['peak_bandwidth_gbs']:,.0f} GB/s"
                if g.get("peak_bandwidth_gbs")
                else f"{g['memory_total_gb']:.0f} GB"
            ),
            bordered=True,
        )
        for g in gpus
    ]
    _cards.append(
        mo.stat(
            value=f"{host['cpu_count']} cores",
            label="CPU",
            caption=f"{host['available_gb']:.0f} of {host['total_gb']:.0f} GB RAM free",
            bordered=True,
        )
    )
    _callout = mo.callout(
        mo.md(f"**GPU engine ready.** {cudf_message}")
        if cudf_module is not None
        else mo.md(
            f"**Running pandas only — the GPU side is missing.** {cudf_message}\n\n"
            "Everything below still works: you get the full pandas benchmark, and the speedup columns "
            "stay empty until cuDF can run."
        ),
        kind="success" if cudf_module is not None else "warn",
    )
    mo.vstack(
        [
            mo.md("## 1 · This machine"),
            mo.hstack(_cards, wrap=True, justify="start"),
            _callout,
            mo.md(f"**CPU engines:** pandas (one core). {polars_message} {duckdb_message}"),
        ]
    )
    return


@app.cell
def _():
    live_refresh = mo.ui.refresh(options=["1s", "2s", "5s"], default_interval="1s", label="Live GPU panel")
    return (live_refresh,)


@app.cell(hide_code=True)
def _(gpm_line, gpus, live_refresh):
    live_refresh
    _now = read_gpu_status() if gpus else []
    mo.vstack(
        [
            mo.hstack([mo.md("### Live GPU status"), live_refresh], justify="space-between"),
            live_gpu_panel(_now, gpm_line)
            if _now
            else mo.md("_No NVIDIA GPU visible to NVML, so there is nothing live to show._"),
        ]
    )
    return


@app.cell
def _():
    probe_button = mo.ui.run_button(label="Measure what utilization hides (a few seconds)", kind="neutral")
    return (probe_button,)


@app.cell(hide_code=True)
def _(gpus, probe_button):
    mo.vstack(
        [
            mo.md(
                "### What utilization hides\n\nNVML's classic *utilization* only says a kernel was running. "
                "Three workloads on this GPU — tiny kernels, a large matrix multiply, a memory copy — side by "
                f"side with what the GPM counters say, {PROBE_SECONDS:g} s each under the GPU lock:"
            ),
            probe_button,
        ]
    ) if gpus else mo.md("_What utilization hides: needs an NVIDIA GPU._")
    return


@app.cell(hide_code=True)
def _(cli, gpus, probe_button):
    # No user code runs here, so `marimo run` viewers may press it; the GPU lock keeps two runs apart.
    mo.stop(not gpus or not (probe_button.value or cli["probe"]))
    with gpu_lock(on_wait=lambda: mo.output.replace(mo.callout(mo.md(lock_wait_text(True)), kind="info"))):
        with mo.status.spinner("Tiny kernels, a matmul and a copy on GPU 0, with both samplers…"):
            _rows, _error = run_utilization_probe()
    mo.callout(
        mo.md(_error or utilization_probe_text(_rows, gpm_unavailable_reason(0))),
        kind="warn" if _error else "info",
    )
    return


@app.cell
def _(cli, cudf_module, dask_ok, gpus):
    _default_rows = cli["rows"] or (10_000_000 if cudf_module is not None else 1_000_000)
    rows_slider = mo.ui.slider(
        steps=ROW_STEPS, value=nearest_step(_default_rows), label="Rows", show_value=False, full_width=True
    )
    ops_select = mo.ui.multiselect(
        options={desc: name for name, desc in ALL_OPS.items()},
        value=[ALL_OPS[o] for o in (cli["ops"] or list(ALL_OPS))],
        label="Operations",
        full_width=True,  # long option names: the chips wrap inside the column instead of widening it
    )
    repeats_input = mo.ui.number(
        start=1, stop=20, value=cli["repeats"] or (1 if cli["smoke"] else 3), label="Timed repeats"
    )
    mode_radio = mo.ui.radio(
        options=["Single size", "Size sweep (1K → rows)"],
        value="Size sweep (1K → rows)" if cli["sweep"] else "Single size",
        label="Mode",
    )
    run_button = mo.ui.run_button(label="Run benchmark", kind="success")
    dask_switch = mo.ui.switch(
        value=dask_ok and cli["dask"],
        disabled=not dask_ok,
        label=f"Dask-cuDF over all {len(gpus)} GPUs" if dask_ok else "Dask-cuDF (needs 2+ GPUs)",
    )
    cudf_pandas_switch = mo.ui.switch(
        value=cudf_module is not None,
        disabled=cudf_module is None,
        label="cudf.pandas (no code change)"
        if cudf_module is not None
        else "cudf.pandas (needs cuDF on a GPU)",
    )
    return cudf_pandas_switch, dask_switch, mode_radio, ops_select, repeats_input, rows_slider, run_button


@app.cell(hide_code=True)
def _(
    cudf_message,
    cudf_module,
    cudf_pandas_switch,
    dask_message,
    dask_switch,
    mode_radio,
    ops_select,
    repeats_input,
    rows_slider,
    run_button,
):
    mo.vstack(
        [
            mo.md("## 2 · Choose what to run"),
            mo.hstack([rows_slider, mo.md(f"**{format_rows(rows_slider.value)} rows**")], widths=[4, 1]),
            ops_select,
            mo.hstack([repeats_input, mode_radio, run_button], justify="start", gap=2),
            mo.hstack([dask_switch, mo.md(f"_{dask_message}_")], justify="start", gap=1),
            mo.hstack(
                [
                    cudf_pandas_switch,
                    mo.md(
                        "_Your pandas code, unchanged, on the GPU: the app's pandas op functions run under "
                        "`cudf.pandas` in a worker process, with a report of what fell back to the CPU._"
                        if cudf_module is not None
                        else f"_Unavailable: {cudf_message}_"
                    ),
                ],
                justify="start",
                gap=1,
            ),
        ]
    )
    return


@app.cell
def _(
    cli,
    cudf_module,
    cudf_pandas_switch,
    dask_switch,
    duckdb_module,
    mode_radio,
    ops_select,
    polars_gpu,
    polars_module,
    repeats_input,
    rows_slider,
):
    # Headless runs (`-- --smoke` or `-- --run --rows N`) take their settings from the command line.
    _auto = cli["autorun"]
    settings = {
        "requested_rows": (cli["rows"] or (10_000 if cli["smoke"] else rows_slider.value))
        if _auto
        else rows_slider.value,
        "ops": (cli["ops"] or list(ALL_OPS)) if _auto else (ops_select.value or []),
        "repeats": (cli["repeats"] or (1 if cli["smoke"] else 3)) if _auto else int(repeats_input.value or 1),
        "sweep": (cli["smoke"] or cli["sweep"]) if _auto else mode_radio.value.startswith("Size sweep"),
        "dask": bool(dask_switch.value),
        "cudf_pandas": bool(cudf_pandas_switch.value) and cudf_module is not None,
    }
    # A preview with the memory free now; the run re-plans with what is free when Run is clicked.
    _preview = plan_from_settings(
        settings, make_engines(cudf_module, polars_module, polars_gpu, duckdb_module)
    )
    mo.callout(mo.md(_preview["cap_message"]), kind="warn") if _preview["cap_message"] else None
    return (settings,)


@app.cell
def _(cli, cudf_module, duckdb_module, gpus, polars_gpu, polars_module, run_button, settings):
    mo.stop(
        not (run_button.value or cli["autorun"]),
        mo.md("_Choose a size and operations, then click **Run benchmark**._"),
    )
    mo.stop(not settings["ops"], mo.callout(mo.md("Pick at least one operation."), kind="warn"))
    _wait = lock_wait_text(bool(gpus))
    with (
        gpu_lock(on_wait=lambda: mo.output.replace(mo.callout(mo.md(_wait), kind="info"))) as _lease,
        frames_freed_on_interrupt(),
    ):
        # The waiting box goes once the run has its turn; how long it waited stays said.
        _waited = lock_waited_text(_lease["waited_s"], bool(gpus))
        if _waited:
            mo.output.replace(mo.md(f"_{_waited}_"))
        else:
            mo.output.clear()
        engines = make_engines(cudf_module, polars_module, polars_gpu, duckdb_module)
        if settings["dask"]:
            with mo.status.spinner("Starting one Dask worker per GPU (once per app process)…"):
                engines.append(make_dask_engine(dask_client("gpu")))
        # Free memory read now, at the click and under the lock: the previous run has given its memory back.
        plan = plan_from_settings(settings, engines)
        if plan["cap_message"]:
            mo.output.append(mo.callout(mo.md(plan["cap_message"]), kind="warn"))
        bench = run_with_progress(plan, engines)
        if settings["cudf_pandas"]:
            with mo.status.spinner("cudf.pandas: the same pandas code in a worker process (no code change)…"):
                _cp = run_cudf_pandas_engine(
                    [n for n in plan["sizes"] if n <= plan["single_engine_rows"]],
                    plan["ops"],
                    plan["repeats"],
                )
            bench["records"] += _cp["records"]
            bench["errors"] += _cp["errors"]
            bench["cudf_pandas_profiles"] = _cp["profiles"]
        # Once per run, under the lock: this machine's raw host→GPU copy rates, beside from_pandas's.
        bench["copy_probe"] = copy_bandwidth_probe() if cudf_module is not None else None
        # and this card's achievable (device-to-device) bandwidth and cuDF's per-op floor, for the roofline
        bench.update(card_probes(engines, plan["ops"]))
    bench["waited_s"] = _lease["waited_s"]
    mo.output.replace(
        mo.md(
            f"Finished in **{bench['wall_s']:.1f} s** — {len(bench['records'])} measurements over "
            f"{len(plan['sizes'])} size(s). {_waited}"
        )
    )
    return (bench,)


@app.cell
def _(bench):
    summary = summarize_records(bench["records"], bench["peak_bandwidth_gbs"], bench["achievable_gbs"])
    mo.vstack([mo.callout(mo.md(text), kind=kind) for kind, text in check_messages(summary, bench["errors"])])
    return (summary,)


@app.cell(hide_code=True)
def _(bench, summary):
    mo.vstack(
        [
            mo.md("## 3 · Results"),
            mo.md(pipeline_text(summary) or ""),
            mo.md(summary_text(summary, bench)),
            mo.ui.table(
                results_table(summary),
                page_size=12,
                selection=None,
                show_column_summaries=False,
                # Wider than the page at 1280 px with several engines: the check column stays in view.
                freeze_columns_left=["rows", "operation"],
                freeze_columns_right=["result check"] if summary["check"].ne("").any() else None,
            ),
        ]
    )
    return


@app.cell(hide_code=True)
def _(summary):
    mo.hstack([times_chart(summary), speedup_chart(summary)], widths="equal", wrap=True)
    return


@app.cell(hide_code=True)
def _(bench, summary):
    mo.stop(not bench.get("copy_probe"))
    mo.md(copy_text(bench["copy_probe"], summary))
    return


@app.cell
def _():
    clear_cache_button = mo.ui.run_button(label="Delete the cached data files", kind="neutral")
    return (clear_cache_button,)


@app.cell(hide_code=True)
def _(clear_cache_button):
    _freed = clear_data_cache() if clear_cache_button.value else None
    mo.hstack(
        [
            mo.md(
                f"_Deleted {_freed / 1e6:,.0f} MB of cached data files._"
                if _freed is not None
                else f"_The file operations read Parquet and CSV copies of the data, written once per size "
                f"into the app's temp folder (not timed): {data_cache_bytes() / 1e6:,.0f} MB now._"
            ),
            clear_cache_button,
        ],
        justify="space-between",
    )
    return


@app.cell(hide_code=True)
def _(summary):
    _times = sweep_times_chart(summary)
    mo.stop(_times is None)
    _sweep = sweep_chart(summary)
    _cross = crossover_sentence(summary)
    _parts = [
        mo.md("### How the time grows with the size"),
        mo.md("Median time of each engine at every size of the sweep (log–log; one panel per operation)."),
        _times,
    ]
    if _sweep is not None:
        _parts += [
            mo.md("### Where does the GPU start to win?"),
            mo.md("Median speedup of cuDF over pandas for each size. " + (_cross or "")),
            _sweep,
        ]
    mo.vstack(_parts)
    return


@app.cell(hide_code=True)
def _(bench):
    mo.stop(not bench["samples"], mo.md("_No NVML samples: the GPU timeline needs an NVIDIA GPU._"))
    mo.vstack(
        [
            mo.md(
                f"### GPU timeline ({len(bench['samples'])} NVML samples, "
                f"{bench['sample_rate_hz']:.0f} Hz) — shaded: when each engine ran an operation"
            ),
            timeline_chart(pd.DataFrame(bench["samples"]), pd.DataFrame(bench["spans"]), gpm_frame(bench)),
            mo.md(
                f"_GPM: {len(bench['gpm_samples'])} windows, {bench['gpm_rate_hz']:.1f} per second per GPU._"
                if bench["gpm_samples"]
                else f"_GPM metrics are not on this timeline: {bench['gpm_reason']}_"
            ),
        ]
    )
    return


@app.cell(hide_code=True)
def _(bench, summary):
    _telemetry = op_telemetry_table(summary)
    mo.stop(_telemetry is None)
    mo.vstack(
        [
            mo.md(
                f"### What the GPU did in each operation ({format_rows(int(summary['rows'].max()))} rows)\n\n"
                "NVML's GPM counters over each operation's timed repeats: **SM active** (share of time the "
                "streaming multiprocessors had work), **DRAM bandwidth** (share of the memory's peak), "
                "**Tensor active**, **PCIe** traffic, and the **energy** one call took."
            ),
            mo.ui.table(_telemetry, selection=None, show_column_summaries=False, page_size=15),
            mo.callout(mo.md(telemetry_text(bench)), kind="neutral"),
        ]
    )
    return


@app.cell(hide_code=True)
def _(bench, summary):
    _bw = bandwidth_table(summary, bench["peak_bandwidth_gbs"], bench["achievable_gbs"], bench["floor_s"])
    mo.stop(_bw is None)
    mo.vstack(
        [
            mo.md(bandwidth_intro(bench)),
            mo.ui.table(_bw, selection=None, show_column_summaries=False),
        ]
    )
    return


@app.cell(hide_code=True)
def _(bench):
    _fallbacks = fallback_table(bench.get("cudf_pandas_profiles") or [])
    mo.stop(_fallbacks is None)
    mo.vstack(
        [
            mo.md(
                "### What ran on the GPU under cudf.pandas, and what fell back\n\n"
                "From `cudf.pandas.profiler.Profiler`, one profiled call per operation on a "
                f"{PROFILE_SAMPLE_ROWS:,}-row sample (the profiler traces every Python call, so a fallback that "
                "runs Python per row is far slower under it; the timings above come from unprofiled runs): each "
                f"pandas function that ran on the GPU and each that fell back to the CPU. **{FALLBACK_STEP}** is a "
                "realistic step included to show what a fallback looks like and what it costs."
            ),
            mo.ui.table(_fallbacks, selection=None, show_column_summaries=False, page_size=15),
        ]
    )
    return


@app.cell
def _():
    get_last_run, set_last_run = mo.state(None)
    return get_last_run, set_last_run


@app.cell
def _(bench, set_last_run, summary):
    set_last_run({"bench": bench, "summary": summary})
    return


@app.cell(hide_code=True)
def _(get_last_run, gpus, host):
    _last = get_last_run()
    mo.vstack(
        [
            mo.md("## 4 · Understand what you measured"),
            mo.accordion(
                {
                    "Why GPU-accelerated DataFrames?": mo.md(explain_why_gpu(gpus, host, _last)),
                    "Is pandas a fair baseline?": mo.md(explain_baseline(host, _last)),
                    "When one GPU is not enough: Dask-cuDF": mo.md(explain_multi_gpu(gpus, _last)),
                    "Understanding the benchmark operations": mo.md(explain_operations(_last)),
                    "Understanding GPU metrics": mo.md(explain_metrics(gpus, _last)),
                    "cudf.pandas: pandas on the GPU without changing code": mo.md(explain_cudf_pandas(_last)),
                    "How we measure (and why one timed `op().to_pandas()` misleads)": mo.md(
                        explain_measurement(_last)
                    ),
                },
                multiple=True,
            ),
        ]
    )
    return


@app.cell
def _(cli):
    # Decided on the server for this session: a `marimo run` viewer never gets the editor, nor a run.
    snippet_allowed, snippet_why = user_code_allowed(mo.app_meta().mode, cli)
    snippet_editor = mo.ui.code_editor(
        value="df.groupby('category', observed=True)['value'].agg(['mean', 'max']).reset_index()",
        language="python",
        label="Your pandas code over `df` (its last expression is the result)",
        min_height=80,
    )
    snippet_rows = mo.ui.number(
        start=1_000, stop=100_000_000, value=1_000_000, step=1_000, label="Rows of `df`"
    )
    snippet_button = mo.ui.run_button(label="Run my code with pandas and cudf.pandas")
    return snippet_allowed, snippet_button, snippet_editor, snippet_rows, snippet_why


@app.cell(hide_code=True)
def _(snippet_allowed, snippet_button, snippet_editor, snippet_rows, snippet_why):
    mo.vstack(
        [
            mo.md("## 5 · Your own pandas code"),
            mo.md(snippet_why),
            mo.vstack([snippet_editor, mo.hstack([snippet_rows, snippet_button], justify="start")])
            if snippet_allowed
            else mo.md(""),
        ]
    )
    return


@app.cell
def _(cudf_module, gpus, snippet_allowed, snippet_button, snippet_editor, snippet_rows):
    mo.stop(not snippet_allowed)  # checked here too: the run itself refuses, not only the page
    mo.stop(not snippet_button.value, mo.md("_Type a snippet and click the button._"))
    with gpu_lock(
        on_wait=lambda: mo.output.replace(mo.callout(mo.md(lock_wait_text(bool(gpus))), kind="info"))
    ):
        with mo.status.spinner("Running your snippet in worker processes…"):
            _out = run_user_snippet(
                snippet_editor.value, int(snippet_rows.value or 1_000_000), accelerate=cudf_module is not None
            )
    mo.md(snippet_report(_out, cudf_module is not None))
    return


@app.cell(hide_code=True)
def _(get_last_run):
    mo.md(takeaways_text(get_last_run()))
    return


@app.cell(hide_code=True)
def _():
    mo.md(r"""
    ## Library

    Open the notebook with `marimo edit` to read the helpers that follow this cell: plain Python functions
    that the tests import (`from rapids_benchmark_dashboard import run_benchmark`).
    """)
    return


@app.function
def parse_cli_args(args: dict) -> dict:
    """Headless flags: `-- --smoke` (tiny, all ops, sweep) or `-- --run --rows N --repeats R --ops a,b --sweep --cpu --probe`."""

    def _int(name):
        raw = args.get(name)
        return int(float(raw)) if raw not in (None, "") else None

    ops = [o.strip() for o in str(args.get("ops") or "").split(",") if o.strip() in ALL_OPS]
    return {
        "smoke": "smoke" in args,
        "autorun": "smoke" in args or "run" in args,
        "rows": _int("rows"),
        "repeats": _int("repeats"),
        "ops": ops or None,
        "sweep": "sweep" in args,
        "cpu": "cpu" in args,
        "dask": "dask" in args,
        "allow_user_code": "allow-user-code" in args,
        "probe": "probe" in args,  # run the "what utilization hides" probe headless too
    }


@app.function
def format_rows(n: float | None) -> str:
    """10_000_000 → '10M'."""
    if not n:
        return "—"
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{int(n)}"


@app.function
def nearest_step(n: int) -> int:
    """The slider step closest to n on a log scale."""
    n = max(int(n), 1)
    return min(ROW_STEPS, key=lambda s: abs(math.log10(s) - math.log10(n)))


@app.function
def data_chunk_rows(n_rows: int) -> int:
    """Rows per generated chunk: at least 16 chunks (one Dask partition each), at most DATA_CHUNK_ROWS rows."""
    return max(min(DATA_CHUNK_ROWS, -(-n_rows // 16)), 1)


@app.function
def chunk_columns(n_rows: int, index: int, seed: int = 0) -> dict:
    """Columns of chunk `index` of the n_rows-row frame, from the chunk's own seeded stream."""
    size = data_chunk_rows(n_rows)
    rows = max(min(size, n_rows - index * size), 0)
    rng = np.random.default_rng([seed, index])
    return {
        "key_few": rng.integers(0, N_FEW_KEYS, rows, dtype=np.int32),
        "key_many": rng.integers(0, N_MANY_KEYS, rows, dtype=np.int32),
        "value": rng.random(rows) * 100.0,
        "value2": rng.random(rows) * 10.0,
        "category": rng.integers(0, len(CATEGORIES), rows, dtype=np.int8),
    }


@app.function
def as_frame(columns: dict, start: int = 0) -> pd.DataFrame:
    """The benchmark frame from generated columns (category codes become a categorical column)."""
    n = len(columns["value"])
    cols = {**columns, "category": pd.Categorical.from_codes(columns["category"], categories=CATEGORIES)}
    return pd.DataFrame(cols, index=pd.RangeIndex(start, start + n))


@app.function
def generate_chunk(n_rows: int, index: int, seed: int = 0) -> pd.DataFrame:
    """One chunk of the frame on its own — what a Dask worker builds for its partition."""
    return as_frame(chunk_columns(n_rows, index, seed), start=index * data_chunk_rows(n_rows))


@app.function
def generate_lookup(seed: int = 0) -> pd.DataFrame:
    """The join's lookup table: only even keys exist, so the inner join keeps about half of the rows."""
    lookup_keys = np.arange(0, N_MANY_KEYS, 2, dtype=np.int32)
    return pd.DataFrame(
        {
            "key_many": lookup_keys,
            "price": np.random.default_rng(seed + 1).random(len(lookup_keys)) * 50.0,
            "region": (lookup_keys % 7).astype(np.int16),
        }
    )


@app.function
def generate_data(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded, vectorised data for every op (built chunk by chunk, the same chunks Dask workers make) and the lookup."""
    size = data_chunk_rows(n_rows)
    dtypes = {
        "key_few": np.int32,
        "key_many": np.int32,
        "value": np.float64,
        "value2": np.float64,
        "category": np.int8,
    }
    columns = {name: np.empty(n_rows, dtype=dt) for name, dt in dtypes.items()}
    for index in range(-(-n_rows // size)):
        for name, values in chunk_columns(n_rows, index, seed).items():
            columns[name][index * size : index * size + len(values)] = values
    return as_frame(columns), generate_lookup(seed)


@app.function
def estimate_bytes_per_row() -> float:
    """Bytes per row of the benchmark frame, measured on a 10k-row sample."""
    sample, _ = generate_data(10_000)
    return float(sample.memory_usage(index=False, deep=True).sum()) / len(sample)


@app.function
def cap_rows(
    requested: int,
    bytes_per_row: float,
    free_gpu_bytes: int | None,
    free_host_bytes: int | None,
    gpu_factor: float = GPU_WORKING_FACTOR,
    host_factor: float = HOST_WORKING_FACTOR,
    headroom: float = MEMORY_HEADROOM,
) -> tuple[int, str | None]:
    """Largest row count ≤ requested whose working set fits free GPU and host memory, and why it was capped."""
    limits = {}
    if free_gpu_bytes is not None:
        limits["GPU"] = int(free_gpu_bytes * headroom / (bytes_per_row * gpu_factor))
    if free_host_bytes is not None:
        limits["host RAM"] = int(free_host_bytes * headroom / (bytes_per_row * host_factor))
    if not limits:
        return requested, None
    which, limit = min(limits.items(), key=lambda kv: kv[1])
    if requested <= limit:
        return requested, None
    # Round down to two significant digits so the capped size reads well.
    magnitude = 10 ** max(int(math.log10(max(limit, 1))) - 1, 0)
    capped = max((limit // magnitude) * magnitude, 1_000)
    free = free_gpu_bytes if which == "GPU" else free_host_bytes
    need_gb = requested * bytes_per_row * (gpu_factor if which == "GPU" else host_factor) / 1e9
    return capped, (
        f"**Size capped to {format_rows(capped)} rows** (you asked for {format_rows(requested)}): "
        f"{format_rows(requested)} rows × {bytes_per_row:.0f} B/row × {gpu_factor if which == 'GPU' else host_factor:.0f} "
        f"(working memory for results, scratch and checks) ≈ {need_gb:,.0f} GB, but only "
        f"{free / 1e9:,.0f} GB of {which} is free (we keep {100 - headroom * 100:.0f}% spare). "
        "This avoids an out-of-memory crash; free memory or use a bigger card to go further."
    )


@app.function
def sweep_sizes(max_rows: int) -> list[int]:
    """Sizes for a sweep: powers of ten from 1K up to max_rows, ending at max_rows."""
    sizes = [10**k for k in range(3, 10) if 10**k < max_rows]
    return sizes + [max_rows]


@app.function
def plan_run(
    requested_rows: int,
    ops: list[str],
    repeats: int,
    sweep: bool,
    bytes_per_row: float,
    free_gpu_bytes: int | None,
    free_host_bytes: int | None,
    all_gpus_free_bytes: int | None = None,
    engine_names: list[str] | None = None,
) -> dict:
    """What will run: sizes (capped by memory), ops and repeats, with the reason for any cap.

    The host cap holds for every engine in `engine_names` (HOST_FACTORS summed; default pandas + Polars).
    With Dask over several GPUs (`all_gpus_free_bytes`: free memory summed over them) the size may exceed
    one card; the single-GPU and host engines then run only up to `single_engine_rows`.
    """
    names = engine_names or ["pandas", "polars"]
    host_factor = host_working_factor([n for n in names if n != "dask_cudf"] or ["pandas"])
    single_rows, message = cap_rows(
        requested_rows, bytes_per_row, free_gpu_bytes, free_host_bytes, host_factor=host_factor
    )
    rows = single_rows
    if all_gpus_free_bytes:
        rows, message = cap_rows(
            requested_rows,
            bytes_per_row,
            all_gpus_free_bytes,
            free_host_bytes,
            host_factor=HOST_FACTORS["dask_cudf"],
        )
        if rows > single_rows:
            message = (message + "\n\n" if message else "") + (
                f"Above **{format_rows(single_rows)} rows** the data no longer fits one GPU (or this host's RAM): "
                "those sizes run on Dask-cuDF alone."
            )
    if all_gpus_free_bytes and "sort" in ops and rows > DASK_SLOW_SORT_ROWS:
        message = (message + "\n\n" if message else "") + (
            f"**Dask-cuDF's sort at {format_rows(rows)} rows will take minutes:** it moves about (P−1)/P of the "
            "rows between the GPUs' worker processes over TCP — 14 s per pass at 100M rows and more than 215 s at 1B rows "
            f"on 2 × H200 (measured), and it runs {max(int(repeats), 1) + 1} times here (warm-up + repeats). "
            "Leave *sort* out for a quick run."
        )
    return {
        "rows": rows,
        "single_engine_rows": single_rows,
        "requested_rows": requested_rows,
        "sizes": sweep_sizes(rows) if sweep else [rows],
        "ops": [o for o in ALL_OPS if o in ops],
        "repeats": max(int(repeats), 1),
        "cap_message": message,
        "bytes_per_row": bytes_per_row,
        "host_factor": host_factor,
    }


@app.function
def plan_from_settings(settings: dict, engines: list) -> dict:
    """plan_run for these settings and engines, with free GPU and host memory read now (at the Run click).

    `settings["dask"]` plans for Dask-cuDF over every GPU even before its engine (and cluster) exists.
    """
    names = [e.name for e in engines]
    use_gpu = any(e.on_gpu and e.load is None for e in engines)
    use_dask = bool(settings.get("dask")) or any(e.on_gpu and e.load is not None for e in engines)
    if use_dask and "dask_cudf" not in names:
        names.append("dask_cudf")
    if settings.get("cudf_pandas"):
        names.append("cudf_pandas")
    gpus = read_gpu_status() if use_gpu or use_dask else []
    return plan_run(
        requested_rows=settings["requested_rows"],
        ops=settings["ops"],
        repeats=settings["repeats"],
        sweep=settings["sweep"],
        bytes_per_row=estimate_bytes_per_row(),
        free_gpu_bytes=min((g["memory_free_bytes"] or 0 for g in gpus), default=None) if use_gpu else None,
        free_host_bytes=read_host_status()["available_bytes"],
        all_gpus_free_bytes=sum(g["memory_free_bytes"] or 0 for g in gpus) if use_dask else None,
        engine_names=names,
    )


@app.function
def op_filter(xdf, df, lookup):
    """Boolean mask on two columns; the output keeps the input's row order."""
    return df[(df["value"] > 50.0) & (df["key_few"] < 50)]


@app.function
def op_groupby_few(xdf, df, lookup):
    """Group by a 100-value key with several aggregations."""
    # The dict-of-lists form rather than named aggregation: dask-cudf 26.10 rejects named aggregation.
    # Columns come back as ('value', 'sum') pairs; results_match names them value_sum outside the timer,
    # since renaming costs cuDF ~1 ms of Python — half of this op's GPU time at 10M rows.
    return df.groupby("key_few", sort=False).agg(
        {"value": ["sum", "mean", "max", "count"], "value2": ["std"]}
    )


@app.function
def op_groupby_many(xdf, df, lookup):
    """Group by a 100k-value key: many small groups, so hashing dominates."""
    return df.groupby("key_many", sort=False).agg({"value": ["sum", "count"]})


@app.function
def op_join(xdf, df, lookup):
    """Inner hash join with the lookup table (the library's own merge)."""
    return xdf.merge(df, lookup, on="key_many", how="inner")


@app.function
def op_sort(xdf, df, lookup):
    """Sort every row by a float column."""
    return df.sort_values("value")


@app.function
def get_op(name: str) -> Callable:
    """The op function for a name in OPS."""
    return {
        "filter": op_filter,
        "groupby_few": op_groupby_few,
        "groupby_many": op_groupby_many,
        "join": op_join,
        "sort": op_sort,
    }[name]


@app.function
def data_cache_dir() -> str:
    """The app's own folder for data files, under the OS temp dir (never a path a viewer chooses)."""
    path = os.path.join(tempfile.gettempdir(), CACHE_DIR_NAME)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


@app.function
def data_files(n_rows: int, seed: int, df: pd.DataFrame) -> tuple[dict | None, str | None]:
    """The size's Parquet and CSV files, written once (not timed); None and the reason when the disk is short.

    Categories are stored as strings, as files usually hold them. Each file is written under a unique
    temporary name and renamed into place, so two viewers never read a half-written file.
    """
    import shutil

    folder = data_cache_dir()
    files = {kind: os.path.join(folder, f"data_{n_rows}_{seed}.{kind}") for kind in ("parquet", "csv")}
    missing = [kind for kind, path in files.items() if not os.path.exists(path)]
    if not missing:
        return files, None
    free = shutil.disk_usage(folder).free
    short = memory_shortfall("disk in the temp folder", n_rows * FILE_BYTES_PER_ROW, free)
    if short:
        return None, f"File operations skipped at {format_rows(n_rows)} rows: their data files {short}."
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    table = pa.Table.from_pandas(df.assign(category=df["category"].astype(str)), preserve_index=False)
    for kind in missing:
        tmp = f"{files[kind]}.{os.getpid()}.{threading.get_ident()}.tmp"
        if kind == "parquet":
            pyarrow.parquet.write_table(table, tmp, compression="snappy")
        else:
            pyarrow.csv.write_csv(table, tmp)
        os.replace(tmp, files[kind])
    del table
    return files, None


@app.function
def data_cache_bytes() -> int:
    """Bytes the cached data files take now."""
    folder = data_cache_dir()
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())


@app.function
def clear_data_cache() -> int:
    """Delete the app's cached data files; returns the bytes freed."""
    freed = 0
    for entry in os.scandir(data_cache_dir()):
        if entry.is_file() and entry.name.startswith("data_"):
            freed += entry.stat().st_size
            os.remove(entry.path)
    return freed


@app.function
def pipeline_pandas_api(xdf, files: dict, lookup):
    """The pipeline in the pandas API (pandas and cuDF run this same code); the small result ends in pandas.

    The job, fixed before it was measured: a typical analytics query over a fact table — load it from
    Parquet, keep the rows of interest (value > 10), enrich them from a dimension table (the lookup:
    price and region), derive a measure (revenue = value × price), aggregate by two dimensions (region ×
    category: rows, revenue, mean value), rank by revenue, and hand the 56-row answer to the caller.
    """
    df = xdf.read_parquet(files["parquet"])
    df = df[df["value"] > 10.0]
    joined = df.merge(lookup, on="key_many", how="inner")
    joined["revenue"] = joined["value"] * joined["price"]
    out = (
        joined.groupby(["region", "category"])
        .agg(rows=("value", "count"), revenue=("revenue", "sum"), mean_value=("value", "mean"))
        .reset_index()
        .sort_values("revenue", ascending=False)
    )
    return out if isinstance(out, pd.DataFrame) else out.to_pandas()


@app.function
def pandas_api_file_ops(xdf) -> dict:
    """read_parquet, read_csv and the pipeline for pandas (pyarrow engine) or cuDF (decoded on the GPU)."""
    is_pandas = xdf is pd

    def read_parquet(xdf, files, lookup):
        return (
            pd.read_parquet(files["parquet"], engine="pyarrow")
            if is_pandas
            else xdf.read_parquet(files["parquet"])
        )

    def read_csv(xdf, files, lookup):
        return pd.read_csv(files["csv"], engine="pyarrow") if is_pandas else xdf.read_csv(files["csv"])

    return {"read_parquet": read_parquet, "read_csv": read_csv, "pipeline": pipeline_pandas_api}


@app.function
def polars_file_ops() -> dict:
    """The file ops in Polars: eager reads, and the pipeline as one lazy query from scan_parquet."""

    def read_parquet(pl, files, lookup):
        return pl.read_parquet(files["parquet"])

    def read_csv(pl, files, lookup):
        return pl.read_csv(files["csv"])

    def pipeline(pl, files, lookup):
        value = pl.col("value")
        return (
            pl.scan_parquet(files["parquet"])
            .filter(value > 10.0)
            .join(lookup.lazy(), on="key_many", how="inner")
            .with_columns((value * pl.col("price")).alias("revenue"))
            .group_by(["region", "category"])
            .agg(value.count().alias("rows"), pl.col("revenue").sum(), value.mean().alias("mean_value"))
            .sort("revenue", descending=True)
            .collect()
            .to_pandas()
        )

    return {"read_parquet": read_parquet, "read_csv": read_csv, "pipeline": pipeline}


@app.function
def duckdb_file_sql(files: dict) -> dict:
    """The file ops in DuckDB's SQL (its own Parquet and CSV readers); paths are the app's, quoted."""
    parquet, csv = (files[k].replace("'", "''") for k in ("parquet", "csv"))
    return {
        "read_parquet": f"SELECT * FROM read_parquet('{parquet}')",
        "read_csv": f"SELECT * FROM read_csv('{csv}')",
        "pipeline": "SELECT region, category, count(value) AS rows, sum(value * price) AS revenue, "
        f"avg(value) AS mean_value FROM read_parquet('{parquet}') JOIN lookup USING (key_many) "
        "WHERE value > 10.0 GROUP BY region, category ORDER BY revenue DESC",
    }


@app.function
def columns_read(op: str) -> list[str]:
    """Input columns an op must read at least once."""
    return {
        "filter": ["key_few", "key_many", "value", "value2", "category"],
        "groupby_few": ["key_few", "value", "value2"],
        "groupby_many": ["key_many", "value"],
        "join": ["key_few", "key_many", "value", "value2", "category"],
        "sort": ["key_few", "key_many", "value", "value2", "category"],
    }[op]


@app.function
def frame_nbytes(frame, index: bool = True) -> int:
    """Bytes of a pandas, cuDF, Polars or Arrow (DuckDB's results) frame's columns (and index, where there is one)."""
    if hasattr(frame, "estimated_size"):
        return int(frame.estimated_size())
    if hasattr(frame, "schema") and hasattr(frame, "nbytes"):  # a pyarrow Table
        return int(frame.nbytes)
    if hasattr(frame, "to_delayed"):  # Dask: measure every partition where it lives, then add up
        import dask

        return int(sum(dask.compute(*[dask.delayed(partition_nbytes)(p, index) for p in frame.to_delayed()])))
    return partition_nbytes(frame, index)


@app.function
def partition_nbytes(frame, index: bool = True) -> int:
    """Bytes of one pandas or cuDF frame, column by column.

    Column by column because cuDF's DataFrame.memory_usage fails on the two-level column names the
    group-bys return (value, sum), while every Series and Index measures itself fine.
    """
    total = sum(int(frame.iloc[:, i].memory_usage(index=False, deep=False)) for i in range(frame.shape[1]))
    return total + (int(frame.index.memory_usage(deep=False)) if index else 0)


@app.function
def bytes_touched(op: str, df, result) -> int:
    """The byte model: bytes an op must at least move through GPU memory, for its achieved bandwidth.

    filter, group-bys, join, sort: the input columns the op reads (columns_read), once, plus the result it
    writes, once. Reads (read_parquet, read_csv) and the pipeline: the frame they return, written once (the
    file's bytes cross the disk and PCIe, not counted). Real ops move more (several passes, scratch, gathers
    in random order), so the achieved bandwidth is a lower bound.
    """
    if op in FILE_OPS:
        return frame_nbytes(result)
    return frame_nbytes(df[columns_read(op)], index=False) + frame_nbytes(result)


@app.function
def flatten_result(frame):
    """Group keys become columns, ('value', 'sum') columns become value_sum; a fresh 0..n-1 index."""
    if getattr(frame.columns, "nlevels", 1) > 1:
        frame = frame.copy(deep=False)
        frame.columns = [f"{column}_{agg}" for column, agg in frame.columns]
    if frame.index.name is not None or getattr(frame.index, "names", [None])[0] is not None:
        frame = frame.reset_index()
    return frame.reset_index(drop=True)


@app.function
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
    exp, act = flatten_result(expected), flatten_result(actual)
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
        if not bool((exp[key] == act[key]).all()):
            return False, f"not sorted like pandas by {key}"
    if order != "rows":
        # Rows as a multiset: both sides in one canonical order (ties broken by every column).
        exp = exp.sort_values(cols).reset_index(drop=True)
        act = act.sort_values(cols).reset_index(drop=True)
    for col in cols:
        a, e = act[col], exp[col]
        if str(e.dtype).startswith("float"):
            close = ((a - e).abs() <= atol + rtol * e.abs()) | (a.isna() & e.isna())
        else:
            close = (a == e) | (a.isna() & e.isna())
        bad = int((~close).sum())
        if bad:
            return False, f"{bad:,} of {len(exp):,} values differ in column '{col}'"
    return True, f"{len(exp):,} rows identical" + (
        " (floats within tolerance)" if any(str(exp[c].dtype).startswith("float") for c in cols) else ""
    )


@app.class_definition
@dataclass
class Timing:
    """Timed repeats of one operation (seconds), the warm-up time, and the last result."""

    times: list[float]
    warmup_s: float | None
    result: Any = field(default=None, repr=False)
    starts: list[float] = field(default_factory=list)  # perf_counter at each timed repeat's start
    counter: tuple = (None, None)  # read_counter() just before the first timed repeat and after the last

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


@app.function
def time_operation(
    run: Callable[[], Any],
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    warmup: Callable[[], Any] | None = None,
    on_repeat: Callable[[int], None] | None = None,
    min_warmup_s: float = 0.0,
    read_counter: Callable[[], Any] | None = None,
) -> Timing:
    """One uncounted warm-up, then `repeats` timed calls; the device is synchronized before each clock stops.

    With `min_warmup_s` the warm-up call repeats until that much time has passed: a GPU that sat idle
    while pandas ran has dropped to idle clocks, and a 2 ms kernel timed before it boosts runs slow.
    `read_counter` (NVML's energy counter) is read right before the first timed call and after the last.
    """
    t0 = time.perf_counter()
    warm = (warmup or run)()
    sync()
    warmup_s = time.perf_counter() - t0
    del warm
    while time.perf_counter() - t0 < min_warmup_s:
        extra = (warmup or run)()
        sync()
        del extra
    times, starts, result, after = [], [], None, None
    before = read_counter() if read_counter else None
    for i in range(repeats):
        result = None  # free the previous repeat's result before the next one allocates its own
        t0 = time.perf_counter()
        result = run()
        sync()
        times.append(time.perf_counter() - t0)
        starts.append(t0)
        if read_counter and i == repeats - 1:  # before the last progress tick
            after = read_counter()
        if on_repeat:
            on_repeat(i)
    return Timing(times=times, warmup_s=warmup_s, result=result, starts=starts, counter=(before, after))


@app.class_definition
@dataclass
class Engine:
    """A DataFrame library and how to move data to it, back, and wait for it."""

    name: str
    lib: Any
    on_gpu: bool
    to_device: Callable = lambda frame: frame
    to_host: Callable | None = None  # how a result returns to pandas on the host; None: it is there already
    sync: Callable = lambda: None
    ops: dict | None = None  # op name → function(lib, df, lookup); None: the shared pandas-API functions
    compare: Callable | None = None  # (expected pandas, result, order) → (ok, detail); None: results_match
    load: Callable | None = None  # (n_rows, seed, df, lookup) → (frame, lookup) made where the engine lives
    slice_warmup: bool = False  # warm up on a CPU_WARMUP_ROWS slice (CPU engines: no JIT, no device pool)
    load_kind: str = ""  # what its timed load is (HOST_TO_GPU, a conversion, made on workers); "": none
    gpus: tuple[int, ...] | None = ()  # the GPUs its ops run on (None: every GPU); () for CPU engines
    file_ops: dict | None = None  # FILE_OPS name → function(lib, files, lookup); None: it does not read files


@app.function
def cuda_synchronize() -> None:
    """Wait until every queued GPU kernel has finished."""
    import cupy

    cupy.cuda.runtime.deviceSynchronize()


@app.function
def current_gpu() -> int:
    """The CUDA device this process's cuDF work runs on (CuPy's current device; 0 without CuPy)."""
    try:
        import cupy
    except ImportError:
        return 0
    return int(cupy.cuda.runtime.getDevice())


@app.function
def make_engines(
    cudf_module=None, polars_module=None, polars_gpu: bool = False, duckdb_module=None
) -> list[Engine]:
    """pandas first (the reference), then Polars and DuckDB on all CPU cores, cuDF, and Polars' GPU engine."""
    engines = [Engine("pandas", pd, on_gpu=False, slice_warmup=True, file_ops=pandas_api_file_ops(pd))]
    if duckdb_module is not None:
        engines.append(make_duckdb_engine(duckdb_module))
    if polars_module is not None:
        engines.append(
            Engine(
                "polars",
                polars_module,
                on_gpu=False,
                to_device=polars_module.from_pandas,
                ops=polars_ops("cpu"),
                compare=results_match_polars,
                slice_warmup=True,
                load_kind="pandas → Polars conversion",
                file_ops=polars_file_ops(),
            )
        )
    if cudf_module is not None:
        engines.append(
            Engine(
                "cudf",
                cudf_module,
                on_gpu=True,
                to_device=cudf_module.from_pandas,
                to_host=lambda frame: frame.to_pandas(),
                sync=cuda_synchronize,
                load_kind=HOST_TO_GPU,
                gpus=(current_gpu(),),
                file_ops=pandas_api_file_ops(cudf_module),
            )
        )
    if polars_module is not None and polars_gpu:
        # Polars' GPU engine reads host data and returns host data: every collect includes both copies.
        engines.append(
            Engine(
                "polars_gpu",
                polars_module,
                on_gpu=True,
                to_device=functools.partial(polars_frame_for_gpu, polars_module),
                ops=polars_ops("gpu"),
                compare=results_match_polars,
                load_kind="pandas → Polars conversion (each collect copies to the GPU and back)",
                gpus=(current_gpu(),),
            )
        )
    return engines


@app.function
@contextlib.contextmanager
def frames_freed_on_interrupt():
    """An interrupted run (■ in `marimo edit`, a closing session) gives its frames back at once.

    The traceback of an interrupt holds every frame of the run, and with them the GPU frames and results;
    clearing them before the error is shown returns that memory now, not when the error is dropped.
    """
    try:
        yield
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        gc.collect()
        raise


@app.function
def polars_frame_for_gpu(pl, frame: pd.DataFrame):
    """The Polars frame that Polars' GPU engine is given: categorical columns as plain strings.

    cudf-polars 26.10 refuses Categorical columns ("dtype=Categorical conversion not supported", seen on
    an H100), so filter, join and sort, whose inputs carry the `category` column, would not run on the GPU
    at all. Strings hold the same values, and the check compares categories as text.
    """
    out = pl.from_pandas(frame)
    cats = [c for c, t in out.schema.items() if isinstance(t, (pl.Categorical, pl.Enum))]
    return out.with_columns(pl.col(c).cast(pl.String) for c in cats) if cats else out


@app.function
def polars_gpu_engine(pl):
    """Polars' GPU engine as this app runs it: one GPU, in-memory executor, cuDF's own RMM memory pool.

    cudf-polars 26.10 defaults to its streaming executor, which pins the process to the GPU's CPU cores
    (the CPU engines compared beside it would lose cores) and keeps its own memory pool; the in-memory
    executor runs each query on one GPU as cuDF does. Sharing cuDF's RMM resource keeps one pool, so the
    memory panel and the caps see everything (otherwise it takes managed memory worth 80% of free).
    """
    options = {"executor": "in-memory", "raise_on_fail": True}
    try:
        import rmm

        options["memory_resource"] = rmm.mr.get_current_device_resource()
    except ImportError:
        pass
    return pl.GPUEngine(**options)


@app.function
def polars_ops(engine: str = "cpu") -> dict:
    """The five ops in Polars' expression API, side by side with the pandas/cuDF ones; run on CPU or GPU."""

    def collect(lf, pl):
        return lf.collect(engine=polars_gpu_engine(pl)) if engine == "gpu" else lf.collect()

    def filter_(pl, df, lookup):
        return collect(df.lazy().filter((pl.col("value") > 50.0) & (pl.col("key_few") < 50)), pl)

    def groupby_few(pl, df, lookup):
        value = pl.col("value")
        return collect(
            df.lazy()
            .group_by("key_few")
            .agg(
                value.sum().alias("value_sum"),
                value.mean().alias("value_mean"),
                value.max().alias("value_max"),
                value.count().alias("value_count"),
                pl.col("value2").std().alias("value2_std"),
            ),
            pl,
        )

    def groupby_many(pl, df, lookup):
        value = pl.col("value")
        return collect(
            df.lazy()
            .group_by("key_many")
            .agg(value.sum().alias("value_sum"), value.count().alias("value_count")),
            pl,
        )

    def join(pl, df, lookup):
        return collect(df.lazy().join(lookup.lazy(), on="key_many", how="inner"), pl)

    def sort(pl, df, lookup):
        return collect(df.lazy().sort("value"), pl)

    return {
        "filter": filter_,
        "groupby_few": groupby_few,
        "groupby_many": groupby_many,
        "join": join,
        "sort": sort,
    }


@app.function
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
        # Categories compare as text, integers of any width as Int64.
        return frame.select(
            pl.col(c).cast(pl.String)
            if isinstance(frame.schema[c], (pl.Categorical, pl.Enum))
            else pl.col(c).cast(pl.Int64)
            if frame.schema[c].is_integer()
            else pl.col(c)
            for c in cols
        )

    exp, act = normal(exp), normal(actual)
    if order.startswith("key:"):
        key = order.split(":", 1)[1]
        if not (exp[key] == act[key]).all():
            return False, f"not sorted like pandas by {key}"
    if order != "rows":
        exp, act = exp.sort(cols), act.sort(cols)
    for col in cols:
        a, e = act[col], exp[col]
        if e.dtype.is_float():
            close = ((a - e).abs() <= atol + rtol * e.abs()).fill_null(False) | (a.is_null() & e.is_null())
            close = close | (a.is_nan().fill_null(False) & e.is_nan().fill_null(False))
        else:
            close = (a == e).fill_null(False) | (a.is_null() & e.is_null())
        bad = int((~close).sum())
        if bad:
            return False, f"{bad:,} of {exp.height:,} values differ in column '{col}'"
    return True, f"{exp.height:,} rows identical (floats within tolerance)"


@app.function
def detect_duckdb():
    """DuckDB's module (or None) and a sentence for the user."""
    try:
        import duckdb
    except ImportError:
        return None, "DuckDB is not installed: it is in `requirements.txt` (`make install` adds it)."
    return duckdb, f"DuckDB {duckdb.__version__} runs SQL on all {os.cpu_count()} CPU threads."


@app.function
def duckdb_sql() -> dict:
    """The five ops in DuckDB's SQL, over the views `df` and `lookup`; column names as results_match expects."""
    return {
        "filter": "SELECT * FROM df WHERE value > 50.0 AND key_few < 50",
        "groupby_few": "SELECT key_few, sum(value) AS value_sum, avg(value) AS value_mean, max(value) AS value_max, "
        "count(value) AS value_count, stddev_samp(value2) AS value2_std FROM df GROUP BY key_few",
        "groupby_many": "SELECT key_many, sum(value) AS value_sum, count(value) AS value_count FROM df GROUP BY key_many",
        "join": "SELECT * FROM df JOIN lookup USING (key_many)",
        "sort": "SELECT * FROM df ORDER BY value",
    }


@app.function
def make_duckdb_engine(duckdb) -> Engine:
    """DuckDB on all cores: each op registers the pandas frames as views (no copy) and fetches an Arrow table.

    One connection per engine, so each run (each viewer) queries on its own. The filter's row order holds
    because DuckDB keeps insertion order by default (`preserve_insertion_order`).
    """
    con = duckdb.connect()

    def op(sql):
        def run(_duckdb, frame, lookup):
            con.register("df", frame)
            con.register("lookup", lookup)
            rel = con.sql(sql)
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()

        return run

    def file_op(name):
        def run(_duckdb, files, lookup):
            con.register("lookup", lookup)
            rel = con.sql(duckdb_file_sql(files)[name])
            if name == "pipeline":  # the job's small answer ends in pandas, as for every engine
                return rel.df()
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()

        return run

    def compare(expected, result, order):
        import polars as pl

        return results_match_polars(expected, pl.from_arrow(result), order)

    return Engine(
        "duckdb",
        duckdb,
        on_gpu=False,
        ops={name: op(sql) for name, sql in duckdb_sql().items()},
        compare=compare,
        slice_warmup=True,
        file_ops={name: file_op(name) for name in FILE_OPS},
    )


@app.function
def fallback_steps() -> dict:
    """Realistic pandas steps that may fall back to the CPU under cudf.pandas (FALLBACK_STEP picks the app's)."""

    def rowwise_label(xdf, df, lookup):
        # A Python function per row: the commonest way pandas code leaves the GPU.
        return (
            df.head(200_000).apply(lambda r: "high" if r["value"] > 50 else "low", axis=1).to_frame("label")
        )

    def python_groupby_agg(xdf, df, lookup):
        return df.groupby("key_few")["value"].agg(lambda v: float(v.max() - v.min())).to_frame("spread")

    def rolling_python_apply(xdf, df, lookup):
        return (
            df["value"].head(200_000).rolling(20).apply(lambda w: w[-1] - w[0], raw=True).to_frame("change")
        )

    def map_python_function(xdf, df, lookup):
        return df["key_few"].head(200_000).map(lambda k: f"k{k:03d}").to_frame("key_label")

    return {
        "rowwise_label": rowwise_label,
        "python_groupby_agg": python_groupby_agg,
        "rolling_python_apply": rolling_python_apply,
        "map_python_function": map_python_function,
    }


@app.function
def worker_main(request: dict) -> dict:
    """Runs in the worker process (pandas there may be cudf.pandas' proxy): time the app's own ops, unchanged.

    Writes each result as Parquet into `request["out_dir"]` (the parent's private temp folder) and returns
    per-op timings and, under cudf.pandas, the profiler's per-function GPU/CPU split.
    """
    accelerated = "cudf.pandas" in sys.modules
    sync = cuda_synchronize if accelerated else (lambda: None)
    df, lookup = generate_data(request["rows"], request.get("seed", 0))
    # The timings come from the unprofiled runs; the GPU/CPU split from one profiled call on a small sample.
    sample, sample_lookup = generate_data(min(request["rows"], PROFILE_SAMPLE_ROWS), request.get("seed", 0))
    steps = {**{op: get_op(op) for op in OPS}, **fallback_steps()}
    out = {"accelerated": accelerated, "ops": {}, "profile_rows": min(request["rows"], PROFILE_SAMPLE_ROWS)}
    for op in request["ops"]:
        fn = functools.partial(steps[op], pd, df, lookup)
        timing = time_operation(
            fn, request["repeats"], sync=sync, min_warmup_s=GPU_MIN_WARMUP_S * accelerated
        )
        profile = profile_fallbacks(functools.partial(steps[op], pd), sample, sample_lookup) if accelerated else None
        path = os.path.join(request["out_dir"], f"{op}.parquet")
        flatten_result(timing.result).to_parquet(path)
        out["ops"][op] = {
            "times": timing.times,
            "warmup_s": timing.warmup_s,
            "rows_out": len(timing.result),
            "result": path,
            "profile": profile,
        }
        del timing
    if request.get("snippet") is not None:
        out["snippet"] = run_snippet_here(request["snippet"], df, request["out_dir"], sync)
    return out


@app.function
def profile_fallbacks(step, sample, lookup, profiler_cls=None, timeout_s: float = PROFILE_TIMEOUT_S) -> list[dict]:
    """One profiled call of `step(sample, lookup)` under cudf.pandas' Profiler: per pandas function, GPU/CPU calls.

    Its cost is capped twice: the caller passes a sample of PROFILE_SAMPLE_ROWS rows, and a timer stops the
    call after `timeout_s` (the report then says so in a row of its own). Runs in the worker's main thread.
    """
    import signal

    if profiler_cls is None:
        from cudf.pandas import Profiler as profiler_cls

    class ProfileTimeout(Exception):
        pass

    def stop(_signum, _frame):
        raise ProfileTimeout

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    stopped = False
    try:
        with profiler_cls() as profiler:
            step(sample, lookup)
    except ProfileTimeout:
        stopped = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    rows = [
        {
            "function": name,
            **{f"{k}_calls": len(v) for k, v in t.items()},
            **{f"{k}_s": sum(v) for k, v in t.items()},
        }
        for name, t in profiler.per_function_stats.items()
    ]
    if stopped:
        rows.append({"function": f"(profiling stopped after {timeout_s:.0f} s; calls above are those seen so far)"})
    return rows


@app.function
def run_snippet_here(code: str, df, out_dir: str, sync) -> dict:
    """Runs in the worker: the user's snippet over `df`, timed once after a warm-up; its result saved as Parquet."""
    namespace = {"pd": pd, "np": np, "df": df}
    compiled = compile(code, "<your snippet>", "exec")

    def run(frame=df):
        namespace["df"] = frame
        exec(compiled, namespace)  # the snippet's own process, its own namespace: nothing of the app
        return namespace["result"]

    timing = time_operation(run, 1, sync=sync)
    result = timing.result
    profile = None
    if "cudf.pandas" in sys.modules:  # on a sample, bounded in time, as in worker_main
        profile = profile_fallbacks(lambda frame, _lookup: run(frame), df.head(PROFILE_SAMPLE_ROWS), None)
    if hasattr(result, "columns"):  # a DataFrame
        frame = result.copy()
    elif hasattr(result, "to_frame"):  # a Series or an Index
        frame = result.to_frame()
    else:  # a scalar
        frame = pd.DataFrame({"result": [result]})
    frame.columns = [str(c) for c in frame.columns]
    path = os.path.join(out_dir, "snippet.parquet")
    frame.reset_index(drop=False).to_parquet(path)
    return {"seconds": timing.median, "result": path, "rows_out": len(frame), "profile": profile}


@app.function
def worker_command() -> list[str]:
    """The worker's command line: a fresh Python that turns cudf.pandas on *before* pandas is first imported.

    Why a separate process: `cudf.pandas.install()` only works before pandas is imported, and it patches
    pandas for the whole process. This process imported real pandas at start-up (every other engine, and
    every other viewer's session, uses it); accelerating it here would change their measurements too.
    """
    boot = (
        "import json, sys\n"
        "request = json.loads(sys.stdin.read())\n"
        "if request['accelerate']:\n"
        "    import cudf.pandas\n"
        "    cudf.pandas.install()\n"
        "sys.path.insert(0, request['app_dir'])\n"
        "import rapids_benchmark_dashboard as app\n"
        "print('WORKER-RESULT ' + json.dumps(app.worker_main(request)))\n"
    )
    return [sys.executable, "-c", boot]


@app.function
def run_worker(request: dict, timeout_s: float) -> tuple[dict | None, str | None]:
    """Run the worker; its answer, or None and a message a user can act on (timeout, error, out of memory).

    The worker writes to temporary files, not pipes, and runs in its own process group: a process it leaves
    behind that still holds its output (a library's helper process) cannot keep this call waiting for an end
    of file, and a timeout or the end of the call stops the whole group.
    """
    import json
    import signal
    import subprocess

    request = {**request, "app_dir": os.path.dirname(os.path.abspath(__file__))}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            worker_command(), stdin=subprocess.PIPE, stdout=out, stderr=err, text=True, start_new_session=True
        )
        try:
            proc.communicate(json.dumps(request), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None, f"stopped after {timeout_s:.0f} s (the time limit); nothing else was affected."
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((x for x in stdout.splitlines() if x.startswith("WORKER-RESULT ")), None)
    if proc.returncode == 0 and line:
        return json.loads(line.split(" ", 1)[1]), None
    if proc.returncode in (-9, 137):
        return None, "the worker was killed (out of memory?); the app keeps running."
    last = [x for x in stderr.strip().splitlines() if x.strip()][-1:] or [f"exit status {proc.returncode}"]
    return None, f"failed: {last[0][:500]}"


@app.function
def user_code_allowed(mode: str | None, cli: dict) -> tuple[bool, str]:
    """Whether this session may run typed code, and why (a `marimo run` viewer must not gain code execution)."""
    if cli.get("allow_user_code"):
        return (
            True,
            "The app was started with `-- --allow-user-code`: viewers may run snippets on this server.",
        )
    if mode == "edit":
        return True, "In `marimo edit` you already run code on this server, so the snippet box is on."
    return False, (
        "**The snippet box is off**: this is a read-only app (`marimo run`), and running typed code would give "
        "every viewer code execution on the server. Open it with `marimo edit`, or start it with "
        "`marimo run rapids_benchmark_dashboard.py -- --allow-user-code` on a machine only you can reach."
    )


@app.function
def prepare_snippet(code: str) -> tuple[str | None, str | None]:
    """The snippet ready to run (its last expression becomes `result`), or None and what is wrong with it."""
    import ast

    if not code.strip():
        return (
            None,
            "Type a pandas snippet that uses `df` (the generated data), e.g. `df.groupby('key_few').value.mean()`.",
        )
    if len(code) > SNIPPET_MAX_CHARS:
        return None, f"The snippet has {len(code):,} characters; the limit is {SNIPPET_MAX_CHARS:,}."
    try:
        tree = ast.parse(code, "<your snippet>")
    except SyntaxError as err:
        return None, f"Syntax error on line {err.lineno}: {err.msg}."
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.Assign(targets=[ast.Name("result", ast.Store())], value=last.value)
        ast.fix_missing_locations(tree)
    elif not any(
        isinstance(n, ast.Name) and n.id == "result" and isinstance(n.ctx, ast.Store) for n in ast.walk(tree)
    ):
        return None, "End the snippet with an expression (or assign `result = ...`): that value is compared."
    return ast.unparse(tree), None


@app.function
def run_user_snippet(code: str, rows: int, accelerate: bool, timeout_s: float = SNIPPET_TIMEOUT_S) -> dict:
    """The snippet with pandas and (accelerate) cudf.pandas, each in its own worker; times, check, fallbacks."""
    import shutil

    prepared, why = prepare_snippet(code)
    if why:
        return {"error": why}
    runs = {}
    out_dir = tempfile.mkdtemp(prefix="rapids-snippet-")
    try:
        for label, accel in (("pandas", False), ("cudf.pandas", True)):
            if accel and not accelerate:
                continue
            folder = os.path.join(out_dir, label)
            os.makedirs(folder)
            request = {"rows": rows, "ops": [], "repeats": 1, "accelerate": accel, "out_dir": folder}
            answer, failure = run_worker({**request, "snippet": prepared}, timeout_s)
            if failure:
                return {"error": f"The snippet under {label} {failure}", "runs": runs}
            runs[label] = answer["snippet"] | {"accelerated": answer["accelerated"]}
            runs[label]["frame"] = pd.read_parquet(runs[label].pop("result"))
        out = {"runs": runs}
        if len(runs) == 2:
            out["match"] = results_match(runs["pandas"]["frame"], runs["cudf.pandas"]["frame"], "rows")
        return out
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


@app.function
def run_cudf_pandas_engine(
    sizes: list[int],
    ops: list[str],
    repeats: int,
    accelerate: bool = True,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> dict:
    """The "cudf.pandas (no code change)" engine: the app's pandas op functions in a worker, checked against pandas.

    With accelerate=False the worker runs plain pandas (how CI tests the mechanism without a GPU).
    Returns records like run_benchmark's, the fallback report per op, and errors.
    """
    import shutil

    records, profiles, errors = [], [], []
    wanted = [o for o in ops if o in OPS] + [FALLBACK_STEP]
    for n in sizes:
        out_dir = tempfile.mkdtemp(prefix="rapids-cudf-pandas-")
        try:
            answer, failure = run_worker(
                {"rows": n, "ops": wanted, "repeats": repeats, "accelerate": accelerate, "out_dir": out_dir},
                timeout_s,
            )
            if failure:
                errors.append(f"cudf.pandas at {format_rows(n)} rows: {failure}")
                continue
            df, lookup = generate_data(n)
            steps = {**{op: get_op(op) for op in OPS}, **fallback_steps()}
            for op, got in answer["ops"].items():
                expected = steps[op](pd, df, lookup)
                ok, detail = results_match(expected, pd.read_parquet(got["result"]), OP_ORDER.get(op, "rows"))
                del expected
                times = got["times"]
                records.append(
                    {
                        "rows": n,
                        "op": op,
                        "engine": "cudf_pandas",
                        "median_s": statistics.median(times),
                        "min_s": min(times),
                        "max_s": max(times),
                        "warmup_s": got["warmup_s"],
                        "repeats": repeats,
                        "rows_out": got["rows_out"],
                        "bytes_touched": math.nan,
                        "on_gpu": answer["accelerated"],
                        "load_s": math.nan,
                        "load_kind": "data generated in the worker",
                        "h2d_s": math.nan,
                        "d2h_s": 0.0,
                        "match": ok,
                        "checked_by": "pandas",
                        "detail": detail,
                    }
                )
                for row in got["profile"] or []:
                    profiles.append({"rows": n, "op": op, **row})
            del df, lookup
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
    return {"records": records, "profiles": profiles, "errors": errors}


@app.function
def snippet_report(out: dict, accelerated: bool) -> str:
    """The snippet's outcome: times under pandas and cudf.pandas, the check, or the clear error."""
    if out.get("error"):
        return f"**Your snippet did not run:** {out['error']}"
    runs = out["runs"]
    lines = [
        f"- **pandas**: {fmt_seconds(runs['pandas']['seconds'])}, {runs['pandas']['rows_out']:,} result rows"
    ]
    if "cudf.pandas" in runs:
        lines.append(f"- **cudf.pandas**: {fmt_seconds(runs['cudf.pandas']['seconds'])}")
        ok, detail = out["match"]
        lines.append(f"- results {'✓ match' if ok else '✗ DIFFER'}: {detail}")
        fallbacks = fallback_table(
            [{"rows": 0, "op": "snippet", **p} for p in runs["cudf.pandas"].get("profile") or []]
        )
        if fallbacks is not None:
            table = fallbacks.drop(columns="operation")
            lines.append(
                f"\nWhat ran where, from cudf.pandas' profiler on the first {PROFILE_SAMPLE_ROWS:,} rows of `df` "
                "(its times are the profiled call's; the timings above are unprofiled):"
            )
            lines.append("\n| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    elif not accelerated:
        lines.append("- **cudf.pandas**: not run — no cuDF on a GPU here (see the box at the top).")
    return "\n".join(lines)


@app.function
def fallback_table(profiles: list[dict]) -> pd.DataFrame | None:
    """The fallback report: per op and pandas function, calls and seconds on the GPU and on the CPU."""
    if not profiles:
        return None
    table = pd.DataFrame(profiles)
    for col in ("gpu_calls", "cpu_calls", "gpu_s", "cpu_s"):
        if col not in table:
            table[col] = 0
    table = table.fillna(0)
    top = table[table["rows"] == table["rows"].max()]
    return pd.DataFrame(
        {
            "operation": top["op"],
            "pandas function": top["function"],
            "on GPU (calls)": top["gpu_calls"].astype(int),
            "GPU time": top["gpu_s"].map(fmt_seconds),
            "fell back to CPU (calls)": top["cpu_calls"].astype(int),
            "CPU time": top["cpu_s"].map(fmt_seconds),
        }
    )


@app.function
def detect_dask(gpu_count: int) -> tuple[bool, str]:
    """Whether the Dask-cuDF engine can run here, and a sentence saying why or why not."""
    if gpu_count < 2:
        return False, (
            f"Dask-cuDF spreads one DataFrame over several GPUs; this machine has {gpu_count}. "
            "On a 2-, 4- or 8-GPU instance it appears here as a third engine."
        )
    try:
        import dask_cuda  # noqa: F401
        import dask_cudf  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as err:
        return False, (
            f"Dask-cuDF is not installed ({err.name} missing): `make install GPU=1` adds `requirements-gpu.txt`, "
            "which holds `dask-cuda` and `dask-cudf-cu12`."
        )
    return True, f"Dask-cuDF can spread the data over all {gpu_count} GPUs (one Dask worker per GPU)."


@app.function
def dask_client(kind: str = "gpu", n_workers: int = 2):
    """The app's Dask cluster and client: started once per process, reused by every viewer and every re-run.

    Viewers of `marimo run` are threads of one process: the check and the start happen under one
    process-wide lock, so two viewers pressing Run together share one cluster instead of starting two.
    """
    import types

    registry = sys.modules.setdefault(
        "gpu_learning_notebooks_dask", types.ModuleType("gpu_learning_notebooks_dask")
    )
    # setdefault is atomic under the GIL: every thread gets the same lock object.
    with registry.__dict__.setdefault("lock", threading.Lock()):
        return start_dask_client(registry.__dict__, kind, n_workers)


@app.function
def start_dask_client(registry: dict, kind: str, n_workers: int):
    """dask_client's body, run under its lock: reuse the running client of this kind or start one."""
    import atexit

    client = registry.get(kind)
    if client is not None and client.status == "running":
        return client
    from distributed import Client, LocalCluster

    if kind == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(dashboard_address=None)  # one worker process per visible GPU
    else:  # the CPU stand-in the tests use: pandas partitions on local workers
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=None
        )
    client = Client(cluster)  # the default client: len(), compute() and sorting all run on these workers
    registry[kind] = client

    def shutdown():
        # Workers first (retire, then close), so none is left heartbeating to a scheduler that is gone.
        with contextlib.suppress(Exception):
            client.retire_workers(close_workers=True)
        client.close()
        cluster.close()

    atexit.register(shutdown)
    return client


@app.function
def dask_partition(index: int, n_rows: int, seed: int, gpu: bool):
    """Runs on a Dask worker: generate this partition's chunk there and, for Dask-cuDF, put it on that GPU."""
    frame = generate_chunk(n_rows, index, seed)
    if gpu:
        import cudf

        return cudf.from_pandas(frame)
    return frame


@app.function
def make_dask_engine(client, gpu: bool = True) -> Engine:
    """Dask over one worker per GPU (or CPU workers in tests); data made on the workers, persisted before timing."""
    import dask.dataframe as dd
    from distributed import wait

    def load(n_rows, seed, df, lookup):
        with client.as_current():
            parts = -(-n_rows // data_chunk_rows(n_rows))
            frame = dd.from_map(
                functools.partial(dask_partition, n_rows=n_rows, seed=seed, gpu=gpu),
                range(parts),
                meta=dask_partition(0, 1, seed, gpu).iloc[:0],
            )
            lookup_frame = lookup
            if gpu:
                import cudf

                lookup_frame = cudf.from_pandas(lookup)
            # One partition: every worker joins against a broadcast copy instead of shuffling the big table.
            lk = dd.from_pandas(lookup_frame, npartitions=1)
            # The collection's own .persist(): `client.persist(groupby_result)` lost groups in dask 2026.7.
            frame, lk = frame.persist(), lk.persist()
            wait([frame, lk])
        return frame, lk

    def timed(fn):
        def run(xdf, frame, lookup):
            with client.as_current():
                out = fn(xdf, frame, lookup).persist()
                wait(out)
            return out

        return run

    def compare(expected, result, order):
        with client.as_current():
            computed = result.compute()
        to_lib = None
        if gpu and isinstance(expected, pd.DataFrame):  # pandas was the reference: compare on the GPU
            import cudf

            to_lib = cudf.from_pandas
        return results_match(expected, computed, order, to_library=to_lib)

    return Engine(
        "dask_cudf" if gpu else "dask",
        dd,
        on_gpu=gpu,
        ops={name: timed(get_op(name)) for name in OPS},
        compare=compare,
        load=load,
        load_kind="partitions generated on the workers",
        gpus=None if gpu else (),
    )


@app.function
def detect_polars(cudf_module=None, force_cpu: bool = False):
    """Polars' module (or None) and whether its GPU engine runs here, with a sentence for the user."""
    try:
        import polars
    except ImportError:
        return None, False, "Polars is not installed: it is in `requirements.txt` (`make install` adds it)."
    cpu = f"Polars {polars.__version__} runs on all {polars.thread_pool_size()} CPU threads."
    if cudf_module is None or force_cpu:
        return polars, False, cpu
    try:
        import cudf_polars  # noqa: F401

        polars.LazyFrame({"a": [1, 2]}).select(polars.col("a").sum()).collect(
            engine=polars_gpu_engine(polars)
        )
    except ImportError:
        return polars, False, cpu + " Its GPU engine needs `cudf-polars-cu12` (in requirements-gpu.txt)."
    except Exception as err:
        return polars, False, cpu + f" Its GPU engine failed to start (`{type(err).__name__}: {err}`)."
    return polars, True, cpu + " Its GPU engine (cudf-polars) runs too."


@app.function
def is_out_of_memory(err: BaseException) -> bool:
    """True for a host or GPU allocation failure, recognised by its type wherever the library gives one.

    MemoryError covers Python's own, RMM's and libcudf's `std::bad_alloc` (Cython maps it to MemoryError)
    and CuPy's OutOfMemoryError (a MemoryError subclass). CuPy's CUDARuntimeError carries the CUDA status
    (2 = cudaErrorMemoryAllocation). Only a libcudf `cuda_error` arrives as a bare RuntimeError with no type
    of its own, so for that one class alone the message is read.
    """
    if isinstance(err, MemoryError):
        return True
    if (duckdb := sys.modules.get("duckdb")) is not None and isinstance(err, duckdb.OutOfMemoryException):
        return True
    runtime = sys.modules.get("cupy_backends.cuda.api.runtime")
    if runtime is not None and isinstance(err, runtime.CUDARuntimeError):
        return getattr(err, "status", None) == 2
    return type(err) is RuntimeError and "out of memory" in str(err).lower()


@app.function
def library_errors() -> tuple[type[BaseException], ...]:
    """The documented failures of the engines' libraries (those loaded): reported per op, never raised.

    cuDF and cudf-polars raise NotImplementedError for a feature or dtype they do not support; Polars'
    errors derive from PolarsError; a Dask worker that dies or a lost connection raises KilledWorker or
    CommClosedError. Anything else (NameError, TypeError, KeyError ...) is a bug and propagates.
    """
    errors: list[type[BaseException]] = [NotImplementedError]
    if (polars := sys.modules.get("polars")) is not None:
        errors.append(polars.exceptions.PolarsError)
    if (duckdb := sys.modules.get("duckdb")) is not None:
        errors.append(duckdb.Error)  # DuckDB's documented error base (IO, conversion, out of memory ...)
    if (distributed := sys.modules.get("distributed")) is not None:
        errors.append(distributed.KilledWorker)
        if (comm := sys.modules.get("distributed.comm.core")) is not None:
            errors.append(comm.CommClosedError)
    return tuple(errors)


@app.function
def is_reported_failure(err: BaseException) -> bool:
    """Out of memory or a library's documented error: shown as a failed measurement, the run goes on."""
    return is_out_of_memory(err) or isinstance(err, library_errors())


@app.function
def finish_record(
    eng, op, n, repeats, timing, dev_df, load_s, expected, clock=time.perf_counter, dev_lookup=None
) -> dict:
    """The record of one timed op, checked: against pandas' result, or by a self-check where pandas has none.

    pandas (the engine named "pandas") is the reference. Without its result for this op and size (pandas
    failed, or the size is beyond it) a pandas-API result (cuDF, Dask) is self-checked from the input and
    a Polars one is marked not checked: no other engine's result silently becomes the reference.
    """
    result = timing.result
    rec = {
        "rows": n,
        "op": op,
        "engine": eng.name,
        "median_s": timing.median,
        "min_s": timing.min,
        "max_s": timing.max,
        "warmup_s": timing.warmup_s,
        "repeats": repeats,
        "rows_out": len(result),
        "bytes_touched": bytes_touched(op, dev_df, result),
        "on_gpu": eng.on_gpu,
        "load_s": load_s,
        "load_kind": eng.load_kind,
        "h2d_s": load_s if eng.load_kind == HOST_TO_GPU else math.nan,
        "d2h_s": 0.0,
        "energy_j": op_energy_j(timing),
        "match": None,
        "checked_by": "",
        "detail": "reference",
    }
    if eng.name == "pandas":
        return rec
    if expected is not None:
        if eng.to_host is not None and op != "pipeline":  # the pipeline's answer is in pandas already
            t0 = clock()
            eng.to_host(result)
            eng.sync()
            rec["d2h_s"] = clock() - t0
        if op == "pipeline":  # every engine's answer is a pandas frame
            check = results_match
        else:
            check = eng.compare or functools.partial(results_match, to_library=eng.to_device)
        rec["match"], rec["detail"] = check(expected, result, OP_ORDER[op])
        rec["checked_by"] = "pandas"
    elif op not in FILE_OPS and (eng.compare is None or eng.load is not None):  # pandas API: from the input
        rec["match"], rec["detail"] = invariant_check(op, dev_df, dev_lookup, result)
        rec["checked_by"] = "self-check"
    else:
        rec["detail"] = "not checked: pandas, the reference, has no result for this op and size"
    return rec


@app.function
def op_energy_j(timing: Timing) -> float | None:
    """Joules per call of an op: NVML's energy counter across its timed repeats, divided by their number."""
    joules = energy_joules(*timing.counter)
    return None if joules is None or not timing.times else joules / len(timing.times)


@app.function
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


@app.function
def host_working_factor(engine_names) -> float:
    """Host working memory of a run with these engines, as a multiple of the data frame (HOST_FACTORS, summed)."""
    return sum(HOST_FACTORS.get(name, max(HOST_FACTORS.values())) for name in engine_names)


@app.function
def read_free_memory(engines) -> dict:
    """Free host RAM now and, when a single-GPU engine runs, free memory on GPU 0 (bytes; None if unknown)."""
    gpu = None
    if any(e.on_gpu and e.load is None for e in engines):
        gpu = next((g["memory_free_bytes"] for g in read_gpu_status()), None)
    return {"host": read_host_status()["available_bytes"], "gpu": gpu}


@app.function
def memory_shortfall(
    what: str, need_bytes: float, free_bytes: float | None, headroom: float = MEMORY_HEADROOM
):
    """A sentence when `need_bytes` does not fit `headroom` of `free_bytes`; None when it fits or is unknown."""
    if free_bytes is None or need_bytes <= free_bytes * headroom:
        return None
    return (
        f"needs ≈ {need_bytes / 1e9:,.1f} GB of {what}, but only {free_bytes / 1e9:,.1f} GB is free now "
        f"(the app keeps {100 - headroom * 100:.0f}% spare)"
    )


@app.function
def run_benchmark(
    sizes: list[int],
    ops: list[str],
    engines: list[Engine],
    repeats: int,
    seed: int = 0,
    cpu_warmup_rows: int = CPU_WARMUP_ROWS,
    tick: Callable[..., None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    free_memory: Callable[[], dict] | None = None,
) -> dict:
    """Time every op on every engine at every size; check each result against pandas'.

    Free memory (`free_memory()`: {"host": bytes, "gpu": bytes or None}) is read before each size and each
    engine: a size whose host working set no longer fits stops the run, an engine that no longer fits is
    skipped at that size, each with a message — never an out-of-memory kill of the whole server.
    `tick(label, gpus)` is called before the warm-up and after each repeat (`gpus`: the engine's GPUs).
    """
    records, spans, errors, generation = [], [], [], []
    tick = tick or (lambda label, gpus=None: None)
    free_memory = free_memory or functools.partial(read_free_memory, engines)
    bytes_per_row = estimate_bytes_per_row()
    for n in sizes:
        need = {e.name: n * bytes_per_row * host_working_factor([e.name]) for e in engines}
        start_free = free_memory()
        short = memory_shortfall("host RAM", sum(need.values()), start_free["host"])
        if short:
            errors.append(
                f"Stopped before {format_rows(n)} rows: the run with "
                f"{', '.join(ENGINE_LABELS.get(e.name, e.name) for e in engines)} {short}."
            )
            break
        gpu_short = memory_shortfall("GPU memory", n * bytes_per_row * GPU_WORKING_FACTOR, start_free["gpu"])
        t0 = clock()
        # Engines that build their own data (Dask workers) need none from the host.
        df, lookup = (
            generate_data(n, seed) if any(e.load is None for e in engines) else (None, generate_lookup(seed))
        )
        generation.append({"rows": n, "seconds": clock() - t0})
        files = None
        if df is not None and any(op in FILE_OPS for op in ops):
            files, why = data_files(n, seed, df)  # once per size, never timed
            if why:
                errors.append(why)
            else:
                generation[-1]["file_bytes"] = {kind: os.path.getsize(path) for kind, path in files.items()}
        frames, load_s = {}, {}
        for k, eng in enumerate(engines):
            if eng.on_gpu and eng.load is None and gpu_short:
                errors.append(f"{eng.name} skipped at {format_rows(n)} rows: it {gpu_short}.")
                continue
            if k > 0:
                # What this size still needs: its whole budget less what it has taken so far — credited only
                # up to the frames made so far (the data, its generation's transient copy, one per loaded
                # engine), so memory another program took since the size started is not mistaken for ours.
                now = free_memory()["host"]
                credit = (k + 1) * n * bytes_per_row
                taken = min(max(start_free["host"] - now, 0), credit) if now is not None else 0
                short = memory_shortfall("host RAM", sum(need.values()) - taken, now)
                if short:
                    errors.append(
                        f"{eng.name} skipped at {format_rows(n)} rows: the rest of this size {short}."
                    )
                    need[eng.name] = 0.0
                    continue
            try:
                # A tiny copy first: context set-up is not billed to the data.
                if eng.on_gpu and eng.load is None:
                    eng.to_device(df.head(1000))
                    eng.sync()
                t0 = clock()
                frames[eng.name] = (
                    eng.load(n, seed, df, lookup) if eng.load else (eng.to_device(df), eng.to_device(lookup))
                )
                eng.sync()
                load_s[eng.name] = clock() - t0 if eng.load_kind else 0.0
            except Exception as err:
                if not is_reported_failure(err):
                    raise
                errors.append(f"{eng.name} could not take {format_rows(n)} rows: {describe_error(err)}")
        gc.collect()  # a failed copy's partial frame goes now, not at the end of the run
        for op in ops:
            expected = None
            from_file = op in FILE_OPS
            if from_file and files is None:
                continue
            for eng in engines:
                if eng.name not in frames or (from_file and not (eng.file_ops and op in eng.file_ops)):
                    continue
                xdf, (dev_df, dev_lookup) = eng.lib, frames[eng.name]
                if from_file:  # the op reads the size's file: it gets the paths, not the frame
                    fn, dev_df, small = eng.file_ops[op], files, None
                else:
                    fn = eng.ops[op] if eng.ops else get_op(op)
                    small = dev_df.head(cpu_warmup_rows) if eng.slice_warmup and n > cpu_warmup_rows else None
                label = f"{eng.name} · {op} · {format_rows(n)} rows"
                tick(f"{label} · warm-up", eng.gpus)
                start = clock()
                failure = None
                try:
                    timing = time_operation(
                        functools.partial(fn, xdf, dev_df, dev_lookup),
                        repeats,
                        sync=eng.sync,
                        warmup=functools.partial(fn, xdf, small, dev_lookup) if small is not None else None,
                        on_repeat=lambda i, label=label, g=eng.gpus: tick(
                            f"{label} · repeat {i + 1}/{repeats}", g
                        ),
                        min_warmup_s=GPU_MIN_WARMUP_S if eng.on_gpu else 0.0,
                        read_counter=functools.partial(read_energy_mj, eng.gpus) if eng.on_gpu else None,
                    )
                    spans.append(
                        {
                            "engine": eng.name,
                            "on_gpu": eng.on_gpu,
                            "op": op,
                            "rows": n,
                            "start": start,
                            "end": clock(),
                            "gpus": eng.gpus,
                            # the timed repeats alone, for the GPM windows (perf_counter, as start and end)
                            "repeats": [(t, t + d) for t, d in zip(timing.starts, timing.times, strict=True)],
                        }
                    )
                    rec = finish_record(
                        eng,
                        op,
                        n,
                        repeats,
                        timing,
                        frames[eng.name][0],
                        0.0 if from_file else load_s[eng.name],
                        expected,
                        clock,
                        dev_lookup,
                    )
                except Exception as err:  # in the op, the copy back or the check
                    # A file that cannot be read (truncated, corrupt) is bad input, not a bug: every reader
                    # says so with an OSError, ValueError (Arrow, pandas) or RuntimeError (libcudf).
                    unreadable = from_file and isinstance(err, (OSError, ValueError, RuntimeError))
                    if not (is_reported_failure(err) or unreadable):
                        raise
                    failure = f"{label}: {describe_error(err)}"
                if failure is not None:
                    # collected outside the except block: inside it, the error still pins the op's frames
                    errors.append(failure)
                    timing = None
                    gc.collect()
                    continue
                if eng.name == "pandas":
                    expected = timing.result
                records.append(rec)
                del timing
            del expected
            gc.collect()
        del frames, df, lookup
        gc.collect()
    return {"records": records, "spans": spans, "errors": errors, "generation": generation}


@app.function
def describe_error(err: BaseException) -> str:
    """One line a user can act on."""
    if is_out_of_memory(err):
        return (
            f"out of memory ({type(err).__name__}). Choose fewer rows, close other GPU programs "
            "(another notebook may hold memory), or use a card with more memory."
        )
    return f"{type(err).__name__}: {err}"


@app.function
def run_sized_benchmark(plan: dict, engines: list[Engine], tick: Callable[[str], None] | None = None) -> dict:
    """run_benchmark, with sizes beyond one GPU (or host RAM) run only on engines that build their own data."""
    limit = plan.get("single_engine_rows", plan["rows"])
    small = [n for n in plan["sizes"] if n <= limit]
    large = [n for n in plan["sizes"] if n > limit]
    spread = [e for e in engines if e.load is not None]
    out = run_benchmark(small, plan["ops"], engines, plan["repeats"], tick=tick)
    if large and spread:
        more = run_benchmark(large, plan["ops"], spread, plan["repeats"], tick=tick)
        for key in ("records", "spans", "errors", "generation"):
            out[key] += more[key]
    return out


@app.function
def progress_total(plan: dict, engines: list[Engine]) -> int:
    """Progress steps of a run: warm-up + repeats per op and engine, sizes beyond one GPU on Dask alone."""
    limit = plan.get("single_engine_rows", plan["rows"])
    spread = sum(1 for e in engines if e.load is not None)
    runs = sum(len(engines) if n <= limit else spread for n in plan["sizes"])
    return runs * len(plan["ops"]) * (plan["repeats"] + 1)


@app.function
def run_with_progress(plan: dict, engines: list[Engine]) -> dict:
    """run_benchmark with a live progress bar and the NVML sampler running around it."""
    total = max(progress_total(plan, engines), 1)
    gpus = engine_gpus(engines)
    sampler = GpuSampler(interval_s=0.1)
    gpm = GpmSampler(device_indices=gpus) if gpus != [] else None
    t_start = time.perf_counter()
    sampler.start()
    if gpm is not None:
        gpm.start()
    try:
        with mo.status.progress_bar(
            total=total, title="Benchmarking", show_eta=True, remove_on_exit=True
        ) as bar:
            done = [0]

            def tick(label: str, gpus=None) -> None:
                done[0] += 1
                bar.update(subtitle=f"{label}{sampler.latest_text(gpus)}")

            out = run_sized_benchmark(plan, engines, tick)
            # Skipped or failed measurements tick less: the bar still ends full.
            if total > done[0]:
                bar.update(increment=total - done[0], subtitle="done")
    finally:
        sampler.stop()
        if gpm is not None:
            gpm.stop()
    out["wall_s"] = time.perf_counter() - t_start
    out["samples"] = sampler.samples_relative_to(sampler.t0)
    out["sample_rate_hz"] = sampler.rate_hz()
    for s in out["spans"]:
        s["start"] -= sampler.t0
        s["end"] -= sampler.t0
        s["repeats"] = [(a - sampler.t0, b - sampler.t0) for a, b in s.get("repeats", [])]
    out.update(gpm_outcome(gpm, sampler.t0))
    if out["gpm_samples"]:
        attach_gpm(out["records"], out["spans"], out["gpm_samples"], origin=gpm.t0 - sampler.t0)
    out["peak_bandwidth_gbs"] = (
        max((g.get("peak_bandwidth_gbs") or 0 for g in read_gpu_status()), default=0) or None
    )
    out["plan"] = plan
    out["peak_gpu_memory_gb"] = sampler.peak_memory_gb()
    return out


@app.function
def gpm_outcome(gpm, t0: float) -> dict:
    """A run's GPM samples on the classic sampler's clock (t seconds after `t0`), their rate, or why none."""
    if gpm is None:
        return {"gpm_samples": [], "gpm_rate_hz": 0.0, "gpm_reason": "a CPU-only run: no GPU to read."}
    if not gpm.available:
        return {"gpm_samples": [], "gpm_rate_hz": 0.0, "gpm_reason": gpm.unavailable_reason}
    shift = gpm.t0 - t0
    return {
        "gpm_samples": [{**s, "t": s["t"] + shift} for s in gpm.samples],
        "gpm_rate_hz": gpm.rate_hz(),
        "gpm_reason": "",
    }


@app.function
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
    if "polars_median_s" in out:
        out["polars_speedup"] = pandas_s / out["polars_median_s"]
    if "cudf_median_s" in out:
        out["speedup"] = pandas_s / out["cudf_median_s"]
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
    if "cudf_pandas_median_s" in out:
        out["cudf_pandas_speedup"] = pandas_s / out["cudf_pandas_median_s"]
        if "cudf_median_s" in out:  # how close zero code change gets to hand-written cuDF (1× = as fast)
            out["cudf_pandas_vs_cudf"] = out["cudf_median_s"] / out["cudf_pandas_median_s"]
    if "dask_cudf_median_s" in out and "cudf_median_s" in out:
        out["dask_vs_cudf"] = out["cudf_median_s"] / out["dask_cudf_median_s"]
    if "polars_gpu_median_s" in out:
        out["polars_gpu_speedup"] = pandas_s / out["polars_gpu_median_s"]
        if "polars_median_s" in out:
            out["polars_gpu_vs_polars"] = out["polars_median_s"] / out["polars_gpu_median_s"]
    return out


@app.function
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


@app.function
def check_messages(summary: pd.DataFrame, errors: list[str]) -> list[tuple[str, str]]:
    """The callouts above the results: (kind, markdown) for disagreements, failures, unchecked and passed checks."""
    out = []
    bad = summary[summary["match"] == "✗"] if len(summary) else summary
    if len(bad):  # never hidden behind anything else
        out.append(
            (
                "danger",
                "## ✗ Results DISAGREE\n\n"
                + "\n".join(
                    f"- **{r.op}** at {format_rows(r.rows)} rows: {r.detail}" for r in bad.itertuples()
                )
                + "\n\nThe speedups for these operations are meaningless until this is explained.",
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
        if by == {"pandas"}:
            text = (
                f"**✓ Every result matches pandas** — {len(checked)} checks of {names}: "
                "same rows, floats within 1e-7 relative."
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


@app.function
def fmt_seconds(s: float | None) -> str:
    """0.0123 → '12.3 ms'."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


@app.function
def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as a readable table."""
    out = pd.DataFrame({"rows": summary["rows"].map(format_rows), "operation": summary["op"]})
    for eng in ENGINE_LABELS:
        if f"{eng}_median_s" in summary:
            # One column per engine: median with the min–max spread (two columns each cut the table at 1280 px).
            out[f"{ENGINE_LABELS[eng]} median (min–max)"] = [
                f"{fmt_seconds(m)} ({fmt_seconds(a)}–{fmt_seconds(b)})" if m == m else "—"
                for m, a, b in zip(
                    summary[f"{eng}_median_s"], summary[f"{eng}_min_s"], summary[f"{eng}_max_s"], strict=True
                )
            ]

    def times(col):
        return summary[col].map(lambda x: f"{x:,.1f}×" if x == x else "—")

    if "polars_speedup" in summary:
        out["Polars vs pandas"] = times("polars_speedup")
    if "speedup" in summary:
        out["fastest CPU engine"] = summary["fastest_cpu"].map(ENGINE_LABELS.get)
        out["cuDF vs fastest CPU"] = times("speedup_vs_cpu")
        out["cuDF vs pandas"] = times("speedup")
        out["host→GPU copy"] = summary["h2d_s"].map(fmt_seconds)
        out["GPU→host copy"] = summary["d2h_s"].map(fmt_seconds)
        out["cuDF vs pandas, with copies"] = times("speedup_e2e")
    if "cudf_energy_j" in summary and summary["cudf_energy_j"].notna().any():
        out["cuDF energy per call"] = summary["cudf_energy_j"].map(
            lambda j: "—" if j is None or j != j else f"{j:,.3f} J"
        )
    if "polars_gpu_speedup" in summary:
        out["Polars GPU vs pandas"] = times("polars_gpu_speedup")
    if "dask_vs_cudf" in summary:
        out["Dask-cuDF vs 1-GPU cuDF"] = times("dask_vs_cudf")
    if "cudf_pandas_speedup" in summary:
        out["cudf.pandas vs pandas"] = times("cudf_pandas_speedup")
    if "cudf_pandas_vs_cudf" in summary:
        out["cudf.pandas vs hand-written cuDF"] = times("cudf_pandas_vs_cudf")
    if summary["check"].ne("").any():
        out["result check"] = summary["check"]
    return out


@app.function
def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 tick values covering [lo, hi] on a log axis."""
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10**exp for m in (1, 2, 5) if lo <= m * 10**exp <= hi]
    return ticks


@app.function
def speedup_chart(summary: pd.DataFrame):
    """Bars of every speedup this run has (log scale), largest size only."""
    kinds = {
        "speedup_vs_cpu": "cuDF vs fastest CPU engine",
        "speedup": "cuDF vs pandas",
        "speedup_e2e": "cuDF vs pandas, with copies",
        "polars_gpu_speedup": "Polars GPU vs pandas",
        "polars_speedup": "Polars (CPU) vs pandas",
    }
    top = summary[summary["rows"] == summary["rows"].max()]
    parts = [
        pd.DataFrame({"op": top["op"], "kind": k, "speedup": top[c]}) for c, k in kinds.items() if c in top
    ]
    if not parts:
        return mo.md("_Speedups appear when a second engine (Polars or cuDF) runs._")
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
                "kind:N", title=None, sort=list(kinds.values()), legend=alt.Legend(orient="bottom", columns=1)
            ),
            tooltip=["op", "kind", alt.Tooltip("speedup:Q", format=",.1f")],
        )
    )
    rule = alt.Chart(pd.DataFrame({"speedup": [1.0]})).mark_rule(strokeDash=[4, 4]).encode(x=x)
    return (bars + rule).properties(
        title=f"Speedups at {format_rows(top['rows'].iloc[0])} rows", width=320, height=260
    )


@app.function
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
        color=alt.Color("engine:N", sort=list(ENGINE_LABELS.values()), legend=alt.Legend(orient="bottom")),
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


@app.function
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


@app.function
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
                "engine:N", sort=list(ENGINE_LABELS.values()), legend=alt.Legend(orient="bottom", title=None)
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


@app.function
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


@app.function
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


@app.function
def fmt_ratio(x: float) -> str:
    """2.04 → '2.0×', 145.3 → '145×'."""
    return f"{x:,.1f}×" if x < 10 else f"{x:,.0f}×"


@app.function
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


@app.function
def summary_text(summary: pd.DataFrame, bench: dict) -> str:
    """A short paragraph written from this run's numbers (any mix of engines and sizes)."""
    n = int(summary["rows"].max())
    top = summary[summary["rows"] == n]
    gen = next((g["seconds"] for g in bench["generation"] if g["rows"] == n), None)
    lines = [
        f"**{format_rows(n)} rows**, {bench['plan']['repeats']} timed repeat(s) after a warm-up; "
        f"data generated in {fmt_seconds(gen)}; whole run {bench['wall_s']:.1f} s."
    ]
    ran = {e for e in ENGINE_LABELS if f"{e}_median_s" in summary and summary[f"{e}_median_s"].notna().any()}
    if "polars" in ran and "polars_speedup" in top and top["polars_speedup"].notna().any():
        lines.append(
            f"Polars on all CPU cores was {speed_range_text(top['polars_speedup'], 'pandas on one core')}."
        )
    # The cuDF comparison at the largest size where both pandas and cuDF ran.
    both = summary.dropna(subset=["speedup"]) if "speedup" in summary else summary.iloc[0:0]
    if len(both):
        m = int(both["rows"].max())
        at = both[both["rows"] == m]
        lead = "" if m == n else f"At {format_rows(m)} rows (the largest size pandas also ran), "
        best, worst = at.loc[at["speedup"].idxmax()], at.loc[at["speedup"].idxmin()]
        vs_cpu = at.dropna(subset=["speedup_vs_cpu"])
        if len(vs_cpu) and (vs_cpu["fastest_cpu"] != "pandas").any():
            lines.append(
                f"{lead}**{'against' if lead else 'Against'} the fastest CPU engine** (Polars on all cores where it won) cuDF was "
                f"**{speed_range_text(vs_cpu['speedup_vs_cpu'], 'it')}** — the honest figure."
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


@app.function
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
            lines.append(
                "- pandas uses **one core**. Against Polars on all cores the GPU's lead is smaller — compare the "
                "*cuDF vs fastest CPU* column before you decide."
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
        if "polars_speedup" in top and top["polars_speedup"].notna().any():
            lines.append(
                f"- pandas uses **one core**. At {format_rows(n)} rows Polars on all cores was "
                f"{speed_range_text(top['polars_speedup'], 'pandas')}: a parallel CPU engine is the fair "
                "baseline for any GPU comparison."
            )
    return "\n".join(lines)


@app.function
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


@app.function
def copy_bandwidth_probe(nbytes: int = 256 * 2**20, repeats: int = 5) -> dict | None:
    """This machine's host→GPU copy rate from pageable and from pinned host memory (median of `repeats`, GB/s)."""
    try:
        import cupy
    except ImportError:
        return None
    host = np.ones(nbytes // 8)
    pinned_mem = cupy.cuda.alloc_pinned_memory(nbytes)
    pinned = np.frombuffer(pinned_mem, dtype=np.float64, count=nbytes // 8)
    pinned[:] = 1.0
    device = cupy.empty(nbytes // 8, dtype=np.float64)
    rates = {}
    for name, src in (("pageable", host), ("pinned", pinned)):
        times = []
        for _ in range(repeats + 1):  # the first copy is a warm-up
            cuda_synchronize()
            t0 = time.perf_counter()
            device.set(src)
            cuda_synchronize()
            times.append(time.perf_counter() - t0)
        rates[f"{name}_gbs"] = nbytes / statistics.median(times[1:]) / 1e9
    del device, pinned, pinned_mem
    return {**rates, "bytes": nbytes}


@app.function
def d2d_bandwidth_probe(gpus: list[int] | None, nbytes: int = 512 * 2**20, repeats: int = 10) -> dict:
    """Each GPU's achievable memory bandwidth: a device-to-device copy, read + write bytes ÷ time (GB/s).

    `gpus` None: every GPU CuPy sees. CUDA events time `repeats` copies after one warm-up copy; a GPU whose
    two buffers do not fit gets None.
    """
    import cupy

    out = {}
    for gpu in range(cupy.cuda.runtime.getDeviceCount()) if gpus is None else gpus:
        with cupy.cuda.Device(gpu):
            try:
                src = cupy.ones(nbytes, dtype=cupy.uint8)
                dst = cupy.empty_like(src)
            except cupy.cuda.memory.OutOfMemoryError:
                out[gpu] = None
                continue
            dst.data.copy_from_device_async(src.data, nbytes)  # warm-up
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            for _ in range(repeats):
                dst.data.copy_from_device_async(src.data, nbytes)
            end.record()
            end.synchronize()
            seconds = cupy.cuda.get_elapsed_time(start, end) / 1e3
            out[gpu] = 2 * nbytes * repeats / seconds / 1e9
            del src, dst
    return out


@app.function
def overhead_floor_probe(engine: Engine, ops: list[str], rows: int = FLOOR_ROWS, repeats: int = 5) -> dict:
    """Median seconds of each in-memory op on `rows` rows with `engine`: its fixed per-op cost on this machine."""
    df, lookup = generate_data(rows)
    dev_df, dev_lookup = engine.to_device(df), engine.to_device(lookup)
    floor = {}
    for op in [o for o in ops if o in OPS]:
        fn = engine.ops[op] if engine.ops else get_op(op)
        timing = time_operation(
            functools.partial(fn, engine.lib, dev_df, dev_lookup), repeats, sync=engine.sync
        )
        floor[op] = timing.median
    return floor


@app.function
def card_probes(engines: list[Engine], ops: list[str]) -> dict:
    """Once per run, under the lock: each GPU's achievable bandwidth and cuDF's per-op floor on FLOOR_ROWS rows."""
    cudf_engine = next((e for e in engines if e.name == "cudf"), None)
    if cudf_engine is None:
        return {"achievable_gbs_by_gpu": {}, "achievable_gbs": None, "floor_s": {}}
    by_gpu = d2d_bandwidth_probe(engine_gpus(engines))
    return {
        "achievable_gbs_by_gpu": by_gpu,
        "achievable_gbs": by_gpu.get(cudf_engine.gpus[0]),
        "floor_s": overhead_floor_probe(cudf_engine, ops),
    }


@app.function
def roofline_bound(
    median_s: float | None,
    floor_s: float | None,
    achieved_gbs: float | None,
    achievable_gbs: float | None,
    dram_bw_pct: float | None = None,
) -> str:
    """Where an op sits for its roofline: overhead-bound, memory-bound or below the memory roof.

    DataFrame ops do a few operations per byte, so their roof is memory bandwidth, not compute. An op
    within OVERHEAD_BOUND_TIMES of its floor (its time on FLOOR_ROWS rows) is paying fixed costs; one at
    MEMORY_BOUND_SHARE or more of the achievable copy rate by the byte model — or whose GPM DRAM bandwidth
    reads that high — is memory-bound; between the two it moves more bytes than the model counts (passes,
    scratch) or waits on random access.
    """
    if not median_s or median_s != median_s:
        return "—"
    if floor_s and median_s <= OVERHEAD_BOUND_TIMES * floor_s:
        return "overhead-bound"
    if achieved_gbs is None or achievable_gbs is None or achieved_gbs != achieved_gbs:
        return "not placed: no achievable bandwidth measured"
    if achieved_gbs >= MEMORY_BOUND_SHARE * achievable_gbs or (dram_bw_pct or 0) >= 100 * MEMORY_BOUND_SHARE:
        return "memory-bound"
    return "below the memory roof"


@app.function
def copy_text(probe: dict, summary: pd.DataFrame) -> str:
    """The copy probe beside from_pandas's rate in this run, and what the difference costs."""
    text = (
        f"### Copies, honestly\n\nA raw host→GPU copy of {probe['bytes'] / 2**20:.0f} MiB ran at "
        f"**{probe['pageable_gbs']:,.1f} GB/s from pageable** memory and **{probe['pinned_gbs']:,.1f} GB/s from "
        "pinned** memory on this machine."
    )
    if "cudf_load_s" in summary:
        n = int(summary["rows"].max())
        load = summary.loc[summary["rows"] == n, "cudf_load_s"].dropna()
        if len(load):
            rate = n * estimate_bytes_per_row() / float(load.iloc[0]) / 1e9
            text += (
                f" `cudf.from_pandas` moved the {format_rows(n)}-row frame at **{rate:,.1f} GB/s**: it converts "
                "each column (and the categorical one) and stages pageable memory through a pinned buffer, so "
                "it runs below the raw copy. The *with copies* column is data that starts and ends in pandas; "
                "reading the file straight into GPU memory (`cudf.read_parquet`, the read rows above) and keeping "
                "data on the GPU across operations avoid most of that cost."
            )
    return text


@app.function
def bandwidth_table(
    summary: pd.DataFrame,
    peak_gbs: float | None,
    achievable_gbs: float | None = None,
    floor_s: dict | None = None,
) -> pd.DataFrame | None:
    """cuDF's achieved bandwidth per op at the largest size: GB/s, share of achievable and of theoretical,
    its time against its floor on FLOOR_ROWS rows, and where that puts it (roofline_bound)."""
    if "bandwidth_gbs" not in summary:
        return None
    floor_s = floor_s or {}
    top = summary[(summary["rows"] == summary["rows"].max()) & summary["cudf_median_s"].notna()]
    top = top[top["op"] != "pipeline"]  # its result is the small answer: the byte model says nothing there
    dram = top["cudf_dram_bw_pct"] if "cudf_dram_bw_pct" in top else pd.Series(None, index=top.index)
    floors = top["op"].map(lambda op: floor_s.get(op))
    out = pd.DataFrame(
        {
            "operation": top["op"],
            "bytes (byte model)": (top["gpu_bytes"] / 1e9).map(lambda x: f"{x:,.2f} GB"),
            "cuDF median": top["cudf_median_s"].map(fmt_seconds),
            "achieved": top["bandwidth_gbs"].map(lambda x: f"{x:,.0f} GB/s"),
        }
    )
    if achievable_gbs:
        out["% of achievable"] = top["bandwidth_achievable_pct"].map(lambda x: f"{x:.1f}%")
    if peak_gbs:
        out["% of theoretical"] = top["bandwidth_pct"].map(lambda x: f"{x:.1f}%")
    if floor_s:
        out[f"floor ({format_rows(FLOOR_ROWS)} rows)"] = floors.map(fmt_seconds)
        out["× floor"] = [
            f"{m / f:,.1f}×" if f else "—" for m, f in zip(top["cudf_median_s"], floors, strict=True)
        ]
    out["bound"] = [
        roofline_bound(m, f, b, achievable_gbs, d)
        for m, f, b, d in zip(top["cudf_median_s"], floors, top["bandwidth_gbs"], dram, strict=True)
    ]
    return out


@app.function
def bandwidth_intro(bench: dict) -> str:
    """The heading and reading guide of the bandwidth table, with this card's theoretical and achievable rates."""
    peak, got = bench.get("peak_bandwidth_gbs"), bench.get("achievable_gbs")
    rates = []
    if got:
        rates.append(f"achievable **{got:,.0f} GB/s** (a device-to-device copy measured in this run)")
    if peak:
        rates.append(f"theoretical **{peak:,.0f} GB/s** (NVML's memory clock × bus width)")
    return (
        "### Achieved memory bandwidth, and where each operation sits\n\n"
        + (f"This card: {' and '.join(rates)}. " if rates else "")
        + "**Achieved** is the op's byte model (`bytes_touched`: the columns it reads once plus the result it "
        "writes once) ÷ its median time — a lower bound on real traffic. **Floor** is the same op on "
        f"{FLOOR_ROWS:,} rows in this run, where fixed costs (Python dispatch, kernel launches, allocation, "
        "synchronization) are all there is. **Bound**: within `OVERHEAD_BOUND_TIMES` "
        f"({OVERHEAD_BOUND_TIMES:g}×) of its floor an op is *overhead-bound*; at `MEMORY_BOUND_SHARE` "
        f"({MEMORY_BOUND_SHARE:.0%}) or more of the achievable rate (or of DRAM bandwidth by GPM) it is "
        "*memory-bound*; between the two it is *below the memory roof*: it makes several passes, uses scratch "
        "or reads in random order, so it moves more bytes than the model counts."
    )


@app.function
def gpm_cell(value, note, fmt: str = "{:.1f}%") -> str:
    """One GPM figure of an op: the value, 'short' (under one window), or '—'."""
    if note == "short":
        return "shorter than a GPM window"
    if value is None or value != value:
        return "—"
    return fmt.format(value)


@app.function
def op_telemetry_table(summary: pd.DataFrame) -> pd.DataFrame | None:
    """What the GPU did in each GPU engine's op at the largest size: GPM means over its repeats, joules per call."""
    top = summary[summary["rows"] == summary["rows"].max()]
    rows = []
    for eng, label in ENGINE_LABELS.items():
        if f"{eng}_energy_j" not in top:
            continue
        for r in top.to_dict("records"):
            median = r.get(f"{eng}_median_s")
            if median is None or median != median:
                continue
            note, energy = r.get(f"{eng}_gpm_note"), r.get(f"{eng}_energy_j")
            rx, tx = r.get(f"{eng}_pcie_rx_bytes_s"), r.get(f"{eng}_pcie_tx_bytes_s")
            rows.append(
                {
                    "operation": r["op"],
                    "engine": label,
                    "median": fmt_seconds(median),
                    "SM active": gpm_cell(r.get(f"{eng}_sm_active_pct"), note),
                    "DRAM bandwidth": gpm_cell(r.get(f"{eng}_dram_bw_pct"), note),
                    "Tensor active": gpm_cell(r.get(f"{eng}_tensor_active_pct"), note),
                    "PCIe RX / TX": "shorter than a GPM window"
                    if note == "short"
                    else f"{gpm_cell(rx and rx / 1e9, note, '{:,.1f}')} / {gpm_cell(tx and tx / 1e9, note, '{:,.1f}')} GB/s",
                    "energy per call": "—" if energy is None or energy != energy else f"{energy:,.3f} J",
                }
            )
    return pd.DataFrame(rows) if rows else None


@app.function
def telemetry_text(bench: dict) -> str:
    """How each op's GPM figures and energy are taken, and what a 'shorter than a GPM window' op means."""
    gpm = (
        f"GPM sampled {bench['gpm_rate_hz']:.1f} windows per second per GPU in this run."
        if bench.get("gpm_samples")
        else f"GPM did not run: {bench.get('gpm_reason') or 'no GPU'} — only the energy column can be filled."
    )
    return (
        "**How these are taken.** Each GPM window is the average between two GPM samples "
        f"(`GPM_HZ` = {GPM_HZ:.0f} per second). An op's figure is the mean over the windows that overlap its "
        "**timed repeats** (not its warm-up or result check), each window weighted by how much of it the "
        "repeats cover. When the repeats fill less than `GPM_MIN_COVER` "
        f"({GPM_MIN_COVER:.0%}) of the windows they touch, the op is shorter than a window and its figures "
        "would mostly be other work's: it reads *shorter than a GPM window* instead of a made-up number (run "
        "more rows or more repeats to see it). **Energy per call** is NVML's total-energy counter "
        "(`nvmlDeviceGetTotalEnergyConsumption`) read just before the first timed repeat and after the last, "
        f"divided by the repeats; it includes the card's draw in the short gaps between repeats. {gpm}"
    )


@app.function
def nvml_module():
    """The pynvml module from nvidia-ml-py, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@app.function
def read_nvml(nvml, read, *args):
    """One NVML reading `read(*args)` of the binding `nvml`, or None when the card, driver or binding does not
    provide it: NVML's own errors only (a programming error still raises)."""
    error = getattr(nvml, "NVMLError", OSError)
    try:
        return read(*args)
    except (error, AttributeError, NotImplementedError):  # not supported here / a binding without it
        return None


@app.function
def nvml_ready(nvml):
    """True when NVML starts (a driver is there); nvmlInit returns nothing, so success is "it did not raise"."""
    if nvml is None:
        return False
    try:
        nvml.nvmlInit()
    except getattr(nvml, "NVMLError", OSError):
        return False
    return True


@app.function
def nvml_handles(nvml) -> list:
    """(index, handle) of every GPU NVML sees; [] without NVML, a driver or a GPU."""
    if not nvml_ready(nvml):
        return []
    handles = [
        (i, read_nvml(nvml, nvml.nvmlDeviceGetHandleByIndex, i))
        for i in range(read_nvml(nvml, nvml.nvmlDeviceGetCount) or 0)
    ]
    return [(i, h) for i, h in handles if h is not None]


@app.function
def read_gpu_status() -> list[dict]:
    """Per-GPU facts and current readings from NVML; an empty list when there is no NVIDIA GPU."""
    nvml = nvml_module()
    return [{**nvml_read(nvml, h, i), **nvml_card_facts(nvml, h)} for i, h in nvml_handles(nvml)]


@app.function
def nvml_card_facts(pynvml, handle) -> dict:
    """Fixed facts of one card the text quotes (slowdown temperature, compute capability); None when not offered."""

    def get(name, *a):  # an older binding may lack the call: None, as when the card does not offer it
        fn = getattr(pynvml, name, None)
        return None if fn is None else read_nvml(pynvml, fn, handle, *a)

    cc = get("nvmlDeviceGetCudaComputeCapability")
    slowdown = getattr(pynvml, "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", 1)
    return {
        "temp_slowdown_c": get("nvmlDeviceGetTemperatureThreshold", slowdown),
        "compute_capability": tuple(cc) if cc else None,
    }


@app.function
def power_reading_text(cc: tuple | None) -> str:
    """What NVML's power reading is on this architecture (NVML API reference for nvmlDeviceGetPowerUsage)."""
    rule = (
        "per the NVML API reference, Ampere GPUs other than GA100 and all newer GPUs report power averaged over "
        "the last 1 s, while GA100 (A100) and older report an instantaneous value"
    )
    if not cc:
        return f"NVML did not report this card's architecture; {rule}."
    if tuple(cc) >= (8, 6):
        return (
            f"this card (compute capability {cc[0]}.{cc[1]}) reports power averaged over the last 1 s, so a "
            f"10 ms kernel barely moves it ({rule})."
        )
    return (
        f"this card (compute capability {cc[0]}.{cc[1]}) reports instantaneous power, so a short kernel shows "
        f"only when a sample lands on it ({rule})."
    )


@app.function
def nvml_read(pynvml, handle, index: int) -> dict:
    """One GPU's readings; a reading this card or driver does not offer (NVML raising or giving None) is None."""

    def get(name, *a):
        fn = getattr(pynvml, name, None)
        return None if fn is None else read_nvml(pynvml, fn, handle, *a)

    mem = get("nvmlDeviceGetMemoryInfo")
    util = get("nvmlDeviceGetUtilizationRates")
    power = get("nvmlDeviceGetPowerUsage")
    limit = get("nvmlDeviceGetEnforcedPowerLimit")
    clock_sm, clock_mem = getattr(pynvml, "NVML_CLOCK_SM", 1), getattr(pynvml, "NVML_CLOCK_MEM", 2)
    events = get("nvmlDeviceGetCurrentClocksEventReasons")
    name = get("nvmlDeviceGetName")
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else (name or "NVIDIA GPU"),
        "memory_total_gb": mem.total / 1e9 if mem else 0.0,
        "memory_used_gb": mem.used / 1e9 if mem else None,
        "memory_free_bytes": mem.free if mem else None,
        "util_pct": getattr(util, "gpu", None),
        "mem_util_pct": getattr(util, "memory", None),
        "temp_c": get("nvmlDeviceGetTemperature", getattr(pynvml, "NVML_TEMPERATURE_GPU", 0)),
        "power_w": power / 1000 if power is not None else None,
        "power_limit_w": limit / 1000 if limit is not None else None,
        "sm_clock_mhz": get("nvmlDeviceGetClockInfo", clock_sm),
        "mem_clock_mhz": get("nvmlDeviceGetClockInfo", clock_mem),
        "clock_events": ", ".join(decode_clock_event_reasons(events)) or "none",
        "peak_bandwidth_gbs": peak_bandwidth_gbs(
            get("nvmlDeviceGetMaxClockInfo", clock_mem), get("nvmlDeviceGetMemoryBusWidth")
        ),
    }


@app.function
def decode_clock_event_reasons(mask):
    """NVML's clock-event (throttle) reason bits as words; [] when nothing holds the clocks down."""
    if mask is None:
        return ["not reported"]
    words = {  # nvmlClocksEventReason* bits, from nvml.h
        0x1: "idle",
        0x2: "application clocks setting",
        0x4: "software power cap",
        0x8: "hardware slowdown",
        0x10: "sync boost",
        0x20: "software thermal slowdown",
        0x40: "hardware thermal slowdown",
        0x80: "hardware power brake",
        0x100: "display clock setting",
    }
    reasons = [word for bit, word in words.items() if mask & bit]
    unknown = mask & ~sum(words)
    return reasons + ([f"other (0x{unknown:x})"] if unknown else [])


@app.function
def energy_joules(start_mj, end_mj):
    """Joules between two readings of NVML's total-energy counter (millijoules); None if either is missing."""
    if start_mj is None or end_mj is None or end_mj < start_mj:  # no counter, or it was reset
        return None
    return (end_mj - start_mj) / 1000.0


@app.function
def read_energy_mj(gpus: tuple[int, ...] | None) -> float | None:
    """NVML's total energy counter summed over `gpus` (None: every GPU), in mJ; None if any GPU lacks it."""
    nvml = nvml_module()
    handles = dict(nvml_handles(nvml))
    wanted = sorted(handles) if gpus is None else list(gpus)
    if not wanted or any(g not in handles for g in wanted):
        return None
    readings = [read_nvml(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handles[g]) for g in wanted]
    return None if any(r is None for r in readings) else float(sum(readings))


@app.function
def peak_bandwidth_gbs(mem_clock_mhz: float | None, bus_width_bits: int | None) -> float | None:
    """Theoretical memory bandwidth: max memory clock × 2 (double data rate) × bus width in bytes."""
    if not mem_clock_mhz or not bus_width_bits:
        return None
    return mem_clock_mhz * 1e6 * 2 * (bus_width_bits / 8) / 1e9


@app.function
def read_host_status() -> dict:
    """CPU cores and host memory."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        total, available = vm.total, vm.available
    except Exception:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        total = available = pages
    return {
        "cpu_count": os.cpu_count() or 1,
        "total_gb": total / 1e9,
        "available_gb": available / 1e9,
        "available_bytes": available,
    }


@app.function
def detect_cudf(gpu_count: int, force_cpu: bool = False):
    """cuDF's module when it can run here, else None; and a sentence saying why and how to fix it."""
    if force_cpu:
        return None, "The GPU engine was switched off with `--cpu`."
    if gpu_count == 0:
        return None, (
            "No NVIDIA GPU is visible (NVML found none, or the NVIDIA driver is not installed). "
            f"Run this app on a machine with an NVIDIA GPU ({CUDF_GPU_REQUIREMENT}) to compare cuDF with pandas."
        )
    try:
        import cudf
    except ModuleNotFoundError:
        return None, (
            "cuDF is not installed. On this GPU machine run `make install GPU=1` (it installs "
            "`requirements-gpu.txt`: `cudf-cu12` for CUDA 12 drivers; use `cudf-cu13` for CUDA 13 drivers — "
            "see README), then restart the app."
        )
    except Exception as err:
        return None, (
            f"cuDF is installed but failed to import (`{type(err).__name__}: {err}`). This usually "
            "means the cuDF wheel does not match the driver's CUDA version (cu12 vs cu13) or the "
            f"GPU is too old (cuDF needs {CUDF_GPU_REQUIREMENT})."
        )
    try:
        cudf.Series([1, 2, 3]).sum()
    except Exception as err:
        return None, f"cuDF imported but could not run on the GPU (`{type(err).__name__}: {err}`)."
    return cudf, f"cuDF {cudf.__version__} will run on GPU 0."


@app.function
def gpu_lock_path() -> str:
    """The machine-wide lock file: $GPU_NOTEBOOKS_LOCK_PATH if set, else one file in the OS temp dir."""
    return os.environ.get(GPU_LOCK_ENV) or DEFAULT_GPU_LOCK_PATH


@app.function
@contextlib.contextmanager
def gpu_lock(on_wait: Callable[[], None] | None = None, path: str | None = None):
    """Hold the GPU for this run; a second viewer (any app, any process on this machine) waits its turn.

    Yields a dict whose "waited_s" is how long this run waited for the lock (0.0 when it was free).
    """
    lease = {"waited_s": 0.0}
    try:
        import fcntl
    except ImportError:  # Windows: no file locks; fall back to no lock rather than break
        yield lease
        return
    with open(path or gpu_lock_path(), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            t0 = time.perf_counter()
            fcntl.flock(handle, fcntl.LOCK_EX)
            lease["waited_s"] = time.perf_counter() - t0
        try:
            yield lease
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@app.function
def lock_wait_text(has_gpu: bool) -> str:
    """What a queued viewer waits for: the GPU, or (on a machine without one) the other run to finish."""
    if has_gpu:
        return (
            "**Waiting for the GPU** — another viewer is running a benchmark or a training job on this card. "
            "Yours starts as soon as it finishes."
        )
    return (
        "**Waiting for the other run to finish** — this machine has no GPU, but the apps still take turns "
        "(one benchmark or training run at a time on this machine) so they do not slow each other's timings. "
        "Yours starts as soon as it finishes."
    )


@app.function
def lock_waited_text(waited_s: float, has_gpu: bool) -> str:
    """One line saying how long this run waited for its turn, or '' when it did not wait."""
    if waited_s <= 0:
        return ""
    what = "the GPU" if has_gpu else "its turn (another run was in progress)"
    return f"Waited {waited_s:.1f} s for {what}."


@app.class_definition
class GpuSampler:
    """Background thread recording NVML's classic readings of every GPU at a fixed interval (10 Hz by default)."""

    FIELDS = (
        "util_pct",
        "memory_used_gb",
        "temp_c",
        "power_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "clock_events",
    )

    def __init__(self, interval_s: float = 0.1, device_indices: list[int] | None = None):
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="nvml-sampler")
        self._nvml = nvml_module()
        handles = nvml_handles(self._nvml)
        self._handles = [(i, h) for i, h in handles if device_indices is None or i in device_indices]

    def start(self) -> None:
        self.t0 = time.perf_counter()
        if self._handles:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            for i, h in self._handles:
                r = nvml_read(self._nvml, h, i)
                self.samples.append({"t": t, "gpu": i, **{k: r[k] for k in self.FIELDS}})
            self._stop.wait(max(self.interval_s - (time.perf_counter() - t), 0))

    def latest_text(self, gpus: tuple[int, ...] | None = None) -> str:
        """' · GPU 0 37% · 4.1 GB · 212 W' for the GPUs an op runs on (None: all; (): none)."""
        latest: dict[int, dict] = {}
        for s in reversed(self.samples[-4 * max(len(self._handles), 1) :]):
            latest.setdefault(s["gpu"], s)
        wanted = sorted(latest) if gpus is None else [g for g in gpus if g in latest]
        return "".join(f" · {gpu_reading_text(latest[g])}" for g in wanted)

    def samples_relative_to(self, t0: float) -> list[dict]:
        return [{**s, "t": s["t"] - t0} for s in self.samples]

    def rate_hz(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        per_gpu = len(self.samples) / max(len(self._handles), 1)
        return per_gpu / max(self.samples[-1]["t"] - self.samples[0]["t"], 1e-9)

    def peak_memory_gb(self) -> float | None:
        used = [s["memory_used_gb"] for s in self.samples if s["memory_used_gb"] is not None]
        return max(used) if used else None


@app.function
def gpm_support(nvml, handle):
    """(True, "") when NVML's GPM metrics answer for this GPU (Hopper and newer), else (False, why in a line)."""
    if nvml is None:
        return False, "GPM metrics need nvidia-ml-py (pynvml), which is not installed."
    if not hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
        return False, "this nvidia-ml-py has no GPM interface: upgrade nvidia-ml-py."
    support = read_nvml(nvml, nvml.nvmlGpmQueryDeviceSupport, handle)
    if support is None or not getattr(support, "isSupportedDevice", 0):
        return False, "this GPU or driver has no GPM counters (NVML GPM needs Hopper or newer)."
    return True, ""


@app.function
def pcie_bytes_per_s(value, unit):
    """A GPM PCIe reading in bytes/s, from the unit NVML reports with it (MiB/s today)."""
    if value is None:
        return None
    unit = (unit or "MiB/sec").lower()
    scale = 2**20 if "mib" in unit else 1e6 if "mb" in unit else 2**10 if "kib" in unit else 1.0
    return value * scale


@app.function
def gpm_read(nvml, handle, previous, current):
    """GPM metrics between two samples as {field: value or None}; `current` is filled here."""
    fields = {field: getattr(nvml, name, None) for field, name in GPM_FIELDS.items()}
    if read_nvml(nvml, nvml.nvmlGpmSampleGet, handle, current) is None:
        return dict.fromkeys(GPM_FIELDS)
    request = nvml.c_nvmlGpmMetricsGet_t()
    request.version = nvml.NVML_GPM_METRICS_GET_VERSION
    wanted = [(field, metric_id) for field, metric_id in fields.items() if metric_id is not None]
    request.numMetrics = len(wanted)
    request.sample1, request.sample2 = previous, current
    for slot, (_, metric_id) in enumerate(wanted):
        request.metrics[slot].metricId = metric_id
    values = dict.fromkeys(GPM_FIELDS)
    if read_nvml(nvml, nvml.nvmlGpmMetricsGet, request) is None:
        return values
    for slot, (field, _) in enumerate(wanted):
        metric = request.metrics[slot]
        if metric.nvmlReturn != 0:  # this metric is not available on this GPU
            continue
        value = float(metric.value)
        if field.startswith("pcie_"):
            unit = metric.metricInfo.unit
            value = pcie_bytes_per_s(value, unit.decode() if isinstance(unit, bytes) else unit)
        values[field] = value
    return values


@app.class_definition
class GpmSampler:
    """NVML GPM metrics (SM activity and occupancy, Tensor Core activity, DRAM bandwidth, PCIe) for each GPU.

    GPM counters exist on Hopper and newer: each reading is the average between two GPM samples, so a
    sample every 1/hz seconds gives that window's mean (sample "t" is the window's end, seconds after
    start(); `t0` is start()'s perf_counter). Elsewhere `available` is False and `unavailable_reason` says
    why in one line; the classic GpuSampler keeps working either way. Same design and names as the
    fine-tuning dashboard's sampler: start(), stop(), samples, available, unavailable_reason.
    """

    def __init__(self, device_indices=None, hz=GPM_HZ):
        self.interval, self.samples = 1.0 / hz, []
        self.available, self.unavailable_reason = False, ""
        self.t0 = time.perf_counter()
        self._nvml, self._gpus, self._stop = nvml_module(), [], threading.Event()
        self._thread = None
        nvml = self._nvml
        if nvml is None:
            self.unavailable_reason = gpm_support(None, None)[1]
            return
        if not nvml_ready(nvml):
            self.unavailable_reason = "NVML could not start here (no NVIDIA driver)."
            return
        count = read_nvml(nvml, nvml.nvmlDeviceGetCount) or 0
        reasons = []
        for index in range(count) if device_indices is None else device_indices:
            handle = read_nvml(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
            ok, why = gpm_support(nvml, handle) if handle is not None else (False, "no NVML handle.")
            if ok:
                self._gpus.append({"gpu": index, "handle": handle})
            else:
                reasons.append(why)
        self.available = bool(self._gpus)
        if not self.available:
            self.unavailable_reason = reasons[0] if reasons else "NVML sees no GPU."

    def _sample_pair(self):
        return [
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleAlloc),
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleAlloc),
        ]

    def start(self):
        """Take the first sample of every GPU and start sampling in a background thread."""
        if not self.available:
            return self
        for gpu in self._gpus:
            gpu["pair"] = self._sample_pair()
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleGet, gpu["handle"], gpu["pair"][0])
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpm-sampler")
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval):
            t = time.perf_counter() - self.t0
            for gpu in self._gpus:
                previous, current = gpu["pair"]
                values = gpm_read(self._nvml, gpu["handle"], previous, current)
                gpu["pair"] = [current, previous]  # this sample is the next window's start
                self.samples.append({"t": t, "gpu": gpu["gpu"], **values})

    def stop(self):
        """Stop sampling and free the GPM samples."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for gpu in self._gpus:
            for sample in gpu.pop("pair", []):
                if sample is not None:
                    read_nvml(self._nvml, self._nvml.nvmlGpmSampleFree, sample)
        return self

    def frame(self):
        """Samples so far as a DataFrame (t in seconds, one row per GPU and window)."""
        return pd.DataFrame(list(self.samples), columns=["t", "gpu", *GPM_FIELDS])

    def means(self):
        """Mean of each metric over the samples (None where no reading came)."""
        frame = self.frame()
        return {f: (None if frame[f].isna().all() else float(frame[f].mean())) for f in GPM_FIELDS}

    def rate_hz(self) -> float:
        """GPM windows per second and GPU so far."""
        if len(self.samples) < 2 or not self._gpus:
            return 0.0
        return len(self.samples) / len(self._gpus) / max(self.samples[-1]["t"], 1e-9)


@app.function
def engine_gpus(engines) -> list[int] | None:
    """The GPUs a run's engines use (None: every GPU, as Dask-cuDF does; []: a CPU-only run)."""
    if any(e.on_gpu and e.gpus is None for e in engines):
        return None
    return sorted({g for e in engines if e.on_gpu for g in e.gpus})


@app.function
def gpm_windows(samples: list[dict], origin: float = 0.0) -> list[dict]:
    """Each GPM sample as the window it averages: from the GPU's previous sample (or `origin`, the sampler's
    start) to its t."""
    last, out = {}, []
    for s in sorted(samples, key=lambda s: s["t"]):
        out.append({**s, "start": last.get(s["gpu"], origin), "end": s["t"]})
        last[s["gpu"]] = s["t"]
    return out


@app.function
def gpm_span_means(
    windows: list[dict], spans: list[tuple[float, float]], gpus, min_cover: float = GPM_MIN_COVER
) -> dict:
    """Mean of each GPM metric over an op's timed spans, each window weighted by its overlap with them.

    Returns {field: value or None, "gpm_note": ""}. "gpm_note" is "short" when the spans fill less than
    `min_cover` of the windows they touch (the op is shorter than a window: its figures would mostly be
    other work's, so none are given) and "no GPM window" when no window overlaps them at all.
    """
    empty = {**dict.fromkeys(GPM_FIELDS), "gpm_note": "no GPM window"}
    touched = []
    for w in windows:
        if gpus is not None and w["gpu"] not in gpus:
            continue
        overlap = sum(max(0.0, min(w["end"], b) - max(w["start"], a)) for a, b in spans)
        if overlap > 0:
            touched.append((w, overlap))
    if not touched:
        return empty
    covered = sum(o for _, o in touched) / sum(w["end"] - w["start"] for w, _ in touched)
    if covered < min_cover:
        return {**dict.fromkeys(GPM_FIELDS), "gpm_note": "short"}
    out = {"gpm_note": ""}
    for field_name in GPM_FIELDS:
        pairs = [(w[field_name], o) for w, o in touched if w.get(field_name) is not None]
        weight = sum(o for _, o in pairs)
        out[field_name] = sum(v * o for v, o in pairs) / weight if weight else None
    return out


@app.function
def attach_gpm(records: list[dict], spans: list[dict], samples: list[dict], origin: float = 0.0) -> None:
    """Give each GPU op's record the GPM means over its timed repeats (see gpm_span_means); in place."""
    windows = gpm_windows(samples, origin)
    by_key = {(s["engine"], s["op"], s["rows"]): s for s in spans}
    for rec in records:
        span = by_key.get((rec["engine"], rec["op"], rec["rows"]))
        if not rec.get("on_gpu") or span is None or not span.get("repeats"):
            continue
        rec.update(gpm_span_means(windows, span["repeats"], span.get("gpus")))


@app.function
def probe_workloads(gpu: int = 0) -> tuple[dict, Callable[[], None]]:
    """The three workloads of utilization_probe on `gpu` (CuPy), as {name: one call}, and a device sync.

    A stream of tiny one-element kernels (launch-bound), an 8192² FP16 matrix multiply (cuBLAS, Tensor
    Cores) and a 512 MiB device-to-device copy (memory-bound): PROBE_BYTES of GPU memory.
    """
    import cupy

    with cupy.cuda.Device(gpu):
        tiny = cupy.zeros(1, dtype=cupy.float32)
        a = cupy.random.standard_normal((8192, 8192), dtype=cupy.float32).astype(cupy.float16)
        c = cupy.empty_like(a)
        src = cupy.ones(512 * 2**20, dtype=cupy.uint8)
        dst = cupy.empty_like(src)

    def tiny_kernels():
        for _ in range(100):
            cupy.add(tiny, 1, out=tiny)

    def matmul():
        cupy.matmul(a, a, out=c)

    def copy():
        dst.data.copy_from_device_async(src.data, src.nbytes)

    def sync():
        with cupy.cuda.Device(gpu):
            cupy.cuda.runtime.deviceSynchronize()

    return {"tiny kernels": tiny_kernels, "FP16 matmul 8192²": matmul, "device-to-device copy": copy}, sync


@app.function
def probe_row(workload: str, classic: list[dict], gpm: list[dict], seconds: float) -> dict:
    """One workload's medians: classic utilization and GPM (the first GPM window, which holds the start, left out)."""

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    windows = gpm[1:] if len(gpm) > 1 else gpm
    return {
        "workload": workload,
        "classic_util_pct": median(s.get("util_pct") for s in classic),
        "sm_active_pct": median(w.get("sm_active_pct") for w in windows),
        "tensor_active_pct": median(w.get("tensor_active_pct") for w in windows),
        "dram_bw_pct": median(w.get("dram_bw_pct") for w in windows),
        "seconds": seconds,
    }


@app.function
def utilization_probe(
    gpu: int = 0,
    seconds: float = PROBE_SECONDS,
    workloads: dict | None = None,
    sync: Callable[[], None] | None = None,
) -> list[dict]:
    """What classic utilization and GPM say about three workloads on this GPU, `seconds` each (take the GPU lock).

    Returns one dict per workload: workload, classic_util_pct, sm_active_pct, tensor_active_pct,
    dram_bw_pct (medians over the run; None where NVML gave nothing), seconds.
    """
    if workloads is None:
        workloads, sync = probe_workloads(gpu)
    sync = sync or (lambda: None)
    rows = []
    for name, work in workloads.items():
        work()  # first call outside the window: allocation, kernel loading
        sync()
        classic = GpuSampler(interval_s=0.1, device_indices=[gpu])
        gpm = GpmSampler(device_indices=[gpu])
        classic.start()
        gpm.start()
        t0, calls = time.perf_counter(), 0
        try:
            while time.perf_counter() - t0 < seconds:
                work()
                calls += 1
                if calls % 50 == 0:  # keep the queue of launched work short, so the window is this work's
                    sync()
            sync()
        finally:
            classic.stop()
            gpm.stop()
        rows.append(probe_row(name, classic.samples, gpm.samples, time.perf_counter() - t0))
    return rows


@app.function
def run_utilization_probe() -> tuple[list[dict], str | None]:
    """utilization_probe on GPU 0, or ([], why) when CuPy is missing or the GPU has no memory for it."""
    try:
        import cupy
    except ImportError:
        return [], "The probe runs its kernels with CuPy, which is not installed here (it comes with cuDF)."
    try:
        return utilization_probe(0), None
    except cupy.cuda.memory.OutOfMemoryError as err:
        return (
            [],
            f"The probe needs about {PROBE_BYTES / 1e9:.1f} GB of free GPU memory: {describe_error(err)}",
        )


@app.function
def utilization_probe_text(rows: list[dict], gpm_reason: str = "") -> str:
    """The 'what utilization hides' callout, written from this GPU's probe: a table and what each row shows."""

    def pct(v):
        return "—" if v is None else f"{v:.1f}%"

    lines = [
        "| workload | classic utilization | SM active (GPM) | Tensor active (GPM) | DRAM bandwidth (GPM) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['workload']} ({r['seconds']:.1f} s) | {pct(r['classic_util_pct'])} | {pct(r['sm_active_pct'])} | "
        f"{pct(r['tensor_active_pct'])} | {pct(r['dram_bw_pct'])} |"
        for r in rows
    ]
    lines.append("")
    if all(r["sm_active_pct"] is None for r in rows):
        lines.append(
            "GPM gave no readings on this card: only classic utilization is shown, and it cannot tell these "
            "three apart by how busy the GPU really was. " + gpm_reason
        )
        return "\n".join(lines)
    for r in rows:
        util, sm, tensor, dram = (
            r[k] for k in ("classic_util_pct", "sm_active_pct", "tensor_active_pct", "dram_bw_pct")
        )
        if util is None or sm is None:
            continue
        if tensor is not None and tensor >= 100 * MEMORY_BOUND_SHARE:
            why = f"Tensor Cores active {tensor:.0f}% of the time: compute-bound, the one case of the three where the card's math units are the limit"
        elif dram is not None and dram >= 100 * MEMORY_BOUND_SHARE:
            why = f"DRAM bandwidth at {dram:.0f}% of its peak: memory-bound, as most DataFrame operations are"
        elif sm < 10 and util >= 20:
            why = (
                f"the SMs were active only {sm:.1f}% of the time: a kernel was *running* during {util:.0f}% of "
                "the samples, but each used one thread — launch-bound, like a DataFrame op on a few rows"
            )
        else:
            why = f"SMs active {sm:.0f}%"
        lines.append(f"- **{r['workload']}**: classic utilization {util:.0f}%; {why}.")
    lines.append(
        "\nClassic utilization is the share of time *any* kernel ran, so it cannot separate these: read SM "
        "activity for how much of the GPU worked, DRAM bandwidth for memory-bound work and Tensor activity for "
        "matrix math."
    )
    return "\n".join(lines)


@app.function
def reading(value, fmt: str = "{}", unit: str = "") -> str:
    """One NVML reading as text; '—' for a reading this card or driver does not offer (None)."""
    return "—" if value is None else f"{fmt.format(value)}{unit}"


@app.function
def gpu_reading_text(sample: dict) -> str:
    """'GPU 0 37% · 4.1 GB · 212 W', with '—' for missing readings, and what holds the clocks when anything does."""
    held = sample.get("clock_events")
    return (
        f"GPU {sample['gpu']} {reading(sample.get('util_pct'), '{}', '%')} · "
        f"{reading(sample.get('memory_used_gb'), '{:.1f}', ' GB')} · {reading(sample.get('power_w'), '{:.0f}', ' W')}"
        + ("" if held in (None, "none", "idle", "not reported") else f" · clocks held by {held}")
    )


@app.function
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


@app.function
def gpm_frame(bench: dict) -> pd.DataFrame | None:
    """A run's GPM samples as a frame for the timeline; None when GPM did not run."""
    samples = bench.get("gpm_samples") or []
    return pd.DataFrame(samples, columns=["t", "gpu", *GPM_FIELDS]) if samples else None


@app.function
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
            color=alt.Color("engine:N", sort=list(ENGINE_LABELS.values()), title="engine running", **legend),
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


@app.function
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


@app.function
def gpm_unavailable_reason(gpu: int) -> str:
    """Why NVML's GPM metrics cannot be read on `gpu`, in one line; "" when they can."""
    nvml = nvml_module()
    handles = dict(nvml_handles(nvml))
    if gpu not in handles:
        return gpm_support(None, None)[1] if nvml is None else f"NVML sees no GPU {gpu}."
    return gpm_support(nvml, handles[gpu])[1]


@app.function
def gpm_status_line(gpus: list[dict]) -> str:
    """One line: the GPM metrics each run samples on this card, or why this card or driver has none."""
    if not gpus:
        return ""
    why = gpm_unavailable_reason(gpus[0]["index"])
    if not why:
        return (
            f"GPM (SM and Tensor Core activity, DRAM bandwidth, PCIe) is sampled during each run, "
            f"{GPM_HZ:.0f} windows per second per GPU; the classic readings above are what NVML's utilization shows."
        )
    return f"GPM metrics are not available: {why} The classic readings above still work."


@app.function
def memory_kind(name: str | None) -> str | None:
    """The memory technology of a GPU, from its NVML name (NVIDIA datasheets); None for a card not listed."""
    n = (name or "").upper()
    table = (
        (r"\bH200\b", "HBM3e"),
        (r"\bH100\b.*\bPCIE\b", "HBM2e"),
        (r"\bH100\b", "HBM3"),
        (r"\bA100\b.*80GB", "HBM2e"),
        (r"\bA100\b", "HBM2"),
        (r"\bV100", "HBM2"),
        (r"\b(?:L4|L40S?|A10G?|T4)\b", "GDDR6"),
    )
    return next((kind for pattern, kind in table if re.search(pattern, n)), None)


@app.function
def host_bandwidth_text(gpu_gbs: float | None) -> str:
    """Peak DDR5 bandwidth of a CPU socket and a dual-socket host (channel arithmetic), against this card's."""
    # channels × MT/s × 8 bytes per 64-bit channel: 8 × DDR5-4800 (Sapphire Rapids), 12 × DDR5-4800 (Genoa);
    # a dual-socket host from 2 × 8 channels at 4400 (2 DIMMs per channel) to 2 × 12 at 4800.
    one8, one12 = 8 * 4800 * 8 / 1e3, 12 * 4800 * 8 / 1e3
    dual_lo, dual_hi = 2 * 8 * 4400 * 8 / 1e3, 2 * one12
    text = (
        f"A CPU socket's DDR5 peaks far lower: channels × transfer rate × 8 bytes gives {one8:,.0f} GB/s for "
        f"8 channels of DDR5-4800 and {one12:,.0f} GB/s for 12, and a dual-socket GPU server about "
        f"{dual_lo / 1e3:.2f}–{dual_hi / 1e3:.2f} TB/s (arithmetic on the platforms' channel counts and DIMM speeds"
    )
    if gpu_gbs:
        text += f"; this card's peak is {gpu_gbs / dual_hi:,.1f}–{gpu_gbs / dual_lo:,.1f}× such a host's"
    return text + (
        "). These are peaks; measured stream rates are lower on both sides. pandas runs on one core, which "
        "reaches only part of one socket's bandwidth (this app does not measure this host's)."
    )


@app.function
def explain_why_gpu(gpus: list[dict], host: dict, last: dict | None) -> str:
    """'Why GPU-accelerated DataFrames?' with this card's numbers and, after a run, this run's."""
    bw = next((g["peak_bandwidth_gbs"] for g in gpus if g.get("peak_bandwidth_gbs")), None)
    card = gpus[0]["name"] if gpus else None
    kind = memory_kind(card)
    memory = f"{kind} memory" if kind else "its memory"
    if bw:
        gpu_bw = f"This {card} can move **{bw:,.0f} GB/s** through {memory} (bandwidth from NVML: memory clock × bus width). "
    elif card:
        gpu_bw = (
            f"NVML did not report the memory clock and bus width of this {card}, so its peak is not shown. "
        )
    else:
        gpu_bw = "No GPU is visible, so no card's peak can be read here. "
    s = last["summary"] if last else None
    if s is not None and "cudf_median_s" in s and s["cudf_median_s"].notna().any():
        q = s.loc[s["cudf_median_s"].idxmin()]
        floor = (
            f"In this run cuDF's quickest operation took **{fmt_seconds(q['cudf_median_s'])}** ({q['op']}, "
            f"{format_rows(q['rows'])} rows)."
        )
    else:
        floor = (
            "In this project's recorded runs they add up to a millisecond or more per operation (cuDF's "
            "quickest operation at 10M rows took 2.2 ms, measured on an NVIDIA H100 80GB HBM3, 2026-11-25)."
        )
    cross = crossover_sentence(s) if s is not None else None
    text = [
        "**Parallelism.** pandas executes each operation on **one CPU core** (this machine has "
        f"{host['cpu_count']}). A data-center GPU runs tens of thousands of threads at once: a filter or a "
        "group-by is the same small piece of work repeated for every row, which is exactly what GPUs do well.",
        "",
        "**Memory bandwidth.** Most DataFrame operations do little arithmetic per byte, so their speed is set by "
        "how fast memory can be read. " + gpu_bw + host_bandwidth_text(bw),
        "",
        "**When it helps.** Every cuDF operation pays fixed costs: Python dispatch, launching several kernels, "
        "allocating the output, synchronizing, often a small read back to learn the output's size. "
        + floor
        + " With few rows those costs are the whole time and pandas wins; with enough rows the per-row work "
        "dominates and the GPU pulls ahead.",
        "\n"
        + (
            cross
            or "**Where cuDF overtakes pandas was not measured in this run:** run a **size sweep** "
            "to find the crossover on this machine."
        ),
        "\n**When it does not help:** small data; data that must travel to the GPU for a single cheap "
        "operation (the copy costs more than the work — see the *with copies* column); and arbitrary Python run "
        "row by row. cuDF compiles *simple numeric* functions given to `Series.apply` or `DataFrame.apply(axis=1)` "
        "for the GPU with Numba (the first call pays the compile), but code that uses Python objects, library "
        "calls or object columns cannot run on the GPU: under cudf.pandas it falls back to pandas on the CPU, "
        "as the fallback table of a cudf.pandas run shows.",
    ]
    return "\n".join(text)


@app.function
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


@app.function
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


@app.function
def explain_multi_gpu(gpus: list[dict], last: dict | None) -> str:
    """When several GPUs help, what a shuffle costs, and why small data gets slower."""
    total = sum(g["memory_total_gb"] for g in gpus)
    p = max(len(gpus), 2)
    moved = f"{p - 1}/{p} with {p} GPUs" + (" (this machine)" if len(gpus) >= 2 else "")
    text = [
        f"This machine has **{len(gpus)} GPU(s)**"
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


@app.function
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


@app.function
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


@app.function
def explain_metrics(gpus: list[dict], last: dict | None) -> str:
    """What each NVML reading and GPM metric measures, over what window, how to read them together, and the
    roofline framing of this run's ops."""
    g = gpus[0] if gpus else None
    limit = f"{g['power_limit_w']:.0f} W" if g and g.get("power_limit_w") else "its power limit"
    slowdown = (
        f"this card starts hardware slowdown (lower clocks) at **{g['temp_slowdown_c']} °C**, its own threshold "
        "from NVML (`nvmlDeviceGetTemperatureThreshold`, slowdown); readings well below it are healthy."
        if g and g.get("temp_slowdown_c") is not None
        else "this card's slowdown threshold is not reported by NVML (`nvmlDeviceGetTemperatureThreshold`); "
        "when a card throttles for heat, its SM clock drops under load and the clock-event reasons say thermal."
    )
    peak = (
        f" In your last run the GPU held at most **{last['bench']['peak_gpu_memory_gb']:.1f} GB**."
        if last and last["bench"].get("peak_gpu_memory_gb")
        else ""
    )
    no_gpm = gpm_unavailable_reason(g.get("index", 0)) if g else ""
    return "\n".join(
        [
            "The app reads two kinds of counters. NVML's **classic** readings come every 0.1 s from "
            "`GpuSampler`; NVML's **GPM** metrics (Hopper and newer) come from `GpmSampler` as windows, each the "
            f"average between two GPM samples, `GPM_HZ` = {GPM_HZ:.0f} per second. "
            + (f"On this card GPM is not available: {no_gpm}" if no_gpm else "")
            + gpm_ranges_text(last),
            "",
            "| metric | what it measures | window | for DataFrame work |",
            "|:---|:---|:---|:---|",
            "| **utilization** (classic) | share of the sample period in which *one or more kernels* ran "
            "(NVML API reference, `nvmlUtilization_t`) | NVML's own period, 1/6 s to 1 s by product (NVML API "
            "reference) | says only that *something* ran: one tiny kernel all the time reads 100% |",
            "| **SM active** (GPM) | share of the streaming multiprocessors that were busy (pynvml's "
            "`NVML_GPM_METRIC_SM_UTIL`) | one GPM window | high on large ops, near zero when kernels are tiny |",
            "| **SM occupancy** (GPM) | warps active against the SMs' theoretical maximum | one GPM window | "
            "how full the busy SMs are: a kernel can keep every SM busy with few warps each |",
            "| **Tensor active** (GPM) | share of time the SMs ran any Tensor Core instruction | one GPM window | "
            "near zero: no operation here is matrix math |",
            "| **DRAM bandwidth** (GPM) | memory bandwidth used against the theoretical maximum | one GPM window | "
            "the number to watch: most DataFrame ops are bounded by memory |",
            "| **PCIe RX / TX** (GPM) | bytes per second into / out of the GPU over PCIe (NVML reports MiB/s) | "
            "one GPM window | high only while data moves between host and GPU (`from_pandas`, `to_pandas`) |",
            "| **SM / memory clock**, **clock-event reasons** (classic) | the clocks now, and NVML's reasons "
            "holding them down (idle, software power cap, thermal slowdown, …) | instantaneous | a clock held by "
            "power cap or thermal during a run slows every op |",
            "",
            "**Reading them together:**",
            "- **Low SM active, high utilization → launch-bound.** Kernels run back to back but each is tiny: "
            "the time goes to Python dispatch and launches. A DataFrame op on a few thousand rows looks like this; "
            "more rows per call (or fewer, larger operations) is the fix.",
            "- **High DRAM bandwidth, moderate SM active → memory-bound.** The op streams memory; the only roof "
            "is the card's bandwidth. Large streaming ops (a filter's passes, a sort's) are expected to look like this; "
            "the tables above say whether this run's did.",
            "- **High Tensor active → compute-bound** on matrix math: what training does, not DataFrames.",
            "- **High PCIe, SM active near zero → copy-bound.** The GPU waits for data from the host: keep "
            "data on the GPU between operations, read files straight into GPU memory.",
            "Press **Measure what utilization hides** (section 1) to see the first three on this card.",
            "",
            "**The roofline, for DataFrame operations.** A roofline places each operation under two limits: the "
            "compute roof and the memory roof. DataFrame ops do a few operations per byte they move, so their "
            "roof is memory bandwidth, and below a certain size another limit shows: the fixed cost every call "
            "pays (dispatch, launches, allocation, synchronization). Each op is therefore *overhead-bound* (near "
            "its floor), *memory-bound* (near the memory roof) or in between. " + roofline_text(last),
            "",
            f"- **Memory used** counts every process on the card, including each process's CUDA context (its size "
            "depends on the card, driver and libraries) and memory that allocators keep after objects are freed "
            f"(an RMM pool if one is configured, PyTorch's caching allocator), so it can stay high after a run.{peak}",
            f"- **Temperature**: {slowdown}",
            f"- **Power** rises with work; this card's limit is {limit}; "
            + power_reading_text(g.get("compute_capability") if g else None),
            "",
            "**Troubleshooting:** no readings → the NVIDIA driver or `nvidia-ml-py` is missing; memory already high "
            "before you start → another process (another notebook?) holds memory; SM active low while cuDF runs → "
            "the data is too small to fill the GPU (launch-bound); clocks held by *software power cap* → the card "
            "is at its power limit.",
        ]
    )


@app.function
def gpm_ranges_text(last: dict | None) -> str:
    """' In your last run, cuDF's operations read SM active a–b% and DRAM bandwidth c–d% …', or ''."""
    summary = last["summary"] if last else None
    if summary is None or "cudf_sm_active_pct" not in summary:
        return ""
    top = summary[summary["rows"] == summary["rows"].max()]
    parts = []
    for col, name in (("cudf_sm_active_pct", "SM active"), ("cudf_dram_bw_pct", "DRAM bandwidth")):
        values = pd.to_numeric(top[col], errors="coerce").dropna() if col in top else pd.Series(dtype=float)
        if len(values):
            parts.append(f"{name} {values.min():.0f}–{values.max():.0f}%")
    short = int((top.get("cudf_gpm_note", pd.Series(dtype=object)) == "short").sum())
    text = f" In your last run cuDF's operations at {format_rows(int(top['rows'].iloc[0]))} rows read " + (
        " and ".join(parts) if parts else "no GPM figure"
    )
    return text + (f" ({short} too short for a GPM window)." if short else ".")


@app.function
def roofline_text(last: dict | None) -> str:
    """Each cuDF op of the last run placed on the roofline: its floor, achieved bandwidth and bound, from this run."""
    if not last or "cudf_median_s" not in last["summary"]:
        return "Run the benchmark with cuDF to place each operation from this run's measurements."
    bench, summary = last["bench"], last["summary"]
    floor, got = bench.get("floor_s") or {}, bench.get("achievable_gbs")
    parts = []
    if floor:
        lo, hi = min(floor.values()), max(floor.values())
        parts.append(
            f"In this run the floor — each op on {FLOOR_ROWS:,} rows — was **{fmt_seconds(lo)}–{fmt_seconds(hi)}** "
            "per call."
        )
    else:
        parts.append("This run measured no floor (it runs after a cuDF benchmark, under the GPU lock).")
    if got:
        parts.append(f"The memory roof: a device-to-device copy reached **{got:,.0f} GB/s** on this card.")
    table = bandwidth_table(summary, bench.get("peak_bandwidth_gbs"), got, floor)
    if table is not None and len(table):
        parts.append(
            "At the largest size: "
            + "; ".join(
                f"**{r['operation']}** {r['cuDF median']}, {r['achieved']}"
                + (f" ({r['% of achievable']} of achievable)" if "% of achievable" in r else "")
                + (f", {r['× floor']} its floor" if "× floor" in r else "")
                + f" → *{r['bound']}*"
                for r in table.to_dict("records")
            )
            + "."
        )
        parts.append(
            f"The labels follow this app's rule of thumb, a convention rather than a measurement: within "
            f"{OVERHEAD_BOUND_TIMES:g}× of its floor an op is *overhead-bound*; at {MEMORY_BOUND_SHARE:.0%} or more "
            "of the achievable copy rate (or of GPM's DRAM bandwidth) *memory-bound*; in between it moves more bytes "
            "than the byte model counts, or waits on random access."
        )
    return " ".join(parts)


@app.function
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


if __name__ == "__main__":
    app.run()
