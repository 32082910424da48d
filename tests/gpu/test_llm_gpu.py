"""The LLM dashboard on a CUDA GPU (skipped without one): FP16 + GradScaler at GPT-2 124M size, memory release."""

import types

import pandas as pd
import pytest
import torch
from transformers import GPT2Config

from gpu_notebooks.gpu.gpm import GpmSampler
from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.llm_finetuning.adapter import (
    merge_check,
    peft_reload_check,
    save_adapter,
    save_base_recipe,
)
from gpu_notebooks.llm_finetuning.cards import peft_tolerance
from gpu_notebooks.llm_finetuning.estimates import run_model_facts, training_memory
from gpu_notebooks.llm_finetuning.evaluation import evaluate_run
from gpu_notebooks.llm_finetuning.explain.inference import inference_cost_text
from gpu_notebooks.llm_finetuning.explain.memory import utilization_probe_text
from gpu_notebooks.llm_finetuning.inference import GenerationRequest, try_adapter
from gpu_notebooks.llm_finetuning.inference_cost import cost_table
from gpu_notebooks.llm_finetuning.lora import inject_lora, lora_layers
from gpu_notebooks.llm_finetuning.models import (
    build_offline_tokenizer,
    offline_gpt2,
    offline_llama,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import bf16_native, choose_precision, resolve_precision, set_seed
from gpu_notebooks.llm_finetuning.probe import run_utilization_probe
from gpu_notebooks.llm_finetuning.settings import TrainSettings, with_model_defaults
from gpu_notebooks.llm_finetuning.steps import (
    evaluate_step,
    inject_step,
    load_step,
    prepare_step,
    save_step,
    train_step_body,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.telemetry import device_sampler, nvml_device_index
from gpu_notebooks.llm_finetuning.tokens import token_statistics
from gpu_notebooks.llm_finetuning.training import (
    FineTuneRun,
    TrainingStopped,
    device_memory,
    evaluate_loss,
    fast_train_step,
    prepare_training,
    train_steps,
)
from gpu_notebooks.llm_finetuning.warmup import warm_up_kernels
from gpu_notebooks.registry import process_registry
from tests.gpu.conftest import needs_cuda

pytestmark = [pytest.mark.gpu, needs_cuda]


def gpt2_124m_run(precision="fp16", batch_size=16, max_length=128, epochs=2, speed="auto", no_dropout=False):
    """Steps 1-4 of the app at GPT2Config() size with random weights and the offline tokenizer."""
    device = torch.device("cuda", torch.cuda.current_device())
    settings = TrainSettings(
        precision=precision,
        batch_size=batch_size,
        max_length=max_length,
        epochs=epochs,
        speed=speed,
        **({"dropout": 0.0} if no_dropout else {}),
    )
    set_seed(settings.seed)
    plan = resolve_precision(precision, "cuda", bf16_native(torch.device("cuda")))
    data = builtin_examples()
    tokenizer = build_offline_tokenizer(tokenizer_corpus(data))
    baseline = device_memory(device)["allocated"]  # before the model exists, as the app measures it
    model = offline_gpt2(tokenizer, GPT2Config(), seed=settings.seed).to(
        device=device, dtype=plan.param_dtype
    )
    run = FineTuneRun(
        settings=with_model_defaults(settings, "gpt2-124M-random"),
        device=device,
        plan=plan,
        model=model,
        tokenizer=tokenizer,
        model_name="gpt2-124M-random",
        memory_baseline=baseline,
    )
    del model
    if no_dropout:  # attention kernels draw dropout differently: without it plain and fast are comparable
        for module in run.model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    inject_lora(run.model, settings.target_modules, settings.rank, settings.alpha, settings.dropout)
    prepare_training(run, data[data["split"] == "train"], data[data["split"] == "eval"])
    return run, data


def test_fp16_gradscaler_trains_gpt2_124m_without_nan():
    run, data = gpt2_124m_run(epochs=3)
    assert run.plan.use_grad_scaler and run.scaler.is_enabled()
    for _, layer in lora_layers(run.model):
        assert layer.base_layer.weight.dtype == torch.float16 and layer.base_layer.weight.is_cuda
        assert layer.lora_A.weight.dtype == torch.float32
    before = evaluate_loss(run)["eval_loss"]
    with device_sampler(run.device) as sampler:
        records = list(train_steps(run))
    steps = [r for r in records if r["kind"] == "train"]
    assert len(steps) == run.total_steps == 30
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    # An early overflow while GradScaler finds its scale is normal (that step is skipped, not NaN).
    assert sum(r["skipped"] for r in steps) < len(steps) // 2
    after = evaluate_loss(run)["eval_loss"]
    assert after < before - 0.5, (before, after)
    assert steps[-1]["loss_scale"] > 1 and steps[-1]["memory_mib"] > 200
    samples = sampler.frame()
    assert sampler.source == "NVML" and len(samples) >= 5 and samples["memory_used_gb"].max() > 0
    run.release()


def test_step_7_releases_gpu_memory(tmp_path):
    torch.cuda.synchronize()
    run, data = gpt2_124m_run(epochs=1)
    baseline = run.memory_baseline
    eval_frame = data[data["split"] == "eval"]
    evaluate_run(run, eval_frame, max_new_tokens=8)
    list(train_steps(run))
    evaluate_run(run, eval_frame, max_new_tokens=8)
    assert merge_check(run, eval_frame["prompt"].head(8).tolist()) < peft_tolerance(run.plan)
    save_adapter(run.model, tmp_path, run.settings, run.model_name)
    diff = peft_reload_check(run, tmp_path, eval_frame["prompt"].head(8).tolist())
    assert diff < peft_tolerance(run.plan), diff
    held = device_memory(run.device)["allocated"]
    report = run.release()
    assert held - baseline > 200 * 2**20  # the model really was on the GPU
    # Everything the run held comes back; a few MiB may stay with cuBLAS's per-handle workspaces.
    assert report["allocated_after"] <= baseline + 64 * 2**20, report
    assert report["allocated_after"] - baseline < 0.1 * (held - baseline)
    assert report["reserved_after"] < report["reserved_before"]


def test_out_of_memory_is_caught_and_memory_freed():
    run, _ = gpt2_124m_run(batch_size=32, max_length=512, epochs=1)
    long_text = " ".join(builtin_examples()["prompt"]) * 3
    for example in run.train_loader.dataset:
        ids = run.tokenizer(long_text, add_special_tokens=False)["input_ids"][:512]
        example["input_ids"], example["labels"] = ids, ids
    held = device_memory(run.device)["allocated"]
    total = torch.cuda.get_device_properties(run.device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (held + 600 * 2**20) / total), run.device)
    try:
        with pytest.raises(TrainingStopped) as stopped:
            list(train_steps(run))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, run.device)
    assert "out of memory" in stopped.value.reason and "smaller batch size" in stopped.value.advice
    assert device_memory(run.device)["allocated"] <= held + 50 * 2**20
    run.release()


