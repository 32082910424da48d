"""How many rows fit: GPU and host memory checks, the size sweep, the run plan."""

from __future__ import annotations

import math
import os

from gpu_notebooks.gpu.nvml import read_gpu_status
from gpu_notebooks.rapids_benchmark.dask_engine import DASK_SLOW_SORT_ROWS
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row
from gpu_notebooks.rapids_benchmark.formatting import format_rows
from gpu_notebooks.rapids_benchmark.ops import ALL_OPS

ROW_STEPS = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
]
# Peak working memory as a multiple of the input data: an op's result, the previous repeat's result
# being freed, sort/join scratch and the comparison copy. Measured peaks stay below these.
# measured (NVML, CUDA context included): 10.4 GB for 100M rows, 69.3 GB for 500M rows (139 B/row)
GPU_WORKING_FACTOR = 6.0
# Host working memory per engine, as multiples of the data frame's bytes, summed over the engines a run
# uses. Measured with bench/rapids_host_memory.py (peak RSS above the baseline over one run of the five
# ops; 2-core 24 GB CPU machine, 2026-12-01), then × 1.2 margin. pandas' share holds the data, its
# generation and the reference results kept while the other engines run.
HOST_FACTORS = {
    "pandas": 4.8,  # measured 3.98× at 2M rows, 2.88× at 10M
    "polars": 9.0,  # measured 6.58× at 2M, 7.45× at 10M: its frame, results, checks made in Polars
    "cudf": 6.0,  # host side only (results copied back and checked): measured 4.08× at 2M, 4.95× at 10M
    "polars_gpu": 9.3,  # its string-category frame and host results: measured 7.24× at 2M, 7.74× at 10M
    "dask": 4.8,  # the CPU stand-in the tests use keeps its partitions in this process, like pandas
    "dask_cudf": 1.0,  # data lives in the workers' GPUs; results come back here only to be checked
    "duckdb": 12.7,  # measured 10.54× at 2M, 10.33× at 10M: Arrow results, checks in Polars, its buffers
    # Not measured: this process regenerates the data and the reference results to check the worker's
    # (read back from Parquet); the worker holds the proxies' host copies. An estimate, like Polars'.
    "cudf_pandas": 9.0,
}
# The sum is conservative: all four together peaked at 13.7× at 2M rows against a 21.9× sum of shares.
HOST_WORKING_FACTOR = HOST_FACTORS["pandas"] + HOST_FACTORS["polars"]  # the CPU engines of a default run
MEMORY_HEADROOM = 0.85


def nearest_step(n: int) -> int:
    """The slider step closest to n on a log scale."""
    n = max(int(n), 1)
    return min(ROW_STEPS, key=lambda s: abs(math.log10(s) - math.log10(n)))


