"""Does each app give GPU memory back after a run, and after a run that ran out of memory?

What it measures. Each app runs in its own child process (so one app's CUDA context never shows in the
other's numbers) and is driven through its own helpers, imported from the notebook and called in the order
its cells call them. Readings are taken at these points:

  (a) before      the process started, the app's start-up done, CUDA context created, nothing run yet
  (b) run ok      after a successful run
  (c) OOM ...     after a run that ran out of GPU memory, handled by the app's own error handling
  (d) run ok      after a second successful run (the app still works)
  (e) caches      after gc.collect() and emptying the allocator caches: NOT an app step; it tells memory a
                  cache holds (harmless, reusable) from memory something still references (a leak)

At each point: NVML used memory of the device and of this process, host RSS, and per app
- RAPIDS: bytes cuDF holds through RMM (a StatisticsResourceAdaptor is pushed onto the app's unchanged
  RMM resource before the app starts; `--no-rmm-stats` leaves it out) and the CuPy pool (used / total);
- LLM: torch.cuda.memory_allocated / memory_reserved and torch's pinned host cache.
Objects the marimo app keeps as cell globals (bench/summary; run, stop_reason, history, sampler...) are
kept alive until the next run, as the notebook keeps them.

The runs.
- RAPIDS (`rapids_benchmark_dashboard.py`): the Run button's cells: read_gpu_status / detect_cudf /
  detect_polars / read_host_status at start-up (the app reads free GPU memory once, at start), then per
  run plan_run → make_engines → gpu_lock → run_with_progress → summarize_records. Success: --rapids-rows
  (10M) rows, all five ops, pandas + Polars (when installed) + cuDF, --repeats (1). Out of memory: the
  same run while a "ballast" (a raw cudaMalloc outside RMM and CuPy, standing for another program on the
  card) leaves only part of the memory free, so the failure happens inside the app's run path and is
  cleaned up by run_benchmark's own except blocks. Two failures: "OOM load" leaves 0.5x the frame's
  size free (cudf.from_pandas fails); "OOM ops" leaves 1.6x (the frame loads, join/sort fail). The
  ballast is freed before (c) is read. Why not simply a size beyond the card: the app's plan_run caps the
  rows to fit, and a pandas frame bigger than an 80 GB card does not fit the 128 GB host either.
- LLM (`llm_finetuning_dashboard.py`): the seven step cells' own helpers, which the cells call too (no copy
  of the cells here): resolve_precision → load_step (the click's GPU lease) → inject_step → prepare_step →
  train_step_body (TrainingStopped → the run released inside it) → evaluate_step → save_step (the run and
  its lease released). Model: GPT-2 124M (GPT2Config(), random weights, the app's offline tokenizer, as
  bench/llm_pipeline.py builds it: there is no hub on the GPU box); `--llm-model tiny` uses the app's own
  offline fallback (load_model_and_tokenizer). Success: built-in data, batch 16 x 128, 1 epoch (10 steps).
  Out of memory, with batch B x 1024 tokens of long synthetic text, B a power of two from the free memory
  (2048 on an 80 GB card; --llm-oom-batch overrides): "OOM train" (B training rows, 8 eval rows: the
  first training step fails, train_steps' handler) and "OOM eval" (B eval rows, plain path: the "before"
  evaluation fails, evaluate_run's handler; the fast path's chunked loss does not run out at this size).

Exceptions that escape an app's handlers are caught here, recorded as "ESCAPED ...", and the app's
state is left as the notebook would leave it (nothing released), so the next reading shows what stays.

Run on the GPU box (from the repo root; carry .gpu/cudf.tar.xz and .gpu/py.tar.xz):
    source bench/device_setup.sh && python3 bench/memory_release.py --json $OUT/memory.json
Local check on a CPU (pandas only and the tiny model; the OOM runs use the same long-text data at batch
16, and the out-of-memory errors are simulated: a stand-in cuDF engine raises RMM's MemoryError, a forward
pre-hook raises torch.OutOfMemoryError, both inside the app's own run path; about 20 s on 2 cores):
    .venv/bin/python bench/memory_release.py --cpu-check
Other knobs: --rapids-rows, --repeats, --llm-model tiny, --llm-oom-batch, --llm-batch and --llm-speed
(where the app has TrainSettings.speed; `--llm-speed compile --llm-batch 8` takes the torch.compile +
CUDA-graphs path), --apps rapids|llm, --slack-mib (growth still counted as given back, default 64).
Without CUDA or cuDF (and without --cpu-check) each app is reported as skipped with the reason.
Expected wall time on an H100: about 2 minutes (RAPIDS ~40 s, LLM ~60 s, plus imports).
"""

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2**20
APPS = ("rapids", "llm")
SIMULATED = "(simulated by --cpu-check)"


