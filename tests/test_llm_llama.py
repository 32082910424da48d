"""The Llama family on a CPU: the tiny offline Llama, LoRA targets by architecture, chat templates, precision."""

import json

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

import gpu_notebooks.llm_finetuning.precision as precision_module
from gpu_notebooks.llm_finetuning.explain.speed import why_fast_text
from gpu_notebooks.llm_finetuning.loading import ModelUnavailable, is_gated_error, load_pretrained
from gpu_notebooks.llm_finetuning.lora import NoTargetModules, inject_lora, lora_layers, lora_plan
from gpu_notebooks.llm_finetuning.loss import batch_loss, causal_lm_loss, to_device
from gpu_notebooks.llm_finetuning.models import (
    TINY_LLAMA_NAME,
    architecture,
    architecture_targets,
    build_offline_tokenizer,
    offline_gpt2,
    offline_llama,
    planned_architecture,
    planned_config,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import choose_precision, resolve_precision
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS, TrainSettings, with_model_defaults
from gpu_notebooks.llm_finetuning.steps import (
    inject_step,
    load_step,
    prepare_step,
    save_step,
    train_step_body,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples, format_prompt
from gpu_notebooks.llm_finetuning.tokens import tokenize_examples
from gpu_notebooks.llm_finetuning.training import FineTuneRun, prepare_training

CPU = torch.device("cpu")
LLAMA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def tokenizer():
    return build_offline_tokenizer(tokenizer_corpus(builtin_examples()))


def test_the_tiny_llama_has_the_familys_architecture(tokenizer):
    model = offline_llama(tokenizer)
    config = model.config
    assert architecture(model) == "llama"
    assert config.num_key_value_heads < config.num_attention_heads  # grouped-query attention
    head_dim = config.hidden_size // config.num_attention_heads
    layer = model.model.layers[0]
    assert layer.self_attn.k_proj.out_features == config.num_key_value_heads * head_dim
    assert layer.self_attn.q_proj.out_features == config.hidden_size
    assert type(layer.mlp.act_fn).__name__ == "SiLUActivation" or "silu" in config.hidden_act  # SwiGLU
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied embeddings
    assert config.eos_token_id == tokenizer.eos_token_id


def test_lora_targets_follow_the_architecture(tokenizer):
    model = offline_llama(tokenizer)
    assert architecture_targets(model, ALL_TARGETS) == LLAMA_NAMES
    assert architecture_targets(model, ("attn.c_attn",)) == ("q_proj", "k_proj", "v_proj")
    gpt2 = offline_gpt2(tokenizer)
    assert architecture_targets(gpt2, ALL_TARGETS) == ALL_TARGETS
    table = inject_lora(model, LLAMA_NAMES, r=4, alpha=8)
    assert len(table) == 7 * model.config.num_hidden_layers
    assert all(not layer.fan_in_fan_out for _, layer in lora_layers(model))  # nn.Linear: [out, in]


def test_gpt2_target_names_on_a_llama_give_a_clear_message(tokenizer):
    with pytest.raises(NoTargetModules, match="q_proj"):
        inject_lora(offline_llama(tokenizer), ALL_TARGETS, r=4, alpha=8)


def test_the_tiny_llama_trains_and_its_adapter_reloads_with_peft_to_the_same_logits(tmp_path):
    data = builtin_examples()
    settings = TrainSettings(model_source="tiny-llama", epochs=1, batch_size=32, max_length=64)
    run, _ = load_step(settings, data, CPU, resolve_precision("fp32", "cpu"))
    assert run.model_name == TINY_LLAMA_NAME
    assert inject_step(run)[1] is None and run.settings.target_modules == LLAMA_NAMES
    assert prepare_step(run, data)[1] is None
    eval_frame = data[data["split"] == "eval"]
    trained = train_step_body(run, eval_frame, 8)
    assert trained["stop_reason"] is None and trained["train_records"]
    saved = save_step(run, tmp_path / "adapter", eval_frame["prompt"].head(4).tolist())
    assert saved["failure"] is None and saved["peft_max_diff"] < 1e-3 and saved["merge_max_diff"] < 1e-3
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(LLAMA_NAMES) and config["fan_in_fan_out"] is False


def test_the_fast_loss_equals_the_plain_cross_entropy_on_the_llama(tokenizer):
    data = builtin_examples()
    model = offline_llama(tokenizer).eval()
    inject_lora(model, LLAMA_NAMES, r=4, alpha=8)
    run = FineTuneRun(
        settings=with_model_defaults(
            TrainSettings(model_source="tiny-llama", speed="fast", epochs=1), TINY_LLAMA_NAME
        ),
        device=CPU,
        plan=resolve_precision("fp32", "cpu"),
        model=model,
        tokenizer=tokenizer,
        model_name=TINY_LLAMA_NAME,
    )
    prepare_training(run, data[data["split"] == "train"], data[data["split"] == "eval"])
    # SDPA attention: the Llama blocks run through CausalLMBody with no mask, as GPT-2's do
    assert run.speed.fused_loss and run.speed.causal_only
    batch = next(iter(run.eval_loader))
    with torch.no_grad():
        plain = causal_lm_loss(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
            batch["labels"],
        )
        fast = batch_loss(run, to_device(batch, CPU, with_positions=True), eager=True)
    assert fast.item() == pytest.approx(plain.item(), rel=1e-5)


def test_a_chat_template_builds_the_prompt_and_the_loss_stays_on_the_answer(tokenizer):
    chat = build_offline_tokenizer(tokenizer_corpus(builtin_examples()))
    chat.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    prompt = format_prompt("What is 2 + 3?", chat)
    assert prompt == "<|user|>What is 2 + 3?\n<|assistant|>"
    assert format_prompt("What is 2 + 3?", tokenizer).startswith("### Instruction:")  # base model: plain
    frame = builtin_examples().head(3)
    (example, *_), dropped = tokenize_examples(frame, chat, 128)
    prompt_ids = chat(format_prompt(frame["prompt"].iloc[0], chat), add_special_tokens=False)["input_ids"]
    labels = example["labels"]
    assert dropped == 0 and all(label == -100 for label in labels[: len(prompt_ids)])
    answer = [t for t in labels if t != -100]
    assert answer[-1] == chat.eos_token_id  # generation stops at the model's end token
    assert chat.decode(answer[:-1]) == frame["response"].iloc[0]


def test_bf16_is_the_llama_default_only_where_the_gpu_has_it_natively(monkeypatch):
    cuda = torch.device("cuda", 0)
    llama, gpt2 = TrainSettings(model_source="tiny-llama", precision="auto"), TrainSettings(precision="auto")
    monkeypatch.setattr(precision_module, "bf16_native", lambda device: True)  # compute capability >= 8.0
    assert choose_precision(llama, cuda)[0] == "bf16" and choose_precision(gpt2, cuda)[0] == "fp16"
    monkeypatch.setattr(
        precision_module, "bf16_native", lambda device: False
    )  # Volta/Turing: BF16 only emulated
    precision, why = choose_precision(llama, cuda)
    assert precision == "fp16" and "emulated" in why
    assert choose_precision(llama, CPU)[0] == "fp32"
    hub = TrainSettings(model_source="HuggingFaceTB/SmolLM2-135M", precision="auto")
    assert planned_architecture(hub) == "llama"
    assert choose_precision(TrainSettings(precision="fp16", model_source="tiny-llama"), cuda)[0] == "fp16"


def test_a_model_of_another_architecture_gets_a_message_naming_what_is_supported(tmp_path, tokenizer):
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    GPTNeoXForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelUnavailable, match="gpt_neox.*GPT-2 and the Llama family"):
        load_pretrained("local", torch.float32, str(tmp_path))


def test_a_gated_model_without_a_token_is_recognised_by_the_hub_error_type():
    from huggingface_hub.errors import GatedRepoError

    gated = GatedRepoError.__new__(GatedRepoError)  # built without an HTTP response object
    Exception.__init__(gated, "401 Client Error: access to meta-llama/Llama-3.2-1B is restricted")
    try:
        try:
            raise gated
        except GatedRepoError as inner:
            raise OSError("You are trying to access a gated repo.") from inner
    except OSError as error:
        assert is_gated_error(error)
    assert not is_gated_error(OSError("disk full"))


def test_why_fast_names_gpt2_only_levers_as_such_for_a_llama_model():
    """The 'why fast' panel follows the planned architecture: no GPT-2 vocabulary or GELU claim for Llama."""

    for source, vocab in (("tiny-llama", 1000), ("gpt2", None)):
        settings = TrainSettings(model_source=source)
        why = lora_plan(planned_config(settings, vocab), settings)
        text = why_fast_text(settings, why)
        if source == "gpt2":
            assert "GPT-2's `gelu_new` is eight element-wise kernels; `GELU" in text
            assert "50,257" in text and "of the same width" in text
        else:
            assert why["architecture"] == "llama"
            assert "nothing for this model: it is GPT-2's lever" in text and "SiLU" in text
            assert "not every kernel of this model" in text and "GPT-2's odd" not in text
