"""Timing, memory caps, the benchmark driver and the environment checks of the RAPIDS dashboard."""

import importlib.abc
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.rapids_benchmark.charts import speedup_chart, sweep_chart, timeline_chart, times_chart
from gpu_notebooks.rapids_benchmark.checks import OP_ORDER, results_match_polars
from gpu_notebooks.rapids_benchmark.cli import parse_cli_args
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row, generate_data
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import detect_cudf, frames_freed_on_interrupt, make_engines
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.polars_engine import detect_polars, polars_frame_for_gpu, polars_ops
from gpu_notebooks.rapids_benchmark.report import (
    crossover_rows,
    results_table,
    speedup_table,
    summarize_records,
)
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from gpu_notebooks.rapids_benchmark.sizing import HOST_FACTORS, cap_rows, plan_run
from gpu_notebooks.rapids_benchmark.timing import time_operation


def pandas_as_gpu(name="cudf", **kw):
    """A stand-in GPU engine: pandas on both sides, so the benchmark logic runs without a GPU."""
    kw.setdefault("load_kind", "host→GPU copy")
    return Engine(name, pd, on_gpu=True, to_device=lambda f: f.copy(), **kw)


def test_timer_runs_one_warmup_then_the_repeats_and_syncs_each_time():
    calls, syncs = [], []
    timing = time_operation(
        lambda: calls.append("run") or len(calls), repeats=4, sync=lambda: syncs.append(1)
    )
    assert calls == ["run"] * 5  # 1 warm-up + 4 timed
    assert len(timing.times) == 4 and len(syncs) == 5
    assert timing.result == 5  # the last timed call's result is kept
    assert timing.min <= timing.median <= timing.max


def test_timer_uses_a_separate_warmup_when_given_and_reports_its_time():
    seen = []
    timing = time_operation(
        lambda: seen.append("run"), repeats=2, warmup=lambda: time.sleep(0.05) or seen.append("w")
    )
    assert seen == ["w", "run", "run"]
    assert timing.warmup_s >= 0.05


def test_timer_median_is_robust_to_one_slow_repeat():
    delays = iter([0.0, 0.001, 0.001, 0.08, 0.001])
    timing = time_operation(lambda: time.sleep(next(delays)), repeats=4)
    assert timing.max >= 0.08 and timing.median < 0.02


def test_memory_cap_arithmetic():
    # 25 B/row, factor 6 on the GPU, 85% usable: 140 GB free → 140e9*0.85/150 = 793M rows.
    rows, msg = cap_rows(500_000_000, 25, free_gpu_bytes=140e9, free_host_bytes=1e12)
    assert rows == 500_000_000 and msg is None
    # An 80 GB card: 80e9*0.85/150 = 453M, rounded down to two significant digits.
    rows, msg = cap_rows(500_000_000, 25, free_gpu_bytes=80e9, free_host_bytes=1e12)
    assert rows == 450_000_000
    assert "GPU" in msg and "capped" in msg
    rows, msg = cap_rows(100_000_000, 25, free_gpu_bytes=None, free_host_bytes=2e9, host_factor=7.0)
    assert rows == 9_700_000 and "host RAM" in msg  # 2e9*0.85/175 = 9.71M
    assert cap_rows(1_000, 25, None, None) == (1_000, None)


def test_plan_caps_the_sweep_too():

    plan = plan_run(100_000_000, ["sort", "filter"], 3, True, 25, free_gpu_bytes=None, free_host_bytes=2e9)
    factor = HOST_FACTORS["pandas"] + HOST_FACTORS["polars"]  # the default engines
    assert plan["host_factor"] == pytest.approx(factor)
    top = plan["rows"]
    assert top <= 2e9 * 0.85 / (25 * factor) and top >= 0.9 * 2e9 * 0.85 / (25 * factor)
    assert plan["sizes"] == [1_000, 10_000, 100_000, 1_000_000, top]
    assert plan["ops"] == ["filter", "sort"]  # in the app's order
    assert 24 < estimate_bytes_per_row() < 27


def test_cli_args_for_headless_runs():
    assert parse_cli_args({"smoke": ""})["autorun"] is True
    args = parse_cli_args({"run": "", "rows": "1e6", "ops": "sort,nonsense,filter", "repeats": "5"})
    assert args["rows"] == 1_000_000 and args["ops"] == ["sort", "filter"] and args["repeats"] == 5
    assert parse_cli_args({})["autorun"] is False


