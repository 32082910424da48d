"""'What utilization hides' for the fine-tuning app: torch workloads under both samplers."""

from __future__ import annotations

import math

import pandas as pd
import torch

from gpu_notebooks.gpu.probe import utilization_probe
from gpu_notebooks.llm_finetuning.explain.memory import reference_label
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes
from gpu_notebooks.llm_finetuning.precision import bf16_native, dtype_name
from gpu_notebooks.llm_finetuning.telemetry import nvml_device_index


def median_or_none(values):
    """Median of the readings that came (None where a reading was missing); None when none came."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(pd.Series(present, dtype="float64").median()) if present else None


def probe_workloads(device, matmul_size=8192, copy_bytes=2**30):
    """The utilization probe's three workloads as (name, setup) pairs; setup() allocates and returns one
    iteration (a callable), so only one workload's tensors exist at a time."""
    dtype = (
        torch.bfloat16 if bf16_native(device) else torch.float16 if device.type == "cuda" else torch.float32
    )

    def tiny_kernels():
        x = torch.zeros(1, device=device)

        def iteration():
            for _ in range(1_000):  # one-element kernels: each is almost all launch, no work
                x.add_(1.0)

        return iteration

    def matmul():
        a, b = (torch.randn(matmul_size, matmul_size, device=device, dtype=dtype) for _ in range(2))
        out = torch.empty_like(a)
        return lambda: torch.mm(a, b, out=out)

    def copy():
        source = torch.empty(copy_bytes // 4, device=device, dtype=torch.float32)
        target = torch.empty_like(source)
        return lambda: target.copy_(source)

    return [
        ("a stream of tiny kernels (1 element each)", tiny_kernels),
        (f"{dtype_name(dtype)} matmul {matmul_size:,} × {matmul_size:,}", matmul),
        (f"device-to-device copy of {fmt_bytes(copy_bytes)}", copy),
    ]


def run_utilization_probe(device, seconds=1.5, matmul_size=8192, copy_bytes=2**30):
    """The shared probe harness over this app's torch workloads on `device`, each for `seconds`.

    Sizes shrink to what is free beside the resident memory; every iteration is synchronized (a tiny-kernel
    iteration is already 1,000 launches). Rows as utilization_probe's; the caller holds the GPU lease.
    """
    cuda = device.type == "cuda"
    synchronize = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    if cuda:  # two copy buffers and three matmul operands must fit beside whatever else is resident
        free = torch.cuda.mem_get_info(device)[0]
        copy_bytes = min(copy_bytes, free // 4)
        matmul_size = 8192 if free > 8 * 2**30 else 4096
    gpu = nvml_device_index(device) if cuda else 0
    workloads = dict(probe_workloads(device, matmul_size, copy_bytes))
    rows = utilization_probe(workloads, synchronize, gpu=gpu, seconds=seconds, sync_every=1)
    if cuda:
        torch.cuda.empty_cache()  # the probe's buffers go back to the driver
    return rows


def utilization_probe_unavailable(environment):
    """Why the probe cannot run here, in one line (None when it can)."""
    if not environment["cuda_available"]:
        return (
            "No CUDA GPU here, so there is no utilization to probe: the three workloads need one. The table "
            f"below was {reference_label()}."
        )
    return None
