"""Before/after evaluation: held-out loss, greedy generations decoded to text, exact match."""

from __future__ import annotations

import codecs
import math
import re

import pandas as pd
import torch

from gpu_notebooks.llm_finetuning.formatting import mark_byte
from gpu_notebooks.llm_finetuning.precision import autocast_context
from gpu_notebooks.llm_finetuning.tasks import ANSWER_FORMATS, format_prompt
from gpu_notebooks.llm_finetuning.training import catch_out_of_memory, evaluate_loss, out_of_memory_stop


@torch.no_grad()
def generate_greedy(run, prompts, max_new_tokens=16, batch_size=32):
    """Greedy continuations of templated prompts, batched with left padding; text up to the first eos."""
    run.model.eval()
    tokenizer, eos = run.tokenizer, run.tokenizer.eos_token_id
    outputs = []
    for start in range(0, len(prompts), batch_size):
        encoded = [
            tokenizer(format_prompt(p, tokenizer), add_special_tokens=False)["input_ids"]
            for p in prompts[start : start + batch_size]
        ]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.tensor([[eos] * (width - len(ids)) + ids for ids in encoded], device=run.device)
        attention_mask = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=run.device
        )
        finished = torch.zeros(len(encoded), dtype=torch.bool, device=run.device)
        for _ in range(max_new_tokens):
            # Positions count real tokens only, so a left-padded prompt sees the positions it saw in training.
            position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            with autocast_context(run):
                logits = run.model(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
                ).logits
            next_token = logits[:, -1, :].argmax(dim=-1).masked_fill(finished, eos)
            input_ids = torch.cat([input_ids, next_token[:, None]], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_token)[:, None]], dim=1)
            finished |= next_token == eos
            if finished.all():
                break
        for row in input_ids[:, width:].tolist():
            row = row[: row.index(eos)] if eos in row else row
            outputs.append(readable_decode(tokenizer, row))
    return outputs


def byte_level_alphabet():
    """GPT-2's byte-level BPE alphabet: the character each byte is written as inside a token (→ byte)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:  # unprintable bytes are moved past 255, in order
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def _mark_undecodable(error):
    """codecs error handler: each byte that is not part of a whole UTF-8 character becomes a [byte 0xNN] mark."""
    return "".join(mark_byte(b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("mark_bytes", _mark_undecodable)


def marked_text(raw):
    """UTF-8 bytes as text: whole characters as themselves, stray bytes and invisible ASCII control
    characters (other than newline and tab) as [byte 0xNN] marks."""
    text = bytes(raw).decode("utf-8", errors="mark_bytes")
    return "".join(
        mark_byte(ord(ch)) if ord(ch) < 0x80 and not ch.isprintable() and ch not in "\n\t" else ch
        for ch in text
    )


def readable_decode(tokenizer, ids):
    """Generated tokens as text a learner can read; bytes that are not text marked [byte 0xNN], never "�".

    An untrained model can emit one byte of a multi-byte character (byte-level BPE tokens are bytes); a
    plain decode turns it into U+FFFD and a bytes decode into a Python escape (`\\xbb`), both of which read
    like an encoding bug. Tokens that are not byte-level (special or SentencePiece pieces) fall back to the
    plain decode.
    """
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if "\ufffd" not in text:
        return marked_text(text.encode("utf-8")).strip()
    alphabet, raw = byte_level_alphabet(), bytearray()
    for token in tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=True):
        if (
            token is None
        ):  # an id past the tokenizer's vocabulary (a model wider than it): decode skips it too
            continue
        if token.startswith("<0x") and token.endswith(">") and len(token) == 6:  # SentencePiece byte fallback
            raw.append(int(token[3:5], 16))
        elif all(ch in alphabet for ch in token):
            raw.extend(alphabet[ch] for ch in token)
        else:
            raw.extend(token.replace("▁", " ").encode("utf-8"))
    return marked_text(raw).strip()


def normalize_answer(text):
    """Whitespace-collapsed text: exact match ignores spacing only."""
    return " ".join(str(text).split())


def score_generations(frame, generations):
    """Per-row exact match and answer-format match (the task's fixed format) for generated responses."""
    scored = frame[["task", "prompt", "response"]].reset_index(drop=True).copy()
    scored["generated"] = generations
    scored["exact_match"] = [
        normalize_answer(g) == normalize_answer(r)
        for g, r in zip(generations, scored["response"], strict=True)
    ]
    # Only the built-in tasks have a fixed answer format; uploaded rows get NaN (shown as n/a).
    scored["format_match"] = [
        float(bool(re.fullmatch(ANSWER_FORMATS[task], normalize_answer(g))))
        if task in ANSWER_FORMATS
        else math.nan
        for task, g in zip(scored["task"], generations, strict=True)
    ]
    return scored


def evaluate_run(run, eval_frame, max_new_tokens):
    """Eval loss, perplexity and scored greedy generations for the held-out prompts (OOM → TrainingStopped)."""
    metrics, out_of_memory = catch_out_of_memory(evaluate_loss, run)
    if not out_of_memory:
        generations, out_of_memory = catch_out_of_memory(
            generate_greedy, run, eval_frame["prompt"].tolist(), max_new_tokens
        )
    if out_of_memory:
        raise out_of_memory_stop("GPU out of memory while evaluating.", 0)
    scored = score_generations(eval_frame, generations)
    metrics.update(
        exact_match=scored["exact_match"].mean(),
        format_match=scored["format_match"].mean(),
        eval_items=len(scored),
    )
    return metrics, scored


def per_task_scores(before, after):
    """Exact-match and answer-format rates per task, before vs after (percent)."""
    frame = pd.DataFrame(
        {
            "task": before["task"],
            "exact match before %": 100 * before["exact_match"].astype(float),
            "exact match after %": 100 * after["exact_match"].astype(float),
            "format before %": 100 * before["format_match"].astype(float),
            "format after %": 100 * after["format_match"].astype(float),
        }
    )
    grouped = frame.groupby("task", sort=False)
    scores = grouped.mean().round(0)
    scores.insert(0, "n", grouped.size())
    # ±1 s.e. of the exact-match rate after training (a task of n items moves in steps of 100/n points)
    after = grouped["exact match after %"].mean() / 100
    scores.insert(
        3,
        "± 1 s.e. after",
        [round(100 * standard_error(p, n), 0) for p, n in zip(after, scores["n"], strict=True)],
    )
    return scores.reset_index()


def standard_error(p, n):
    """One binomial standard error of a rate p measured on n items: √(p(1−p)/n) (NaN without items)."""
    return math.sqrt(p * (1 - p) / n) if n else math.nan
