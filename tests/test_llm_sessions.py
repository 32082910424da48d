"""Viewers of `marimo run` are threads of one process: one GPU lease per Train click, isolated runs, clear stops."""

import os
import threading
import time
import types
import warnings
from pathlib import Path

import pytest
import torch

import gpu_notebooks.llm_finetuning.adapter as adapter
import gpu_notebooks.llm_finetuning.steps as steps
from gpu_notebooks.gpu.lock import DEFAULT_GPU_LOCK_PATH, GpuLease, gpu_lock_path
from gpu_notebooks.llm_finetuning.adapter import (
    ADAPTERS_ON_DISK,
    BASE_RECIPE_FILE,
    keep_recent_adapters,
    project_path,
)
from gpu_notebooks.llm_finetuning.explain.speed import why_fp16_text
from gpu_notebooks.llm_finetuning.lora import LoRADropout, inject_lora, lora_layers
from gpu_notebooks.llm_finetuning.models import build_offline_tokenizer, offline_gpt2, tokenizer_corpus
from gpu_notebooks.llm_finetuning.precision import (
    bf16_native,
    choose_precision,
    precision_callout_kind,
    resolve_precision,
)
from gpu_notebooks.llm_finetuning.settings import TrainSettings
from gpu_notebooks.llm_finetuning.steps import (
    evaluate_step,
    inject_step,
    load_step,
    prepare_step,
    save_step,
    train_step_body,
    waiting_message,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.training import FineTuneRun, catch_out_of_memory
from gpu_notebooks.registry import process_gpu_lock, process_registry

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def small_settings(**overrides):
    """A few optimizer steps of the tiny model: enough to show isolation, small enough for a busy CI."""
    return TrainSettings(
        **({"model_source": "tiny", "epochs": 1, "batch_size": 32, "max_length": 64} | overrides)
    )


def whole_run(settings, folder, timeline=None):
    """Steps 2-7 as the cells call them; returns the losses, the adapter's A matrices and the lease times."""
    data = builtin_examples()
    eval_frame = data[data["split"] == "eval"]
    plan = resolve_precision(settings.precision, "cpu")
    run, facts = load_step(settings, data, CPU, plan)
    held_from = time.perf_counter()
    assert run.lease.held and not facts["out_of_memory"]
    table, problem = inject_step(run)
    assert problem is None
    stats, problem = prepare_step(run, data)
    assert problem is None
    trained = train_step_body(run, eval_frame, 8)
    assert trained["stop_reason"] is None
    after, _, stop = evaluate_step(run, eval_frame, 8)
    assert stop is None
    weights = {name: layer.lora_A.weight.detach().clone() for name, layer in lora_layers(run.model)}
    saved = save_step(run, folder, eval_frame["prompt"].head(4).tolist())
    held_until = time.perf_counter()
    assert saved["failure"] is None and not run.lease.held
    if timeline is not None:
        timeline.append((held_from, held_until))
    return [r["loss"] for r in trained["train_records"]], weights, saved


# ---------------------------------------------------------------- the lock file and its path


def test_the_lock_path_comes_from_the_environment_and_defaults_to_the_shared_file(monkeypatch):
    monkeypatch.setenv("GPU_NOTEBOOKS_LOCK_PATH", "/tmp/somewhere/else.lock")
    assert gpu_lock_path() == "/tmp/somewhere/else.lock"
    assert GpuLease().path == "/tmp/somewhere/else.lock"
    monkeypatch.delenv("GPU_NOTEBOOKS_LOCK_PATH")
    assert gpu_lock_path() == DEFAULT_GPU_LOCK_PATH
    assert DEFAULT_GPU_LOCK_PATH.endswith("gpu-learning-notebooks.lock")


def test_the_tests_never_take_the_real_machine_wide_lock():
    assert os.environ["GPU_NOTEBOOKS_LOCK_PATH"] != DEFAULT_GPU_LOCK_PATH  # tests/conftest.py sets it
    assert GpuLease().path == os.environ["GPU_NOTEBOOKS_LOCK_PATH"]


def test_without_a_gpu_the_wait_message_does_not_say_it_waits_for_the_gpu():
    assert "waiting for the gpu" not in waiting_message(CPU).lower()
    assert "another run" in waiting_message(CPU)
    assert "Waiting for the GPU" in waiting_message(torch.device("cuda"))


# ---------------------------------------------------------------- one lease per Train click


def test_a_lease_is_held_across_calls_until_released_and_makes_a_second_viewer_wait():
    first = GpuLease()
    assert first.acquire()
    waited, entered = threading.Event(), threading.Event()

    def second_viewer():
        lease = GpuLease()
        lease.acquire(on_wait=waited.set)
        entered.set()
        lease.release()

    thread = threading.Thread(target=second_viewer)
    thread.start()
    assert waited.wait(10)
    time.sleep(0.2)
    assert not entered.is_set()  # still held: the first click's steps 3-7 have not released it
    first.release()
    thread.join(10)
    assert entered.is_set() and not process_gpu_lock().locked()
    first.release()  # a second release is a no-op


def test_a_lease_left_behind_by_this_sessions_previous_run_is_given_back_instead_of_deadlocking():
    stale = GpuLease()
    assert stale.acquire()  # a cell raised: its run never called release()
    fresh = GpuLease()
    done = threading.Event()

    def acquire_on_the_same_thread():
        stale.owner = threading.get_ident()  # the same session thread clicks Train again
        fresh.acquire()
        done.set()

    thread = threading.Thread(target=acquire_on_the_same_thread, daemon=True)
    thread.start()
    thread.join(10)
    assert done.is_set() and not stale.held and fresh.held
    fresh.release()
    assert not process_gpu_lock().locked()


def test_step_2_takes_the_lease_and_every_stop_gives_it_back():
    data = builtin_examples()
    plan = resolve_precision("fp16", "cpu")
    run, _ = load_step(small_settings(target_modules=("q_proj",)), data, CPU, plan)
    assert run.lease.held and process_gpu_lock().locked()
    table, problem = inject_step(run)  # the LoRA targets of another architecture
    assert table is None and "No layer of this model matches" in problem and "c_attn" in problem
    assert run.model is None and not run.lease.held and not process_gpu_lock().locked()

    run, _ = load_step(small_settings(max_length=4), data, CPU, plan)
    assert inject_step(run)[1] is None
    stats, problem = prepare_step(run, data)  # every prompt is longer than 4 tokens
    assert stats is None and "max sequence length of 4 tokens" in problem
    assert run.model is None and not run.lease.held


def test_a_bug_inside_a_step_releases_the_run_and_its_lease_and_still_raises(monkeypatch):
    data = builtin_examples()
    run, _ = load_step(small_settings(), data, CPU, resolve_precision("fp16", "cpu"))

    def buggy(*args, **kwargs):
        raise NameError("a bug, not a failed run")

    monkeypatch.setattr(steps, "inject_lora", buggy)
    with pytest.raises(NameError):
        inject_step(run)
    assert run.model is None and not run.lease.held


def test_two_sessions_training_at_once_get_isolated_seeds_adapters_and_lease_times(tmp_path):
    torch.set_num_threads(1)
    timeline, results, errors = [], {}, []

    def session(name, seed):
        try:
            results[name] = whole_run(small_settings(seed=seed), tmp_path / name, timeline)
        except BaseException as error:  # reported below: a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=session, args=(n, s)) for n, s in (("a", 1), ("b", 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    solo_losses, solo_weights, _ = whole_run(small_settings(seed=1), tmp_path / "solo")
    losses, weights, saved = results["a"]
    assert losses == solo_losses  # the same seed trains the same, whatever ran beside it
    assert all(torch.equal(weights[k], solo_weights[k]) for k in weights)
    assert losses != results["b"][0]
    (first, second) = sorted(timeline)
    assert first[1] <= second[0]  # the leases never overlapped: the runs took turns, steps 2 to 7
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()


# ---------------------------------------------------------------- per-run random numbers


def test_lora_init_and_dropout_draw_from_the_runs_generator_not_the_global_one():
    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))

    def a_matrices(global_seed):
        model = offline_gpt2(tokenizer, seed=0)
        torch.manual_seed(global_seed)  # another viewer moved the global generator
        inject_lora(model, ["attn.c_attn"], 4, 8, 0.1, generator=torch.Generator().manual_seed(7))
        return [layer.lora_A.weight for _, layer in lora_layers(model)]

    assert all(torch.equal(x, y) for x, y in zip(a_matrices(1), a_matrices(2), strict=True))

    def mask(global_seed):
        dropout = LoRADropout(0.5, torch.Generator().manual_seed(3)).train()
        torch.manual_seed(global_seed)
        return dropout(torch.ones(64))

    assert torch.equal(mask(1), mask(2)) and 0 < int((mask(1) == 0).sum()) < 64


