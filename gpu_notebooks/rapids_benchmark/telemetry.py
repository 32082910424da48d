"""Per-op GPU telemetry: GPM means over each op's repeats, and the utilization probe's workloads."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from gpu_notebooks.gpu.gpm import gpm_span_means, gpm_windows
from gpu_notebooks.gpu.probe import utilization_probe
from gpu_notebooks.rapids_benchmark.errors import describe_error
from gpu_notebooks.rapids_benchmark.formatting import ENGINE_LABELS, fmt_seconds

# its buffers: two 8192² FP16 matrices and two 512 MiB copy buffers (arithmetic)
PROBE_BYTES = 2 * 8192**2 * 2 + 2 * 512 * 2**20


def gpm_cell(value, note, fmt: str = "{:.1f}%") -> str:
    """One GPM figure of an op: the value, 'short' (under one window), or '—'."""
    if note == "short":
        return "shorter than a GPM window"
    if value is None or value != value:
        return "—"
    return fmt.format(value)


def op_telemetry_table(summary: pd.DataFrame) -> pd.DataFrame | None:
    """What the GPU did in each GPU engine's op at the largest size: GPM means over its repeats, joules per call."""
    top = summary[summary["rows"] == summary["rows"].max()]
    rows = []
    for eng, label in ENGINE_LABELS.items():
        if f"{eng}_energy_j" not in top:
            continue
        for r in top.to_dict("records"):
            median = r.get(f"{eng}_median_s")
            if median is None or median != median:
                continue
            note, energy = r.get(f"{eng}_gpm_note"), r.get(f"{eng}_energy_j")
            rx, tx = r.get(f"{eng}_pcie_rx_bytes_s"), r.get(f"{eng}_pcie_tx_bytes_s")
            rows.append(
                {
                    "operation": r["op"],
                    "engine": label,
                    "median": fmt_seconds(median),
                    "SM active": gpm_cell(r.get(f"{eng}_sm_active_pct"), note),
                    "DRAM bandwidth": gpm_cell(r.get(f"{eng}_dram_bw_pct"), note),
                    "Tensor active": gpm_cell(r.get(f"{eng}_tensor_active_pct"), note),
                    "PCIe RX / TX": "shorter than a GPM window"
                    if note == "short"
                    else f"{gpm_cell(rx and rx / 1e9, note, '{:,.1f}')} / {gpm_cell(tx and tx / 1e9, note, '{:,.1f}')} GB/s",
                    "energy per call": "—" if energy is None or energy != energy else f"{energy:,.3f} J",
                }
            )
    return pd.DataFrame(rows) if rows else None


def engine_gpus(engines) -> list[int] | None:
    """The GPUs a run's engines use (None: every GPU, as Dask-cuDF does; []: a CPU-only run)."""
    if any(e.on_gpu and e.gpus is None for e in engines):
        return None
    return sorted({g for e in engines if e.on_gpu for g in e.gpus})


def attach_gpm(records: list[dict], spans: list[dict], samples: list[dict], origin: float = 0.0) -> None:
    """Give each GPU op's record the GPM means over its timed repeats (see gpm_span_means); in place."""
    windows = gpm_windows(samples, origin)
    by_key = {(s["engine"], s["op"], s["rows"]): s for s in spans}
    for rec in records:
        span = by_key.get((rec["engine"], rec["op"], rec["rows"]))
        if not rec.get("on_gpu") or span is None or not span.get("repeats"):
            continue
        rec.update(gpm_span_means(windows, span["repeats"], span.get("gpus")))


def probe_workloads(gpu: int = 0) -> tuple[dict, Callable[[], None]]:
    """The three workloads of utilization_probe on `gpu` (CuPy), as {name: setup}, and a device sync.

    A stream of tiny one-element kernels (launch-bound), an 8192² FP16 matrix multiply (cuBLAS, Tensor
    Cores) and a 512 MiB device-to-device copy (memory-bound); each setup allocates its own buffers (at most
    PROBE_BYTES of GPU memory) and returns one iteration.
    """
    import cupy

    def tiny_kernels():
        with cupy.cuda.Device(gpu):
            tiny = cupy.zeros(1, dtype=cupy.float32)

        def iteration():
            for _ in range(100):
                cupy.add(tiny, 1, out=tiny)

        return iteration

    def matmul():
        with cupy.cuda.Device(gpu):
            a = cupy.random.standard_normal((8192, 8192), dtype=cupy.float32).astype(cupy.float16)
            c = cupy.empty_like(a)
        return lambda: cupy.matmul(a, a, out=c)

    def copy():
        with cupy.cuda.Device(gpu):
            src = cupy.ones(512 * 2**20, dtype=cupy.uint8)
            dst = cupy.empty_like(src)
        return lambda: dst.data.copy_from_device_async(src.data, src.nbytes)

    def sync():
        with cupy.cuda.Device(gpu):
            cupy.cuda.runtime.deviceSynchronize()

    return {"tiny kernels": tiny_kernels, "FP16 matmul 8192²": matmul, "device-to-device copy": copy}, sync


def run_utilization_probe() -> tuple[list[dict], str | None]:
    """utilization_probe on GPU 0, or ([], why) when CuPy is missing or the GPU has no memory for it."""
    try:
        import cupy
    except ImportError:
        return [], "The probe runs its kernels with CuPy, which is not installed here (it comes with cuDF)."
    try:
        return utilization_probe(*probe_workloads(0), gpu=0), None
    except cupy.cuda.memory.OutOfMemoryError as err:
        return (
            [],
            f"The probe needs about {PROBE_BYTES / 1e9:.1f} GB of free GPU memory: {describe_error(err)}",
        )