class CellStopped(Exception):
    """Stands for marimo's mo.stop: the app's cell ends here and the following cells do not run."""


# ---------------------------------------------------------------- readings


def host_rss() -> int | None:
    """Resident set size of this process in bytes."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except Exception:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
    return None


class Probe:
    """NVML readings of one device (whole device and this process) plus the app's allocator readings."""

    def __init__(self, extra, uuid=None, pci_bus_id=None, sink=None):
        self.extra, self.nvml, self.handle, self.sink, self.points = extra, None, None, sink, []
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = None
            with contextlib.suppress(Exception):
                if uuid:
                    handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
                elif pci_bus_id:
                    handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            self.handle = handle or pynvml.nvmlDeviceGetHandleByIndex(0)
            self.nvml = pynvml
        except Exception:
            self.nvml = None

    def nvml_readings(self) -> dict:
        out = {"nvml_used": None, "nvml_total": None, "nvml_proc": None}
        if self.nvml is None:
            return out
        nvml = self.nvml
        with contextlib.suppress(Exception):
            nvml.nvmlInit()  # reference counted: an app's sampler may have shut its own session down
            info = nvml.nvmlDeviceGetMemoryInfo(self.handle)
            out.update(nvml_used=int(info.used), nvml_total=int(info.total))
        with contextlib.suppress(Exception):
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    out["nvml_proc"] = int(proc.usedGpuMemory)
        return out

    def read(self, point, outcome="", seconds=None, info=None) -> dict:
        time.sleep(0.2)  # let NVML's counters catch up with frees
        reading = {"point": point, "outcome": outcome, "seconds": seconds, "rss": host_rss()}
        reading.update(self.nvml_readings())
        reading.update(self.extra())
        reading["info"] = info or {}
        print(f"#   {point}: {outcome} | NVML used {fmt_mib(reading['nvml_used'])} MiB", flush=True)
        self.points.append(reading)
        if self.sink:  # partial results survive a crash or a timeout of the child
            self.sink(self.points)
        return reading


def fmt_mib(value, signed=False) -> str:
    if value is None:
        return "—"
    return f"{value / MIB:+,.0f}" if signed else f"{value / MIB:,.0f}"


def next_pow2(x: float) -> int:
    return 1 << max(int(math.ceil(math.log2(max(x, 1)))), 0)


# ---------------------------------------------------------------- RAPIDS


