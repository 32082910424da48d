"""Keep DOCUMENTATION_IMPROVEMENTS.md's "apps' own words" in step with the apps: one source for the words.

The doc's Part 3 holds blocks generated from the apps' own text helpers — the callouts as a user sees them
before a run, for fixed, stated inputs (the app's default settings; no GPU, so nothing of this machine's
leaks in). Each block sits between two markers:

    <!-- generated: NAME (tools/doc_sync.py; do not edit by hand) -->
    ...the helper's output...
    <!-- end generated: NAME -->

`python tools/doc_sync.py` rewrites the blocks from the apps; `python tools/doc_sync.py --check` exits 1 and
names the blocks that differ (tests/test_docs_sync.py runs it in CI), so an edit to an app's words that is
not carried into the doc fails the tests. The hand-written Parts 1 and 2 are held to the apps another way:
tests/test_docs_claims.py requires each of their figures to be recorded in notes/BENCHMARKS.md or sourced,
and tests/test_docs_sync.py recomputes the figures the doc quotes from the apps' arithmetic.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "DOCUMENTATION_IMPROVEMENTS.md"
# A host described by its core count only, so the generated words do not depend on the machine that ran this.
DOC_HOST = {"cpu_count": 16, "total_gb": None, "available_gb": None, "available_bytes": None}
BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w.]+) \(tools/doc_sync.py; do not edit by hand\) -->\n)"
    r"(?P<body>.*?)"
    r"(\n<!-- end generated: (?P=name) -->)",
    re.DOTALL,
)


def _apps():
    sys.path.insert(0, str(ROOT))
    from gpu_notebooks.llm_finetuning import datasets, estimates, lora, models, precision, settings, speed
    from gpu_notebooks.llm_finetuning.explain import (
        lora as lora_texts,
        memory as memory_texts,
        speed as speed_texts,
    )

    # One namespace over the fine-tuning modules the blocks use; the block names keep their `llm.` prefix.
    modules = (
        datasets,
        estimates,
        lora,
        models,
        precision,
        settings,
        speed,
        lora_texts,
        memory_texts,
        speed_texts,
    )
    llm = types.SimpleNamespace(
        **{k: v for m in modules for k, v in vars(m).items() if not k.startswith("_")}
    )
    from gpu_notebooks.rapids_benchmark import cudf_pandas, user_data
    from gpu_notebooks.rapids_benchmark.explain import (
        gpu as rapids_gpu,
        method as rapids_method,
        user_data as rapids_user_data,
    )

    rapids = types.SimpleNamespace(
        gpu=rapids_gpu, method=rapids_method, user=rapids_user_data, cudf_pandas=cudf_pandas, data=user_data
    )
    return rapids, llm


def blocks() -> dict[str, str]:
    """Every generated block's text, by name, rendered by the apps' helpers for the stated inputs."""
    rapids, llm = _apps()
    rapids_gpu, rapids_method = rapids.gpu, rapids.method
    # The app's GPU defaults: GPT-2, r = 8 on all four targets, FP16.
    settings = llm.with_model_defaults(llm.TrainSettings(), "gpt2")
    why = llm.lora_plan(llm.planned_config(settings), settings)
    dataset, _, _ = llm.choose_dataset(settings, None)  # the built-in set
    # The plans a Train click resolves to on a GPU with native BF16 (GPT-2 stays FP16 + GradScaler), and the
    # datasheet row the roofline text uses for that card: built here, as no GPU is needed to write them.
    plan = llm.resolve_precision("fp16", "cuda", True)
    speed = llm.choose_speed_plan(settings.speed, "cuda")
    tokens = settings.batch_size * settings.max_length  # before a run: the most one batch can hold
    estimated = sum(llm.training_memory(why, plan, speed, tokens, tokens).values())
    out = {
        "rapids.explain_why_gpu": rapids_gpu.explain_why_gpu([], DOC_HOST, None),
        "rapids.explain_operations": rapids_method.explain_operations(None),
        "rapids.explain_measurement": rapids_method.explain_measurement(None),
        "rapids.explain_metrics": rapids_gpu.explain_metrics([], None),
        "rapids.explain_cudf_pandas": rapids_method.explain_cudf_pandas(None),
        "rapids.explain_multi_gpu": rapids_method.explain_multi_gpu([], None),
        "rapids.fallback_table_intro": rapids_method.fallback_table_intro(
            rapids.cudf_pandas.PROFILE_SAMPLE_ROWS, rapids.cudf_pandas.FALLBACK_STEP
        ),
        # A server started without `-- --data` (the common case): the upload box alone.
        "rapids.user_intro_text": rapids.user.user_intro_text(rapids.data.UPLOAD_CAP_BYTES, False),
        "llm.intro_text": llm.intro_text(why, settings.model_source, llm.dtype_name(plan.param_dtype)),
        "llm.why_lora_text": llm.why_lora_text(why, settings),
        "llm.why_fp16_text": llm.why_fp16_text(),
        "llm.why_conv1d_text": llm.why_conv1d_text(why),
        "llm.hyperparameter_text": llm.hyperparameter_text(settings, why, llm.train_example_count(dataset)),
        "llm.training_memory_text": llm.training_memory_text(why, settings, plan, speed, tokens, tokens),
        "llm.tf32_text": llm.tf32_text(plan, "cuda", (9, 0), current="highest"),
        "llm.qlora_text": llm.qlora_text(why, plan, settings.model_source, estimated),
        "llm.roofline_text": llm.roofline_text(why, plan, speed, "cuda", "NVIDIA H200", tokens, tokens),
        "llm.utilization_reference_text": llm.utilization_reference_text(),
        "llm.why_fast_text": llm.why_fast_text(settings, why),
        "llm.why_mfu_text": llm.why_mfu_text(why),
    }
    return {name: nested_headings(text.strip()) for name, text in out.items()}


def nested_headings(text: str) -> str:
    """An app's headings (its title, a section's "## 5 · …") one level under the doc's "### block" heading;
    fenced code is left as it is (a `# comment` there is not a heading)."""
    parts = re.split(r"(?m)(^```.*?^```)", text, flags=re.DOTALL) if "```" in text else [text]
    return "".join(
        part if part.startswith("```") else re.sub(r"(?m)^#{1,4} ", "#### ", part) for part in parts
    )


def sync(doc: str, rendered: dict[str, str]) -> tuple[str, list[str]]:
    """The doc with every block re-rendered, and the names of blocks that changed or have no renderer."""
    changed, seen = [], set()

    def replace(match: re.Match) -> str:
        name = match["name"]
        seen.add(name)
        if name not in rendered:
            changed.append(f"{name} (no such block in tools/doc_sync.py)")
            return match.group(0)
        if match["body"].strip() != rendered[name]:
            changed.append(name)
        return match.group(1) + rendered[name] + match.group(4)

    text = BLOCK.sub(replace, doc)
    changed += [f"{name} (missing from the doc)" for name in rendered if name not in seen]
    return text, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the doc is not current; change nothing"
    )
    args = parser.parse_args(argv)
    doc = DOC.read_text(encoding="utf-8")
    text, changed = sync(doc, blocks())
    if args.check:
        for name in changed:
            print(f"DOCUMENTATION_IMPROVEMENTS.md is not current: {name}; run `python tools/doc_sync.py`")
        return 1 if changed else 0
    missing = [name for name in changed if name.endswith("(missing from the doc)")]
    if missing:
        print("add these blocks' markers to the doc first:", ", ".join(missing))
        return 1
    DOC.write_text(text, encoding="utf-8")
    print(f"rewrote {len(changed)} block(s)" if changed else "the doc is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
