"""The training core of issue 15: one lr_at, one loss entry point, one GradScaler helper, SpeedPlan's one
mode, and the Llama family on the same causal body (and therefore compile) as GPT-2."""

import dataclasses

import pytest
import torch

from gpu_notebooks.llm_finetuning.lora import inject_lora
from gpu_notebooks.llm_finetuning.loss import CausalLMBody, batch_loss, causal_lm_loss, to_device
from gpu_notebooks.llm_finetuning.models import (
    TINY_LLAMA_NAME,
    TINY_MODEL_NAME,
    architecture_targets,
    build_offline_tokenizer,
    offline_gpt2,
    offline_llama,
    tokenizer_corpus,
)
from gpu_notebooks.llm_finetuning.precision import resolve_precision
from gpu_notebooks.llm_finetuning.schedule import lr_at
from gpu_notebooks.llm_finetuning.settings import (
    ALL_TARGETS,
    SPEED_CHOICES,
    TrainSettings,
    with_model_defaults,
)
from gpu_notebooks.llm_finetuning.speed import SYNC_EVERY, SpeedPlan, apply_speed_plan, choose_speed_plan
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.llm_finetuning.training import FineTuneRun, prepare_training, scaler_readings, train_steps

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    return build_offline_tokenizer(tokenizer_corpus(builtin_examples()))


def cpu_run(tokenizer, arch, speed):
    """A prepared run of the tiny model of `arch` on the CPU in FP32 (dropout off: deterministic losses)."""
    data = builtin_examples()
    model = (offline_gpt2 if arch == "gpt2" else offline_llama)(tokenizer).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    inject_lora(model, architecture_targets(model, ALL_TARGETS), r=4, alpha=8)
    source, name = ("tiny", TINY_MODEL_NAME) if arch == "gpt2" else ("tiny-llama", TINY_LLAMA_NAME)
    run = FineTuneRun(
        settings=with_model_defaults(
            TrainSettings(model_source=source, speed=speed, epochs=1, dropout=0.0), name
        ),
        device=CPU,
        plan=resolve_precision("fp32", "cpu"),
        model=model,
        tokenizer=tokenizer,
        model_name=name,
    )
    prepare_training(run, data[data["split"] == "train"], data[data["split"] == "eval"])
    return run


def test_one_learning_rate_function_serves_both_paths(tokenizer):
    """The plain step sets lr_at(applied steps) by hand; the fast path's device table holds the same values."""
    fast = cpu_run(tokenizer, "gpt2", "fast")
    expected = [
        lr_at(step, fast.settings.learning_rate, fast.warmup_steps, fast.total_steps)
        for step in range(fast.total_steps)
    ]
    assert fast.lr_schedule.tolist() == pytest.approx(expected, rel=1e-6)
    plain = cpu_run(tokenizer, "gpt2", "plain")
    assert not hasattr(plain, "scheduler") and plain.applied_steps == 0
    lrs = [r["lr"] for r in train_steps(plain) if r["kind"] == "train"]
    assert lrs == pytest.approx(expected[: len(lrs)], rel=1e-12)
    assert plain.applied_steps == len(lrs)  # no step skipped in FP32


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_one_loss_entry_point_gives_the_reference_cross_entropy_on_both_paths(tokenizer, arch):
    """batch_loss on the fast path (chunked LM head, no mask) equals F.cross_entropy on the full logits."""
    fast, plain = cpu_run(tokenizer, arch, "fast"), cpu_run(tokenizer, arch, "plain")
    plain.model.load_state_dict(fast.model.state_dict())
    batch = next(iter(fast.eval_loader))
    with torch.no_grad():
        reference = causal_lm_loss(
            fast.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
            batch["labels"],
        )
        chunked = batch_loss(fast, to_device(batch, CPU, with_positions=True))
        plain_loss = batch_loss(plain, to_device(batch, CPU))
    assert fast.speed.fused_loss and fast.speed.causal_only and not plain.speed.fused_loss
    assert chunked.item() == pytest.approx(reference.item(), rel=1e-5)
    assert plain_loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_the_llama_causal_body_equals_the_masked_forward_on_real_tokens(tokenizer):
    model = offline_llama(tokenizer).eval()
    run = cpu_run(tokenizer, "llama", "fast")
    batch = next(iter(run.train_loader))  # right-padded: shorter rows end in padding
    with torch.no_grad():
        masked = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        causal = CausalLMBody(model)(batch["input_ids"])
    real = batch["attention_mask"].bool()
    assert (~real).any()  # the batch really has padding
    torch.testing.assert_close(causal[real], masked.last_hidden_state[real], rtol=1e-4, atol=1e-5)


def test_the_llama_fast_path_may_compile_on_cuda(tokenizer):
    """torch.compile is no longer stripped for the Llama family: the plan keeps it and the body is compiled."""
    planned = choose_speed_plan("compile", "cuda")
    assert planned.compile and planned.causal_only
    run = cpu_run(tokenizer, "llama", "fast")
    run.speed = planned  # what prepare_training chooses on a CUDA device
    apply_speed_plan(run)  # torch.compile is lazy: nothing compiles until the body is called
    assert run.speed.compile and run.speed.causal_only and not run.speed.fast_gelu
    assert run.speed.name == "fast + compile" and "no torch.compile" not in run.speed.note
    assert isinstance(run.body, torch._dynamo.eval_frame.OptimizedModule)
    assert run.loss_chunk is not None


def test_speed_plan_has_one_mode_for_the_levers_that_only_work_together():
    plain, fast = choose_speed_plan("plain", "cuda"), choose_speed_plan("fast", "cuda")
    assert (plain.mode, fast.mode) == ("plain", "fast")
    assert not (plain.fused_loss or plain.fused_optimizer or plain.deferred) and plain.sync_every == 1
    assert fast.fused_loss and fast.fused_optimizer and fast.deferred and fast.sync_every == SYNC_EVERY
    with pytest.raises(TypeError):
        SpeedPlan(fused_loss=True)  # no longer a switch of its own
    assert [f.name for f in dataclasses.fields(SpeedPlan)] == [
        "name",
        "mode",
        "causal_only",
        "fast_gelu",
        "compile",
        "compile_mode",
        "note",
    ]
    assert list(SPEED_CHOICES.values()) == ["auto", "fast", "compile", "plain"]  # the UI is unchanged


@pytest.mark.parametrize("bad", [False, True])
@pytest.mark.parametrize("private", [True, False])
def test_scaler_readings_match_with_and_without_gradscalers_private_calls(bad, private):
    """The one GradScaler helper: its private fast path and its public fallback agree on scale and skip."""
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=1e-3)
    scaler = torch.amp.GradScaler(device="cpu", init_scale=8.0)
    if not private:

        class PublicOnly:  # a torch whose GradScaler lacks the private calls
            def __getattr__(self, name):
                if name in ("_get_scale_async", "_found_inf_per_device"):
                    raise AttributeError(name)
                return getattr(scaler, name)

        reader = PublicOnly()
    else:
        reader = scaler
    loss = (weight * (torch.tensor(float("inf")) if bad else 1.0)).sum()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_([weight], 1.0)
    scale, skipped = scaler_readings(reader, optimizer, norm)
    assert scale.item() == 8.0 and skipped.item() == float(bad)