def test_benchmark_with_pandas_on_both_sides_checks_every_op():
    engines = make_engines(None) + [pandas_as_gpu()]
    out = run_benchmark([2_000, 20_000], list(OPS), engines, repeats=2)
    assert not out["errors"]
    assert len(out["records"]) == 2 * len(OPS) * 2
    summary = summarize_records(out["records"], peak_bandwidth_gbs=1000.0)
    assert (summary["match"] == "✓").all()
    # Each derived figure against the records it comes from (a wrong formula fails here).
    rec = pd.DataFrame(out["records"]).set_index(["rows", "op", "engine"])
    for r in summary.itertuples():
        p, c = rec.loc[(r.rows, r.op, "pandas")], rec.loc[(r.rows, r.op, "cudf")]
        assert r.speedup == pytest.approx(p["median_s"] / c["median_s"])
        assert r.speedup_e2e == pytest.approx(p["median_s"] / (c["h2d_s"] + c["median_s"] + c["d2h_s"]))
        assert r.bandwidth_pct == pytest.approx(100 * c["bytes_touched"] / c["median_s"] / 1e9 / 1000.0)
        assert r.h2d_s == c["load_s"] and c["load_kind"] == "host→GPU copy"
    assert {s["op"] for s in out["spans"]} == set(OPS)
    for chart in (times_chart(summary), speedup_chart(summary), sweep_chart(summary)):
        chart.to_dict()


def test_benchmark_flags_a_wrong_gpu_result_loudly():
    def broken_to_device(frame):
        frame = frame.copy()
        if "value" in frame:
            frame["value"] = frame["value"] + 1e-3
        return frame

    engines = make_engines(None) + [Engine("cudf", pd, on_gpu=True, to_device=broken_to_device)]
    out = run_benchmark([5_000], ["filter", "sort"], engines, repeats=1)
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✗").all()


def test_out_of_memory_on_one_engine_is_reported_and_the_run_goes_on():
    class Exploding:
        @staticmethod
        def merge(*a, **k):
            raise MemoryError("std::bad_alloc: out_of_memory: CUDA error")

    engines = make_engines(None) + [Engine("cudf", Exploding, on_gpu=True, to_device=lambda f: f.copy())]
    out = run_benchmark([5_000], ["join", "filter"], engines, repeats=1)
    assert (
        len(out["errors"]) == 1 and "out of memory" in out["errors"][0] and "fewer rows" in out["errors"][0]
    )
    assert {(r["op"], r["engine"]) for r in out["records"]} == {
        ("join", "pandas"),
        ("filter", "pandas"),
        ("filter", "cudf"),
    }


def test_out_of_memory_while_copying_a_result_back_is_reported_and_the_run_goes_on():
    """The copy back and the check run after the timer: a failure there is caught like one in the op."""
    calls = []

    def to_host(result):
        calls.append(len(result))
        if len(calls) == 1:
            raise MemoryError("std::bad_alloc: out_of_memory: CUDA error")
        return result

    engines = make_engines(None)[:1] + [pandas_as_gpu(to_host=to_host)]
    out = run_benchmark([5_000], ["filter", "sort"], engines, repeats=1)
    assert len(out["errors"]) == 1 and "cudf · filter" in out["errors"][0]
    assert "out of memory" in out["errors"][0]
    kept = {(r["op"], r["engine"]): r["match"] for r in out["records"]}
    assert kept == {("filter", "pandas"): None, ("sort", "pandas"): None, ("sort", "cudf"): True}


def test_pandas_only_run_has_no_speedups_but_full_timings():
    out = run_benchmark([3_000], list(OPS), make_engines(None), repeats=1)
    summary = summarize_records(out["records"])
    assert "speedup" not in summary and summary["pandas_median_s"].notna().all()
    times_chart(summary).to_dict()


def test_crossover_interpolates_on_log_axes():
    summary = pd.DataFrame(
        {"rows": [1_000, 10_000, 100_000], "op": ["sort"] * 3, "speedup": [0.1, 1.0, 10.0]}
    )
    assert crossover_rows(summary) == pytest.approx(10_000)
    summary["speedup"] = [0.1, 0.5, 2.0]
    assert 10_000 < crossover_rows(summary) < 100_000
    summary["speedup"] = [0.1, 0.2, 0.3]
    assert crossover_rows(summary) is None


def test_timeline_chart_builds_from_samples_and_spans():
    samples = pd.DataFrame(
        [
            {
                "t": t / 10,
                "gpu": 0,
                "util_pct": 50,
                "memory_used_gb": 1.0,
                "temp_c": 40,
                "power_w": 100.0,
                "sm_clock_mhz": 1500,
            }
            for t in range(20)
        ]
    )
    spans = pd.DataFrame([{"engine": "cudf", "op": "sort", "rows": 10, "start": 0.2, "end": 0.9}])
    timeline_chart(samples, spans).to_dict()