def rapids_child(args) -> dict:
    """The RAPIDS dashboard's start-up and Run-button cells, four runs, readings between them."""
    cpu = args.cpu_check
    rmm_info = {}
    if not cpu:
        try:  # before the app's first allocation, so every cuDF allocation is counted
            import rmm
            import rmm.statistics

            rmm_info["resource"] = type(rmm.mr.get_current_device_resource()).__name__
            if args.rmm_stats:
                rmm.statistics.enable_statistics()
                rmm_info["statistics"] = "StatisticsResourceAdaptor pushed on top"
        except Exception as err:
            rmm_info["error"] = f"{type(err).__name__}: {err}"

    import pandas as pd

    from gpu_notebooks.gpu.lock import gpu_turn
    from gpu_notebooks.gpu.nvml import read_gpu_status
    from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row
    from gpu_notebooks.rapids_benchmark.engine import Engine
    from gpu_notebooks.rapids_benchmark.engines import detect_cudf, make_engines
    from gpu_notebooks.rapids_benchmark.ops import OPS
    from gpu_notebooks.rapids_benchmark.polars_engine import detect_polars
    from gpu_notebooks.rapids_benchmark.report import summarize_records
    from gpu_notebooks.rapids_benchmark.runner import run_with_progress
    from gpu_notebooks.rapids_benchmark.sizing import plan_run, read_host_status

    # The start-up cell (once per app process): the app reads free GPU memory here and plans with it.
    gpus = read_gpu_status()
    cudf, cudf_message = detect_cudf(len(gpus), force_cpu=cpu)
    if cudf is None and not cpu:
        return {"status": "skipped", "message": f"RAPIDS skipped: {cudf_message}"}
    if "rmm" in sys.modules:  # cuDF's import must not have replaced the resource the statistics wrap
        with contextlib.suppress(Exception):
            resource = sys.modules["rmm"].mr.get_current_device_resource()
            rmm_info["resource_after_cudf_import"] = type(resource).__name__
    polars, polars_gpu, polars_message = detect_polars(cudf, force_cpu=cpu)
    if cpu:
        polars = None  # the CPU check runs pandas alone
    host = read_host_status()
    bytes_per_row = estimate_bytes_per_row()
    rows = args.rapids_rows or (200_000 if cpu else 10_000_000)
    frame_bytes = int(bytes_per_row * rows)

    def extra():
        out = {"fw_alloc": None, "fw_cache": None, "pinned": None, "fw_peak": None, "cupy_used": None}
        if "rmm" in sys.modules and not cpu:
            with contextlib.suppress(Exception):
                import rmm.statistics

                stats = rmm.statistics.get_statistics()
                if stats is not None:
                    get = stats.get if isinstance(stats, dict) else lambda key: getattr(stats, key)
                    out["fw_alloc"], out["fw_peak"] = int(get("current_bytes")), int(get("peak_bytes"))
        if "cupy" in sys.modules and not cpu:
            with contextlib.suppress(Exception):
                import cupy

                pool = cupy.get_default_memory_pool()
                out["cupy_used"], out["fw_cache"] = int(pool.used_bytes()), int(pool.total_bytes())
        return out

    pci = None
    if not cpu:
        with contextlib.suppress(Exception):
            import cupy

            pci = cupy.cuda.Device(0).pci_bus_id
    probe = Probe(extra, pci_bus_id=pci, sink=args.sink)
    state = {}  # the cell globals marimo keeps until the next run: bench, summary (and the last-run state)

    def standin(kind):
        """--cpu-check: a stand-in GPU engine whose load or ops raise the error RMM raises."""

        def oom(*_args, **_kwargs):
            raise MemoryError(f"std::bad_alloc: out_of_memory: RMM failure {SIMULATED}")

        if kind == "load":
            return Engine("cudf", pd, on_gpu=True, to_device=oom)
        return Engine("cudf", pd, on_gpu=True, ops=dict.fromkeys(OPS, oom))

    def app_run(label, fault=None, leave_free=None):
        state.clear()  # pressing Run again re-runs the cells: their old globals go
        info = {"rows": rows}
        started = time.perf_counter()
        # The plan cell, with the free memory the app read at start-up.
        plan = plan_run(
            requested_rows=rows,
            ops=list(OPS),
            repeats=args.repeats,
            sweep=False,
            bytes_per_row=bytes_per_row,
            free_gpu_bytes=min((g["memory_free_bytes"] or 0 for g in gpus), default=None) if cudf else None,
            free_host_bytes=host["available_bytes"],
            all_gpus_free_bytes=None,
        )
        info["cap_message"] = plan["cap_message"]
        engines = make_engines(cudf, polars, polars_gpu)
        if fault:
            engines.append(standin(fault))
        outcome = ""
        with ballast(leave_free) as held:
            info.update(held)
            try:
                with gpu_turn():
                    bench = run_with_progress(plan, engines)
                summary = summarize_records(bench["records"], bench["peak_bandwidth_gbs"])
                state.update(bench=bench, summary=summary, last_run={"bench": bench, "summary": summary})
                errors = bench["errors"]
                info["errors"] = errors
                info["peak_gpu_memory_gb"] = bench.get("peak_gpu_memory_gb")
                info["checks"] = (
                    {k: int(v) for k, v in summary["match"].value_counts().items()}
                    if "match" in summary
                    else {}
                )
                ooms = [e for e in errors if "out of memory" in e]
                # run_benchmark's messages: "cudf could not take 10M rows: …" or "cudf · sort · 10M rows: …"
                where = sorted({"load" if "could not take" in e else e.split(" · ")[1] for e in ooms})
                if ooms:
                    outcome = f"OOM caught by app ({', '.join(where)})"
                elif errors:
                    outcome = f"FAILED, not reported as OOM ({len(errors)} errors)"
                else:
                    outcome = f"ok, {len(bench['records'])} timings"
            except Exception as err:  # escaped the app's handlers: the cell would show this error
                outcome = f"ESCAPED {type(err).__name__}"
                info["reason"] = f"{type(err).__name__}: {err}"
        if (fault or leave_free is not None) and outcome.startswith("ok"):
            outcome = f"did NOT fail ({outcome})"
        return probe.read(label, outcome, round(time.perf_counter() - started, 2), info)

    @contextlib.contextmanager
    def ballast(leave_free):
        """Hold all but `leave_free` bytes of the device with one raw cudaMalloc (outside RMM and CuPy)."""
        if leave_free is None:
            yield {}
            return
        import cupy

        runtime = cupy.cuda.runtime
        free = runtime.memGetInfo()[0]
        size, pointer = max(free - int(leave_free), 0), None
        while size > 0 and pointer is None:
            try:
                pointer = runtime.malloc(size)
            except Exception:
                size -= 64 * MIB
        held = {
            "ballast_mib": round(size / MIB),
            "free_during_mib": round(runtime.memGetInfo()[0] / MIB),
            "frame_mib": round(frame_bytes / MIB),
        }
        print(f"#   ballast {held}", flush=True)
        try:
            yield held
        finally:
            if pointer is not None:
                runtime.free(pointer)

    print(
        f"# rapids: {cudf_message} | {polars_message} | {rows:,} rows, {bytes_per_row:.1f} B/row", flush=True
    )
    points = [probe.read("(a) before", "start-up cells done" + ("" if cpu else ", CUDA context live"))]
    points.append(app_run("(b) run ok"))
    if cpu:
        points.append(app_run("(c) OOM load", fault="load"))
        points.append(app_run("(c) OOM ops", fault="op"))
    else:
        points.append(app_run("(c) OOM load", leave_free=0.5 * frame_bytes))
        points.append(app_run("(c) OOM ops", leave_free=1.6 * frame_bytes))
    points.append(app_run("(d) run ok"))
    state.clear()
    gc.collect()
    if "cupy" in sys.modules and not cpu:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    points.append(probe.read("(e) caches", "globals dropped, gc, CuPy pools emptied (not an app step)"))
    env = {
        "card": gpus[0]["name"] if gpus else "CPU",
        "cudf": getattr(cudf, "__version__", None),
        "rmm": rmm_info,
        "rows": rows,
        "repeats": args.repeats,
        "bytes_per_row": bytes_per_row,
        "engines": [e.name for e in make_engines(cudf, polars, polars_gpu)],
    }
    return {"status": "ok", "env": env, "points": points}


