"""The fast training path (issue 4) against the plain reference loop, on the CPU.

The CUDA-only levers (FP16 autocast, fused AdamW on the GPU, flash attention, torch.compile) are checked on
the device by tests/gpu/test_llm_gpu.py; here the same code runs in FP32 and must give the same numbers.
"""

import pytest
import torch
from torch.nn import functional as F

from gpu_notebooks.llm_finetuning.explain.speed import why_fast_text
from gpu_notebooks.llm_finetuning.formatting import fmt_bytes
from gpu_notebooks.llm_finetuning.lora import lora_layers, lora_plan
from gpu_notebooks.llm_finetuning.loss import (
    ChunkedLMHeadLoss,
    batch_loss,
    causal_lm_loss,
    loss_chunk_eager,
    loss_chunk_fusable,
    loss_positions,
    to_device,
)
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS, TrainSettings
from gpu_notebooks.llm_finetuning.speed import (
    COMPILE_MEASUREMENTS,
    COMPILE_PAYS_AFTER_STEPS,
    COMPILE_PAYS_AFTER_TOKENS,
    FAST_PATH_MEASURED_ON,
    apply_speed_plan,
    choose_speed_plan,
    compile_break_even,
)
from gpu_notebooks.llm_finetuning.tokens import collate_batch
from gpu_notebooks.llm_finetuning.training import evaluate_loss, train_steps
from tests.test_llm_training import tiny_run as app_steps_1_to_4


def tiny_run(speed, epochs=2):
    """The app's steps 1-4 (tests/test_llm_training.py) with the given training path and no dropout."""
    run, _ = app_steps_1_to_4(speed=speed, epochs=epochs, dropout=0.0)
    # dropout draws differ between attention kernels; without it both paths are deterministic
    for module in run.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return run


@pytest.fixture(scope="module")
def both_paths():
    torch.set_num_threads(2)
    curves = {}
    for speed in ("plain", "fast"):
        run = tiny_run(speed)
        records = list(train_steps(run))
        curves[speed] = (run, records)
    return curves


def test_fast_and_plain_paths_give_the_same_loss_curve(both_paths):
    plain = [r for r in both_paths["plain"][1] if r["kind"] == "train"]
    fast = [r for r in both_paths["fast"][1] if r["kind"] == "train"]
    assert both_paths["fast"][0].speed.deferred and not both_paths["plain"][0].speed.deferred
    assert len(plain) == len(fast) == 20
    for a, b in zip(plain, fast, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-4, abs=2e-4), (a["step"], a["loss"], b["loss"])
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=2e-3, abs=1e-4)
        assert b["skipped"] is False and a["skipped"] is False
    assert plain[-1]["loss"] < plain[0]["loss"] - 1.0  # it did learn: the comparison is not of two flat lines


def test_fast_and_plain_paths_end_with_the_same_adapter_and_eval_loss(both_paths):
    plain_run, fast_run = both_paths["plain"][0], both_paths["fast"][0]
    for (name, a), (_, b) in zip(lora_layers(plain_run.model), lora_layers(fast_run.model), strict=True):
        torch.testing.assert_close(b.lora_B.weight, a.lora_B.weight, rtol=2e-3, atol=2e-5, msg=name)
    plain_evals = [r for r in both_paths["plain"][1] if r["kind"] == "eval"]
    fast_evals = [r for r in both_paths["fast"][1] if r["kind"] == "eval"]
    for a, b in zip(plain_evals, fast_evals, strict=True):
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-4)
    # The fast evaluation path on the plain run's model gives the plain evaluation's number.
    plain_loss = evaluate_loss(plain_run)["eval_loss"]
    assert plain_loss == pytest.approx(plain_evals[-1]["eval_loss"], rel=1e-6)
    plain_run.speed = choose_speed_plan("fast", "cpu")
    apply_speed_plan(plain_run)
    assert evaluate_loss(plain_run)["eval_loss"] == pytest.approx(plain_loss, rel=1e-5)
    plain_run.speed = choose_speed_plan("plain", "cpu")