def test_no_gpu_means_pandas_only_with_a_reason():
    module, msg = detect_cudf(0)
    assert module is None and "No NVIDIA GPU" in msg
    assert detect_cudf(1, force_cpu=True)[0] is None


def test_cudf_missing_and_cudf_failing_to_import_are_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "cudf", None)  # behaves like "not installed"
    module, msg = detect_cudf(1)
    assert module is None and "not installed" in msg and "cudf-cu12" in msg and "GPU=1" in msg

    class BrokenCudf(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "cudf":
                raise OSError("libcudf.so: cannot open shared object file")
            return None

    monkeypatch.delitem(sys.modules, "cudf")
    monkeypatch.setattr(sys, "meta_path", [BrokenCudf(), *sys.meta_path])
    module, msg = detect_cudf(1)
    assert module is None and "failed to import" in msg and "libcudf.so" in msg

    class CudfWithoutItsDependency(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "cudf":
                raise ModuleNotFoundError("No module named 'pylibcudf'", name="pylibcudf")
            return None

    monkeypatch.setattr(sys, "meta_path", [CudfWithoutItsDependency(), *sys.meta_path[1:]])
    module, msg = detect_cudf(1)
    assert module is None and "needs `pylibcudf`" in msg and "not installed" not in msg


def test_gpu_lock_queues_a_second_viewer(tmp_path):
    path = str(tmp_path / "gpu.lock")
    order, waited = [], threading.Event()
    first_in = threading.Event()

    def first():
        with gpu_turn(path=path):
            order.append("first in")
            first_in.set()
            waited.wait(60)  # until the second viewer is queued (on a busy machine it may take a while)
            time.sleep(0.1)
            order.append("first out")

    def second():
        first_in.wait()
        with gpu_turn(on_wait=waited.set, path=path):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert waited.is_set()
    assert order == ["first in", "first out", "second in"]


def test_polars_engine_agrees_with_pandas_on_every_op_and_reports_honest_speedups():
    pl = pytest.importorskip("polars")
    engines = make_engines(None, pl) + [pandas_as_gpu()]
    out = run_benchmark([30_000], list(OPS), engines, repeats=1)
    assert not out["errors"]
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()
    assert {"polars_speedup", "speedup_vs_cpu", "fastest_cpu"} <= set(summary.columns)
    fastest = summary[["pandas_median_s", "polars_median_s"]].min(axis=1)
    assert (summary["speedup_vs_cpu"] == fastest / summary["cudf_median_s"]).all()
    assert "result check" in results_table(summary)
    assert {"Polars vs pandas", "cuDF vs fastest CPU engine"} <= set(speedup_table(summary).columns)
    speedup_chart(summary).to_dict()
    times_chart(summary).to_dict()


def test_polars_comparison_catches_wrong_values_and_order():
    pl = pytest.importorskip("polars")

    df, lookup = generate_data(20_000)
    pdf, plookup = pl.from_pandas(df), pl.from_pandas(lookup)
    grouped = polars_ops()["groupby_few"](pl, pdf, plookup)
    expected = get_op("groupby_few")(pd, df, lookup)
    assert results_match_polars(expected, grouped, "unordered")[0]
    wrong = grouped.with_columns(
        pl.when(pl.col("key_few") == 3).then(pl.col("value_mean") * 1.01).otherwise(pl.col("value_mean"))
    )
    ok, detail = results_match_polars(expected, wrong, "unordered")
    assert not ok and "value_mean" in detail
    ordered = polars_ops()["sort"](pl, pdf, plookup)
    assert results_match_polars(get_op("sort")(pd, df, lookup), ordered, "key:value")[0]
    assert not results_match_polars(get_op("sort")(pd, df, lookup), ordered.reverse(), "key:value")[0]
    joined = polars_ops()["join"](pl, pdf, plookup)
    assert not results_match_polars(get_op("join")(pd, df, lookup), joined.head(100), "unordered")[0]


def test_polars_gpu_engine_is_off_without_a_gpu():

    module, gpu, msg = detect_polars(None)
    assert module is not None and gpu is False and "CPU threads" in msg


def test_gpu_warmup_lasts_long_enough_for_the_clocks_to_rise():
    calls = []
    timing = time_operation(lambda: calls.append(time.sleep(0.01)), repeats=2, min_warmup_s=0.1)
    assert len(calls) >= 2 + 9  # the warm-up repeated for ≥ 0.1 s, then 2 timed calls
    assert len(timing.times) == 2


def test_host_memory_from_large_frames_is_released_after_a_run():
    """No frame outlives its run. Counted with tracemalloc (NumPy reports its buffers to it), not with RSS:
    the C allocator may keep freed pages and the engines keep their own pools, so RSS moves on a busy machine
    for reasons that are not ours."""
    import gc
    import tracemalloc

    run_benchmark([50_000], list(OPS), make_engines(None), repeats=1)  # imports and caches first
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = run_benchmark([4_000_000], list(OPS), make_engines(None), repeats=1)  # a 100 MB frame + results
        del out
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base > 100 * 2**20  # the frames were counted, so a kept one would show
    assert current - base < 8 * 2**20


def test_an_interrupted_run_gives_its_frames_back_before_the_error_is_shown():
    """The traceback of ■ / a closing session would keep the run's frames (GPU data) alive; they are cleared."""
    import gc
    import weakref

    held = []

    def running_op():
        frame_data = pd.DataFrame({"x": range(1000)})  # stands for a GPU frame held by the running op
        held.append(weakref.ref(frame_data))
        raise KeyboardInterrupt

    try:
        with frames_freed_on_interrupt():
            running_op()
    except KeyboardInterrupt as error:
        kept = error  # what marimo holds to show the error
        gc.collect()
        assert held[0]() is None and kept.__traceback__ is not None


def test_the_polars_gpu_engine_gets_no_categorical_columns_and_still_agrees_with_pandas():
    """cudf-polars 26.10 refuses Categorical (seen on an H100): the GPU engine's frame carries strings."""
    pl = pytest.importorskip("polars")

    df, lookup = generate_data(20_000)
    gdf, glookup = polars_frame_for_gpu(pl, df), polars_frame_for_gpu(pl, lookup)
    assert isinstance(pl.from_pandas(df).schema["category"], pl.Categorical)  # what the CPU engine keeps
    assert gdf.schema["category"] == pl.String
    assert not any(isinstance(t, (pl.Categorical, pl.Enum)) for t in gdf.schema.values())
    for name, fn in polars_ops("cpu").items():  # the same expressions the GPU engine runs
        ok, detail = results_match_polars(get_op(name)(pd, df, lookup), fn(pl, gdf, glookup), OP_ORDER[name])
        assert ok, (name, detail)


def test_polars_comparison_counts_equal_infinities_as_equal_and_others_as_different():
    pl = pytest.importorskip("polars")
    expected = pd.DataFrame({"value": [1.0, np.inf, -np.inf, np.nan]})
    assert results_match_polars(expected, pl.from_pandas(expected), "rows")[0]
    for wrong in ([1.0, -np.inf, -np.inf, np.nan], [1.0, np.inf, 5.0, np.nan], [1.0, np.inf, -np.inf, 0.0]):
        ok, detail = results_match_polars(expected, pl.from_pandas(pd.DataFrame({"value": wrong})), "rows")
        assert not ok and detail == "1 of 4 values differ in column 'value'"


def test_polars_comparison_takes_nan_for_missing_as_pandas_does_but_not_for_a_number():
    pl = pytest.importorskip("polars")
    expected = pd.DataFrame({"value": [1.0, np.nan, np.nan]})  # pandas cannot tell NaN from missing
    assert results_match_polars(expected, pl.DataFrame({"value": [1.0, float("nan"), None]}), "rows")[0]
    ok, detail = results_match_polars(expected, pl.DataFrame({"value": [1.0, 0.0, None]}), "rows")
    assert not ok and detail == "1 of 3 values differ in column 'value'"


def test_polars_comparison_catches_a_gap_out_of_place_in_a_sort_and_matches_nan_in_any_order():
    pl = pytest.importorskip("polars")
    expected = pd.DataFrame({"value": [1.0, 2.0, np.nan]})
    for wrong in ([None, 2.0, 1.0], [1.0, None, 2.0]):
        ok, detail = results_match_polars(expected, pl.DataFrame({"value": wrong}), "key:value")
        assert not ok and detail == "not sorted like pandas by value"
    assert results_match_polars(expected, pl.DataFrame({"value": [1.0, 2.0, None]}), "key:value")[0]
    # unordered: NaN and missing sort to the same place on both sides
    grouped = pd.DataFrame({"key": ["a", "a", "b"], "value": [np.nan, 1.0, 2.0]})
    actual = pl.DataFrame({"key": ["b", "a", "a"], "value": [2.0, 1.0, float("nan")]})
    assert results_match_polars(grouped, actual, "unordered")[0]
