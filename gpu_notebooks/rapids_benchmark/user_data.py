"""Your own table: an uploaded CSV or Parquet file checked, described, and kept in the session's private folder."""

from __future__ import annotations

import codecs
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field

import pyarrow as pa

from gpu_notebooks.text import count_of

# The upload cap, set on marimo's file element (its `max_size`) and checked again on the server.
UPLOAD_CAP_BYTES = 200_000_000
# Reading a CSV into Arrow takes about its size again and more for text columns; with this margin.
CSV_LOAD_FACTOR = 3.0
FOLDER_PREFIX = "rapids-user-data-"
# How a file that is neither CSV nor Parquet usually starts: named in the message instead of "not UTF-8".
SIGNATURES = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook is one: save it as CSV UTF-8 or Parquet)",
    b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook (save it as CSV UTF-8 or Parquet)",
    b"\x1f\x8b": "a gzip-compressed file (decompress it first)",
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"SQLite format 3": "an SQLite database",
    b"ARROW1": "an Arrow IPC (Feather) file (write it as Parquet)",
    b"Obj\x01": "an Avro file",
}
# How every engine is told to read missing values: an empty field, and nothing else.
CSV_NULLS = {"null_values": [""], "strings_can_be_null": True}
ROLE_KINDS = {
    "value": ("number", "integer"),
    "key": ("integer", "text"),
    # a date sorts as its stored number (user_dataset.dates_as_numbers)
    "sort": ("number", "integer", "text", "date"),
}


class UserDataError(ValueError):
    """Bad input: the message says what is wrong with the file and what to do about it."""


@dataclass
class Column:
    """One column of the user's table: its kind for the roles (number, integer, text, date, empty, other)."""

    name: str
    kind: str
    arrow_type: str
    nulls: int | None  # None: unknown until read (a Parquet file without statistics)
    note: str = ""


@dataclass
class UserTable:
    """The user's file as checked: where it is (never shown), what it holds, and its parsed rows (CSV)."""

    path: str
    kind: str  # "csv" or "parquet"
    label: str  # how the page names it: the upload's file name, or "the server's table"
    file_bytes: int
    rows: int
    columns: list[Column]
    table: pa.Table | None = field(default=None, repr=False)  # CSV: every row parsed; Parquet: read on demand
    notes: list[str] = field(default_factory=list)
    blank_lines: int = 0  # CSV: blank lines, which Polars reads as rows and the other engines skip

    def column(self, name: str) -> Column:
        """The column of that name."""
        return next(c for c in self.columns if c.name == name)

    def choices(self, role: str) -> list[str]:
        """Columns that can take a role: the right kind, and not empty."""
        return [c.name for c in self.columns if c.kind in ROLE_KINDS[role] and c.nulls != self.rows]


class SessionFolder:
    """A session's private folder (mode 0700, a fresh name): deleted on request, when the session ends, or at exit.

    marimo clears a session's globals when the session closes; the object then goes and its finalizer removes
    the folder. Folders left by a server process that died are removed when the next one is made.
    """

    def __init__(self, parent: str | None = None):
        parent = parent or tempfile.gettempdir()
        remove_orphan_folders(parent)
        self.path = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=parent)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, True)

    def clear(self) -> int:
        """Delete every file in the folder (the upload, its samples); returns the bytes freed."""
        freed = 0
        for entry in os.scandir(self.path):
            if entry.is_file():
                freed += entry.stat().st_size
                os.remove(entry.path)
        return freed

    def delete(self) -> None:
        """Remove the folder now."""
        self._finalizer()


