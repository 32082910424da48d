"""cudf.pandas (no code change): the worker process, its fallback report and the snippet box."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Callable

import numpy as np
import pandas as pd

from gpu_notebooks.rapids_benchmark.checks import OP_ORDER, flatten_result, results_match
from gpu_notebooks.rapids_benchmark.data import generate_data
from gpu_notebooks.rapids_benchmark.formatting import fmt_seconds, format_rows
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.timing import GPU_MIN_WARMUP_S, cuda_synchronize, time_operation

# cudf.pandas: the user's snippet is capped in size and time; the worker's whole run in time.
# The folder that holds gpu_notebooks/: the worker imports the package from there.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SNIPPET_MAX_CHARS = 4_000
SNIPPET_TIMEOUT_S = 60
WORKER_TIMEOUT_S = 300  # a whole cudf.pandas run; the GPU lock is held meanwhile
# The realistic step shown falling back to the CPU under cudf.pandas. Candidates are measured by
# bench/cudf_pandas_fallbacks.py on the device; swap the name here once one is measured to fall back.
FALLBACK_STEP = "rowwise_label"
# cudf.pandas' profiler inspects the whole call stack on every proxied call: a step that runs Python per
# row costs per row under it (on an H100, 50,000 rows of `apply(axis=1)` ran for hours). Which functions
# fall back does not depend on the row count, so the profiled call runs on a few hundred rows and is
# stopped after PROFILE_TIMEOUT_S whatever it does (see profile_fallbacks).
PROFILE_SAMPLE_ROWS = 300
PROFILE_TIMEOUT_S = 20.0


def fallback_steps() -> dict:
    """Realistic pandas steps that may fall back to the CPU under cudf.pandas (FALLBACK_STEP picks the app's)."""

    def rowwise_label(xdf, df, lookup):
        # A Python function per row: the commonest way pandas code leaves the GPU.
        return (
            df.head(200_000).apply(lambda r: "high" if r["value"] > 50 else "low", axis=1).to_frame("label")
        )

    def python_groupby_agg(xdf, df, lookup):
        return df.groupby("key_few")["value"].agg(lambda v: float(v.max() - v.min())).to_frame("spread")

    def rolling_python_apply(xdf, df, lookup):
        return (
            df["value"].head(200_000).rolling(20).apply(lambda w: w[-1] - w[0], raw=True).to_frame("change")
        )

    def map_python_function(xdf, df, lookup):
        return df["key_few"].head(200_000).map(lambda k: f"k{k:03d}").to_frame("key_label")

    return {
        "rowwise_label": rowwise_label,
        "python_groupby_agg": python_groupby_agg,
        "rolling_python_apply": rolling_python_apply,
        "map_python_function": map_python_function,
    }


def worker_main(request: dict) -> dict:
    """Runs in the worker process (pandas there may be cudf.pandas' proxy): time the app's own ops, unchanged.

    Writes each result as Parquet into `request["out_dir"]` (the parent's private temp folder) and returns
    per-op timings and, under cudf.pandas, the profiler's per-function GPU/CPU split. With `request["table"]`
    (your own table: Parquet copies the parent wrote in the session's folder) it loads those and runs
    user_ops' pandas-API functions instead.
    """
    accelerated = "cudf.pandas" in sys.modules
    sync = cuda_synchronize if accelerated else (lambda: None)
    if request.get("table"):
        from gpu_notebooks.rapids_benchmark.user_ops import pandas_user_ops

        df, lookup = pd.read_parquet(request["table"]), pd.read_parquet(request["lookup"])
        sample, sample_lookup = df.head(PROFILE_SAMPLE_ROWS), lookup
        steps = {**pandas_user_ops(request["spec"]), **fallback_steps()}
    else:
        df, lookup = generate_data(request["rows"], request.get("seed", 0))
        # The timings come from the unprofiled runs; the GPU/CPU split from one profiled call on a small sample.
        sample, sample_lookup = generate_data(
            min(request["rows"], PROFILE_SAMPLE_ROWS), request.get("seed", 0)
        )
        steps = {**{op: get_op(op) for op in OPS}, **fallback_steps()}
    out = {"accelerated": accelerated, "ops": {}, "profile_rows": min(request["rows"], PROFILE_SAMPLE_ROWS)}
    for op in request["ops"]:
        fn = functools.partial(steps[op], pd, df, lookup)
        timing = time_operation(
            fn, request["repeats"], sync=sync, min_warmup_s=GPU_MIN_WARMUP_S * accelerated
        )
        profile = (
            profile_fallbacks(functools.partial(steps[op], pd), sample, sample_lookup)
            if accelerated
            else None
        )
        path = os.path.join(request["out_dir"], f"{op}.parquet")
        flatten_result(timing.result).to_parquet(path)
        out["ops"][op] = {
            "times": timing.times,
            "warmup_s": timing.warmup_s,
            "rows_out": len(timing.result),
            "result": path,
            "profile": profile,
        }
        del timing
    if request.get("snippet") is not None:
        out["snippet"] = run_snippet_here(request["snippet"], df, request["out_dir"], sync)
    return out


def profile_fallbacks(
    step, sample, lookup, profiler_cls=None, timeout_s: float = PROFILE_TIMEOUT_S
) -> list[dict]:
    """One profiled call of `step(sample, lookup)` under cudf.pandas' Profiler: per pandas function, GPU/CPU calls.

    Its cost is capped twice: the caller passes a sample of PROFILE_SAMPLE_ROWS rows, and a timer stops the
    call after `timeout_s` (the report then says so in a row of its own). Runs in the worker's main thread.
    """
    import signal

    if profiler_cls is None:
        from cudf.pandas import Profiler as profiler_cls

    # A BaseException: cudf.pandas catches Exception around each GPU call and reruns it on the CPU, which
    # would swallow the stop; the timer also fires again every second until the stop is seen.
    class ProfileTimeout(BaseException):
        pass

    def stop(_signum, _frame):
        raise ProfileTimeout

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, timeout_s, 1.0)
    stopped = False
    try:
        with profiler_cls() as profiler:
            step(sample, lookup)
    except ProfileTimeout:
        stopped = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    rows = [
        {
            "function": name,
            **{f"{k}_calls": len(v) for k, v in t.items()},
            **{f"{k}_s": sum(v) for k, v in t.items()},
        }
        for name, t in profiler.per_function_stats.items()
    ]
    if stopped:
        rows.append(
            {"function": f"(profiling stopped after {timeout_s:.0f} s; calls above are those seen so far)"}
        )
    return rows


