"""Reading is an operation: the Parquet/CSV cache, the read ops, the pipeline and DuckDB (CPU; cuDF's API via pandas)."""

import os
import threading
from collections import namedtuple

import pandas as pd
import pytest

import gpu_notebooks.rapids_benchmark.files as files
from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.rapids_benchmark.data import generate_data
from gpu_notebooks.rapids_benchmark.duckdb_engine import duckdb_file_sql
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.explain.results import pipeline_text
from gpu_notebooks.rapids_benchmark.files import (
    clear_data_cache,
    clear_data_cache_when_idle,
    data_cache_bytes,
    data_files,
)
from gpu_notebooks.rapids_benchmark.ops import ALL_OPS, FILE_OPS, pandas_api_file_ops, pipeline_pandas_api
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_benchmark

pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test writes its data files into its own folder."""
    monkeypatch.setattr(files, "data_cache_dir", lambda: str(tmp_path))
    return tmp_path


def cudf_standin():
    """cuDF's code path (the pandas API, file reads included) with pandas standing in for the GPU library."""
    return Engine(
        "cudf",
        pd,
        on_gpu=True,
        to_device=lambda f: f.copy(),
        load_kind="host→GPU copy",
        file_ops=pandas_api_file_ops(pd),
    )


def test_every_read_op_and_the_pipeline_agree_across_pandas_polars_duckdb_and_the_cudf_path():
    engines = make_engines(None, pl, False, duckdb) + [cudf_standin()]
    out = run_benchmark([20_000], list(FILE_OPS), engines, 1)
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    assert set(summary["op"]) == set(FILE_OPS)
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()
    engines_checked = {(r["op"], r["engine"]) for r in out["records"] if r["checked_by"] == "pandas"}
    assert engines_checked == {(op, e) for op in FILE_OPS for e in ("polars", "duckdb", "cudf")}
    pipeline = next(r for r in out["records"] if r["op"] == "pipeline" and r["engine"] == "pandas")
    assert pipeline["rows_out"] == 7 * 8  # regions × categories: the small answer
    text = pipeline_text(summary)
    assert text.startswith("**The whole job first**") and "agree across engines ✓" in text


def test_duckdb_is_a_cpu_engine_that_can_be_the_fastest(monkeypatch):
    engines = make_engines(None, pl, False, duckdb)
    out = run_benchmark([5_000], ["groupby_few"], engines, 1)
    summary = summarize_records(out["records"])
    assert summary["match"].eq("✓").all()
    medians = {e: summary[f"{e}_median_s"].iloc[0] for e in ("pandas", "polars", "duckdb")}
    assert summary["fastest_cpu"].iloc[0] == min(medians, key=medians.get)


def test_the_files_are_written_once_per_size(private_cache):
    df, _ = generate_data(5_000)
    files, why = data_files(5_000, 0, df)
    assert why is None and all(os.path.getsize(p) > 0 for p in files.values())
    stamps = {k: os.stat(p).st_mtime_ns for k, p in files.items()}
    again, _ = data_files(5_000, 0, df)
    assert again == files and {k: os.stat(p).st_mtime_ns for k, p in files.items()} == stamps
    assert sorted(os.listdir(private_cache)) == ["data_5000_0.csv", "data_5000_0.parquet"]  # no temp left
    assert data_cache_bytes() == sum(os.path.getsize(p) for p in files.values())
    assert clear_data_cache() > 0 and os.listdir(private_cache) == []


def test_delete_keeps_the_files_while_a_run_holds_the_lease_and_says_so(private_cache):
    """Any viewer can press Delete: another viewer's run may be reading those files at that moment."""
    df, _ = generate_data(2_000)
    files, _ = data_files(2_000, 0, df)
    held, done = threading.Event(), threading.Event()

    def other_viewers_run():  # another session: another thread of the server
        with gpu_turn():
            held.set()
            done.wait(60)

    other = threading.Thread(target=other_viewers_run)
    other.start()
    assert held.wait(60)
    text = clear_data_cache_when_idle()
    done.set()
    other.join(60)
    assert "may be reading the cached data files now, so they were kept" in text
    assert all(os.path.exists(p) for p in files.values())
    assert clear_data_cache_when_idle().startswith("_Deleted ") and os.listdir(private_cache) == []


