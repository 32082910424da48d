"""Your own table (issue 26): an uploaded CSV or Parquet through the same engines, timer and checks (CPU)."""

import gc
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from gpu_notebooks.rapids_benchmark.checks import check_messages
from gpu_notebooks.rapids_benchmark.cudf_pandas import run_cudf_pandas_engine
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.explain.user_data import (
    user_dataset_text,
    user_disagreement_causes,
    user_ops_text,
    user_run_text,
    user_summary_text,
    user_table_text,
)
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from gpu_notebooks.rapids_benchmark.user_data import (
    FOLDER_PREFIX,
    SessionFolder,
    UserDataError,
    default_roles,
    open_table,
    read_server_table,
    role_dropdowns,
    save_upload,
)
from gpu_notebooks.rapids_benchmark.user_dataset import prepare_dataset
from gpu_notebooks.rapids_benchmark.user_ops import user_engines

pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")
ROOT = Path(__file__).resolve().parents[1]


def sales(n: int = 6_000, stores: int = 40, seed: int = 1) -> pd.DataFrame:
    """A small table as people have them: text key, signed amounts, an integer, a date, a few gaps."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "store": rng.choice([f"store {i}" for i in range(stores)], n),
            "amount": rng.normal(5, 100, n).round(2),
            "units": rng.integers(0, 5_000, n),
            "day": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d"),
            "comment": rng.choice(["", "NA", 'late, "urgent"', "ok"], n),
        }
    )
    df.loc[::97, "amount"] = np.nan
    df.loc[::113, "store"] = None
    return df


def as_bytes(df: pd.DataFrame, kind: str) -> bytes:
    return df.to_csv(index=False).encode() if kind == "csv" else df.to_parquet(index=False)


@pytest.fixture
def folder(tmp_path):
    made = SessionFolder(parent=str(tmp_path))
    yield made
    made.delete()


def cudf_standin():
    """cuDF's code path (the pandas API) with pandas standing in for the GPU library, as in the other tests."""
    return Engine(
        "cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), load_kind="host→GPU copy", file_ops={}
    )


def cudf_like_module():
    """A module with cuDF's reader signatures over pandas: the reads' non-pandas branch runs as it would on cuDF.

    cuDF's integers hold missing values; pandas' nullable Int64 stands in for them.
    """

    def read_csv(path, usecols, dtype, keep_default_na, na_values, names=None, header="infer"):
        if names is None:  # libcudf's header: outer quotes stripped, a quoted name's "" kept doubled
            with open(path, encoding="utf-8-sig") as handle:
                first = handle.readline().rstrip("\r\n").split(",")
            names, header = [n[1:-1] if n[:1] == n[-1:] == '"' else n for n in first], 0
        dtype = {c: "Int64" if t == "int64" else t for c, t in dtype.items()}
        return pd.read_csv(
            path,
            names=names,
            header=header,
            usecols=usecols,
            dtype=dtype,
            keep_default_na=keep_default_na,
            na_values=na_values,
        )

    def read_parquet(path, columns):
        return pd.read_parquet(path, columns=columns)

    return SimpleNamespace(read_csv=read_csv, read_parquet=read_parquet, merge=pd.merge)