# ---------------------------------------------------------------- LLM


def llm_child(args) -> dict:
    """The fine-tuning dashboard's seven step cells, four runs, readings between them."""
    import torch

    cpu = args.cpu_check
    if not cpu and not torch.cuda.is_available():
        return {
            "status": "skipped",
            "message": f"LLM skipped: torch {torch.__version__} sees no CUDA GPU "
            "(use --cpu-check for the CPU path).",
        }
    from dataclasses import fields, replace

    import pandas as pd
    from transformers import GPT2Config

    from gpu_notebooks.llm_finetuning.adapter import zip_folder
    from gpu_notebooks.llm_finetuning.environment import describe_environment
    from gpu_notebooks.llm_finetuning.loading import load_model_and_tokenizer
    from gpu_notebooks.llm_finetuning.lora import parameter_breakdown, parameter_counts
    from gpu_notebooks.llm_finetuning.models import (
        build_offline_tokenizer,
        offline_gpt2,
        tiny_gpt2_config,
        tokenizer_corpus,
    )
    from gpu_notebooks.llm_finetuning.precision import bf16_native, choose_device, resolve_precision
    from gpu_notebooks.llm_finetuning.settings import TrainSettings
    from gpu_notebooks.llm_finetuning.steps import (
        evaluate_step,
        inject_step,
        load_step,
        prepare_step,
        save_step,
        train_step_body,
    )
    from gpu_notebooks.llm_finetuning.tasks import builtin_examples
    from gpu_notebooks.llm_finetuning.tokens import answer_token_budget
    from gpu_notebooks.llm_finetuning.training import device_memory

    environment = describe_environment()  # the first cell
    device = torch.device("cpu") if cpu else choose_device()
    cuda = device.type == "cuda"
    if cuda:  # (a) is read with the context live, as a page load of the app leaves it
        torch.zeros(1, device=device)
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    tiny = (args.llm_model or ("tiny" if cpu else "gpt2-random")) == "tiny"

    def extra():
        out = {"fw_alloc": None, "fw_cache": None, "pinned": None, "fw_peak": None}
        if cuda:
            torch.cuda.synchronize(device)
            memory = device_memory(device)
            out.update(fw_alloc=memory["allocated"], fw_cache=memory["reserved"], fw_peak=memory["peak"])
            with contextlib.suppress(Exception):
                host = torch.cuda.host_memory_stats()
                out["pinned"] = host.get("allocated_bytes.current")
                out["pinned_active"] = host.get("active_bytes.current")
        return out

    uuid = None
    if cuda:
        with contextlib.suppress(Exception):
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    probe = Probe(extra, uuid=uuid, sink=args.sink)
    state = {}  # the cell globals marimo keeps until the next Train click
    has_speed = "speed" in {f.name for f in fields(TrainSettings)}

    def settings_for(**kw):
        settings = TrainSettings(model_source="tiny" if tiny else "gpt2", precision="fp16", epochs=1, **kw)
        if args.llm_speed and has_speed:
            settings = replace(settings, speed=args.llm_speed)
        return settings

    def load(settings, dtype, corpus):
        """Step 2's loader: the app's own offline fallback (tiny) or GPT-2 124M with random weights."""
        if tiny:
            return load_model_and_tokenizer(settings, dtype, corpus)
        tokenizer = build_offline_tokenizer(corpus)
        model = offline_gpt2(tokenizer, GPT2Config(), seed=settings.seed).to(dtype)
        return model, tokenizer, "gpt2-124M-random", None

    base = builtin_examples()
    if tiny:
        config = tiny_gpt2_config(len(build_offline_tokenizer(tokenizer_corpus(base))))
    else:
        config = GPT2Config()
    oom_length = min(1024, config.n_positions)
    if cuda:
        free = torch.cuda.mem_get_info(device)[0]
        # Per row of the batch: a low estimate of the activations training stores, and one FP16 row of logits.
        per_row_train = config.n_layer * oom_length * config.n_embd * 16
        per_row_eval = oom_length * config.vocab_size * 2
        oom_batch = args.llm_oom_batch or max(
            next_pow2(max(2 * free / per_row_train, 1.5 * free / per_row_eval)), 64
        )
    else:
        oom_batch = 16

    def long_frame(n_train, n_eval):
        """Built-in prompts with responses long enough to fill `oom_length` tokens (the loader truncates)."""
        text = " ".join(f"{p} {r}." for p, r in zip(base["prompt"], base["response"], strict=True))
        chars = 6 * oom_length  # about 1.7 tokens per needed token with the offline tokenizer
        response = ((text + " ") * math.ceil(chars / len(text)))[:chars]
        n = n_train + n_eval
        frame = pd.DataFrame(
            {
                "task": [base["task"].iloc[i % len(base)] for i in range(n)],
                "prompt": [base["prompt"].iloc[i % len(base)] for i in range(n)],
                "response": response,
                "split": ["train"] * n_train + ["eval"] * n_eval,
            }
        )
        return frame

    def simulated_oom(when):
        def hook(module, _args, _kwargs):
            if when == "eval" or module.training:
                raise torch.OutOfMemoryError(f"CUDA out of memory. {SIMULATED}")

        return hook

    def app_run(label, settings, dataset, fault=None, expect_oom=False):
        state.clear()
        info = {"batch": settings.batch_size, "max_length": settings.max_length, "rows": len(dataset)}
        started = time.perf_counter()
        outcome, run = "", None
        try:
            # The step cells' own helpers, in the order the cells call them (step 1: the precision plan)
            plan = resolve_precision(settings.precision, device.type, bf16_native(device))
            run, facts = load_step(settings, dataset, device, plan, loader=load)  # step 2: the lease
            state["run"] = run
            if facts["out_of_memory"]:
                raise CellStopped("OOM caught by app (step 2)")
            if fault:
                # On the first block, which both training paths call (the fast path's body skips
                # GPT2Model.forward, so a hook there would never fire on it).
                run.model.transformer.h[0].register_forward_pre_hook(simulated_oom(fault), with_kwargs=True)
            info["model"] = run.model_name
            state["lora_table"], problem = inject_step(run)  # step 3
            if problem:
                raise CellStopped(f"step 3 stopped: {problem}")
            state["params"] = parameter_counts(run.model)
            state["parameter_groups"] = parameter_breakdown(run.model)
            token_stats, problem = prepare_step(run, dataset)  # step 4
            if problem:
                raise CellStopped(f"step 4 stopped: {problem}")
            state["token_stats"] = token_stats
            info["train_max_tokens"] = token_stats["train"]["max_length"]
            info["speed"] = getattr(getattr(run, "speed", None), "name", None)
            eval_frame = dataset[dataset["split"] == "eval"]
            answer_tokens = answer_token_budget(run.tokenizer, dataset["response"])
            trained = train_step_body(run, eval_frame, answer_tokens)  # step 5
            state.update(trained, history=pd.DataFrame(trained["train_records"]))
            info["steps"] = len(trained["train_records"])
            if trained["stop_reason"] is not None:  # step 6's mo.stop
                info["reason"] = trained["stop_reason"].reason
                where = "before-eval" if trained["before"] is None else "training"
                raise CellStopped(f"OOM caught by app (step 5, {where})")
            after, after_generations, stop = evaluate_step(run, eval_frame, answer_tokens)  # step 6
            if stop is not None:
                info["reason"] = stop.reason
                raise CellStopped("OOM caught by app (step 6)")
            state.update(after=after, after_generations=after_generations)
            info["eval_loss"] = [round(trained["before"]["eval_loss"], 3), round(after["eval_loss"], 3)]
            with tempfile.TemporaryDirectory() as tmp:  # step 7
                folder = Path(tmp) / "adapter"
                saved = save_step(run, folder, eval_frame["prompt"].head(8).tolist())
                if saved["failure"]:
                    raise CellStopped(f"step 7 failed: {saved['failure']}")
                info["merge_max_diff"] = saved["merge_max_diff"]
                info["peft_max_diff"] = saved["peft_max_diff"]
                info["peak_alloc_mib"] = round(saved["peak_memory"] / MIB)
                state["release_report"] = saved["release_report"]
                state["adapter_zip"] = zip_folder(folder)
            outcome = f"ok, {info['steps']} steps"
        except CellStopped as stopped:
            outcome = str(stopped)
        except Exception as err:  # escaped the app's handlers: the cell shows the error, `run` stays a global
            outcome = f"ESCAPED {type(err).__name__}"
            info["reason"] = f"{type(err).__name__}: {err}"
        if (fault or expect_oom) and not outcome.startswith(("OOM", "ESCAPED")):
            outcome = f"did NOT fail ({outcome})"
        reading = probe.read(label, outcome, round(time.perf_counter() - started, 2), info)
        if cuda:  # fw_peak of the next reading is the next run's peak
            torch.cuda.reset_peak_memory_stats(device)
        return reading

    print(
        f"# llm: {environment.get('gpu', 'CPU')} | torch {torch.__version__} | model "
        f"{'tiny offline' if tiny else 'GPT2Config() 124M, random weights'} | "
        + (f"OOM runs: batch {oom_batch} x {oom_length}" if cuda else f"OOM {SIMULATED}"),
        flush=True,
    )
    builtin_settings = settings_for(batch_size=args.llm_batch, max_length=128)
    points = [probe.read("(a) before", "environment cell done" + (", CUDA context live" if cuda else ""))]
    points.append(app_run("(b) run ok", builtin_settings, base))
    # The OOM runs: real sizes on a GPU; on the CPU check the same long-text data at batch 16, with the
    # out-of-memory error raised by a forward pre-hook where the real one would come from.
    oom_settings = settings_for(batch_size=oom_batch, max_length=oom_length)
    train_fault, eval_fault = (None, None) if cuda else ("train", "eval")
    points.append(
        app_run("(c) OOM train", oom_settings, long_frame(oom_batch, 8), fault=train_fault, expect_oom=True)
    )
    # The eval OOM runs the plain path: its evaluation holds B x 1024 x 50,257 FP16 logits (210 GB at
    # B = 2048). The fast path's chunked loss never holds them: on an H100 on 2026-11-26 its evaluation of
    # 2048 x 1024 tokens simply ran (154 s, with 2048 generations), so it cannot show the OOM handler.
    eval_settings = replace(oom_settings, speed="plain") if has_speed else oom_settings
    points.append(
        app_run(
            "(c) OOM eval" + (" (plain path)" if has_speed else ""),
            eval_settings,
            long_frame(16, oom_batch),
            fault=eval_fault,
            expect_oom=True,
        )
    )
    points.append(app_run("(d) run ok", builtin_settings, base))
    state.clear()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        with contextlib.suppress(Exception):
            torch._C._host_emptyCache()
    points.append(probe.read("(e) caches", "globals dropped, gc, torch caches emptied (not an app step)"))
    env = {
        "card": environment.get("gpu", "CPU"),
        "torch": torch.__version__,
        "model": "tiny" if tiny else "gpt2-124M-random",
        "oom_batch": oom_batch,
        "oom_length": oom_length,
        "speed": args.llm_speed if has_speed else "n/a (app has no speed setting)",
    }
    return {"status": "ok", "env": env, "points": points}


