"""What this machine is: the device, its name and the libraries, in a few lines."""

from __future__ import annotations

import os
import sys

import psutil
import torch

from gpu_notebooks.gpu.nvml import nvml_module


def describe_environment():
    """Device facts from torch, NVML and psutil; no failure when there is no GPU or driver."""
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_cores": os.cpu_count(),
        "ram_gib": psutil.virtual_memory().total / 2**30,
    }
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(
            gpu=props.name,
            gpu_memory_gib=props.total_memory / 2**30,
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),  # emulated BF16 is slow
        )
    nvml = nvml_module()
    if nvml is not None:
        try:
            nvml.nvmlInit()
            info["driver"] = nvml.nvmlSystemGetDriverVersion()
            info["nvml_gpus"] = nvml.nvmlDeviceGetCount()
            nvml.nvmlShutdown()
        except Exception as err:  # NVMLError has many subclasses; any of them means "no NVML here"
            info["nvml_error"] = str(err)
    return info


def device_label(device):
    """'NVIDIA H100 80GB HBM3' or 'CPU (16 cores)'."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"


def device_status(sampler):
    """The sampler's latest reading as a short progress-bar subtitle."""
    if not sampler.samples:
        return "sampling…"
    last = sampler.samples[-1]
    if sampler.source == "NVML":
        parts = [
            None if last["util_pct"] is None else f"GPU {last['util_pct']:.0f}%",
            None if last["memory_used_gb"] is None else f"{last['memory_used_gb']:.1f} GB used",
            None if last.get("sm_clock_mhz") is None else f"SM {last['sm_clock_mhz']} MHz",
            None if last.get("clock_events") in (None, "none") else f"clocks held by {last['clock_events']}",
        ]
        return " · ".join(p for p in parts if p) or "no NVML reading"
    return f"CPU {last['util_pct']:.0f}% · process {last['memory_used_gb']:.1f} GB"
