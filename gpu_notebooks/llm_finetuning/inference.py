"""Try the saved adapter: rebuild its base, load it through PEFT, stream base vs fine-tuned, then free the GPU."""

from __future__ import annotations

import contextlib
import gc
import html
import json
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import marimo as mo
import torch
from safetensors import SafetensorError

from gpu_notebooks.first_imports import import_lock
from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.llm_finetuning.adapter import BASE_RECIPE_FILE
from gpu_notebooks.llm_finetuning.evaluation import readable_decode
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes
from gpu_notebooks.llm_finetuning.inference_cost import cache_argument, forward_step, measure_costs
from gpu_notebooks.llm_finetuning.loading import ModelUnavailable, load_pretrained
from gpu_notebooks.llm_finetuning.models import TINY_LLAMA_NAME, offline_gpt2, offline_llama
from gpu_notebooks.llm_finetuning.tasks import builtin_examples, format_prompt
from gpu_notebooks.llm_finetuning.training import catch_out_of_memory, device_memory
from gpu_notebooks.registry import process_gpu_lock_guard, process_registry

PROMPT_MAX_CHARS = 1000
MAX_NEW_TOKENS = 256
SMOKE_NEW_TOKENS = 8  # headless --smoke: one short generation
STREAM_EVERY_S = 0.1  # at most ~10 redraws a second: each one is a message to the browser
ROLES = ("base", "fine-tuned")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what PEFT reads
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class GenerationRequest:
    """One Generate click: the prompt, the length cap, greedy or top-p sampling, and which kept adapter."""

    prompt: str
    max_new_tokens: int = 48
    sampling: bool = False
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    adapter: str | None = None  # a kept folder's *name* (a viewer never sends a path); None: the newest


class AdapterUnusable(ValueError):
    """No adapter to try, or the chosen folder is missing or damaged (the message says what to do)."""


class OutputNotFinite(ValueError):
    """The model's logits held inf or NaN (a half-precision overflow): said, never sampled from."""


class PromptTooLong(ValueError):
    """The templated prompt plus the new tokens do not fit the model's context."""


def adapter_owner(mode):
    """Whose adapters a session may pick: a `marimo run` viewer gets a key of its own (its session's adapters
    only); `marimo edit`, an export or a script gets None (all this server kept: one person's)."""
    return uuid.uuid4().hex if mode == "run" else None


def generation_request(value, smoke=False):
    """(GenerationRequest, None) from the form's value, or (None, message) for a bad input.

    `smoke`: the headless run's one short greedy generation of a held-out built-in prompt, newest adapter.
    """
    if smoke:
        frame = builtin_examples()
        prompt = frame[frame["split"] == "eval"]["prompt"].iloc[0]
        return GenerationRequest(prompt=prompt, max_new_tokens=SMOKE_NEW_TOKENS), None
    request = GenerationRequest(
        prompt=str(value.get("prompt") or "").strip(),
        max_new_tokens=int(value["max_new_tokens"]),
        sampling=value["decoding"] == "sampling",
        temperature=float(value["temperature"]),
        top_p=float(value["top_p"]),
        seed=int(value["seed"]),
        adapter=value.get("adapter"),
    )
    problem = request_problem(request)
    return (None, problem) if problem else (request, None)


def request_problem(request):
    """What is wrong with a request, in a sentence for the viewer, or None."""
    if not request.prompt.strip():
        return "**The prompt is empty.** Type something to send to both models, then press **Generate**."
    if len(request.prompt) > PROMPT_MAX_CHARS:
        return (
            f"**The prompt is {len(request.prompt):,} characters long;** the cap is {PROMPT_MAX_CHARS:,}. "
            "Shorten it and press **Generate** again."
        )
    if not 1 <= request.max_new_tokens <= MAX_NEW_TOKENS:
        return f"**Max new tokens must be between 1 and {MAX_NEW_TOKENS}** (got {request.max_new_tokens})."
    if request.sampling and not (0 < request.temperature <= 2 and 0 < request.top_p <= 1):
        return "**Sampling needs a temperature in (0, 2] and a top-p in (0, 1].**"
    return None


# ---------------------------------------------------------------- the adapters this server kept


def kept_adapters(owner=None):
    """The adapter folders step 7 kept in this server process, newest first (deleted ones included).

    With an `owner` (a `marimo run` viewer's session), only the ones that session trained: an adapter trained
    on one viewer's data is not another viewer's to query. None (`marimo edit`, an export): all of them.
    """
    with process_gpu_lock_guard():
        folders = process_registry().get("adapter_folders", [])
        owners = process_registry().get("adapter_owners", {})
        return [folder for folder in reversed(folders) if owner is None or owners.get(folder.name) == owner]


