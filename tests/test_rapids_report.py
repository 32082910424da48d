"""The RAPIDS dashboard's report layer, lock, sampler text and error policy, on the cases a review found broken."""

import math
import os
import re
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import marimo as mo
import pandas as pd
import pytest

import gpu_notebooks.rapids_benchmark.dask_engine as dask_engine
import gpu_notebooks.rapids_benchmark.sizing as sizing
from gpu_notebooks.gpu.lock import gpu_lock_path, gpu_turn, lock_wait_text, lock_waited_text
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.rapids_benchmark.charts import live_gpu_panel, log_ticks, speedup_chart, timeline_chart
from gpu_notebooks.rapids_benchmark.checks import (
    check_messages,
    invariant_check,
    results_match,
    results_match_polars,
)
from gpu_notebooks.rapids_benchmark.dask_engine import dask_client
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.errors import is_out_of_memory
from gpu_notebooks.rapids_benchmark.explain.results import speed_range_text, summary_text, takeaways_text
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.report import results_table, speedup_table, summarize_records
from gpu_notebooks.rapids_benchmark.runner import progress_total, run_benchmark, run_with_progress
from gpu_notebooks.rapids_benchmark.sizing import plan_from_settings
from gpu_notebooks.registry import process_registry

ROOT = Path(__file__).resolve().parents[1]


def record(rows, op, engine, median, on_gpu, match=None, checked_by="", **kw):
    """One run_benchmark record, as finish_record writes it."""
    return {
        "rows": rows,
        "op": op,
        "engine": engine,
        "median_s": median,
        "min_s": median,
        "max_s": median,
        "warmup_s": median,
        "repeats": 1,
        "rows_out": 10,
        "bytes_touched": 1_000_000,
        "on_gpu": on_gpu,
        "load_s": kw.get("load_s", 0.01),
        "load_kind": kw.get("load_kind", ""),
        "h2d_s": kw.get("h2d_s", math.nan),
        "d2h_s": 0.0,
        "match": match,
        "checked_by": checked_by,
        "detail": kw.get("detail", "reference" if engine == "pandas" else "10 rows identical"),
    }


def bench_for(records, sizes):
    return {
        "records": records,
        "generation": [{"rows": n, "seconds": 0.1} for n in sizes],
        "plan": {"repeats": 1},
        "wall_s": 3.0,
        "errors": [],
    }


# --- the lock ------------------------------------------------------------------------------------


def test_the_lock_path_comes_from_the_environment_and_defaults_to_the_shared_temp_file(monkeypatch, tmp_path):
    path = str(tmp_path / "private.lock")
    monkeypatch.setenv("GPU_NOTEBOOKS_LOCK_PATH", path)
    assert gpu_lock_path() == path
    with gpu_turn():
        assert os.path.exists(path)  # the lock taken with no path is the environment's file
    monkeypatch.delenv("GPU_NOTEBOOKS_LOCK_PATH")
    assert gpu_lock_path() == os.path.join(tempfile.gettempdir(), "gpu-learning-notebooks.lock")


def test_without_a_gpu_the_queue_message_says_what_it_waits_for():
    text = lock_wait_text(has_gpu=False)
    assert "waiting for the gpu" not in text.lower() and "other run" in text
    assert "Waiting for the GPU" in lock_wait_text(has_gpu=True)


def test_the_lock_reports_how_long_a_queued_run_waited(tmp_path):
    path = str(tmp_path / "gpu.lock")
    held, asked, leases = threading.Event(), threading.Event(), []

    def first():  # holds the lock until the second run is waiting for it, then 0.3 s more
        with gpu_turn(path=path):
            held.set()
            asked.wait(60)
            time.sleep(0.3)

    t = threading.Thread(target=first)
    t.start()
    held.wait(60)
    with gpu_turn(path=path, on_wait=asked.set) as lease:
        leases.append(lease.waited_s)
    t.join(60)
    with gpu_turn(path=path) as lease:
        leases.append(lease.waited_s)
    assert leases[0] > 0.1 and leases[1] == 0.0
    assert lock_waited_text(leases[0], has_gpu=False).startswith("Waited ")
    assert lock_waited_text(0.0, has_gpu=True) == ""


# --- summaries with Dask, missing engines, a failing reference -------------------------------------


