"""Learner texts about step 6's results: how to read the before/after generations, from this run's scores."""

from __future__ import annotations

import math

from gpu_notebooks.llm_finetuning.formatting import BYTE_MARK_PREFIX
from gpu_notebooks.llm_finetuning.models import TINY_LLAMA_NAME, TINY_MODEL_NAME

# An answer given to at least this many held-out prompts (and wrong for most) is called out as repeated.
REPEATED_AT_LEAST = 3


def items_at_rate(rate, n):
    """How many of n items a rate over them stands for (0.175 of 40 → 7)."""
    return round(rate * n)


def repeated_answer(generations):
    """(text, count, well_formed) of the answer given most often where it was wrong, or None below the bar."""
    wrong = generations[~generations["exact_match"].astype(bool)]
    if wrong.empty:
        return None
    counts = wrong["generated"].value_counts()
    text, count = counts.index[0], int(counts.iloc[0])
    if count < REPEATED_AT_LEAST or not str(text).strip():
        return None
    return text, count, bool((wrong.loc[wrong["generated"] == text, "format_match"] == 1.0).all())


def generations_note(before, after, before_generations, after_generations, model_name):
    """What the before/after table shows, in this run's numbers: exact match and answer format out of n,
    why a model from random weights gets formats before answers, a repeated answer, and the [byte 0xNN] mark."""
    n = int(after["eval_items"])
    exact = items_at_rate(after["exact_match"], n)
    lines = [
        f"**Reading the table.** After training **{exact} of {n}** held-out answers match exactly "
        f"(**{after['exact_match']:.0%}**; before: {items_at_rate(before['exact_match'], n)} of {n}). Exact match is "
        "strict: apart from spacing, one different character is a ✗."
    ]
    has_format = not math.isnan(after["format_match"])
    if has_format:
        formatted = items_at_rate(after["format_match"], n)
        lines.append(
            f"**{formatted} of {n}** answers have their task's format ({after['format_match']:.0%}; before: "
            f"{items_at_rate(before['format_match'], n)} of {n})"
            + (f": {formatted - exact} are well-formed and wrong" if formatted > exact else "")
            + (
                " — the model learnt what an answer looks like before what it is."
                if formatted >= n / 2 and formatted >= 2 * max(exact, 1)
                else "."
            )
        )
    if model_name in (TINY_MODEL_NAME, TINY_LLAMA_NAME):
        lines.append(
            f"`{model_name}` started from **random weights**: it knows no language and no arithmetic, so in a "
            'short run it learns the fixed formats ("Answer: ", a number) first and the answers themselves '
            "later, if at all. A page of ✗ is what this run learnt, not a bug. Pick a pretrained model (GPT-2, "
            "SmolLM2) to see what fine-tuning adds to a model that already knows language."
        )
    repeated = repeated_answer(after_generations)
    if repeated:
        text, count, well_formed = repeated
        lines.append(
            f"The same answer, `{text}`, was given to **{count}** different prompts where it was wrong"
            + (": the format without the computation." if well_formed else ".")
        )
    empty = int((after_generations["generated"].astype(str).str.strip() == "").sum())
    if empty:
        lines.append(
            f"**{empty} of {n}** answers after training are empty (shown as *(empty)*): the model ended them "
            "before writing anything visible."
        )
    shown = [*before_generations["generated"], *after_generations["generated"]]
    if any(BYTE_MARK_PREFIX in str(text) for text in shown):
        lines.append(
            f"`{BYTE_MARK_PREFIX}BB]` marks a byte the model produced that is not text by itself: one byte of a "
            "character that needs several in UTF-8 (the tokenizer's pieces are bytes, and an untrained model "
            "does not yet put them together into whole characters), or an invisible control character."
        )
    return "\n\n".join(lines)
