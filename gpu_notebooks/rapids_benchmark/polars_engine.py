"""Polars on all CPU cores (and its GPU engine where present): the ops in Polars' API."""

from __future__ import annotations

import pandas as pd


def polars_file_ops() -> dict:
    """The file ops in Polars: eager reads, and the pipeline as one lazy query from scan_parquet."""

    def read_parquet(pl, files, lookup):
        return pl.read_parquet(files["parquet"])

    def read_csv(pl, files, lookup):
        return pl.read_csv(files["csv"])

    def pipeline(pl, files, lookup):
        value = pl.col("value")
        return (
            pl.scan_parquet(files["parquet"])
            .filter(value > 10.0)
            .join(lookup.lazy(), on="key_many", how="inner")
            .with_columns((value * pl.col("price")).alias("revenue"))
            .group_by(["region", "category"])
            .agg(value.count().alias("rows"), pl.col("revenue").sum(), value.mean().alias("mean_value"))
            .sort("revenue", descending=True)
            .collect()
            .to_pandas()
        )

    return {"read_parquet": read_parquet, "read_csv": read_csv, "pipeline": pipeline}


def polars_frame_for_gpu(pl, frame: pd.DataFrame):
    """The Polars frame that Polars' GPU engine is given: categorical columns as plain strings.

    cudf-polars 26.10 refuses Categorical columns ("dtype=Categorical conversion not supported", seen on
    an H100), so filter, join and sort, whose inputs carry the `category` column, would not run on the GPU
    at all. Strings hold the same values, and the check compares categories as text.
    """
    out = pl.from_pandas(frame)
    cats = [c for c, t in out.schema.items() if isinstance(t, (pl.Categorical, pl.Enum))]
    return out.with_columns(pl.col(c).cast(pl.String) for c in cats) if cats else out


def polars_gpu_engine(pl):
    """Polars' GPU engine as this app runs it: one GPU, in-memory executor, cuDF's own RMM memory pool.

    cudf-polars 26.10 defaults to its streaming executor, which pins the process to the GPU's CPU cores
    (the CPU engines compared beside it would lose cores) and keeps its own memory pool; the in-memory
    executor runs each query on one GPU as cuDF does. Sharing cuDF's RMM resource keeps one pool, so the
    memory panel and the caps see everything (otherwise it takes managed memory worth 80% of free).
    """
    options = {"executor": "in-memory", "raise_on_fail": True}
    try:
        import rmm

        options["memory_resource"] = rmm.mr.get_current_device_resource()
    except ImportError:
        pass
    return pl.GPUEngine(**options)


def polars_ops(engine: str = "cpu") -> dict:
    """The five ops in Polars' expression API, side by side with the pandas/cuDF ones; run on CPU or GPU."""

    def collect(lf, pl):
        return lf.collect(engine=polars_gpu_engine(pl)) if engine == "gpu" else lf.collect()

    def filter_(pl, df, lookup):
        return collect(df.lazy().filter((pl.col("value") > 50.0) & (pl.col("key_few") < 50)), pl)

    def groupby_few(pl, df, lookup):
        value = pl.col("value")
        return collect(
            df.lazy()
            .group_by("key_few")
            .agg(
                value.sum().alias("value_sum"),
                value.mean().alias("value_mean"),
                value.max().alias("value_max"),
                value.count().alias("value_count"),
                pl.col("value2").std().alias("value2_std"),
            ),
            pl,
        )

    def groupby_many(pl, df, lookup):
        value = pl.col("value")
        return collect(
            df.lazy()
            .group_by("key_many")
            .agg(value.sum().alias("value_sum"), value.count().alias("value_count")),
            pl,
        )

    def join(pl, df, lookup):
        return collect(df.lazy().join(lookup.lazy(), on="key_many", how="inner"), pl)

    def sort(pl, df, lookup):
        return collect(df.lazy().sort("value"), pl)

    return {
        "filter": filter_,
        "groupby_few": groupby_few,
        "groupby_many": groupby_many,
        "join": join,
        "sort": sort,
    }


def detect_polars(cudf_module=None, force_cpu: bool = False):
    """Polars' module (or None) and whether its GPU engine runs here, with a sentence for the user."""
    try:
        import polars
    except ImportError:
        return None, False, "Polars is not installed: it is in `requirements.txt` (`make install` adds it)."
    cpu = f"Polars {polars.__version__} runs on all {polars.thread_pool_size()} CPU threads."
    if cudf_module is None or force_cpu:
        return polars, False, cpu
    try:
        import cudf_polars  # noqa: F401

        polars.LazyFrame({"a": [1, 2]}).select(polars.col("a").sum()).collect(
            engine=polars_gpu_engine(polars)
        )
    except ImportError:
        return polars, False, cpu + " Its GPU engine needs `cudf-polars-cu12` (in requirements-gpu.txt)."
    except Exception as err:
        return polars, False, cpu + f" Its GPU engine failed to start (`{type(err).__name__}: {err}`)."
    return polars, True, cpu + " Its GPU engine (cudf-polars) runs too."
