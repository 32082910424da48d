"""The benchmarked operations, written once against the pandas API, and the bytes each touches."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

# The five operations, in the order they run. Each is one function that receives the library.
OPS = {
    "filter": "Filter: keep rows where value > 50 and key_few < 50",
    "groupby_few": "Group by 100 keys: sum, mean, max, std, count",
    "groupby_many": "Group by 100k keys: sum and count",
    "join": "Inner join with a 50k-row lookup table",
    "sort": "Sort all rows by a float column",
}
# Operations that start from a file (written once per size, not timed) and the whole-job pipeline.
FILE_OPS = {
    "read_parquet": "Read the data from a Parquet file (snappy)",
    "read_csv": "Read the data from a CSV file",
    "pipeline": "Pipeline: read Parquet → filter → join → group by → sort → small result in pandas",
}
# Every op the app offers, in the order they run and are shown: the whole job first, then the reads.
ALL_OPS = {
    "pipeline": FILE_OPS["pipeline"],
    "read_parquet": FILE_OPS["read_parquet"],
    "read_csv": FILE_OPS["read_csv"],
    **OPS,
}
# What the intro calls each op, in a few words (same keys as ALL_OPS).
OP_SHORT_NAMES = {
    "pipeline": "the whole job as one pipeline (read Parquet → filter → join → group by → sort)",
    "read_parquet": "read Parquet",
    "read_csv": "read CSV",
    "filter": "filter",
    "groupby_few": "group by 100 keys",
    "groupby_many": "group by 100k keys",
    "join": "join",
    "sort": "sort",
}


def op_filter(xdf, df, lookup):
    """Boolean mask on two columns; the output keeps the input's row order."""
    return df[(df["value"] > 50.0) & (df["key_few"] < 50)]


def op_groupby_few(xdf, df, lookup):
    """Group by a 100-value key with several aggregations."""
    # The dict-of-lists form rather than named aggregation: dask-cudf 26.10 rejects named aggregation.
    # Columns come back as ('value', 'sum') pairs; results_match names them value_sum outside the timer,
    # since renaming costs cuDF ~1 ms of Python — half of this op's GPU time at 10M rows.
    return df.groupby("key_few", sort=False).agg(
        {"value": ["sum", "mean", "max", "count"], "value2": ["std"]}
    )


def op_groupby_many(xdf, df, lookup):
    """Group by a 100k-value key: many small groups, so hashing dominates."""
    return df.groupby("key_many", sort=False).agg({"value": ["sum", "count"]})


def op_join(xdf, df, lookup):
    """Inner hash join with the lookup table (the library's own merge)."""
    return xdf.merge(df, lookup, on="key_many", how="inner")


def op_sort(xdf, df, lookup):
    """Sort every row by a float column."""
    return df.sort_values("value")


def get_op(name: str) -> Callable:
    """The op function for a name in OPS."""
    return {
        "filter": op_filter,
        "groupby_few": op_groupby_few,
        "groupby_many": op_groupby_many,
        "join": op_join,
        "sort": op_sort,
    }[name]


def pipeline_pandas_api(xdf, files: dict, lookup):
    """The pipeline in the pandas API (pandas and cuDF run this same code); the small result ends in pandas.

    The job, fixed before it was measured: a typical analytics query over a fact table — load it from
    Parquet, keep the rows of interest (value > 10), enrich them from a dimension table (the lookup:
    price and region), derive a measure (revenue = value × price), aggregate by two dimensions (region ×
    category: rows, revenue, mean value), rank by revenue, and hand the 56-row answer to the caller.
    """
    df = xdf.read_parquet(files["parquet"])
    df = df[df["value"] > 10.0]
    joined = df.merge(lookup, on="key_many", how="inner")
    joined["revenue"] = joined["value"] * joined["price"]
    out = (
        joined.groupby(["region", "category"])
        .agg(rows=("value", "count"), revenue=("revenue", "sum"), mean_value=("value", "mean"))
        .reset_index()
        .sort_values("revenue", ascending=False)
    )
    return out if isinstance(out, pd.DataFrame) else out.to_pandas()


def pandas_api_file_ops(xdf) -> dict:
    """read_parquet, read_csv and the pipeline for pandas (pyarrow engine) or cuDF (decoded on the GPU)."""
    is_pandas = xdf is pd

    def read_parquet(xdf, files, lookup):
        return (
            pd.read_parquet(files["parquet"], engine="pyarrow")
            if is_pandas
            else xdf.read_parquet(files["parquet"])
        )

    def read_csv(xdf, files, lookup):
        return pd.read_csv(files["csv"], engine="pyarrow") if is_pandas else xdf.read_csv(files["csv"])

    return {"read_parquet": read_parquet, "read_csv": read_csv, "pipeline": pipeline_pandas_api}


def columns_read(op: str) -> list[str]:
    """Input columns an op must read at least once."""
    return {
        "filter": ["key_few", "key_many", "value", "value2", "category"],
        "groupby_few": ["key_few", "value", "value2"],
        "groupby_many": ["key_many", "value"],
        "join": ["key_few", "key_many", "value", "value2", "category"],
        "sort": ["key_few", "key_many", "value", "value2", "category"],
    }[op]


def frame_nbytes(frame, index: bool = True) -> int:
    """Bytes of a pandas, cuDF, Polars or Arrow (DuckDB's results) frame's columns (and index, where there is one)."""
    if hasattr(frame, "estimated_size"):
        return int(frame.estimated_size())
    if hasattr(frame, "schema") and hasattr(frame, "nbytes"):  # a pyarrow Table
        return int(frame.nbytes)
    if hasattr(frame, "to_delayed"):  # Dask: measure every partition where it lives, then add up
        import dask

        return int(sum(dask.compute(*[dask.delayed(partition_nbytes)(p, index) for p in frame.to_delayed()])))
    return partition_nbytes(frame, index)


def partition_nbytes(frame, index: bool = True) -> int:
    """Bytes of one pandas or cuDF frame, column by column.

    Column by column because cuDF's DataFrame.memory_usage fails on the two-level column names the
    group-bys return (value, sum), while every Series and Index measures itself fine.
    """
    total = sum(int(frame.iloc[:, i].memory_usage(index=False, deep=False)) for i in range(frame.shape[1]))
    return total + (int(frame.index.memory_usage(deep=False)) if index else 0)


def bytes_touched(op: str, df, result, columns: list[str] | None = None) -> int:
    """The byte model: bytes an op must at least move through GPU memory, for its achieved bandwidth.

    filter, group-bys, join, sort: the input columns the op reads (columns_read), once, plus the result it
    writes, once. Reads (read_parquet, read_csv) and the pipeline: the frame they return, written once (the
    file's bytes cross the disk and PCIe, not counted). Real ops move more (several passes, scratch, gathers
    in random order), so the achieved bandwidth is a lower bound. `columns` replaces columns_read(op) (your own
    table's).
    """
    if op in FILE_OPS:
        return frame_nbytes(result)
    return frame_nbytes(df[columns or columns_read(op)], index=False) + frame_nbytes(result)