def read_recipe(folder):
    """The folder's base_model.json (how to rebuild its base); AdapterUnusable if the folder, a file or the recipe
    is gone or bad. Messages name files, never the server's paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterUnusable(
            "**That adapter's folder is gone from disk** (deleted since step 7 saved it). Pick another one, "
            "or press **Train** to make a new one."
        )
    missing = [name for name in (*ADAPTER_FILES, BASE_RECIPE_FILE) if not (folder / name).is_file()]
    if missing:
        raise AdapterUnusable(
            f"**That adapter's folder is damaged:** {', '.join(f'`{name}`' for name in missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Pick another one, or press **Train** to make a new one."
        )
    try:
        recipe = json.loads((folder / BASE_RECIPE_FILE).read_text())
    except (OSError, ValueError):
        recipe = None
    if not (
        isinstance(recipe, dict)
        and isinstance(recipe.get("model_name"), str)
        and isinstance(recipe.get("seed"), int)
        and recipe.get("dtype") in DTYPES
    ):
        raise AdapterUnusable(
            f"**That adapter's folder is damaged:** `{BASE_RECIPE_FILE}` (which base it was trained on) is "
            "unreadable. Pick another one, or press **Train** to make a new one."
        )
    return recipe


def model_label(recipe):
    """The base model's name as a viewer may see it (a local folder by its last part only)."""
    name = recipe["model_name"]
    return f"local folder `{Path(name).name}`" if recipe.get("local") else name


def adapter_choices(owner=None):
    """The picker's options, newest first: a label a viewer may see → the folder's name (never its path)."""
    choices = {}
    for number, folder in enumerate(kept_adapters(owner), start=1):
        try:
            recipe = read_recipe(folder)
            label = f"{number}. {model_label(recipe)} · r={recipe.get('rank', '?')} · saved {recipe.get('saved_at', '?')}"
        except AdapterUnusable:
            label = f"{number}. (folder missing or damaged)"
        choices[label] = folder.name
    return choices


def resolve_adapter(name, owner=None):
    """The kept folder called `name` (the newest for None) among `owner`'s; AdapterUnusable when there is none
    or it is not kept (another viewer's folder name reads as not kept)."""
    kept = kept_adapters(owner)
    if not kept:
        raise AdapterUnusable(
            "**No adapter yet.** Press **Train** above: step 7 saves the adapter and it appears in the picker."
        )
    if name is None:
        return kept[0]
    for folder in kept:
        if folder.name == name:
            return folder
    raise AdapterUnusable(
        "**That adapter is no longer kept by this server.** Pick another one from the list."
    )


# ---------------------------------------------------------------- loading through PEFT


def load_base(recipe, folder, device):
    """(base model on `device`, tokenizer): offline models rebuilt from config + seed, others from the cache."""
    dtype = DTYPES[recipe["dtype"]]
    if recipe.get("offline"):
        tokenizer = saved_tokenizer(folder)
        build = offline_llama if recipe["model_name"] == TINY_LLAMA_NAME else offline_gpt2
        model = build(tokenizer, seed=recipe["seed"]).to(dtype)
    else:
        source = "local" if recipe.get("local") else recipe["model_name"]
        try:
            model, tokenizer = load_pretrained(source, dtype, recipe["model_name"])
        except ModelUnavailable as error:
            raise AdapterUnusable(f"**The base model does not load:** {error}") from None
    return model.to(device).eval(), tokenizer


def saved_tokenizer(folder):
    """The tokenizer step 7 saved beside an offline model's adapter (its vocabulary was learned from the run's
    data, so this is the only copy); AdapterUnusable when its file is missing or does not parse."""
    with import_lock():  # first imports outside the setup block: beside other sessions (first_imports.py)
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

    damaged = AdapterUnusable(
        "**That adapter's folder is damaged:** its `tokenizer.json` (the offline model's vocabulary) is missing "
        "or does not load. Pick another one, or press **Train** to make a new one."
    )
    try:
        Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    # The Rust library raises a plain Exception for a file it cannot parse; only this one call is inside.
    except Exception:
        raise damaged from None
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError):
        raise damaged from None


def load_adapted(folder, device):
    """(PeftModel, tokenizer): the base rebuilt, then `PeftModel.from_pretrained(base, folder)` — PEFT itself."""
    with import_lock():  # imported here, under the lock of first imports: only a Generate click needs PEFT
        from peft import PeftModel

    base, tokenizer = load_base(read_recipe(folder), folder, device)
    # A transformers deprecation notice raised inside PEFT (as in step 7's check): one process-wide filter.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        model = PeftModel.from_pretrained(base, str(folder))
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        # the type only: PEFT's messages hold the folder's path, which a viewer must not see
        raise AdapterUnusable(
            f"**PEFT could not load that adapter:** its files are damaged ({type(error).__name__}). Pick another "
            "one, or press **Train** to make a new one."
        ) from None
    except RuntimeError as error:
        if "size mismatch" not in str(error):  # torch's load_state_dict: a plain RuntimeError listing them
            raise
        raise AdapterUnusable(
            "**That adapter does not fit its base model** (PEFT: tensor size mismatch): the folder was changed "
            "after step 7 saved it."
        ) from None
    return model.eval(), tokenizer