def test_a_dask_sweep_whose_top_size_ran_on_dask_alone_is_summarized_without_nan_or_crash():
    recs = []
    for op in ("filter", "sort"):
        recs += [
            record(1_000, op, "pandas", 0.010, False),
            record(1_000, op, "cudf", 0.002, True, True, "pandas", h2d_s=0.001, load_kind="host→GPU copy"),
            record(1_000, op, "dask_cudf", 0.004, True, True, "pandas"),
            record(10**9, op, "dask_cudf", 0.9, True, True, "self-check"),
        ]
    summary = summarize_records(recs)  # no CPU record at 1B rows: once a KeyError
    text = summary_text(summary, bench_for(recs, [1_000, 10**9]))
    assert "nan" not in text.lower()
    assert "No GPU engine ran" not in text
    assert "only **Dask-cuDF** ran" in text and "1K rows" in text


def test_dask_alone_is_a_gpu_run_in_the_summary():
    recs = [record(10**6, op, "dask_cudf", 0.1, True, True, "self-check") for op in ("filter", "join")]
    summary = summarize_records(recs)
    assert summary["pandas_median_s"].isna().all() if "pandas_median_s" in summary else True
    text = summary_text(summary, bench_for(recs, [10**6]))
    assert "No GPU engine ran" not in text and "nan" not in text.lower()


def test_speed_ranges_below_one_are_called_slower():
    assert speed_range_text(pd.Series([0.4, 0.8]), "pandas") == "0.4×–0.8× as fast as pandas (slower)"
    assert speed_range_text(pd.Series([1.5, 2.0]), "pandas") == "1.5×–2.0× faster than pandas"
    mixed = speed_range_text(pd.Series([0.4, 2.0]), "pandas")
    assert "0.4× (slower)" in mixed and "2.0× (faster)" in mixed
    assert "faster than" not in mixed


def failing_pandas(op_name, error):
    """The pandas reference engine, with one op raising `error`."""

    def broken(*_):
        raise error

    return Engine("pandas", pd, on_gpu=False, ops={o: (broken if o == op_name else get_op(o)) for o in OPS})


def test_when_pandas_fails_an_op_no_other_engine_becomes_the_reference():
    pl = pytest.importorskip("polars")
    polars = make_engines(None, pl)[1]
    standin = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy())
    out = run_benchmark(
        [5_000], ["filter", "sort"], [failing_pandas("filter", MemoryError()), polars, standin], 1
    )
    assert len(out["errors"]) == 1 and "pandas · filter" in out["errors"][0]
    by = {(r["op"], r["engine"]): (r["match"], r["checked_by"]) for r in out["records"]}
    assert by[("filter", "cudf")] == (True, "self-check")  # checked from the input, not against Polars
    assert by[("filter", "polars")] == (None, "")  # not checked, and said so
    assert by[("sort", "polars")] == (True, "pandas")
    summary = summarize_records(out["records"])
    kinds = dict(check_messages(summary, out["errors"]))
    assert "Not checked" in kinds["warn"] and "Polars" in kinds["warn"]
    assert "matches pandas" not in kinds.get("success", "")
    table = results_table(summary)
    assert set(table["result check"]) == {"✓ self-check; not checked: Polars", "✓ vs pandas"}


def test_a_summary_with_no_cpu_engine_and_no_pandas_has_no_key_error():
    recs = [record(10**6, "sort", "cudf", 0.01, True, True, "self-check", h2d_s=0.1)]
    summary = summarize_records(recs)
    assert summary["speedup"].isna().all() and summary["fastest_cpu"].isna().all()
    results_table(summary)


# --- the sampler text and the live panel with readings NVML does not give -----------------------------


def test_missing_nvml_readings_never_reach_a_format_string():
    sampler = GpuSampler()
    sampler._handles = [object(), object()]
    blank = {"util_pct": None, "memory_used_gb": None, "temp_c": None, "power_w": None, "sm_clock_mhz": None}
    sampler.samples = [
        {"t": 0.0, "gpu": 0, **blank},
        {"t": 0.0, "gpu": 1, **blank, "util_pct": 55, "memory_used_gb": 3.0},
    ]
    assert sampler.latest_text() == " · GPU 0 — · — · — · GPU 1 55% · 3.0 GB · —"
    assert sampler.latest_text((0,)) == " · GPU 0 — · — · —"  # the GPU the op runs on, not the last one
    assert sampler.latest_text(()) == ""  # a CPU engine: no GPU reading
    gpu = {"index": 0, "memory_total_gb": 80.0, "power_limit_w": None, **blank}
    live_gpu_panel([gpu])  # builds without a TypeError


