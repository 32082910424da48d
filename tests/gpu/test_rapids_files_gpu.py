"""cuDF's file ops and the pipeline on a GPU (skipped without CUDA): ✓ against pandas and faster at 10M rows."""

import pytest

from gpu_notebooks.rapids_benchmark.duckdb_engine import detect_duckdb
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.ops import FILE_OPS
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.roofline import copy_bandwidth_probe
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from tests.gpu.conftest import CUDF, needs_cudf

pytestmark = [pytest.mark.gpu, needs_cudf]


@pytest.fixture(scope="module")
def summary_10m():
    try:
        import polars
    except ImportError:
        polars = None
    duckdb, _ = detect_duckdb()
    out = run_benchmark([10_000_000], list(FILE_OPS), make_engines(CUDF, polars, False, duckdb), repeats=3)
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    cols = [c for c in summary.columns if c.endswith("_median_s")]
    print(summary[["op", *cols, "speedup", "match"]].to_string())
    return summary


def test_cudf_reads_and_the_pipeline_match_pandas_at_10m(summary_10m):
    bad = summary_10m[summary_10m["match"] != "✓"]
    assert bad.empty, bad[["op", "detail"]].to_string()


def test_cudf_reads_and_the_pipeline_are_faster_than_pandas_at_10m(summary_10m):
    slow = summary_10m[summary_10m["speedup"] <= 1.0]
    assert slow.empty, slow[["op", "pandas_median_s", "cudf_median_s"]].to_string()


def test_the_copy_probe_measures_pinned_faster_than_pageable():
    probe = copy_bandwidth_probe()
    print(probe)
    assert probe["pageable_gbs"] > 0.5 and probe["pinned_gbs"] > probe["pageable_gbs"]
