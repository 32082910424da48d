"""Try it: the adapter step 7 saved loads through PEFT, streams beside the base, and says what decoding costs."""

import contextlib
import gc
import json
import shutil
import threading
import time
import weakref
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import GPT2Config, LlamaConfig

import gpu_notebooks.llm_finetuning.inference as inference
from gpu_notebooks.gpu.lock import GpuLease
from gpu_notebooks.llm_finetuning.adapter import ADAPTERS_KEPT, keep_recent_adapters
from gpu_notebooks.llm_finetuning.explain.inference import inference_cost_text, try_it_intro, try_it_note
from gpu_notebooks.llm_finetuning.inference import (
    MAX_NEW_TOKENS,
    PROMPT_MAX_CHARS,
    GenerationRequest,
    adapter_choices,
    adapter_owner,
    generation_panes,
    generation_request,
    kept_adapters,
    load_adapted,
    load_base,
    pick_token,
    prompt_ids,
    read_recipe,
    stream_both,
    stream_tokens,
    try_adapter,
)
from gpu_notebooks.llm_finetuning.inference_cost import (
    bytes_per_token,
    cost_table,
    kv_bytes_per_position,
    weight_bytes_read_per_token,
)
from gpu_notebooks.llm_finetuning.models import (
    TINY_LLAMA_NAME,
    TINY_MODEL_NAME,
    build_offline_tokenizer,
    offline_gpt2,
    offline_llama,
)
from gpu_notebooks.llm_finetuning.steps import (
    save_step,
    train_step_body,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.tokens import prompt_batch
from gpu_notebooks.registry import process_gpu_lock, process_registry
from tests.fakes import tiny_cpu_run, wait_until

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny offline GPT-2 through the app's steps 2-5 and 7 on the CPU (three epochs), with the logits of
    the trained model (our LoRA) on a few prompts, read before step 7 frees it."""
    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("adapters") / "tiny-run"
    data = builtin_examples()
    run = tiny_cpu_run(data, epochs=3, batch_size=32, max_length=64)
    assert train_step_body(run, data[data["split"] == "eval"], 8)["stop_reason"] is None
    prompts = data[data["split"] == "train"]["prompt"].head(4).tolist()
    run.model.eval()
    with torch.no_grad():
        logits = run.model(**prompt_batch(run, prompts)).logits
    saved = save_step(run, folder, prompts)
    assert saved["failure"] is None
    return {"folder": folder, "prompts": prompts, "logits": logits, "saved": saved}


@pytest.fixture
def kept(trained, monkeypatch):
    """This server kept the trained adapter (and nothing else)."""
    monkeypatch.setitem(process_registry(), "adapter_folders", [trained["folder"]])
    return trained


def damaged_copy(trained, tmp_path, damage):
    """A kept copy of the trained adapter folder with `damage(folder)` applied; the registry lists only it."""
    folder = tmp_path / "copy"
    shutil.copytree(trained["folder"], folder)
    damage(folder)
    process_registry()["adapter_folders"] = [folder]
    return folder


def greedy(prompt, tokens=12):
    return GenerationRequest(prompt=prompt, max_new_tokens=tokens)


# ---------------------------------------------------------------- the saved folder and PEFT


def test_step_7_writes_what_rebuilds_the_base_beside_the_adapter(trained):
    files = trained["saved"]["saved_files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "base_model.json", "tokenizer.json"} <= set(
        files
    )
    recipe = read_recipe(trained["folder"])
    assert recipe["model_name"] == "tiny-offline-gpt2" and recipe["offline"] and not recipe["local"]
    assert (recipe["seed"], recipe["dtype"], recipe["rank"]) == (42, "float32", 8)


def test_the_adapter_loads_from_disk_through_peft_and_reproduces_the_trained_model(trained):
    model, tokenizer = load_adapted(trained["folder"], CPU)
    assert isinstance(model, PeftModel)
    run = type("Run", (), {"tokenizer": tokenizer, "device": CPU})()  # what prompt_batch reads
    with torch.no_grad():
        logits = model(**prompt_batch(run, trained["prompts"])).logits
    # the base rebuilt from its config and seed + the saved tokenizer + PEFT's LoRA = the model step 5 trained
    torch.testing.assert_close(logits, trained["logits"], atol=1e-4, rtol=1e-4)


def test_a_generate_clicks_first_imports_take_the_lock_of_first_imports(trained, monkeypatch):
    """PEFT and the tokenizer classes are first imported on a Generate click, outside the setup block: under
    the process-wide lock that other sessions' setup blocks and marimo's session start take (first_imports.py)."""
    entered = []

    @contextlib.contextmanager
    def recording_lock():
        entered.append(threading.get_ident())
        yield

    monkeypatch.setattr(inference, "import_lock", recording_lock)
    load_adapted(trained["folder"], CPU)
    assert len(entered) >= 2  # the tokenizer classes (an offline model's saved tokenizer) and PEFT


def test_fine_tuned_output_differs_from_the_base_and_equals_it_with_the_adapter_disabled(trained):
    model, tokenizer = load_adapted(trained["folder"], CPU)
    base, _ = load_base(read_recipe(trained["folder"]), trained["folder"], CPU)  # a separate, plain base
    ids = prompt_ids(tokenizer, trained["prompts"][0], CPU, 12, 512)
    eos = tokenizer.eos_token_id
    fine_tuned = list(stream_tokens(model, ids, greedy(trained["prompts"][0]), eos))
    plain_base = list(stream_tokens(base, ids, greedy(trained["prompts"][0]), eos))
    with model.disable_adapter():
        disabled = list(stream_tokens(model, ids, greedy(trained["prompts"][0]), eos))
    assert fine_tuned != plain_base
    assert disabled == plain_base


def test_streaming_yields_each_token_after_one_forward_and_in_generate_order(trained):
    model, tokenizer = load_adapted(trained["folder"], CPU)
    ids = prompt_ids(tokenizer, trained["prompts"][1], CPU, 10, 512)
    calls = []
    hook = model.get_base_model().register_forward_hook(lambda *args: calls.append(1))
    stream = stream_tokens(model, ids, greedy(trained["prompts"][1], 10), eos_id=-1)  # no eos: all 10 come
    first = next(stream)
    assert len(calls) == 1  # the prefill only: the first token is out before the second is computed
    streamed = [first, *stream]
    hook.remove()
    reference = model.generate(input_ids=ids, max_new_tokens=10, do_sample=False, eos_token_id=None)
    assert streamed == reference[0, ids.shape[1] :].tolist()


def test_both_models_stream_into_their_panes_base_first(trained, monkeypatch):
    monkeypatch.setattr(inference, "STREAM_EVERY_S", 0.0)  # every token redraws
    model, tokenizer = load_adapted(trained["folder"], CPU)
    ids = prompt_ids(tokenizer, trained["prompts"][2], CPU, 8, 512)
    texts, drawn = {}, []
    counts = stream_both(
        model, tokenizer, ids, greedy(trained["prompts"][2], 8), texts, lambda t, r: drawn.append(r)
    )
    assert drawn == ["base"] * counts["base"] + ["fine-tuned"] * counts["fine-tuned"]
    assert set(texts) == {"base", "fine-tuned"}


def test_sampling_repeats_with_its_seed_and_a_tiny_top_p_is_greedy(trained):
    model, tokenizer = load_adapted(trained["folder"], CPU)
    prompt = "Tell me something."
    ids = prompt_ids(tokenizer, prompt, CPU, 16, 512)

    def sample(seed, temperature=1.5):
        request = GenerationRequest(prompt, 16, sampling=True, temperature=temperature, top_p=1.0, seed=seed)
        return list(stream_tokens(model, ids, request, eos_id=-1))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    logits = torch.randn(1, 50, generator=torch.Generator().manual_seed(0))
    nucleus = GenerationRequest("x", sampling=True, temperature=1.0, top_p=1e-6)
    assert pick_token(logits, nucleus, torch.Generator().manual_seed(5)).item() == logits.argmax().item()


# ---------------------------------------------------------------- one Generate click


def test_a_generate_click_streams_both_models_and_measures_unmerged_and_merged(kept):
    drawn = []
    out = try_adapter(greedy(kept["prompts"][0], 6), CPU, on_text=lambda t, r: drawn.append(dict(t)))
    assert out["problem"] is None and set(out["texts"]) == {"base", "fine-tuned"} and drawn
    costs = out["costs"]
    assert costs["lora_layers"] == 16 and costs["prompt_tokens"] > 0
    for name in ("unmerged", "merged"):
        assert costs[name]["decode_tokens"] == 6 and costs[name]["decode_tokens_per_s"] > 0
        assert costs[name]["prefill_s"] > 0
    # the adapter's A and B are read too while unmerged; merged, only the base weights remain
    assert costs["unmerged"]["bytes"]["weights"] > costs["merged"]["bytes"]["weights"]
    assert costs["unmerged"]["bound_tokens_per_s"] is None and "no card" in costs["bandwidth_source"]
    assert not process_gpu_lock().locked()  # the lease went back
    assert "CPU run" in out["note"]
    table = cost_table(costs)
    assert list(table.columns) == [
        "measure",
        "adapter beside the weights (PEFT)",
        "merged (merge_and_unload)",
    ]
    assert table.iloc[4, 1] == "none (CPU)"


def test_the_click_frees_its_models_when_done(kept, monkeypatch):
    alive = []

    def watched(folder, device):
        model, tokenizer = load_adapted(folder, device)
        alive.append(weakref.ref(model.get_base_model()))
        return model, tokenizer

    monkeypatch.setattr(inference, "load_adapted", watched)
    assert try_adapter(greedy(kept["prompts"][0], 4), CPU)["problem"] is None
    gc.collect()
    assert alive and alive[0]() is None


# ---------------------------------------------------------------- caps and bad input


def form(**overrides):
    return {
        "prompt": "What is 12 + 5?",
        "max_new_tokens": 48,
        "decoding": "greedy",
        "temperature": 0.8,
        "top_p": 0.95,
        "seed": 0,
        "adapter": None,
    } | overrides


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt": ""}, "The prompt is empty"),
        ({"prompt": "   \n "}, "The prompt is empty"),
        ({"prompt": "x" * (PROMPT_MAX_CHARS + 1)}, f"the cap is {PROMPT_MAX_CHARS:,}"),
        ({"max_new_tokens": MAX_NEW_TOKENS + 1}, f"between 1 and {MAX_NEW_TOKENS}"),
        ({"max_new_tokens": 0}, f"between 1 and {MAX_NEW_TOKENS}"),
        ({"decoding": "sampling", "temperature": 0.0}, "temperature in (0, 2]"),
    ],
)
def test_bad_input_gets_a_clear_message(overrides, message):
    request, problem = generation_request(form(**overrides))
    assert request is None and message in problem


def test_the_caps_themselves_are_accepted():
    request, problem = generation_request(form(prompt="y" * PROMPT_MAX_CHARS, max_new_tokens=MAX_NEW_TOKENS))
    assert problem is None and len(request.prompt) == PROMPT_MAX_CHARS and request.max_new_tokens == 256


def test_the_headless_run_asks_for_one_short_greedy_generation():
    request, problem = generation_request(None, smoke=True)
    assert problem is None and request.prompt and not request.sampling and request.max_new_tokens <= 16


def test_before_any_training_generate_says_there_is_no_adapter_yet(monkeypatch):
    monkeypatch.setitem(process_registry(), "adapter_folders", [])
    out = try_adapter(greedy("hi"), CPU)
    assert "No adapter yet" in out["problem"] and not process_gpu_lock().locked()
    assert adapter_choices() == {}


def delete_file(name):
    return lambda folder: (folder / name).unlink()


def overwrite(name, content):
    return lambda folder: (folder / name).write_bytes(content)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (shutil.rmtree, "gone from disk"),
        (delete_file("adapter_model.safetensors"), "`adapter_model.safetensors` is missing"),
        (delete_file("base_model.json"), "`base_model.json` is missing"),
        (overwrite("adapter_model.safetensors", b"\x00" * 40), "PEFT could not load that adapter"),
        (overwrite("adapter_config.json", b"{not json"), "PEFT could not load that adapter"),
        (overwrite("base_model.json", b'{"model_name": 3}'), "`base_model.json` (which base"),
        (overwrite("tokenizer.json", b'{"model": {"type": "BPE", "vocab": {"a": "x"}}}'), "`tokenizer.json`"),
    ],
)
def test_a_missing_or_damaged_adapter_folder_gets_a_clear_message_and_the_app_keeps_working(
    kept, tmp_path, damage, message
):
    folder = damaged_copy(kept, tmp_path, damage)
    out = try_adapter(greedy("hi"), CPU)
    assert message in out["problem"], out["problem"]
    assert str(tmp_path) not in out["problem"]  # a viewer never sees the server's paths
    assert not process_gpu_lock().locked()
    process_registry()["adapter_folders"] = [folder, kept["folder"]]
    assert try_adapter(greedy(kept["prompts"][0], 4), CPU, on_text=None)["problem"] is None  # still works


def test_an_adapter_changed_to_another_rank_does_not_fit_and_says_so(kept, tmp_path):
    def other_rank(folder):
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps(config | {"r": 4}))

    damaged_copy(kept, tmp_path, other_rank)
    assert "does not fit its base model" in try_adapter(greedy("hi"), CPU)["problem"]


def test_a_name_the_server_no_longer_keeps_is_refused(kept):
    request = GenerationRequest("hi", adapter="../../etc")  # a viewer can only send a name; it must be kept
    assert "no longer kept" in try_adapter(request, CPU)["problem"]


def test_a_prompt_past_the_models_context_gets_a_clear_message(kept):
    prompt = "~!@#$%^&*" * 111  # 999 characters the tokenizer never merged: one token each, past 512
    out = try_adapter(GenerationRequest(prompt, MAX_NEW_TOKENS), CPU)
    assert "is more than this model's context of 512 tokens" in out["problem"]
    assert "Shorten the prompt by at least" in out["problem"]


def test_out_of_memory_while_generating_is_caught_freed_and_the_next_click_works(kept, monkeypatch):
    real = inference.stream_both

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(inference, "stream_both", out_of_memory)
    out = try_adapter(greedy(kept["prompts"][0], 4), CPU)
    assert "Out of GPU memory while generating" in out["problem"] and not process_gpu_lock().locked()
    monkeypatch.setattr(inference, "stream_both", real)
    assert try_adapter(greedy(kept["prompts"][0], 4), CPU)["problem"] is None


def test_a_second_viewer_waits_for_the_lease_and_is_told_so(kept):
    holder = GpuLease()  # another viewer's training or generation
    assert holder.acquire()
    told, result = [], {}
    viewer = threading.Thread(
        target=lambda: result.update(try_adapter(greedy(kept["prompts"][0], 4), CPU, on_wait=told.append))
    )
    viewer.start()
    assert wait_until(lambda: told, seconds=30) and "another viewer is generating or training" in told[0]
    time.sleep(0.3)
    assert not result  # still waiting
    holder.release()
    viewer.join(120)
    assert result["problem"] is None and result["waited_s"] > 0 and "Waited" in result["note"]


# ---------------------------------------------------------------- what a token reads, and the texts


def test_bytes_per_token_count_tied_weights_once_and_leave_lookup_tables_out():
    tokenizer = build_offline_tokenizer(["hello world"] * 4, vocab_size=300)
    gpt2 = offline_gpt2(tokenizer, GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=300))
    unique = sum(p.numel() for p in gpt2.parameters())  # parameters() lists the tied wte/lm_head once
    position_table = gpt2.transformer.wpe.weight.numel()
    assert weight_bytes_read_per_token(gpt2) == 4 * (unique - position_table)  # wte is read whole as lm_head
    llama = offline_llama(tokenizer, LlamaConfig(**LLAMA_SHAPE, tie_word_embeddings=False))
    untied = sum(p.numel() for p in llama.parameters())
    assert weight_bytes_read_per_token(llama) == 4 * (untied - llama.model.embed_tokens.weight.numel())
    # keys and values: 2 × layers × KV width (GQA: 2 KV heads of 8) × 4 bytes a position
    assert kv_bytes_per_position(llama) == 2 * 2 * (2 * 8) * 4
    read = bytes_per_token(gpt2, prompt_tokens=10, decode_tokens=5)  # contexts 10..14: mean 12
    assert read["kv_cache"] == kv_bytes_per_position(gpt2) * 12 == 2 * 2 * 32 * 4 * 12


LLAMA_SHAPE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
}


def costs_for(device_type, bound=None, measured=100.0, unmerged=90.0):
    """measure_costs' shape with chosen numbers (the learner text is a pure function of them)."""

    def entry(tokens_per_s, weights):
        return {
            "prefill_s": 0.004,
            "decode_s": 32 / tokens_per_s,
            "decode_tokens": 32,
            "decode_tokens_per_s": tokens_per_s,
            "bytes": {"weights": weights, "kv_cache": 1e6, "total": weights + 1e6},
            "bound_tokens_per_s": bound,
        }

    bandwidth = None if bound is None else bound * (248e6 + 1e6)
    return {
        "device_type": device_type,
        "device_name": "NVIDIA H100 80GB HBM3" if device_type == "cuda" else "CPU",
        "prompt_tokens": 16,
        "n_layer": 12,
        "lora_layers": 48,
        "dtype": "float16",
        "bandwidth": bandwidth,
        "bandwidth_source": "H100 datasheet memory bandwidth" if bound else "a CPU run: there is no card",
        "unmerged": entry(unmerged, 250e6),
        "merged": entry(measured, 248e6),
        "parameters": 124e6,
    }


def test_the_inference_text_says_launch_bound_with_this_runs_numbers():
    text = inference_cost_text(costs_for("cuda", bound=13_000.0, measured=400.0, unmerged=300.0))
    assert "launch-bound" in text and "13,000 tokens/s" in text and "400.0 tokens/s" in text
    assert "3.1% of that bound" in text and "datasheet" in text
    assert "300.0 → 400.0 tokens/s (+33.3%)" in text and "48 wrapped layers" in text


def test_the_inference_text_says_memory_bound_when_reading_takes_most_of_a_token():
    text = inference_cost_text(costs_for("cuda", bound=1_000.0, measured=800.0))
    assert "memory-bound" in text and "launch-bound" not in text and "80.0% of that bound" in text


def test_on_a_cpu_the_text_says_there_is_no_card_bound():
    text = inference_cost_text(costs_for("cpu"))
    assert "On a CPU there is no card, so no card bound" in text and "100.0 tokens/s" in text


def test_generated_text_is_shown_as_data_never_as_markup():
    panes = generation_panes({"base": "<script>alert(1)</script>", "fine-tuned": "**bold**"}).text
    assert "<script>alert" not in panes and "&lt;script&gt;" in panes


def test_the_picker_shows_labels_never_server_paths(tmp_path, monkeypatch):
    folder = tmp_path / "local-adapter"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).write_text("{}")
    recipe = {
        "model_name": "/home/someone/models/gpt2",
        "local": True,
        "seed": 1,
        "dtype": "float32",
        "rank": 8,
    }
    (folder / "base_model.json").write_text(json.dumps(recipe))
    monkeypatch.setitem(process_registry(), "adapter_folders", [tmp_path / "gone", folder])
    labels = list(adapter_choices())
    assert labels[0].startswith("1. local folder `gpt2` · r=8") and "/home" not in labels[0]
    assert labels[1] == "2. (folder missing or damaged)"
    assert set(adapter_choices().values()) == {"local-adapter", "gone"}  # names, not paths
    assert Path(str(tmp_path)).name not in "".join(labels)