# ---------------------------------------------------------------- process-wide state left alone


def test_peft_reload_check_does_not_touch_the_process_wide_warning_filters(monkeypatch, tmp_path):
    def not_thread_safe(*args, **kwargs):
        raise AssertionError("warnings.catch_warnings swaps the filters of every thread")

    data = builtin_examples()
    run, _ = load_step(small_settings(), data, CPU, resolve_precision("fp16", "cpu"))
    inject_step(run)
    prepare_step(run, data)
    patched = types.SimpleNamespace(**vars(warnings))
    patched.catch_warnings = not_thread_safe
    monkeypatch.setattr(
        adapter, "warnings", patched
    )  # the app's own reference only: pytest uses the real one
    saved = save_step(run, tmp_path / "adapter", data["prompt"].head(4).tolist())
    assert saved["failure"] is None and saved["peft_max_diff"] < 1e-3


def test_releasing_a_compiled_run_does_not_reset_every_sessions_compile_caches(monkeypatch):
    def reset_everything():
        raise AssertionError("torch._dynamo.reset() clears the caches of every viewer's session")

    monkeypatch.setattr(torch._dynamo, "reset", reset_everything)
    run = FineTuneRun(settings=small_settings(), device=CPU, plan=resolve_precision("fp16", "cpu"))
    run.body = torch.nn.Linear(2, 2)  # stands for the compiled transformer
    run.release()
    assert run.body is None


