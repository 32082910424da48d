"""What NVML's classic utilization and its GPM metrics say about three workloads on this GPU.

    python bench/device_probe_telemetry.py
Runs, each for ~2 s: a stream of tiny one-thread kernels, a large bf16 matmul, a device-to-device copy.
A 10 Hz thread samples classic utilization and, every 0.2 s, a GPM window. Also prints clocks, clock-event
(throttle) reasons, the energy counter, temperature thresholds, host->GPU copy rates (pageable, pinned)
and the D2D copy bandwidth, and the BF16 decision inputs.
"""

import statistics
import threading
import time

import pynvml
import torch

GPM = {
    "sm_active_pct": pynvml.NVML_GPM_METRIC_SM_UTIL,
    "sm_occupancy_pct": pynvml.NVML_GPM_METRIC_SM_OCCUPANCY,
    "tensor_active_pct": pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    "hmma_active_pct": pynvml.NVML_GPM_METRIC_HMMA_TENSOR_UTIL,
    "dram_bw_pct": pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
    "pcie_tx_mib_s": pynvml.NVML_GPM_METRIC_PCIE_TX_PER_SEC,
    "pcie_rx_mib_s": pynvml.NVML_GPM_METRIC_PCIE_RX_PER_SEC,
    "graphics_util_pct": pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL,
}


def gpm_window(h, s1, s2):
    g = pynvml.c_nvmlGpmMetricsGet_t()
    g.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    g.numMetrics = len(GPM)
    g.sample1, g.sample2 = s1, s2
    for i, mid in enumerate(GPM.values()):
        g.metrics[i].metricId = mid
    pynvml.nvmlGpmMetricsGet(g)
    return {k: (g.metrics[i].value if g.metrics[i].nvmlReturn == 0 else None) for i, k in enumerate(GPM)}


class Sampler:
    def __init__(self, h):
        self.h, self.util, self.gpm, self.stop = h, [], [], threading.Event()
        self.t = threading.Thread(target=self.loop)

    def loop(self):
        a, b = pynvml.nvmlGpmSampleAlloc(), pynvml.nvmlGpmSampleAlloc()
        pynvml.nvmlGpmSampleGet(self.h, a)
        n = 0
        while not self.stop.is_set():
            time.sleep(0.1)
            self.util.append(pynvml.nvmlDeviceGetUtilizationRates(self.h).gpu)
            n += 1
            if n % 2 == 0:
                pynvml.nvmlGpmSampleGet(self.h, b)
                self.gpm.append(gpm_window(self.h, a, b))
                a, b = b, a


def run(name, h, work, seconds=2.0):
    torch.cuda.synchronize()
    s = Sampler(h)
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    s.t.start()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        work()
        n += 1
        if n % 50 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    s.stop.set()
    s.t.join()
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    reasons = pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
    sm = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
    mem = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
    gpm = {k: statistics.median([w[k] for w in s.gpm[1:] if w[k] is not None] or [float("nan")]) for k in GPM}
    print(
        f"{name:22} util median {statistics.median(s.util):5.1f}% (min {min(s.util)} max {max(s.util)}) | "
        + " ".join(f"{k}={v:.1f}" for k, v in gpm.items())
        + f" | {(e1 - e0) / 1000 / dt:.0f} W avg, SM {sm} MHz mem {mem} MHz, reasons 0x{reasons:x}, iters {n}"
    )


def main():
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    print("device", pynvml.nvmlDeviceGetName(h), "driver", pynvml.nvmlSystemGetDriverVersion())
    print("GPM supported:", pynvml.nvmlGpmQueryDeviceSupport(h).isSupportedDevice)
    cc = torch.cuda.get_device_capability()
    print(
        "cc",
        cc,
        "bf16 supported (emulation ok)",
        torch.cuda.is_bf16_supported(),
        "native",
        torch.cuda.is_bf16_supported(including_emulation=False),
    )
    for label, kind in [
        ("slowdown", pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
        ("shutdown", pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
        ("gpu_max", pynvml.NVML_TEMPERATURE_THRESHOLD_GPU_MAX),
    ]:
        try:
            print("temp threshold", label, pynvml.nvmlDeviceGetTemperatureThreshold(h, kind))
        except pynvml.NVMLError as exc:
            print("temp threshold", label, "n/a", exc)
    for fn in ("nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetMaxClockInfo"):
        try:
            f = getattr(pynvml, fn)
            print(fn, f(h) if fn != "nvmlDeviceGetMaxClockInfo" else (f(h, 1), f(h, 2)))
        except pynvml.NVMLError as exc:
            print(fn, "n/a", exc)
    print(f"idle reasons 0x{pynvml.nvmlDeviceGetCurrentClocksEventReasons(h):x}")
    tiny = torch.zeros(1, device="cuda")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    big = torch.empty(2**30, dtype=torch.uint8, device="cuda")  # 1 GiB
    dst = torch.empty_like(big)
    run("tiny kernels", h, lambda: [tiny.add_(1) for _ in range(100)])
    run("bf16 matmul 8192", h, lambda: a @ a)
    run("d2d copy 1 GiB", h, lambda: dst.copy_(big))
    # D2D bandwidth: read + write bytes / time
    torch.cuda.synchronize()
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ev0.record()
    for _ in range(20):
        dst.copy_(big)
    ev1.record()
    torch.cuda.synchronize()
    s = ev0.elapsed_time(ev1) / 1000 / 20
    print(f"d2d copy: {2 * big.numel() / s / 1e9:.0f} GB/s (read+write)")
    host = torch.empty(2**30, dtype=torch.uint8)
    pinned = torch.empty(2**30, dtype=torch.uint8, pin_memory=True)
    for label, src in (("pageable", host), ("pinned", pinned)):
        dst.copy_(src)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(5):
            dst.copy_(src, non_blocking=label == "pinned")
        torch.cuda.synchronize()
        print(f"h2d {label}: {5 * src.numel() / (time.perf_counter() - t) / 1e9:.1f} GB/s")
    run("h2d pinned 1 GiB", h, lambda: dst.copy_(pinned, non_blocking=True), seconds=1.5)


if __name__ == "__main__":
    main()
