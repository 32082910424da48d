"""The Dask engine's logic on CPU workers over pandas partitions (the GPU path is tests/gpu/test_rapids_multigpu.py)."""

import logging

import pandas as pd
import pytest

pytest.importorskip("distributed")

from gpu_notebooks.rapids_benchmark.checks import invariant_check
from gpu_notebooks.rapids_benchmark.dask_engine import dask_client, detect_dask, make_dask_engine
from gpu_notebooks.rapids_benchmark.data import generate_chunk, generate_data
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_sized_benchmark
from gpu_notebooks.rapids_benchmark.sizing import plan_run

logging.getLogger("distributed").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def client():
    return dask_client("cpu", n_workers=2)


def test_workers_make_exactly_the_host_data():
    df, _ = generate_data(123_457, seed=9)
    parts = pd.concat([generate_chunk(123_457, i, seed=9) for i in range(16)])
    pd.testing.assert_frame_equal(df, parts)


def test_cluster_is_started_once_per_process(client):
    assert dask_client("cpu") is client
    assert len(client.scheduler_info()["workers"]) == 2


def test_dask_engine_matches_pandas_on_every_op_with_data_made_on_the_workers(client):
    engine = make_dask_engine(client, gpu=False)
    frame, lookup = engine.load(50_000, 0, None, generate_data(10, 0)[1])
    assert frame.npartitions == 16
    where = client.who_has()
    assert len({w for ws in where.values() for w in ws}) == 2  # the partitions live on both workers
    out = run_sized_benchmark(
        {"sizes": [50_000], "ops": list(OPS), "repeats": 1, "rows": 50_000},
        make_engines(None) + [engine],
    )
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()


def test_sizes_beyond_one_gpu_run_on_dask_alone(client):
    engine = make_dask_engine(client, gpu=False)
    plan = plan_run(
        20_000,
        ["filter", "groupby_many"],
        1,
        True,
        25,
        free_gpu_bytes=10_000 * 25 * 6 / 0.85,
        free_host_bytes=None,
        all_gpus_free_bytes=10**12,
    )
    assert plan["rows"] == 20_000 and plan["single_engine_rows"] == 10_000
    assert "Dask-cuDF alone" in plan["cap_message"]
    out = run_sized_benchmark(plan, make_engines(None) + [engine])
    engines_at = {(r["rows"], r["engine"]) for r in out["records"]}
    assert (20_000, "dask") in engines_at and (20_000, "pandas") not in engines_at
    assert (10_000, "pandas") in engines_at and (10_000, "dask") in engines_at
    alone = [r for r in out["records"] if r["rows"] == 20_000]
    assert alone and all(r["match"] is True and r["detail"].startswith("self-check") for r in alone), alone


def test_without_a_reference_dask_results_are_self_checked_and_wrong_ones_caught(client):
    import dask.dataframe as dd

    engine = make_dask_engine(client, gpu=False)
    frame, lookup = engine.load(40_000, 3, None, generate_data(10, 3)[1])
    for op in OPS:
        result = get_op(op)(dd, frame, lookup).persist()
        ok, detail = invariant_check(op, frame, lookup, result)
        assert ok, (op, detail)
    sorted_ = frame.sort_values("value").persist()
    assert sorted_.npartitions > 2
    reversed_inside = sorted_.map_partitions(
        lambda p: p.iloc[::-1]
    )  # every row kept, each partition reversed
    assert not invariant_check("sort", frame, lookup, reversed_inside)[0]
    parts = [sorted_.partitions[i] for i in range(sorted_.npartitions)]
    swapped = dd.concat([parts[1], parts[0], *parts[2:]])  # every row kept, two partitions swapped
    ok, detail = invariant_check("sort", frame, lookup, swapped)
    assert not ok and "NOT in order" in detail
    dropped = get_op("filter")(dd, frame, lookup).partitions[1:]
    assert not invariant_check("filter", frame, lookup, dropped)[0]
    grouped = get_op("groupby_many")(dd, frame, lookup)
    assert not invariant_check("groupby_many", frame, lookup, grouped.partitions[:1].head(10, compute=False))[
        0
    ]


def test_self_checks_catch_wrong_values_that_keep_the_row_counts():

    df, lookup = generate_data(30_000, seed=5)
    right = {op: get_op(op)(pd, df, lookup) for op in OPS}
    assert all(invariant_check(op, df, lookup, right[op])[0] for op in OPS)
    filtered = right["filter"].copy()
    filtered.iloc[0, filtered.columns.get_loc("value")] += 1.0  # one value off, same rows
    assert not invariant_check("filter", df, lookup, filtered)[0]
    joined = right["join"].assign(price=0.0)  # the lookup's column lost
    assert not invariant_check("join", df, lookup, joined)[0]
    grouped = right["groupby_few"].copy()
    grouped[("value", "max")] = grouped[("value", "max")] * 0.5  # a wrong max
    assert not invariant_check("groupby_few", df, lookup, grouped)[0]
    grouped = right["groupby_few"].copy()
    grouped[("value", "mean")] = grouped[("value", "mean")] + 0.1  # means that do not match the sums
    assert not invariant_check("groupby_few", df, lookup, grouped)[0]
    sorted_ = right["sort"].copy()
    sorted_["value"] = sorted_["value"].iloc[0]  # in order, but the values are gone
    assert not invariant_check("sort", df, lookup, sorted_)[0]


def test_dask_engine_is_explained_and_off_with_one_gpu():
    ok, msg = detect_dask(1)
    assert not ok and "has 1" in msg


def test_a_large_dask_sort_is_announced_as_slow_before_it_runs():
    common = dict(bytes_per_row=25, free_gpu_bytes=10**11, free_host_bytes=None, all_gpus_free_bytes=10**12)
    slow = plan_run(1_000_000_000, ["filter", "sort"], 3, False, **common)
    assert "will take minutes" in slow["cap_message"] and "4 times" in slow["cap_message"]
    assert "will take minutes" not in (
        plan_run(1_000_000_000, ["filter"], 3, False, **common)["cap_message"] or ""
    )
    assert "will take minutes" not in (
        plan_run(100_000_000, ["sort"], 3, False, **common)["cap_message"] or ""
    )
