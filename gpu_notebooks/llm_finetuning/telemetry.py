"""Training telemetry: the classic sampler of a torch device, GPM status, energy, MFU cards."""

from __future__ import annotations

import marimo as mo
import torch

from gpu_notebooks.gpu.nvml import (
    nvml_module,
    nvml_ready,
    read_energy_mj,
    read_nvml,
)
from gpu_notebooks.gpu.peaks import dense_peak_flops
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.llm_finetuning.environment import device_label
from gpu_notebooks.llm_finetuning.formatting import fmt_count
from gpu_notebooks.llm_finetuning.lora import matmul_weight_count


def device_sampler(device, interval_s: float = 0.1) -> GpuSampler:
    """The shared classic sampler on a torch device's GPU; on a CPU, this process's CPU and memory (psutil)."""
    indices = [nvml_device_index(device)] if device.type == "cuda" else []
    return GpuSampler(interval_s=interval_s, device_indices=indices, cpu_fallback=True)


def training_telemetry_plan(run):
    """What step 5 needs to show MFU: FLOPs per token of this model, LoRA and length, and the card's peak."""
    seq_len = max(len(e["input_ids"]) for e in run.train_loader.dataset)
    peak, source = (
        dense_peak_flops(device_label(run.device), run.plan.autocast_dtype)
        if run.device.type == "cuda"
        else (None, "no GPU: MFU is a GPU figure")
    )
    return {
        "flops_per_token": run_flops_per_token(run, seq_len),
        "seq_len": seq_len,
        "peak_flops": peak,
        "peak_source": source,
    }


def nvml_device_index(device):
    """NVML's index of a torch CUDA device (matched by UUID: CUDA_VISIBLE_DEVICES renumbers devices)."""
    nvml = nvml_module()
    uuid = str(getattr(torch.cuda.get_device_properties(device), "uuid", ""))
    if not uuid or not nvml_ready(nvml):
        return device.index or 0
    handle = read_nvml(
        nvml, nvml.nvmlDeviceGetHandleByUUID, uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
    )
    index = None if handle is None else read_nvml(nvml, nvml.nvmlDeviceGetIndex, handle)
    return (device.index or 0) if index is None else index


def gpm_status(gpm):
    """The GPM sampler's latest window as a short progress-bar fragment ('' when there is none)."""
    if gpm is None or not gpm.available or not gpm.samples:
        return ""
    last = gpm.samples[-1]
    parts = [
        (label, last.get(key))
        for label, key in (("SM", "sm_active_pct"), ("Tensor", "tensor_active_pct"), ("DRAM", "dram_bw_pct"))
    ]
    return " · ".join(f"{label} {value:.0f}%" for label, value in parts if value is not None)


def telemetry_cards(result, history):
    """Step 5's GPU-activity row: MFU, GPM's SM / Tensor Core / DRAM means, and joules per 1M tokens."""
    real_tokens = int(history["real_tokens"].sum()) if len(history) else 0
    seconds = float(history["seconds"].sum()) if len(history) else 0.0
    achieved = mfu(
        real_tokens / seconds if seconds else None, result.get("flops_per_token"), result.get("peak_flops")
    )
    cards = [
        mo.stat(
            "n/a" if achieved is None else f"{100 * achieved:.1f}%",
            label="MFU (model FLOPs utilisation)",
            caption=(
                f"{fmt_count(result.get('flops_per_token') or 0)} FLOPs/token vs {result.get('peak_source')}"
                if achieved is not None
                else result.get("peak_source") or "not measured"
            ),
            bordered=True,
        )
    ]
    gpm = result.get("gpm")
    if gpm is not None and gpm.available and gpm.samples:
        means = gpm.means()
        for label, key in (
            ("SM activity (GPM)", "sm_active_pct"),
            ("Tensor Core activity (GPM)", "tensor_active_pct"),
            ("DRAM bandwidth (GPM)", "dram_bw_pct"),
        ):
            value = means[key]
            cards.append(
                mo.stat(
                    "n/a" if value is None else f"{value:.0f}%",
                    label=label,
                    caption=f"mean of {len(gpm.samples)} windows of {gpm.interval * 1000:.0f} ms",
                    bordered=True,
                )
            )
    else:
        reason = "no GPU" if gpm is None else gpm.unavailable_reason
        cards.append(mo.stat("n/a", label="GPM (SM, Tensor, DRAM)", caption=reason, bordered=True))
    energy = result.get("energy_j")
    cards.append(
        mo.stat(
            "n/a" if energy is None or not real_tokens else f"{energy / real_tokens * 1e6:,.0f} J",
            label="energy per 1M tokens",
            caption="NVML total-energy counter around training"
            if energy is not None
            else "no NVML energy counter here",
            bordered=True,
        )
    )
    return mo.hstack(cards, widths="equal")


def mfu(tokens_per_s, flops_per_token, peak_flops):
    """Model FLOPs utilisation: achieved model FLOP/s over the card's dense peak; None when a term is unknown."""
    if not tokens_per_s or not flops_per_token or not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops


def lora_flops_per_token(matmul_params, n_layer, seq_len, d_model, lora_params):
    """Model FLOPs to train one token with LoRA on a frozen base (multiply-add = 2 FLOPs).

    forward 2·N + 2·L·T·d (weights, then attention scores and values over T positions), the backward's
    input gradients as much again (frozen weights get no weight gradient), and the adapters 6·N_lora
    (forward, input gradient, weight gradient): 4·N + 4·L·T·d + 6·N_lora. N counts the matmul weights,
    the LM head included, not the embedding lookups.
    """
    return 4 * matmul_params + 4 * n_layer * seq_len * d_model + 6 * lora_params


def run_flops_per_token(run, seq_len):
    """lora_flops_per_token for the run's model: its matmul weights, layers, width and adapters."""
    config = run.model.config
    lora = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    matmul, _ = matmul_weight_count(run.model)
    return lora_flops_per_token(matmul, config.num_hidden_layers, seq_len, config.hidden_size, lora)


def device_energy_mj(device):
    """NVML's total energy counter of the torch device in millijoules (None off CUDA, without NVML or the counter)."""
    if device.type != "cuda":
        return None
    return read_energy_mj((nvml_device_index(device),))
