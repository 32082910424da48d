"""The cudf.pandas worker and the user-snippet box, with plain pandas standing in for the accelerated run (CI)."""

import contextlib
import os
import re
import sys
import time
from pathlib import Path

import pytest

import gpu_notebooks.rapids_benchmark.cudf_pandas as cudf_pandas
from gpu_notebooks.rapids_benchmark.cli import parse_cli_args
from gpu_notebooks.rapids_benchmark.cudf_pandas import (
    FALLBACK_STEP,
    PROFILE_SAMPLE_ROWS,
    SNIPPET_MAX_CHARS,
    prepare_snippet,
    profile_fallbacks,
    run_cudf_pandas_engine,
    run_user_snippet,
    run_worker,
    snippet_report,
    user_code_allowed,
    worker_command,
)
from gpu_notebooks.rapids_benchmark.data import generate_data
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.explain.method import explain_cudf_pandas
from gpu_notebooks.rapids_benchmark.explain.results import summary_text
from gpu_notebooks.rapids_benchmark.report import results_table, speedup_table, summarize_records
from gpu_notebooks.rapids_benchmark.runner import run_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_the_worker_runs_the_apps_own_pandas_ops_and_every_result_is_checked_against_pandas():
    out = run_cudf_pandas_engine([5_000], ["filter", "groupby_many", "sort"], 2, accelerate=False)
    assert not out["errors"], out["errors"]
    by_op = {r["op"]: r for r in out["records"]}
    assert set(by_op) == {"filter", "groupby_many", "sort", FALLBACK_STEP}
    for r in by_op.values():
        assert r["engine"] == "cudf_pandas" and r["match"] is True and r["checked_by"] == "pandas"
        assert r["min_s"] <= r["median_s"] <= r["max_s"]
    assert out["profiles"] == []  # no profiler without cudf.pandas
    assert by_op["sort"]["on_gpu"] is False  # plain pandas ran: not reported as a GPU engine


def test_the_worker_turns_cudf_pandas_on_before_pandas_is_imported():
    boot = worker_command()[-1]
    assert boot.index("cudf.pandas.install()") < boot.index("from gpu_notebooks")
    assert "import pandas" not in boot.split("cudf.pandas.install()")[0]


def test_an_accelerated_run_without_cudf_fails_with_a_message_and_nothing_breaks():
    out = run_cudf_pandas_engine([2_000], ["filter"], 1, accelerate=True)
    assert out["records"] == [] and len(out["errors"]) == 1
    assert "cudf.pandas at 2K rows: failed:" in out["errors"][0] and "cudf" in out["errors"][0]


def test_the_summary_says_how_close_cudf_pandas_gets_to_pandas():
    bench = run_benchmark([5_000], ["filter"], make_engines(None), 1)
    extra = run_cudf_pandas_engine([5_000], ["filter"], 1, accelerate=False)
    summary = summarize_records(bench["records"] + extra["records"])
    assert "cudf.pandas median (min–max)" in results_table(summary)
    assert "cudf.pandas vs pandas" in speedup_table(summary)
    assert "cudf.pandas" in explain_cudf_pandas({"summary": summary, "bench": {}})


@pytest.mark.parametrize(
    "code, message",
    [
        ("", "Type a pandas snippet"),
        ("x" * (SNIPPET_MAX_CHARS + 1), "the limit is"),
        ("df.groupby(", "Syntax error on line 1"),
        ("x = df.head()", "End the snippet with an expression"),
    ],
)
def test_a_bad_snippet_is_refused_before_anything_runs(code, message):
    prepared, why = prepare_snippet(code)
    assert prepared is None and message in why


def test_the_last_expression_becomes_the_result():
    prepared, why = prepare_snippet("m = df['value'] > 50\ndf[m].groupby('key_few').size()")
    assert why is None and prepared.splitlines()[-1].startswith("result = ")
    assert prepare_snippet("result = df.head()")[1] is None


def test_a_snippet_runs_in_a_worker_and_its_result_comes_back():
    out = run_user_snippet("df.groupby('key_few')['value'].mean()", 5_000, accelerate=False)
    assert "error" not in out, out
    assert out["runs"]["pandas"]["rows_out"] == 100 and out["runs"]["pandas"]["seconds"] > 0
    assert "not run — no cuDF" in snippet_report(out, accelerated=False)