class SnippetFailedOnSample(Exception):
    """The snippet ran on the whole frame but raised on the profiler's small sample."""


def run_snippet_here(code: str, df, out_dir: str, sync) -> dict:
    """Runs in the worker: the user's snippet over `df`, timed once after a warm-up; its result saved as Parquet."""
    namespace = {"pd": pd, "np": np, "df": df}
    compiled = compile(code, "<your snippet>", "exec")

    def run(frame=df):
        namespace["df"] = frame
        exec(compiled, namespace)  # the snippet's own process, its own namespace: nothing of the app
        return namespace["result"]

    timing = time_operation(run, 1, sync=sync)
    result = timing.result
    profile = None
    if "cudf.pandas" in sys.modules:  # on a sample, bounded in time, as in worker_main

        def on_sample(frame, _lookup):
            # the user's code, on a sample it was not written for (e.g. df.iloc[500])
            try:
                run(frame)
            except Exception as err:
                raise SnippetFailedOnSample(type(err).__name__) from None

        try:
            profile = profile_fallbacks(on_sample, df.head(PROFILE_SAMPLE_ROWS), None)
        except SnippetFailedOnSample as err:
            profile = [
                {
                    "function": f"(no fallback report: your code failed on the {PROFILE_SAMPLE_ROWS:,}-row sample "
                    f"it is profiled on: {err})"
                }
            ]
    if hasattr(result, "columns"):  # a DataFrame
        frame = result.copy()
    elif hasattr(result, "to_frame"):  # a Series or an Index
        frame = result.to_frame()
    else:  # a scalar
        frame = pd.DataFrame({"result": [result]})
    frame.columns = [str(c) for c in frame.columns]
    path = os.path.join(out_dir, "snippet.parquet")
    frame = frame.reset_index(drop=False)
    try:
        frame.to_parquet(path)
    except (ValueError, TypeError):  # pyarrow's ArrowInvalid/ArrowTypeError: a column of mixed types (a row)
        frame.astype(str).to_parquet(path)  # shown as text, as a mixed column would print
    return {"seconds": timing.median, "result": path, "rows_out": len(frame), "profile": profile}


