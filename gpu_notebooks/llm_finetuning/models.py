"""The models: tiny offline GPT-2 and Llama built from a config, their tokenizer, and hub loading."""

from __future__ import annotations

import contextlib
import json
import types
from pathlib import Path

import pandas as pd
import torch
from tokenizers import Tokenizer, decoders, models as tokenizer_models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from gpu_notebooks.llm_finetuning.tasks import EOS_TOKEN, builtin_examples, format_prompt

TINY_MODEL_NAME = "tiny-offline-gpt2"
TINY_LLAMA_NAME = "tiny-offline-llama"
# The architectures the app trains (config.model_type): GPT-2 and the Llama family (Llama, Qwen2, Mistral
# share q/k/v/o_proj attention and a gate/up/down SwiGLU MLP).
LLAMA_FAMILY = ("llama", "qwen2", "mistral")
# LoRA targets are chosen by role; each architecture names its layers for the role differently.
TARGET_NAMES = {
    "gpt2": {
        "attn.c_attn": ("attn.c_attn",),
        "attn.c_proj": ("attn.c_proj",),
        "mlp.c_fc": ("mlp.c_fc",),
        "mlp.c_proj": ("mlp.c_proj",),
    },
    "llama": {
        "attn.c_attn": ("q_proj", "k_proj", "v_proj"),
        "attn.c_proj": ("o_proj",),
        "mlp.c_fc": ("gate_proj", "up_proj"),
        "mlp.c_proj": ("down_proj",),
    },
}
TINY_INIT_RANGE = 0.1
GPT2_FAMILY = {  # published architectures, so plans need no download
    "gpt2": {"n_layer": 12, "n_head": 12, "n_embd": 768},
    "distilgpt2": {"n_layer": 6, "n_head": 12, "n_embd": 768},
    "gpt2-medium": {"n_layer": 24, "n_head": 16, "n_embd": 1024},
}


def build_offline_tokenizer(texts, vocab_size=1024):
    """Byte-level BPE trained in memory on `texts` (no download); like GPT-2, eos doubles as pad."""
    bpe = Tokenizer(tokenizer_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_input_names=["input_ids", "attention_mask"],
    )


def tokenizer_corpus(frame):
    """Texts the offline tokenizer learns its merges from: the built-in set plus the chosen data."""
    builtin = builtin_examples()
    rows = pd.concat([builtin, frame]) if frame is not None else builtin
    return [format_prompt(p) + r for p, r in zip(rows["prompt"], rows["response"], strict=True)]


def tiny_gpt2_config(vocab_size, initializer_range=TINY_INIT_RANGE):
    """The tiny offline GPT-2: 4 layers, 128 wide.

    Its init is wider than GPT-2's 0.02: the tied, frozen token embeddings are also the output head, and
    with 0.02 at width 128 no hidden state can push a logit far from the rest, so no adapter could make
    the model confident.
    """
    return GPT2Config(
        n_layer=4,
        n_head=4,
        n_embd=128,
        n_positions=512,
        vocab_size=vocab_size,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


def random_model(model_class, tokenizer, config, seed=0):
    """`model_class(config)` randomly initialised from `seed`, its vocabulary and special ids fitted to `tokenizer`."""
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    return model_class(config)


def offline_gpt2(tokenizer, config=None, seed=0):
    """A randomly initialised GPT2LMHeadModel (tiny by default) whose special ids match `tokenizer`."""
    return random_model(GPT2LMHeadModel, tokenizer, config or tiny_gpt2_config(len(tokenizer)), seed)


def tiny_llama_config(vocab_size, initializer_range=TINY_INIT_RANGE):
    """The tiny offline Llama: 4 layers, 128 wide, 4 query heads sharing 2 KV heads (GQA), RoPE, SwiGLU,
    tied embeddings: the Llama family's architecture at a size a CPU trains in seconds."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=10_000.0,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


def offline_llama(tokenizer, config=None, seed=0):
    """A randomly initialised LlamaForCausalLM (tiny by default) whose special ids match `tokenizer`."""
    return random_model(LlamaForCausalLM, tokenizer, config or tiny_llama_config(len(tokenizer)), seed)


def architecture(model_or_config):
    """'gpt2' or 'llama' (the Llama family) for a model or config; None for anything else."""
    config = getattr(model_or_config, "config", model_or_config)
    kind = getattr(config, "model_type", "")
    return "gpt2" if kind == "gpt2" else "llama" if kind in LLAMA_FAMILY else None


def architecture_targets(model, roles):
    """The module-name suffixes of `model`'s own layers for the chosen LoRA roles (GPT-2's names as keys)."""
    names = TARGET_NAMES.get(architecture(model))
    if names is None:
        return tuple(roles)  # unknown architecture: the names as given (inject_lora says if none match)
    return tuple(dict.fromkeys(n for role in roles for n in names.get(role, (role,))))


def planned_config(settings, tokenizer_vocab=None):
    """The GPT-2 or Llama-family config a run will use, known without downloading weights (None if unknown).

    Hub models count only when their config is already in the local cache (no network is asked).
    """
    if settings.model_source in GPT2_FAMILY:
        return GPT2Config(**GPT2_FAMILY[settings.model_source])
    if settings.model_source == "tiny":
        return tiny_gpt2_config(tokenizer_vocab or 1024)
    if settings.model_source == "tiny-llama":
        return tiny_llama_config(tokenizer_vocab or 1024)
    source = settings.local_dir if settings.model_source == "local" else settings.model_source
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        return None
    return config if architecture(config) is not None else None


def model_shape(config):
    """Layers, width, key/value width, MLP width and vocabulary of a GPT-2 or Llama-family config."""
    d, heads = config.hidden_size, config.num_attention_heads
    if architecture(config) == "gpt2":
        kv, mlp = d, getattr(config, "n_inner", None) or 4 * d
    else:
        head_dim = getattr(config, "head_dim", None) or d // heads
        kv, mlp = config.num_key_value_heads * head_dim, config.intermediate_size
    return {
        "architecture": architecture(config),
        "n_layer": config.num_hidden_layers,
        "d_model": d,
        "kv_width": kv,
        "mlp_width": mlp,
        "vocab": config.vocab_size,
    }


def planned_architecture(settings):
    """'gpt2' or 'llama' for the model a run will load, known before loading it (None if unknown)."""
    source = settings.model_source
    if source in GPT2_FAMILY or source == "tiny":
        return "gpt2"
    if source == "tiny-llama" or source.split("/")[0] in ("HuggingFaceTB", "Qwen", "meta-llama"):
        return "llama"
    config = Path(settings.local_dir).expanduser() / "config.json" if source == "local" else None
    if config is not None and config.is_file():
        with contextlib.suppress(OSError, ValueError):
            return architecture(types.SimpleNamespace(**json.loads(config.read_text())))
    return None