def test_the_progress_subtitle_names_the_gpus_of_the_engine_that_runs():
    seen = []
    standin = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), gpus=(1,))
    run_benchmark(
        [2_000], ["filter"], make_engines(None) + [standin], 1, tick=lambda label, g: seen.append((label, g))
    )
    assert ("cudf · filter · 2K rows · warm-up", (1,)) in seen
    assert ("pandas · filter · 2K rows · warm-up", ()) in seen


# --- progress, timeline, labels --------------------------------------------------------------------


def test_progress_total_counts_sizes_beyond_one_gpu_on_dask_only():
    dask = Engine("dask_cudf", None, on_gpu=True, load=lambda *a: None)
    engines = [*make_engines(None), Engine("cudf", pd, on_gpu=True), dask]
    plan = {
        "sizes": [1_000, 10**9],
        "rows": 10**9,
        "single_engine_rows": 1_000,
        "ops": ["filter", "sort"],
        "repeats": 2,
    }
    assert progress_total(plan, engines) == (3 + 1) * 2 * 3


def test_the_progress_bar_ends_full_when_a_measurement_fails(monkeypatch):
    bars = []

    class Bar:
        def __init__(self, total, **_):
            self.total, self.done = total, 0
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def update(self, increment=1, **_):
            self.done += increment

    monkeypatch.setattr(mo.status, "progress_bar", Bar)

    class Exploding:
        @staticmethod
        def merge(*a, **k):
            raise MemoryError

    engines = make_engines(None) + [Engine("cudf", Exploding, on_gpu=True, to_device=lambda f: f.copy())]
    plan = {"sizes": [2_000], "rows": 2_000, "ops": ["join", "filter"], "repeats": 2}
    out = run_with_progress(plan, engines)
    assert out["errors"] and bars[0].done == bars[0].total == 2 * 2 * 3


def test_the_timeline_shades_each_engine_under_its_own_name():
    samples = pd.DataFrame(
        [
            {
                "t": t / 10,
                "gpu": 0,
                "util_pct": 5,
                "memory_used_gb": 1.0,
                "temp_c": 40,
                "power_w": 90.0,
                "sm_clock_mhz": 900,
            }
            for t in range(10)
        ]
    )
    spans = pd.DataFrame(
        [
            {"engine": "polars", "on_gpu": False, "op": "sort", "rows": 10, "start": 0.1, "end": 0.3},
            {"engine": "cudf", "on_gpu": True, "op": "sort", "rows": 10, "start": 0.4, "end": 0.5},
        ]
    )
    spec = timeline_chart(samples, spans).to_dict()
    text = str(spec)
    assert "cuDF op" not in text and "engine running" in text
    assert "'Polars'" in text and "'cuDF'" in text


def test_only_a_real_host_to_gpu_copy_is_labelled_one():
    pl = pytest.importorskip("polars")
    out = run_benchmark([2_000], ["filter"], make_engines(None, pl), 1)
    polars = next(r for r in out["records"] if r["engine"] == "polars")
    assert polars["load_kind"] == "pandas → Polars conversion" and math.isnan(polars["h2d_s"])
    assert polars["load_s"] > 0