@pytest.mark.parametrize(
    "code, timeout_s, message",
    [
        # The worker needs a few seconds to start on a busy machine: the limit is well above that.
        # Where it was stuck, from the worker's faulthandler: the snippet's line, by name (no server path).
        (
            "import time\ntime.sleep(600)\ndf",
            25,
            "stopped after 25 s (the time limit), inside `<module>` (<your snippet>, line 2)",
        ),
        ("raise MemoryError('no room')\ndf", 300, "MemoryError: no room"),
        ("df['no_such_column']", 300, "KeyError"),
    ],
)
def test_a_failing_snippet_gets_a_clear_message_and_the_app_keeps_working(code, timeout_s, message):
    out = run_user_snippet(code, 2_000, accelerate=False, timeout_s=timeout_s)
    assert message in out["error"]
    assert "did not run" in snippet_report(out, accelerated=False)
    assert "error" not in run_user_snippet("df.shape[0]", 2_000, accelerate=False)  # the next one works


def test_a_snippet_cannot_reach_the_apps_namespace():
    out = run_user_snippet("'GPU_LOCK_ENV' in globals()", 2_000, accelerate=False)
    assert out["runs"]["pandas"]["frame"]["result"].tolist() == [False]


def test_marimo_run_viewers_get_no_code_execution_unless_the_app_was_started_to_allow_it():
    assert user_code_allowed("run", {})[0] is False
    assert "--allow-user-code" in user_code_allowed("run", {})[1]
    assert user_code_allowed("edit", {})[0] is True
    assert user_code_allowed("run", {"allow_user_code": True})[0] is True
    assert parse_cli_args({"allow-user-code": ""})["allow_user_code"] is True
    assert user_code_allowed(None, {})[0] is False and user_code_allowed("script", {})[0] is False


def test_the_snippet_cell_refuses_to_run_when_not_allowed_before_reading_the_code():
    source = (ROOT / "rapids_benchmark_dashboard.py").read_text()
    cells = [m.group(1) for m in re.finditer(r"def _\([^)]*\):\n(.*?)\n\n\n", source, re.S)]
    (cell,) = [c for c in cells if "run_user_snippet(" in c]
    assert cell.lstrip().startswith("mo.stop(not snippet_allowed)")


def test_a_process_the_worker_leaves_behind_cannot_keep_the_run_waiting(monkeypatch, tmp_path):
    """A helper process that outlives the worker and still holds its output must not block the run (the
    app's GPU export waited on the cudf.pandas worker on the H200, 2026-12-01); it is stopped with the worker."""
    import threading

    pid_file = tmp_path / "grandchild.pid"
    boot = (
        "import json, subprocess, sys\n"
        "sys.stdin.read()\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('WORKER-RESULT ' + json.dumps({'ok': True}), flush=True)\n"
    )
    monkeypatch.setattr(cudf_pandas, "worker_command", lambda: [sys.executable, "-c", boot])
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(result=run_worker({}, timeout_s=600)))
    thread.start()
    thread.join(timeout=180)  # generous: the call itself takes about a second
    try:
        assert not thread.is_alive(), "run_worker waited for the worker's leftover child"
        assert answer["result"] == ({"ok": True}, None)
        pid = int(pid_file.read_text())
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the worker's leftover child is still running")
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), 9)


@pytest.mark.parametrize(
    "code, rows",
    [
        ("df.groupby('category', observed=True)['value'].agg(['mean', 'max']).reset_index()", 8),  # a frame
        ("df['value'].head(7)", 7),  # a Series
        ("float(df['value'].sum())", 1),  # a scalar
    ],
)
def test_frames_series_and_scalars_all_come_back(code, rows):
    out = run_user_snippet(code, 2_000, accelerate=False)
    assert "error" not in out, out
    assert out["runs"]["pandas"]["rows_out"] == rows