# ---------------------------------------------------------------- parent: run children, print, save


COLUMNS = {
    "app": "app",
    "point": "point",
    "outcome": "outcome",
    "s": "s",
    "nvml": "NVML used MiB",
    "d_a": "Δ vs (a)",
    "d_b": "Δ vs (b)",
    "proc": "proc MiB",
    "alloc": "alloc MiB",
    "d_alloc": "alloc Δ (a)",
    "cache": "cache MiB",
    "pinned": "pinned MiB",
    "rss": "RSS MiB",
    "d_rss": "RSS Δ (a)",
}


def table_rows(app, points):
    a = points[0]
    b = next((p for p in points if p["point"].startswith("(b)")), a)

    def delta(p, ref, key):
        if p.get(key) is None or ref.get(key) is None:
            return "—"
        return fmt_mib(p[key] - ref[key], signed=True)

    rows = []
    for p in points:
        rows.append(
            {
                "app": app,
                "point": p["point"],
                "outcome": p["outcome"],
                "s": "" if p["seconds"] is None else f"{p['seconds']:.1f}",
                "nvml": fmt_mib(p["nvml_used"]),
                "d_a": delta(p, a, "nvml_used"),
                "d_b": delta(p, b, "nvml_used") if p is not a else "",
                "proc": fmt_mib(p["nvml_proc"]),
                "alloc": fmt_mib(p["fw_alloc"]),
                "d_alloc": delta(p, a, "fw_alloc"),
                "cache": fmt_mib(p["fw_cache"]),
                "pinned": fmt_mib(p.get("pinned")),
                "rss": fmt_mib(p["rss"]),
                "d_rss": delta(p, a, "rss"),
            }
        )
    return rows


