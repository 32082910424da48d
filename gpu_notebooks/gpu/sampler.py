"""The classic 10 Hz NVML sampler (utilization, memory, power, clocks) and how a reading is shown."""

from __future__ import annotations

import threading
import time

import pandas as pd
import psutil

from gpu_notebooks.gpu.nvml import nvml_handles, nvml_module, nvml_read


class GpuSampler:
    """Background thread recording NVML's classic readings of the chosen GPUs at a fixed interval (10 Hz by default).

    The one classic sampler of both apps. `device_indices` picks NVML's GPUs (None: every GPU; []: none).
    Where NVML or the GPU is missing it records nothing, or with `cpu_fallback` this process's CPU utilization
    and resident memory instead, so a CPU run still has a timeline; `source` says which ("NVML",
    "psutil, CPU" or "none"). Use start()/stop() or `with GpuSampler(...) as sampler:`.
    """

    FIELDS = (
        "util_pct",
        "memory_used_gb",
        "temp_c",
        "power_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "clock_events",
    )

    def __init__(
        self, interval_s: float = 0.1, device_indices: list[int] | None = None, cpu_fallback: bool = False
    ):
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpu-sampler")
        self._nvml = nvml_module()
        wanted = device_indices
        handles = nvml_handles(self._nvml) if wanted is None or wanted else []
        self._handles = [(i, h) for i, h in handles if wanted is None or i in wanted]
        self.source = "NVML" if self._handles else ("psutil, CPU" if cpu_fallback else "none")

    def start(self) -> GpuSampler:
        self.t0 = time.perf_counter()
        if self.source == "psutil, CPU":
            psutil.cpu_percent(interval=None)  # the first call only starts psutil's own interval
        if self.source != "none":
            self._thread.start()
        return self

    def stop(self) -> GpuSampler:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        return self

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def read(self) -> list[dict]:
        """One reading now: a sample per GPU (t is perf_counter's), or the process's CPU with cpu_fallback."""
        t = time.perf_counter()
        if self.source == "psutil, CPU":
            cpu = {k: None for k in self.FIELDS}
            cpu |= {"util_pct": psutil.cpu_percent(interval=None)}
            cpu |= {"memory_used_gb": psutil.Process().memory_info().rss / 1e9}
            return [{"t": t, "gpu": None, **cpu}]
        return [
            {"t": t, "gpu": i, **{k: r[k] for k in self.FIELDS}}
            for i, h in self._handles
            for r in [nvml_read(self._nvml, h, i)]
        ]

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            self.samples.extend(self.read())
            self._stop.wait(max(self.interval_s - (time.perf_counter() - t), 0))

    def latest_text(self, gpus: tuple[int, ...] | None = None) -> str:
        """' · GPU 0 37% · 4.1 GB · 212 W' for the GPUs an op runs on (None: all; (): none)."""
        latest: dict[int, dict] = {}
        for s in reversed(self.samples[-4 * max(len(self._handles), 1) :]):
            latest.setdefault(s["gpu"], s)
        wanted = sorted(latest) if gpus is None else [g for g in gpus if g in latest]
        return "".join(f" · {gpu_reading_text(latest[g])}" for g in wanted)

    def samples_relative_to(self, t0: float) -> list[dict]:
        return [{**s, "t": s["t"] - t0} for s in self.samples]

    def frame(self) -> pd.DataFrame:
        """The samples so far as a table, t in seconds since start()."""
        return pd.DataFrame(self.samples_relative_to(self.t0), columns=["t", "gpu", *self.FIELDS])

    def rate_hz(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        per_gpu = len(self.samples) / max(len(self._handles), 1)
        return per_gpu / max(self.samples[-1]["t"] - self.samples[0]["t"], 1e-9)

    def peak_memory_gb(self) -> float | None:
        used = [s["memory_used_gb"] for s in self.samples if s["memory_used_gb"] is not None]
        return max(used) if used else None


def reading(value, fmt: str = "{}", unit: str = "") -> str:
    """One NVML reading as text; '—' for a reading this card or driver does not offer (None)."""
    return "—" if value is None else f"{fmt.format(value)}{unit}"


def gpu_reading_text(sample: dict) -> str:
    """'GPU 0 37% · 4.1 GB · 212 W', with '—' for missing readings, and what holds the clocks when anything does."""
    held = sample.get("clock_events")
    return (
        f"GPU {sample['gpu']} {reading(sample.get('util_pct'), '{}', '%')} · "
        f"{reading(sample.get('memory_used_gb'), '{:.1f}', ' GB')} · {reading(sample.get('power_w'), '{:.0f}', ' W')}"
        + ("" if held in (None, "none", "idle", "not reported") else f" · clocks held by {held}")
    )