def test_the_summary_says_how_close_zero_code_change_gets_to_hand_written_cudf():
    from tests.test_rapids_report import bench_for, record

    recs = [
        record(10**6, "sort", "pandas", 1.0, False),
        record(10**6, "sort", "cudf", 0.01, True, True, "pandas", h2d_s=0.1),
        record(10**6, "sort", "cudf_pandas", 0.02, True, True, "pandas"),
    ]
    text = summary_text(summarize_records(recs), bench_for(recs, [10**6]))
    assert "ran at 0.5× on sort the speed of hand-written cuDF" in text


class _CountingProfiler:
    """Stands in for cudf.pandas' Profiler: counts what the profiled call saw."""

    per_function_stats = {"DataFrame.apply": {"cpu": [0.1, 0.2]}}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_fallback_report_profiles_a_capped_sample_whatever_the_rows():
    seen = []
    df, lookup = generate_data(20_000)

    def step(frame, _lookup):  # Python per row, the kind of work the profiler makes slow
        seen.append(len(frame))
        return frame.apply(lambda r: r["value"] > 50, axis=1)

    rows = profile_fallbacks(step, df.head(PROFILE_SAMPLE_ROWS), lookup, profiler_cls=_CountingProfiler)
    assert seen == [PROFILE_SAMPLE_ROWS] and PROFILE_SAMPLE_ROWS <= 1_000
    assert rows == [{"function": "DataFrame.apply", "cpu_calls": 2, "cpu_s": pytest.approx(0.3)}]


def test_a_profiled_step_that_never_ends_is_stopped_and_the_report_says_so():
    calls = []

    def endless(frame, _lookup):
        while True:  # a Python loop: the timer's signal stops it between bytecodes
            calls.append(1)
            time.sleep(0.01)

    rows = profile_fallbacks(endless, None, None, profiler_cls=_CountingProfiler, timeout_s=0.3)
    assert calls and "profiling stopped after" in rows[-1]["function"]
    assert rows[0]["function"] == "DataFrame.apply"


def test_the_stop_is_not_swallowed_by_a_step_that_catches_every_exception():
    """cudf.pandas catches Exception around each GPU call and reruns it on the CPU: the stop must get through."""
    calls = []

    def retries_on_any_error(frame, _lookup):
        while len(calls) < 3_000:  # ends by itself (~30 s) if the stop were swallowed: a failure, not a hang
            try:  # as a fast/slow fallback does
                calls.append(1)
                time.sleep(0.01)
            except Exception:
                continue

    rows = profile_fallbacks(retries_on_any_error, None, None, profiler_cls=_CountingProfiler, timeout_s=0.3)
    assert calls and "profiling stopped after" in rows[-1]["function"]


def test_a_snippet_that_needs_more_rows_than_the_profiled_sample_still_gets_its_result(tmp_path, monkeypatch):
    """The snippet is timed on the whole frame, then profiled on a small sample it may not fit (df.iloc[500])."""
    import types

    fake_cudf = types.ModuleType("cudf")
    fake_pandas = types.ModuleType("cudf.pandas")
    fake_pandas.Profiler = _CountingProfiler
    fake_cudf.pandas = fake_pandas
    monkeypatch.setitem(sys.modules, "cudf", fake_cudf)  # as in a worker where cudf.pandas is installed
    monkeypatch.setitem(sys.modules, "cudf.pandas", fake_pandas)
    df, _ = generate_data(2_000)
    out = cudf_pandas.run_snippet_here(
        f"result = df.iloc[[{PROFILE_SAMPLE_ROWS + 200}]]", df, str(tmp_path), lambda: None
    )
    assert "failed on the" in out["profile"][0]["function"] and "IndexError" in out["profile"][0]["function"]
    assert os.path.exists(os.path.join(tmp_path, "snippet.parquet"))  # the result itself was kept


def test_a_snippet_whose_result_mixes_types_in_a_column_comes_back_as_text():
    """One row of the frame is a Series of mixed types: Parquet cannot hold it as it is."""
    out = run_user_snippet("df.iloc[5]", 2_000, accelerate=False)
    assert "error" not in out, out
    assert out["runs"]["pandas"]["rows_out"] == len(generate_data(10)[0].columns)