def remove_orphan_folders(parent: str) -> None:
    """Remove the session folders of server processes that no longer run (their pid is in the name)."""
    for entry in os.scandir(parent):
        if not (entry.is_dir() and entry.name.startswith(FOLDER_PREFIX)):
            continue
        pid = entry.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(entry.path, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_upload(
    folder: SessionFolder,
    name: str,
    contents: bytes,
    cap: int = UPLOAD_CAP_BYTES,
    free_host_bytes: int | None = None,
) -> UserTable:
    """Write an uploaded file into the session's folder (replacing its previous one) and check it."""
    folder.clear()  # a new upload replaces the previous one, usable or not
    if len(contents) > cap:
        raise UserDataError(
            f"The file is {len(contents) / 1e6:,.0f} MB; uploads are capped at {cap / 1e6:,.0f} MB. "
            "Upload a sample of it, or ask whoever runs this server to start it with `-- --data` on the file."
        )
    kind = sniff_kind(contents[:65536], contents[-8:])
    path = os.path.join(folder.path, f"upload.{kind}")
    with open(path, "wb") as handle:
        handle.write(contents)
    try:
        return open_table(path, os.path.basename(name or "your file"), kind, free_host_bytes)
    except UserDataError:
        os.remove(path)  # a file that cannot be used is not kept
        raise


# Bytes below 0x20 other than tab, newline, form feed and carriage return (and DEL): in text, rare in any encoding.
NOT_CONTROL_BYTES = bytes(b for b in range(256) if b >= 0x20 and b != 0x7F or b in b"\t\n\x0c\r")
CONTROL_SHARE_MAX = 0.01  # random bytes hold about 13%


def sniff_kind(head: bytes, tail: bytes) -> str:
    """'parquet' or 'csv' from a file's first and last bytes, or UserDataError naming what it is instead."""
    if not head:
        raise UserDataError("The file is empty.")
    if head.startswith(b"PAR1"):
        if not tail.endswith(b"PAR1"):
            raise UserDataError(
                "This Parquet file is truncated or corrupt: it starts like Parquet but its footer (the schema, "
                "written last) is missing. Upload the whole file again."
            )
        return "parquet"
    for signature, what in SIGNATURES.items():
        if head.startswith(signature):
            raise UserDataError(f"This is not a CSV or Parquet file: it looks like {what}.")
    if b"\x00" in head:
        raise UserDataError("This is not a CSV or Parquet file: it holds binary data (zero bytes).")
    controls = len(head.translate(None, NOT_CONTROL_BYTES))  # text in any encoding has almost none
    if controls > CONTROL_SHARE_MAX * len(head) and controls >= 4:
        raise UserDataError(
            f"This is not a CSV or Parquet file: it holds binary data ({controls:,} control bytes in its first "
            f"{len(head):,} bytes, where text has almost none)."
        )
    return "csv"


def check_utf8(path: str, chunk_bytes: int = 1 << 20) -> None:
    """UserDataError with the line of the first byte that is not UTF-8 (every engine reads CSV as UTF-8)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                bad = offset + err.start
                line += chunk[: err.start].count(b"\n")
                raise UserDataError(
                    f"This CSV is not UTF-8: byte {bad:,} (line {line:,}) is 0x{chunk[err.start]:02x}, which "
                    "UTF-8 does not allow — the file is probably Latin-1 or Windows-1252. Save it as "
                    '"CSV UTF-8" (Excel) or re-encode it (`iconv -f cp1252 -t utf-8`).'
                ) from None
            line += chunk.count(b"\n")
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise UserDataError(
            "This CSV is not UTF-8: it ends in the middle of a character (truncated?)."
        ) from None


def open_table(
    path: str, label: str, kind: str | None = None, free_host_bytes: int | None = None
) -> UserTable:
    """Check and describe a CSV or Parquet file; UserDataError says what is wrong with a bad one."""
    size = os.path.getsize(path)
    if kind is None:
        with open(path, "rb") as handle:
            head = handle.read(65536)
            handle.seek(max(size - 8, 0))
            kind = sniff_kind(head, handle.read(8))
    if kind == "parquet":
        return open_parquet(path, label, size)
    if free_host_bytes is not None and size * CSV_LOAD_FACTOR > free_host_bytes * 0.85:
        raise UserDataError(
            f"This CSV ({size / 1e9:,.1f} GB) needs ≈ {size * CSV_LOAD_FACTOR / 1e9:,.1f} GB of host RAM to read, "
            f"but {free_host_bytes / 1e9:,.1f} GB is free. Convert it to Parquet (read column by column), or use "
            "a sample of it."
        )
    return open_csv(path, label, size)


def open_parquet(path: str, label: str, size: int) -> UserTable:
    """A Parquet file's schema and row count from its footer; null counts from its statistics where written."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as err:
        raise UserDataError(
            f"This Parquet file cannot be read (corrupt or truncated): {without_paths(str(err), path)}"
        ) from None
    columns = []
    for i, f in enumerate(schema):
        nulls = parquet_null_count(meta, i) if i < meta.num_columns else None
        columns.append(Column(f.name, column_kind(f.type), str(f.type), nulls))
    check_names([c.name for c in columns])
    return finish_table(UserTable(path, "parquet", label, size, meta.num_rows, columns))


def parquet_null_count(meta, i: int) -> int | None:
    """A column's nulls summed over row groups, or None where a row group wrote no statistics."""
    total = 0
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(i).statistics
        if stats is None or not stats.has_null_count:
            return None
        total += stats.null_count
    return total


def open_csv(path: str, label: str, size: int) -> UserTable:
    """Parse a CSV with Arrow (every row, so a type that changes late in the file is seen) and describe it."""
    import pyarrow.csv as pcsv

    check_utf8(path)
    try:
        # Only an empty field is missing, as Polars and DuckDB read it ("NA" or "null" is text)
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(**CSV_NULLS))
    except pa.ArrowInvalid as err:
        text = str(err)
        if "Empty CSV file" in text:
            raise UserDataError("The CSV is empty: it has no header line.") from None
        if "Expected" in text and "columns" in text:
            raise UserDataError(
                f"The CSV is malformed or truncated: {text.removeprefix('CSV parse error: ')}. Every line must "
                "have as many fields as the header; a file cut short ends in a partial line."
            ) from None
        raise UserDataError(f"The CSV cannot be read: {without_paths(text, path)}") from None
    check_names(table.column_names)
    notes = []
    columns = []
    for name, array in zip(table.column_names, table.columns, strict=True):
        col = Column(name, column_kind(array.type), str(array.type), array.null_count)
        if col.kind == "text":
            col.note = mixed_note(array)
        columns.append(col)
    if len(columns) == 1 and any(sep in columns[0].name for sep in (";", "\t", "|")):
        notes.append(
            "The header reads as one column: the file seems separated by ';', tab or '|'. "
            "Save it comma-separated."
        )
    checked = finish_table(UserTable(path, "csv", label, size, table.num_rows, columns, table, notes))
    blank = polars_extra_rows(path, table.num_rows)
    if blank > 0:
        checked.blank_lines = blank
        checked.notes.append(
            f"The file has {count_of(blank, 'blank line')}: pandas, cuDF and DuckDB skip them, Polars reads each "
            f"as a row of empty values, so Polars' read of this file finds {count_of(blank, 'row')} more and "
            "shows ✗. Every other operation runs on the same rows for every engine. Remove the blank lines to "
            "compare the read too."
        )
    return checked