def run_on(dataset, sizes, cudf=None):
    engines, left_out = user_engines(
        make_engines(None, pl, False, duckdb) + [cudf or cudf_standin()], dataset.spec(), dataset.atol
    )
    return run_benchmark(sizes, dataset.ops, engines, 1, dataset=dataset), left_out


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_small_upload_runs_every_op_on_pandas_polars_duckdb_and_the_cudf_path_and_agrees(kind, folder):
    df = sales()
    table = save_upload(folder, f"sales.{kind}", as_bytes(df, kind))
    assert (table.kind, table.rows) == (kind, len(df))
    roles = default_roles(table)
    assert roles == {"value": "amount", "key": "store", "sort": "amount"}
    dataset = prepare_dataset(table, roles, 0.5, folder.path)
    assert dataset.dropped == df["amount"].isna().sum() + df["store"].isna().sum() - 1  # row 0 has both gaps
    assert dataset.ops == ["pipeline", f"read_{kind}", "filter", "groupby_few", "join", "sort"]
    # cuDF's code path: the pandas-API ops, the reads through cuDF's own reader arguments
    cudf_like = Engine("cudf", cudf_like_module(), on_gpu=True, to_device=lambda f: f.copy())
    out, left_out = run_on(dataset, [1_000, dataset.rows], cudf=cudf_like)
    assert not out["errors"] and not left_out
    summary = summarize_records(out["records"])
    assert len(summary) == 2 * len(dataset.ops)
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()
    checked = {(r["op"], r["engine"]) for r in out["records"] if r["checked_by"] == "pandas"}
    engines = ("polars", "duckdb", "cudf")
    assert checked == {(op, e) for op in dataset.ops for e in engines}
    said = user_summary_text(summary)  # every engine that ran is put against pandas the same way
    assert "Polars on all cores was" in said and "DuckDB was" in said and "cuDF was" in said
    reads = {r["rows"]: r["rows_out"] for r in out["records"] if r["op"] == f"read_{kind}"}
    # At full size the read takes the uploaded file itself (its rows with gaps too); below, a sample of it.
    assert reads == {1_000: 1_000, dataset.rows: len(df)}
    assert sorted(os.listdir(folder.path)) == [f"sample_1000.{kind}", f"upload.{kind}"]


def test_an_integer_key_with_many_values_and_a_text_sort_column_agree(folder):
    table = save_upload(folder, "sales.csv", as_bytes(sales(), "csv"))
    roles = {"value": "amount", "key": "units", "sort": "store"}
    dataset = prepare_dataset(table, roles, 0.9, folder.path)
    assert dataset.group_op == "groupby_many" and dataset.sort_column == "sort_by"
    assert dataset.key_count == dataset.frame["key"].nunique() > 1_000
    out, _ = run_on(dataset, [dataset.rows])
    assert not out["errors"]
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()
    filtered = next(r for r in out["records"] if r["op"] == "filter" and r["engine"] == "pandas")
    assert filtered["rows_out"] == (dataset.frame["value"] > dataset.frame["value"].quantile(0.9)).sum()


@pytest.mark.parametrize("kind", ["csv", "parquet-date", "parquet-timestamp"])
def test_a_date_column_can_be_the_sort_column_and_every_engine_agrees(kind, folder):
    """A user's dates sort as their stored number (days, µs…): the same order on every engine."""
    df = sales(3_000)
    if kind == "csv":
        data = as_bytes(df, "csv")  # "2024-01-01" text: Arrow's CSV reader takes it for a date or timestamp
    else:
        day = pd.to_datetime(df["day"]) + pd.to_timedelta(np.arange(len(df)) % 24, unit="min")
        df["day"] = day.dt.date if kind == "parquet-date" else day
        data = as_bytes(df, "parquet")
    table = save_upload(folder, f"sales.{kind.split('-')[0]}", data)
    assert table.column("day").kind == "date" and "day" in table.choices("sort")
    dataset = prepare_dataset(table, {"value": "amount", "key": "store", "sort": "day"}, 0.5, folder.path)
    assert dataset.sort_column == "sort_by" and dataset.frame["sort_by"].dtype == "float64"
    assert dataset.frame[
        "sort_by"
    ].is_monotonic_increasing  # the file's days were in order: so are the numbers
    out, _ = run_on(dataset, [dataset.rows])
    assert not out["errors"]
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()
    assert {"sort"} <= set(summary["op"])


