"""What inference costs at batch 1: time to first token, decode tokens/s, and the card's memory-bandwidth bound."""

from __future__ import annotations

import inspect
import statistics
import time

import pandas as pd
import torch
from torch import nn

from gpu_notebooks.gpu.peaks import memory_bandwidth
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes
from gpu_notebooks.llm_finetuning.models import model_shape

WARM_UP_TOKENS = 4  # decode steps of the untimed warm-up: kernels picked, allocator and caches warm
PREFILL_REPEATS = 3  # a prefill is one short forward: the median of a few is steadier than one


def synchronize(device):
    """Wait for the device's queued work (a no-op on a CPU, where every call already waited)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_argument(model):
    """The forward's keyword for the KV cache: `cache` in newer transformers 5.x, `past_key_values` before it."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def forward_step(model, input_ids, cache, cache_name):
    """One forward with the KV cache → (last position's logits, the cache to pass next time)."""
    out = model(input_ids=input_ids, use_cache=True, **{cache_name: cache})
    return out.logits[:, -1, :], getattr(out, cache_name)


@torch.no_grad()
def time_decoding(model, input_ids, new_tokens, device):
    """Time to first token (the prefill: median of PREFILL_REPEATS) and decode tokens/s at batch 1 with the KV
    cache: greedy, eos ignored, nothing read back inside the loop, one untimed warm-up first, the device
    synchronized around each timer."""
    cache_name = cache_argument(model)

    def prefill():
        synchronize(device)
        started = time.perf_counter()
        logits, cache = forward_step(model, input_ids, None, cache_name)
        token = logits.argmax(dim=-1, keepdim=True)
        synchronize(device)  # the first token exists: the prefill is over
        return time.perf_counter() - started, token, cache

    def decode(token, cache, steps):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            logits, cache = forward_step(model, token, cache, cache_name)
            token = logits.argmax(dim=-1, keepdim=True)
        synchronize(device)
        return time.perf_counter() - started

    decode(*prefill()[1:], min(WARM_UP_TOKENS, new_tokens))  # warm-up, not timed
    prefills = [prefill() for _ in range(PREFILL_REPEATS)]
    decode_s = decode(*prefills[-1][1:], new_tokens)
    return {
        "prefill_s": statistics.median(seconds for seconds, _, _ in prefills),
        "decode_s": decode_s,
        "decode_tokens": new_tokens,
        "decode_tokens_per_s": new_tokens / decode_s,
    }


def weight_bytes_read_per_token(model):
    """Bytes of weights one decode step reads: every parameter once (tied ones once), except embedding tables
    that are only looked up (one row a token: GPT-2's position table, an untied input embedding)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    output = inner.get_output_embeddings()
    head = output.weight.data_ptr() if output is not None else None
    lookup_only = {
        m.weight.data_ptr()
        for m in inner.modules()
        if isinstance(m, nn.Embedding) and m.weight.data_ptr() != head
    }
    unique = {p.data_ptr(): p for p in model.parameters()}
    return sum(p.numel() * p.element_size() for ptr, p in unique.items() if ptr not in lookup_only)


def kv_bytes_per_position(model):
    """Bytes the KV cache holds per position: keys and values, every layer, the model's KV width."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    shape = model_shape(inner.config)
    element = inner.get_input_embeddings().weight.element_size()  # activations run in the weights' dtype
    return 2 * shape["n_layer"] * shape["kv_width"] * element


def bytes_per_token(model, prompt_tokens, decode_tokens):
    """Mean bytes a decode step reads: the weights, plus the cached keys and values of every earlier position.

    Decode step i feeds position prompt + i and reads the prompt + i positions before it from the cache, so
    over the timed steps the context averages prompt + (steps − 1) / 2. Rows the step only looks up, and
    the one position it writes, are left out: an undercount, so the bound stays a true upper limit.
    """
    weights = weight_bytes_read_per_token(model)
    kv = kv_bytes_per_position(model) * (prompt_tokens + (decode_tokens - 1) / 2)
    return {"weights": weights, "kv_cache": kv, "total": weights + kv}


def card_bandwidth(device):
    """(bytes/s, source) of the card's datasheet memory bandwidth; (None, why) on a CPU or an unknown card."""
    if device.type != "cuda":
        return None, "a CPU run: there is no card, so no card bound"
    return memory_bandwidth(torch.cuda.get_device_name(device))


def measure_costs(model, input_ids, new_tokens, device):
    """Prefill and decode timed with the adapter beside the weights (PEFT, unmerged), then merged into them
    (`merge_and_unload`, which changes `model` for good), each with its bytes per token and its bound:
    bytes read per token ÷ the datasheet bandwidth, a ceiling no batch-1 decode can pass."""
    bandwidth, source = card_bandwidth(device)
    costs = {
        "device_type": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "prompt_tokens": input_ids.shape[1],
        "n_layer": model_shape(model.get_base_model().config)["n_layer"],
        "lora_layers": sum(1 for m in model.modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0),
        "dtype": str(model.get_base_model().get_input_embeddings().weight.dtype).removeprefix("torch."),
        "bandwidth": bandwidth,
        "bandwidth_source": source,
    }
    for name in ("unmerged", "merged"):
        if name == "merged":
            model = model.merge_and_unload()  # B·A·scale added into each wrapped weight; the LoRA modules go
        timing = time_decoding(model, input_ids, new_tokens, device)
        read = bytes_per_token(model, costs["prompt_tokens"], new_tokens)
        bound = None if bandwidth is None else bandwidth / read["total"]
        costs[name] = timing | {"bytes": read, "bound_tokens_per_s": bound}
    costs["parameters"] = sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values())
    return costs


def cost_table(costs):
    """The measured costs as a table: a row per measure, a column unmerged and one merged, the bound beside them."""
    unmerged, merged = costs["unmerged"], costs["merged"]
    no_bound = "none (CPU)" if costs["device_type"] != "cuda" else "n/a (card not in the table)"

    def row(measure, show):
        return {
            "measure": measure,
            "adapter beside the weights (PEFT)": show(unmerged),
            "merged (merge_and_unload)": show(merged),
        }

    def bound(c):
        return no_bound if c["bound_tokens_per_s"] is None else f"{c['bound_tokens_per_s']:,.0f}"

    def share(c):
        return (
            "—"
            if c["bound_tokens_per_s"] is None
            else f"{100 * c['decode_tokens_per_s'] / c['bound_tokens_per_s']:.1f}%"
        )

    return pd.DataFrame(
        [
            row(
                f"time to first token (prefill of {costs['prompt_tokens']} tokens)",
                lambda c: f"{1e3 * c['prefill_s']:.2f} ms",
            ),
            row(
                f"decode tokens/s ({merged['decode_tokens']} tokens, greedy)",
                lambda c: f"{c['decode_tokens_per_s']:,.1f}",
            ),
            row("ms per token", lambda c: f"{1e3 / c['decode_tokens_per_s']:.3f}"),
            row("bytes read per token (weights + KV cache)", lambda c: fmt_bytes(c["bytes"]["total"])),
            row("bound: tokens/s at the datasheet bandwidth", bound),
            row("measured ÷ bound", share),
        ]
    )
