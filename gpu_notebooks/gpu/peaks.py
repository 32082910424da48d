"""Datasheet peaks per card: dense Tensor Core TFLOPS and memory bandwidth (not measurements)."""

from __future__ import annotations

import re

import torch

# Dense (no sparsity) Tensor Core peaks in TFLOPS from NVIDIA's datasheets, by name as torch reports it;
# bf16 None: no BF16 Tensor Cores. Datasheet figures, not measurements: MFU is relative to these.
DENSE_PEAK_TFLOPS = (
    (("H200 NVL",), {"fp16": 835.0, "bf16": 835.0}),
    (("H200",), {"fp16": 989.4, "bf16": 989.4}),
    (("H100 PCIe",), {"fp16": 756.0, "bf16": 756.0}),
    (("H100 NVL",), {"fp16": 835.0, "bf16": 835.0}),
    (("H100",), {"fp16": 989.4, "bf16": 989.4}),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (("A100",), {"fp16": 312.0, "bf16": 312.0}),
    (("L40S",), {"fp16": 362.05, "bf16": 362.05}),
    (("L4",), {"fp16": 121.0, "bf16": 121.0}),
    (("V100",), {"fp16": 125.0, "bf16": None}),
    (("T4",), {"fp16": 65.0, "bf16": None}),
)
# Peak memory bandwidth in TB/s from NVIDIA's datasheets, matched like DENSE_PEAK_TFLOPS (first match wins):
# with those peaks it gives a card's roofline ridge point. Datasheet figures, not measurements.
MEMORY_BANDWIDTH_TBS = (
    (("H200 NVL",), 4.8),
    (("H200",), 4.8),
    (("H100 PCIe",), 2.0),
    (("H100 NVL",), 3.9),
    (("H100",), 3.35),  # SXM5
    (("A100-SXM4-80GB",), 2.039),
    (("A100 80GB PCIe",), 1.935),
    (("A100",), 1.555),  # the 40 GB cards
    (("L40S",), 0.864),
    (("L4",), 0.3),
    (("V100",), 0.9),
    (("T4",), 0.32),
)


def dense_peak_flops(device_name, dtype):
    """(FLOP/s, source) of the card's dense FP16/BF16 Tensor Core peak from DENSE_PEAK_TFLOPS; (None, why)."""
    if dtype not in (torch.float16, torch.bfloat16):
        return None, "an FP32 run: no dense FP16/BF16 Tensor Core peak applies"
    for names, tflops in DENSE_PEAK_TFLOPS:
        if any(re.search(rf"\b{re.escape(name)}\b", device_name or "") for name in names):
            if dtype == torch.bfloat16 and tflops.get("bf16") is None:
                return None, f"{device_name} has no BF16 Tensor Cores"
            return tflops["bf16" if dtype == torch.bfloat16 else "fp16"] * 1e12, (
                f"{names[0]} datasheet, dense (no sparsity)"
            )
    return None, f"`{device_name}` is not in the app's small table of datasheet peaks"


def memory_bandwidth(device_name):
    """(bytes/s, source) of the card's peak memory bandwidth from MEMORY_BANDWIDTH_TBS, or (None, why)."""
    for names, tbs in MEMORY_BANDWIDTH_TBS:
        if any(re.search(rf"\b{re.escape(name)}\b", device_name or "") for name in names):
            return tbs * 1e12, f"{names[0]} datasheet memory bandwidth"
    return None, f"`{device_name}` is not in the app's small table of datasheet bandwidths"
