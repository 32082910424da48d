"""DOCUMENTATION_IMPROVEMENTS.md quotes no figure without a source, and none of the claims issue 16 found false.

The rule (issue 16): a number in prose is computed from this run or this card, or it is labelled with its
card, date and source. For the doc, which has no run of its own, that means each figure with a unit
(ms, s, GB, GB/s, TB/s, ×, %, tokens/s, TFLOPS, MiB, GiB, ...) must satisfy one of:

- it is **recorded** in notes/BENCHMARKS.md (same value, same unit) **and** its context says
  "measured on <card>, <date>" — a "measured" label does not excuse a figure that was never recorded;
- its context names another source: a URL, an arXiv paper, a datasheet, a library's docs, a pull request,
  the NVML API reference, an app constant in backticks (`MEMORY_HEADROOM`), or "arithmetic" (a figure
  derived from others on the same line).

The context of a figure is its paragraph, its list item (with the sentence that introduces the list), or its
table row (with the table's header row and the paragraph just above the table). Inline code and LaTeX are
ignored when figures are looked for (command lines, formulas). Pure text, well under a second.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "DOCUMENTATION_IMPROVEMENTS.md"
BENCHMARKS = ROOT / "notes" / "BENCHMARKS.md"

NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
UNITS = r"GB/s|TB/s|MB/s|MiB/s|GiB/s|tokens/s|tok/s|TFLOPS|TFLOP/s|GiB|MiB|GB|MB|TB|ms|µs|s|%"
# × and x only straight after the number (138×, 0.4x), so "8 × 768" (a product) is not a speedup.
FIGURE = re.compile(
    rf"(?<![\w.,/-])(?P<a>{NUM})(?P<ak>[KM])?"
    rf"(?:(?:\s?[–-]\s?|\s(?:to|and)\s)(?P<b>{NUM})(?P<bk>[KM])?)?"
    rf"(?:(?P<times>[×x])|\s?(?P<unit>{UNITS}))(?![\w/])"
)
MEASURED = re.compile(r"measured on [^.;]*?\b20\d\d-\d\d-\d\d", re.IGNORECASE)
SOURCES = [
    r"https?://",
    r"\barXiv\b",
    r"\bdatasheets?\b",
    r"\bPRs? #\d+",
    r"\b(?:docs|documentation)\b",
    r"\bNVML (?:API|reference)\b",
    r"\barithmetic\b",
]
# An app constant in backticks, upper case only (`MEMORY_HEADROOM`), so `xdf` or `value` does not count.
SOURCE = re.compile("|".join(SOURCES), re.IGNORECASE)
CONSTANT = re.compile(r"`[A-Z][A-Z0-9_]{2,}`")
# Inline code, LaTeX, and card names such as "H100 80GB HBM3" are not figures.
CODE = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\b\d+GB(?= HBM)", re.DOTALL)

# Claims issue 16 lists as false or misleading; none may come back. Lower case, matched case-insensitively,
# dashes and spaces normalised.
FALSE_CLAIMS = [
    "tens of microseconds",
    "below roughly a million rows",
    "collide on a few hot addresses",
    "no longer fits in the fast caches",
    "no longer fits in cache",
    "hash table with 100k slots",
    "no gpu accelerates",
    "which no dataframe library runs in parallel",
    "200-300 gb/s",
    "ten to seventeen times",
    "uses its own in-process lock",
    "its own in-process lock",
    "never more flattering",
    "so the effective step size does not change",
    "because only small matrices move and b starts at zero",
    "on older gpus the app falls back to fp16",
    "after ~20m tokens or 1,000 steps",
    "mostly because `cudf.from_pandas` copies column by column from ordinary pageable",
    "its hbm3",
    "180-400",
    "a gpu hash table with 100k slots",
]


def _value(number: str, suffix: str | None) -> float:
    return float(number.replace(",", "")) * {"K": 1e3, "M": 1e6}.get(suffix or "", 1.0)


def _unit(match: re.Match) -> str:
    unit = "×" if match["times"] else match["unit"]
    return {"tok/s": "tokens/s", "TFLOP/s": "TFLOPS"}.get(unit, unit)


def figures(text: str) -> list[tuple[str, float, str]]:
    """(as written, value, unit) for every figure with a unit; a range gives both ends."""
    found = []
    for m in FIGURE.finditer(CODE.sub(" ", text)):
        unit = _unit(m)
        found.append((m.group(0), _value(m["a"], m["ak"] or m["bk"]), unit))
        if m["b"]:
            found.append((m.group(0), _value(m["b"], m["bk"]), unit))
    return found


def recorded(benchmarks: str) -> tuple[set, set]:
    """Figures in BENCHMARKS.md: (value, unit) pairs, and bare numbers that fill a table cell on their own."""
    with_unit = {(round(v, 6), u) for _, v, u in figures(benchmarks)}
    # A median's min–max in parentheses carries its unit: "906 ms (893–916)" records 893 ms and 916 ms.
    for m in re.finditer(rf"{FIGURE.pattern}\s\((?P<lo>{NUM})[–-](?P<hi>{NUM})\)", CODE.sub(" ", benchmarks)):
        for end in ("lo", "hi"):
            with_unit.add((round(_value(m[end], None), 6), _unit(m)))
    bare = set()
    for line in benchmarks.splitlines():
        if line.lstrip().startswith("|"):
            for cell in line.strip().strip("|").split("|"):
                cell = cell.strip().strip("*").strip()
                if re.fullmatch(NUM, cell):
                    bare.add(round(_value(cell, None), 6))
    return with_unit, bare


def units_of(doc: str) -> list[tuple[int, str, str]]:
    """(line number, the text checked, its context) for each paragraph, list item and table row."""
    lines = doc.splitlines()
    out = []
    block: list[tuple[int, str]] = []
    previous_paragraph = ""  # the last plain paragraph, a caption for a table or a lead-in for a list

    def flush():
        nonlocal block, previous_paragraph
        if not block:
            return
        first = block[0][1].lstrip()
        if first.startswith("|"):
            header = block[0][1]
            for number, row in block:
                out.append((number, row, "\n".join([previous_paragraph, header, row])))
        elif re.match(r"(?:[-*]|\d+\.)\s", first):
            items: list[tuple[int, list[str]]] = []
            for number, text in block:
                if re.match(r"\s*(?:[-*]|\d+\.)\s", text) and (not items or not text.startswith("     ")):
                    items.append((number, [text]))
                else:
                    items[-1][1].append(text)
            for number, item in items:
                body = "\n".join(item)
                out.append((number, body, previous_paragraph + "\n" + body))
        else:
            body = "\n".join(text for _, text in block)
            out.append((block[0][0], body, body))
            if not first.startswith("#"):
                previous_paragraph = body
        block = []

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        starts_table = stripped.startswith("|") and not (block and block[0][1].lstrip().startswith("|"))
        ends_table = block and block[0][1].lstrip().startswith("|") and not stripped.startswith("|")
        if not stripped or stripped.startswith("#") or starts_table or ends_table:
            flush()
        if stripped.startswith("#"):
            block = [(number, line)]
            flush()
        elif stripped:
            block.append((number, line))
    flush()
    return out


def unsourced(doc: str, benchmarks: str) -> list[str]:
    """Every figure in `doc` that is neither recorded and labelled as measured, nor labelled with a source."""
    with_unit, bare = recorded(benchmarks)
    problems = []
    for number, text, context in units_of(doc):
        has_source = bool(SOURCE.search(context) or CONSTANT.search(context))
        says_measured = bool(MEASURED.search(context))
        for written, value, unit in figures(text):
            if has_source:
                continue
            is_recorded = (round(value, 6), unit) in with_unit or round(value, 6) in bare
            if is_recorded and says_measured:
                continue
            why = "recorded, but no 'measured on <card>, <date>'" if is_recorded else "not in BENCHMARKS.md"
            problems.append(f"line {number}: {written!r} ({why}): {text.strip()[:100]}")
    return problems


def false_claims(doc: str) -> list[str]:
    flat = re.sub(r"\s+", " ", doc.lower().replace("–", "-").replace("—", "-"))
    return [claim for claim in FALSE_CLAIMS if claim in flat]


# --- the checker itself can fail --------------------------------------------------------------------------

OLD_LINES = """\
#### 5.1 100M rows (2.5 GB table)