@pytest.mark.skipif(
    torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False),
    reason="no native BF16 on this GPU",
)
def test_bf16_runs_without_a_scaler():
    run, _ = gpt2_124m_run(precision="bf16", epochs=1)
    assert not run.plan.use_grad_scaler and run.plan.autocast_dtype == torch.bfloat16
    # the fast path keeps a scale-1 scaler only as its inf/NaN guard
    assert run.scaler.get_scale() == 1.0
    steps = [r for r in train_steps(run) if r["kind"] == "train"]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    run.release()


def train_records(run, limit=None):
    steps = []
    for record in train_steps(run):
        if record["kind"] == "train":
            steps.append(record)
            if limit and len(steps) == limit:
                break
    return steps


def test_fast_path_never_waits_for_the_gpu_inside_a_step():
    run, _ = gpt2_124m_run(speed="fast", epochs=1)
    assert run.speed.deferred and run.speed.fused_optimizer
    params = [p for p in run.model.parameters() if p.requires_grad]
    batches = list(run.train_loader)
    fast_train_step(run, batches[0], params, 1.0)  # first step: cuBLAS/cuDNN set-up may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any implicit device→host wait raises
    try:
        stats = [fast_train_step(run, batch, params, 1.0) for batch in batches[1:6]]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    values = torch.stack(stats).tolist()
    assert all(torch.isfinite(torch.tensor(row[0])) for row in values)
    run.release()


