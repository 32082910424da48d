"""The generated data: a frame of rows with few and many keys, and its lookup table."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_FEW_KEYS = 100
N_MANY_KEYS = 100_000
CATEGORIES = ["books", "games", "garden", "grocery", "health", "home", "music", "sports"]
DATA_CHUNK_ROWS = 10_000_000


def data_chunk_rows(n_rows: int) -> int:
    """Rows per generated chunk: at least 16 chunks (one Dask partition each), at most DATA_CHUNK_ROWS rows."""
    return max(min(DATA_CHUNK_ROWS, -(-n_rows // 16)), 1)


def chunk_columns(n_rows: int, index: int, seed: int = 0) -> dict:
    """Columns of chunk `index` of the n_rows-row frame, from the chunk's own seeded stream."""
    size = data_chunk_rows(n_rows)
    rows = max(min(size, n_rows - index * size), 0)
    rng = np.random.default_rng([seed, index])
    return {
        "key_few": rng.integers(0, N_FEW_KEYS, rows, dtype=np.int32),
        "key_many": rng.integers(0, N_MANY_KEYS, rows, dtype=np.int32),
        "value": rng.random(rows) * 100.0,
        "value2": rng.random(rows) * 10.0,
        "category": rng.integers(0, len(CATEGORIES), rows, dtype=np.int8),
    }


def as_frame(columns: dict, start: int = 0) -> pd.DataFrame:
    """The benchmark frame from generated columns (category codes become a categorical column)."""
    n = len(columns["value"])
    cols = {**columns, "category": pd.Categorical.from_codes(columns["category"], categories=CATEGORIES)}
    return pd.DataFrame(cols, index=pd.RangeIndex(start, start + n))


def generate_chunk(n_rows: int, index: int, seed: int = 0) -> pd.DataFrame:
    """One chunk of the frame on its own — what a Dask worker builds for its partition."""
    return as_frame(chunk_columns(n_rows, index, seed), start=index * data_chunk_rows(n_rows))


def generate_lookup(seed: int = 0) -> pd.DataFrame:
    """The join's lookup table: only even keys exist, so the inner join keeps about half of the rows."""
    lookup_keys = np.arange(0, N_MANY_KEYS, 2, dtype=np.int32)
    return pd.DataFrame(
        {
            "key_many": lookup_keys,
            "price": np.random.default_rng(seed + 1).random(len(lookup_keys)) * 50.0,
            "region": (lookup_keys % 7).astype(np.int16),
        }
    )


def generate_data(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded, vectorised data for every op (built chunk by chunk, the same chunks Dask workers make) and the lookup."""
    size = data_chunk_rows(n_rows)
    dtypes = {
        "key_few": np.int32,
        "key_many": np.int32,
        "value": np.float64,
        "value2": np.float64,
        "category": np.int8,
    }
    columns = {name: np.empty(n_rows, dtype=dt) for name, dt in dtypes.items()}
    for index in range(-(-n_rows // size)):
        for name, values in chunk_columns(n_rows, index, seed).items():
            columns[name][index * size : index * size + len(values)] = values
    return as_frame(columns), generate_lookup(seed)


def estimate_bytes_per_row() -> float:
    """Bytes per row of the benchmark frame, measured on a 10k-row sample."""
    sample, _ = generate_data(10_000)
    return float(sample.memory_usage(index=False, deep=True).sum()) / len(sample)