def test_logits_that_are_not_numbers_get_a_clear_message_instead_of_a_sampling_error(kept, monkeypatch):
    """An FP16 model that overflows gives NaN/inf logits; torch.multinomial would raise a bare RuntimeError."""
    real = inference.forward_step

    def overflowing(*args, **kwargs):
        logits, cache = real(*args, **kwargs)
        return logits.fill_(float("nan")), cache

    monkeypatch.setattr(inference, "forward_step", overflowing)
    request = GenerationRequest(kept["prompts"][0], 4, sampling=True, temperature=0.8, top_p=0.95, seed=0)
    out = try_adapter(request, CPU)
    assert "not a number" in out["problem"] and not process_gpu_lock().locked()
    monkeypatch.setattr(inference, "forward_step", real)
    assert try_adapter(request, CPU)["problem"] is None


def test_a_bug_while_generating_raises_and_its_traceback_does_not_keep_the_model(kept, monkeypatch):
    alive, seen_at_free = [], []

    def watched(folder, device):
        model, tokenizer = load_adapted(folder, device)
        alive.append(weakref.ref(model.get_base_model()))
        return model, tokenizer

    def bug(*args, **kwargs):
        raise KeyError("a bug in the cost table")

    real_free = inference.free_device_memory

    def free_and_look(device):
        gc.collect()
        seen_at_free.append(alive[0]() is None)
        return real_free(device)

    monkeypatch.setattr(inference, "load_adapted", watched)
    monkeypatch.setattr(inference, "measure_costs", bug)
    monkeypatch.setattr(inference, "free_device_memory", free_and_look)
    with pytest.raises(KeyError, match="a bug in the cost table"):  # a bug is never a "problem" line
        try_adapter(greedy(kept["prompts"][0], 4), CPU)
    assert seen_at_free == [True] and not process_gpu_lock().locked()


