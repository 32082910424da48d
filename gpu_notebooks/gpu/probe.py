"""'What utilization hides': run workloads under both samplers and tabulate what each saw."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from gpu_notebooks.gpu.gpm import GpmSampler
from gpu_notebooks.gpu.sampler import GpuSampler

PROBE_SECONDS = 1.5  # each workload of the "what utilization hides" probe


def probe_row(workload: str, classic: list[dict], gpm: list[dict], seconds: float) -> dict:
    """One workload's medians: classic utilization and GPM (the first GPM window, which holds the start, left out)."""

    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    windows = gpm[1:] if len(gpm) > 1 else gpm
    return {
        "workload": workload,
        "classic_util_pct": median(s.get("util_pct") for s in classic),
        "sm_active_pct": median(w.get("sm_active_pct") for w in windows),
        "tensor_active_pct": median(w.get("tensor_active_pct") for w in windows),
        "dram_bw_pct": median(w.get("dram_bw_pct") for w in windows),
        "seconds": seconds,
    }


def utilization_probe(
    workloads: dict[str, Callable[[], Callable[[], object]]],
    sync: Callable[[], None] | None = None,
    gpu: int = 0,
    seconds: float = PROBE_SECONDS,
    sync_every: int = 50,
) -> list[dict]:
    """What classic utilization and GPM say about each workload on NVML's GPU `gpu`, `seconds` each.

    The one probe harness of both apps: each app brings its workloads as {name: setup}, where setup()
    allocates that workload's buffers and returns one iteration, so only one workload's memory exists at a
    time. The device is synchronized every `sync_every` iterations (a short queue keeps each sample window
    this workload's). The caller holds the GPU lease. Returns one dict per workload: workload,
    classic_util_pct, sm_active_pct, tensor_active_pct, dram_bw_pct (medians over the run; None where NVML
    gave nothing), seconds.
    """
    sync = sync or (lambda: None)
    rows = []
    for name, setup in workloads.items():
        work = setup()
        work()  # first call outside the window: kernel loading
        sync()
        classic = GpuSampler(interval_s=0.1, device_indices=[gpu])
        gpm = GpmSampler(device_indices=[gpu])
        classic.start()
        gpm.start()
        t0, calls = time.perf_counter(), 0
        try:
            while time.perf_counter() - t0 < seconds:
                work()
                calls += 1
                if calls % sync_every == 0:
                    sync()
            sync()
            elapsed = time.perf_counter() - t0
        finally:
            classic.stop()
            gpm.stop()
        rows.append(probe_row(name, classic.samples, gpm.samples, elapsed))
        del work
    return rows
