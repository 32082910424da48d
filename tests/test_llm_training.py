"""The training pipeline on a CPU: precision plans, schedule, a real short run, the NaN/OOM guards, loading."""

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers

import gpu_notebooks.llm_finetuning.evaluation as evaluation
import gpu_notebooks.llm_finetuning.training as training
from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.llm_finetuning.adapter import merge_check
from gpu_notebooks.llm_finetuning.cards import memory_card, metric_card, training_summary
from gpu_notebooks.llm_finetuning.evaluation import evaluate_run, generate_greedy, standard_error
from gpu_notebooks.llm_finetuning.loading import (
    ModelUnavailable,
    hub_reachable,
    load_model_and_tokenizer,
    load_pretrained,
)
from gpu_notebooks.llm_finetuning.lora import inject_lora, lora_layers, remove_lora
from gpu_notebooks.llm_finetuning.models import (
    TINY_MODEL_NAME,
    build_offline_tokenizer,
    offline_gpt2,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import resolve_precision, set_seed
from gpu_notebooks.llm_finetuning.schedule import lr_at
from gpu_notebooks.llm_finetuning.settings import TrainSettings, with_model_defaults
from gpu_notebooks.llm_finetuning.steps import release_on_interrupt
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.telemetry import device_sampler
from gpu_notebooks.llm_finetuning.training import (
    FineTuneRun,
    TrainingStopped,
    evaluate_loss,
    prepare_training,
    train_steps,
)
from gpu_notebooks.registry import process_gpu_lock
from tests.fakes import wait_until


def out_of_memory(*args, **kwargs):
    """Stands in for any app function that runs out of GPU memory."""
    raise torch.OutOfMemoryError("CUDA out of memory (simulated)")


def tiny_run(**overrides):
    """The app's steps 1-4 with the tiny offline model on the CPU."""
    settings = TrainSettings(model_source="tiny", **overrides)
    data = builtin_examples()
    set_seed(settings.seed)
    plan = resolve_precision(settings.precision, "cpu")
    model, tokenizer, name, warning = load_model_and_tokenizer(
        settings, plan.param_dtype, tokenizer_corpus(data)
    )
    assert name == TINY_MODEL_NAME and warning is None
    run = FineTuneRun(
        settings=with_model_defaults(settings, name),
        device=torch.device("cpu"),
        plan=plan,
        model=model,
        tokenizer=tokenizer,
        model_name=name,
    )
    inject_lora(run.model, settings.target_modules, settings.rank, settings.alpha, settings.dropout)
    prepare_training(run, data[data["split"] == "train"], data[data["split"] == "eval"])
    return run, data


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    run, data = tiny_run(epochs=8)
    eval_frame = data[data["split"] == "eval"]
    before, _ = evaluate_run(run, eval_frame, max_new_tokens=10)
    records = list(train_steps(run))
    after, scored = evaluate_run(run, eval_frame, max_new_tokens=10)
    return run, records, before, after, scored


def test_cpu_precision_falls_back_with_an_explanation():
    plan = resolve_precision("fp16", "cpu")
    assert plan.param_dtype == torch.float32 and plan.autocast_dtype is None and not plan.use_grad_scaler
    assert "CPU" in plan.note and "FP32" in plan.name
    assert resolve_precision("bf16", "cpu").autocast_dtype == torch.bfloat16
    gpu = resolve_precision("fp16", "cuda")
    assert gpu.param_dtype == gpu.autocast_dtype == torch.float16 and gpu.use_grad_scaler
    assert resolve_precision("bf16", "cuda", bf16_supported=False).use_grad_scaler
    assert not resolve_precision("bf16", "cuda").use_grad_scaler


def test_schedule_warms_up_then_decays():
    factors = [lr_at(step, 1.0, 10, 100) for step in range(100)]
    assert [lr_at(step, 2e-4, 10, 100) for step in range(100)] == pytest.approx([2e-4 * f for f in factors])
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10], strict=False))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


