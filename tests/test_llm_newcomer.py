"""What a newcomer meets first: defaults that match the machine, the hub checked once and fast, readable text."""

import threading
import time
from pathlib import Path

import pytest

import gpu_notebooks.llm_finetuning.loading as loading
from gpu_notebooks.llm_finetuning.evaluation import readable_decode
from gpu_notebooks.llm_finetuning.loading import default_choices, hub_status, model_availability_note
from gpu_notebooks.llm_finetuning.models import build_offline_tokenizer, tokenizer_corpus
from gpu_notebooks.llm_finetuning.settings import (
    MODEL_CHOICES,
    PRECISION_CHOICES,
    TrainSettings,
    settings_from_form,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.registry import process_registry


@pytest.fixture
def fresh_hub_probe(monkeypatch):
    """An empty per-process hub probe for the test; the real one is put back afterwards."""
    registry = process_registry()
    saved = registry.pop("hub_probe", None)
    yield
    registry.pop("hub_probe", None)
    if saved is not None:
        registry["hub_probe"] = saved


def test_on_a_cpu_the_defaults_are_the_tiny_offline_model_in_fp32_as_the_readme_says():
    cpu = default_choices(cuda_available=False)
    assert MODEL_CHOICES[cpu["model"]] == "tiny" and PRECISION_CHOICES[cpu["precision"]] == "fp32"
    gpu = default_choices(cuda_available=True)
    assert (
        MODEL_CHOICES[gpu["model"]] == "gpt2" and PRECISION_CHOICES[gpu["precision"]] == "auto"
    )  # → FP16 for GPT-2
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "trains a tiny offline GPT-2 in FP32" in readme


def test_the_hub_is_asked_once_per_process_and_a_hanging_lookup_costs_at_most_the_timeout(
    monkeypatch, fresh_hub_probe
):
    calls, release = [], threading.Event()

    def hanging_lookup(*args, **kwargs):  # name resolution on a blocked network: ~20 s
        calls.append(1)
        release.wait(30)
        return False

    monkeypatch.setattr(loading, "hub_reachable", hanging_lookup)
    started = time.perf_counter()
    assert hub_status(timeout=0.5) is False
    assert hub_status(timeout=0.5) is False
    waited = time.perf_counter() - started
    release.set()
    assert len(calls) == 1  # the second viewer (or Train) reuses the one probe
    assert waited < 25  # bounded by the two timeouts, not by the lookup (generous: a busy CI machine)


def test_the_hub_answer_is_reused_once_known(monkeypatch, fresh_hub_probe):
    calls = []
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: calls.append(1) or True)
    assert hub_status() is True and hub_status() is True and calls == [1]


def test_the_picker_says_before_train_when_a_hub_model_will_fall_back(monkeypatch):
    monkeypatch.setattr(loading, "model_cached", lambda name: False)
    monkeypatch.setattr(loading, "hub_status", lambda timeout=3.0: False)
    note = model_availability_note(TrainSettings(model_source="gpt2"))
    assert "cannot be reached" in note.text and "fall back to the tiny offline GPT-2" in note.text
    monkeypatch.setattr(loading, "model_cached", lambda name: True)
    assert "local cache" in model_availability_note(TrainSettings(model_source="gpt2")).text
    assert model_availability_note(TrainSettings(model_source="tiny")) is None
    assert model_availability_note(TrainSettings(model_source="tiny-llama")) is None  # built offline too


def test_generations_never_show_the_replacement_character():
    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    partial = next(i for i in range(len(tokenizer)) if "\ufffd" in tokenizer.decode([i]))
    words = tokenizer("café ☃", add_special_tokens=False)["input_ids"]
    assert "\ufffd" in tokenizer.decode([*words, partial])  # what a plain decode shows
    shown = readable_decode(tokenizer, [*words, partial])
    assert "\ufffd" not in shown and shown.startswith("café ☃") and "\\x" not in shown
    assert readable_decode(tokenizer, words) == "café ☃"


