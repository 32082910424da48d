"""LoRA math of the LLM dashboard: zero init, Conv1D vs Linear orientation, merging, what trains, counts."""

import copy

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from gpu_notebooks.llm_finetuning.lora import (
    LoRALayer,
    NoTargetModules,
    inject_lora,
    lora_layers,
    lora_plan,
    parameter_breakdown,
    parameter_counts,
    remove_lora,
    set_merged,
)
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS, TrainSettings


def small_gpt2(seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=97, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config).eval()


def randomize_adapters(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _, layer in lora_layers(model):
        layer.lora_B.weight.data = torch.randn(layer.lora_B.weight.shape, generator=generator) * 0.1


@pytest.fixture
def tokens():
    return torch.randint(1, 97, (3, 11), generator=torch.Generator().manual_seed(5))


def test_zero_initialised_b_leaves_the_model_unchanged(tokens):
    model = small_gpt2()
    reference = model(tokens).logits
    inject_lora(model, ALL_TARGETS, r=4, alpha=8)
    assert all(torch.count_nonzero(layer.lora_B.weight) == 0 for _, layer in lora_layers(model))
    assert all(torch.count_nonzero(layer.lora_A.weight) > 0 for _, layer in lora_layers(model))
    assert torch.equal(model(tokens).logits, reference)


def test_conv1d_and_linear_give_the_same_output_for_the_same_weights():
    torch.manual_seed(0)
    conv = Conv1D(nf=6, nx=4)  # weight [in=4, out=6]
    linear = nn.Linear(4, 6)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.T)
        conv.bias.normal_()
        linear.bias.copy_(conv.bias)
    lora_conv, lora_linear = LoRALayer(conv, r=2, alpha=4), LoRALayer(linear, r=2, alpha=4)
    assert lora_conv.fan_in_fan_out and not lora_linear.fan_in_fan_out
    assert (
        (lora_conv.in_features, lora_conv.out_features)
        == (lora_linear.in_features, lora_linear.out_features)
        == (4, 6)
    )
    with torch.no_grad():
        lora_linear.lora_A.weight.copy_(lora_conv.lora_A.weight)
        lora_conv.lora_B.weight.normal_()
        lora_linear.lora_B.weight.copy_(lora_conv.lora_B.weight)
    x = torch.randn(5, 4)
    expected = (
        x @ linear.weight.T + linear.bias + 2.0 * x @ (lora_conv.lora_B.weight @ lora_conv.lora_A.weight).T
    )
    torch.testing.assert_close(lora_conv(x), expected)
    torch.testing.assert_close(lora_linear(x), expected)
    assert lora_conv.delta_weight().shape == conv.weight.shape == (4, 6)
    assert lora_linear.delta_weight().shape == linear.weight.shape == (6, 4)


def test_square_conv1d_merge_uses_the_transposed_update():
    # attn.c_proj is square: a wrong orientation would not fail on shape, only on values.
    torch.manual_seed(0)
    layer = LoRALayer(Conv1D(nf=8, nx=8), r=3, alpha=3)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(4, 8)
    unmerged = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), unmerged, atol=1e-5, rtol=1e-5)
    delta = layer.lora_B.weight @ layer.lora_A.weight
    assert not torch.allclose(delta, delta.T)


def test_wrapping_is_decided_by_type_not_by_name():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Embedding(5, 4)  # a GPT-2 name on a layer LoRA cannot wrap

    with pytest.raises(TypeError, match="Embedding"):
        inject_lora(Odd(), ["c_attn"], r=2, alpha=2)
    model = nn.Sequential(nn.Linear(4, 4))
    table = inject_lora(model, ["0"], r=2, alpha=2)
    assert table["type"].tolist() == ["Linear (weight [out, in])"]
    with pytest.raises(NoTargetModules, match="No layer of this model matches"):
        inject_lora(small_gpt2(), ["q_proj"], r=2, alpha=2)


def test_attention_and_mlp_c_proj_are_targeted_separately():
    table = inject_lora(small_gpt2(), ["attn.c_proj"], r=2, alpha=2)
    assert table["module"].tolist() == ["transformer.h.0.attn.c_proj", "transformer.h.1.attn.c_proj"]
    assert set(table["type"]) == {"Conv1D (weight [in, out])"}


def test_merge_gives_the_same_logits_and_unmerge_restores_the_weights(tokens):
    model = small_gpt2()
    original = copy.deepcopy(model.state_dict())
    inject_lora(model, ALL_TARGETS, r=4, alpha=8)
    randomize_adapters(model)
    unmerged = model(tokens).logits
    assert not torch.allclose(unmerged, small_gpt2()(tokens).logits, atol=1e-3)  # the adapter does something
    set_merged(model, True)
    torch.testing.assert_close(model(tokens).logits, unmerged, atol=1e-5, rtol=1e-5)
    set_merged(model, False)
    remove_lora(model)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, original[name], atol=1e-6, rtol=0)


def test_only_adapters_train_and_the_counts_add_up():
    model = small_gpt2()
    _, base_total = parameter_counts(model)
    table = inject_lora(model, ALL_TARGETS, r=4, alpha=8)
    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable_names and all(".lora_A." in n or ".lora_B." in n for n in trainable_names)
    trainable, total = parameter_counts(model)
    # per layer: c_attn 4*(32+96) + attn.c_proj 4*(32+32) + c_fc 4*(32+128) + mlp.c_proj 4*(128+32)
    assert trainable == int(table["LoRA params"].sum()) == 2 * (512 + 256 + 640 + 640)
    assert total == base_total + trainable
    breakdown = parameter_breakdown(model)
    assert breakdown["parameters"].sum() == total
    assert breakdown.set_index("group").loc["LoRA adapters (trainable)", "parameters"] == trainable


def test_tied_lm_head_is_counted_once():
    model = small_gpt2()
    assert model.lm_head.weight is model.transformer.wte.weight
    _, total = parameter_counts(model)
    assert total == sum(p.numel() for n, p in model.named_parameters())
    assert "LM head (untied)" not in set(parameter_breakdown(model)["group"])


def test_adapters_are_fp32_beside_a_frozen_fp16_base():
    model = small_gpt2().half()
    inject_lora(model, ALL_TARGETS, r=4, alpha=8)
    for _, layer in lora_layers(model):
        assert layer.base_layer.weight.dtype == torch.float16 and not layer.base_layer.weight.requires_grad
        assert layer.lora_A.weight.dtype == layer.lora_B.weight.dtype == torch.float32


def test_gpt2_small_plan_matches_published_size():
    plan = lora_plan(GPT2Config(), TrainSettings(rank=8, target_modules=ALL_TARGETS, precision="fp16"))
    assert plan["base_params"] == 124_439_808  # GPT-2 small, tied lm_head counted once
    assert plan["lora_params"] == 12 * 8 * ((768 + 2304) + (768 + 768) + (768 + 3072) + (3072 + 768))
    assert plan["layers"] == 48
    assert plan["full_ft_bytes"] == 16 * 124_439_808
    assert plan["lora_bytes"] == 2 * 124_439_808 + 16 * plan["lora_params"]
    assert plan["trainable_pct"] == pytest.approx(
        100 * plan["lora_params"] / (124_439_808 + plan["lora_params"])
    )
