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

with app.setup(hide_code=True):
    # Sessions of `marimo run` are threads of one process: first imports under one process-wide lock that
    # marimo's own start of a session waits for too (see first_imports.py).
    from gpu_notebooks.first_imports import import_lock

    with import_lock():
        import marimo as mo
        import pandas as pd

        from gpu_notebooks.cli import cli_options
        from gpu_notebooks.gpu.gpm import gpm_frame, gpm_status_line, gpm_unavailable_reason
        from gpu_notebooks.gpu.lock import gpu_turn, lock_wait_text, lock_waited_text
        from gpu_notebooks.gpu.nvml import read_gpu_status
        from gpu_notebooks.gpu.probe import PROBE_SECONDS
        from gpu_notebooks.rapids_benchmark import cards, charts, cudf_pandas, ops, sizing, user_data
        from gpu_notebooks.rapids_benchmark.checks import check_messages, results_match
        from gpu_notebooks.rapids_benchmark.cli import parse_cli_args
        from gpu_notebooks.rapids_benchmark.dask_engine import dask_client, detect_dask, make_dask_engine
        from gpu_notebooks.rapids_benchmark.duckdb_engine import detect_duckdb
        from gpu_notebooks.rapids_benchmark.engines import (
            detect_cudf,
            frames_freed_on_interrupt,
            make_engines,
        )
        from gpu_notebooks.rapids_benchmark.explain import (
            gpu as explain_gpu,
            method as explain_method,
            results as explain_results,
            user_data as explain_user_data,
        )
        from gpu_notebooks.rapids_benchmark.files import clear_data_cache_when_idle, data_cache_text
        from gpu_notebooks.rapids_benchmark.formatting import format_rows
        from gpu_notebooks.rapids_benchmark.polars_engine import detect_polars
        from gpu_notebooks.rapids_benchmark.report import results_table, speedup_table, summarize_records
        from gpu_notebooks.rapids_benchmark.roofline import bandwidth_table, card_probes, copy_bandwidth_probe
        from gpu_notebooks.rapids_benchmark.runner import SAMPLE_INTERVAL_S, run_with_progress
        from gpu_notebooks.rapids_benchmark.telemetry import op_telemetry_table, run_utilization_probe
        from gpu_notebooks.rapids_benchmark.timing import time_operation
        from gpu_notebooks.rapids_benchmark.user_dataset import prepare_dataset, role_bytes_per_row
        from gpu_notebooks.rapids_benchmark.user_ops import user_engines
        from gpu_notebooks.session import stop_if_session_closed
        from gpu_notebooks.text import count_of


@app.cell(hide_code=True)
def _():
    mo.md(explain_method.intro_text([ops.OP_SHORT_NAMES[op] for op in ops.ALL_OPS], 1 / SAMPLE_INTERVAL_S))
    return


@app.cell
def _():
    cli = parse_cli_args(cli_options())
    return (cli,)


