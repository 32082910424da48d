"""cudf.pandas really accelerates the app's pandas ops (skipped without cuDF on a GPU): profiler GPU path, ✓ at 10M."""

import pytest

from gpu_notebooks.rapids_benchmark.cudf_pandas import (
    FALLBACK_STEP,
    fallback_table,
    run_cudf_pandas_engine,
    run_user_snippet,
)
from gpu_notebooks.rapids_benchmark.ops import OPS
from tests.gpu.conftest import needs_cudf

pytestmark = [pytest.mark.gpu, needs_cudf]


@pytest.fixture(scope="module")
def run_10m():
    out = run_cudf_pandas_engine([10_000_000], list(OPS), 3, accelerate=True)
    assert not out["errors"], out["errors"]
    for r in out["records"]:
        print(r["op"], f"{r['median_s'] * 1e3:.1f} ms", r["match"], r["detail"])
    print(fallback_table(out["profiles"]).to_string())
    return out


def test_cudf_pandas_matches_pandas_on_every_op_at_10m(run_10m):
    bad = [(r["op"], r["detail"]) for r in run_10m["records"] if r["match"] is not True]
    assert not bad, bad
    assert all(r["on_gpu"] for r in run_10m["records"])  # the worker really ran under cudf.pandas


def test_the_profiler_saw_the_gpu_path_on_every_app_op(run_10m):
    for op in OPS:
        rows = [p for p in run_10m["profiles"] if p["op"] == op]
        assert sum(p.get("gpu_calls", 0) for p in rows) > 0, (op, rows)


def test_the_fallback_step_is_reported(run_10m):
    rows = [p for p in run_10m["profiles"] if p["op"] == FALLBACK_STEP]
    print(FALLBACK_STEP, rows)
    assert rows  # whether it fell back is what bench/cudf_pandas_fallbacks.py measures


def test_a_snippet_runs_under_cudf_pandas_and_matches():
    out = run_user_snippet("df.groupby('key_few')['value'].mean()", 1_000_000, accelerate=True)
    assert "error" not in out, out
    assert out["match"][0], out["match"]
    assert out["runs"]["cudf.pandas"]["accelerated"] is True
