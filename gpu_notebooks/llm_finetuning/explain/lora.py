"""Learner texts about LoRA and the run's settings."""

from __future__ import annotations

from gpu_notebooks.llm_finetuning.formatting import fmt_bytes, fmt_count


def why_lora_text(why, settings, model_name=None, ran=False):
    """'Why LoRA works' with this model's and rank's numbers (`ran`: the model a run actually loaded)."""
    d_in, d_out, r = why["c_attn_in"], why["c_attn_out"], settings.rank
    full, low = d_in * d_out, r * (d_in + d_out)
    saving = why["full_ft_bytes"] / why["lora_bytes"]
    name = model_name or settings.model_source
    scope = (
        "the model this run loaded"
        if ran
        else "the model you picked; if it cannot load, step 3 repeats this with the model that ran"
    )
    return f"""
_Numbers for `{name}` with r = {r} on {", ".join(settings.target_modules)} ({scope})._

Fine-tuning changes each weight matrix $W$ by some $\\Delta W$. LoRA's bet is that the change a small
task needs has **low rank**: write $\\Delta W = B A$ with $A \\in \\mathbb{{R}}^{{r \\times d_\\text{{in}}}}$ and
$B \\in \\mathbb{{R}}^{{d_\\text{{out}} \\times r}}$, train only $A$ and $B$, keep $W$ frozen. The layer
computes $y = W x + \\frac{{\\alpha}}{{r}} B A x$.

- For this model's `{why.get("example_layer", "c_attn")}` ({d_in} → {d_out}): a full $\\Delta W$ has {d_in} × {d_out} = **{full:,}** numbers; with
  r = {r} LoRA trains {r} × ({d_in} + {d_out}) = **{low:,}** — {full / low:.0f}× fewer.
- Over the {why["layers"]} wrapped layers: **{why["lora_params"]:,}** trainable parameters beside
  {why["base_params"]:,} frozen ones = **{why["trainable_pct"]:.3f}%** of the total.
- Memory for weights and optimizer state (activations excluded): full fine-tuning with AdamW keeps FP32
  weights, gradients and two moments, 16 bytes × {fmt_count(why["base_params"])} = **{fmt_bytes(why["full_ft_bytes"])}**.
  LoRA keeps the frozen base in {settings.precision.upper()} plus 16 bytes per adapter parameter =
  **{fmt_bytes(why["lora_bytes"])}** — {saving:.1f}× less. The saved adapter is {fmt_bytes(4 * why["lora_params"])}.
- **B starts at zero**, so at step 0 the wrapped model *is* the pretrained model (step 5's baseline checks it),
  and training moves away from it only as far as the data asks.
- After training, $W + \\frac{{\\alpha}}{{r}} BA$ can be **merged** into one matrix: no extra cost at inference.
"""


def why_conv1d_text(why):
    """'Why GPT-2's Conv1D is unusual' with this model's c_attn shape."""
    d_in, d_out = why["c_attn_in"], why["c_attn_out"]
    return f"""
- GPT-2's projections are `transformers.pytorch_utils.Conv1D`, not `nn.Linear`. Despite the name it is a linear
  layer, but it stores its weight as **[in, out]** and computes `x @ W + b`; `nn.Linear` stores **[out, in]** and
  computes `x @ W.T + b`. Here `c_attn.weight` is [{d_in}, {d_out}].
- LoRA's update $BA$ has shape [out, in]. For Conv1D the merge must add $(BA)^\\top$; PEFT calls this
  `fan_in_fan_out=True`, and this app writes it into `adapter_config.json`. Reading the wrong orientation would
  either crash on the shape or — for square layers such as `attn.c_proj` — silently add the transposed update.
- This app's `LoRALayer` decides the orientation **by type** (`isinstance(layer, Conv1D)` vs `nn.Linear`), never by
  name: `c_proj` names both the attention output and the MLP down-projection, which is also why the targets are
  written `attn.c_proj` and `mlp.c_proj`.
- **`c_attn` is fused:** one [{d_in}, {d_out}] matrix produces query, key and value ({d_out // 3} columns each). One
  LoRA on `c_attn` shares a single $A$ across q, k and v, and the three blocks of $B$'s rows adapt each of them:
  one adapter for all three projections, with the rank shared between them.
"""


def train_example_count(dataset):
    """Rows of the training split of the data that will run (built-in set or an upload)."""
    return 0 if dataset is None else int((dataset["split"] == "train").sum())