def test_chunked_lm_head_loss_matches_full_cross_entropy_in_value_and_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(101, 16, dtype=torch.float64)
    targets = torch.randint(0, 101, (37,))
    expected = F.cross_entropy(hidden @ weight.T, targets)
    (expected_grad,) = torch.autograd.grad(expected * 3.0, hidden)
    loss = ChunkedLMHeadLoss.apply(hidden, weight, targets, 8, torch.float64)  # 5 chunks, the last short
    (grad,) = torch.autograd.grad(loss * 3.0, hidden)
    torch.testing.assert_close(loss, expected.float(), rtol=1e-6, atol=1e-6)
    # FP32 probabilities (as in training), compared with a float64 reference
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_chunked_loss_reports_nan_instead_of_hiding_it():
    hidden = torch.randn(4, 8)
    hidden[2, 3] = float("nan")
    loss = ChunkedLMHeadLoss.apply(hidden, torch.randn(11, 8), torch.tensor([1, 2, 3, 4]), 2, torch.float32)
    assert torch.isnan(loss)


def test_loss_positions_select_exactly_the_shifted_labels():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 10]])
    index, targets = loss_positions(labels)
    # position (b, s) predicts labels[b, s + 1]; flat index = b * 5 + s
    assert index.tolist() == [1, 2, 5, 6, 7, 8] and targets.tolist() == [5, 6, 7, 8, 9, 10]


def test_speed_plan_choice_and_explanations():
    assert not choose_speed_plan("plain", "cuda").deferred
    fast = choose_speed_plan("fast", "cuda")
    assert (
        fast.fused_loss and fast.causal_only and fast.fused_optimizer and fast.deferred and not fast.compile
    )
    many_steps = choose_speed_plan("auto", "cuda", padded_tokens=50_000, steps=COMPILE_PAYS_AFTER_STEPS)
    assert many_steps.compile  # small batches: launch-bound, compiling pays after enough steps
    short = choose_speed_plan("auto", "cuda", padded_tokens=50_000, steps=50)
    assert not short.compile and "repay" in short.note
    long = choose_speed_plan("auto", "cuda", padded_tokens=COMPILE_PAYS_AFTER_TOKENS)
    assert long.compile and long.compile_mode == "reduce-overhead" and "CUDA graphs" in long.note
    cpu = choose_speed_plan("compile", "cpu")
    assert not cpu.compile and "CPU" in cpu.note


def test_compile_thresholds_cover_every_measured_break_even_and_no_more():
    # worked example (44.6 ms eager, 32.75 ms compiled, 21.8 s first step): (21,800 - 32.75) / 11.85 = 1,837
    assert compile_break_even(44.6, 32.75, 21.8, 32 * 512) == (1837, 1837 * 32 * 512)
    assert compile_break_even(10.0, 12.0, 5.0, 512)[0] == float("inf")  # compiling slower: never pays
    evens = [
        compile_break_even(eager, compiled, first, b * t)
        for _, b, t, eager, compiled, first in COMPILE_MEASUREMENTS
    ]
    longest_steps, longest_tokens = max(s for s, _ in evens), max(k for _, k in evens)
    # at least every measured break-even, rounded up by less than 100 steps / 1M tokens
    assert longest_steps <= COMPILE_PAYS_AFTER_STEPS < longest_steps + 100
    assert longest_tokens <= COMPILE_PAYS_AFTER_TOKENS < longest_tokens + 1_000_000
    # auto follows them: 1,000 steps at 32 x 512 (16M tokens) do not repay a compile, 3,200 steps do
    b32 = 32 * 512
    assert not choose_speed_plan("auto", "cuda", padded_tokens=1_000 * b32, steps=1_000).compile
    assert choose_speed_plan("auto", "cuda", padded_tokens=3_200 * b32, steps=3_200).compile


