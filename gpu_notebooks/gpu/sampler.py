"""The classic 10 Hz NVML sampler (utilization, memory, power, clocks) and how a reading is shown."""

from __future__ import annotations

import threading
import time

from gpu_notebooks.gpu.nvml import nvml_handles, nvml_module, nvml_read


class GpuSampler:
    """Background thread recording NVML's classic readings of every GPU at a fixed interval (10 Hz by default)."""

    FIELDS = (
        "util_pct",
        "memory_used_gb",
        "temp_c",
        "power_w",
        "sm_clock_mhz",
        "mem_clock_mhz",
        "clock_events",
    )

    def __init__(self, interval_s: float = 0.1, device_indices: list[int] | None = None):
        self.interval_s = interval_s
        self.samples: list[dict] = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="nvml-sampler")
        self._nvml = nvml_module()
        handles = nvml_handles(self._nvml)
        self._handles = [(i, h) for i, h in handles if device_indices is None or i in device_indices]

    def start(self) -> None:
        self.t0 = time.perf_counter()
        if self._handles:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            for i, h in self._handles:
                r = nvml_read(self._nvml, h, i)
                self.samples.append({"t": t, "gpu": i, **{k: r[k] for k in self.FIELDS}})
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