def test_the_cache_is_capped_by_free_disk_with_a_message(monkeypatch):
    import shutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1_000))
    out = run_benchmark([5_000], ["read_parquet", "filter"], make_engines(None), 1)
    assert [r["op"] for r in out["records"]] == ["filter"]  # the in-memory op still runs
    assert len(out["errors"]) == 1 and "File operations skipped at 5K rows" in out["errors"][0]
    assert "disk" in out["errors"][0]


@pytest.mark.parametrize("kind, op", [("parquet", "read_parquet"), ("csv", "read_csv")])
def test_a_truncated_file_gives_a_clear_message_and_the_other_engines_and_ops_still_run(
    kind, op, private_cache
):
    df, _ = generate_data(20_000)
    files, _ = data_files(20_000, 0, df)
    with open(files[kind], "r+b") as handle:  # cut the file in the middle of a row / a page
        handle.truncate(os.path.getsize(files[kind]) // 2 + 7)
    engines = make_engines(None, pl, False, duckdb)
    out = run_benchmark([20_000], [op, "filter"], engines, 1)
    ran = {(r["op"], r["engine"]) for r in out["records"]}
    assert {("filter", e.name) for e in engines} <= ran  # every engine still runs the other op
    failed = [e for e in out["errors"] if f"· {op} ·" in e]
    for message in failed:
        assert ":" in message.split("rows: ", 1)[1]  # "<engine> · <op> · 20K rows: <Error>: <what>"
    # A reader that did not fail (CSV cut at a row boundary reads fewer rows) is compared, never trusted.
    for r in out["records"]:
        if r["op"] == op and r["engine"] != "pandas" and r["match"] is not None:
            assert r["checked_by"] == "pandas"
    assert any(e.startswith(f"pandas · {op} · 20K rows: ") for e in failed)  # ArrowInvalid / ParserError
    if kind == "parquet":  # no reader takes a Parquet file without its footer
        assert len(failed) == len(engines)


def test_the_pipeline_is_one_job_per_library_written_before_it_was_measured():
    """The same five steps in every library: filter value > 10, inner join, revenue, region × category, sort."""
    sql = duckdb_file_sql({"parquet": "/x.parquet", "csv": "/x.csv"})["pipeline"]
    for step in (
        "value > 10.0",
        "JOIN lookup USING (key_many)",
        "GROUP BY region, category",
        "ORDER BY revenue DESC",
    ):
        assert step in sql
    assert "value > 10" in pipeline_pandas_api.__doc__
    assert "pipeline" in ALL_OPS and list(ALL_OPS)[0] == "pipeline"  # shown first


def test_a_path_with_a_quote_cannot_break_out_of_duckdbs_sql():
    sql = duckdb_file_sql({"parquet": "/tmp/a'b.parquet", "csv": "/tmp/a'b.csv"})
    assert "read_parquet('/tmp/a''b.parquet')" in sql["read_parquet"]


def test_a_bug_in_a_file_ops_check_raises_and_never_reads_as_an_unreadable_file(private_cache, monkeypatch):
    """Only the read itself may fail as bad input (OSError, ValueError, RuntimeError); the same error types from
    the copy back or the check are a bug (on a GPU, a CUDA fault arrives as a RuntimeError)."""
    import gpu_notebooks.rapids_benchmark.runner as runner

    def broken_check(*args, **kwargs):
        raise ValueError("a bug in the result check")

    monkeypatch.setattr(runner, "finish_record", broken_check)
    with pytest.raises(ValueError, match="a bug in the result check"):
        run_benchmark([5_000], ["read_parquet"], make_engines(None), 1)