def test_two_viewers_starting_dask_together_start_one_cluster(monkeypatch):
    inside, most = [0], [0]

    def slow_start(registry, kind, n_workers):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        registry.setdefault(kind, object())
        inside[0] -= 1
        return registry[kind]

    monkeypatch.setattr(dask_engine, "start_dask_client", slow_start)
    monkeypatch.setitem(process_registry(), "dask", {})  # no client from an earlier test
    got = []
    threads = [threading.Thread(target=lambda: got.append(dask_client("race"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most[0] == 1 and len({id(c) for c in got}) == 1


# --- errors: out of memory and the libraries' documented errors are reported, bugs raise ---------------


def test_out_of_memory_is_recognised_by_type_not_by_words_in_any_message():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA error at: ...: cudaErrorMemoryAllocation out of memory"))
    assert not is_out_of_memory(ValueError("out of memory"))  # a typed error is judged by its type
    assert not is_out_of_memory(KeyError("out_of_memory"))

    class CUDARuntimeError(RuntimeError):
        def __init__(self, status):
            super().__init__(f"status {status}")
            self.status = status

    fake = types.ModuleType("cupy_backends.cuda.api.runtime")
    fake.CUDARuntimeError = CUDARuntimeError
    sys.modules["cupy_backends.cuda.api.runtime"] = fake
    try:
        assert is_out_of_memory(CUDARuntimeError(2)) and not is_out_of_memory(CUDARuntimeError(700))
    finally:
        del sys.modules["cupy_backends.cuda.api.runtime"]


def test_a_comparison_that_cannot_run_raises_instead_of_reading_as_a_cross():
    frame = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(AttributeError):
        results_match(frame, object(), "rows")
    pl = pytest.importorskip("polars")
    with pytest.raises(AttributeError):
        results_match_polars(frame, object(), "rows")
    with pytest.raises(KeyError):  # a result without the columns the self-check reads
        invariant_check("groupby_few", frame, None, frame)
    assert pl  # polars present for the check above


@pytest.mark.parametrize("error", [NameError("name 'cudf_frame' is not defined"), TypeError("bad call")])
def test_a_bug_in_an_op_raises_out_of_the_benchmark(error):
    def op(*_):
        raise error

    engine = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), ops=dict.fromkeys(OPS, op))
    with pytest.raises(type(error)):
        run_benchmark([2_000], ["filter"], make_engines(None) + [engine], 1)


def test_documented_library_errors_are_reported_and_the_run_goes_on():
    pl = pytest.importorskip("polars")
    raised = iter([NotImplementedError("dtype not supported"), pl.exceptions.ComputeError("bad plan")])

    def op(*_):
        raise next(raised)

    engine = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), ops=dict.fromkeys(OPS, op))
    out = run_benchmark([2_000], ["filter", "sort"], make_engines(None) + [engine], 1)
    assert [e.split(": ", 1)[1] for e in out["errors"]] == [
        "NotImplementedError: dtype not supported",
        "ComputeError: bad plan",
    ]
    assert {r["engine"] for r in out["records"]} == {"pandas"}


def test_the_run_cell_plans_with_memory_read_at_the_click():
    """The plan that runs is made inside the Run cell (under the lock), not when a control last changed."""
    source = (ROOT / "rapids_benchmark_dashboard.py").read_text()
    cells = [m.group(1) for m in re.finditer(r"def _\([^)]*\):\n(.*?)\n\n\n", source, re.S)]
    (cell,) = [c for c in cells if "run_button.value or" in c]
    assert cell.index("plan_from_settings(") < cell.index("run_with_progress(")
    assert cell.index("gpu_turn(") < cell.index("plan_from_settings(")


def test_plan_from_settings_reads_free_memory_when_called(monkeypatch):
    settings = {"requested_rows": 100_000_000, "ops": ["filter"], "repeats": 1, "sweep": False}
    monkeypatch.setattr(sizing, "read_host_status", lambda: {"available_bytes": 2e9})
    small = plan_from_settings(settings, make_engines(None))
    monkeypatch.setattr(sizing, "read_host_status", lambda: {"available_bytes": 20e9})
    large = plan_from_settings(settings, make_engines(None))
    assert small["rows"] < large["rows"] <= 100_000_000 and small["cap_message"]


@pytest.mark.parametrize("script", ["device_rapids.sh", "device_multigpu.sh", "device_polars_gpu.sh"])
def test_a_failing_part_of_a_device_script_fails_the_script(script, tmp_path):
    """pipefail, and every `cmd | tee log` records a failure; the script exits non-zero at the end."""
    text = (ROOT / "bench" / script).read_text()
    assert "set -uo pipefail" in text and text.rstrip().endswith('exit "$status"')
    for line in text.splitlines():
        if re.search(r'\| tee (-a )?"\$OUT', line) and not line.rstrip().endswith("\\"):
            assert line.rstrip().endswith("|| status=1"), line
    # The pattern itself: a failing first command in a tee pipeline sets the status.
    import subprocess

    probe = 'set -uo pipefail; status=0; false 2>&1 | tail -3 | tee /dev/null || status=1; exit "$status"'
    assert subprocess.run(["bash", "-c", probe]).returncode == 1


def test_the_speedup_axis_labels_a_tick_above_the_longest_bar_and_no_chart_cuts_its_last_label():

    assert log_ticks(0.3, 2.4) == [0.5, 1, 2]
    summary = pd.DataFrame({"rows": [10**6] * 2, "op": ["filter", "sort"], "polars_speedup": [0.6, 2.0]})
    spec = speedup_chart(summary).to_dict()
    axis = spec["layer"][0]["encoding"]["x"]["axis"]
    assert max(axis["values"]) >= 2.0 and axis["labelFlush"] is True
    samples = pd.DataFrame(
        [
            {
                "t": t,
                "gpu": 0,
                "util_pct": 1,
                "memory_used_gb": 1.0,
                "temp_c": 1,
                "power_w": 1.0,
                "sm_clock_mhz": 1,
            }
            for t in range(3)
        ]
    )
    spec = timeline_chart(samples, pd.DataFrame()).to_dict()
    assert all(p["encoding"]["x"]["axis"]["labelFlush"] for p in spec["vconcat"])


