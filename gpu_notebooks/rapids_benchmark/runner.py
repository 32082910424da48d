"""The benchmark run: every size, engine and op timed, checked and recorded, with progress and samplers."""

from __future__ import annotations

import functools
import gc
import math
import os
import time
from collections.abc import Callable

import marimo as mo

from gpu_notebooks.gpu.gpm import GpmSampler
from gpu_notebooks.gpu.nvml import energy_joules, read_energy_mj, read_gpu_status
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.rapids_benchmark.checks import OP_ORDER, invariant_check, results_match
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row, generate_data, generate_lookup
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import HOST_TO_GPU
from gpu_notebooks.rapids_benchmark.errors import describe_error, is_reported_failure
from gpu_notebooks.rapids_benchmark.files import data_files
from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS, format_rows
from gpu_notebooks.rapids_benchmark.ops import FILE_OPS, bytes_touched, get_op
from gpu_notebooks.rapids_benchmark.sizing import (
    GPU_WORKING_FACTOR,
    host_working_factor,
    memory_shortfall,
    read_free_memory,
)
from gpu_notebooks.rapids_benchmark.telemetry import attach_gpm, engine_gpus
from gpu_notebooks.rapids_benchmark.timing import CPU_WARMUP_ROWS, GPU_MIN_WARMUP_S, Timing, time_operation
from gpu_notebooks.session import stop_if_session_closed

# The NVML sampler's period during a run (the intro says how often it samples from this).
SAMPLE_INTERVAL_S = 0.1


def finish_record(
    eng,
    op,
    n,
    repeats,
    timing,
    dev_df,
    load_s,
    expected,
    clock=time.perf_counter,
    dev_lookup=None,
    dataset=None,
) -> dict:
    """The record of one timed op, checked: against pandas' result, or by a self-check where pandas has none.

    pandas (the engine named "pandas") is the reference. Without its result for this op and size (pandas
    failed, or the size is beyond it) a pandas-API result (cuDF, Dask) is self-checked from the input and
    a Polars one is marked not checked: no other engine's result silently becomes the reference.
    `dataset` (your own table) gives its columns, the sort's column and the checks' absolute tolerance.
    """
    result = timing.result
    rec = {
        "rows": n,
        "op": op,
        "engine": eng.name,
        "median_s": timing.median,
        "min_s": timing.min,
        "max_s": timing.max,
        "warmup_s": timing.warmup_s,
        "repeats": repeats,
        "rows_out": len(result),
        "bytes_touched": bytes_touched(op, dev_df, result, dataset.columns_read(op) if dataset else None),
        "on_gpu": eng.on_gpu,
        "load_s": load_s,
        "load_kind": eng.load_kind,
        "h2d_s": load_s if eng.load_kind == HOST_TO_GPU else math.nan,
        "d2h_s": 0.0,
        "energy_j": op_energy_j(timing),
        "match": None,
        "checked_by": "",
        "detail": "reference",
    }
    if eng.name == "pandas":
        return rec
    if expected is not None:
        if eng.to_host is not None and op != "pipeline":  # the pipeline's answer is in pandas already
            t0 = clock()
            eng.to_host(result)
            eng.sync()
            rec["d2h_s"] = clock() - t0
        if op == "pipeline":  # every engine's answer is a pandas frame
            check = results_match
        else:
            check = eng.compare or functools.partial(results_match, to_library=eng.to_device)
        order, tolerance = (
            (OP_ORDER[op], {}) if dataset is None else (dataset.order(op), {"atol": dataset.atol})
        )
        rec["match"], rec["detail"] = check(expected, result, order, **tolerance)
        rec["checked_by"] = "pandas"
    elif op not in FILE_OPS and (eng.compare is None or eng.load is not None):  # pandas API: from the input
        rec["match"], rec["detail"] = invariant_check(op, dev_df, dev_lookup, result)
        rec["checked_by"] = "self-check"
    else:
        rec["detail"] = "not checked: pandas, the reference, has no result for this op and size"
    return rec


