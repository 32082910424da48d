"""DOCUMENTATION_IMPROVEMENTS.md does not drift from the apps (issue 16, "one source for the words").

Part 3 of the doc is generated from the apps' text helpers by tools/doc_sync.py; these tests fail when an
app's words change and the doc was not regenerated, and check the hand-written figures the doc derives
from the apps' own arithmetic against that arithmetic.
"""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import doc_sync  # noqa: E402


@pytest.fixture(scope="module")
def rendered():
    return doc_sync.blocks()


def test_the_generated_part_of_the_doc_is_current(rendered):
    _, changed = doc_sync.sync(doc_sync.DOC.read_text(encoding="utf-8"), rendered)
    assert changed == [], f"run `python tools/doc_sync.py`: {changed}"


def test_the_checker_notices_an_edit_a_missing_block_and_an_unknown_one():
    doc = (
        "<!-- generated: a.b (tools/doc_sync.py; do not edit by hand) -->\nold words\n<!-- end generated: a.b -->\n"
        "<!-- generated: z.z (tools/doc_sync.py; do not edit by hand) -->\nx\n<!-- end generated: z.z -->"
    )
    text, changed = doc_sync.sync(doc, {"a.b": "new words", "c.d": "other"})
    assert "new words" in text and "old words" not in text
    assert changed == ["a.b", "z.z (no such block in tools/doc_sync.py)", "c.d (missing from the doc)"]
    assert doc_sync.sync(text, {"a.b": "new words", "z.z": "x"})[1] == []


def test_the_generated_words_do_not_depend_on_this_machine(rendered):
    """Rendered for the stated 16-core host with no GPU: no core count or card of the machine that ran it."""
    import os

    words = rendered["rapids.explain_why_gpu"]
    assert "this machine has 16" in words
    if os.cpu_count() != 16:
        assert f"this machine has {os.cpu_count()}" not in words


def test_the_lora_figures_part_2_quotes_are_the_apps_arithmetic():
    """Part 2 §1's table for GPT-2 small, r = 8, four targets, FP16, against `lora_plan`."""
    from gpu_notebooks.llm_finetuning.lora import lora_plan
    from gpu_notebooks.llm_finetuning.models import planned_config
    from gpu_notebooks.llm_finetuning.settings import TrainSettings, with_model_defaults

    settings = with_model_defaults(TrainSettings(), "gpt2")
    why = lora_plan(planned_config(settings), settings)
    section = doc_sync.DOC.read_text(encoding="utf-8").split("### 1. Why LoRA works")[1].split("### 2.")[0]
    assert f"**{why['lora_params']:,}**" in section
    assert f"{why['base_params']:,}" in section
    assert f"**{why['trainable_pct']:.3f} %**" in section
    assert f"**{why['full_ft_bytes'] / 2**30:.2f} GiB**" in section
    assert f"**{why['lora_bytes'] / 2**20:.0f} MiB**" in section
    assert f"**{why['full_ft_bytes'] / why['lora_bytes']:.1f}×** less" in section
    assert f"**{4 * why['lora_params'] / 2**20:.1f} MiB** adapter" in section
    assert re.search(rf"{why['layers']} wrapped layers", section)


def test_an_apps_headings_nest_under_the_block_heading_and_fenced_code_is_left_alone():
    text = "# Title\n\ntext\n\n```python\n# a comment\n```\n## 5 · Section"
    assert doc_sync.nested_headings(text) == (
        "#### Title\n\ntext\n\n```python\n# a comment\n```\n#### 5 · Section"
    )