@pytest.mark.parametrize("speed", ["fast", "compile"])
def test_fast_paths_match_the_plain_loss_curve_in_fp16(speed):
    """Same seed, same data, dropout off: the levers must not change the numbers beyond FP16 rounding."""
    curves = {}
    for name in ("plain", speed):
        run, _ = gpt2_124m_run(speed=name, epochs=1, no_dropout=True)
        curves[name] = train_records(run, limit=8)
        assert run.speed.compile == (name == "compile")
        run.release()
    for a, b in zip(curves["plain"], curves[speed], strict=True):
        assert b["skipped"] == a["skipped"]
        assert b["loss"] == pytest.approx(a["loss"], rel=5e-3), (a["step"], a["loss"], b["loss"])
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-5)


def test_start_up_warm_up_on_the_gpu_gives_its_memory_back_and_leaves_the_random_state():
    """The first warm-up may leave the libraries' one-off workspaces (cuBLAS keeps one per handle and stream,
    through torch's allocator); a second one must give back everything it takes."""
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated(device)
    torch.manual_seed(7)
    expected = (torch.rand(3), torch.rand(3, device=device))
    torch.manual_seed(7)
    first = warm_up_kernels(device)
    got = (torch.rand(3), torch.rand(3, device=device))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    torch.cuda.synchronize()
    after_first = torch.cuda.memory_allocated(device)
    second = warm_up_kernels(device)
    torch.cuda.synchronize()
    after_second = torch.cuda.memory_allocated(device)
    print(
        f"warm-up on {torch.cuda.get_device_name(device)}: {first:.2f} s, then {second:.2f} s; allocated "
        f"{start / 2**20:.1f} → {after_first / 2**20:.1f} → {after_second / 2**20:.1f} MiB"
    )
    assert after_second - after_first < 2**20
    assert after_first - start < 128 * 2**20  # 65 MiB on an H100 (2026-11-26): cuBLAS/cuBLASLt workspaces


def gpt2_124m_loader(settings, dtype, corpus):
    """Step 2's loader for the device tests: GPT-2 124M's shape, random weights, the offline tokenizer."""
    tokenizer = build_offline_tokenizer(corpus)
    return (
        offline_gpt2(tokenizer, GPT2Config(), seed=settings.seed).to(dtype),
        tokenizer,
        "gpt2-124M-random",
        None,
    )


@pytest.mark.parametrize("speed", ["fast", "compile"])
def test_the_step_helpers_hold_one_lease_and_give_back_memory_without_resetting_dynamo(
    speed, tmp_path, monkeypatch
):
    """Steps 2-7 as the cells call them: the lease is held throughout, the peak is this run's, and releasing a
    compiled run frees its memory without torch._dynamo.reset() (which would clear every viewer's caches)."""

    def no_global_reset():
        raise AssertionError("torch._dynamo.reset() must not run on release")

    monkeypatch.setattr(torch._dynamo, "reset", no_global_reset)
    device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.synchronize()
    data = builtin_examples()
    eval_frame = data[data["split"] == "eval"]
    settings = TrainSettings(epochs=1, speed=speed)
    plan = resolve_precision("fp16", "cuda", bf16_native(device))
    run, facts = load_step(settings, data, device, plan, loader=gpt2_124m_loader)
    assert run.lease.held and not facts["out_of_memory"]
    baseline = run.memory_baseline
    assert inject_step(run)[1] is None and prepare_step(run, data)[1] is None
    assert run.speed.compile == (speed == "compile")
    trained = train_step_body(run, eval_frame, 8)
    assert trained["stop_reason"] is None and run.lease.held
    evaluate_step(run, eval_frame, 8)
    held = device_memory(device)["allocated"]
    saved = save_step(run, tmp_path / "adapter", eval_frame["prompt"].head(8).tolist())
    assert saved["failure"] is None and not run.lease.held
    assert saved["peft_max_diff"] < peft_tolerance(plan)
    assert saved["peak_memory"] >= held - baseline  # the peak is read under the lease, reset in step 2
    report = saved["release_report"]
    print(
        f"{speed}: allocated baseline {baseline / 2**20:.0f} MiB, held {held / 2**20:.0f}, after release "
        f"{report['allocated_after'] / 2**20:.0f}, peak {saved['peak_memory'] / 2**20:.0f} MiB"
    )
    assert report["allocated_after"] <= baseline + 64 * 2**20, report


