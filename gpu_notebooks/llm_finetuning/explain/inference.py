"""Learner text about inference cost: why batch-1 decoding is launch- or memory-bound, and what merging changed."""

from __future__ import annotations

from gpu_notebooks.llm_finetuning.formatting import fmt_bytes, fmt_count
from gpu_notebooks.llm_finetuning.models import TINY_LLAMA_NAME, TINY_MODEL_NAME

LAUNCH_BOUND_BELOW = 0.5  # measured ÷ bound under this: most of each token's time is not spent reading memory


def inference_cost_text(costs):
    """This run's prefill, decode and merge numbers (from `measure_costs`) → markdown on what they mean."""
    merged, unmerged = costs["merged"], costs["unmerged"]
    read = merged["bytes"]
    context = costs["prompt_tokens"] + (merged["decode_tokens"] - 1) / 2
    parts = [
        f"**What one generated token costs.** At batch 1 every decode step reads all of the model's weights once "
        f"— {fmt_bytes(read['weights'])} here ({costs['dtype']}) — plus the keys and values cached for every "
        f"earlier position ({fmt_bytes(read['kv_cache'])} at this run's mean context of {context:,.0f} "
        "positions), and does about two FLOPs per weight with them: far too little arithmetic per byte read for "
        "compute to be the limit.",
        bound_paragraph(costs),
        f"**Prefill vs decode.** The prompt's {costs['prompt_tokens']} tokens went through in one forward pass: "
        f"{1e3 * merged['prefill_s']:.2f} ms to the first token, "
        f"{costs['prompt_tokens'] / merged['prefill_s']:,.0f} prompt tokens/s, because one read of the weights "
        "serves every prompt token (matrix × matrix). Decoding then needs one pass per token (matrix × vector), "
        "with the KV cache sparing it the earlier positions' work.",
        merge_paragraph(costs, unmerged, merged),
    ]
    return "\n\n".join(parts)


def bound_paragraph(costs):
    """The card bound against the measured decode speed: launch-bound or memory-bound, with this run's numbers."""
    merged = costs["merged"]
    measured, per_token_s = merged["decode_tokens_per_s"], 1 / merged["decode_tokens_per_s"]
    if costs["bandwidth"] is None:
        where = (
            "On a CPU there is no card, so no card bound"
            if costs["device_type"] != "cuda"
            else f"There is no bound for `{costs['device_name']}` ({costs['bandwidth_source']})"
        )
        return (
            f"**Launch- or memory-bound?** {where}: the app knows no memory bandwidth to divide by. Measured "
            f"(merged): **{measured:,.1f} tokens/s**, {1e3 * per_token_s:.2f} ms a token. On a GPU this section "
            "puts the same bytes beside the card's datasheet bandwidth."
        )
    bound, bandwidth = merged["bound_tokens_per_s"], costs["bandwidth"]
    read_s = merged["bytes"]["total"] / bandwidth
    share = measured / bound
    text = (
        f"**Launch- or memory-bound?** At this card's **datasheet** memory bandwidth ({bandwidth / 1e12:.2f} TB/s, "
        f"{costs['bandwidth_source']}), reading those bytes takes {1e6 * read_s:,.1f} µs, so no batch-1 decode of "
        f"this model can pass **{bound:,.0f} tokens/s**. Measured (merged): **{measured:,.1f} tokens/s**, "
        f"{1e3 * per_token_s:.3f} ms a token — {100 * share:.1f}% of that bound."
    )
    if share >= LAUNCH_BOUND_BELOW:
        return text + (
            " Most of each token's time is spent reading memory: this decode is **memory-bound**, and only fewer "
            "bytes (a smaller dtype, a quantized model, a shorter KV cache) or more tokens per read (a bigger "
            "batch) make it faster."
        )
    overhead_s = per_token_s - read_s
    element = {"float32": 4, "bfloat16": 2, "float16": 2}.get(costs["dtype"], 2)
    even_bytes = overhead_s * bandwidth
    return text + (
        " So this decode is **launch-bound**: each token is a long chain of small kernels (a dozen or more in each "
        f"of the {costs['n_layer']} layers), every one done in microseconds at batch 1, and the GPU mostly waits for Python "
        f"and the CPU to launch the next — about {1e3 * overhead_s:.2f} ms a token here beyond the reading. A "
        f"model whose weights take longer than that to read (at this bandwidth about {fmt_bytes(even_bytes)}, "
        f"roughly {fmt_count(even_bytes / element)} parameters in {costs['dtype']}, if the per-token overhead stayed "
        "this size) would be **memory-bound**: its tokens/s would follow bandwidth ÷ bytes. That is why CUDA "
        "graphs and `torch.compile` (fewer launches) speed up small models, and fewer bytes speed up large ones."
    )