def test_auto_settings_depend_on_the_loaded_model():
    auto = TrainSettings()
    assert with_model_defaults(auto, TINY_MODEL_NAME).learning_rate == 3e-3
    assert with_model_defaults(auto, "gpt2").epochs == 5
    assert with_model_defaults(TrainSettings(learning_rate=1e-4, epochs=2), "gpt2").learning_rate == 1e-4


def test_short_cpu_training_lowers_eval_loss_and_teaches_the_formats(trained):
    run, records, before, after, scored = trained
    steps = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(steps) == run.total_steps == 8 * 10 and len(evals) == 8
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert after["eval_loss"] < before["eval_loss"] - 1.5
    assert after["format_match"] > before["format_match"] + 0.2
    assert after["exact_match"] >= before["exact_match"]
    assert all(r["tokens_per_s"] > 0 and r["real_tokens"] <= r["padded_tokens"] for r in steps)
    assert steps[0]["lr"] < steps[len(steps) // 3]["lr"] and steps[-1]["lr"] < steps[len(steps) // 3]["lr"]
    assert set(scored.columns) >= {"generated", "exact_match", "format_match"}


def test_optimizer_holds_adapter_parameters_only(trained):
    run = trained[0]
    optimized = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    adapters = {
        id(p) for _, layer in lora_layers(run.model) for p in (layer.lora_A.weight, layer.lora_B.weight)
    }
    assert optimized == adapters


def test_batched_generation_matches_one_prompt_at_a_time(trained):
    run = trained[0]
    prompts = builtin_examples()["prompt"].iloc[::23].tolist()
    assert generate_greedy(run, prompts, 8, batch_size=len(prompts)) == generate_greedy(
        run, prompts, 8, batch_size=1
    )


def test_merged_inference_matches_and_restores_the_weights(trained):
    run = trained[0]
    prompts = builtin_examples()["prompt"].head(6).tolist()
    before = [layer.base_layer.weight.clone() for _, layer in lora_layers(run.model)]
    assert merge_check(run, prompts) < 1e-4
    assert all(
        torch.equal(w, layer.base_layer.weight)
        for w, (_, layer) in zip(before, lora_layers(run.model), strict=True)
    )
    assert not any(layer.merged for _, layer in lora_layers(run.model))


def test_nan_guard_stops_with_an_explanation():
    run, _ = tiny_run(epochs=1)
    name, layer = lora_layers(run.model)[0]
    with torch.no_grad():
        layer.lora_B.weight.fill_(float("inf"))
    with pytest.raises(TrainingStopped) as stopped:
        next(train_steps(run))
    assert "loss became nan" in stopped.value.reason.lower() and "learning rate" in stopped.value.advice
    assert stopped.value.step == 0


def test_collapsing_loss_scale_stops_training():
    run, _ = tiny_run(epochs=1)
    run.scaler = torch.amp.GradScaler(device="cpu", init_scale=2.0**8)
    for _, layer in lora_layers(run.model):
        layer.lora_A.weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    with pytest.raises(TrainingStopped, match="skipped 3 steps in a row"):
        list(train_steps(run, max_skipped_in_row=3))


def test_out_of_memory_is_caught_and_explained(monkeypatch):
    run, _ = tiny_run(epochs=1)

    monkeypatch.setattr(training, "train_one_step", out_of_memory)
    with pytest.raises(TrainingStopped) as stopped:
        list(train_steps(run))
    assert "out of memory" in stopped.value.reason and "smaller batch size" in stopped.value.advice


def test_evaluation_out_of_memory_becomes_a_clear_stop(monkeypatch):
    run, data = tiny_run(epochs=1)

    monkeypatch.setattr(evaluation, "evaluate_loss", out_of_memory)
    with pytest.raises(TrainingStopped, match="while evaluating"):
        evaluate_run(run, data[data["split"] == "eval"], 4)


def test_stopped_training_renders_an_explanation():
    stop = TrainingStopped("The loss became nan at step 3.", "Lower the learning rate.", 2)
    html = training_summary(pd.DataFrame(), [], stop, 0.0, 0.0, pd.DataFrame()).text
    assert "stopped after 2 optimizer steps" in html and "Lower the learning rate" in html


def test_release_drops_every_reference():
    run, _ = tiny_run(epochs=1)
    report = run.release()
    assert run.model is None and run.optimizer is None and run.train_loader is None
    assert report["allocated_after"] == 0  # CPU: nothing tracked on a device


def test_eval_loss_equals_base_model_before_training():
    run, _ = tiny_run(epochs=1)
    with_lora = evaluate_loss(run)["eval_loss"]
    base = run.model
    remove_lora(base)
    assert evaluate_loss(run)["eval_loss"] == pytest.approx(with_lora, abs=1e-6)


def test_missing_model_falls_back_to_the_tiny_offline_model(tmp_path):
    settings = TrainSettings(model_source="local", local_dir=str(tmp_path / "nowhere"))
    model, tokenizer, name, warning = load_model_and_tokenizer(
        settings, torch.float32, tokenizer_corpus(None)
    )
    assert name == TINY_MODEL_NAME and "not a model folder" in warning and "tiny offline" in warning
    assert model.config.vocab_size >= len(tokenizer)


def test_local_directory_loads_with_the_auto_classes(tmp_path):
    tokenizer = build_offline_tokenizer(tokenizer_corpus(None))
    offline_gpt2(tokenizer, seed=3).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    settings = TrainSettings(model_source="local", local_dir=str(tmp_path))
    model, loaded_tokenizer, name, warning = load_model_and_tokenizer(settings, torch.float16, [])
    assert warning is None and name == str(tmp_path)
    assert next(model.parameters()).dtype == torch.float16
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab() and loaded_tokenizer.pad_token is not None


def test_hub_model_without_network_says_so(monkeypatch):
    def not_cached(*args, **kwargs):
        raise OSError("not in the cache")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", not_cached)
    assert hub_reachable() is False
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        load_pretrained("gpt2", torch.float32)


def test_sampler_degrades_to_psutil_without_nvml():
    with device_sampler(torch.device("cpu"), interval_s=0.05) as sampler:
        wait_until(lambda: len(sampler.frame()) >= 4)  # how long a few samples take depends on the load
    frame = sampler.frame()
    assert sampler.source.startswith("psutil") and len(frame) >= 4
    assert frame["t"].is_monotonic_increasing and (frame["memory_used_gb"] > 0).all()


def test_gpu_lock_is_process_wide_and_a_second_viewer_waits():
    assert process_gpu_lock() is process_gpu_lock()
    waited, order = threading.Event(), []
    release = threading.Event()

    def first():
        with gpu_turn():
            order.append("first")
            release.wait(60)  # set by the second viewer's on_wait; the cap only ends a broken test

    thread = threading.Thread(target=first)
    thread.start()
    while not order:
        time.sleep(0.01)

    def on_wait():
        waited.set()
        release.set()

    with gpu_turn(on_wait=on_wait):
        order.append("second")
    thread.join()
    assert waited.is_set() and order == ["first", "second"]


def test_import_runs_only_the_light_setup():
    code = (
        "import torch, llm_finetuning_dashboard as m; "
        "assert not torch.cuda.is_initialized(); assert m.SMOKE is False; print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_training_waits_while_the_benchmark_app_holds_the_gpu_with_both_apps_default_lock_paths(tmp_path):
    """Both apps take one machine-wide file lock: a benchmark in the other app makes training wait.

    Each app uses its *default* path (no path passed, no GPU_NOTEBOOKS_LOCK_PATH), so the test fails when
    the two defaults drift apart. It runs in a child whose TMPDIR is private: the real lock stays untouched.
    """
    code = textwrap.dedent(
        """
        import threading, time
        from gpu_notebooks.gpu import lock as rapids
        import llm_finetuning_dashboard as llm
        held, release, waited, order = threading.Event(), threading.Event(), threading.Event(), []
        def benchmark():
            with rapids.gpu_turn():
                held.set()
                release.wait(60)
                order.append("benchmark done")
        t = threading.Thread(target=benchmark)
        t.start()
        held.wait(60)
        def train():
            with llm.gpu_turn(on_wait=waited.set):
                order.append("training step")
        u = threading.Thread(target=train)
        u.start()
        print("waited" if waited.wait(60) and not order else "did-not-wait")
        release.set()
        t.join(60)
        u.join(60)
        print(",".join(order).replace(" ", "-"))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "GPU_NOTEBOOKS_LOCK_PATH"}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.split() == ["waited", "benchmark-done,training-step"], (
        proc.stdout + proc.stderr[-3000:]
    )
    assert (
        tmp_path / "gpu-learning-notebooks.lock"
    ).exists()  # the shared default name, in the private TMPDIR


def test_out_of_memory_in_the_end_of_epoch_evaluation_becomes_a_clear_stop(monkeypatch):
    run, _ = tiny_run(epochs=1)

    monkeypatch.setattr(training, "evaluate_loss", out_of_memory)
    with pytest.raises(TrainingStopped) as stopped:
        list(train_steps(run))
    assert "while evaluating after epoch 1" in stopped.value.reason and stopped.value.step == 10


def test_an_interrupted_training_cell_releases_the_run():
    """The ■ button in marimo edit (or a closing session) interrupts step 5; the run's memory must go back."""
    run, _ = tiny_run(epochs=1)
    steps = train_steps(run)
    held = []

    def interrupted_step():
        activations = torch.ones(1000)  # stands for the step's tensors, held by its frame
        held.append(weakref.ref(activations))
        raise KeyboardInterrupt

    release, alive_at_release = run.release, []

    def watched_release():
        gc.collect()
        alive_at_release.append(held[0]() is not None)
        return release()

    run.release = watched_release
    with pytest.raises(KeyboardInterrupt):
        with release_on_interrupt(run):
            next(steps)
            interrupted_step()
    assert run.model is None and run.optimizer is None and run.train_loader is None
    # the traceback's frames were cleared *before* the release, so what they held could go back with it
    assert alive_at_release == [False]


def test_exact_match_is_shown_with_one_standard_error(trained):
    assert standard_error(0.5, 40) == pytest.approx(0.0791, abs=1e-4)  # √(0.25 / 40)
    assert standard_error(0.0, 40) == 0.0 and standard_error(1.0, 12) == 0.0
    assert standard_error(0.2, 100) == pytest.approx(0.04)
    assert pd.isna(standard_error(0.5, 0))
    _, _, before, after, scored = trained
    assert after["eval_items"] == before["eval_items"] == len(scored) == 40
    html = metric_card("exact match", 0.25, 0.5, "{:.0%}", "increase", n=after["eval_items"]).text
    assert "50% ± 8%" in html and "25% ± 7%" in html and "n = 40" in html
    assert "±" not in metric_card("eval loss", 2.0, 1.0, "{:.3f}", "decrease").text


def test_memory_card_shows_the_peak_inside_steps_not_a_read_between_them():
    history = pd.DataFrame({"memory_mib": [100.0, 120.0], "peak_mib": [300.0, 350.0]})
    samples = pd.DataFrame({"memory_used_gb": [2.1]})
    html = memory_card(history, samples).text
    assert "350 MiB" in html and "120 MiB" not in html and "max_memory_allocated" in html
    cpu = memory_card(pd.DataFrame({"memory_mib": [0.0], "peak_mib": [0.0]}), samples).text
    assert "RSS" in cpu
