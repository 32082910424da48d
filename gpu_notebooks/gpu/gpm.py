"""NVML GPU Performance Monitoring (GPM): support, one sample window, the GpmSampler and its windows."""

from __future__ import annotations

import threading
import time

import pandas as pd

from gpu_notebooks.gpu.nvml import nvml_handles, nvml_module, nvml_ready, read_nvml

GPM_FIELDS = {  # GpmSampler's sample keys → pynvml's NVML_GPM_METRIC_* names (shared with the fine-tuning app)
    "sm_active_pct": "NVML_GPM_METRIC_SM_UTIL",
    "sm_occupancy_pct": "NVML_GPM_METRIC_SM_OCCUPANCY",
    "tensor_active_pct": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "hmma_active_pct": "NVML_GPM_METRIC_HMMA_TENSOR_UTIL",
    "dram_bw_pct": "NVML_GPM_METRIC_DRAM_BW_UTIL",
    "pcie_rx_bytes_s": "NVML_GPM_METRIC_PCIE_RX_PER_SEC",
    "pcie_tx_bytes_s": "NVML_GPM_METRIC_PCIE_TX_PER_SEC",
}
GPM_HZ = 10.0  # GPM windows per second and GPU (one window = the mean between two GPM samples)
# An op's GPM figures count only when its timed repeats fill at least this share of the windows they
# touch; below it the windows mostly hold other work (warm-up, checks, idle) and the op is marked short.
GPM_MIN_COVER = 0.5


def gpm_support(nvml, handle):
    """(True, "") when NVML's GPM metrics answer for this GPU (Hopper and newer), else (False, why in a line)."""
    if nvml is None:
        return False, "GPM metrics need nvidia-ml-py (pynvml), which is not installed."
    if not hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
        return False, "this nvidia-ml-py has no GPM interface: upgrade nvidia-ml-py."
    support = read_nvml(nvml, nvml.nvmlGpmQueryDeviceSupport, handle)
    if support is None or not getattr(support, "isSupportedDevice", 0):
        return False, "this GPU or driver has no GPM counters (NVML GPM needs Hopper or newer)."
    return True, ""


def pcie_bytes_per_s(value, unit):
    """A GPM PCIe reading in bytes/s, from the unit NVML reports with it (MiB/s today)."""
    if value is None:
        return None
    unit = (unit or "MiB/sec").lower()
    scale = 2**20 if "mib" in unit else 1e6 if "mb" in unit else 2**10 if "kib" in unit else 1.0
    return value * scale


def gpm_read(nvml, handle, previous, current):
    """GPM metrics between two samples as {field: value or None}; `current` is filled here."""
    fields = {field: getattr(nvml, name, None) for field, name in GPM_FIELDS.items()}
    if read_nvml(nvml, nvml.nvmlGpmSampleGet, handle, current) is None:
        return dict.fromkeys(GPM_FIELDS)
    request = nvml.c_nvmlGpmMetricsGet_t()
    request.version = nvml.NVML_GPM_METRICS_GET_VERSION
    wanted = [(field, metric_id) for field, metric_id in fields.items() if metric_id is not None]
    request.numMetrics = len(wanted)
    request.sample1, request.sample2 = previous, current
    for slot, (_, metric_id) in enumerate(wanted):
        request.metrics[slot].metricId = metric_id
    values = dict.fromkeys(GPM_FIELDS)
    if read_nvml(nvml, nvml.nvmlGpmMetricsGet, request) is None:
        return values
    for slot, (field, _) in enumerate(wanted):
        metric = request.metrics[slot]
        if metric.nvmlReturn != 0:  # this metric is not available on this GPU
            continue
        value = float(metric.value)
        if field.startswith("pcie_"):
            unit = metric.metricInfo.unit
            value = pcie_bytes_per_s(value, unit.decode() if isinstance(unit, bytes) else unit)
        values[field] = value
    return values