def hyperparameter_text(settings, why, train_examples):
    """'Hyperparameter choices' for the current settings and the data that will run."""
    steps_per_epoch = -(-train_examples // max(settings.batch_size, 1))
    return f"""
- **Rank r = {settings.rank}:** the capacity of the update. 8 is a common start for small tasks; doubling r doubles
  the adapter ({why["lora_params"]:,} parameters now) and rarely helps on a small set such as this one
  ({train_examples:,} training examples).
- **Alpha = {settings.alpha} → scaling alpha/r = {settings.alpha / settings.rank:g}:** multiplies the update. Keeping
  alpha = 2r when r changes is a common heuristic, not a derived rule. The LoRA paper (arXiv:2106.09685) sets
  alpha once, at the first r it tries, and keeps it when r changes; with Adam, changing alpha acts roughly like
  changing the learning rate. rsLoRA (arXiv:2312.03732) argues for alpha/√r so that learning stays stable as r
  grows; PEFT offers it as `LoraConfig(use_rslora=True)` (this app uses alpha/r, as PEFT does by default).
- **Learning rate ({settings.learning_rate or "auto"}):** *auto* = 1e-3 for pretrained GPT-2 and 3e-3 for the
  tiny random model, which has to learn everything from scratch: choices for this demo's short runs, not a rule.
  For reference, the LoRA authors trained GPT-2 Medium with 2e-4 (r = 4, alpha = 32; `microsoft/LoRA`,
  examples/NLG). B starts at zero, which only makes step 0 equal the base model; it does not make a larger rate
  safe. Loss that jumps to NaN or many skipped FP16 steps mean: lower it.
- **Warm-up ({settings.warmup_ratio:.0%} of steps), then cosine decay to 10%:** AdamW's moment estimates are noisy
  for the first steps; ramping up avoids a large early jump, decaying settles the end.
- **Batch size {settings.batch_size}:** more sequences per step gives smoother gradients and better GPU use, but
  activation memory grows with batch × length. Out of memory? Halve it (or the sequence length).
- **Epochs ({settings.epochs or "auto"}):** {train_examples:,} training examples make {steps_per_epoch:,} steps per
  epoch at batch {settings.batch_size} (fewer if some exceed the max length; step 4 counts them): watch the eval loss per epoch in step 5; when it turns up while the train
  loss keeps falling, the adapter is memorising.
- **Max sequence length {settings.max_length}:** an upper bound; batches are padded only to their longest example
  (dynamic padding), and prompts plus answers here are far shorter. Attention cost grows with length.
- **Dropout {settings.dropout}:** applied to the adapter's input only; a little regularisation for small data.
"""


def settings_intro_text(defaults, cuda_available):
    """The Settings heading: no apply step, and the defaults this machine starts with (`default_choices`)."""
    where = "a CUDA GPU is visible" if cuda_available else "no CUDA GPU here"
    return f"""
## Settings

What you set below is what **Train** uses: there is no separate apply step (the data preview and the
explanations follow each change). *auto* picks a learning rate and epoch count for the model that
actually loads. The defaults on this machine ({where}): **{defaults["model"]}**, precision
**{defaults["precision"]}**.
"""


# How the title names the model a Train click loads (hub ids not listed here: their last path part).
MODEL_TITLES = {
    "gpt2": "GPT-2",
    "distilgpt2": "DistilGPT-2",
    "gpt2-medium": "GPT-2 Medium",
    "local": "a model from a local folder",
    "tiny": "a tiny offline GPT-2",
    "tiny-llama": "a tiny offline Llama",
}


def model_title(model_source):
    """The model as the title names it: 'a tiny offline GPT-2', 'GPT-2 Medium', 'SmolLM2-135M'."""
    return MODEL_TITLES.get(model_source) or model_source.rstrip("/").split("/")[-1]


def intro_text(why, model_source, stored_in="FP16"):
    """The title cell for the planned run: its model and weight precision, and the adapter's share of its
    parameters computed for it, never a fixed figure."""
    share = (
        f"**{why['trainable_pct']:.2f}%** of the parameters for `{model_source}` with the settings below"
        if why is not None
        else "a small share of the parameters (step 3 counts it for the model that loads)"
    )
    return f"""
# Fine-tune {model_title(model_source)} with LoRA in {stored_in} — seven visible steps

This app teaches a language model a handful of small tasks with **fixed answer formats** ("Answer: 43",
"GARDEN", "positive", "3000 m", …) by training a **LoRA adapter**: two thin matrices beside each
chosen weight matrix, {share}, while the base model stays frozen (stored in {stored_in} for the settings below).
It then measures what changed — eval loss, perplexity, exact match and answer-format match on
held-out prompts, **before vs after** — and saves the adapter in **PEFT's own format**.

Each of the seven steps below is its own cell and shows what it did and how long it took. With an
NVIDIA GPU, GPT-2 trains in FP16 with a GradScaler; on a CPU the app explains its fallback and still runs.
Without network access it offers a **tiny offline GPT-2** that needs no download. Llama-family models
(SmolLM2, Qwen2.5, Llama 3.2, or a tiny offline Llama) run through the same seven steps, in BF16 where
the GPU has it natively.
"""
