"""The data files the read and pipeline ops start from: one cached Parquet and CSV per size."""

from __future__ import annotations

import os
import tempfile
import threading

import pandas as pd

from gpu_notebooks.rapids_benchmark.formatting import fmt_bytes, format_rows
from gpu_notebooks.rapids_benchmark.sizing import memory_shortfall

CACHE_DIR_NAME = "rapids-benchmark-data-cache"
# Disk a size's files take, per row: Parquet ~20 B, CSV ~50 B (measured at 1M rows), with margin.
FILE_BYTES_PER_ROW = 90


def data_cache_dir() -> str:
    """The app's own folder for data files, under the OS temp dir (never a path a viewer chooses)."""
    path = os.path.join(tempfile.gettempdir(), CACHE_DIR_NAME)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def data_files(n_rows: int, seed: int, df: pd.DataFrame) -> tuple[dict | None, str | None]:
    """The size's Parquet and CSV files, written once (not timed); None and the reason when the disk is short.

    Categories are stored as strings, as files usually hold them. Each file is written under a unique
    temporary name and renamed into place, so two viewers never read a half-written file.
    """
    import shutil

    folder = data_cache_dir()
    files = {kind: os.path.join(folder, f"data_{n_rows}_{seed}.{kind}") for kind in ("parquet", "csv")}
    missing = [kind for kind, path in files.items() if not os.path.exists(path)]
    if not missing:
        return files, None
    free = shutil.disk_usage(folder).free
    short = memory_shortfall("disk in the temp folder", n_rows * FILE_BYTES_PER_ROW, free)
    if short:
        return None, f"File operations skipped at {format_rows(n_rows)} rows: their data files {short}."
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    table = pa.Table.from_pandas(df.assign(category=df["category"].astype(str)), preserve_index=False)
    for kind in missing:
        tmp = f"{files[kind]}.{os.getpid()}.{threading.get_ident()}.tmp"
        if kind == "parquet":
            pyarrow.parquet.write_table(table, tmp, compression="snappy")
        else:
            pyarrow.csv.write_csv(table, tmp)
        os.replace(tmp, files[kind])
    del table
    return files, None


def data_cache_bytes() -> int:
    """Bytes the cached data files take now."""
    folder = data_cache_dir()
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())


def clear_data_cache() -> int:
    """Delete the app's cached data files; returns the bytes freed."""
    freed = 0
    for entry in os.scandir(data_cache_dir()):
        if entry.is_file() and entry.name.startswith("data_"):
            freed += entry.stat().st_size
            os.remove(entry.path)
    return freed


def clear_data_cache_when_idle() -> str:
    """Delete the cached data files unless a run on this machine holds the lease now (it may be reading
    them: any viewer can press Delete); what happened, in a line."""
    from gpu_notebooks.gpu.lock import gpu_turn

    with gpu_turn(wait=False) as lease:
        if not lease:
            return (
                "_A run on this machine may be reading the cached data files now, so they were kept: press "
                "Delete again once it ends._"
            )
        return data_cache_text(clear_data_cache())


def data_cache_text(freed_bytes: int | None = None) -> str:
    """What the data-file cache holds now (read at the call), or what a click on Delete just freed."""
    if freed_bytes is not None:
        return f"_Deleted {fmt_bytes(freed_bytes)} of cached data files._"
    held = data_cache_bytes()
    return (
        "_The file operations read Parquet and CSV copies of the data, written once per size into the app's "
        "temp folder (not timed): " + (f"{fmt_bytes(held)} there now._" if held else "none there yet._")
    )
