"""The real cuDF path on a GPU (skipped without CUDA): every op matches pandas and beats it at 10M rows."""

import pytest

from gpu_notebooks.gpu.datasheets import memory_kind
from gpu_notebooks.gpu.nvml import read_gpu_status
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.explain.gpu import explain_metrics, explain_why_gpu
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.polars_engine import polars_gpu_engine
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from gpu_notebooks.rapids_benchmark.sizing import GPU_WORKING_FACTOR, MEMORY_HEADROOM, cap_rows
from tests.gpu.conftest import CUDF, GPUS, needs_cudf

pytestmark = [pytest.mark.gpu, needs_cudf]


@pytest.fixture(scope="module")
def summary_10m():
    out = run_benchmark([10_000_000], list(OPS), make_engines(CUDF), repeats=3)
    assert not out["errors"], out["errors"]
    return summarize_records(out["records"], GPUS[0]["peak_bandwidth_gbs"])


def test_every_cudf_result_matches_pandas_at_10m(summary_10m):
    bad = summary_10m[summary_10m["match"] != "✓"]
    assert bad.empty, bad[["op", "detail"]].to_string()


def test_cudf_is_faster_than_pandas_on_every_op_at_10m(summary_10m):
    print(summary_10m[["op", "pandas_median_s", "cudf_median_s", "speedup", "speedup_e2e", "bandwidth_pct"]])
    slow = summary_10m[summary_10m["speedup"] <= 1.0]
    assert slow.empty, slow[["op", "pandas_median_s", "cudf_median_s"]].to_string()


def test_nvml_reports_the_card_and_its_peak_bandwidth():
    g = GPUS[0]
    assert g["memory_total_gb"] > 10 and g["peak_bandwidth_gbs"] and g["peak_bandwidth_gbs"] > 500
    assert g["util_pct"] is not None and g["power_w"] is not None


def test_nvml_gives_the_cards_own_slowdown_threshold_compute_capability_and_memory_kind():

    g = GPUS[0]
    print(g["name"], g["temp_slowdown_c"], g["compute_capability"], memory_kind(g["name"]))
    assert g["compute_capability"] and g["compute_capability"] >= (7, 0)
    assert g["temp_slowdown_c"] is None or 60 <= g["temp_slowdown_c"] <= 110
    assert "85 °C" not in explain_metrics(GPUS, None)
    if "H200" in g["name"]:
        assert memory_kind(g["name"]) == "HBM3e" and "HBM3e" in explain_why_gpu(GPUS, {"cpu_count": 1}, None)


def test_the_gpu_working_factor_covers_the_measured_peak_at_10m():
    """The cap's GPU factor must exceed what a real run takes: NVML's peak above the baseline, per row."""
    import gc

    gc.collect()
    base = read_gpu_status()[0]["memory_used_gb"]
    sampler = GpuSampler(0.02)
    sampler.start()
    out = run_benchmark([10_000_000], list(OPS), make_engines(CUDF), repeats=1)
    sampler.stop()
    assert not out["errors"], out["errors"]
    per_row = (sampler.peak_memory_gb() - base) * 1e9 / 10_000_000
    print(f"peak GPU {per_row:.0f} B/row vs cap {GPU_WORKING_FACTOR * estimate_bytes_per_row():.0f} B/row")
    assert per_row <= GPU_WORKING_FACTOR * estimate_bytes_per_row()


def test_a_capped_size_is_within_what_the_card_has_free():
    free = GPUS[0]["memory_free_bytes"]
    bpr = estimate_bytes_per_row()
    rows, msg = cap_rows(10**10, bpr, free, None)

    assert msg and rows * bpr * GPU_WORKING_FACTOR <= free * MEMORY_HEADROOM


def test_the_apps_handling_of_a_gpu_out_of_memory_reports_it_and_gives_the_memory_back():
    """An op that asks for twice the free GPU memory: run_benchmark reports it, runs the next op, frees it."""
    import gc

    import cupy

    free_before = cupy.cuda.runtime.memGetInfo()[0]

    def too_big(xdf, df, lookup):
        return CUDF.Series(cupy.zeros(int(free_before * 2 // 8)))

    real = make_engines(CUDF)[1]
    greedy = Engine(
        "cudf",
        CUDF,
        on_gpu=True,
        to_device=real.to_device,
        to_host=real.to_host,
        sync=real.sync,
        ops={"filter": too_big, "sort": get_op("sort")},
        load_kind=real.load_kind,
    )
    out = run_benchmark([1_000_000], ["filter", "sort"], [make_engines(CUDF)[0], greedy], repeats=1)
    assert len(out["errors"]) == 1 and "out of memory" in out["errors"][0], out["errors"]
    assert any(r["engine"] == "cudf" and r["op"] == "sort" and r["match"] for r in out["records"])
    del out
    gc.collect()
    assert cupy.cuda.runtime.memGetInfo()[0] >= free_before * 0.95


def test_the_polars_gpu_engine_really_runs_on_the_gpu():
    """raise_on_fail: a query the GPU engine cannot run raises instead of falling back to the CPU."""
    pl = pytest.importorskip("polars")
    pytest.importorskip("cudf_polars")

    engine = polars_gpu_engine(pl)
    assert engine.config["executor"] == "in-memory"
    got = pl.LazyFrame({"a": [1, 2, 3]}).select(pl.col("a").sum()).collect(engine=engine)
    assert got.item() == 6