def parquet_of(kind: str) -> bytes:
    """Parquet files with the types people's files have (pandas and Arrow write them)."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng, n = np.random.default_rng(0), 3_000
    if kind == "decimal":
        amounts = [decimal.Decimal(f"{x:.2f}") for x in rng.normal(0, 10, n)]
        table = pa.table({"k": rng.integers(0, 50, n), "v": pa.array(amounts, pa.decimal128(10, 2))})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()
    frames = {
        "categorical, int32, float32": lambda: pd.DataFrame(
            {
                "k": pd.Categorical(rng.choice(list("abcdefg"), n)),
                "i": rng.integers(0, 3_000, n).astype("int32"),
                "v": rng.random(n).astype("float32"),
            }
        ),
        "nullable integers only": lambda: pd.DataFrame(
            {
                "k": pd.array(np.where(rng.random(n) < 0.05, None, rng.integers(0, 40, n)), dtype="Int64"),
                "v": rng.integers(-100, 100, n),
            }
        ),
        "booleans and timestamps beside": lambda: pd.DataFrame(
            {
                "k": rng.choice(["x", "y"], n),
                "flag": rng.random(n) < 0.5,
                "t": pd.date_range("2020", periods=n, freq="s"),
                "v": rng.random(n),
            }
        ),
    }
    return frames[kind]().to_parquet(index=False)


@pytest.mark.parametrize(
    "kind",
    ["categorical, int32, float32", "decimal", "nullable integers only", "booleans and timestamps beside"],
)
def test_parquet_types_people_have_run_and_agree(kind, folder):
    table = save_upload(folder, "t.parquet", parquet_of(kind))
    dataset = prepare_dataset(table, default_roles(table), 0.5, folder.path)
    out, _ = run_on(dataset, [1_000, dataset.rows])
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✓").all(), summary["detail"].tolist()


def test_an_awkward_csv_runs_and_agrees(folder):
    """A BOM, CRLF lines, a quoted header with a doubled quote, non-ASCII names, keys with commas, newlines, NA."""
    rng, n = np.random.default_rng(0), 3_000
    keys = ["Zürich, CH", 'say "hi"', "NA", "null", "x\ny", "plain", "O'Brien"]
    df = pd.DataFrame(
        {
            'shop "main"': rng.choice(keys, n),
            "Umsatz €": rng.normal(0, 50, n).round(3),
            "n": rng.integers(0, 9, n),
        }
    )
    data = b"\xef\xbb\xbf" + df.to_csv(index=False, lineterminator="\r\n").encode()
    table = save_upload(folder, "t.csv", data)
    assert [c.name for c in table.columns] == list(df.columns)
    for roles in (default_roles(table), {"value": "Umsatz €", "key": "n", "sort": 'shop "main"'}):
        dataset = prepare_dataset(table, roles, 0.3, folder.path)
        # cuDF's reader branch too: libcudf keeps the header's doubled quote, so names are passed to it
        cudf_like = Engine("cudf", cudf_like_module(), on_gpu=True, to_device=lambda f: f.copy())
        out, _ = run_on(dataset, [1_000, dataset.rows], cudf=cudf_like)
        assert not out["errors"], out["errors"]
        summary = summarize_records(out["records"])
        assert (summary["match"] == "✓").all(), summary["detail"].tolist()
        cudf_ops = {r["op"] for r in out["records"] if r["engine"] == "cudf" and r["checked_by"] == "pandas"}
        assert {"read_csv", "pipeline"} <= cudf_ops
    assert dataset.frame["sort_by"].isin(["NA", "null"]).any()  # text, as Polars and DuckDB read it


def test_infinite_values_in_the_file_are_left_out_of_the_frame_and_its_reads_still_agree(folder):
    """inf - inf is NaN: a check by difference alone called every read of a file with infinities ✗."""
    df = sales(3_000)
    df.loc[::50, "amount"] = np.inf
    df.loc[::77, "amount"] = -np.inf
    table = save_upload(folder, "t.parquet", as_bytes(df, "parquet"))
    dataset = prepare_dataset(table, {"value": "amount", "key": "store", "sort": "amount"}, 0.5, folder.path)
    assert np.isfinite(dataset.frame["value"]).all() and dataset.dropped > 60
    out, _ = run_on(dataset, [dataset.rows])
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"])
    assert (summary["match"] == "✓").all(), summary[["op", "detail"]].values.tolist()


def test_a_csv_with_nan_and_infinity_written_as_text_and_quoted_empty_keys_agrees(folder):
    """numpy's savetxt writes nan and inf, R's write.csv writes an empty string as "": pandas, Arrow and DuckDB
    read "" as missing and NaN as missing, Polars as an empty string and a NaN; the checks must not call that ✗."""
    words = ["NaN", "inf", "-inf", "1.5", "nan", "Infinity", "-2.25", "7"]
    keys = ['""', "", "north", "south", '"east"']
    lines = [f"{keys[i % 5]},{words[i % 8]},{i}" for i in range(3_000)]
    table = save_upload(folder, "t.csv", ("region,reading,n\n" + "\n".join(lines) + "\n").encode())
    for roles in (
        {"value": "reading", "key": "region", "sort": "n"},
        {"value": "reading", "key": "n", "sort": "region"},
    ):
        dataset = prepare_dataset(table, roles, 0.5, folder.path)
        assert np.isfinite(dataset.frame["value"]).all()
        out, _ = run_on(dataset, [dataset.rows])
        assert not out["errors"], out["errors"]
        summary = summarize_records(out["records"])
        assert (summary["match"] == "✓").all(), summary[["op", "detail"]].values.tolist()


def test_blank_lines_in_a_csv_are_named_and_only_polars_read_disagrees(folder):
    """Polars reads a blank line as a row of empty values; pandas, cuDF and DuckDB skip it: the page says so."""
    text = sales(2_000).to_csv(index=False)
    head, rest = text.split("\n", 1)
    table = save_upload(folder, "t.csv", (f"{head}\n\n{rest}\n").encode())  # after the header, at the end
    assert table.rows == 2_000
    assert any("The file has 2 blank lines" in note for note in table.notes), table.notes
    assert "2 blank lines" in user_table_text(table)
    dataset = prepare_dataset(table, {"value": "amount", "key": "store", "sort": "units"}, 0.5, folder.path)
    out, _ = run_on(dataset, [dataset.rows])
    assert not out["errors"], out["errors"]
    summary = summarize_records(out["records"]).set_index("op")
    assert summary.loc["read_csv", "match"] == "✗"
    assert summary.loc["read_csv", "detail"] == "polars: 2,002 rows, expected 2,000"
    assert (summary.drop(index="read_csv")["match"] == "✓").all()
    (kind, callout), *_ = check_messages(
        summary.reset_index(), out["errors"], user_disagreement_causes(dataset)
    )
    assert kind == "danger" and "— the file's 2 blank lines, which Polars reads as rows" in callout
    assert callout.endswith("so these operations' speed-ups compare unlike things.")
    other = user_disagreement_causes(dataset)
    assert other("read_csv", 1_000, "polars: 2,001 rows, expected 2,000") == ""  # not the blank lines' count
    assert other("sort", 1_000, "polars: 2,002 rows, expected 2,000") == ""
    clean = save_upload(folder, "u.csv", text.encode())
    assert not any("blank line" in note for note in clean.notes)


def test_a_wrong_result_on_your_table_reads_as_a_disagreement(folder):
    table = save_upload(folder, "sales.parquet", as_bytes(sales(), "parquet"))
    dataset = prepare_dataset(table, default_roles(table), 0.5, folder.path)

    def off_by_a_cent(frame):
        frame = frame.copy()
        if "value" in frame:
            frame["value"] = frame["value"] + 0.01
        return frame

    broken = Engine("cudf", pd, on_gpu=True, to_device=off_by_a_cent)
    engines, _ = user_engines([*make_engines(None), broken], dataset.spec(), dataset.atol)
    out = run_benchmark([dataset.rows], ["groupby_few", "sort"], engines, 1, dataset=dataset)
    assert (summarize_records(out["records"])["match"] == "✗").all()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_file_damaged_after_upload_fails_its_reads_with_a_message_and_no_server_path(kind, folder):
    table = save_upload(folder, f"sales.{kind}", as_bytes(sales(), kind))
    dataset = prepare_dataset(table, default_roles(table), 0.5, folder.path)
    with open(table.path, "r+b") as handle:  # cut in the middle of a row / a page
        handle.truncate(table.file_bytes // 2 + 7)
    out, _ = run_on(dataset, [dataset.rows])
    ran = {r["op"] for r in out["records"]}
    assert {"filter", dataset.group_op, "join", "sort"} <= ran  # the in-memory ops still run
    errors = [dataset.scrub(e) for e in out["errors"]]
    assert any(f"· {dataset.read_op} ·" in e for e in errors)
    assert not any(folder.path in e or os.path.realpath(folder.path) in e for e in errors), errors


def test_cudf_pandas_runs_on_your_table_from_a_parquet_in_the_session_folder(folder):
    table = save_upload(folder, "sales.csv", as_bytes(sales(3_000), "csv"))
    dataset = prepare_dataset(table, {"value": "amount", "key": "store", "sort": "units"}, 0.5, folder.path)
    out = run_cudf_pandas_engine([dataset.rows], dataset.ops, 1, accelerate=False, dataset=dataset)
    assert not out["errors"], out["errors"]
    ran = {r["op"]: r for r in out["records"]}
    assert set(ran) == {"filter", "groupby_few", "join", "sort", "rowwise_label"}
    assert all(r["match"] for r in ran.values()), [r["detail"] for r in ran.values()]
    assert ran["filter"]["load_kind"] == "your table, read from Parquet in the worker"
    assert any(f.startswith("worker_frame_") for f in os.listdir(folder.path))


def write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def parquet_bytes() -> bytes:
    return sales(500).to_parquet(index=False)


BAD_FILES = {
    "an Excel workbook": (
        b"PK\x03\x04" + b"\x00" * 200,
        "not a CSV or Parquet file: it looks like a ZIP archive",
    ),
    "a picture": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "it looks like a PNG image"),
    "binary data": (b"abc\x00\x01\x02" * 20, "holds binary data"),
    "random bytes without a zero byte": (
        bytes(b for b in np.random.default_rng(3).integers(1, 256, 5_000, dtype=np.uint8).tobytes()),
        "holds binary data (",
    ),
    "a truncated Parquet": (
        parquet_bytes()[:900],
        "truncated or corrupt: it starts like Parquet but its footer",
    ),
    "a corrupt Parquet": (
        b"PAR1" + b"garbage" * 30 + b"PAR1",
        "This Parquet file cannot be read (corrupt or truncated)",
    ),
    "a truncated CSV": ("a,b,c\n1,2,3\n4,5", "malformed or truncated: Expected 3 columns, got 2"),
    "a Latin-1 CSV": (
        "city,amount\nZürich,1\nGenève,2\n".encode("latin-1"),
        "not UTF-8: byte 13 (line 2) is 0xfc",
    ),
    "no numeric column": ("city,code\nParis,a\nRome,b\n", "no numeric column with values"),
    "only a column of nulls": ("city,amount\nParis,\nRome,\n", "Column 'amount' is empty"),
    "mixed types": (
        "city,amount\nParis,1.5\nRome,2\nOslo,n/a\n",
        "'amount' mixes numbers and text (e.g. 'n/a')",
    ),
    "no key column": ("amount,price\n1.5,2.5\n2,3.5\n", "no integer or text column to group by"),
    "an empty file": (b"", "The file is empty"),
    "a header only": ("a,b\n", "a header but no rows"),
    "two columns with one name": ("a,a\n1,2\n", "Two columns are named 'a'"),
    "pandas' index saved": (
        ",k,v\n0,a,1.5\n1,b,2\n",
        "Column 1 has no name in the header: name every column (pandas",
    ),
    "a column without a name": ("k,,v\na,1,1.5\n", "Column 2 has no name in the header: name every column."),
    "semicolons": ("city;amount\nParis;1\n", "separated by ';'"),
}


@pytest.mark.parametrize("what", list(BAD_FILES))
def test_each_bad_file_gets_its_message(what, folder):
    data, message = BAD_FILES[what]
    with pytest.raises(UserDataError) as err:
        save_upload(folder, "upload", data if isinstance(data, bytes) else data.encode())
    assert message in str(err.value), str(err.value)
    assert "rapids-user-data-" not in str(err.value)  # never a server path
    assert os.listdir(folder.path) == []  # a file that cannot be used is not kept


def test_a_file_over_the_cap_is_refused_before_it_is_written(folder):
    with pytest.raises(UserDataError, match="uploads are capped at 1 MB"):
        save_upload(folder, "big.csv", b"a,b\n" + b"1,2\n" * 300_000, cap=1_000_000)
    assert os.listdir(folder.path) == []


def test_a_csv_too_large_for_host_memory_says_so(tmp_path):
    path = write(tmp_path, "big.csv", "a,b\n" + "1,x\n" * 1_000)
    with pytest.raises(UserDataError, match="needs ≈ .* GB of host RAM to read"):
        open_table(path, "big.csv", free_host_bytes=1_000)


def test_bad_roles_and_rows_without_values_get_messages(folder):
    table = save_upload(folder, "t.csv", b"k,v,w\n1,,2\n,3,4\n")
    with pytest.raises(UserDataError, match="key and the value must be different"):
        prepare_dataset(table, {"value": "v", "key": "v", "sort": "v"}, 0.5, folder.path)
    with pytest.raises(UserDataError, match="No row has all of 'v', 'k' and 'v' filled in"):
        prepare_dataset(table, {"value": "v", "key": "k", "sort": "v"}, 0.5, folder.path)
    with pytest.raises(UserDataError, match="cannot be the value column"):
        prepare_dataset(table, {"value": "nope", "key": "k", "sort": "v"}, 0.5, folder.path)


def test_a_column_of_nulls_and_a_mixed_column_are_shown_but_never_offered(folder):
    csv = "store,amount,empty,code\na,1.5,,7\nb,2,,x\nc,3,,9\n"
    table = save_upload(folder, "t.csv", csv.encode())
    notes = {c.name: c.note for c in table.columns}
    assert notes["empty"] == "empty: every value is missing"
    assert "mixes numbers and text (e.g. 'x')" in notes["code"]
    picks = role_dropdowns(table)
    assert list(picks["value"]["options"].values()) == ["amount"]
    assert "empty" not in picks["key"]["options"].values()
    text = user_table_text(table)
    assert "**t.csv** — CSV" in text and "**3 rows**" in text and "mixes numbers and text" in text


def test_more_rows_than_memory_allows_runs_on_a_sample_and_says_so(folder):
    for kind in ("csv", "parquet"):
        table = save_upload(folder, f"sales.{kind}", as_bytes(sales(), kind))
        dataset = prepare_dataset(table, default_roles(table), 0.5, folder.path, max_rows=2_000)
        assert not dataset.complete and dataset.source_rows <= 2_200 and dataset.rows < 2_200
        files, _ = dataset.files(dataset.rows)  # the whole file would not fit: its reads take a sample
        assert files[kind] != table.path and os.path.getsize(files[kind]) < table.file_bytes
        spec = dataset.spec()
        text = user_dataset_text(dataset, user_ops_text(spec, dataset.roles, dataset.key_count))
        assert f"**A sample:** the whole table ({len(sales()):,} rows) does not fit" in text
        out, _ = run_on(dataset, [dataset.rows])
        assert not out["errors"] and (summarize_records(out["records"])["match"] == "✓").all()


def test_two_sessions_uploads_never_see_each_other(tmp_path):
    first, second = SessionFolder(str(tmp_path)), SessionFolder(str(tmp_path))
    save_upload(first, "mine.csv", b"k,v\na,1\n")
    save_upload(second, "mine.csv", b"k,v\nb,2\nc,3\n")
    assert first.path != second.path
    for made in (first, second):
        assert stat.S_IMODE(os.stat(made.path).st_mode) == 0o700  # only the server's user may even list it
        assert os.listdir(made.path) == ["upload.csv"]
    del made
    assert open(os.path.join(first.path, "upload.csv")).read() == "k,v\na,1\n"
    first.clear()  # "Delete my file" in one session leaves the other's
    assert os.listdir(first.path) == [] and os.listdir(second.path) == ["upload.csv"]
    gone = second.path
    del second  # a session that ends drops its folder object: the folder goes with it
    gc.collect()
    assert not os.path.exists(gone) and os.path.exists(first.path)


def test_a_folder_left_by_a_dead_server_is_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"{FOLDER_PREFIX}{dead.stdout.strip()}-abc"
    stale.mkdir()
    live = tmp_path / f"{FOLDER_PREFIX}{os.getppid()}-def"
    live.mkdir()
    SessionFolder(str(tmp_path))
    assert not stale.exists() and live.exists()


def test_the_servers_table_is_read_once_and_a_missing_one_is_said_without_its_path(tmp_path):
    path = write(tmp_path, "server.csv", "k,v\na,1\n")
    assert read_server_table(path) is read_server_table(path)
    with pytest.raises(UserDataError) as err:
        read_server_table(str(tmp_path / "secret-name.csv"))
    assert "cannot be opened" in str(err.value) and "secret-name" not in str(err.value)


def test_a_folder_or_an_unreadable_file_given_as_the_servers_table_gets_a_message(tmp_path, monkeypatch):
    folder = tmp_path / "secret-parts.parquet"
    folder.mkdir()
    with pytest.raises(UserDataError, match="is a folder: give one CSV or Parquet file") as err:
        read_server_table(str(folder))
    assert "secret-parts" not in str(err.value)

    def unreadable(path, *args):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("gpu_notebooks.rapids_benchmark.user_data.open_table", unreadable)
    with pytest.raises(UserDataError) as err:
        read_server_table(write(tmp_path, "secret-table.csv", "k,v\na,1\n"))
    assert str(err.value) == "The table given with `--data` cannot be read (Permission denied)."


def test_column_names_from_a_file_cannot_inject_markdown(folder):
    table = save_upload(folder, "x.csv", b"[a](http://evil)|<b>,v\nk,1\n")
    text = user_table_text(table)
    assert "[a](http" not in text and "<b>" not in text and "\\[a\\]" in text


def test_a_headless_run_with_data_checks_every_result_of_your_table_inside_the_marimo_runtime(tmp_path):
    path = write(tmp_path, "sales.parquet", as_bytes(sales(4_000), "parquet"))
    code = (
        f"import sys; sys.argv = ['app', '--smoke', '--data', {path!r}]\n"
        "import rapids_benchmark_dashboard as app\n"
        "outputs, defs = app.app.run()\n"
        "summary = defs['user_summary']\n"
        "print('OPS', sorted(set(summary['op'])), 'SIZES', sorted(set(summary['rows'])))\n"
        "assert (summary['match'] == '✓').all(), summary['detail'].tolist()\n"
        "assert not defs['user_bench']['errors'], defs['user_bench']['errors']\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "'read_parquet'" in proc.stdout and "SIZES [1000, " in proc.stdout


def test_the_run_line_counts_sizes_in_words_a_reader_would_write():
    bench = {"wall_s": 1.5, "records": [{}] * 18}
    one = user_run_text(bench, {"sizes": [5_000]}, [])
    two = user_run_text(bench, {"sizes": [1_000, 5_000]}, [])
    assert "over 1 size (5K rows)" in one and "over 2 sizes (1K, 5K rows)" in two
    assert "(s)" not in one + two
