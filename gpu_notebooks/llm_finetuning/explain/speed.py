"""Learner texts about speed and precision: MFU, the fast path, FP16, TF32, the roofline."""

from __future__ import annotations

import torch

from gpu_notebooks.gpu.peaks import DENSE_PEAK_TFLOPS, dense_peak_flops, memory_bandwidth
from gpu_notebooks.llm_finetuning.estimates import arithmetic_intensity, largest_matmul
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes, fmt_count, mib_with_units
from gpu_notebooks.llm_finetuning.loss import LOSS_CHUNK_BYTES, lm_head_rows
from gpu_notebooks.llm_finetuning.precision import dtype_name
from gpu_notebooks.llm_finetuning.speed import (
    COMPILE_MEASUREMENTS,
    COMPILE_PAYS_AFTER_STEPS,
    COMPILE_PAYS_AFTER_TOKENS,
    FAST_PATH_MEASURED_ON,
    SYNC_EVERY,
    THROUGHPUT_MEASUREMENTS,
    choose_speed_plan,
    compile_break_even,
)


def why_mfu_text(why):
    """The MFU formula with this model's numbers, the datasheet peaks it divides by, and what GPM adds."""
    rows = "\n".join(
        f"| {names[0]} | {t['fp16']:g} | {'—' if t['bf16'] is None else format(t['bf16'], 'g')} |"
        for names, t in DENSE_PEAK_TFLOPS
    )
    return f"""
**MFU (model FLOPs utilisation)** = tokens/s × model FLOPs per token ÷ the card's dense peak FLOP/s.
It says how much of the card's arithmetic the *model's* math uses, whatever the software does around it.

With a frozen base and LoRA adapters, one training token costs (a multiply-add = 2 FLOPs):

$$\\text{{FLOPs/token}} = \\underbrace{{2N + 2LTd}}_{{\\text{{forward}}}} + \\underbrace{{2N + 2LTd}}_{{\\text{{input gradients}}}}
+ \\underbrace{{6N_\\text{{LoRA}}}}_{{\\text{{adapters}}}}$$

$N$ = the matmul weights (LM head included, embedding lookups not), $L$ layers, width $d$, $T$ = the longest
training example; frozen weights get no weight gradient, which saves the $2N$ that full fine-tuning pays. For
this model: $N_\\text{{LoRA}}$ = {why["lora_params"]:,}, $L$ = {why["n_layer"]}, $d$ = {why["n_embd"]}. Tokens
are the real (non-padding) ones, so padding shows as lost MFU. Step 5 shows MFU live and at the end.

The peak comes from this small table of **NVIDIA datasheet figures** (dense Tensor Core TFLOPS, without
sparsity; not measured here). A card that is not in it shows "n/a" and says so; an FP32 run has no MFU here.

| card | FP16 dense TFLOPS | BF16 dense TFLOPS |
|---|---|---|
{rows}

**GPM** (NVML's GPU performance monitoring, Hopper and newer) samples what the SMs really did, in windows
of 100 ms: *SM activity* (share of time SMs had work), *SM occupancy* (warps resident vs the maximum),
*Tensor Core activity* (any Tensor Core pipe; HMMA = the FP16/BF16 one), *DRAM bandwidth* (share of the
peak), and PCIe traffic. Classic "GPU utilisation" only says *some* kernel was running: high utilisation with
low SM activity means tiny kernels (launch-bound); high DRAM with low Tensor activity, memory-bound; high
Tensor activity, compute-bound. Energy is NVML's total-energy counter read before and after training.
"""


