"""The ops on your own table, per engine: the pandas API (pandas, cuDF, cudf.pandas), Polars and DuckDB's SQL.

They mirror ops.py, polars_engine.py and duckdb_engine.py with your roles in place of the generated columns:
filter on value > the chosen quantile, one group-by on your key, the join with a lookup of every other
distinct key, the sort on your sort column, the read of your file, and the pipeline. `spec` is
UserDataset.spec(): plain values, so the cudf.pandas worker rebuilds the same functions from JSON.
"""

from __future__ import annotations

import dataclasses
import functools

import pandas as pd

from gpu_notebooks.rapids_benchmark.checks import results_match, results_match_polars
from gpu_notebooks.rapids_benchmark.duckdb_engine import make_duckdb_engine
from gpu_notebooks.rapids_benchmark.polars_engine import polars_gpu_engine

SQL_TYPES = {"float64": "DOUBLE", "int64": "BIGINT", "str": "VARCHAR"}
# pandas and cuDF read "NA", "null", "nan" ... as missing by default; Polars and DuckDB only an empty field.
CSV_MISSING = {"keep_default_na": False, "na_values": [""]}


def pandas_user_ops(spec: dict) -> dict:
    """filter, the group-by, join and sort in the pandas API: pandas, cuDF and cudf.pandas run these."""
    threshold, sort_column = spec["threshold"], spec["sort_column"]

    def filter_(xdf, df, lookup):
        return df[df["value"] > threshold]

    def groupby(xdf, df, lookup):
        return df.groupby("key", sort=False).agg({"value": ["sum", "mean", "max", "count"]})

    def join(xdf, df, lookup):
        return xdf.merge(df, lookup, on="key", how="inner")

    def sort(xdf, df, lookup):
        return df.sort_values(sort_column)

    return {"filter": filter_, spec["group_op"]: groupby, "join": join, "sort": sort}


def pandas_read(xdf, path: str, spec: dict, columns: list[str]):
    """Read the role columns of the file in pandas (pyarrow engine) or cuDF, renamed to the frame's names."""
    types = {c: spec["types"][c] for c in columns}
    if spec["kind"] == "parquet":
        frame = (
            pd.read_parquet(path, engine="pyarrow", columns=columns)
            if xdf is pd
            else xdf.read_parquet(path, columns=columns)
        )
    elif xdf is pd:  # pandas' integers cannot hold a missing value; its nullable Int64 can
        dtype = {c: "Int64" if t == "int64" else t for c, t in types.items()}
        frame = pd.read_csv(path, engine="pyarrow", usecols=columns, dtype=dtype, **CSV_MISSING)
    else:  # the header's names as Arrow reads them: libcudf keeps a quoted name's "" doubled, as Polars does
        frame = xdf.read_csv(
            path, names=spec["columns"], header=0, usecols=columns, dtype=types, **CSV_MISSING
        )
    return frame.rename(columns=spec["names"])


def pandas_user_file_ops(spec: dict) -> dict:
    """The read of the user's file and the pipeline in the pandas API (pandas and cuDF)."""

    def read(xdf, files, lookup):
        return pandas_read(xdf, files[spec["kind"]], spec, list(spec["names"]))

    def pipeline(xdf, files, lookup):
        columns = [u for u, c in spec["names"].items() if c in ("key", "value")]
        df = pandas_read(xdf, files[spec["kind"]], spec, columns)
        df["value"] = df["value"].astype("float64")  # the file's own type (integer, decimal) as the frame's
        # The file is read as uploaded: `< inf` leaves out NaN and infinity (DuckDB orders NaN above
        # every number), missing keys never join.
        df = df[(df["value"] > spec["threshold"]) & (df["value"] < float("inf"))]
        joined = df.merge(lookup, on="key", how="inner")
        joined["revenue"] = joined["value"] * joined["price"]
        out = (
            joined.groupby("region")
            .agg(rows=("value", "count"), revenue=("revenue", "sum"), mean_value=("value", "mean"))
            .reset_index()
            .sort_values("revenue", ascending=False)
        )
        return out if isinstance(out, pd.DataFrame) else out.to_pandas()

    return {spec["read_op"]: read, "pipeline": pipeline}