def polars_extra_rows(path: str, rows: int) -> int:
    """Rows Polars reads beyond Arrow's count: blank lines, which Polars reads as rows (0 without Polars)."""
    try:
        import polars as pl
    except ImportError:
        return 0
    try:  # every column as text: a count needs no types, and no type guess can fail
        return pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item() - rows
    except pl.exceptions.PolarsError:
        return 0


def without_paths(text: str, path: str) -> str:
    """A library's message with the file's server path (and its folder) taken out: viewers never see paths."""
    for where, word in ((path, "your file"), (os.path.dirname(path), "the session's folder")):
        for form in {where, os.path.realpath(where)}:
            text = text.replace(form, word)
    return text


def check_names(names: list[str]) -> None:
    """Column names must be unique and not blank: engines disagree on how to rename them otherwise."""
    seen = set()
    for i, name in enumerate(names):
        if not str(name).strip():
            index = " (pandas writes its index as a first column without a name: save with `index=False`)"
            raise UserDataError(
                f"Column {i + 1:,} has no name in the header: name every column{index if i == 0 else ''}."
            )
        if name in seen:
            raise UserDataError(f"Two columns are named '{name}': column names must be unique.")
        seen.add(name)


def column_kind(t: pa.DataType) -> str:
    """A column's kind for the roles from its Arrow type."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_temporal(t):
        return "date"
    if pa.types.is_null(t):
        return "empty"
    return "other"


def mixed_note(array, sample: int = 10_000) -> str:
    """For a text column that is mostly numbers: which value is not, so the user can see why it is text."""
    import pyarrow.compute as pc

    values = array.drop_null().slice(0, sample) if hasattr(array, "drop_null") else array
    values = pa.chunked_array(values).combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if len(values) == 0:
        return ""
    numeric = pc.match_substring_regex(values, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
    count = pc.sum(numeric).as_py() or 0
    if count < len(values) / 2 or count == len(values):
        return ""
    bad = values.filter(pc.invert(numeric))[0].as_py()
    return (
        f"mixes numbers and text (e.g. '{str(bad)[:40]}'), so it is read as text; "
        "write a missing value as an empty field"
    )


def finish_table(table: UserTable) -> UserTable:
    """The last checks every table passes: it has rows and a numeric column with values."""
    if table.rows == 0:
        raise UserDataError("The table has a header but no rows.")
    numeric = [c for c in table.columns if c.kind in ("number", "integer")]
    if not table.choices("value"):
        mixed = [c for c in table.columns if c.note]
        empty = [
            c.name for c in table.columns if c.kind == "empty" or (c in numeric and c.nulls == table.rows)
        ]
        why = (
            f" Column '{mixed[0].name}' {mixed[0].note}."
            if mixed
            else f" Column '{empty[0]}' is empty (every value is missing)."
            if empty
            else ""
        )
        raise UserDataError(
            "The table has no numeric column with values, and the benchmark needs one (filtered, summed, "
            f"averaged).{why}" + (" " + table.notes[0] if table.notes else "")
        )
    if not table.choices("key"):
        raise UserDataError(
            "The table has no integer or text column to group by and join on (the key). Add one, e.g. a "
            "store, customer or product id."
        )
    for c in table.columns:
        if c.nulls == table.rows:
            c.note = "empty: every value is missing"
    return table


def default_roles(table: UserTable) -> dict:
    """Sensible first choices: a decimal value column, a text key (else an integer one), sorted by the value."""
    values, keys = table.choices("value"), table.choices("key")
    texts = [c for c in keys if table.column(c).kind == "text"]
    key = (texts or [c for c in keys if c not in values[:1]] or keys)[0]
    floats = [c for c in values if table.column(c).kind == "number" and c != key]
    value = (floats or [c for c in values if c != key] or values)[0]
    return {"value": value, "key": key, "sort": value}


def role_dropdowns(table: UserTable) -> dict:
    """Each role's dropdown arguments: its columns labelled with their kind, the default role column chosen."""
    defaults, out = default_roles(table), {}
    for role in ROLE_KINDS:
        options = {f"{c} ({table.column(c).kind})": c for c in table.choices(role)}
        out[role] = {"options": options, "value": next(k for k, v in options.items() if v == defaults[role])}
    return out


def read_server_table(path: str, free_host_bytes: int | None = None) -> UserTable:
    """The operator's `-- --data PATH` file, checked once per server process (sessions share it, read-only)."""
    import threading

    from gpu_notebooks.registry import process_registry

    try:
        stat = os.stat(path)
    except OSError as err:
        # Said without the path: viewers never see server paths.
        raise UserDataError(f"The table given with `--data` cannot be opened ({err.strerror}).") from None
    if os.path.isdir(path):
        raise UserDataError(
            "The table given with `--data` is a folder: give one CSV or Parquet file (write a Parquet dataset "
            "kept in parts as one file first)."
        )
    key = ("user_data_table", os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    registry = process_registry()
    with registry.setdefault("user_data_lock", threading.Lock()):
        if key not in registry:
            try:
                registry[key] = open_table(
                    path, "the table this server was started with", None, free_host_bytes
                )
            except OSError as err:  # e.g. not readable by the server's user
                raise UserDataError(
                    f"The table given with `--data` cannot be read ({err.strerror})."
                ) from None
        return registry[key]
