"""Your own table on a GPU (issue 26; skipped without CUDA): cuDF and cudf.pandas on an uploaded 10M-row Parquet ✓."""

import csv

import numpy as np
import pandas as pd
import pytest

from gpu_notebooks.rapids_benchmark.cudf_pandas import run_cudf_pandas_engine
from gpu_notebooks.rapids_benchmark.duckdb_engine import detect_duckdb
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from gpu_notebooks.rapids_benchmark.user_data import SessionFolder, open_table, save_upload
from gpu_notebooks.rapids_benchmark.user_dataset import prepare_dataset
from gpu_notebooks.rapids_benchmark.user_ops import user_engines
from tests.gpu.conftest import CUDF, needs_cudf

pytestmark = [pytest.mark.gpu, needs_cudf]
ROWS = 10_000_000


def orders(n: int, seed: int = 7) -> pd.DataFrame:
    """An orders table: a text store (1,000), an integer customer (~1M), signed amounts, a few gaps."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "store": pd.Series(rng.integers(0, 1_000, n)).map("store {:04d}".format),
            "customer": rng.integers(0, 1_000_000, n),
            "amount": rng.normal(20, 80, n).round(2),
            "day": rng.integers(0, 365, n).astype(np.int16),
        }
    )
    df.loc[::1_009, "amount"] = np.nan
    return df


def engines_for(dataset):
    try:
        import polars
    except ImportError:
        polars = None
    duckdb, _ = detect_duckdb()
    engines, _ = user_engines(make_engines(CUDF, polars, False, duckdb), dataset.spec(), dataset.atol)
    return engines


def check(out, dataset):
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    cols = [c for c in summary.columns if c.endswith("_median_s")]
    print(summary[["rows", "op", *cols, "match", "detail"]].to_string())
    bad = summary[summary["match"] != "✓"]
    assert bad.empty, bad[["op", "detail"]].to_string()
    ran = {r["op"] for r in out["records"] if r["engine"] == "cudf"}
    assert ran == set(dataset.ops)  # cuDF ran every op, the read of the file and the pipeline included


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory):
    folder = SessionFolder(str(tmp_path_factory.mktemp("sessions")))
    frame = orders(ROWS)
    contents = frame.to_parquet(index=False)
    del frame
    table = save_upload(folder, "orders.parquet", contents)  # the upload path, cap included
    yield folder, table
    folder.delete()


def test_cudf_on_an_uploaded_parquet_matches_pandas_at_10m(uploaded):
    folder, table = uploaded
    dataset = prepare_dataset(table, {"value": "amount", "key": "store", "sort": "amount"}, 0.5, folder.path)
    assert dataset.rows == ROWS - len(range(0, ROWS, 1_009)) and dataset.group_op == "groupby_few"
    check(run_benchmark([dataset.rows], dataset.ops, engines_for(dataset), 3, dataset=dataset), dataset)


def test_cudf_with_many_integer_keys_and_a_sample_size_matches_pandas(uploaded):
    folder, table = uploaded
    dataset = prepare_dataset(
        table, {"value": "amount", "key": "customer", "sort": "store"}, 0.9, folder.path
    )
    assert dataset.group_op == "groupby_many" and dataset.sort_column == "sort_by"
    # 1M rows: a sample of the frame, and the reads from a sample file the app wrote in the session folder
    check(
        run_benchmark([1_000_000, dataset.rows], dataset.ops, engines_for(dataset), 2, dataset=dataset),
        dataset,
    )


def test_cudf_pandas_on_the_uploaded_table_matches_and_runs_on_the_gpu(uploaded):
    folder, table = uploaded
    dataset = prepare_dataset(table, {"value": "amount", "key": "store", "sort": "amount"}, 0.5, folder.path)
    out = run_cudf_pandas_engine([dataset.rows], dataset.ops, 2, accelerate=True, dataset=dataset)
    assert not out["errors"], out["errors"]
    bad = [(r["op"], r["detail"]) for r in out["records"] if r["match"] is not True]
    assert not bad, bad
    assert all(r["on_gpu"] for r in out["records"])  # the worker really ran under cudf.pandas


def test_cudf_reads_a_server_csv_with_gaps_and_text_and_matches(tmp_path):
    """The operator's `--data` path: a 2M-row CSV (over the upload cap) with empty fields and 'NA' text, every
    text field quoted (as R's write.csv does): a quoted empty field is missing for pandas, DuckDB and Polars."""
    frame = orders(2_000_000)
    frame["note"] = np.where(frame.index % 3 == 0, "NA", "")
    frame["region"] = np.where(frame.index % 4 == 0, "", "r" + (frame.index % 7).astype(str))
    path = tmp_path / "orders.csv"
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    folder = SessionFolder(str(tmp_path))
    table = open_table(str(path), "the table this server was started with")
    for roles in (
        {"value": "amount", "key": "customer", "sort": "day"},
        {"value": "amount", "key": "region", "sort": "store"},  # a text key with quoted empty fields
    ):
        dataset = prepare_dataset(table, roles, 0.25, folder.path)
        check(run_benchmark([dataset.rows], dataset.ops, engines_for(dataset), 2, dataset=dataset), dataset)
    folder.delete()