# ---------------------------------------------------------------- generation


def prompt_ids(tokenizer, prompt, device, max_new_tokens, context):
    """The templated prompt (as in training) as a [1, n] id tensor; PromptTooLong past the model's context."""
    ids = tokenizer(format_prompt(prompt, tokenizer), add_special_tokens=False)["input_ids"]
    if context is not None and len(ids) + max_new_tokens > context:
        over = len(ids) + max_new_tokens - context
        remedy = (
            f"Shorten the prompt by at least {over:,} tokens, or ask for at most {context - len(ids):,} new tokens."
            if len(ids) < context
            else f"Shorten the prompt by at least {over:,} tokens (about {over * len(prompt) // max(len(ids), 1):,} "
            "characters)."
        )
        raise PromptTooLong(
            f"**The prompt is {len(ids):,} tokens after the template;** with {max_new_tokens} new tokens that "
            f"is more than this model's context of {context:,} tokens. {remedy}"
        )
    return torch.tensor([ids], device=device)


def context_length(model):
    """The longest sequence the model's positions cover (GPT-2's n_positions, Llama's max_position_embeddings)."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def pick_token(logits, request, generator):
    """The next token from the last position's logits: argmax, or a sample from the top-p nucleus at `temperature`."""
    if not request.sampling:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits.float() / request.temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # keep the most likely tokens until their mass reaches top_p (the first one always stays)
    sorted_probs = sorted_probs * ((sorted_probs.cumsum(dim=-1) - sorted_probs) < request.top_p)
    return order.gather(-1, torch.multinomial(sorted_probs, 1, generator=generator))


@torch.no_grad()
def stream_tokens(model, input_ids, request, eos_id):
    """Generate with the KV cache, yielding each new token id as soon as it exists; stops at eos or the cap.

    The prompt goes through once (the prefill); each later step feeds only the newest token, and the model
    reads the earlier keys and values from the cache instead of recomputing them.
    """
    generator = torch.Generator(device=input_ids.device).manual_seed(request.seed)
    step_ids, cache, cache_name = input_ids, None, cache_argument(model)
    for _ in range(request.max_new_tokens):
        logits, cache = forward_step(model, step_ids, cache, cache_name)
        # NaN or +inf (-inf only masks a token): one more sync, in a loop that syncs per token anyway
        if bool((torch.isnan(logits) | torch.isposinf(logits)).any()):
            raise OutputNotFinite(
                "**The model's output is not a number** (inf or NaN in its logits): half-precision weights can "
                "overflow. Nothing was sampled from it; try greedy decoding, a shorter prompt, or train in BF16."
            )
        token = pick_token(logits, request, generator)
        token_id = int(token)  # HOST SYNC: a streamed token has to reach the page (and eos is checked here)
        if token_id == eos_id:
            return
        yield token_id
        step_ids = token


def stream_both(model, tokenizer, input_ids, request, texts, on_text=None):
    """The same prompt and settings through the base (adapter disabled: the same weights, no copy) and the
    fine-tuned model, filling `texts[role]` as tokens come; `on_text(texts, role)` redraws (throttled)."""
    last_draw, counts = 0.0, {}
    for role in ROLES:
        texts[role], ids = "", []
        with model.disable_adapter() if role == "base" else contextlib.nullcontext():
            for token in stream_tokens(model, input_ids, request, tokenizer.eos_token_id):
                ids.append(token)
                texts[role] = readable_decode(tokenizer, ids)
                if on_text is not None and time.perf_counter() - last_draw >= STREAM_EVERY_S:
                    on_text(dict(texts), role)
                    last_draw = time.perf_counter()
        counts[role] = len(ids)
    return counts


def generate_and_time(folder, request, device, on_text, out):
    """Load through PEFT, stream both models, then time decoding unmerged and merged (fills `out` as it goes)."""
    model, tokenizer = load_adapted(folder, device)
    input_ids = prompt_ids(tokenizer, request.prompt, device, request.max_new_tokens, context_length(model))
    out["tokens"] = stream_both(model, tokenizer, input_ids, request, out["texts"], on_text)
    out["costs"] = measure_costs(model, input_ids, request.max_new_tokens, device)


