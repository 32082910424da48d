"""The real cuDF path on a GPU (skipped without CUDA): every op matches pandas and beats it at 10M rows."""

import pytest

from rapids_benchmark_dashboard import (
    OPS,
    cap_rows,
    detect_cudf,
    estimate_bytes_per_row,
    make_engines,
    read_gpu_status,
    run_benchmark,
    summarize_records,
)

GPUS = read_gpu_status()
CUDF, WHY = detect_cudf(len(GPUS)) if GPUS else (None, "no GPU")
pytestmark = pytest.mark.skipif(CUDF is None, reason=f"needs cuDF on a GPU: {WHY}")


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


def test_500m_rows_fit_or_are_capped_on_this_card():
    rows, msg = cap_rows(500_000_000, estimate_bytes_per_row(), GPUS[0]["memory_free_bytes"], None)
    assert rows == 500_000_000 or (rows < 500_000_000 and "capped" in msg)


def test_out_of_memory_in_cudf_is_caught_and_memory_returns():
    import cupy

    free_before = cupy.cuda.runtime.memGetInfo()[0]
    too_big = int(free_before * 2 // 8)  # twice the free memory, as float64 values
    with pytest.raises(MemoryError):
        CUDF.Series(cupy.zeros(too_big))
    import gc

    gc.collect()
    assert cupy.cuda.runtime.memGetInfo()[0] >= free_before * 0.95