def fast_path_measured_text():
    """The reference figures of the fast path, each from a recorded run (card and date in the heading)."""
    names = ("PEFT + Trainer", "plain", "fast", "fast + compile")

    def cell(speeds, memory, name):
        return f"{speeds[name]:,}" + (f", peak {mib_with_units(memory[name])}" if name in memory else "")

    speed_rows = "\n".join(
        f"| {b} × {t} | " + " | ".join(cell(speeds, memory, n) for n in names) + " |"
        for b, t, speeds, memory in THROUGHPUT_MEASUREMENTS
    )
    even_rows = []
    for targets, b, t, eager_ms, compiled_ms, first_s in COMPILE_MEASUREMENTS:
        steps, tokens = compile_break_even(eager_ms, compiled_ms, first_s, b * t)
        even_rows.append(
            f"| {targets} | {b} × {t} | {eager_ms:g} | {compiled_ms:g} | {first_s:g} s | {steps:,} steps "
            f"({fmt_count(tokens)} tokens) |"
        )
    even_rows = "\n".join(even_rows)
    return f"""
**Measured on an {FAST_PATH_MEASURED_ON}** (notes/BENCHMARKS.md; GPT-2 124M with random weights, LoRA r=16,
FP16 + GradScaler, `bench/lora_throughput.py`). These are reference figures from that card, not this run:
step 5 shows this run's tokens/s. Tokens/s, LoRA on the attention `c_attn`/`c_proj` (24 modules):

| batch × length | PEFT + Trainer | app plain | app fast | app fast + compile |
|---|---|---|---|---|
{speed_rows}

Compile break-even from the same runs: a compiled run catches up with the eager one after (first compiled
step − one compiled step) ÷ (eager − compiled ms per step) steps (`compile_break_even`):

| LoRA targets | batch × length | eager ms/step | compiled ms/step | first compiled step | pays after |
|---|---|---|---|---|---|
{even_rows}

*auto* compiles only runs at least as long as the longest of these. Profiled on the same card
(`bench/profile_step.py`, notes/BENCHMARKS.md): before the LM head was padded, its two unaligned GEMMs took
24 ms of a 69 ms step's kernels at 32 × 512 (36 modules); padded, the eager step's kernels took 41 ms. The
compiled step launched about 1,000 kernels per step before CUDA graphs (36 modules) and 804 inside them
(24 modules). The start-up warm-up took 4.3 s and 4.0 s in two runs; the default demo, click to results with
the model on disk, 3.46 s and 3.64 s (13.41 s on the plain path).
"""


