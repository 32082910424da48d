"""The learner concepts of issue 16 (memory, checkpointing/accumulation, TF32, QLoRA, roofline, score noise,
the intro's LoRA share): each text is computed from the run's config and settings, and checked here."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config

from gpu_notebooks.gpu.peaks import DENSE_PEAK_TFLOPS, memory_bandwidth
from gpu_notebooks.llm_finetuning.estimates import (
    activation_values_per_token,
    arithmetic_intensity,
    largest_matmul,
    memory_levers,
    qlora_bytes,
    training_memory,
)
from gpu_notebooks.llm_finetuning.evaluation import per_task_scores
from gpu_notebooks.llm_finetuning.explain.lora import intro_text
from gpu_notebooks.llm_finetuning.explain.memory import qlora_text, training_memory_text
from gpu_notebooks.llm_finetuning.explain.speed import roofline_text, tf32_text
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes
from gpu_notebooks.llm_finetuning.lora import inject_lora, lora_plan, parameter_counts
from gpu_notebooks.llm_finetuning.loss import CausalLMBody
from gpu_notebooks.llm_finetuning.models import (
    architecture_targets,
    build_offline_tokenizer,
    model_shape,
    offline_gpt2,
    offline_llama,
    planned_config,
    tiny_llama_config,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import resolve_precision
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS, TrainSettings
from gpu_notebooks.llm_finetuning.speed import choose_speed_plan

FP16 = resolve_precision("fp16", "cuda")
FP32_GPU = resolve_precision("fp32", "cuda")
FP32_CPU = resolve_precision("fp32", "cpu")
FAST = choose_speed_plan("fast", "cuda")
PLAIN = choose_speed_plan("plain", "cuda")


def settings(**changes):
    base = TrainSettings(model_source="gpt2", target_modules=ALL_TARGETS, rank=8, alpha=16, precision="fp16")
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def gpt2_plan():
    return lora_plan(GPT2Config(), settings())


@pytest.fixture(scope="module")
def tokenizer():
    return build_offline_tokenizer(tokenizer_corpus(None))


# --- the intro's share of parameters ---------------------------------------------------------------------------


def test_the_intro_computes_the_adapter_share_for_the_planned_model_instead_of_a_fixed_one_percent():
    root = Path(__file__).resolve().parents[1]
    source = (root / "llm_finetuning_dashboard.py").read_text()
    source += "".join(p.read_text() for p in (root / "gpu_notebooks" / "llm_finetuning").rglob("*.py"))
    assert "about 1% of the model's parameters" not in source
    small = lora_plan(GPT2Config(), settings(rank=8))
    large = lora_plan(GPT2Config(), settings(rank=64))
    assert f"**{small['trainable_pct']:.2f}%**" in intro_text(small, "gpt2")
    assert "stored in FP32" in intro_text(small, "tiny", "FP32")  # the precision the planned run stores
    assert small["trainable_pct"] == pytest.approx(
        100 * 1_179_648 / (124_439_808 + 1_179_648)
    )  # r=8, 4 targets
    assert large["trainable_pct"] > 7 * small["trainable_pct"]  # the figure follows the rank
    assert "%" not in intro_text(None, "meta-llama/Llama-3.2-1B").split("matrix,")[1].split("while")[0]


def test_the_title_names_the_model_and_precision_the_settings_will_run():
    """Issue 24, item 8: the CPU default is the tiny GPT-2 in FP32, not "GPT-2 … in FP16"."""
    small = lora_plan(GPT2Config(), settings(rank=8))
    title = {
        (source, stored): intro_text(small, source, stored).strip().splitlines()[0]
        for source, stored in [("tiny", "FP32"), ("gpt2", "FP16"), ("HuggingFaceTB/SmolLM2-135M", "BF16")]
    }
    assert title["tiny", "FP32"] == "# Fine-tune a tiny offline GPT-2 with LoRA in FP32 — seven visible steps"
    assert title["gpt2", "FP16"] == "# Fine-tune GPT-2 with LoRA in FP16 — seven visible steps"
    assert title["HuggingFaceTB/SmolLM2-135M", "BF16"].startswith(
        "# Fine-tune SmolLM2-135M with LoRA in BF16"
    )


@pytest.mark.parametrize("source", ["tiny", "tiny-llama"])
def test_the_planned_share_equals_what_step_3_counts_on_the_model_that_runs(source, tokenizer):
    chosen = settings(model_source=source)
    plan = lora_plan(planned_config(chosen, len(tokenizer)), chosen)
    model = offline_gpt2(tokenizer) if source == "tiny" else offline_llama(tokenizer)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    inject_lora(model, architecture_targets(model, ALL_TARGETS), 8, 16)
    trainable, total = parameter_counts(model)
    assert plan["architecture"] == ("gpt2" if source == "tiny" else "llama")
    assert plan["trainable_pct"] == pytest.approx(100 * trainable / total)


# --- where training memory goes ------------------------------------------------------------------------------


def test_values_kept_per_token_follow_the_architecture(gpt2_plan, tokenizer):
    assert activation_values_per_token(gpt2_plan["shape"]) == 8 * 768 + 2 * 3072
    assert activation_values_per_token(gpt2_plan["shape"], fast_gelu=False) == 8 * 768 + 5 * 3072
    llama = model_shape(tiny_llama_config(1024))
    assert (llama["kv_width"], llama["mlp_width"]) == (2 * 32, 352)  # 2 KV heads of width 128 / 4
    assert activation_values_per_token(llama) == 6 * 128 + 2 * 64 + 4 * 352


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_activation_estimate_matches_what_autograd_really_saves_on_a_cpu(arch, tokenizer):
    """Counts the bytes autograd keeps for backward (parameters excluded) during the forward of a tiny model
    with LoRA in FP32, and compares them with the estimate the memory callout shows."""
    model = offline_gpt2(tokenizer) if arch == "gpt2" else offline_llama(tokenizer)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    inject_lora(model, architecture_targets(model, ALL_TARGETS), 8, 16)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the estimate leaves dropout masks out
    if arch == "gpt2":
        for block in model.transformer.h:
            block.mlp.act = torch.nn.GELU(approximate="tanh")  # the fast path's one-kernel GELU
    model.train()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    batch, length = 4, 64
    ids = torch.randint(0, len(tokenizer), (batch, length), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        if arch == "gpt2":
            CausalLMBody(model)(ids)
        else:
            model.model(input_ids=ids)
    shape = model_shape(model.config)
    estimate = shape["n_layer"] * batch * length * activation_values_per_token(shape) * 4
    assert sum(saved.values()) == pytest.approx(estimate, rel=0.1)


def test_memory_parts_are_the_config_arithmetic(gpt2_plan):
    tokens, loss_rows = 16 * 128, 300
    plain = training_memory(gpt2_plan, FP16, PLAIN, tokens, loss_rows)
    fast = training_memory(gpt2_plan, FP16, FAST, tokens, loss_rows)
    assert plain["frozen base weights"] == 2 * 124_439_808
    lora = gpt2_plan["lora_params"]
    assert plain["LoRA weights (FP32)"] + plain["LoRA gradients (FP32)"] == 8 * lora
    assert plain["AdamW moments (FP32, two per weight)"] == 8 * lora
    assert plain["activations kept for backward"] == 12 * tokens * (8 * 768 + 5 * 3072) * 2  # gelu_new
    assert fast["activations kept for backward"] == 12 * tokens * (8 * 768 + 2 * 3072) * 2
    assert plain["logits and loss"] == tokens * 50_257 * 2 + 2 * loss_rows * 50_257 * 4
    assert fast["logits and loss"] < plain["logits and loss"]  # the chunked loss never builds all logits
    on_cpu = training_memory(gpt2_plan, FP32_CPU, FAST, tokens, loss_rows)
    assert on_cpu["frozen base weights"] == 4 * 124_439_808


def test_checkpointing_and_accumulation_trade_what_the_callout_says(gpt2_plan):
    parts = training_memory(gpt2_plan, FP16, FAST, 16 * 128, 16 * 128)
    levers = memory_levers(gpt2_plan, parts, FP16, FAST, 16 * 128, 128, 16)
    assert levers["checkpointed_activations"] < parts["activations kept for backward"] / 4
    # frozen base: forward 2N + 2LTd of a step's 4N + 4LTd + 6N_lora, so a little under one half
    n, attention = gpt2_plan["matmul_params"], 12 * 128 * 768
    expected = (2 * n + 2 * attention) / (4 * n + 4 * attention + 6 * gpt2_plan["lora_params"])
    assert levers["extra_flops_share"] == pytest.approx(expected) and 0.45 < expected < 0.5
    assert (levers["accumulation_steps"], levers["micro_batch"]) == (4, 4)
    per_batch = parts["activations kept for backward"] + parts["logits and loss"]
    assert levers["accumulated_activations"] == pytest.approx(per_batch / 4)
    assert memory_levers(gpt2_plan, parts, FP16, FAST, 16 * 128, 128, 2)["micro_batch"] == 1


def test_the_memory_text_says_what_is_estimated_and_what_was_measured(gpt2_plan):
    chosen = settings(batch_size=16, max_length=128)
    before = training_memory_text(gpt2_plan, chosen, FP16, FAST, 2048, 2048)
    total = sum(training_memory(gpt2_plan, FP16, FAST, 2048, 2048).values())
    assert "Estimates, not measurements" in before and fmt_bytes(total) in before
    assert "batch 16 × max length 128" in before and "After a run on a CUDA GPU" in before
    measured = {"device_type": "cuda", "peak": 3 * 2**30, "baseline": 2**30}
    after = training_memory_text(gpt2_plan, chosen, FP16, FAST, 1200, 200, measured=measured)
    estimate = sum(training_memory(gpt2_plan, FP16, FAST, 1200, 200).values())
    assert "**Measured** (torch `max_memory_allocated`" in after and "3.00 GiB" in after
    assert f"**{estimate / 2**31:.2f}×**" in after  # against the 2 GiB this run added
    on_cpu = training_memory_text(
        gpt2_plan,
        chosen,
        FP32_CPU,
        FAST,
        1200,
        200,
        measured={"device_type": "cpu", "peak": None, "baseline": 0},
    )
    assert "Not measured" in on_cpu and "**Measured**" not in on_cpu


# --- TF32 ------------------------------------------------------------------------------------------------------


def test_tf32_text_says_when_the_flag_applies_to_this_run():
    assert "changes nothing here" in tf32_text(FP32_CPU, "cpu")
    assert "would not change this run" in tf32_text(FP16, "cuda", (9, 0))
    assert "in FP16" in tf32_text(FP16, "cuda", (9, 0))
    assert "move its matmuls onto them" in tf32_text(FP32_GPU, "cuda", (8, 0))
    assert "changes nothing on this card" in tf32_text(FP32_GPU, "cuda", (7, 5))
    assert f'`"{torch.get_float32_matmul_precision()}"`' in tf32_text(FP16, "cuda", (9, 0))


def test_the_tf32_facts_are_the_ones_pytorch_documents():
    doc = " ".join(torch.set_float32_matmul_precision.__doc__.split())
    assert "only affects one native device type: CUDA" in doc  # the text's "CUDA only"
    assert "TensorFloat32 datatype (10 mantissa bits explicitly stored)" in doc
    assert '"highest", float32 matrix multiplications use the float32 datatype' in doc


# --- QLoRA -----------------------------------------------------------------------------------------------------


def test_qlora_bytes_put_the_linear_layers_in_nf4_with_double_quantized_constants(gpt2_plan):
    now, nf4 = qlora_bytes(gpt2_plan, 2)
    assert now == 2 * 124_439_808
    linear = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072)
    assert gpt2_plan["linear_params"] == linear
    assert nf4 == pytest.approx(linear * 4.127 / 8 + (124_439_808 - linear) * 2, rel=1e-3)
    text = qlora_text(gpt2_plan, FP16, "gpt2", 2**30)
    assert "arXiv:2305.14314" in text and fmt_bytes(nf4) in text and "does not implement it" in text
    assert f"{now / nf4:.1f}× less" in text


# --- roofline --------------------------------------------------------------------------------------------------


def test_arithmetic_intensity_and_the_largest_matmul(gpt2_plan):
    assert arithmetic_intensity(3, 3, 3, 2) == pytest.approx(1.0)  # 2·27 FLOPs / (2 bytes · 27 values)
    assert arithmetic_intensity(4096, 4096, 4096, 2) == pytest.approx(4096 / 3)
    assert largest_matmul(gpt2_plan, 2048, 2048, fused_loss=False)[0] == "LM head"
    name, m, k, n = largest_matmul(gpt2_plan, 2048, 100, fused_loss=True)  # few answer tokens
    assert name == "MLP up-projection" and (m, k, n) == (2048, 768, 3072)
    llama = {"shape": model_shape(tiny_llama_config(1024))}
    assert largest_matmul(llama, 64, 64, fused_loss=False)[0] == "LM head"  # vocabulary 1,024 > MLP 352
    assert largest_matmul(llama, 64, 4, fused_loss=True)[1:] == (64, 128, 352)


def test_roofline_places_the_run_on_known_cards_only(gpt2_plan):
    h200 = roofline_text(gpt2_plan, FP16, FAST, "cuda", "NVIDIA H200", 2048, 2048)
    assert f"**{989.4 / 4.8:,.0f} FLOPs per byte**" in h200 and "datasheet" in h200
    name, m, k, n = largest_matmul(gpt2_plan, 2048, 2048, True)
    assert f"**{arithmetic_intensity(m, k, n, 2):,.0f} FLOPs per byte**" in h200
    assert "compute-bound" in h200.split("sits")[1]
    assert "cannot place" in roofline_text(gpt2_plan, FP32_CPU, FAST, "cpu", "CPU (2 cores)", 2048, 2048)
    unknown = roofline_text(gpt2_plan, FP16, FAST, "cuda", "NVIDIA RTX 9999", 2048, 2048)
    assert "cannot place" in unknown and "not in the app's small table" in unknown
    small = roofline_text(gpt2_plan, FP16, FAST, "cuda", "NVIDIA H100 80GB HBM3", 16, 4)
    assert "memory-bound" in small.split("sits")[1]  # 16 rows: far below the H100's ridge


def test_every_card_with_a_peak_has_a_bandwidth():
    for names, _ in DENSE_PEAK_TFLOPS:
        assert memory_bandwidth(f"NVIDIA {names[0]}")[0] is not None, names
    assert memory_bandwidth("NVIDIA A100-SXM4-80GB")[0] == pytest.approx(2.039e12)
    assert memory_bandwidth("NVIDIA A100-PCIE-40GB")[0] == pytest.approx(1.555e12)


# --- exact match with ±1 s.e. everywhere --------------------------------------------------------------------


def test_per_task_scores_carry_n_and_one_standard_error():
    import pandas as pd

    before = pd.DataFrame(
        {"task": ["a"] * 4 + ["b"] * 2, "exact_match": [False] * 6, "format_match": [1.0] * 6}
    )
    after = before.assign(exact_match=[True, True, False, False, True, True])
    table = per_task_scores(before, after).set_index("task")
    assert table.loc["a", "n"] == 4 and table.loc["b", "n"] == 2
    assert table.loc["a", "± 1 s.e. after"] == round(100 * math.sqrt(0.25 / 4))
    assert table.loc["b", "± 1 s.e. after"] == 0