def polars_user_ops(spec: dict, engine: str = "cpu") -> dict:
    """The same four ops in Polars' expression API, collected on the CPU or on Polars' GPU engine."""
    threshold, sort_column = spec["threshold"], spec["sort_column"]

    def collect(lf, pl):
        return lf.collect(engine=polars_gpu_engine(pl)) if engine == "gpu" else lf.collect()

    def filter_(pl, df, lookup):
        return collect(df.lazy().filter(pl.col("value") > threshold), pl)

    def groupby(pl, df, lookup):
        value = pl.col("value")
        aggs = [value.sum(), value.mean(), value.max(), value.count()]
        names = ["value_sum", "value_mean", "value_max", "value_count"]
        return collect(
            df.lazy().group_by("key").agg(a.alias(n) for a, n in zip(aggs, names, strict=True)), pl
        )

    def join(pl, df, lookup):
        return collect(df.lazy().join(lookup.lazy(), on="key", how="inner"), pl)

    def sort(pl, df, lookup):
        return collect(df.lazy().sort(sort_column), pl)

    return {"filter": filter_, spec["group_op"]: groupby, "join": join, "sort": sort}


def polars_scan(pl, path: str, spec: dict, columns: list[str]):
    """A lazy scan of the role columns of the file, renamed (CSV with the frame's types, as every engine)."""
    types = {"float64": pl.Float64, "int64": pl.Int64, "str": pl.String}
    if spec["kind"] == "parquet":
        lf = pl.scan_parquet(path)
    else:  # the file's other columns as text: nothing in them can stop the read
        schema = {c: pl.String for c in spec["other_columns"]} | {
            c: types[t] for c, t in spec["types"].items()
        }
        # The header's names as Arrow, pandas and DuckDB read them (Polars keeps a quoted name's "" doubled).
        lf = pl.scan_csv(path, new_columns=spec["columns"], schema_overrides=schema)
        # A quoted empty field ("") is missing for pandas, Arrow and DuckDB, an empty string for Polars
        # (R's write.csv writes every empty string so): read as missing, as the others do.
        text = [c for c in columns if spec["types"][c] == "str"]
        return lf.select(
            (pl.col(c).replace("", None) if c in text else pl.col(c)).alias(spec["names"][c]) for c in columns
        )
    return lf.select(pl.col(c).alias(spec["names"][c]) for c in columns)


def polars_user_file_ops(spec: dict) -> dict:
    """The read and the pipeline in Polars: an eager read, and the pipeline as one lazy query."""

    def read(pl, files, lookup):
        return polars_scan(pl, files[spec["kind"]], spec, list(spec["names"])).collect()

    def pipeline(pl, files, lookup):
        columns = [u for u, c in spec["names"].items() if c in ("key", "value")]
        value = pl.col("value")
        return (
            polars_scan(pl, files[spec["kind"]], spec, columns)
            # the value a float, as in the frame; the key the lookup's type (Polars joins equal types only)
            .with_columns(value.cast(pl.Float64), pl.col("key").cast(lookup.schema["key"]))
            .filter((value > spec["threshold"]) & (value < float("inf")))
            .join(lookup.lazy(), on="key", how="inner")
            .with_columns((value * pl.col("price")).alias("revenue"))
            .group_by("region")
            .agg(value.count().alias("rows"), pl.col("revenue").sum(), value.mean().alias("mean_value"))
            .sort("revenue", descending=True)
            .collect()
            .to_pandas()
        )

    return {spec["read_op"]: read, "pipeline": pipeline}


