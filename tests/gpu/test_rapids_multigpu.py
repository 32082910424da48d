"""Dask-cuDF over every GPU of the machine (skipped with fewer than two GPUs or without dask-cuda)."""

import logging

import pytest

from gpu_notebooks.rapids_benchmark.checks import invariant_check
from gpu_notebooks.rapids_benchmark.dask_engine import dask_client, detect_dask, make_dask_engine
from gpu_notebooks.rapids_benchmark.data import generate_lookup
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_sized_benchmark
from tests.gpu.conftest import CUDF, GPUS

DASK_OK, WHY = detect_dask(len(GPUS) if CUDF else 0)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not DASK_OK, reason=WHY)]
logging.getLogger("distributed").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def client():
    return dask_client("gpu")


def test_one_worker_per_gpu_started_once(client):
    assert len(client.scheduler_info()["workers"]) == len(GPUS)
    assert dask_client("gpu") is client


def test_dask_cudf_matches_single_gpu_cudf_on_every_op(client):
    # pandas stays in: it is the reference every engine's result is checked against (✓/✗)
    engines = [e for e in make_engines(CUDF) if e.name in ("pandas", "cudf")] + [make_dask_engine(client)]
    out = run_sized_benchmark(
        {"sizes": [10_000_000], "ops": list(OPS), "repeats": 2, "rows": 10_000_000}, engines
    )
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    print(summary[["op", "cudf_median_s", "dask_cudf_median_s", "dask_vs_cudf", "match"]])
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()


def test_partitions_are_spread_over_every_gpu(client):
    engine = make_dask_engine(client)
    frame, _ = engine.load(20_000_000, 0, None, make_engines.__globals__["generate_lookup"](0))
    holders = {w for ws in client.who_has(frame).values() for w in ws}
    assert len(holders) == len(GPUS)


def test_self_checks_pass_on_dask_cudf_results_and_catch_a_wrong_order(client):
    """The checks used where no reference fits (1B rows) run on GPU partitions, for every op."""
    import dask.dataframe as dd

    engine = make_dask_engine(client)
    frame, lookup = engine.load(2_000_000, 1, None, generate_lookup(1))
    for op in OPS:
        ok, detail = invariant_check(op, frame, lookup, get_op(op)(dd, frame, lookup).persist())
        print(op, detail)
        assert ok, (op, detail)
    sorted_ = get_op("sort")(dd, frame, lookup).persist()
    parts = [sorted_.partitions[i] for i in range(sorted_.npartitions)]
    assert not invariant_check("sort", frame, lookup, dd.concat([parts[1], parts[0], *parts[2:]]))[0]
