"""Tokenized examples, padded batches and their statistics."""

from __future__ import annotations

import torch

from gpu_notebooks.llm_finetuning.tasks import format_prompt


class NoExampleFits(ValueError):
    """No training or eval example fits the max sequence length (step 4 says so and frees the model)."""


def tokenize_examples(frame, tokenizer, max_length):
    """Token ids and labels per row: prompt tokens and padding get -100, so only the response is learned."""
    eos = tokenizer.eos_token_id
    examples, dropped = [], 0
    for prompt, response in zip(frame["prompt"], frame["response"], strict=True):
        prompt_ids = tokenizer(format_prompt(prompt, tokenizer), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos]
        input_ids = (prompt_ids + response_ids)[:max_length]
        labels = ([-100] * len(prompt_ids) + response_ids)[:max_length]
        if all(label == -100 for label in labels):
            dropped += 1  # the prompt alone fills max_length: nothing left to learn from
            continue
        examples.append({"input_ids": input_ids, "labels": labels})
    return examples, dropped


def collate_batch(examples, pad_id, multiple=1):
    """Pad a list of examples to the longest in the batch (dynamic padding); padded labels are -100.

    `multiple` rounds the width up (the compiled path: fewer distinct shapes).
    """
    width = -(-max(len(e["input_ids"]) for e in examples) // multiple) * multiple
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def make_loader(examples, batch_size, pad_id, shuffle, seed=0, pin=False, multiple=1):
    """A DataLoader with dynamic padding; shuffling uses its own seeded generator (reproducible order).

    `pin`: batches land in page-locked host memory, so their copies to the GPU run asynchronously.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        examples,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=lambda batch: collate_batch(batch, pad_id, multiple),
        pin_memory=pin,
    )


def token_statistics(loader):
    """Tokens the batches hold: padded total, real (non-pad) tokens, and those that carry loss."""
    padded = real = loss = max_batch = max_batch_loss = 0
    lengths = []
    for batch in loader:
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        loss += int((batch["labels"] != -100).sum())
        max_batch = max(max_batch, batch["input_ids"].numel())
        max_batch_loss = max(max_batch_loss, int((batch["labels"] != -100).sum()))
        lengths.extend(batch["attention_mask"].sum(dim=1).tolist())
    return {
        "padded_tokens": padded,
        "real_tokens": real,
        "loss_tokens": loss,
        "max_batch_tokens": max_batch,  # the largest batch as padded: what one step's activations hold
        "max_batch_loss_tokens": max_batch_loss,
        "loss_share_of_real": loss / max(real, 1),
        "loss_share_of_padded": loss / max(padded, 1),
        "padding_share": 1 - real / max(padded, 1),
        "mean_length": sum(lengths) / max(len(lengths), 1),
        "max_length": max(lengths, default=0),
    }


def answer_token_budget(tokenizer, responses):
    """Generation length: the longest reference answer in tokens plus a little slack (capped)."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses), default=8)
    return min(longest + 4, 48)


def prompt_batch(run, prompts):
    """Templated prompts as a right-padded batch (input ids + attention mask) on the run's device."""
    encoded = run.tokenizer([format_prompt(p, run.tokenizer) for p in prompts], add_special_tokens=False)[
        "input_ids"
    ]
    batch = collate_batch([{"input_ids": ids, "labels": ids} for ids in encoded], run.tokenizer.pad_token_id)
    return {
        "input_ids": batch["input_ids"].to(run.device),
        "attention_mask": batch["attention_mask"].to(run.device),
    }
