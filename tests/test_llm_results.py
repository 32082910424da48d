"""Step 6's note beside the before/after table is written from this run's scores (issue 24, items 9 and 10)."""

import math

import pandas as pd

from gpu_notebooks.llm_finetuning.explain.results import generations_note
from gpu_notebooks.llm_finetuning.models import TINY_MODEL_NAME


def scored(exact, formatted, n=40, answer="Answer: 12", marked=False):
    """A scored generations frame of n sums: `exact` right, `formatted` in the answer format, the wrong
    well-formed ones all `answer` (the tiny model's habit in issue 24)."""
    rows = []
    for i in range(n):
        right, well_formed = i < exact, i < formatted
        text = (
            f"Answer: {i + 100}"
            if right
            else answer
            if well_formed
            else "exnightEL[byte 0xBB]!!"
            if marked
            else "x"
        )
        rows.append(
            {
                "task": "sum",
                "prompt": f"{i} + 100",
                "response": f"Answer: {i + 100}",
                "generated": text,
                "exact_match": right,
                "format_match": float(well_formed),
            }
        )
    return pd.DataFrame(rows)


def metrics(frame):
    return {
        "exact_match": frame["exact_match"].mean(),
        "format_match": frame["format_match"].mean(),
        "eval_items": len(frame),
    }


def test_the_note_reads_the_runs_exact_match_format_and_n():
    before, after = scored(0, 2, marked=True), scored(7, 36)
    note = generations_note(metrics(before), metrics(after), before, after, TINY_MODEL_NAME)
    assert "**7 of 40** held-out answers match exactly (**18%**; before: 0 of 40)" in note
    assert (
        "**36 of 40** answers have their task's format (90%; before: 2 of 40): 29 are well-formed and wrong"
        in note
    )
    assert "random weights" in note
    assert (
        "`Answer: 12`, was given to **29** different prompts where it was wrong: the format without" in note
    )
    assert "[byte 0xBB]` marks a byte" in note  # a mark is in the table, so the note says what it is


def test_the_note_follows_other_numbers_and_says_only_what_applies():
    before, after = scored(3, 10), scored(12, 12, n=30)
    note = generations_note(metrics(before), metrics(after), before, after, "gpt2")
    assert "**12 of 30** held-out answers match exactly (**40%**" in note
    assert "well-formed and wrong" not in note  # every formatted answer was right
    assert "random weights" not in note and "marks a byte" not in note
    assert (
        "`x`, was given to **18** different prompts where it was wrong." in note
    )  # not well-formed: no "format"


def test_a_few_well_formed_answers_are_counted_not_read_as_learning_the_format():
    before, after = scored(0, 2), scored(0, 3)
    note = generations_note(metrics(before), metrics(after), before, after, TINY_MODEL_NAME)
    assert "(8%; before: 2 of 40): 3 are well-formed and wrong." in note and "looks like" not in note


def test_empty_answers_are_counted():
    """The tiny model after one epoch often ends every answer at once: the table shows a column of (empty)."""
    before, after = scored(0, 2), scored(0, 0, answer="")
    after["generated"] = ""
    note = generations_note(metrics(before), metrics(after), before, after, TINY_MODEL_NAME)
    assert "**40 of 40** answers after training are empty" in note and "was given to" not in note
    assert "are empty" not in generations_note(metrics(before), metrics(before), before, before, "gpt2")


def test_uploaded_data_has_no_format_line():
    before, after = scored(0, 0, n=20), scored(5, 5, n=20)
    for frame in (before, after):
        frame["format_match"] = math.nan
    note = generations_note(metrics(before), metrics(after), before, after, "gpt2")
    assert "**5 of 20** held-out answers match exactly (**25%**" in note and "format" not in note
    assert "`x`, was given to **15** different prompts where it was wrong." in note