def test_a_byte_that_is_not_text_is_marked_not_shown_as_a_python_escape():
    """Issue 24, item 10: the "before" column showed `exnightEL\\xbb!!`; whole characters read as text and
    each stray byte (or invisible control character) as one [byte 0xNN] mark."""
    from gpu_notebooks.llm_finetuning.evaluation import marked_text

    assert marked_text(b"exnightEL\xbb!!") == "exnightEL[byte 0xBB]!!"
    assert marked_text("caf\u00e9 \u2603".encode() + b"\xe2\x98") == "café ☃[byte 0xE2][byte 0x98]"
    assert marked_text(b"a\x07b\nc\td") == "a[byte 0x07]b\nc\td"
    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    partial = next(i for i in range(len(tokenizer)) if "\ufffd" in tokenizer.decode([i]))
    shown = readable_decode(tokenizer, [*tokenizer("ok", add_special_tokens=False)["input_ids"], partial])
    assert shown.startswith("ok[byte 0x") and shown.endswith("]")


FORM = {
    "model": "tiny",
    "local_dir": " ",
    "precision": "fp32",
    "rank": 4,
    "alpha": 8,
    "dropout": 0.0,
    "targets": ["attn.c_attn"],
    "learning_rate": "auto",
    "warmup_pct": 0,
    "epochs": "1",
    "batch_size": "8",
    "max_length": "64",
    "seed": 3,
    "speed": "plain (reference loop)",
    "data_source": "builtin",
    "upload": (),
}


def test_the_settings_on_screen_are_the_settings_train_uses():
    """No apply step: the live controls' value is what a run gets (the browser test drives the page)."""
    value = dict(FORM)
    settings = settings_from_form(value)
    assert (settings.model_source, settings.epochs, settings.rank, settings.speed) == ("tiny", 1, 4, "plain")


def test_step_one_speaks_of_the_gpu_only_when_there_is_one():
    """Issue 24, item 11: "set in step 2, once this run holds the GPU" on a machine with no GPU."""
    import torch

    from gpu_notebooks.llm_finetuning.steps import seed_note

    assert "GPU" not in seed_note(torch.device("cpu"), 42) and "**42**" in seed_note(torch.device("cpu"), 42)
    assert "once this run holds the GPU" in seed_note(torch.device("cuda"), 7)


def test_one_epoch_is_said_in_the_singular():
    """Steps 2 and 4 said "1 epochs" on the default CPU run."""
    from gpu_notebooks.text import count_of

    assert count_of(1, "epoch") == "1 epoch"
    assert count_of(3, "epoch") == "3 epochs"
    assert count_of(1_200, "step") == "1,200 steps"
    source = (Path(__file__).resolve().parents[1] / "llm_finetuning_dashboard.py").read_text()
    assert "settings.epochs} epochs" not in source


def test_a_typed_model_folder_is_for_marimo_edit_or_an_owner_who_allows_it(tmp_path):
    import torch

    from gpu_notebooks.llm_finetuning import settings as choices
    from gpu_notebooks.llm_finetuning.loading import load_model_and_tokenizer
    from gpu_notebooks.llm_finetuning.models import TINY_MODEL_NAME

    assert choices.server_paths_allowed("edit", {}) and choices.server_paths_allowed(
        None, {}
    )  # export, script
    assert not choices.server_paths_allowed("run", {})
    assert choices.server_paths_allowed("run", {"allow-server-paths": ""})
    form = {**FORM, "model": "local", "local_dir": str(tmp_path)}
    viewer = choices.settings_from_form(form, server_paths=False)
    assert viewer.local_dir == "" and not viewer.server_paths  # the typed path goes no further
    assert viewer.model_source == "tiny" and viewer.local_refused  # the title, plan and estimates follow
    assert "Train uses the tiny offline GPT-2 instead" in str(model_availability_note(viewer).text)
    corpus = builtin_examples()["prompt"].tolist()
    _, _, name, warning = load_model_and_tokenizer(viewer, torch.float32, corpus)
    assert name == TINY_MODEL_NAME and warning.startswith("Folders on the server are off")
    assert warning.endswith("The tiny offline GPT-2 runs instead.")
    editor = choices.settings_from_form(form)
    assert editor.local_dir == str(tmp_path) and model_availability_note(editor) is None
