"""NVML readings that never raise: the card's facts, live readings, clock-event reasons, the energy counter."""

from __future__ import annotations


def nvml_module():
    """The pynvml module from nvidia-ml-py, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def read_nvml(nvml, read, *args):
    """One NVML reading `read(*args)` of the binding `nvml`, or None when the card, driver or binding does not
    provide it: NVML's own errors only (a programming error still raises)."""
    error = getattr(nvml, "NVMLError", OSError)
    try:
        return read(*args)
    except (error, AttributeError, NotImplementedError):  # not supported here / a binding without it
        return None


def nvml_ready(nvml):
    """True when NVML starts (a driver is there); nvmlInit returns nothing, so success is "it did not raise"."""
    if nvml is None:
        return False
    try:
        nvml.nvmlInit()
    except getattr(nvml, "NVMLError", OSError):
        return False
    return True


def nvml_handles(nvml) -> list:
    """(index, handle) of every GPU NVML sees; [] without NVML, a driver or a GPU."""
    if not nvml_ready(nvml):
        return []
    handles = [
        (i, read_nvml(nvml, nvml.nvmlDeviceGetHandleByIndex, i))
        for i in range(read_nvml(nvml, nvml.nvmlDeviceGetCount) or 0)
    ]
    return [(i, h) for i, h in handles if h is not None]


def read_gpu_status() -> list[dict]:
    """Per-GPU facts and current readings from NVML; an empty list when there is no NVIDIA GPU."""
    nvml = nvml_module()
    return [{**nvml_read(nvml, h, i), **nvml_card_facts(nvml, h)} for i, h in nvml_handles(nvml)]


def nvml_card_facts(pynvml, handle) -> dict:
    """Fixed facts of one card the text quotes (slowdown temperature, compute capability); None when not offered."""

    def get(name, *a):  # an older binding may lack the call: None, as when the card does not offer it
        fn = getattr(pynvml, name, None)
        return None if fn is None else read_nvml(pynvml, fn, handle, *a)

    cc = get("nvmlDeviceGetCudaComputeCapability")
    slowdown = getattr(pynvml, "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", 1)
    return {
        "temp_slowdown_c": get("nvmlDeviceGetTemperatureThreshold", slowdown),
        "compute_capability": tuple(cc) if cc else None,
    }


def nvml_read(pynvml, handle, index: int) -> dict:
    """One GPU's readings; a reading this card or driver does not offer (NVML raising or giving None) is None."""

    def get(name, *a):
        fn = getattr(pynvml, name, None)
        return None if fn is None else read_nvml(pynvml, fn, handle, *a)

    mem = get("nvmlDeviceGetMemoryInfo")
    util = get("nvmlDeviceGetUtilizationRates")
    power = get("nvmlDeviceGetPowerUsage")
    limit = get("nvmlDeviceGetEnforcedPowerLimit")
    clock_sm, clock_mem = getattr(pynvml, "NVML_CLOCK_SM", 1), getattr(pynvml, "NVML_CLOCK_MEM", 2)
    events = get("nvmlDeviceGetCurrentClocksEventReasons")
    name = get("nvmlDeviceGetName")
    return {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else (name or "NVIDIA GPU"),
        "memory_total_gb": mem.total / 1e9 if mem else 0.0,
        "memory_used_gb": mem.used / 1e9 if mem else None,
        "memory_free_bytes": mem.free if mem else None,
        "util_pct": getattr(util, "gpu", None),
        "mem_util_pct": getattr(util, "memory", None),
        "temp_c": get("nvmlDeviceGetTemperature", getattr(pynvml, "NVML_TEMPERATURE_GPU", 0)),
        "power_w": power / 1000 if power is not None else None,
        "power_limit_w": limit / 1000 if limit is not None else None,
        "sm_clock_mhz": get("nvmlDeviceGetClockInfo", clock_sm),
        "mem_clock_mhz": get("nvmlDeviceGetClockInfo", clock_mem),
        "clock_events": ", ".join(decode_clock_event_reasons(events)) or "none",
        "peak_bandwidth_gbs": peak_bandwidth_gbs(
            get("nvmlDeviceGetMaxClockInfo", clock_mem), get("nvmlDeviceGetMemoryBusWidth")
        ),
    }


def decode_clock_event_reasons(mask):
    """NVML's clock-event (throttle) reason bits as words; [] when nothing holds the clocks down."""
    if mask is None:
        return ["not reported"]
    words = {  # nvmlClocksEventReason* bits, from nvml.h
        0x1: "idle",
        0x2: "application clocks setting",
        0x4: "software power cap",
        0x8: "hardware slowdown",
        0x10: "sync boost",
        0x20: "software thermal slowdown",
        0x40: "hardware thermal slowdown",
        0x80: "hardware power brake",
        0x100: "display clock setting",
    }
    reasons = [word for bit, word in words.items() if mask & bit]
    unknown = mask & ~sum(words)
    return reasons + ([f"other (0x{unknown:x})"] if unknown else [])


def energy_joules(start_mj, end_mj):
    """Joules between two readings of NVML's total-energy counter (millijoules); None if either is missing."""
    if start_mj is None or end_mj is None or end_mj < start_mj:  # no counter, or it was reset
        return None
    return (end_mj - start_mj) / 1000.0


def read_energy_mj(gpus: tuple[int, ...] | None) -> float | None:
    """NVML's total energy counter summed over `gpus` (None: every GPU), in mJ; None if any GPU lacks it."""
    nvml = nvml_module()
    handles = dict(nvml_handles(nvml))
    wanted = sorted(handles) if gpus is None else list(gpus)
    if not wanted or any(g not in handles for g in wanted):
        return None
    readings = [read_nvml(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, handles[g]) for g in wanted]
    return None if any(r is None for r in readings) else float(sum(readings))


def peak_bandwidth_gbs(mem_clock_mhz: float | None, bus_width_bits: int | None) -> float | None:
    """Theoretical memory bandwidth: max memory clock × 2 (double data rate) × bus width in bytes."""
    if not mem_clock_mhz or not bus_width_bits:
        return None
    return mem_clock_mhz * 1e6 * 2 * (bus_width_bits / 8) / 1e9
