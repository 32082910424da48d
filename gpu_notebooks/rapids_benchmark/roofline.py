"""The card's own roofs: copy bandwidth probes, the per-op floor, and each op's bound."""

from __future__ import annotations

import functools
import statistics
import time

import numpy as np
import pandas as pd

from gpu_notebooks.rapids_benchmark.data import generate_data
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.formatting import fmt_seconds, format_rows
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.telemetry import engine_gpus
from gpu_notebooks.rapids_benchmark.timing import cuda_synchronize, time_operation

# The roofline labels' thresholds (the app's choice, not measurements): an op within this many times its
# time on FLOOR_ROWS rows is overhead-bound; one whose achieved bandwidth (bytes_touched ÷ median) is at
# least this share of the card's measured device-to-device copy rate is memory-bound.
OVERHEAD_BOUND_TIMES = 2.0
MEMORY_BOUND_SHARE = 0.5
FLOOR_ROWS = 1_000  # the per-op floor: each op timed on this many rows, where fixed costs are all there is


def copy_bandwidth_probe(nbytes: int = 256 * 2**20, repeats: int = 5) -> dict | None:
    """This machine's host→GPU copy rate from pageable and from pinned host memory (median of `repeats`, GB/s)."""
    try:
        import cupy
    except ImportError:
        return None
    host = np.ones(nbytes // 8)
    pinned_mem = cupy.cuda.alloc_pinned_memory(nbytes)
    pinned = np.frombuffer(pinned_mem, dtype=np.float64, count=nbytes // 8)
    pinned[:] = 1.0
    device = cupy.empty(nbytes // 8, dtype=np.float64)
    rates = {}
    for name, src in (("pageable", host), ("pinned", pinned)):
        times = []
        for _ in range(repeats + 1):  # the first copy is a warm-up
            cuda_synchronize()
            t0 = time.perf_counter()
            device.set(src)
            cuda_synchronize()
            times.append(time.perf_counter() - t0)
        rates[f"{name}_gbs"] = nbytes / statistics.median(times[1:]) / 1e9
    del device, pinned, pinned_mem
    return {**rates, "bytes": nbytes}


def d2d_bandwidth_probe(gpus: list[int] | None, nbytes: int = 512 * 2**20, repeats: int = 10) -> dict:
    """Each GPU's achievable memory bandwidth: a device-to-device copy, read + write bytes ÷ time (GB/s).

    `gpus` None: every GPU CuPy sees. CUDA events time `repeats` copies after one warm-up copy; a GPU whose
    two buffers do not fit gets None.
    """
    import cupy

    out = {}
    for gpu in range(cupy.cuda.runtime.getDeviceCount()) if gpus is None else gpus:
        with cupy.cuda.Device(gpu):
            try:
                src = cupy.ones(nbytes, dtype=cupy.uint8)
                dst = cupy.empty_like(src)
            except cupy.cuda.memory.OutOfMemoryError:
                out[gpu] = None
                continue
            dst.data.copy_from_device_async(src.data, nbytes)  # warm-up
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            for _ in range(repeats):
                dst.data.copy_from_device_async(src.data, nbytes)
            end.record()
            end.synchronize()
            seconds = cupy.cuda.get_elapsed_time(start, end) / 1e3
            out[gpu] = 2 * nbytes * repeats / seconds / 1e9
            del src, dst
    return out


def overhead_floor_probe(engine: Engine, ops: list[str], rows: int = FLOOR_ROWS, repeats: int = 5) -> dict:
    """Median seconds of each in-memory op on `rows` rows with `engine`: its fixed per-op cost on this machine."""
    df, lookup = generate_data(rows)
    dev_df, dev_lookup = engine.to_device(df), engine.to_device(lookup)
    floor = {}
    for op in [o for o in ops if o in OPS]:
        fn = engine.ops[op] if engine.ops else get_op(op)
        timing = time_operation(
            functools.partial(fn, engine.lib, dev_df, dev_lookup), repeats, sync=engine.sync
        )
        floor[op] = timing.median
    return floor


def card_probes(engines: list[Engine], ops: list[str]) -> dict:
    """Once per run, under the lock: each GPU's achievable bandwidth and cuDF's per-op floor on FLOOR_ROWS rows."""
    cudf_engine = next((e for e in engines if e.name == "cudf"), None)
    if cudf_engine is None:
        return {"achievable_gbs_by_gpu": {}, "achievable_gbs": None, "floor_s": {}}
    by_gpu = d2d_bandwidth_probe(engine_gpus(engines))
    return {
        "achievable_gbs_by_gpu": by_gpu,
        "achievable_gbs": by_gpu.get(cudf_engine.gpus[0]),
        "floor_s": overhead_floor_probe(cudf_engine, ops),
    }


def roofline_bound(
    median_s: float | None,
    floor_s: float | None,
    achieved_gbs: float | None,
    achievable_gbs: float | None,
    dram_bw_pct: float | None = None,
) -> str:
    """Where an op sits for its roofline: overhead-bound, memory-bound or below the memory roof.

    DataFrame ops do a few operations per byte, so their roof is memory bandwidth, not compute. An op
    within OVERHEAD_BOUND_TIMES of its floor (its time on FLOOR_ROWS rows) is paying fixed costs; one at
    MEMORY_BOUND_SHARE or more of the achievable copy rate by the byte model — or whose GPM DRAM bandwidth
    reads that high — is memory-bound; between the two it moves more bytes than the model counts (passes,
    scratch) or waits on random access.
    """
    if not median_s or median_s != median_s:
        return "—"
    if floor_s and median_s <= OVERHEAD_BOUND_TIMES * floor_s:
        return "overhead-bound"
    if achieved_gbs is None or achievable_gbs is None or achieved_gbs != achieved_gbs:
        return "not placed: no achievable bandwidth measured"
    if achieved_gbs >= MEMORY_BOUND_SHARE * achievable_gbs or (dram_bw_pct or 0) >= 100 * MEMORY_BOUND_SHARE:
        return "memory-bound"
    return "below the memory roof"


def bandwidth_table(
    summary: pd.DataFrame,
    peak_gbs: float | None,
    achievable_gbs: float | None = None,
    floor_s: dict | None = None,
) -> pd.DataFrame | None:
    """cuDF's achieved bandwidth per op at the largest size: GB/s, share of achievable and of theoretical,
    its time against its floor on FLOOR_ROWS rows, and where that puts it (roofline_bound)."""
    if "bandwidth_gbs" not in summary:
        return None
    floor_s = floor_s or {}
    top = summary[(summary["rows"] == summary["rows"].max()) & summary["cudf_median_s"].notna()]
    top = top[top["op"] != "pipeline"]  # its result is the small answer: the byte model says nothing there
    dram = top["cudf_dram_bw_pct"] if "cudf_dram_bw_pct" in top else pd.Series(None, index=top.index)
    floors = top["op"].map(lambda op: floor_s.get(op))
    out = pd.DataFrame(
        {
            "operation": top["op"],
            "bytes (byte model)": (top["gpu_bytes"] / 1e9).map(lambda x: f"{x:,.2f} GB"),
            "cuDF median": top["cudf_median_s"].map(fmt_seconds),
            "achieved": top["bandwidth_gbs"].map(lambda x: f"{x:,.0f} GB/s"),
        }
    )
    if achievable_gbs:
        out["% of achievable"] = top["bandwidth_achievable_pct"].map(lambda x: f"{x:.1f}%")
    if peak_gbs:
        out["% of theoretical"] = top["bandwidth_pct"].map(lambda x: f"{x:.1f}%")
    if floor_s:
        out[f"floor ({format_rows(FLOOR_ROWS)} rows)"] = floors.map(fmt_seconds)
        out["× floor"] = [
            f"{m / f:,.1f}×" if f else "—" for m, f in zip(top["cudf_median_s"], floors, strict=True)
        ]
    out["bound"] = [
        roofline_bound(m, f, b, achievable_gbs, d)
        for m, f, b, d in zip(top["cudf_median_s"], floors, top["bandwidth_gbs"], dram, strict=True)
    ]
    return out