def quoted(name: str) -> str:
    """A column name as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def duckdb_user_sql(spec: dict) -> dict:
    """The four ops in DuckDB's SQL over the views `df` and `lookup`; the threshold parsed as a DOUBLE, exactly."""
    threshold = f"CAST('{spec['threshold']!r}' AS DOUBLE)"
    return {
        "filter": f"SELECT * FROM df WHERE value > {threshold}",
        spec[
            "group_op"
        ]: 'SELECT "key", sum(value) AS value_sum, avg(value) AS value_mean, max(value) AS value_max, '
        'count(value) AS value_count FROM df GROUP BY "key"',
        "join": 'SELECT * FROM df JOIN lookup USING ("key")',
        "sort": f"SELECT * FROM df ORDER BY {quoted(spec['sort_column'])}",
    }


def duckdb_user_file_sql(spec: dict, files: dict) -> dict:
    """The read and the pipeline in DuckDB's SQL, over the user's file (its own Parquet and CSV readers)."""
    path = files[spec["kind"]].replace("'", "''")
    if spec["kind"] == "parquet":
        source = f"read_parquet('{path}')"
    else:
        types = {c: "VARCHAR" for c in spec["other_columns"]} | {
            c: SQL_TYPES[t] for c, t in spec["types"].items()
        }
        listed = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': '{t}'" for c, t in types.items())
        source = f"read_csv('{path}', types={{{listed}}})"
    names = spec["names"]
    select = ", ".join(f"{quoted(u)} AS {quoted(c)}" for u, c in names.items())
    key, value = (next(u for u, c in names.items() if c == role) for role in ("key", "value"))
    return {
        spec["read_op"]: f"SELECT {select} FROM {source}",
        "pipeline": "SELECT region, count(value) AS rows, sum(value * price) AS revenue, avg(value) AS mean_value "
        f'FROM (SELECT {quoted(key)} AS "key", CAST({quoted(value)} AS DOUBLE) AS value FROM {source}) '
        'JOIN lookup USING ("key") '
        f"WHERE value > CAST('{spec['threshold']!r}' AS DOUBLE) AND value < CAST('inf' AS DOUBLE) "
        "GROUP BY region ORDER BY revenue DESC",
    }


def user_engines(engines: list, spec: dict, atol: float) -> tuple[list, list[str]]:
    """The app's engines with the user's ops in place of the generated data's, and the engines left out, with why.

    Every engine but pandas compares with `atol` (UserDataset.atol) and never self-checks: the self-checks
    know the generated data's thresholds, not the user's.
    """
    out, left_out = [], []
    for eng in engines:
        if eng.name == "pandas" or eng.name == "cudf":
            compare = (
                None
                if eng.name == "pandas"
                else functools.partial(results_match, to_library=eng.to_device, atol=atol)
            )
            ops, file_ops = pandas_user_ops(spec), pandas_user_file_ops(spec)
        elif eng.name in ("polars", "polars_gpu"):
            compare = functools.partial(results_match_polars, atol=atol)
            ops = polars_user_ops(spec, "gpu" if eng.name == "polars_gpu" else "cpu")
            file_ops = polars_user_file_ops(spec) if eng.file_ops else None
        elif eng.name == "duckdb":
            out.append(duckdb_user_engine(eng.lib, spec, atol))
            continue
        else:
            left_out.append(f"{eng.name}: runs on the generated data only")
            continue
        out.append(dataclasses.replace(eng, ops=ops, file_ops=file_ops, compare=compare))
    return out, left_out


def duckdb_user_engine(duckdb, spec: dict, atol: float):
    """DuckDB with the user's SQL, its own connection, and results compared in Polars with `atol`."""

    def compare(expected, result, order, **kw):
        import polars as pl

        return results_match_polars(expected, pl.from_arrow(result), order, atol=atol)

    eng = make_duckdb_engine(
        duckdb,
        sql=duckdb_user_sql(spec),
        file_sql=functools.partial(duckdb_user_file_sql, spec),
        file_op_names=(spec["read_op"], "pipeline"),
    )
    return dataclasses.replace(eng, compare=compare)