@app.cell
def _(cli):
    gpus = read_gpu_status()
    with import_lock():  # cuDF, Polars, DuckDB: first imports, one session at a time (see the setup block)
        cudf_module, cudf_message = detect_cudf(len(gpus), force_cpu=cli["cpu"])
        polars_module, polars_gpu, polars_message = detect_polars(cudf_module, force_cpu=cli["cpu"])
        dask_ok, dask_message = detect_dask(len(gpus) if cudf_module is not None else 0)
        duckdb_module, duckdb_message = detect_duckdb()
    host = sizing.read_host_status()
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
    mo.vstack(
        [
            mo.md("## 1 · This machine"),
            cards.machine_cards(gpus, host),
            cards.gpu_engine_callout(cudf_module is not None, cudf_message),
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
            charts.live_gpu_panel(_now, gpm_line)
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
    with gpu_turn(on_wait=lambda: mo.output.replace(mo.callout(mo.md(lock_wait_text(True)), kind="info"))):
        with mo.status.spinner("Tiny kernels, a matmul and a copy on GPU 0, with both samplers…"):
            _rows, _error = run_utilization_probe()
    mo.callout(
        mo.md(_error or explain_gpu.utilization_probe_text(_rows, gpm_unavailable_reason(0))),
        kind="warn" if _error else "info",
    )
    return


@app.cell
def _(cli, cudf_module, dask_ok, gpus):
    _default_rows = cli["rows"] or (10_000_000 if cudf_module is not None else 1_000_000)
    rows_slider = mo.ui.slider(
        steps=sizing.ROW_STEPS,
        value=sizing.nearest_step(_default_rows),
        label="Rows",
        show_value=False,
        full_width=True,
    )
    ops_select = mo.ui.multiselect(
        options={desc: name for name, desc in ops.ALL_OPS.items()},
        value=[ops.ALL_OPS[o] for o in (cli["ops"] or list(ops.ALL_OPS))],
        label="Operations",
        full_width=True,  # long option names: the chips wrap inside the column instead of widening it
    )
    repeats_input = mo.ui.number(
        start=1, stop=20, value=cli["repeats"] or (1 if cli["smoke"] else 3), label="Timed repeats"
    )
    mode_radio = mo.ui.radio(
        options=["Single size", sizing.SWEEP_OPTION],
        value=sizing.SWEEP_OPTION if cli["sweep"] else "Single size",
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
        "ops": (cli["ops"] or list(ops.ALL_OPS)) if _auto else (ops_select.value or []),
        "repeats": (cli["repeats"] or (1 if cli["smoke"] else 3)) if _auto else int(repeats_input.value or 1),
        "sweep": (cli["smoke"] or cli["sweep"]) if _auto else mode_radio.value == sizing.SWEEP_OPTION,
        "dask": bool(dask_switch.value),
        "cudf_pandas": bool(cudf_pandas_switch.value) and cudf_module is not None,
    }
    # A preview with the memory free now; the run re-plans with what is free when Run is clicked.
    preview_plan = sizing.plan_from_settings(
        settings, make_engines(cudf_module, polars_module, polars_gpu, duckdb_module)
    )
    mo.callout(mo.md(preview_plan["cap_message"]), kind="warn") if preview_plan["cap_message"] else None
    return preview_plan, settings


@app.cell
def _():
    clear_cache_button = mo.ui.run_button(label="Delete the cached data files", kind="neutral")
    return (clear_cache_button,)


@app.cell(hide_code=True)
def _(clear_cache_button, get_last_run):
    # Here, not under the results: the section's heading shows before a run too. get_last_run: after each run,
    # the files it wrote are counted again.
    get_last_run()
    mo.vstack(
        [
            mo.md("## 3 · Results"),
            mo.hstack(
                [
                    mo.md(clear_data_cache_when_idle() if clear_cache_button.value else data_cache_text()),
                    clear_cache_button,
                ],
                justify="start",
                align="center",
                wrap=True,  # the button moves under the text rather than squeezing its label
            ),
        ]
    )
    return


@app.cell
def _(
    cli,
    cudf_module,
    duckdb_module,
    gpus,
    polars_gpu,
    polars_module,
    preview_plan,
    run_button,
    settings,
):
    mo.stop(
        not (run_button.value or cli["autorun"]),
        mo.md("_Choose a size and operations, then click **Run benchmark**._"),
    )
    mo.stop(not settings["ops"], mo.callout(mo.md("Pick at least one operation."), kind="warn"))
    _wait = lock_wait_text(bool(gpus))
    with (
        gpu_turn(on_wait=lambda: mo.output.replace(mo.callout(mo.md(_wait), kind="info"))) as _lease,
        frames_freed_on_interrupt(),
    ):
        # The waiting box goes once the run has its turn; how long it waited stays said.
        _waited = lock_waited_text(_lease.waited_s, bool(gpus))
        if _waited:
            mo.output.replace(mo.md(f"_{_waited}_"))
        else:
            mo.output.clear()
        engines = make_engines(cudf_module, polars_module, polars_gpu, duckdb_module)
        if settings["dask"]:
            with mo.status.spinner("Starting one Dask worker per GPU (once per app process)…"):
                engines.append(make_dask_engine(dask_client("gpu")))
        # Free memory read now, at the click and under the lock: the previous run has given its memory back.
        plan = sizing.plan_from_settings(settings, engines)
        _cap = sizing.run_cap_notice(preview_plan, plan)  # None when the preview above already says it
        if _cap:
            mo.output.append(mo.callout(mo.md(_cap), kind="warn"))
        bench = run_with_progress(plan, engines)
        if settings["cudf_pandas"]:
            with mo.status.spinner("cudf.pandas: the same pandas code in a worker process (no code change)…"):
                _cp = cudf_pandas.run_cudf_pandas_engine(
                    [n for n in plan["sizes"] if n <= plan["single_engine_rows"]],
                    plan["ops"],
                    plan["repeats"],
                    checkpoint=stop_if_session_closed,  # a closed tab's run stops here too
                )
            bench["records"] += _cp["records"]
            bench["errors"] += _cp["errors"]
            bench["cudf_pandas_profiles"] = _cp["profiles"]
        # Once per run, under the lock: this machine's raw host→GPU copy rates, beside from_pandas's.
        bench["copy_probe"] = copy_bandwidth_probe() if cudf_module is not None else None
        # and this card's achievable (device-to-device) bandwidth and cuDF's per-op floor, for the roofline
        bench.update(card_probes(engines, plan["ops"]))
    bench["waited_s"] = _lease.waited_s
    mo.output.replace(
        mo.md(
            f"Finished in **{bench['wall_s']:.1f} s** — {len(bench['records'])} measurements over "
            f"{count_of(len(plan['sizes']), 'size')}. {_waited}"
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
    _times, _speedups = results_table(summary), speedup_table(summary)
    mo.vstack(
        [
            mo.md(explain_results.pipeline_text(summary) or ""),
            mo.md(explain_results.summary_text(summary, bench)),
            mo.md(
                "**Time per operation**: the median of the timed repeats, the fastest and slowest in brackets."
            ),
            mo.ui.table(
                _times,
                page_size=12,
                selection=None,
                show_column_summaries=False,
                # Wider than the page with the GPU engines: size, operation and check stay in view as it scrolls.
                freeze_columns_left=[c for c in ("rows", "operation", "result check") if c in _times],
            ),
            mo.md("**Speedups** (× faster; under 1× is slower), every engine against pandas:"),
            mo.ui.table(
                _speedups,
                page_size=12,
                selection=None,
                show_column_summaries=False,
                freeze_columns_left=["rows", "operation"],
            )
            if _speedups is not None
            else mo.md("_No speedup: only pandas ran._"),
        ]
    )
    return


@app.cell(hide_code=True)
def _(summary):
    mo.hstack([charts.times_chart(summary), charts.speedup_chart(summary)], widths="equal", wrap=True)
    return


@app.cell(hide_code=True)
def _(bench, summary):
    mo.stop(not bench.get("copy_probe"))
    mo.md(explain_gpu.copy_text(bench["copy_probe"], summary))
    return


@app.cell(hide_code=True)
def _(summary):
    _times = charts.sweep_times_chart(summary)
    mo.stop(_times is None)
    _sweep = charts.sweep_chart(summary)
    _cross = explain_results.crossover_sentence(summary)
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
            charts.timeline_chart(
                pd.DataFrame(bench["samples"]), pd.DataFrame(bench["spans"]), gpm_frame(bench)
            ),
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
            mo.callout(mo.md(explain_gpu.telemetry_text(bench)), kind="neutral"),
        ]
    )
    return


@app.cell(hide_code=True)
def _(bench, summary):
    _bw = bandwidth_table(summary, bench["peak_bandwidth_gbs"], bench["achievable_gbs"], bench["floor_s"])
    mo.stop(_bw is None)
    mo.vstack(
        [
            mo.md(explain_gpu.bandwidth_intro(bench)),
            mo.ui.table(_bw, selection=None, show_column_summaries=False),
        ]
    )
    return


@app.cell(hide_code=True)
def _(bench):
    _fallbacks = cudf_pandas.fallback_table(bench.get("cudf_pandas_profiles") or [])
    mo.stop(_fallbacks is None)
    mo.vstack(
        [
            mo.md(
                explain_method.fallback_table_intro(
                    cudf_pandas.PROFILE_SAMPLE_ROWS, cudf_pandas.FALLBACK_STEP
                )
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
                    "Why GPU-accelerated DataFrames?": mo.md(explain_gpu.explain_why_gpu(gpus, host, _last)),
                    "Is pandas a fair baseline?": mo.md(explain_method.explain_baseline(host, _last)),
                    "When one GPU is not enough: Dask-cuDF": mo.md(
                        explain_method.explain_multi_gpu(gpus, _last)
                    ),
                    "Understanding the benchmark operations": mo.md(explain_method.explain_operations(_last)),
                    "Understanding GPU metrics": mo.md(explain_gpu.explain_metrics(gpus, _last)),
                    "cudf.pandas: pandas on the GPU without changing code": mo.md(
                        explain_method.explain_cudf_pandas(_last)
                    ),
                    "How we measure (and why one timed `op().to_pandas()` misleads)": mo.md(
                        explain_method.explain_measurement(_last)
                    ),
                },
                multiple=True,
            ),
        ]
    )
    return


@app.cell
def _():
    # One private folder per session (one viewer's file is never in another's); gone when the session ends.
    user_folder = user_data.SessionFolder()
    user_forget = mo.ui.run_button(label="Delete my file", kind="neutral")
    return user_folder, user_forget


@app.cell
def _(user_forget):
    user_forget  # a click makes a fresh, empty upload box: the file's bytes leave this session too
    user_file = mo.ui.file(
        filetypes=[".csv", ".parquet"],
        kind="area",
        max_size=user_data.UPLOAD_CAP_BYTES,  # marimo's upload limit for this box; save_upload checks it again
        label="Drop a CSV or Parquet file here, or click to choose one",
    )
    return (user_file,)


@app.cell
def _(cli, user_file, user_folder):
    user_table, user_error = None, None
    try:
        if user_file.value:
            with mo.status.spinner("Checking your file…"):
                _free = sizing.read_host_status()["available_bytes"]
                user_table = user_data.save_upload(
                    user_folder, user_file.name(), user_file.contents(), free_host_bytes=_free
                )
        else:
            user_folder.clear()  # nothing uploaded (or deleted on request): nothing of it stays on disk
            if cli["data"]:
                with mo.status.spinner("Reading the table this server was started with…"):
                    user_table = user_data.read_server_table(
                        cli["data"], sizing.read_host_status()["available_bytes"]
                    )
    except user_data.UserDataError as _err:
        user_error = str(_err)
    return user_error, user_table


@app.cell(hide_code=True)
def _(cli, user_error, user_file, user_forget, user_table):
    mo.vstack(
        [
            mo.md(explain_user_data.user_intro_text(user_data.UPLOAD_CAP_BYTES, bool(cli["data"]))),
            mo.hstack([user_file, user_forget], justify="start", align="center"),
            mo.callout(mo.md(f"**This file cannot be used.** {user_error}"), kind="danger")
            if user_error
            else mo.md(explain_user_data.user_table_text(user_table))
            if user_table is not None
            else mo.md("_No table yet: upload one to run the benchmark on it._"),
        ]
    )
    return


@app.cell
def _(cudf_module, duckdb_module, polars_gpu, polars_module, user_table):
    mo.stop(user_table is None)
    _pick = user_data.role_dropdowns(user_table)  # each role's columns, the sensible default first
    user_value = mo.ui.dropdown(**_pick["value"], label="Value (filtered, summed, averaged)")
    user_key = mo.ui.dropdown(**_pick["key"], label="Key (group by, join)")
    user_sort = mo.ui.dropdown(**_pick["sort"], label="Sort by")
    user_quantile = mo.ui.slider(
        0.05, 0.95, step=0.05, value=0.5, label="Filter: keep values above this quantile", show_value=True
    )
    # The engines your table runs on, for the memory checks (a run makes its own, with your ops).
    user_base = make_engines(cudf_module, polars_module, polars_gpu, duckdb_module)
    return user_base, user_key, user_quantile, user_sort, user_value


@app.cell
def _(user_base, user_folder, user_key, user_quantile, user_sort, user_table, user_value):
    user_roles = {"value": user_value.value, "key": user_key.value, "sort": user_sort.value}
    # Before anything is read: as many rows as the free GPU and host memory hold for the engines that run.
    _fit = sizing.plan_from_settings(
        {"requested_rows": user_table.rows, "ops": [], "repeats": 1, "sweep": False},
        user_base,
        bytes_per_row=role_bytes_per_row(user_table, user_roles),
    )["rows"]
    try:
        with mo.status.spinner("Mapping your columns…"):
            user_dataset = prepare_dataset(
                user_table, user_roles, user_quantile.value, user_folder.path, min(_fit, user_table.rows)
            )
        _said = mo.md(
            explain_user_data.user_dataset_text(
                user_dataset,
                explain_user_data.user_ops_text(user_dataset.spec(), user_roles, user_dataset.key_count),
            )
        )
    except user_data.UserDataError as _err:
        user_dataset, _said = None, mo.callout(mo.md(str(_err)), kind="warn")
    mo.vstack(
        [mo.hstack([user_value, user_key, user_sort], justify="start", wrap=True), user_quantile, _said]
    )
    return (user_dataset,)


@app.cell
def _(user_dataset):
    mo.stop(user_dataset is None)
    user_rows = mo.ui.dropdown(
        options={f"all {user_dataset.rows:,} rows": user_dataset.rows}
        | {
            f"a sample of {format_rows(n)} rows": n
            for n in reversed(sizing.ROW_STEPS)
            if n < user_dataset.rows
        },
        value=f"all {user_dataset.rows:,} rows",
        label="Rows",
    )
    user_sweep = mo.ui.radio(["One size", sizing.SWEEP_OPTION], value="One size", label="Mode")
    user_repeats = mo.ui.number(start=1, stop=20, value=3, label="Timed repeats")
    user_run = mo.ui.run_button(label="Run on my table", kind="success")
    mo.hstack([user_rows, user_repeats, user_sweep, user_run], justify="start", gap=2)
    return user_repeats, user_rows, user_run, user_sweep


@app.cell
def _(cli, cudf_module, cudf_pandas_switch, user_base, user_dataset, user_repeats, user_rows, user_sweep):
    # Headless (`-- --run --data FILE`, `-- --smoke --data FILE`): the command line's settings, as above.
    _auto, _all = cli["autorun"] and bool(cli["data"]), user_dataset.rows
    user_settings = {
        "requested_rows": min(cli["rows"] or _all, _all) if _auto else user_rows.value,
        "ops": user_dataset.ops,
        "repeats": (cli["repeats"] or (1 if cli["smoke"] else 3)) if _auto else int(user_repeats.value or 1),
        "sweep": (cli["smoke"] or cli["sweep"]) if _auto else user_sweep.value == sizing.SWEEP_OPTION,
        "dask": False,
        "cudf_pandas": bool(cudf_pandas_switch.value) and cudf_module is not None,
    }
    # The memory checks with the memory free now; the run checks again when Run is clicked.
    _preview = sizing.plan_from_settings(user_settings, user_base, bytes_per_row=user_dataset.bytes_per_row)
    mo.callout(mo.md(_preview["cap_message"]), kind="warn") if _preview["cap_message"] else None
    return (user_settings,)


@app.cell
def _(cli, gpus, user_base, user_dataset, user_run, user_settings):
    mo.stop(
        not (user_run.value or (cli["autorun"] and cli["data"])),
        mo.md("_Pick the columns and the rows, then click **Run on my table**._"),
    )
    _wait = lock_wait_text(bool(gpus))
    with (
        gpu_turn(on_wait=lambda: mo.output.replace(mo.callout(mo.md(_wait), kind="info"))) as _lease,
        frames_freed_on_interrupt(),
    ):
        mo.output.clear()
        _engines, _left = user_engines(user_base, user_dataset.spec(), user_dataset.atol)
        user_plan = sizing.plan_from_settings(
            user_settings, _engines, bytes_per_row=user_dataset.bytes_per_row
        )
        if user_plan["cap_message"]:
            mo.output.append(mo.callout(mo.md(user_plan["cap_message"]), kind="warn"))
        user_bench = run_with_progress(user_plan, _engines, user_dataset)
        if user_settings["cudf_pandas"]:
            with mo.status.spinner("cudf.pandas on your table, in a worker process (no code change)…"):
                _cp = cudf_pandas.run_cudf_pandas_engine(
                    user_plan["sizes"],
                    user_plan["ops"],
                    user_plan["repeats"],
                    dataset=user_dataset,
                    checkpoint=stop_if_session_closed,  # a closed tab's run stops here too
                )
            user_bench["records"] += _cp["records"]
            user_bench["errors"] += _cp["errors"]
    user_bench["errors"] = [user_dataset.scrub(_e) for _e in user_bench["errors"]]  # no server paths
    _waited = lock_waited_text(_lease.waited_s, bool(gpus))
    mo.output.replace(mo.md(f"{explain_user_data.user_run_text(user_bench, user_plan, _left)} {_waited}"))
    return (user_bench,)


@app.cell(hide_code=True)
def _(user_bench, user_dataset):
    user_summary = summarize_records(user_bench["records"], user_bench["peak_bandwidth_gbs"])
    _cause = explain_user_data.user_disagreement_causes(user_dataset)
    mo.vstack(
        [
            mo.callout(mo.md(_text), kind=_kind)
            for _kind, _text in check_messages(user_summary, user_bench["errors"], _cause)
        ]
        + [
            mo.md(explain_user_data.user_summary_text(user_summary)),
            mo.ui.table(
                results_table(user_summary),
                page_size=12,
                selection=None,
                show_column_summaries=False,
                freeze_columns_left=["rows", "operation"],
            ),
            mo.hstack(
                [charts.times_chart(user_summary), charts.speedup_chart(user_summary)],
                widths="equal",
                wrap=True,
            ),
        ]
    )
    return (user_summary,)


@app.cell(hide_code=True)
def _(user_bench, user_summary):
    _parts, _times = [], charts.sweep_times_chart(user_summary)
    if _times is not None:
        _parts += [
            mo.md("### How the time grows with your table's size (random samples of its rows)"),
            _times,
        ]
    if user_bench["samples"]:
        _parts += [
            mo.md(f"### GPU timeline of your run ({len(user_bench['samples'])} NVML samples)"),
            charts.timeline_chart(
                pd.DataFrame(user_bench["samples"]), pd.DataFrame(user_bench["spans"]), gpm_frame(user_bench)
            ),
        ]
    _telemetry = op_telemetry_table(user_summary)
    if _telemetry is not None:
        _parts += [mo.md("### What the GPU did on your table"), mo.ui.table(_telemetry, selection=None)]
    mo.vstack(_parts) if _parts else None
    return


@app.cell
def _(cli):
    # Decided on the server for this session: a `marimo run` viewer never gets the editor, nor a run.
    snippet_allowed, snippet_why = cudf_pandas.user_code_allowed(mo.app_meta().mode, cli)
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
            mo.md("## 6 · Your own pandas code"),
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
    with gpu_turn(
        on_wait=lambda: mo.output.replace(mo.callout(mo.md(lock_wait_text(bool(gpus))), kind="info"))
    ):
        with mo.status.spinner("Running your snippet in worker processes…"):
            _out = cudf_pandas.run_user_snippet(
                snippet_editor.value, int(snippet_rows.value or 1_000_000), accelerate=cudf_module is not None
            )
    mo.md(cudf_pandas.snippet_report(_out, cudf_module is not None))
    return


@app.cell(hide_code=True)
def _(get_last_run):
    mo.md(explain_results.takeaways_text(get_last_run()))
    return


@app.cell(hide_code=True)
def _():
    # Prose and sources in one cell: a cell that is only `mo.md("...")` opens stale in `marimo edit` (marimo
    # renders it on open without running it, and the editor then counts it as never run).
    import inspect

    _intro = mo.md(r"""
    ## Read the code

    The cells above tell the story; the library they call lives in the package `gpu_notebooks/` beside this
    notebook, one concern a module. Below is the **real source** of the few functions this benchmark rests on,
    read from the package as it runs (`inspect.getsource`), so it is always what ran.

    | what | where |
    |---|---|
    | **the timing** (warm-up, repeats, GPU synchronized) | `gpu_notebooks/rapids_benchmark/timing.py`: `time_operation` |
    | the operations, once against the pandas API | `rapids_benchmark/ops.py` (cuDF and cudf.pandas run the same functions) |
    | **the result check** | `rapids_benchmark/checks.py`: `results_match` |
    | the engines (pandas, cuDF, Polars, DuckDB, Dask-cuDF) | `rapids_benchmark/engines.py`, `polars_engine.py`, `duckdb_engine.py`, `dask_engine.py` |
    | the run: sizes, engines, records | `rapids_benchmark/runner.py`: `run_benchmark` |
    | cudf.pandas in its own process | `rapids_benchmark/cudf_pandas.py`: `worker_main`, `run_worker` |
    | the GPU lock, the samplers | `gpu_notebooks/gpu/lock.py`, `gpu/sampler.py`, `gpu/gpm.py`, `gpu/nvml.py` |
    | the learner texts | `rapids_benchmark/explain/` (plain functions: this run's numbers in, markdown out) |
    """)
    _shown = {
        "time_operation — warm-up, repeats, median and spread": time_operation,
        "op_filter — keep rows by two conditions": ops.op_filter,
        "op_groupby_few — five aggregations over 100 keys": ops.op_groupby_few,
        "op_groupby_many — sum and count over 100k keys": ops.op_groupby_many,
        "op_join — inner join with a lookup table": ops.op_join,
        "op_sort — sort every row by a float column": ops.op_sort,
        "results_match — every result compared with pandas'": results_match,
    }
    _sources = mo.accordion(
        {
            f"`{title.split(' — ')[0]}` — {title.split(' — ')[1]} ({inspect.getmodule(obj).__name__})": mo.md(
                f"```python\n{inspect.getsource(obj)}```"
            )
            for title, obj in _shown.items()
        }
    )
    mo.vstack([_intro, _sources])
    return


if __name__ == "__main__":
    app.run()
