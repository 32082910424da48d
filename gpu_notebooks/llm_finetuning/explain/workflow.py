"""Learner texts about the seven steps: their titles, the live status beside Train, how it all works."""

from __future__ import annotations

# What each step cell does, in order: the status line and the steps' heading read their count and names here.
STEP_TITLES = (
    "environment and precision",
    "tokenizer and model",
    "LoRA injection",
    "data, optimizer and schedule",
    "training",
    "before/after evaluation",
    "save, check with PEFT, release",
)


def steps_heading_text():
    """The heading over the step cells, listing the steps the status line counts."""
    steps = " → ".join(f"{n} {title}" for n, title in enumerate(STEP_TITLES, start=1))
    return f"## The seven steps\n\n_{steps}. The line under **Train** follows them while they run._"


def seconds_text(seconds):
    """Elapsed time as a person reads it: 7 s, 2 min 05 s."""
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def status_text(snapshot, now):
    """The one line under the Train button for a run's snapshot (see progress.RunProgress.snapshot)."""
    total = len(STEP_TITLES)
    state, step = snapshot["state"], snapshot["step"]
    if state == "idle":
        return f"_Press **Train**: the {total} steps run below, and this line follows them._"
    elapsed = seconds_text(now - snapshot["started"])
    if state == "done":
        return f"✓ **All {total} steps done** in {elapsed}. The results are below."
    if state == "stopped":
        return (
            f"**Stopped at step {step} of {total} — {STEP_TITLES[step - 1]}** after {elapsed}: the step below "
            "says why."
        )
    if step == 0:
        return f"**Starting the {total} steps** · {elapsed} since Train"
    if snapshot.get("waiting"):
        return (
            f"**Step {step} of {total} waits for {snapshot['waiting']}**: another run (another viewer, or the "
            f"benchmark app) holds it; this one starts when it ends · waiting {seconds_text(now - snapshot['waiting_since'])}, "
            f"{elapsed} since Train"
        )
    step_elapsed = seconds_text(now - snapshot["step_started"])
    return (
        f"**Running step {step} of {total} — {STEP_TITLES[step - 1]}** · {step_elapsed} in this step, {elapsed} "
        "since Train · [the steps are below ↓](#the-seven-steps)"
    )


def how_it_works_text():
    """The "How it all works" section: what each step does and why the run is one object under one lease."""
    return r"""
## How it all works

1. **Environment and precision** — torch finds the GPU (NVML adds driver, utilization and power); without
   one the app says so and resolves the precision to something a CPU can run (*auto*: FP16 + GradScaler for
   GPT-2, BF16 for the Llama family on compute capability ≥ 8.0).
2. **Lease, seed and load** — the run takes the GPU lease it keeps until step 7 (or a stop), then seeds:
   torch's global generators (the base model's own dropout) and the run's own `torch.Generator` (LoRA's A
   init and LoRA dropout), so one seed fixes the run whatever other viewers do. Then
   `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer` (cache first, the hub only if reachable, never
   `trust_remote_code`); offline, the tiny GPT-2 or tiny Llama is built from a config with a byte-level
   BPE tokenizer trained in memory on the data.
3. **Inject** — the chosen roles become this architecture's layer names (GPT-2 `c_attn`…, Llama
   `q_proj`…); every targeted `Conv1D`/`nn.Linear` is replaced by a `LoRALayer` that holds the frozen layer
   plus A and B; every other parameter is frozen.
4. **Prepare** — one prompt template; labels are `-100` on prompt and padding tokens, so the loss is the
   response (and its end-of-text token) only; batches are padded to their own longest example. AdamW sees
   the adapter parameters only; LambdaLR does warm-up then cosine; GradScaler is on for FP16.
5. **Train** — autocast forward, loss in FP32, scaled backward, unscale → clip → step → update. A non-finite
   loss or a collapsing loss scale stops training with an explanation; CUDA out-of-memory is caught, the
   memory freed, and smaller settings suggested. Background threads sample NVML ten times a second (and
   NVML's GPM counters on Hopper and newer); MFU and energy per token come from the same run.
6. **Evaluate** — token-weighted eval loss and perplexity, and greedy generations for the held-out prompts,
   before (step 0, B = 0) and after.
7. **Save and release** — `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names; the app
   reloads them with `PeftModel.from_pretrained` and compares logits, then drops every reference to the model
   and empties the CUDA cache, measuring what came back.

Everything that holds device memory lives in one `FineTuneRun` object so step 7 can release it all at once;
cells only pass around numbers, tables and charts. One GPU lease per Train click (steps 2 to 7) makes a
second viewer wait instead of fighting over the GPU, and keeps each run's memory figures its own.
"""