def test_bf16_is_chosen_by_compute_capability_on_this_card():
    device = torch.device("cuda", torch.cuda.current_device())
    major, minor = torch.cuda.get_device_capability(device)
    assert bf16_native(device) == ((major, minor) >= (8, 0))


def test_gpm_telemetry_on_this_card_reads_or_says_why_and_training_reports_mfu_and_energy(tmp_path):
    """On Hopper and newer the GPM sampler reads SM/Tensor/DRAM while training; elsewhere it says why."""
    device = torch.device("cuda", torch.cuda.current_device())
    data = builtin_examples()
    eval_frame = data[data["split"] == "eval"]
    plan = resolve_precision("fp16", "cuda", bf16_native(device))
    run, _ = load_step(TrainSettings(epochs=2), data, device, plan, loader=gpt2_124m_loader)
    inject_step(run)
    prepare_step(run, data)
    result = train_step_body(run, eval_frame, 8)
    gpm = result["gpm"]
    name = torch.cuda.get_device_name(device)
    print(f"{name}: GPM available={gpm.available} ({gpm.unavailable_reason}), {len(gpm.samples)} windows,")
    print(f"  means {gpm.means() if gpm.available else {}}, energy {result['energy_j']} J")
    if torch.cuda.get_device_capability(device) >= (9, 0):
        assert gpm.available, gpm.unavailable_reason
        assert len(gpm.samples) >= 5 * result["train_seconds"] * 0.5  # >= 5 Hz, with slack for start-up
        assert gpm.means()["sm_active_pct"] > 0
    else:
        assert not gpm.available and gpm.unavailable_reason
    assert result["flops_per_token"] > 4 * 85e6  # GPT-2 124M: 4N alone is ~494M
    if result["peak_flops"] is not None:
        steps = result["train_records"]
        achieved = steps[-1]["mfu"]
        assert achieved is not None and 0 < achieved < 1, achieved
    save_step(run, tmp_path / "adapter", eval_frame["prompt"].head(4).tolist())


def smollm2_shape_loader(settings, dtype, corpus):
    """Step 2's loader for the Llama device tests: SmolLM2-135M's shape, random weights, the offline tokenizer."""
    from transformers import LlamaConfig

    tokenizer = build_offline_tokenizer(corpus)
    config = LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49_152,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    model = offline_llama(tokenizer, config, seed=settings.seed).to(dtype)
    return model, tokenizer, "smollm2-135M-shape-random", None


def llama_run(speed, precision="auto"):
    device = torch.device("cuda", torch.cuda.current_device())
    data = builtin_examples()
    settings = TrainSettings(
        model_source="tiny-llama", precision=precision, epochs=1, speed=speed, dropout=0.0
    )
    chosen, _ = choose_precision(settings, device)
    plan = resolve_precision(chosen, "cuda", bf16_native(device))
    run, _ = load_step(settings, data, device, plan, loader=smollm2_shape_loader)
    assert inject_step(run)[1] is None and prepare_step(run, data)[1] is None
    return run, data


