"""Your table mapped onto the roles the ops use: the frame, its lookup, a sample and a file per size."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gpu_notebooks.rapids_benchmark.checks import OP_ORDER
from gpu_notebooks.rapids_benchmark.formatting import format_rows
from gpu_notebooks.rapids_benchmark.ops import ALL_OPS
from gpu_notebooks.rapids_benchmark.sizing import memory_shortfall
from gpu_notebooks.rapids_benchmark.user_data import UserDataError, UserTable, without_paths

# A key with at most this many distinct values is "few keys" (the app's own few-key group-by has 100).
FEW_KEYS_LIMIT = 1_000
# The join's lookup: every other distinct key, each with a price in [0, PRICE_MAX) and one of REGIONS regions.
PRICE_MAX = 50.0
REGIONS = 7
# Float results agree within 1e-7 relative, or this fraction of the data's total magnitude absolute: a sum
# whose terms cancel (signed values) may land near zero, where a relative bound alone would fail.
MAGNITUDE_TOLERANCE = 1e-12
SEED = 0


@dataclass
class UserDataset:
    """The user's table as the runner takes it instead of generated data (see run_benchmark's `dataset`)."""

    table: UserTable
    roles: dict  # user column names: value, key, sort
    quantile: float
    frame: pd.DataFrame = field(repr=False)  # key, value[, sort_by]: the role columns, complete rows only
    lookup: pd.DataFrame = field(repr=False)  # key, price, region
    folder: str  # the session's private folder: samples and the worker's copy go here
    threshold: float
    dropped: int  # rows left out: a role column missing or not finite
    source_rows: int  # rows of the table read for the frame (all of them, or a sample that fits memory)
    key_count: int
    atol: float
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def rows(self) -> int:
        """Rows of the frame: the largest size a run can take."""
        return len(self.frame)

    @property
    def complete(self) -> bool:
        """The frame holds every row of the file (not a sample that fits memory)."""
        return self.source_rows == self.table.rows

    @property
    def group_op(self) -> str:
        """The group-by's name: few or many keys, as the app's own two group-bys."""
        return "groupby_few" if self.key_count <= FEW_KEYS_LIMIT else "groupby_many"

    @property
    def sort_column(self) -> str:
        """The frame's column the sort orders by."""
        if self.roles["sort"] == self.roles["value"]:
            return "value"
        return "key" if self.roles["sort"] == self.roles["key"] else "sort_by"

    @property
    def read_op(self) -> str:
        """The read op of the uploaded format (the other format is not the user's file, so not read)."""
        return f"read_{self.table.kind}"

    @property
    def ops(self) -> list[str]:
        """The ops this table runs, in the app's order."""
        mine = {"pipeline", self.read_op, "filter", self.group_op, "join", "sort"}
        return [o for o in ALL_OPS if o in mine]

    @property
    def names(self) -> dict:
        """The frame's column for each of the user's role columns (one each: sort may share value's or key's)."""
        out = {self.roles["key"]: "key", self.roles["value"]: "value"}
        out.setdefault(self.roles["sort"], "sort_by")
        return out

    @property
    def orders(self) -> dict:
        """How results_match compares each op where it differs from the generated data's: the sort's column."""
        return {"sort": f"key:{self.sort_column}"}

    def order(self, op: str) -> str:
        """How results_match compares this op's results."""
        return self.orders.get(op, OP_ORDER[op])

    def columns_read(self, op: str) -> list[str]:
        """The frame's columns an op reads at least once (for its bytes touched)."""
        return ["key", "value"] if op == self.group_op else list(self.frame.columns)

    @property
    def bytes_per_row(self) -> float:
        """Bytes per row of the frame in host memory."""
        return float(self.frame.memory_usage(index=False, deep=True).sum()) / max(len(self.frame), 1)

    def scrub(self, text: str) -> str:
        """A run's message without the server paths of the file and the session's folder."""
        text = without_paths(text, self.table.path)
        for form in {self.folder, os.path.realpath(self.folder)}:
            text = text.replace(form, "the session's folder")
        return text

    def spec(self) -> dict:
        """What the ops need to know, as plain values (the cudf.pandas worker gets it as JSON)."""
        # The reads take the role columns as the frame has them; a date sort column (a number in the frame,
        # stored as text or as a date in the file) is left to the sort, so the engines' date types never meet.
        read = {user: col for user, col in self.names.items() if self.table.column(user).kind != "date"}
        return {
            "threshold": self.threshold,
            "group_op": self.group_op,
            "sort_column": self.sort_column,
            "kind": self.table.kind,
            "read_op": self.read_op,
            "names": read,
            "types": {user: frame_type(self.frame[col]) for user, col in read.items()},
            # the file's other columns: the CSV readers take them as text, so nothing in them stops a read
            "other_columns": [c.name for c in self.table.columns if c.name not in read],
            "columns": [c.name for c in self.table.columns],  # in the file's order
        }

    def frames(self, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The frame at n rows (a seeded random sample in file order) and the lookup, the same at every size."""
        if n >= self.rows:
            return self.frame, self.lookup
        picked = np.sort(np.random.default_rng([SEED, n]).choice(self.rows, n, replace=False))
        return self.frame.take(picked).reset_index(drop=True), self.lookup

    def files(self, n: int) -> tuple[dict | None, str | None]:
        """The file the reads and the pipeline start from at n rows: the user's own at full size, else a sample.

        The sample (n random rows of the file, every column, in file order) is written once per size (not
        timed) in the uploaded format into the session's folder; None and the reason when the disk is short.
        """
        kind = self.table.kind
        if n >= self.rows and self.complete:
            return {kind: self.table.path}, None
        path = os.path.join(self.folder, f"sample_{n}.{kind}")
        with self._lock:
            if not os.path.exists(path):
                need = self.table.file_bytes * n / self.table.rows
                short = memory_shortfall("disk in the temp folder", need, shutil.disk_usage(self.folder).free)
                if short:
                    return (
                        None,
                        f"File operations skipped at {format_rows(n)} rows: their sample file {short}.",
                    )
                write_table(sample_rows(self.table, n), path, kind)
        return {kind: path}, None

    def worker_request(self, n: int) -> dict:
        """What the cudf.pandas worker needs to run this table at n rows: its Parquet copies and the spec."""
        table, lookup = self.worker_files(n)
        return {"table": table, "lookup": lookup, "spec": self.spec()}

    def worker_files(self, n: int) -> tuple[str, str]:
        """Parquet copies of the frame at n rows and of the lookup, for the cudf.pandas worker to load."""
        tag = hashlib.sha1(repr((sorted(self.roles.items()), self.source_rows)).encode()).hexdigest()[:12]
        paths = tuple(
            os.path.join(self.folder, f"worker_{name}_{tag}_{n}.parquet") for name in ("frame", "lookup")
        )
        with self._lock:
            if not all(os.path.exists(p) for p in paths):
                df, lookup = self.frames(n)
                write_frame(df, paths[0], "parquet")
                write_frame(lookup, paths[1], "parquet")
        return paths


def frame_type(column: pd.Series) -> str:
    """The type a frame column is read back as: float64, int64 or str."""
    if pd.api.types.is_float_dtype(column):
        return "float64"
    return "int64" if pd.api.types.is_integer_dtype(column) else "str"


def sample_rows(table: UserTable, n: int):
    """n seeded random rows of the file, every column, in file order (Arrow; a Parquet file is streamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    picked = np.sort(np.random.default_rng([SEED, n, 1]).choice(table.rows, n, replace=False))
    if table.table is not None:
        return table.table.take(picked)
    parts, start = [], 0
    for batch in pq.ParquetFile(table.path).iter_batches(batch_size=1 << 20):
        lo, hi = np.searchsorted(picked, [start, start + batch.num_rows])
        parts.append(batch.take(pa.array(picked[lo:hi] - start)))
        start += batch.num_rows
    return pa.Table.from_batches(parts)


def write_frame(df: pd.DataFrame, path: str, kind: str) -> None:
    """Write a pandas frame as Parquet (snappy) or CSV, under a temporary name renamed into place."""
    import pyarrow as pa

    write_table(pa.Table.from_pandas(df, preserve_index=False), path, kind)


def write_table(table, path: str, kind: str) -> None:
    """Write an Arrow table as Parquet (snappy) or CSV, under a temporary name renamed into place."""
    import pyarrow.csv
    import pyarrow.parquet

    tmp = f"{path}.{threading.get_ident()}.tmp"
    if kind == "parquet":
        pyarrow.parquet.write_table(table, tmp, compression="snappy")
    else:
        pyarrow.csv.write_csv(table, tmp)
    os.replace(tmp, path)


def check_roles(table: UserTable, roles: dict) -> None:
    """UserDataError when a role holds a column that cannot take it."""
    for role, name in roles.items():
        if name not in table.choices(role):
            raise UserDataError(f"Column '{name}' cannot be the {role} column.")
    if roles["key"] == roles["value"]:
        raise UserDataError("The key and the value must be different columns.")


def read_role_columns(table: UserTable, columns: list[str], max_rows: int | None):
    """The role columns as Arrow: every row, or a seeded random sample of about max_rows rows (Parquet, streamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if table.table is not None:
        raw = table.table.select(columns)
        if max_rows is not None and max_rows < raw.num_rows:
            raw = raw.take(np.sort(np.random.default_rng(SEED).choice(raw.num_rows, max_rows, replace=False)))
        return raw
    try:
        if max_rows is None or max_rows >= table.rows:
            return pq.read_table(table.path, columns=columns)
        rng, share, parts = np.random.default_rng(SEED), max_rows / table.rows, []
        for batch in pq.ParquetFile(table.path).iter_batches(columns=columns, batch_size=1 << 20):
            parts.append(batch.filter(pa.array(rng.random(batch.num_rows) < share)))
        return pa.Table.from_batches(parts)
    except (pa.ArrowException, OSError) as err:
        raise UserDataError(
            f"The Parquet file cannot be read (corrupt or truncated): {without_paths(str(err), table.path)}"
        ) from None


def dates_as_numbers(raw, table: UserTable):
    """Date and time columns as int64 in their stored unit (days, ms, µs…): the same order, a type every engine
    sorts the same way (a sort column may be a date; value and key never are)."""
    import pyarrow as pa

    for i, name in enumerate(raw.column_names):
        if table.column(name).kind == "date":
            column = raw.column(i)
            if pa.types.is_date32(column.type):
                column = column.cast(pa.int32())
            raw = raw.set_column(i, name, column.cast(pa.int64()))
    return raw


def prepare_dataset(
    table: UserTable, roles: dict, quantile: float, folder: str, max_rows: int | None = None
) -> UserDataset:
    """The table mapped onto the ops' roles: complete rows of the role columns, renamed; its lookup and threshold."""
    check_roles(table, roles)
    names = {roles["key"]: "key", roles["value"]: "value"}
    names.setdefault(roles["sort"], "sort_by")
    raw = dates_as_numbers(read_role_columns(table, list(names), max_rows), table)
    source_rows = raw.num_rows if max_rows is not None and max_rows < table.rows else table.rows
    frame = raw.to_pandas().rename(columns=names)[list(names.values())]
    keep = frame.notna().all(axis=1)
    for col in frame.columns:
        if pd.api.types.is_float_dtype(frame[col]):
            keep &= np.isfinite(frame[col].to_numpy(dtype="float64", na_value=np.nan))
    frame = frame[keep].reset_index(drop=True)
    if len(frame) == 0:
        raise UserDataError(
            f"No row has all of '{roles['value']}', '{roles['key']}' and '{roles['sort']}' filled in (and finite): "
            "there is nothing to run on. Pick other columns."
        )
    for col in frame.columns:  # the frame's types: a float value, an int64 or text key, a float or text sort
        kind = table.column(next(u for u, c in names.items() if c == col)).kind
        if col == "value" or (col == "sort_by" and kind != "text"):
            frame[col] = frame[col].astype("float64")
        else:
            frame[col] = frame[col].astype("int64" if kind == "integer" else "str")
    keys = frame["key"].unique()
    lookup_keys = pd.Series(np.sort(np.asarray(keys)), dtype=frame["key"].dtype)[::2].reset_index(drop=True)
    lookup = pd.DataFrame(
        {
            "key": lookup_keys,
            "price": np.random.default_rng(SEED + 1).random(len(lookup_keys)) * PRICE_MAX,
            "region": (np.arange(len(lookup_keys)) % REGIONS).astype(np.int16),
        }
    )
    magnitude = float(frame["value"].abs().sum())
    return UserDataset(
        table=table,
        roles=dict(roles),
        quantile=float(quantile),
        frame=frame,
        lookup=lookup,
        folder=folder,
        threshold=float(frame["value"].quantile(quantile)),
        dropped=source_rows - len(frame),
        source_rows=source_rows,
        key_count=len(keys),
        atol=max(MAGNITUDE_TOLERANCE * PRICE_MAX * magnitude, 1e-9),
    )


def role_bytes_per_row(table: UserTable, roles: dict) -> float:
    """Bytes per row the role columns will take in memory, estimated before they are read (text: 32 B a value)."""
    return float(sum(8 if table.column(name).kind != "text" else 32 for name in set(roles.values())))
