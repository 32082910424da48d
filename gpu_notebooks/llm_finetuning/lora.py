"""LoRA as a module that wraps a frozen layer: inject, merge, remove, count what trains."""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from transformers import GPT2LMHeadModel, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D

from gpu_notebooks.llm_finetuning.models import architecture, architecture_targets, model_shape


class NoTargetModules(ValueError):
    """No layer of the model matches the chosen LoRA targets (step 3 says so and frees the model)."""


class LoRALayer(nn.Module):
    """y = base(x) + B(A(dropout(x))) · alpha/r around a frozen nn.Linear or GPT-2 Conv1D (chosen by type)."""

    def __init__(self, base_layer, r, alpha, dropout=0.0, generator=None):
        super().__init__()
        if isinstance(base_layer, Conv1D):
            in_features, out_features = base_layer.weight.shape  # Conv1D stores [in, out]
            self.fan_in_fan_out = True
        elif isinstance(base_layer, nn.Linear):
            out_features, in_features = base_layer.weight.shape  # nn.Linear stores [out, in]
            self.fan_in_fan_out = False
        else:
            raise TypeError(f"LoRA wraps nn.Linear or Conv1D, not {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.in_features, self.out_features = in_features, out_features
        self.lora_dropout = LoRADropout(dropout, generator) if dropout > 0 else nn.Identity()
        device = base_layer.weight.device
        # Adapters live in FP32 (the optimizer's master copy) whatever the frozen base dtype is.
        self.lora_A = nn.Linear(in_features, r, bias=False, device=device, dtype=torch.float32)
        self.lora_B = nn.Linear(r, out_features, bias=False, device=device, dtype=torch.float32)
        # The run's own generator, not torch's global one: another viewer's run cannot change this draw.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5), generator=generator)
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the wrapped model equals the base model at step 0
        self.merged = False

    def delta_weight(self):
        """B·A·scaling laid out like the base weight ([in, out] for Conv1D, [out, in] for Linear)."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    @torch.no_grad()
    def merge(self):
        """Fold the update into the base weight: one matmul per layer at inference, same outputs."""
        if not self.merged:
            weight = self.base_layer.weight
            weight.copy_((weight.float() + self.delta_weight()).to(weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """Subtract the update again so training or saving sees the separate adapter."""
        if self.merged:
            weight = self.base_layer.weight
            weight.copy_((weight.float() - self.delta_weight()).to(weight.dtype))
            self.merged = False

    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        # Under autocast the matmuls run in FP16 anyway: casting x to FP32 first would only add two copies.
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.lora_A.weight.dtype)
        update = self.lora_B(self.lora_A(self.lora_dropout(x)))
        return result + (update * self.scaling).to(result.dtype)


class LoRADropout(nn.Module):
    """Inverted dropout whose mask comes from the run's torch.Generator (None: torch's global generator).

    Inside torch.compile the global generator is used: a generator argument would break the graph at
    every layer. That generator is seeded in step 2 while the run holds the GPU lease, so no other run
    of this process draws from it meanwhile.
    """

    def __init__(self, p, generator=None):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.generator is None or torch.compiler.is_compiling():
            return F.dropout(x, self.p, training=True)
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)


def matches_target(module_name, targets):
    """PEFT's rule: a module is targeted when its name equals a target or ends with '.' + target."""
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


def inject_lora(model, target_modules, r, alpha, dropout=0.0, generator=None):
    """Freeze the model, wrap every targeted Linear/Conv1D in a LoRALayer, and describe what was wrapped.

    Raises NoTargetModules when no module matches (a model whose layers have other names).
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if matches_target(name, target_modules) and not isinstance(module, LoRALayer)
    ]
    if not targets:
        linear_names = sorted(
            {n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
        )
        raise NoTargetModules(
            f"No layer of this model matches the LoRA targets {', '.join(target_modules)} (GPT-2's layer "
            f"names). Its linear layers are called: {', '.join(linear_names[:12]) or 'none'}."
        )
    rows = []
    for name, module in targets:
        parent_name, _, child_name = name.rpartition(".")
        wrapped = LoRALayer(module, r, alpha, dropout, generator)
        setattr(model.get_submodule(parent_name), child_name, wrapped)
        rows.append(
            {
                "module": name,
                "type": "Conv1D (weight [in, out])"
                if wrapped.fan_in_fan_out
                else "Linear (weight [out, in])",
                "in": wrapped.in_features,
                "out": wrapped.out_features,
                "base params": module.weight.numel(),
                "LoRA params": r * (wrapped.in_features + wrapped.out_features),
            }
        )
    return pd.DataFrame(rows)


def lora_layers(model):
    """(name, LoRALayer) pairs in module order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoRALayer)]