def test_the_takeaways_name_only_columns_the_table_has():

    recs = [record(10**6, op, "pandas", 0.2, False) for op in ("filter", "sort")]
    recs += [
        record(10**6, op, "polars", m, False, True, "pandas") for op, m in (("filter", 0.5), ("sort", 0.1))
    ]
    summary = summarize_records(recs)
    text = takeaways_text({"summary": summary, "bench": {}})
    columns = " ".join([*results_table(summary).columns, *speedup_table(summary).columns])
    assert "fastest CPU" not in text and "fastest CPU" not in columns
    assert "0.4× (slower) to 2.0× (faster)" in text and "faster than pandas" not in text
    assert "Run the benchmark" in takeaways_text(None)


@pytest.mark.parametrize("with_gpu", [False, True])
def test_every_engine_that_ran_appears_in_the_speedup_table_chart_and_takeaways_the_same_way(with_gpu):
    """DuckDB was timed but had no "vs pandas" column, no bar and no takeaway, while it won the pipeline."""
    from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS

    times = {"pandas": 0.1772, "polars": 0.09, "duckdb": 0.0445} | ({"cudf": 0.05} if with_gpu else {})
    recs = [
        record(10**6, op, eng, m, eng == "cudf", *(() if eng == "pandas" else (True, "pandas")), h2d_s=0.01)
        for op in ("pipeline", "filter")
        for eng, m in times.items()
    ]
    summary = summarize_records(recs)
    labels = {f"{ENGINE_LABELS[e]} vs pandas" for e in times if e != "pandas"}
    assert labels <= set(speedup_table(summary).columns)
    spec = speedup_chart(summary).to_dict()
    bars = {row["kind"] for rows in spec["datasets"].values() for row in rows if "kind" in row}
    assert labels <= bars
    text = takeaways_text({"summary": summary, "bench": {}})
    versus = next(line for line in text.splitlines() if "each engine against pandas" in line)
    assert all(f"**{ENGINE_LABELS[e]}**" in versus for e in times if e != "pandas"), versus
    assert "the fastest engine was **DuckDB**: 44.5 ms against pandas' 177.2 ms" in text
    bench = {"generation": [], "plan": {"repeats": 1}, "wall_s": 1.0}
    assert "**DuckDB**" in summary_text(summary, bench) and "**Polars**" in summary_text(summary, bench)


@pytest.mark.parametrize("with_gpu", [False, True])
def test_an_engine_has_one_colour_in_every_chart_whichever_engines_ran(with_gpu):
    """Colours were assigned per chart: Polars was orange among the times and blue among the speedups beside."""
    from gpu_notebooks.rapids_benchmark.charts import ENGINE_COLORS, times_chart

    times = {"pandas": 0.2, "polars": 0.09, "duckdb": 0.04} | ({"cudf": 0.05} if with_gpu else {})
    recs = [
        record(
            10**6, "filter", eng, m, eng == "cudf", *(() if eng == "pandas" else (True, "pandas")), h2d_s=0.01
        )
        for eng, m in times.items()
    ]
    summary = summarize_records(recs)

    def colours(chart, field):
        specs = [chart.to_dict()]
        found = {}
        while specs:
            spec = specs.pop()
            if isinstance(spec, dict):
                color = spec.get("encoding", {}).get("color", {})
                if color.get("field") == field and "scale" in color:
                    found |= dict(zip(color["scale"]["domain"], color["scale"]["range"], strict=True))
                specs += list(spec.values())
            elif isinstance(spec, list):
                specs += spec
        return found

    in_times = colours(times_chart(summary), "engine")
    in_speedups = colours(speedup_chart(summary), "kind")
    assert in_times and in_speedups
    for label, colour in in_times.items():
        assert colour == ENGINE_COLORS[label]
        if label != "pandas":
            assert in_speedups[f"{label} vs pandas"] == colour
    assert len(set(in_speedups.values())) == len(in_speedups)  # every bar kind its own colour
