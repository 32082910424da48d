"""Estimates from the planned run: where training memory goes, QLoRA bytes, the largest matmul."""

from __future__ import annotations

import torch

from gpu_notebooks.llm_finetuning.lora import matmul_weight_count, parameter_counts
from gpu_notebooks.llm_finetuning.loss import lm_head_rows
from gpu_notebooks.llm_finetuning.models import model_shape
from gpu_notebooks.llm_finetuning.precision import bf16_native, choose_precision, resolve_precision
from gpu_notebooks.llm_finetuning.speed import choose_speed_plan
from gpu_notebooks.llm_finetuning.telemetry import lora_flops_per_token


def planned_run(settings, environment):
    """The precision and speed plans a Train click would resolve to on this machine, before it loads anything."""
    device = torch.device("cuda" if environment["cuda_available"] else "cpu")
    precision, _ = choose_precision(settings, device)
    return {
        "plan": resolve_precision(precision, device.type, bf16_native(device)),
        "speed": choose_speed_plan(settings.speed, device.type),
        "device_type": device.type,
        "device_name": environment.get("gpu") or f"CPU ({environment['cpu_cores']} cores)",
        "compute_capability": tuple(int(x) for x in environment.get("compute_capability", "0.0").split(".")),
    }


def run_model_facts(run):
    """The numbers the memory, QLoRA and roofline texts need, read from the run's model (it is freed in step 7)."""
    trainable, total = parameter_counts(run.model)
    matmul, linear = matmul_weight_count(run.model)
    return {
        "shape": model_shape(run.model.config),
        "base_params": total - trainable,
        "lora_params": trainable,
        "matmul_params": matmul,
        "linear_params": linear,
    }


def activation_values_per_token(shape, fast_gelu=True):
    """Values one layer keeps per token for the backward pass: an estimate from the architecture.

    GPT-2: both LayerNorms' inputs and outputs, q, k and v, the attention output, and the MLP's activations
    before and after GELU (8·d + 2·d_mlp). Llama: both RMSNorms' inputs and outputs, q, k and v (k and v at
    the key/value width), the attention output, and SwiGLU's gate, up, SiLU(gate) and product
    (6·d + 2·d_kv + 4·d_mlp). GPT-2's own `gelu_new` (eight element-wise kernels; the plain path keeps it)
    keeps three more MLP-wide tensors. Flash attention keeps no T × T scores. Dropout masks and LoRA's
    r-wide intermediates are left out. A CPU test counts what autograd really saves against this.
    """
    d, kv, m = shape["d_model"], shape["kv_width"], shape["mlp_width"]
    if shape["architecture"] == "gpt2":
        return 8 * d + 2 * m + (0 if fast_gelu else 3 * m)
    return 6 * d + 2 * kv + 4 * m


def training_memory(facts, plan, speed, tokens, loss_rows):
    """Estimated bytes of one training step by part, for `tokens` positions per batch (`loss_rows` carry loss)."""
    shape, lora = facts["shape"], facts["lora_params"]
    vocab, width = shape["vocab"], shape["d_model"]
    weight_bytes = plan.param_dtype.itemsize
    compute_bytes = (plan.autocast_dtype or plan.param_dtype).itemsize
    per_token = activation_values_per_token(shape, speed.fast_gelu)
    if (
        speed.fused_loss
    ):  # one chunk's logits and FP32 probabilities, the stored input gradient, the padded head
        padded = -(-vocab // 128) * 128
        rows = min(loss_rows, lm_head_rows(padded))
        logits = rows * padded * (compute_bytes + 4) + loss_rows * width * 4 + padded * width * compute_bytes
    else:  # the full logits, then an FP32 copy at the loss positions and cross-entropy's saved log-softmax
        logits = tokens * vocab * compute_bytes + 2 * loss_rows * vocab * 4
    return {
        "frozen base weights": facts["base_params"] * weight_bytes,
        "LoRA weights (FP32)": 4 * lora,
        "LoRA gradients (FP32)": 4 * lora,
        "AdamW moments (FP32, two per weight)": 8 * lora,
        "activations kept for backward": shape["n_layer"] * tokens * per_token * compute_bytes,
        "logits and loss": logits,
    }


def memory_levers(facts, parts, plan, speed, tokens, seq_len, batch_size):
    """What gradient checkpointing and gradient accumulation would do to this step's memory and time."""
    shape = facts["shape"]
    compute_bytes = (plan.autocast_dtype or plan.param_dtype).itemsize
    per_layer = tokens * activation_values_per_token(shape, speed.fast_gelu) * compute_bytes
    # Checkpointing every block keeps each block's input only and recomputes one block at a time in backward.
    checkpointed = shape["n_layer"] * tokens * shape["d_model"] * compute_bytes + per_layer
    attention = shape["n_layer"] * seq_len * shape["d_model"]
    forward = 2 * facts["matmul_params"] + 2 * attention
    step = lora_flops_per_token(facts["matmul_params"], shape["n_layer"], seq_len, shape["d_model"], 0)
    step += 6 * facts["lora_params"]
    k = 4 if batch_size >= 4 else batch_size
    return {
        "activations": parts["activations kept for backward"],
        "checkpointed_activations": checkpointed,
        "extra_flops_share": forward / step,  # one more forward on top of forward + backward
        "accumulation_steps": k,
        "micro_batch": batch_size // k,
        "accumulated_activations": (parts["activations kept for backward"] + parts["logits and loss"]) / k,
    }


def qlora_bytes(facts, weight_bytes):
    """(base weights now, the same base with its linear layers in 4-bit NF4) in bytes.

    NF4 stores 4 bits per weight plus its block's constant: QLoRA's double quantization brings that constant
    to 8/64 + 32/(64·256) = 0.127 bits per weight (blocks of 64 weights, constants in blocks of 256).
    Embeddings, the LM head, norms and biases stay in 16-bit.
    """
    now = facts["base_params"] * weight_bytes
    nf4 = facts["linear_params"] * (4 + 8 / 64 + 32 / (64 * 256)) / 8
    return now, nf4 + (facts["base_params"] - facts["linear_params"]) * 2


def largest_matmul(facts, tokens, loss_rows, fused_loss):
    """(name, M, K, N) of the step's largest matmul by FLOPs: the MLP's or attention's projections over
    `tokens` rows, or the LM head (on the fast path over the `loss_rows` only, one chunk at most)."""
    shape = facts["shape"]
    d, kv, m, vocab = shape["d_model"], shape["kv_width"], shape["mlp_width"], shape["vocab"]
    head_rows = min(loss_rows, lm_head_rows(-(-vocab // 128) * 128)) if fused_loss else tokens
    fused_qkv = shape["architecture"] == "gpt2"
    candidates = [
        (
            "attention q, k, v (fused c_attn)" if fused_qkv else "attention q_proj",
            tokens,
            d,
            d + 2 * kv if fused_qkv else d,
        ),
        ("MLP up-projection", tokens, d, m),
        ("MLP down-projection", tokens, m, d),
        ("LM head" + (" (one loss chunk)" if fused_loss else ""), head_rows, d, vocab),
    ]
    return max(candidates, key=lambda c: c[1] * c[2] * c[3])


def arithmetic_intensity(m, k, n, element_bytes):
    """FLOPs per byte of an [m × k] · [k × n] matmul that reads both inputs and writes the output once."""
    return 2 * m * k * n / (element_bytes * (m * k + k * n + m * n))