def free_device_memory(device):
    """Collect what the click held and give the allocator's cached blocks back; bytes still allocated after."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    return device_memory(device)["allocated"]


def try_adapter(request, device, on_text=None, on_wait=None, owner=None):
    """One Generate click under the GPU lease: load the kept adapter through PEFT, stream base and fine-tuned,
    time decoding unmerged and merged, free the memory.

    `on_text(texts, role)` redraws the streamed texts; `on_wait(message)` tells a viewer who has to wait for the
    lease. Returns texts, tokens, costs, adapter (its label), model_name (its base), waited_s, memory, note (a line on waiting and
    memory) and `problem` (a sentence for the viewer, or None). `owner`: the viewer's session (its own adapters
    only), None for all this server kept. Caught: no or unusable adapter, a prompt past
    the context, logits that are not numbers, out of memory; anything else is a bug and raises (the lease and
    the memory still go back: its traceback's frames are cleared first, so they do not hold the model).
    """
    out = {
        "texts": {},
        "tokens": {},
        "costs": None,
        "problem": None,
        "waited_s": 0.0,
        "adapter": None,
        "model_name": None,
    }
    try:
        folder = resolve_adapter(request.adapter, owner)
        out["model_name"] = read_recipe(folder)["model_name"]
    except AdapterUnusable as error:
        return out | {"problem": str(error), "note": ""}
    out["adapter"] = next((k for k, v in adapter_choices(owner).items() if v == folder.name), folder.name)
    with gpu_turn(
        on_wait=None if on_wait is None else lambda: on_wait(generation_wait_text(device))
    ) as lease:
        out["waited_s"], before = lease.waited_s, device_memory(device)["allocated"]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # this click's own peak: nobody else allocates now
        try:
            _, out_of_memory = catch_out_of_memory(generate_and_time, folder, request, device, on_text, out)
            if out_of_memory:
                out["problem"] = (
                    "**Out of GPU memory while generating.** The memory was freed; another program may be "
                    "using the card. Ask for fewer new tokens or a shorter prompt and press **Generate** again."
                )
        except (AdapterUnusable, PromptTooLong, OutputNotFinite) as error:
            out["problem"] = str(error)
        except BaseException as error:  # a bug: it raises, but its traceback must not keep the model alive
            traceback.clear_frames(error.__traceback__)
            raise
        finally:
            out["memory"] = {"before": before, "peak": device_memory(device)["peak"]}
            out["memory"]["after"] = free_device_memory(device)  # read before the lease goes to someone else
    return out | {"note": generation_note(out, device)}


def generation_note(out, device):
    """One line on the click's wait for the lease and its device memory (peak, and what stayed after)."""
    waited = f"Waited {out['waited_s']:.1f} s for the GPU lease · " if out["waited_s"] >= 0.1 else ""
    if device.type != "cuda":
        return f"{waited}CPU run: host RAM, not tracked here; the models were dropped when done."
    memory = out["memory"]
    return (
        f"{waited}Peak device memory during the click {fmt_bytes(memory['peak'])}; allocated after it "
        f"{fmt_bytes(memory['after'])} (before it {fmt_bytes(memory['before'])}): the models were freed."
    )


def generation_wait_text(device):
    """What a queued viewer is told while another one generates or trains."""
    what = "the GPU" if device.type == "cuda" else "its turn on this machine"
    return (
        f"**Waiting for {what}** — another viewer is generating or training (or the benchmark app is running). "
        "Your generation starts as soon as it is free."
    )


def generation_panes(texts, active=None, adapter=None, tokens=None):
    """Base and fine-tuned side by side (`active`: the one still generating; `tokens`: counts once done);
    generated text is escaped: model output is data, never markup."""

    def pane(role, title):
        if role == active:
            body = html.escape(texts.get(role, "")) + " ▌"  # still generating
        elif role not in texts:
            body = "…"  # not started
        elif texts[role]:
            body = html.escape(texts[role])
        elif tokens and tokens.get(role):
            body = "<i>(no printable text: ids past the tokenizer's vocabulary)</i>"
        else:
            body = "<i>(no tokens: the end-of-text token came first)</i>"
        count = f" · {tokens[role]} tokens" if tokens and role in tokens else ""
        return mo.vstack(
            [
                mo.md(title + count),
                mo.Html(f"<div style='white-space: pre-wrap; font-family: monospace'>{body}</div>"),
            ]
        )

    fine_tuned = "**Fine-tuned** (loaded with `PeftModel.from_pretrained`)" + (
        f" — {adapter}" if adapter else ""
    )
    return mo.hstack(
        [pane("base", "**Base** (`with model.disable_adapter():`)"), pane("fine-tuned", fine_tuned)],
        widths="equal",
        gap=2,
    )
