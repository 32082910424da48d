"""The dashboard's LoRA against PEFT itself: same weights → same logits, and PEFT loads the saved adapter."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

from gpu_notebooks.llm_finetuning.adapter import save_adapter
from gpu_notebooks.llm_finetuning.lora import inject_lora, lora_layers
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS, TrainSettings


def small_gpt2(seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2, n_head=4, n_embd=64, n_positions=64, vocab_size=128, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config).eval()


def trained_looking_lora(targets, r=4, alpha=16, seed=3):
    """Our LoRA on a small GPT-2 with non-zero B (as after training)."""
    model = small_gpt2()
    inject_lora(model, targets, r=r, alpha=alpha)
    generator = torch.Generator().manual_seed(seed)
    for _, layer in lora_layers(model):
        layer.lora_A.weight.data = torch.randn(layer.lora_A.weight.shape, generator=generator) * 0.2
        layer.lora_B.weight.data = torch.randn(layer.lora_B.weight.shape, generator=generator) * 0.2
    return model.eval()


@pytest.fixture
def batch():
    ids = torch.randint(1, 128, (2, 9), generator=torch.Generator().manual_seed(11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("targets", [ALL_TARGETS, ("attn.c_attn",), ("attn.c_proj", "mlp.c_fc")])
def test_same_weights_give_the_same_logits_as_peft(targets, batch):
    ours = trained_looking_lora(targets)
    config = LoraConfig(
        r=4,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=list(targets),
        fan_in_fan_out=True,
        task_type="CAUSAL_LM",
    )
    theirs = get_peft_model(small_gpt2(), config).eval()
    peft_layers = {
        n.removeprefix("base_model.model."): m
        for n, m in theirs.named_modules()
        if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})
    }
    assert set(peft_layers) == {name for name, _ in lora_layers(ours)}
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            peft_layers[name].lora_A["default"].weight.copy_(layer.lora_A.weight)
            peft_layers[name].lora_B["default"].weight.copy_(layer.lora_B.weight)
            assert peft_layers[name].scaling["default"] == layer.scaling
        ours_logits, peft_logits = ours(**batch).logits, theirs(**batch).logits
    assert not torch.allclose(ours_logits, small_gpt2()(**batch).logits, atol=1e-3)
    torch.testing.assert_close(ours_logits, peft_logits, atol=1e-5, rtol=1e-5)


def test_saved_adapter_has_peft_names_shapes_and_config(tmp_path):
    model = trained_looking_lora(ALL_TARGETS)
    settings = TrainSettings(rank=4, alpha=16, dropout=0.05, target_modules=ALL_TARGETS)
    files = save_adapter(model, tmp_path, settings, "tiny-offline-gpt2")
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "CAUSAL_LM"
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 16, 0.05)
    assert config["fan_in_fan_out"] is True and config["bias"] == "none"
    assert sorted(config["target_modules"]) == sorted(ALL_TARGETS)
    assert config["base_model_name_or_path"] == "tiny-offline-gpt2"
    state = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert state["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"].shape == (4, 64)  # [r, in]
    assert state["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"].shape == (192, 4)  # [out, r]
    assert state["base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight"].shape == (4, 256)
    assert len(state) == 2 * 2 * 4 and all(t.dtype == torch.float32 for t in state.values())


def test_peft_from_pretrained_reproduces_our_outputs(tmp_path, batch):
    model = trained_looking_lora(ALL_TARGETS)
    save_adapter(model, tmp_path, TrainSettings(rank=4, alpha=16, dropout=0.0), "tiny-offline-gpt2")
    with torch.no_grad():
        ours = model(**batch).logits
        loaded = PeftModel.from_pretrained(small_gpt2(), str(tmp_path)).eval()
        theirs = loaded(**batch).logits
        merged = copy.deepcopy(loaded).merge_and_unload()(**batch).logits
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged, ours, atol=1e-4, rtol=1e-4)