def merge_paragraph(costs, unmerged, merged):
    """What `merge_and_unload` changed: the kernels and bytes LoRA adds per token, and the measured difference."""
    extra = unmerged["bytes"]["weights"] - merged["bytes"]["weights"]
    change = merged["decode_tokens_per_s"] / unmerged["decode_tokens_per_s"] - 1
    return (
        f"**What merging changed.** Unmerged, PEFT runs each of the {costs['lora_layers']} wrapped layers as the "
        "frozen layer plus two small matmuls (x·A, then ·B), a scale and an add: extra kernel launches every "
        f"token, and {fmt_bytes(extra)} more to read. `merge_and_unload()` adds B·A·scale into each weight once, "
        f"so the model has its base shape again. Measured here: **{unmerged['decode_tokens_per_s']:,.1f} → "
        f"{merged['decode_tokens_per_s']:,.1f} tokens/s ({100 * change:+.1f}%)**, time to first token "
        f"{1e3 * unmerged['prefill_s']:.2f} → {1e3 * merged['prefill_s']:.2f} ms (one timed run each, after a "
        "warm-up: on a busy machine a difference of a few percent can be noise). What merging costs: the adapter can no longer be "
        "switched off (as for the base column above) or swapped for another without reloading the base."
    )


def try_it_intro(device_type, per_viewer, kept):
    """The Try-it section's heading and paragraph: what Generate does, whose adapters the picker lists, and
    what it holds while it runs (the GPU on a GPU machine; on a CPU, the server's one-run-at-a-time turn)."""
    whose = (
        "The picker lists the adapters **you** trained in this session (another viewer's are not yours to query)"
        if per_viewer
        else "The picker lists the adapters this server kept"
    )
    holds = (
        "It takes its turn on the GPU like a training run (one at a time), and frees the GPU memory it used when done."
        if device_type == "cuda"
        else "There is no GPU here: it runs on the CPU, one run at a time on this server like training, and frees "
        "its memory when done."
    )
    return (
        "## Try it: your adapter beside the base model\n\n"
        "**Generate** loads the adapter from the folder step 7 wrote, through PEFT itself "
        "(`PeftModel.from_pretrained` over the same base), and sends your prompt, in the training template, to the "
        "base (the same weights inside `with model.disable_adapter():`, no second copy) and to the fine-tuned model; "
        "tokens appear as they are generated. Then it times decoding with the adapter beside the weights and merged "
        f"into them. {whose}, newest first; the server keeps its last {kept}. {holds}"
    )


def try_it_note(model_name):
    """A line beside the generations when the adapter's base started from random weights, else ''."""
    if model_name not in (TINY_MODEL_NAME, TINY_LLAMA_NAME):
        return ""
    return (
        f"`{model_name}` started from **random weights** (step 6 says what its short run learnt): expect the "
        'answer\'s format ("Answer: ", a number) before the right answer, even for a prompt from the training '
        "data. A pretrained base (GPT-2, SmolLM2) shows what fine-tuning adds to a model that knows language."
    )