def test_why_fast_panel_takes_its_numbers_from_the_config_and_labels_the_reference_card():
    from transformers import GPT2Config

    settings = TrainSettings(batch_size=8, max_length=64, target_modules=ALL_TARGETS)
    medium = lora_plan(GPT2Config(n_layer=2, n_head=16, n_embd=1024), settings)
    text = why_fast_text(settings, medium)
    levers, measured = text.split("**Measured on an " + FAST_PATH_MEASURED_ON)
    assert "1,024 × 50,257" in levers and "768" not in levers
    assert "batch 8 × 64" in levers and fmt_bytes(8 * 64 * 50_257 * 4) in levers
    # no measured figure in the part that changes with the settings
    for figure in ("14%", "128K", "367", "500", "6.6 GB", "21.8", "24 ms", "20–45 s", "1,000"):
        assert figure not in levers, figure
    assert "6,581 MiB (6.90 GB, 6.43 GiB)" in measured and "500,310" in measured
    tiny_vocab = lora_plan(GPT2Config(n_layer=1, n_embd=64, n_head=4, vocab_size=256), settings)
    assert "already a multiple of 128" in why_fast_text(settings, tiny_vocab)


def test_fast_path_reads_back_in_groups_and_times_every_step():
    run = tiny_run("fast", epochs=1)
    records = [r for r in train_steps(run) if r["kind"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 11))
    # step 1 alone, then the rest of the epoch as one group (fewer than SYNC_EVERY steps): equal shares
    assert len({r["seconds"] for r in records[1:]}) == 1 and all(r["seconds"] > 0 for r in records)


def test_fast_path_skips_non_finite_steps_without_touching_the_adapter():
    run = tiny_run("fast", epochs=1)
    layer = lora_layers(run.model)[0][1]
    layer.lora_A.weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    before = [p.detach().clone() for p in run.optimizer.param_groups[0]["params"]]
    records = []
    with pytest.raises(Exception, match="skipped 3 steps in a row"):
        for record in train_steps(run, max_skipped_in_row=3):
            records.append(record)
    after = run.optimizer.param_groups[0]["params"]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(r["skipped"] for r in records)
    assert all(r["loss_scale"] == 1.0 for r in records)  # the FP32 guard does not back off


def test_plain_path_without_a_scaler_skips_non_finite_steps_too():
    run = tiny_run("plain", epochs=1)
    layer = lora_layers(run.model)[0][1]
    layer.lora_A.weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    before = [p.detach().clone() for p in run.optimizer.param_groups[0]["params"]]
    with pytest.raises(Exception, match="skipped 3 steps in a row"):
        list(train_steps(run, max_skipped_in_row=3))
    after = run.optimizer.param_groups[0]["params"]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_compiled_runs_pad_widths_to_multiples_of_64():
    examples = [{"input_ids": [1] * n, "labels": [2] * n} for n in (3, 70)]
    assert collate_batch(examples[:1], 0)["input_ids"].shape == (1, 3)
    assert collate_batch(examples[:1], 0, multiple=64)["input_ids"].shape == (1, 64)
    batch = collate_batch(examples, 0, multiple=64)
    assert batch["input_ids"].shape == (2, 128) and int(batch["attention_mask"].sum()) == 73
    assert (batch["labels"][0, 3:] == -100).all()


def test_a_model_with_eager_attention_keeps_the_padding_mask():
    """GPT-2's eager attention is causal only through the mask: the fast path must not drop it there."""
    run = tiny_run("fast", epochs=1)
    run.model.config._attn_implementation = "eager"
    apply_speed_plan(run)
    assert not run.speed.causal_only and "eager attention" in run.speed.note
    batch = to_device(next(iter(run.train_loader)), run.device, with_positions=True)
    with torch.no_grad():
        logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = causal_lm_loss(logits, batch["labels"])
        assert batch_loss(run, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_padded_lm_head_and_the_fusable_chunk_agree_with_the_plain_loss():
    """A head padded with zero rows (as the fast path aligns GPT-2's odd vocabulary) changes nothing."""
    torch.manual_seed(1)
    hidden = torch.randn(21, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(101, 16, dtype=torch.float64)
    padded = torch.cat([weight, torch.zeros(27, 16, dtype=torch.float64)])
    targets = torch.randint(0, 101, (21,))
    expected = F.cross_entropy(hidden @ weight.T, targets)
    (expected_grad,) = torch.autograd.grad(expected, hidden)
    for chunk_fn in (loss_chunk_eager, loss_chunk_fusable):
        loss = ChunkedLMHeadLoss.apply(hidden, padded, targets, 8, torch.float64, 101, chunk_fn)
        (grad,) = torch.autograd.grad(loss, hidden)
        torch.testing.assert_close(loss, expected.float(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