@pytest.mark.parametrize("fast", ["fast", "compile"])
def test_the_llama_fast_path_matches_the_plain_loss_and_gives_its_memory_back(tmp_path, fast):
    """SmolLM2-135M's shape on the device: BF16 where native, fast (and compiled) vs plain losses, PEFT
    reload, release. The Llama blocks now run through CausalLMBody without a mask, compiled or not."""
    curves = {}
    for speed in ("plain", fast):
        run, data = llama_run(speed)
        assert run.speed.compile == (speed == "compile")
        assert run.speed.causal_only == (speed != "plain")
        baseline = run.memory_baseline
        assert run.settings.target_modules == (
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        )
        curves[speed] = train_records(run, limit=8)
        eval_frame = data[data["split"] == "eval"]
        saved = save_step(run, tmp_path / speed, eval_frame["prompt"].head(4).tolist())
        print(
            f"llama {speed} ({run.plan.name}): peak {saved['peak_memory'] / 2**20:.0f} MiB, PEFT Δ {saved['peft_max_diff']:.2e}"
        )
        assert saved["failure"] is None and saved["peft_max_diff"] < peft_tolerance(run.plan)
        assert saved["release_report"]["allocated_after"] <= baseline + 64 * 2**20
    for a, b in zip(curves["plain"], curves[fast], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2), (a["step"], a["loss"], b["loss"])


def test_the_llama_fast_step_does_not_wait_for_the_gpu():
    """Expected to show where transformers' mask building syncs, if it does (the Llama path keeps the mask)."""
    run, _ = llama_run("fast")
    params = [p for p in run.model.parameters() if p.requires_grad]
    batches = list(run.train_loader)
    fast_train_step(run, batches[0], params, 1.0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = [fast_train_step(run, batch, params, 1.0) for batch in batches[1:4]]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(s[0]) for s in stats)
    run.release()


@pytest.mark.parametrize("speed", ["plain", "fast"])
def test_the_memory_estimate_lands_near_the_measured_peak_at_32_x_512(speed):
    """The memory panel's estimate (from the config) against torch's measured peak, one epoch at 32 × 512."""
    run, _ = gpt2_124m_run(speed=speed, epochs=1, batch_size=32, max_length=512)
    stats = token_statistics(run.train_loader)
    torch.cuda.reset_peak_memory_stats()
    train_records(run)
    added = torch.cuda.max_memory_allocated() - run.memory_baseline
    parts = training_memory(
        run_model_facts(run),
        run.plan,
        run.speed,
        stats["max_batch_tokens"],
        stats["max_batch_loss_tokens"],
    )
    estimate = sum(parts.values())
    print(f"{speed}: estimated {estimate / 2**20:,.0f} MiB, measured {added / 2**20:,.0f} MiB, {parts}")
    assert 0.5 < estimate / added < 2.0
    run.release()