def worker_command() -> list[str]:
    """The worker's command line: a fresh Python that turns cudf.pandas on *before* pandas is first imported.

    Why a separate process: `cudf.pandas.install()` only works before pandas is imported, and it patches
    pandas for the whole process. This process imported real pandas at start-up (every other engine, and
    every other viewer's session, uses it); accelerating it here would change their measurements too.
    """
    boot = (
        "import faulthandler, json, sys\n"
        "faulthandler.enable()  # SIGABRT at the time limit prints where every thread was\n"
        "request = json.loads(sys.stdin.read())\n"
        "if request['accelerate']:\n"
        "    import cudf.pandas\n"
        "    cudf.pandas.install()\n"
        "sys.path.insert(0, request['package_root'])\n"
        "from gpu_notebooks.rapids_benchmark.cudf_pandas import worker_main\n"
        "print('WORKER-RESULT ' + json.dumps(worker_main(request)))\n"
    )
    return [sys.executable, "-c", boot]


def run_worker(request: dict, timeout_s: float) -> tuple[dict | None, str | None]:
    """Run the worker; its answer, or None and a message a user can act on (timeout, error, out of memory).

    The worker writes to temporary files, not pipes, and runs in its own process group: a process it leaves
    behind that still holds its output (a library's helper process) cannot keep this call waiting for an end
    of file, and a timeout or the end of the call stops the whole group.
    """
    import json
    import signal
    import subprocess

    request = {**request, "package_root": PACKAGE_ROOT}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            worker_command(), stdin=subprocess.PIPE, stdout=out, stderr=err, text=True, start_new_session=True
        )
        try:
            proc.communicate(json.dumps(request), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            where = stuck_at(proc, err)
            return (
                None,
                f"stopped after {timeout_s:.0f} s (the time limit){where}; nothing else was affected.",
            )
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((x for x in stdout.splitlines() if x.startswith("WORKER-RESULT ")), None)
    if proc.returncode == 0 and line:
        return json.loads(line.split(" ", 1)[1]), None
    if proc.returncode in (-9, 137):
        return None, "the worker was killed (out of memory?); the app keeps running."
    last = [x for x in stderr.strip().splitlines() if x.strip()][-1:] or [f"exit status {proc.returncode}"]
    return None, f"failed: {last[0][:500]}"


def stuck_at(proc, err) -> str:
    """Where a worker past its time limit was: SIGABRT makes its faulthandler print every thread's stack.

    The whole dump goes to this server's stderr (the operator's log; on the device, the run's log); the viewer
    gets the innermost frame of the worker's main thread, by file name only (never a server path).
    """
    import re
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGABRT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    err.seek(0)
    dump = err.read()
    start = dump.find("Current thread")
    if start < 0:
        return ""
    print(f"cudf.pandas worker stopped at its time limit:\n{dump[start:]}", file=sys.stderr)
    frame = re.search(r'File "([^"]+)", line (\d+) in (\S+)', dump[start:])
    if frame is None:
        return ""
    name, line, function = os.path.basename(frame.group(1)), frame.group(2), frame.group(3)
    return f", inside `{function}` ({name}, line {line})"


def user_code_allowed(mode: str | None, cli: dict) -> tuple[bool, str]:
    """Whether this session may run typed code, and why (a `marimo run` viewer must not gain code execution)."""
    if cli.get("allow_user_code"):
        return (
            True,
            "The app was started with `-- --allow-user-code`: viewers may run snippets on this server.",
        )
    if mode == "edit":
        return True, "In `marimo edit` you already run code on this server, so the snippet box is on."
    return False, (
        "**The snippet box is off**: this is a read-only app (`marimo run`), and running typed code would give "
        "every viewer code execution on the server. Open it with `marimo edit`, or start it with "
        "`marimo run rapids_benchmark_dashboard.py -- --allow-user-code` on a machine only you can reach."
    )


def prepare_snippet(code: str) -> tuple[str | None, str | None]:
    """The snippet ready to run (its last expression becomes `result`), or None and what is wrong with it."""
    import ast

    if not code.strip():
        return (
            None,
            "Type a pandas snippet that uses `df` (the generated data), e.g. `df.groupby('key_few').value.mean()`.",
        )
    if len(code) > SNIPPET_MAX_CHARS:
        return None, f"The snippet has {len(code):,} characters; the limit is {SNIPPET_MAX_CHARS:,}."
    try:
        tree = ast.parse(code, "<your snippet>")
    except SyntaxError as err:
        return None, f"Syntax error on line {err.lineno}: {err.msg}."
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.Assign(targets=[ast.Name("result", ast.Store())], value=last.value)
        ast.fix_missing_locations(tree)
    elif not any(
        isinstance(n, ast.Name) and n.id == "result" and isinstance(n.ctx, ast.Store) for n in ast.walk(tree)
    ):
        return None, "End the snippet with an expression (or assign `result = ...`): that value is compared."
    return ast.unparse(tree), None


def run_user_snippet(code: str, rows: int, accelerate: bool, timeout_s: float = SNIPPET_TIMEOUT_S) -> dict:
    """The snippet with pandas and (accelerate) cudf.pandas, each in its own worker; times, check, fallbacks."""
    import shutil

    prepared, why = prepare_snippet(code)
    if why:
        return {"error": why}
    runs = {}
    out_dir = tempfile.mkdtemp(prefix="rapids-snippet-")
    try:
        for label, accel in (("pandas", False), ("cudf.pandas", True)):
            if accel and not accelerate:
                continue
            folder = os.path.join(out_dir, label)
            os.makedirs(folder)
            request = {"rows": rows, "ops": [], "repeats": 1, "accelerate": accel, "out_dir": folder}
            answer, failure = run_worker({**request, "snippet": prepared}, timeout_s)
            if failure:
                return {"error": f"The snippet under {label} {failure}", "runs": runs}
            runs[label] = answer["snippet"] | {"accelerated": answer["accelerated"]}
            runs[label]["frame"] = pd.read_parquet(runs[label].pop("result"))
        out = {"runs": runs}
        if len(runs) == 2:
            out["match"] = results_match(runs["pandas"]["frame"], runs["cudf.pandas"]["frame"], "rows")
        return out
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def run_cudf_pandas_engine(
    sizes: list[int],
    ops: list[str],
    repeats: int,
    accelerate: bool = True,
    timeout_s: float = WORKER_TIMEOUT_S,
    dataset=None,
    checkpoint: Callable[[str], None] | None = None,
) -> dict:
    """The "cudf.pandas (no code change)" engine: the app's pandas op functions in a worker, checked against pandas.

    With accelerate=False the worker runs plain pandas (how CI tests the mechanism without a GPU).
    Returns records like run_benchmark's, the fallback report per op, and errors. `dataset` (a
    UserDataset) runs your own table: the worker loads its Parquet copy from the session's folder.
    `checkpoint(what)` is called before each size and may raise to stop (run_benchmark's).
    """
    import shutil

    records, profiles, errors = [], [], []
    wanted = [o for o in ops if o in OPS] + [FALLBACK_STEP]
    for n in sizes:
        if checkpoint is not None:
            checkpoint(f"cudf.pandas at {format_rows(n)} rows")
        out_dir = tempfile.mkdtemp(prefix="rapids-cudf-pandas-")
        try:
            # your own table: the Parquet copy the worker reads, and its ops
            yours = {} if dataset is None else dataset.worker_request(n)
            answer, failure = run_worker(
                {"rows": n, "ops": wanted, "repeats": repeats, "accelerate": accelerate, "out_dir": out_dir}
                | yours,
                timeout_s,
            )
            if failure:
                errors.append(f"cudf.pandas at {format_rows(n)} rows: {failure}")
                continue
            if dataset is not None:
                from gpu_notebooks.rapids_benchmark.user_ops import pandas_user_ops

                df, lookup = dataset.frames(n)
                steps = {**pandas_user_ops(dataset.spec()), **fallback_steps()}
                orders, tolerance = {**OP_ORDER, **dataset.orders}, {"atol": dataset.atol}
            else:
                df, lookup = generate_data(n)
                steps = {**{op: get_op(op) for op in OPS}, **fallback_steps()}
                orders, tolerance = OP_ORDER, {}
            for op, got in answer["ops"].items():
                expected = steps[op](pd, df, lookup)
                ok, detail = results_match(
                    expected, pd.read_parquet(got["result"]), orders.get(op, "rows"), **tolerance
                )
                del expected
                times = got["times"]
                records.append(
                    {
                        "rows": n,
                        "op": op,
                        "engine": "cudf_pandas",
                        "median_s": statistics.median(times),
                        "min_s": min(times),
                        "max_s": max(times),
                        "warmup_s": got["warmup_s"],
                        "repeats": repeats,
                        "rows_out": got["rows_out"],
                        "bytes_touched": math.nan,
                        "on_gpu": answer["accelerated"],
                        "load_s": math.nan,
                        "load_kind": "data generated in the worker"
                        if dataset is None
                        else "your table, read from Parquet in the worker",
                        "h2d_s": math.nan,
                        "d2h_s": 0.0,
                        "match": ok,
                        "checked_by": "pandas",
                        "detail": detail,
                    }
                )
                for row in got["profile"] or []:
                    profiles.append({"rows": n, "op": op, **row})
            del df, lookup
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
    return {"records": records, "profiles": profiles, "errors": errors}


def snippet_report(out: dict, accelerated: bool) -> str:
    """The snippet's outcome: times under pandas and cudf.pandas, the check, or the clear error."""
    if out.get("error"):
        return f"**Your snippet did not run:** {out['error']}"
    runs = out["runs"]
    lines = [
        f"- **pandas**: {fmt_seconds(runs['pandas']['seconds'])}, {runs['pandas']['rows_out']:,} result rows"
    ]
    if "cudf.pandas" in runs:
        lines.append(f"- **cudf.pandas**: {fmt_seconds(runs['cudf.pandas']['seconds'])}")
        ok, detail = out["match"]
        lines.append(f"- results {'✓ match' if ok else '✗ DIFFER'}: {detail}")
        fallbacks = fallback_table(
            [{"rows": 0, "op": "snippet", **p} for p in runs["cudf.pandas"].get("profile") or []]
        )
        if fallbacks is not None:
            table = fallbacks.drop(columns="operation")
            lines.append(
                f"\nWhat ran where, from cudf.pandas' profiler on the first {PROFILE_SAMPLE_ROWS:,} rows of `df` "
                "(its times are the profiled call's; the timings above are unprofiled):"
            )
            lines.append("\n| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    elif not accelerated:
        lines.append("- **cudf.pandas**: not run — no cuDF on a GPU here (see the box at the top).")
    return "\n".join(lines)


def fallback_table(profiles: list[dict]) -> pd.DataFrame | None:
    """The fallback report: per op and pandas function, calls and seconds on the GPU and on the CPU."""
    if not profiles:
        return None
    table = pd.DataFrame(profiles)
    for col in ("gpu_calls", "cpu_calls", "gpu_s", "cpu_s"):
        if col not in table:
            table[col] = 0
    table = table.fillna(0)
    top = table[table["rows"] == table["rows"].max()]
    return pd.DataFrame(
        {
            "operation": top["op"],
            "pandas function": top["function"],
            "on GPU (calls)": top["gpu_calls"].astype(int),
            "GPU time": top["gpu_s"].map(fmt_seconds),
            "fell back to CPU (calls)": top["cpu_calls"].astype(int),
            "CPU time": top["cpu_s"].map(fmt_seconds),
        }
    )
