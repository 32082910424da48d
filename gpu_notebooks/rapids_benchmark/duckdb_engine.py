"""DuckDB on all CPU cores: the ops as SQL over the pandas frames and the files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from gpu_notebooks.rapids_benchmark.checks import results_match_polars
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.ops import FILE_OPS


def duckdb_file_sql(files: dict) -> dict:
    """The file ops in DuckDB's SQL (its own Parquet and CSV readers); paths are the app's, quoted."""
    parquet, csv = (files[k].replace("'", "''") for k in ("parquet", "csv"))
    return {
        "read_parquet": f"SELECT * FROM read_parquet('{parquet}')",
        "read_csv": f"SELECT * FROM read_csv('{csv}')",
        "pipeline": "SELECT region, category, count(value) AS rows, sum(value * price) AS revenue, "
        f"avg(value) AS mean_value FROM read_parquet('{parquet}') JOIN lookup USING (key_many) "
        "WHERE value > 10.0 GROUP BY region, category ORDER BY revenue DESC",
    }


def detect_duckdb():
    """DuckDB's module (or None) and a sentence for the user."""
    try:
        import duckdb
    except ImportError:
        return None, "DuckDB is not installed: it is in `requirements.txt` (`make install` adds it)."
    return duckdb, f"DuckDB {duckdb.__version__} runs SQL on all {os.cpu_count()} CPU threads."


def duckdb_sql() -> dict:
    """The five ops in DuckDB's SQL, over the views `df` and `lookup`; column names as results_match expects."""
    return {
        "filter": "SELECT * FROM df WHERE value > 50.0 AND key_few < 50",
        "groupby_few": "SELECT key_few, sum(value) AS value_sum, avg(value) AS value_mean, max(value) AS value_max, "
        "count(value) AS value_count, stddev_samp(value2) AS value2_std FROM df GROUP BY key_few",
        "groupby_many": "SELECT key_many, sum(value) AS value_sum, count(value) AS value_count FROM df GROUP BY key_many",
        "join": "SELECT * FROM df JOIN lookup USING (key_many)",
        "sort": "SELECT * FROM df ORDER BY value",
    }


def make_duckdb_engine(
    duckdb,
    sql: dict | None = None,
    file_sql: Callable[[dict], dict] | None = None,
    file_op_names: Iterable[str] = tuple(FILE_OPS),
) -> Engine:
    """DuckDB on all cores: each op registers the pandas frames as views (no copy) and fetches an Arrow table.

    One connection per engine, so each run (each viewer) queries on its own. The filter's row order holds
    because DuckDB keeps insertion order by default (`preserve_insertion_order`). `sql`, `file_sql` and
    `file_op_names` replace the generated data's queries (your own table's: user_ops.py).
    """
    con = duckdb.connect()
    sql = duckdb_sql() if sql is None else sql
    file_sql = file_sql or duckdb_file_sql

    def op(sql):
        def run(_duckdb, frame, lookup):
            con.register("df", frame)
            con.register("lookup", lookup)
            rel = con.sql(sql)
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()

        return run

    def file_op(name):
        def run(_duckdb, files, lookup):
            con.register("lookup", lookup)
            rel = con.sql(file_sql(files)[name])
            if name == "pipeline":  # the job's small answer ends in pandas, as for every engine
                return rel.df()
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()

        return run

    def compare(expected, result, order):
        import polars as pl

        return results_match_polars(expected, pl.from_arrow(result), order)

    return Engine(
        "duckdb",
        duckdb,
        on_gpu=False,
        ops={name: op(query) for name, query in sql.items()},
        compare=compare,
        slice_warmup=True,
        file_ops={name: file_op(name) for name in file_op_names},
    )