def print_table(rows):
    keys = list(COLUMNS)
    widths = [max(len(COLUMNS[k]), *(len(str(r[k])) for r in rows)) for k in keys]
    print("| " + " | ".join(COLUMNS[k].ljust(w) for k, w in zip(keys, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths, strict=True)) + " |")


def verdict(app, points, slack_mib):
    """One line per app: what stayed after the failures and after the second run, against (a) and (b)."""
    a = points[0]
    b = next((p for p in points if p["point"].startswith("(b)")), None)
    if b is None or a["nvml_used"] is None:
        held = [
            f"{p['point']} alloc {fmt_mib(p['fw_alloc'])} MiB"
            for p in points[1:]
            if p["fw_alloc"] is not None
        ]
        return f"{app}: no NVML readings" + (f"; {', '.join(held)}" if held else " (CPU: nothing to measure)")
    worst = max(points[2:-1], key=lambda p: p["nvml_used"] or 0)
    grew = (worst["nvml_used"] or 0) - b["nvml_used"]
    alloc = [
        p["fw_alloc"] - a["fw_alloc"]
        for p in points[1:-1]
        if p["fw_alloc"] is not None and a["fw_alloc"] is not None
    ]
    failed = [p for p in points if p["outcome"].startswith(("ESCAPED", "did NOT", "FAILED"))]
    ok = grew <= slack_mib * MIB and (not alloc or max(alloc) <= slack_mib * MIB) and not failed
    return (
        f"{app}: {'memory comes back' if ok else 'CHECK'} — largest NVML growth after (b): "
        f"{fmt_mib(grew, signed=True)} MiB at {worst['point']}; largest allocator growth vs (a): "
        f"{fmt_mib(max(alloc), signed=True) if alloc else '—'} MiB"
        + (f"; {len(failed)} run(s) escaped or did not fail" if failed else "")
        + f" (slack {slack_mib} MiB)"
    )