def test_the_compiled_llama_step_does_not_wait_for_the_gpu_once_compiled():
    """After the compiling steps, a compiled Llama step (CUDA graphs) queues without a device→host wait."""
    run, _ = llama_run("compile")
    params = [p for p in run.model.parameters() if p.requires_grad]
    batches = list(run.train_loader)
    for batch in batches[:3]:  # compiles (and records the CUDA graphs) for the shapes met first
        fast_train_step(run, batch, params, 1.0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = [fast_train_step(run, batch, params, 1.0) for batch in batches[:3]]  # the same shapes
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(torch.isfinite(s[0]) for s in stats)
    baseline = run.memory_baseline
    report = run.release()
    assert report["allocated_after"] <= baseline + 64 * 2**20


def test_the_utilization_probe_separates_launch_compute_and_memory_bound_work():
    """Issue 14's three workloads on this card: classic utilization beside GPM (where the card has GPM)."""
    device = torch.device("cuda", torch.cuda.current_device())
    before = torch.cuda.memory_allocated(device)
    with gpu_turn(wait=False) as held:
        assert held
        rows = run_utilization_probe(device, seconds=1.5)
    print(pd.DataFrame(rows).round(1).to_string())
    tiny, matmul, copy = rows
    assert all(row["classic_util_pct"] is not None for row in rows)  # NVML answers on a CUDA machine
    gpm = GpmSampler([nvml_device_index(device)])
    if gpm.available:
        assert tiny["sm_active_pct"] < 20 < matmul["sm_active_pct"]
        assert matmul["tensor_active_pct"] > 50 > copy["tensor_active_pct"]
        assert copy["dram_bw_pct"] > 50 > tiny["dram_bw_pct"]
        print(utilization_probe_text(rows))
    else:
        assert all(row["sm_active_pct"] is None for row in rows), gpm.unavailable_reason
    assert torch.cuda.memory_allocated(device) <= before + 2**20  # the probe's buffers are gone


def test_try_it_on_cuda_streams_both_models_and_decodes_below_the_bandwidth_bound(tmp_path, monkeypatch):
    """Issue 25 on the device: GPT-2 124M's shape (random weights, FP16, from a local folder as a hub model would
    load) with a LoRA adapter PEFT loads from disk: both models stream, decode tokens/s unmerged and merged never
    pass the bound it reports (bytes per token ÷ datasheet bandwidth), and the click gives its memory back."""
    device = torch.device("cuda", torch.cuda.current_device())
    tokenizer = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    base_dir, folder = tmp_path / "gpt2-124m-random", tmp_path / "adapter"
    model = offline_gpt2(tokenizer, GPT2Config(), seed=0).to(torch.float16)
    model.save_pretrained(base_dir)  # a local model folder: AutoModelForCausalLM reads it back offline
    tokenizer.save_pretrained(base_dir)
    settings = TrainSettings(model_source="local", local_dir=str(base_dir), rank=16, alpha=32, dropout=0.0)
    inject_lora(model, settings.target_modules, settings.rank, settings.alpha)
    generator = torch.Generator().manual_seed(1)
    for _, layer in lora_layers(
        model
    ):  # B ≠ 0, as after training: the fine-tuned model differs from the base
        layer.lora_B.weight.data = torch.randn(layer.lora_B.weight.shape, generator=generator) * 0.05
    save_adapter(model, folder, settings, str(base_dir))
    plan = resolve_precision("fp16", "cuda", bf16_native(device))
    save_base_recipe(types.SimpleNamespace(model_name=str(base_dir), settings=settings, plan=plan), folder)
    del model
    monkeypatch.setitem(process_registry(), "adapter_folders", [folder])
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    drawn = []
    out = try_adapter(
        GenerationRequest("What is 12 + 5?", max_new_tokens=64), device, on_text=lambda t, r: drawn.append(r)
    )
    assert out["problem"] is None, out["problem"]
    assert set(out["texts"]) == {"base", "fine-tuned"} and "base" in drawn
    costs = out["costs"]
    print(cost_table(costs).to_string())
    print(inference_cost_text(costs))
    assert costs["device_type"] == "cuda" and costs["dtype"] == "float16"
    # 124M FP16 weights (~250 MB) cannot sit in L2: every decode step really reads them from HBM
    assert costs["merged"]["bytes"]["weights"] > 200e6
    for name in ("unmerged", "merged"):
        measured, bound = costs[name]["decode_tokens_per_s"], costs[name]["bound_tokens_per_s"]
        assert measured > 0 and costs[name]["prefill_s"] > 0
        if costs["bandwidth"] is not None:  # a card in the datasheet table (H100, H200, A100, ...)
            assert measured <= bound, (name, measured, bound)
    # The models were freed; cuBLAS/cuBLASLt keep their per-handle workspaces (65 MiB on an H100, 2026-11-26),
    # which the first matrix multiply of a process creates: this test may be that first one.
    assert out["memory"]["after"] <= before + 128 * 2**20
    assert out["memory"]["peak"] > before + 200e6  # they were on the device while generating