def cap_rows(
    requested: int,
    bytes_per_row: float,
    free_gpu_bytes: int | None,
    free_host_bytes: int | None,
    gpu_factor: float = GPU_WORKING_FACTOR,
    host_factor: float = HOST_WORKING_FACTOR,
    headroom: float = MEMORY_HEADROOM,
) -> tuple[int, str | None]:
    """Largest row count ≤ requested whose working set fits free GPU and host memory, and why it was capped."""
    limits = {}
    if free_gpu_bytes is not None:
        limits["GPU"] = int(free_gpu_bytes * headroom / (bytes_per_row * gpu_factor))
    if free_host_bytes is not None:
        limits["host RAM"] = int(free_host_bytes * headroom / (bytes_per_row * host_factor))
    if not limits:
        return requested, None
    which, limit = min(limits.items(), key=lambda kv: kv[1])
    if requested <= limit:
        return requested, None
    # Round down to two significant digits so the capped size reads well.
    magnitude = 10 ** max(int(math.log10(max(limit, 1))) - 1, 0)
    capped = max((limit // magnitude) * magnitude, 1_000)
    return capped, cap_text(
        requested,
        capped,
        bytes_per_row,
        gpu_factor if which == "GPU" else host_factor,
        free_gpu_bytes if which == "GPU" else free_host_bytes,
        which,
        headroom,
    )


def cap_text(
    requested: int, capped: int, bytes_per_row: float, factor: float, free: float, which: str, headroom: float
) -> str:
    """Why a size was capped: the factors as shown multiply to the need shown, and the advice fits the limit."""
    # The need is computed from the factors as printed, so a reader's own product gives the same figure.
    bpr, fac = f"{bytes_per_row:.1f}", f"{factor:.3g}"
    need_gb = requested * float(bpr) * float(fac) / 1e9
    memory = "GPU memory" if which == "GPU" else "host RAM"
    advice = (
        "free GPU memory (another notebook may hold some) or use a card with more memory"
        if which == "GPU"
        else "close programs (or another run) that hold host RAM, or use a machine with more RAM"
    )
    return (
        f"**Size capped to {format_rows(capped)} rows** (you asked for {format_rows(requested)}): "
        f"{requested:,} rows × {bpr} B/row × {fac} (working memory for results, scratch and checks) "
        f"≈ {need_gb:,.0f} GB of {memory}, but only {free / 1e9:,.0f} GB is free and the app uses at most "
        f"{headroom * 100:.0f}% of it ({free * headroom / 1e9:,.0f} GB). This avoids an out-of-memory crash; to "
        f"go further, {advice}."
    )


def run_cap_notice(preview: dict, plan: dict) -> str | None:
    """The cap to show as a run starts: None when the preview above it already says so (same sizes)."""
    if not plan["cap_message"] or (preview["cap_message"] and preview["sizes"] == plan["sizes"]):
        return None
    return f"With the memory free at the click: {plan['cap_message']}"


SWEEP_OPTION = "Size sweep (1K, 10K, … up to the rows chosen)"  # the Mode radios' label for sweep_sizes


def sweep_sizes(max_rows: int) -> list[int]:
    """Sizes for a sweep: powers of ten from 1K up to max_rows, ending at max_rows."""
    sizes = [10**k for k in range(3, 10) if 10**k < max_rows]
    return sizes + [max_rows]


def plan_run(
    requested_rows: int,
    ops: list[str],
    repeats: int,
    sweep: bool,
    bytes_per_row: float,
    free_gpu_bytes: int | None,
    free_host_bytes: int | None,
    all_gpus_free_bytes: int | None = None,
    engine_names: list[str] | None = None,
) -> dict:
    """What will run: sizes (capped by memory), ops and repeats, with the reason for any cap.

    The host cap holds for every engine in `engine_names` (HOST_FACTORS summed; default pandas + Polars).
    With Dask over several GPUs (`all_gpus_free_bytes`: free memory summed over them) the size may exceed
    one card; the single-GPU and host engines then run only up to `single_engine_rows`.
    """
    names = engine_names or ["pandas", "polars"]
    host_factor = host_working_factor([n for n in names if n != "dask_cudf"] or ["pandas"])
    single_rows, message = cap_rows(
        requested_rows, bytes_per_row, free_gpu_bytes, free_host_bytes, host_factor=host_factor
    )
    rows = single_rows
    if all_gpus_free_bytes:
        rows, message = cap_rows(
            requested_rows,
            bytes_per_row,
            all_gpus_free_bytes,
            free_host_bytes,
            host_factor=HOST_FACTORS["dask_cudf"],
        )
        if rows > single_rows:
            message = (message + "\n\n" if message else "") + (
                f"Above **{format_rows(single_rows)} rows** the data no longer fits one GPU (or this host's RAM): "
                "those sizes run on Dask-cuDF alone."
            )
    if all_gpus_free_bytes and "sort" in ops and rows > DASK_SLOW_SORT_ROWS:
        message = (message + "\n\n" if message else "") + (
            f"**Dask-cuDF's sort at {format_rows(rows)} rows will take minutes:** it moves about (P−1)/P of the "
            "rows between the GPUs' worker processes over TCP — 14 s per pass at 100M rows and more than 215 s at 1B rows "
            f"on 2 × H200 (measured), and it runs {max(int(repeats), 1) + 1} times here (warm-up + repeats). "
            "Leave *sort* out for a quick run."
        )
    return {
        "rows": rows,
        "single_engine_rows": single_rows,
        "requested_rows": requested_rows,
        "sizes": sweep_sizes(rows) if sweep else [rows],
        "ops": [o for o in ALL_OPS if o in ops],
        "repeats": max(int(repeats), 1),
        "cap_message": message,
        "bytes_per_row": bytes_per_row,
        "host_factor": host_factor,
    }


def plan_from_settings(settings: dict, engines: list, bytes_per_row: float | None = None) -> dict:
    """plan_run for these settings and engines, with free GPU and host memory read now (at the Run click).

    `settings["dask"]` plans for Dask-cuDF over every GPU even before its engine (and cluster) exists.
    `bytes_per_row` replaces the generated frame's (your own table's).
    """
    names = [e.name for e in engines]
    use_gpu = any(e.on_gpu and e.load is None for e in engines)
    use_dask = bool(settings.get("dask")) or any(e.on_gpu and e.load is not None for e in engines)
    if use_dask and "dask_cudf" not in names:
        names.append("dask_cudf")
    if settings.get("cudf_pandas"):
        names.append("cudf_pandas")
    gpus = read_gpu_status() if use_gpu or use_dask else []
    return plan_run(
        requested_rows=settings["requested_rows"],
        ops=settings["ops"],
        repeats=settings["repeats"],
        sweep=settings["sweep"],
        bytes_per_row=bytes_per_row or estimate_bytes_per_row(),
        free_gpu_bytes=min((g["memory_free_bytes"] or 0 for g in gpus), default=None) if use_gpu else None,
        free_host_bytes=read_host_status()["available_bytes"],
        all_gpus_free_bytes=sum(g["memory_free_bytes"] or 0 for g in gpus) if use_dask else None,
        engine_names=names,
    )


def host_working_factor(engine_names) -> float:
    """Host working memory of a run with these engines, as a multiple of the data frame (HOST_FACTORS, summed)."""
    return sum(HOST_FACTORS.get(name, max(HOST_FACTORS.values())) for name in engine_names)


def read_free_memory(engines) -> dict:
    """Free host RAM now and, when a single-GPU engine runs, free memory on GPU 0 (bytes; None if unknown)."""
    gpu = None
    if any(e.on_gpu and e.load is None for e in engines):
        gpu = next((g["memory_free_bytes"] for g in read_gpu_status()), None)
    return {"host": read_host_status()["available_bytes"], "gpu": gpu}


def memory_shortfall(
    what: str, need_bytes: float, free_bytes: float | None, headroom: float = MEMORY_HEADROOM
):
    """A sentence when `need_bytes` does not fit `headroom` of `free_bytes`; None when it fits or is unknown."""
    if free_bytes is None or need_bytes <= free_bytes * headroom:
        return None
    return (
        f"needs ≈ {need_bytes / 1e9:,.1f} GB of {what}, but only {free_bytes / 1e9:,.1f} GB is free now "
        f"(the app keeps {100 - headroom * 100:.0f}% spare)"
    )


def read_host_status() -> dict:
    """CPU cores and host memory."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        total, available = vm.total, vm.available
    except Exception:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        total = available = pages
    return {
        "cpu_count": os.cpu_count() or 1,
        "total_gb": total / 1e9,
        "available_gb": available / 1e9,
        "available_bytes": available,
    }