def run_child(app, args) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = Path(tmp.name)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", app, "--child-out", str(out)]
    command += sys.argv[1:]
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, timeout=args.child_timeout, check=False)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    try:
        result = json.loads(out.read_text()) if out.stat().st_size else None
    finally:
        out.unlink(missing_ok=True)
    if result is None:
        result = {"status": "failed", "message": f"{app}: child process ended with {rc} and wrote no result"}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-check", action="store_true", help="CPU paths, simulated OOM, tiny sizes")
    ap.add_argument("--apps", default=",".join(APPS), help="comma list of rapids,llm")
    ap.add_argument("--json", type=Path, default=None, help="also write every reading here")
    ap.add_argument("--rapids-rows", type=int, default=None, help="default 10M (CPU check: 200k)")
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats per op in the RAPIDS runs")
    ap.add_argument(
        "--no-rmm-stats", dest="rmm_stats", action="store_false", help="leave RMM's resource as is"
    )
    ap.add_argument(
        "--llm-model",
        choices=["gpt2-random", "tiny"],
        default=None,
        help="default: gpt2-random (CPU check: tiny)",
    )
    ap.add_argument("--llm-batch", type=int, default=16, help="batch of the successful runs (app default 16)")
    ap.add_argument(
        "--llm-oom-batch", type=int, default=None, help="batch of the OOM runs (default: from free memory)"
    )
    ap.add_argument(
        "--llm-speed", default=None, help="TrainSettings.speed, where the app has it (default: the app's)"
    )
    ap.add_argument("--slack-mib", type=int, default=64, help="growth below this counts as given back")
    ap.add_argument("--child-timeout", type=int, default=280, help="seconds per app before it is abandoned")
    ap.add_argument("--child", choices=APPS, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:  # inside the child process: one app, readings to --child-out
        args.sink = lambda points: args.child_out.write_text(
            json.dumps(
                {
                    "status": "partial",
                    "message": f"{args.child}: the child ended early",
                    "env": {},
                    "points": points,
                },
                default=str,
            )
        )
        result = (rapids_child if args.child == "rapids" else llm_child)(args)
        args.child_out.write_text(json.dumps(result, indent=2, default=str))
        return

    started = time.perf_counter()
    print(
        f"# memory_release {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC} | "
        f"{'CPU check (simulated OOM)' if args.cpu_check else 'GPU'} | python {sys.version.split()[0]}",
        flush=True,
    )
    results, rows, lines = {}, [], []
    for app in args.apps.split(","):
        result = run_child(app, args)
        results[app] = result
        if result["status"] not in ("ok", "partial"):
            lines.append(result["message"])
            continue
        if result["status"] == "partial":
            lines.append(result["message"])
        lines.append(f"{app}: {json.dumps(result['env'], default=str)} | child wall {result['wall_s']} s")
        rows += table_rows(app, result["points"])
    print()
    for line in lines:
        print(f"# {line}")
    if rows:
        print_table(rows)
        print(
            "# alloc = RMM current bytes (RAPIDS, with --rmm-stats) / torch.cuda.memory_allocated (LLM); "
            "cache = CuPy pool total (RAPIDS) / torch.cuda.memory_reserved (LLM); pinned = torch's pinned "
            "host cache; proc = NVML's figure for this process (— inside containers that hide PIDs)."
        )
        for app, result in results.items():
            if result["status"] == "ok" and len(result["points"]) > 2:
                print("# " + verdict(app, result["points"], args.slack_mib))
    total = round(time.perf_counter() - started, 1)
    print(f"# total wall {total} s")
    if args.json:
        args.json.write_text(
            json.dumps({"argv": sys.argv[1:], "total_s": total, "apps": results}, indent=2, default=str)
        )


if __name__ == "__main__":
    main()