def set_merged(model, merged):
    """Merge (True) or unmerge (False) every LoRA layer."""
    for _, layer in lora_layers(model):
        if merged:
            layer.merge()
        else:
            layer.unmerge()


def remove_lora(model):
    """Put each wrapped base layer back (unmerged), leaving the plain base model."""
    for name, layer in lora_layers(model):
        layer.unmerge()
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, layer.base_layer)
    return model


def parameter_counts(model):
    """(trainable, total) parameters; shared tensors such as GPT-2's tied lm_head count once."""
    parameters = list(model.parameters())  # .parameters() already skips duplicates (tied weights)
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def parameter_breakdown(model):
    """Parameters per group (embeddings, attention, MLP, norms, LoRA, head), each tensor counted once."""
    groups = {}
    for name, parameter in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            group = "LoRA adapters (trainable)"
        elif ".wte." in name or ".wpe." in name or ".embed_tokens." in name:
            group = "embeddings"
        elif ".attn." in name or ".self_attn." in name:
            group = "attention"
        elif ".mlp." in name:
            group = "MLP"
        elif ".ln_" in name or "norm." in name:
            group = "norms"
        elif name.startswith("lm_head"):
            group = "LM head (untied)"
        else:
            group = "other"
        groups[group] = groups.get(group, 0) + parameter.numel()
    frame = pd.DataFrame({"group": list(groups), "parameters": list(groups.values())})
    frame["share %"] = 100 * frame["parameters"] / frame["parameters"].sum()
    return frame


def lora_plan(config, settings):
    """Parameter and memory arithmetic for LoRA vs full fine-tuning, from a model built on the meta device."""
    gpt2 = architecture(config) == "gpt2"
    with torch.device("meta"):
        model = (GPT2LMHeadModel if gpt2 else LlamaForCausalLM)(config)
    _, base_total = parameter_counts(model)
    matmul, linear = matmul_weight_count(model)
    targets = architecture_targets(model, settings.target_modules)
    wrapped = inject_lora(model, targets, settings.rank, settings.alpha)
    lora_total = int(wrapped["LoRA params"].sum())
    weight_bytes = {"fp16": 2, "bf16": 2, "fp32": 4, "auto": 2}[settings.precision]  # auto: 16-bit on a GPU
    # Full fine-tuning with AdamW: FP32 weights + grads + two moments = 16 bytes per parameter.
    full_bytes = 16 * base_total
    lora_bytes = weight_bytes * base_total + 16 * lora_total
    example = "attn.c_attn" if gpt2 else "q_proj"  # the layer "Why LoRA works" takes as its example
    c_attn = wrapped[wrapped["module"].str.endswith(example)]
    return {
        "architecture": "gpt2" if gpt2 else "llama",
        "example_layer": example.split(".")[-1],
        "shape": model_shape(config),
        "matmul_params": matmul,
        "linear_params": linear,
        "weight_bytes": weight_bytes,
        "base_params": base_total,
        "lora_params": lora_total,
        "layers": len(wrapped),
        "trainable_pct": 100 * lora_total / (base_total + lora_total),
        "full_ft_bytes": full_bytes,
        "lora_bytes": lora_bytes,
        "c_attn_in": int(c_attn["in"].iloc[0]) if len(c_attn) else config.hidden_size,
        "c_attn_out": int(c_attn["out"].iloc[0]) if len(c_attn) else 3 * config.hidden_size,
        "n_layer": config.num_hidden_layers,  # GPT2Config maps these names to n_layer / n_embd
        "n_embd": config.hidden_size,
        "vocab_size": config.vocab_size,
    }


def matmul_weight_count(model):
    """(matmul weights, frozen linear weights) of a model: Linear/Conv1D layers, LM head included once in the
    first (a tied head is still a matmul), embeddings and the head excluded from the second."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    head = model.get_output_embeddings()
    layers = [
        layer
        for name, layer in model.named_modules()
        if isinstance(layer, (nn.Linear, Conv1D)) and not name.endswith((".lora_A", ".lora_B"))
    ]
    untied = sum(layer.weight.numel() for layer in layers if id(layer.weight) not in embedding_ids)
    tied_head = head.weight.numel() if head is not None and id(head.weight) in embedding_ids else 0
    linear = untied - (head.weight.numel() if head is not None and not tied_head else 0)
    return untied + tied_head, linear