def why_fast_text(settings, why):
    """The speed levers and what each removes, with this model's and these settings' numbers."""
    plan = choose_speed_plan(settings.speed, "cuda")
    vocab, width = why["vocab_size"], why["n_embd"]
    padded = -(-vocab // 128) * 128
    eager_rows, compiled_rows = lm_head_rows(padded), lm_head_rows(padded, 4 * LOSS_CHUNK_BYTES)
    logits_bytes = settings.batch_size * settings.max_length * vocab * 4
    gpt2 = why.get("architecture", "gpt2") == "gpt2"
    gelu = (
        'GPT-2\'s `gelu_new` is eight element-wise kernels; `GELU(approximate="tanh")` is the same formula in one'
        if gpt2
        else "nothing for this model: it is GPT-2's lever (its `gelu_new` is eight element-wise kernels); the Llama "
        "family's MLP uses SiLU, which PyTorch runs as one op"
    )
    warm = (
        "a one-layer GPT-2 of the same width runs the demo's steps once in the background at start-up, so the "
        "first Train click is as fast as the next"
        if gpt2
        else "a one-layer GPT-2 runs the GPT-2 demo's steps once in the background at start-up; that warms the "
        "process and the shared kernels, not every kernel of this model"
    )
    head = (
        f"this vocabulary ({vocab:,}) is not a multiple of 128, which puts cuBLAS on slower unaligned kernels; {padded - vocab} zero rows "
        f"(masked to −∞) make it {padded:,}, a multiple of 128"
        if padded != vocab
        else f"this vocabulary ({vocab:,}) is already a multiple of 128, so nothing is added"
    )
    return f"""
Your setting: **{plan.name}**{" (auto: compiles only long runs)" if settings.speed == "auto" else ""}. Every
lever keeps the maths of a step: the fast and plain paths give the same loss curve within FP16 rounding
(tested on CPU in FP32 and on a GPU in FP16).

| lever | what it removes |
|:---|:---|
| **loss on answer tokens only, in chunks** | the LM head multiplies every position by a {width:,} × {vocab:,} matrix (this model's width × vocabulary); only answer tokens carry loss (step 4 shows this run's share as "tokens that carry loss"). At batch {settings.batch_size} × {settings.max_length} the full FP32 logits would take {fmt_bytes(logits_bytes)}; an eager chunk of {eager_rows:,} rows holds {fmt_bytes(eager_rows * padded * 4)} of FP32 probabilities, a compiled chunk takes {compiled_rows:,} rows in 16-bit ({fmt_bytes(compiled_rows * padded * 2)} per copy of its logits) |
| **LM head padded to a multiple of 128 rows** | {head} |
| **no padding mask** | batches are right-padded and attention is causal, so no real token ever sees padding: SDPA runs with `is_causal=True` (flash attention), and transformers' mask checks, which wait for the GPU, are skipped |
| **fused AdamW, schedule on the GPU, read back every {SYNC_EVERY} steps** | a host sync per step (`loss.item()`) stops the CPU from queueing the next step; now the GradScaler's skip, the learning rate and the loss stay on the GPU |
| **one-kernel GELU** | {gelu} |
| **torch.compile + CUDA graphs** | fuses LayerNorm, dropout, GELU and residual adds; CUDA graphs replay a step's kernels without the CPU launching each one. Compiling is paid again by every run (each run's compiled model is dropped with the run to free its memory; inductor's on-disk cache shortens later compiles), so *auto* uses it only for runs of ≥ {fmt_count(COMPILE_PAYS_AFTER_TOKENS)} tokens or ≥ {COMPILE_PAYS_AFTER_STEPS:,} steps, the measured break-even below |
| **kernels warmed when the app opens** | the first CUDA work of a process loads every kernel it touches and sets up cuBLAS and flash attention; {warm} |
{fast_path_measured_text()}"""


def why_fp16_text(plan=None):
    """'Why mixed precision (FP16)' with numbers computed by torch on this machine; its last line says what
    this run's `plan` stores in which dtype (None: a mixed-precision GPU run, as the docs show it)."""
    fp16, bf16 = torch.finfo(torch.float16), torch.finfo(torch.bfloat16)
    tiny_gradient = 1e-8
    in_fp16 = torch.tensor(tiny_gradient, dtype=torch.float16).item()
    scale = 2.0**16
    scaled = torch.tensor(tiny_gradient * scale, dtype=torch.float16).item()
    return f"""
- **Speed:** Tensor Cores multiply FP16/BF16 matrices many times faster than FP32 on the same GPU, and half
  the bytes means half the memory traffic and activation memory. Autocast (`torch.amp.autocast`) runs matmuls in
  FP16 and keeps precision-sensitive ops (softmax, layer norm, the loss) in FP32.
- **FP16's range is narrow:** largest value {fp16.max:,.0f}, smallest normal {fp16.tiny:.2e}, smallest subnormal
  {2.0**-24:.2e}. A gradient of {tiny_gradient:g} stored in FP16 becomes **{in_fp16}** — it **underflows to zero**
  and that update is lost.
- **GradScaler** multiplies the loss by a scale (e.g. 2^16 = {scale:,.0f}) before `backward()`, so every gradient
  is scaled too: {tiny_gradient:g} × {scale:,.0f} = {scaled:.3e} survives in FP16. Then, in this order:
  **unscale** (divide the FP32 adapter gradients back), **clip** the true gradient norm, **step** (skipped if any
  gradient is inf/NaN), **update** (halve the scale after an overflow, grow it after a run of good steps).
- **BF16** keeps FP32's 8-bit exponent (max {bf16.max:.2e}, smallest normal {bf16.tiny:.2e}), so gradients do not
  underflow and no scaler is needed; it pays with precision: machine epsilon {bf16.eps:.1e} vs FP16's {fp16.eps:.1e}.
- **Which one when:** on Ampere and newer GPUs (compute capability 8.0 and up, native BF16 Tensor Cores) BF16
  without a scaler is the usual default for training. FP16 + GradScaler is what Volta and Turing (7.x) run
  fast; there BF16 is only emulated. A CPU run uses FP32 (FP16 autocast gains nothing there). This app decides
  "native BF16" by compute capability, not by `torch.cuda.is_bf16_supported()`, whose default also says
  yes on Volta/Turing. *auto* keeps FP16 + GradScaler for GPT-2, because the scaler is what this section
  teaches, and picks BF16 for the Llama family where the GPU has it natively.
- {here_text(plan)}
"""


def here_text(plan):
    """The mixed-precision section's last line: what this run stores in which dtype."""
    master = 'the adapter weights, their gradients and AdamW\'s moments stay in FP32, the "master copy" that small updates need'
    if plan is None:
        return (
            f"**Here:** the frozen base weights are stored in the compute dtype (half the memory); {master}."
        )
    if plan.autocast_dtype is None:
        return (
            f"**This run is {plan.name}:** every weight, activation and gradient is FP32 (no autocast, no "
            "scaler). In an FP16 or BF16 run on a CUDA GPU the frozen base weights are stored in the compute dtype "
            f"(half the memory) and {master}."
        )
    if plan.param_dtype == torch.float32:
        return (
            f"**This run is {plan.name}:** the weights are stored in FP32 (no memory saved on them) and autocast "
            f"runs the matmuls in {dtype_name(plan.autocast_dtype)}."
        )
    return (
        f"**This run is {plan.name}:** the frozen base weights are stored in {dtype_name(plan.param_dtype)} (half "
        f"the memory); {master}."
    )


def tf32_text(plan, device_type, compute_capability=(0, 0), current=None):
    """What `torch.set_float32_matmul_precision("high")` changes (sourced), and whether it touches this run."""
    current = current or torch.get_float32_matmul_precision()
    if device_type != "cuda":
        here = "This run is on a **CPU**: the flag affects CUDA only, so it changes nothing here."
    elif plan.autocast_dtype is not None:
        here = (
            f"This run is **{plan.name}**: its matmuls run in {dtype_name(plan.autocast_dtype)} "
            "under autocast (the chunked loss casts to it as well), on the Tensor Cores already. TF32 changes "
            "FP32 matmuls only, so the flag would not change this run."
        )
    elif compute_capability >= (8, 0):
        here = (
            'This run is **FP32 on a GPU with TF32 Tensor Cores**: `"high"` would move its matmuls onto them, '
            "faster at TF32's 10-bit mantissa. The app leaves PyTorch's default, so they run in full FP32."
        )
    else:
        here = (
            f"This run is **FP32 on a GPU of compute capability {compute_capability[0]}.{compute_capability[1]}**: "
            "TF32 Tensor Cores start with Ampere (8.0), so the flag changes nothing on this card."
        )
    return f"""
`torch.set_float32_matmul_precision("high")` lets **FP32** matrix multiplications compute internally in
TF32 (FP32's 8-bit exponent with 10 explicitly stored mantissa bits) where a fast TF32 algorithm exists; the
result stays FP32. The default is `"highest"` (full FP32), and the flag affects CUDA only (PyTorch docs,
`torch.set_float32_matmul_precision`). TF32 Tensor Cores exist on Ampere and later GPUs (PyTorch docs, CUDA
semantics, "TensorFloat-32 (TF32) on Ampere (and later) devices").

This process's setting now: `"{current}"`; the app never changes it. {here}
"""


def roofline_text(facts, plan, speed, device_type, device_name, tokens, loss_rows):
    """Compute-, memory- or overhead-bound: this run's largest matmul against the card's ridge point."""
    name, m, k, n = largest_matmul(facts, tokens, loss_rows, speed.fused_loss)
    dtype = plan.autocast_dtype or plan.param_dtype
    element_bytes = dtype.itemsize
    intensity = arithmetic_intensity(m, k, n, element_bytes)
    flops = 2 * m * k * n
    head = (
        f"This run's largest matmul is the **{name}**: [{m:,} × {k:,}] · [{k:,} × {n:,}] in "
        f"{dtype_name(dtype)}, {flops / 1e9:,.2f} GFLOP over {fmt_bytes(element_bytes * (m * k + k * n + m * n))} "
        f"read and written: **{intensity:,.0f} FLOPs per byte** (arithmetic intensity; {m:,} rows = "
        f"{'one loss chunk' if 'chunk' in name else 'the token positions of one batch, at most'})."
    )
    if device_type != "cuda":
        place = (
            "This is a CPU run: the app has no roofline for CPUs, so it **cannot place** this matmul on one."
        )
    else:
        peak, peak_source = dense_peak_flops(device_name, dtype)
        bandwidth, bandwidth_source = memory_bandwidth(device_name)
        if peak is None or bandwidth is None:
            place = f"The app **cannot place** it on this card's roofline: {peak_source if peak is None else bandwidth_source}."
        else:
            ridge = peak / bandwidth
            side = "above" if intensity >= ridge else "below"
            regime = "compute-bound (Tensor Cores)" if intensity >= ridge else "memory-bound (HBM bandwidth)"
            place = (
                f"On this **{device_name}** the ridge point is {peak / 1e12:,.0f} TFLOPS ÷ {bandwidth / 1e12:g} TB/s = "
                f"**{ridge:,.0f} FLOPs per byte** ({peak_source}; {bandwidth_source}: datasheet figures, not measured). "
                f"The matmul sits "
                f"{side} it: **{regime}** if the GPU is kept fed. At the peak it would take "
                f"**{flops / peak * 1e6:,.1f} µs**."
            )
    return f"""
The roofline model: an operation doing $F$ FLOPs while moving $B$ bytes cannot run faster than
$\\max(F/\\text{{peak FLOP/s}},\\ B/\\text{{bandwidth}})$. Its **arithmetic intensity** $F/B$ against the card's
**ridge point** (peak FLOP/s ÷ bandwidth) says which roof limits it: above the ridge **compute-bound**, below
**memory-bound**. A third regime has no roof: **overhead-bound**, when each kernel is so short that launching it,
Python and host syncs take longer than the work.

{head}

{place}

The element-wise work between the matmuls (norms, GELU/SiLU, residual adds, dropout) does about one FLOP per
byte: memory-bound on every card. And a step is hundreds of kernels: when each takes a few microseconds the
CPU's launches set the pace (overhead-bound), which is what the fast path's deferred read-backs and CUDA graphs
attack. Step 5's MFU and GPM SM / Tensor Core / DRAM activity say which regime this run was really in.
"""