def test_a_marimo_run_viewer_picks_and_uses_only_the_adapters_its_own_session_trained(
    kept, tmp_path, monkeypatch
):
    """An adapter trained on one viewer's uploaded data is not another viewer's to query (marimo edit: all)."""
    monkeypatch.setitem(process_registry(), "adapter_folders", [])
    monkeypatch.setitem(process_registry(), "adapter_owners", {})
    alice, bob = adapter_owner("run"), adapter_owner("run")
    assert alice != bob and alice is not None and adapter_owner("edit") is None
    alices = tmp_path / "alices"
    shutil.copytree(kept["folder"], alices)
    keep_recent_adapters(alices, owner=alice)
    assert kept_adapters(alice) == [alices] and kept_adapters(bob) == [] and kept_adapters(None) == [alices]
    assert adapter_choices(bob) == {} and list(adapter_choices(alice).values()) == ["alices"]
    # Bob cannot use it, not even by sending its name: it reads as not his.
    assert "No adapter yet" in try_adapter(greedy(kept["prompts"][0], 2), CPU, owner=bob)["problem"]
    keep_recent_adapters(tmp_path / "bobs", owner=bob)
    refused = try_adapter(GenerationRequest("hi", 2, adapter="alices"), CPU, owner=bob)
    assert "no longer kept" in refused["problem"]
    assert try_adapter(GenerationRequest("hi", 2, adapter="alices"), CPU, owner=alice)["problem"] is None
    # A folder the process no longer keeps forgets its owner too.
    for i in range(ADAPTERS_KEPT):
        keep_recent_adapters(tmp_path / f"later-{i}", owner=bob)
    assert "alices" not in process_registry()["adapter_owners"] and kept_adapters(alice) == []


def test_try_it_says_whose_adapters_it_lists_and_what_it_holds_on_this_machine():
    viewer_cpu = try_it_intro("cpu", per_viewer=True, kept=5)
    assert "**you** trained in this session" in viewer_cpu and "There is no GPU here" in viewer_cpu
    assert "GPU like" not in viewer_cpu and "keeps its last 5" in viewer_cpu
    owner_gpu = try_it_intro("cuda", per_viewer=False, kept=3)
    assert (
        "this server kept" in owner_gpu and "turn on the GPU" in owner_gpu and "keeps its last 3" in owner_gpu
    )


def test_a_generation_from_a_random_weight_base_says_why_its_answer_may_be_wrong():
    assert "random weights" in try_it_note(TINY_MODEL_NAME) and "random weights" in try_it_note(
        TINY_LLAMA_NAME
    )
    assert try_it_note("gpt2") == "" and try_it_note(None) == ""