class GpmSampler:
    """NVML GPM metrics (SM activity and occupancy, Tensor Core activity, DRAM bandwidth, PCIe) for each GPU.

    GPM counters exist on Hopper and newer: each reading is the average between two GPM samples, so a
    sample every 1/hz seconds gives that window's mean (sample "t" is the window's end, seconds after
    start(); `t0` is start()'s perf_counter). Elsewhere `available` is False and `unavailable_reason` says
    why in one line; the classic GpuSampler keeps working either way. Same design and names as the
    fine-tuning dashboard's sampler: start(), stop(), samples, available, unavailable_reason.
    """

    STOP_WAIT_S = 5.0  # how long stop() waits for the sampling thread's last NVML call

    def __init__(self, device_indices=None, hz=GPM_HZ):
        self.interval, self.samples = 1.0 / hz, []
        self.available, self.unavailable_reason = False, ""
        self.t0 = time.perf_counter()
        self._nvml, self._gpus, self._stop = nvml_module(), [], threading.Event()
        self._thread = None
        nvml = self._nvml
        if nvml is None:
            self.unavailable_reason = gpm_support(None, None)[1]
            return
        if not nvml_ready(nvml):
            self.unavailable_reason = "NVML could not start here (no NVIDIA driver)."
            return
        count = read_nvml(nvml, nvml.nvmlDeviceGetCount) or 0
        reasons = []
        for index in range(count) if device_indices is None else device_indices:
            handle = read_nvml(nvml, nvml.nvmlDeviceGetHandleByIndex, index)
            ok, why = gpm_support(nvml, handle) if handle is not None else (False, "no NVML handle.")
            if ok:
                self._gpus.append({"gpu": index, "handle": handle})
            else:
                reasons.append(why)
        self.available = bool(self._gpus)
        if not self.available:
            self.unavailable_reason = reasons[0] if reasons else "NVML sees no GPU."

    def _sample_pair(self):
        return [
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleAlloc),
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleAlloc),
        ]

    def start(self):
        """Take the first sample of every GPU and start sampling in a background thread."""
        if not self.available:
            return self
        for gpu in self._gpus:
            gpu["pair"] = self._sample_pair()
            read_nvml(self._nvml, self._nvml.nvmlGpmSampleGet, gpu["handle"], gpu["pair"][0])
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="gpm-sampler")
        self._thread.start()
        return self

    def _loop(self):
        try:
            while not self._stop.wait(self.interval):
                t = time.perf_counter() - self.t0
                for gpu in self._gpus:
                    previous, current = gpu["pair"]
                    values = gpm_read(self._nvml, gpu["handle"], previous, current)
                    gpu["pair"] = [current, previous]  # this sample is the next window's start
                    self.samples.append({"t": t, "gpu": gpu["gpu"], **values})
        finally:
            self._free_samples()  # here, by the one thread that reads them: never freed under a reading

    def _free_samples(self):
        for gpu in self._gpus:
            for sample in gpu.pop("pair", []):
                if sample is not None:
                    read_nvml(self._nvml, self._nvml.nvmlGpmSampleFree, sample)

    def stop(self):
        """Stop sampling; the sampling thread frees the GPM samples as it ends. Waits up to STOP_WAIT_S for it
        (a thread still inside a stuck NVML call frees them whenever that call returns)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.STOP_WAIT_S)
        return self

    def frame(self):
        """Samples so far as a DataFrame (t in seconds, one row per GPU and window)."""
        return pd.DataFrame(list(self.samples), columns=["t", "gpu", *GPM_FIELDS])

    def means(self):
        """Mean of each metric over the samples (None where no reading came)."""
        frame = self.frame()
        return {f: (None if frame[f].isna().all() else float(frame[f].mean())) for f in GPM_FIELDS}

    def rate_hz(self) -> float:
        """GPM windows per second and GPU so far."""
        if len(self.samples) < 2 or not self._gpus:
            return 0.0
        return len(self.samples) / len(self._gpus) / max(self.samples[-1]["t"], 1e-9)


def gpm_windows(samples: list[dict], origin: float = 0.0) -> list[dict]:
    """Each GPM sample as the window it averages: from the GPU's previous sample (or `origin`, the sampler's
    start) to its t."""
    last, out = {}, []
    for s in sorted(samples, key=lambda s: s["t"]):
        out.append({**s, "start": last.get(s["gpu"], origin), "end": s["t"]})
        last[s["gpu"]] = s["t"]
    return out


def gpm_span_means(
    windows: list[dict], spans: list[tuple[float, float]], gpus, min_cover: float = GPM_MIN_COVER
) -> dict:
    """Mean of each GPM metric over an op's timed spans, each window weighted by its overlap with them.

    Returns {field: value or None, "gpm_note": ""}. "gpm_note" is "short" when the spans fill less than
    `min_cover` of the windows they touch (the op is shorter than a window: its figures would mostly be
    other work's, so none are given) and "no GPM window" when no window overlaps them at all.
    """
    empty = {**dict.fromkeys(GPM_FIELDS), "gpm_note": "no GPM window"}
    touched = []
    for w in windows:
        if gpus is not None and w["gpu"] not in gpus:
            continue
        overlap = sum(max(0.0, min(w["end"], b) - max(w["start"], a)) for a, b in spans)
        if overlap > 0:
            touched.append((w, overlap))
    if not touched:
        return empty
    covered = sum(o for _, o in touched) / sum(w["end"] - w["start"] for w, _ in touched)
    if covered < min_cover:
        return {**dict.fromkeys(GPM_FIELDS), "gpm_note": "short"}
    out = {"gpm_note": ""}
    for field_name in GPM_FIELDS:
        pairs = [(w[field_name], o) for w, o in touched if w.get(field_name) is not None]
        weight = sum(o for _, o in pairs)
        out[field_name] = sum(v * o for v, o in pairs) / weight if weight else None
    return out


def gpm_frame(bench: dict) -> pd.DataFrame | None:
    """A run's GPM samples as a frame for the timeline; None when GPM did not run."""
    samples = bench.get("gpm_samples") or []
    return pd.DataFrame(samples, columns=["t", "gpu", *GPM_FIELDS]) if samples else None


def gpm_unavailable_reason(gpu: int) -> str:
    """Why NVML's GPM metrics cannot be read on `gpu`, in one line; "" when they can."""
    nvml = nvml_module()
    handles = dict(nvml_handles(nvml))
    if gpu not in handles:
        return gpm_support(None, None)[1] if nvml is None else f"NVML sees no GPU {gpu}."
    return gpm_support(nvml, handles[gpu])[1]


def gpm_status_line(gpus: list[dict]) -> str:
    """One line: the GPM metrics each run samples on this card, or why this card or driver has none."""
    if not gpus:
        return ""
    why = gpm_unavailable_reason(gpus[0]["index"])
    if not why:
        return (
            f"GPM (SM and Tensor Core activity, DRAM bandwidth, PCIe) is sampled during each run, "
            f"{GPM_HZ:.0f} windows per second per GPU; the classic readings above are what NVML's utilization shows."
        )
    return f"GPM metrics are not available: {why} The classic readings above still work."
