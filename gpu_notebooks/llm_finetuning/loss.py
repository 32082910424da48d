"""The loss: next-token cross-entropy, in chunks over the LM head on the fast path."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gpu_notebooks.llm_finetuning.models import architecture

LOSS_CHUNK_BYTES = 2**29  # FP32 probabilities of one loss chunk: 512 MiB (2,560 rows of GPT-2's vocabulary)
LOSS_GRAD_SCALE = 1024.0


def causal_lm_loss(logits, labels, reduction="mean"):
    """Next-token cross-entropy on positions whose (shifted) label is not -100, computed in FP32.

    The reference loss: the plain path trains with it, and the tests check `batch_loss` against it."""
    shifted_labels = labels[:, 1:]
    keep = shifted_labels != -100
    # Select the loss positions first: the FP32 copy then covers response tokens only, not the whole batch.
    selected_logits = logits[:, :-1, :][keep].float()
    return F.cross_entropy(selected_logits, shifted_labels[keep], reduction=reduction)


def loss_chunk_eager(part, weight, target, vocab, want_grad):
    """One chunk of the LM-head loss in plain PyTorch: (summed loss, gradient for `part` in FP32 or None).

    `weight` may carry zero rows past `vocab` (padding to a multiple of 128 keeps the GEMMs on fast,
    aligned kernels: GPT-2's 50,257 is odd); their logits are set to -inf, so they get probability 0.
    """
    logits = part @ weight.T
    if weight.shape[0] > vocab:
        logits[:, vocab:] = float("-inf")
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    # -log p(target): exact in FP32 down to p ≈ 1e-38 (a loss of 87, far above any real one).
    loss = -torch.log(probs.gather(1, target).clamp_min(1e-38)).sum()
    if not want_grad:
        return loss, None
    probs.scatter_add_(1, target, torch.full_like(target, -1.0, dtype=probs.dtype))  # softmax − one-hot
    # ×2¹⁰ before the FP16 cast keeps small probabilities from flushing to zero.
    scaled = probs.mul_(LOSS_GRAD_SCALE).to(part.dtype)
    return loss, (scaled @ weight).float().div_(LOSS_GRAD_SCALE)


def loss_chunk_fusable(part, weight, target, vocab, want_grad):
    """The same chunk written without in-place steps, so torch.compile can fuse it into two passes."""
    logits = (part @ weight.T).float()
    column = torch.arange(logits.shape[1], device=logits.device)
    logits = torch.where(column < vocab, logits, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, target).squeeze(1)).sum()
    if not want_grad:
        return loss, None
    probs = torch.exp(logits - lse[:, None])
    probs = torch.where(column == target, probs - 1.0, probs)
    return loss, ((probs * LOSS_GRAD_SCALE).to(part.dtype) @ weight).float() / LOSS_GRAD_SCALE


class ChunkedLMHeadLoss(torch.autograd.Function):
    """Mean cross-entropy of softmax(hidden · Wᵀ) for a frozen LM head W, a few thousand rows at a time.

    Forward computes each chunk's logits, its loss and already the gradient for `hidden` (softmax − one-hot)·W,
    then drops the chunk: the [rows × vocabulary] logits never exist at once, and no FP32 copy of them
    outlives its chunk. Backward only scales the stored gradient. W gets no gradient (it is frozen).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows, compute_dtype, vocab=None, chunk_fn=None):
        rows = hidden.shape[0]
        vocab = vocab or weight.shape[0]
        chunk_fn = chunk_fn or loss_chunk_eager
        want_grad = ctx.needs_input_grad[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if want_grad else None
        weight = weight.to(compute_dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, rows, chunk_rows):
                part = hidden[start : start + chunk_rows].to(compute_dtype)
                loss, part_grad = chunk_fn(
                    part, weight, targets[start : start + chunk_rows, None], vocab, want_grad
                )
                total += loss
                if want_grad:
                    grad[start : start + chunk_rows] = part_grad
        ctx.save_for_backward(grad)
        ctx.rows = rows
        return total / max(rows, 1)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * (grad_output / max(ctx.rows, 1)), None, None, None, None, None, None


class CausalLMBody(nn.Module):
    """The model's transformer for right-padded causal training: embeddings → blocks → final norm, no mask.

    GPT-2: token + position embeddings, its blocks, ln_f. Llama family: token embeddings, RoPE's cos/sin
    once, its decoder layers, the final RMSNorm. With no mask every SDPA call runs with is_causal=True
    (flash attention). Calling the blocks directly also skips transformers' mask building, whose
    packed-sequence and padding checks each wait for the GPU. Right padding makes this exact: a causal
    token never looks at the padding after it.
    """

    def __init__(self, model):
        super().__init__()
        self.gpt2 = architecture(model) == "gpt2"
        self.transformer = model.transformer if self.gpt2 else model.model

    def forward(self, input_ids):
        t = self.transformer
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if self.gpt2:
            hidden, extra = t.drop(t.wte(input_ids) + t.wpe(positions)), {}
            blocks, norm = t.h, t.ln_f
        else:
            hidden = t.embed_tokens(input_ids)
            position_ids = positions.unsqueeze(0)
            extra = {
                "attention_mask": None,
                "position_ids": position_ids,
                "position_embeddings": t.rotary_emb(hidden, position_ids=position_ids),
            }
            blocks, norm = t.layers, t.norm
        for block in blocks:
            out = block(hidden, **extra)
            hidden = out[0] if isinstance(out, tuple) else out
        return norm(hidden)


def loss_positions(labels):
    """Flat positions (into [batch × length]) whose next token carries loss, and those next tokens.

    Computed on the CPU before the batch moves, so selecting them on the GPU needs no host sync
    (a boolean mask on the GPU would have to report its count back first).
    """
    shifted = torch.full_like(labels, -100)
    shifted[:, :-1] = labels[:, 1:]
    flat = shifted.reshape(-1)
    index = (flat != -100).nonzero().squeeze(1)
    return index, flat[index]


def lm_head_rows(vocab_size, budget_bytes=LOSS_CHUNK_BYTES):
    """Rows per loss chunk so one chunk's FP32 probabilities stay within `budget_bytes`."""
    return max(256, budget_bytes // (4 * vocab_size) // 256 * 256)


def batch_loss(run, batch, eager=False):
    """THE loss of the app: mean next-token cross-entropy over a batch's answer tokens, on the run's device.

    Fast path (the default): hidden states at the loss positions only → the chunked LM head
    (`ChunkedLMHeadLoss`), never the full logits. Plain path, the reference: full logits with the padding
    mask → `causal_lm_loss` (F.cross_entropy); a test checks that both give the same number. `eager`
    skips the compiled body (evaluation runs in eval mode, which would trigger a second compile).
    """
    if not run.speed.fused_loss:
        logits = run.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return causal_lm_loss(logits, batch["labels"])
    if run.speed.causal_only:
        body = CausalLMBody(run.model) if eager or run.body is None else run.body
        hidden = body(batch["input_ids"])
    else:
        hidden = run.model.base_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).last_hidden_state
    selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["loss_index"])
    dtype = run.plan.autocast_dtype or run.plan.param_dtype
    weight = run.lm_weight if run.lm_weight is not None else run.model.lm_head.weight
    vocab = run.model.lm_head.weight.shape[0]
    fused = not eager and run.loss_chunk is not None
    chunk_fn = run.loss_chunk if fused else loss_chunk_eager
    # The compiled chunk never holds FP32 probabilities, so it can take 4× the rows (fewer, larger GEMMs).
    rows = lm_head_rows(weight.shape[0], LOSS_CHUNK_BYTES * (4 if fused else 1))
    return ChunkedLMHeadLoss.apply(selected, weight, batch["loss_targets"], rows, dtype, vocab, chunk_fn)


def to_device(batch, device, with_positions=False):
    """Batch tensors to `device`; pinned host memory makes the copies asynchronous on CUDA."""
    batch = dict(batch)
    if with_positions and "loss_index" not in batch:
        batch["loss_index"], batch["loss_targets"] = loss_positions(batch["labels"])
    cuda = device.type == "cuda"
    return {
        key: (value.pin_memory() if cuda and not value.is_pinned() else value).to(device, non_blocking=True)
        for key, value in batch.items()
    }