# ---------------------------------------------------------------- adapters on disk and their paths


def test_the_process_keeps_its_last_adapter_folders_and_deletes_only_its_own(tmp_path, monkeypatch):
    monkeypatch.setitem(process_registry(), "adapter_folders", [])
    foreign = tmp_path / "not-ours"
    foreign.mkdir()
    folders = []
    for i in range(7):
        folder = tmp_path / f"adapter-{i}"
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        folders.append(folder)
        keep_recent_adapters(folder, keep=5)
    assert [f.exists() for f in folders] == [False, False, True, True, True, True, True]
    assert foreign.exists()


def test_the_output_folder_keeps_its_newest_adapters_across_restarts_and_only_ours(tmp_path, monkeypatch):
    monkeypatch.setitem(process_registry(), "adapter_folders", [])
    other_file = tmp_path / "notes"  # a folder the app did not write: never touched
    other_file.mkdir()
    (other_file / "adapter_config.json").write_text("{}")
    folders = []
    for i in range(ADAPTERS_ON_DISK + 3):  # as if written by earlier server processes, oldest first
        folder = tmp_path / f"adapter-{i}"
        folder.mkdir()
        for name in ("adapter_config.json", BASE_RECIPE_FILE):
            (folder / name).write_text("{}")
        os.utime(folder, (1_000_000 + i, 1_000_000 + i))
        folders.append(folder)
    keep_recent_adapters(folders[-1], keep=5)
    assert [f.exists() for f in folders] == [False] * 3 + [True] * ADAPTERS_ON_DISK
    assert other_file.exists()


def test_step_7_shows_the_adapter_relative_to_the_project_never_the_servers_absolute_path():
    inside = ROOT / "outputs" / "adapters" / "gpt2-r8-x"
    assert project_path(inside) == str(Path("outputs") / "adapters" / "gpt2-r8-x")
    outside = Path("/srv/secret/place/gpt2-r8-x")
    assert project_path(outside) == str(Path("place") / "gpt2-r8-x")
    assert not project_path(outside).startswith("/")


# ---------------------------------------------------------------- precision colour, OOM by type


def test_step_1_colours_a_bf16_to_fp16_fallback_as_a_warning():
    fallback = resolve_precision("bf16", "cuda", bf16_supported=False)
    assert fallback.name == "FP16 + GradScaler" and precision_callout_kind(fallback) == "warn"
    assert precision_callout_kind(resolve_precision("fp16", "cuda")) == "success"
    assert precision_callout_kind(resolve_precision("bf16", "cuda")) == "success"
    assert precision_callout_kind(resolve_precision("fp16", "cpu")) == "warn"
    assert precision_callout_kind(resolve_precision("fp32", "cpu")) == "success"


def test_bf16_is_native_from_compute_capability_8_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert not bf16_native(torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert bf16_native(torch.device("cuda", 0))
    assert not bf16_native(CPU)


def test_bf16_decision_ignores_torch_emulated_bf16_and_the_text_says_which_precision_when(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: True
    )  # Turing says yes
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    llama = TrainSettings(model_source="tiny-llama", precision="auto")
    assert choose_precision(llama, cuda)[0] == "fp16"
    assert resolve_precision("bf16", "cuda", bf16_native(cuda)).name == "FP16 + GradScaler"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert choose_precision(llama, cuda)[0] == "bf16"
    plan = resolve_precision("bf16", "cuda", bf16_native(cuda))
    assert plan.name == "BF16" and not plan.use_grad_scaler
    text = why_fp16_text()
    assert "works everywhere" not in text
    assert "Ampere" in text and "Volta and Turing" in text and "CPU run uses FP32" in text


def test_out_of_memory_is_recognised_by_its_type_never_by_its_message():
    def typed():
        raise torch.OutOfMemoryError("anything")

    def message_only():
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert catch_out_of_memory(typed) == (None, True)
    assert catch_out_of_memory(lambda x: x + 1, 1) == (2, False)
    with pytest.raises(RuntimeError):
        catch_out_of_memory(message_only)


def test_step_7_reports_a_disk_error_but_lets_a_bug_raise(monkeypatch, tmp_path):
    data = builtin_examples()
    prompts = data["prompt"].head(4).tolist()
    for error, reported in ((OSError("No space left on device"), True), (NameError("bug"), False)):

        def failing(*args, error=error, **kwargs):
            raise error

        run, _ = load_step(small_settings(), data, CPU, resolve_precision("fp16", "cpu"))
        inject_step(run)
        prepare_step(run, data)
        monkeypatch.setattr(steps, "save_adapter", failing)
        if reported:
            saved = save_step(run, tmp_path / "a", prompts)
            assert "No space left on device" in saved["failure"]
        else:
            with pytest.raises(NameError):
                save_step(run, tmp_path / "a", prompts)
        assert run.model is None and not run.lease.held
        monkeypatch.undo()