def op_energy_j(timing: Timing) -> float | None:
    """Joules per call of an op: NVML's energy counter across its timed repeats, divided by their number."""
    joules = energy_joules(*timing.counter)
    return None if joules is None or not timing.times else joules / len(timing.times)


def run_benchmark(
    sizes: list[int],
    ops: list[str],
    engines: list[Engine],
    repeats: int,
    seed: int = 0,
    cpu_warmup_rows: int = CPU_WARMUP_ROWS,
    tick: Callable[..., None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    free_memory: Callable[[], dict] | None = None,
    dataset=None,
    checkpoint: Callable[[str], None] | None = None,
) -> dict:
    """Time every op on every engine at every size; check each result against pandas'.

    Free memory (`free_memory()`: {"host": bytes, "gpu": bytes or None}) is read before each size and each
    engine: a size whose host working set no longer fits stops the run, an engine that no longer fits is
    skipped at that size, each with a message — never an out-of-memory kill of the whole server.
    `tick(label, gpus)` is called before the warm-up and after each repeat (`gpus`: the engine's GPUs).
    `dataset` (a UserDataset: your own table) replaces the generated data: its frames, files and checks.
    `checkpoint(what_comes_next)` is called at every operation boundary (each size, each engine's load, each
    engine's op); it raises to stop the run there (SessionClosed when the viewer's tab has gone).
    """
    records, spans, errors, generation = [], [], [], []
    tick = tick or (lambda label, gpus=None: None)
    checkpoint = checkpoint or (lambda what: None)
    free_memory = free_memory or functools.partial(read_free_memory, engines)
    bytes_per_row = estimate_bytes_per_row() if dataset is None else dataset.bytes_per_row
    for n in sizes:
        checkpoint(f"{format_rows(n)} rows")
        need = {e.name: n * bytes_per_row * host_working_factor([e.name]) for e in engines}
        start_free = free_memory()
        short = memory_shortfall("host RAM", sum(need.values()), start_free["host"])
        if short:
            errors.append(
                f"Stopped before {format_rows(n)} rows: the run with "
                f"{', '.join(ENGINE_LABELS.get(e.name, e.name) for e in engines)} {short}."
            )
            break
        gpu_short = memory_shortfall("GPU memory", n * bytes_per_row * GPU_WORKING_FACTOR, start_free["gpu"])
        t0 = clock()
        # Engines that build their own data (Dask workers) need none from the host.
        if dataset is not None:
            df, lookup = dataset.frames(n)
        else:
            df, lookup = (
                generate_data(n, seed)
                if any(e.load is None for e in engines)
                else (None, generate_lookup(seed))
            )
        generation.append({"rows": n, "seconds": clock() - t0})
        files = None
        if df is not None and any(op in FILE_OPS for op in ops):
            files, why = data_files(n, seed, df) if dataset is None else dataset.files(n)  # never timed
            if why:
                errors.append(why)
            else:
                generation[-1]["file_bytes"] = {kind: os.path.getsize(path) for kind, path in files.items()}
        frames, load_s = {}, {}
        for k, eng in enumerate(engines):
            checkpoint(f"{eng.name} took {format_rows(n)} rows")
            if eng.on_gpu and eng.load is None and gpu_short:
                errors.append(f"{eng.name} skipped at {format_rows(n)} rows: it {gpu_short}.")
                continue
            if k > 0:
                # What this size still needs: its whole budget less what it has taken so far — credited only
                # up to the frames made so far (the data, its generation's transient copy, one per loaded
                # engine), so memory another program took since the size started is not mistaken for ours.
                now = free_memory()["host"]
                credit = (k + 1) * n * bytes_per_row
                taken = min(max(start_free["host"] - now, 0), credit) if now is not None else 0
                short = memory_shortfall("host RAM", sum(need.values()) - taken, now)
                if short:
                    errors.append(
                        f"{eng.name} skipped at {format_rows(n)} rows: the rest of this size {short}."
                    )
                    need[eng.name] = 0.0
                    continue
            try:
                # A tiny copy first: context set-up is not billed to the data.
                if eng.on_gpu and eng.load is None:
                    eng.to_device(df.head(1000))
                    eng.sync()
                t0 = clock()
                frames[eng.name] = (
                    eng.load(n, seed, df, lookup) if eng.load else (eng.to_device(df), eng.to_device(lookup))
                )
                eng.sync()
                load_s[eng.name] = clock() - t0 if eng.load_kind else 0.0
            except Exception as err:
                if not is_reported_failure(err):
                    raise
                errors.append(f"{eng.name} could not take {format_rows(n)} rows: {describe_error(err)}")
        gc.collect()  # a failed copy's partial frame goes now, not at the end of the run
        for op in ops:
            expected = None
            from_file = op in FILE_OPS
            if from_file and files is None:
                continue
            for eng in engines:
                if eng.name not in frames or (from_file and not (eng.file_ops and op in eng.file_ops)):
                    continue
                xdf, (dev_df, dev_lookup) = eng.lib, frames[eng.name]
                if from_file:  # the op reads the size's file: it gets the paths, not the frame
                    fn, dev_df, small = eng.file_ops[op], files, None
                else:
                    fn = eng.ops[op] if eng.ops else get_op(op)
                    small = dev_df.head(cpu_warmup_rows) if eng.slice_warmup and n > cpu_warmup_rows else None
                label = f"{eng.name} · {op} · {format_rows(n)} rows"
                checkpoint(label)
                tick(f"{label} · warm-up", eng.gpus)
                start = clock()
                failure, checking = None, False
                try:
                    timing = time_operation(
                        functools.partial(fn, xdf, dev_df, dev_lookup),
                        repeats,
                        sync=eng.sync,
                        warmup=functools.partial(fn, xdf, small, dev_lookup) if small is not None else None,
                        on_repeat=lambda i, label=label, g=eng.gpus: tick(
                            f"{label} · repeat {i + 1}/{repeats}", g
                        ),
                        min_warmup_s=GPU_MIN_WARMUP_S if eng.on_gpu else 0.0,
                        read_counter=functools.partial(read_energy_mj, eng.gpus) if eng.on_gpu else None,
                    )
                    spans.append(
                        {
                            "engine": eng.name,
                            "on_gpu": eng.on_gpu,
                            "op": op,
                            "rows": n,
                            "start": start,
                            "end": clock(),
                            "gpus": eng.gpus,
                            # the timed repeats alone, for the GPM windows (perf_counter, as start and end)
                            "repeats": [(t, t + d) for t, d in zip(timing.starts, timing.times, strict=True)],
                        }
                    )
                    checking = True  # the op ran: an error in the copy back or the check is no bad file
                    rec = finish_record(
                        eng,
                        op,
                        n,
                        repeats,
                        timing,
                        frames[eng.name][0],
                        0.0 if from_file else load_s[eng.name],
                        expected,
                        clock,
                        dev_lookup,
                        dataset,
                    )
                except Exception as err:  # in the op, the copy back or the check
                    # A file that cannot be read (truncated, corrupt) is bad input, not a bug: every reader
                    # says so with an OSError, ValueError (Arrow, pandas) or RuntimeError (libcudf).
                    unreadable = (
                        from_file and not checking and isinstance(err, (OSError, ValueError, RuntimeError))
                    )
                    if not (is_reported_failure(err) or unreadable):
                        raise
                    failure = f"{label}: {describe_error(err)}"
                if failure is not None:
                    # collected outside the except block: inside it, the error still pins the op's frames
                    errors.append(failure)
                    timing = None
                    gc.collect()
                    continue
                if eng.name == "pandas":
                    expected = timing.result
                records.append(rec)
                del timing
            del expected
            gc.collect()
        del frames, df, lookup
        gc.collect()
    return {"records": records, "spans": spans, "errors": errors, "generation": generation}


def run_sized_benchmark(
    plan: dict,
    engines: list[Engine],
    tick: Callable[[str], None] | None = None,
    dataset=None,
    checkpoint: Callable[[str], None] | None = None,
) -> dict:
    """run_benchmark, with sizes beyond one GPU (or host RAM) run only on engines that build their own data."""
    limit = plan.get("single_engine_rows", plan["rows"])
    small = [n for n in plan["sizes"] if n <= limit]
    large = [n for n in plan["sizes"] if n > limit]
    spread = [e for e in engines if e.load is not None]
    out = run_benchmark(
        small, plan["ops"], engines, plan["repeats"], tick=tick, dataset=dataset, checkpoint=checkpoint
    )
    if large and spread:
        more = run_benchmark(large, plan["ops"], spread, plan["repeats"], tick=tick, checkpoint=checkpoint)
        for key in ("records", "spans", "errors", "generation"):
            out[key] += more[key]
    return out


def progress_total(plan: dict, engines: list[Engine]) -> int:
    """Progress steps of a run: warm-up + repeats per op and engine, sizes beyond one GPU on Dask alone."""
    limit = plan.get("single_engine_rows", plan["rows"])
    spread = sum(1 for e in engines if e.load is not None)
    runs = sum(len(engines) if n <= limit else spread for n in plan["sizes"])
    return runs * len(plan["ops"]) * (plan["repeats"] + 1)


def run_with_progress(
    plan: dict,
    engines: list[Engine],
    dataset=None,
    checkpoint: Callable[[str], None] = stop_if_session_closed,
) -> dict:
    """run_benchmark with a live progress bar and the NVML sampler running around it (`dataset`: your table).

    By default it stops at the next operation boundary once the viewer's marimo session is gone.
    """
    total = max(progress_total(plan, engines), 1)
    gpus = engine_gpus(engines)
    sampler = GpuSampler(interval_s=SAMPLE_INTERVAL_S)
    gpm = GpmSampler(device_indices=gpus) if gpus != [] else None
    t_start = time.perf_counter()
    sampler.start()
    if gpm is not None:
        gpm.start()
    try:
        with mo.status.progress_bar(
            total=total, title="Benchmarking", show_eta=True, remove_on_exit=True
        ) as bar:
            done = [0]

            def tick(label: str, gpus=None) -> None:
                done[0] += 1
                bar.update(subtitle=f"{label}{sampler.latest_text(gpus)}")

            out = run_sized_benchmark(plan, engines, tick, dataset, checkpoint)
            # Skipped or failed measurements tick less: the bar still ends full.
            if total > done[0]:
                bar.update(increment=total - done[0], subtitle="done")
    finally:
        sampler.stop()
        if gpm is not None:
            gpm.stop()
    out["wall_s"] = time.perf_counter() - t_start
    out["samples"] = sampler.samples_relative_to(sampler.t0)
    out["sample_rate_hz"] = sampler.rate_hz()
    for s in out["spans"]:
        s["start"] -= sampler.t0
        s["end"] -= sampler.t0
        s["repeats"] = [(a - sampler.t0, b - sampler.t0) for a, b in s.get("repeats", [])]
    out.update(gpm_outcome(gpm, sampler.t0))
    if out["gpm_samples"]:
        attach_gpm(out["records"], out["spans"], out["gpm_samples"], origin=gpm.t0 - sampler.t0)
    out["peak_bandwidth_gbs"] = (
        max((g.get("peak_bandwidth_gbs") or 0 for g in read_gpu_status()), default=0) or None
    )
    out["plan"] = plan
    out["peak_gpu_memory_gb"] = sampler.peak_memory_gb()
    return out


def gpm_outcome(gpm, t0: float) -> dict:
    """A run's GPM samples on the classic sampler's clock (t seconds after `t0`), their rate, or why none."""
    if gpm is None:
        return {"gpm_samples": [], "gpm_rate_hz": 0.0, "gpm_reason": "a CPU-only run: no GPU to read."}
    if not gpm.available:
        return {"gpm_samples": [], "gpm_rate_hz": 0.0, "gpm_reason": gpm.unavailable_reason}
    shift = gpm.t0 - t0
    return {
        "gpm_samples": [{**s, "t": s["t"] + shift} for s in gpm.samples],
        "gpm_rate_hz": gpm.rate_hz(),
        "gpm_reason": "",
    }