| Operation | pandas median | cuDF median | Speedup on GPU | End to end (with copies) |
|---|---|---|---|---|
| filter | 822 ms | 6.0 ms | **138x** | 0.4x |

fifteen timed pandas repeats (3 × the sum of the medians). Peak GPU memory was **10.4 GB**.

| A whole server socket | 200–300 GB/s | typical figure quoted in the app |
"""

BENCH_SAMPLE = """\
NVIDIA H100 80GB HBM3, 2026-11-25.

| op | pandas | cuDF | speedup |
|---|---|---|---|
| filter | 906 ms (893–916) | 6.2 ms | 145× |

Peak GPU memory (NVML, CUDA context included): **13.2 GB**. Copies at 55.3 GB/s.
"""


def test_figure_pattern_reads_units_ranges_and_speedups_but_not_products_or_code():
    got = [(v, u) for _, v, u in figures("filter 822 ms, **138x**, 13.1–14.0 GB, 12.6K tok/s, 0.939 %")]
    assert got == [(822, "ms"), (138, "×"), (13.1, "GB"), (14.0, "GB"), (12600, "tokens/s"), (0.939, "%")]
    assert figures("8 × 768 = 6,144 and `--rows 100 s` and $2 s$ and mask 0x4 and 2 steps") == []


def test_checker_flags_the_old_docs_unsourced_figures():
    problems = " ".join(unsourced(OLD_LINES, BENCH_SAMPLE))
    for figure in ("822 ms", "6.0 ms", "138x", "10.4 GB", "200–300 GB/s"):
        assert repr(figure) in problems or f"'{figure}" in problems, figure


def test_checker_wants_a_measured_label_for_recorded_figures_and_accepts_sources():
    bare = "| filter | 906 ms | 6.2 ms | 145× |\n"
    assert len(unsourced(bare, BENCH_SAMPLE)) == 3
    labelled = "Measured on an NVIDIA H100 80GB HBM3, 2026-11-25:\n\n" + bare
    assert unsourced(labelled, BENCH_SAMPLE) == []
    assert unsourced("Its min-max was 893–916 ms, measured on an H100, 2026-11-25.", BENCH_SAMPLE) == []
    # A "measured" label does not excuse a figure that was never recorded.
    assert len(unsourced("Peak 10.4 GB, measured on an H100, 2026-11-25.", BENCH_SAMPLE)) == 1
    assert unsourced("H200: 4.8 TB/s (NVIDIA H200 datasheet).", BENCH_SAMPLE) == []
    assert unsourced("8 channels × 4800 MT/s × 8 B = 307 GB/s (arithmetic).", BENCH_SAMPLE) == []
    assert unsourced("Keeps 15% spare (`MEMORY_HEADROOM`).", BENCH_SAMPLE) == []
    assert len(unsourced("Keeps 15% spare (`headroom`).", BENCH_SAMPLE)) == 1


def test_false_claims_are_found_across_line_breaks_and_dash_styles():
    assert false_claims("fixed costs of tens of\nmicroseconds; a socket streams 200-300 GB/s") == [
        "tens of microseconds",
        "200-300 gb/s",
    ]


# --- the document ----------------------------------------------------------------------------------------


GENERATED = re.compile(r"<!-- generated: [\w.]+ .*?<!-- end generated: [\w.]+ -->", re.DOTALL)


def hand_written(doc: str) -> str:
    """The doc without Part 3's generated blocks (line numbers kept). Those blocks are the apps' words for
    stated inputs: their figures are computed by the apps (tests/test_llm_*.py and tests/test_rapids_prose.py
    check them), and tests/test_docs_sync.py checks the blocks are current. The false claims are looked for
    in the whole doc, generated blocks included."""
    return GENERATED.sub(lambda m: "\n" * m.group(0).count("\n"), doc)


def test_generated_blocks_are_left_out_of_the_figure_rule_and_nothing_else():
    doc = "a 5 ms\n<!-- generated: x.y (tools) -->\nb 7 ms\n<!-- end generated: x.y -->\nc 9 ms"
    assert hand_written(doc) == "a 5 ms\n\n\n\nc 9 ms"


def test_every_figure_in_the_doc_is_recorded_or_sourced():
    problems = unsourced(
        hand_written(DOC.read_text(encoding="utf-8")), BENCHMARKS.read_text(encoding="utf-8")
    )
    assert not problems, "figures without a source:\n" + "\n".join(problems)


def test_the_doc_repeats_none_of_the_claims_issue_16_found_false():
    assert false_claims(DOC.read_text(encoding="utf-8")) == []
