"""Each app runs headless end to end on a CPU: `marimo export html app.py -- --smoke` must exit 0."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def export(app: str, out: Path, *flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "marimo", "export", "html", app, "-o", str(out), "--", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("flags", [("--smoke",), ("--smoke", "--cpu")])
def test_rapids_dashboard_smoke_export(tmp_path, flags):
    out = tmp_path / "rapids.html"
    proc = export("rapids_benchmark_dashboard.py", out, *flags)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = out.read_text()
    assert "Finished in" in html and "measurements over" in html
    assert "Running pandas only" in html or "GPU engine ready" in html
    assert "Understand what you measured" in html
    # Only written when Polars' results were compared with pandas' in this run: the page embeds the app's
    # source too, which holds "checks of {names}" but never the filled-in sentence.
    # 2 engines (Polars, DuckDB) × 2 sizes × every op (the five, the two reads and the pipeline); --cpu too.
    from gpu_notebooks.rapids_benchmark.ops import ALL_OPS

    assert (
        f"{2 * 2 * len(ALL_OPS)} checks of DuckDB, Polars over {2 * len(ALL_OPS)} (size, operation) pairs"
        in html
    )
    # The intro counts the operations the app runs (it once said five while the table showed eight).
    from gpu_notebooks.rapids_benchmark.explain.method import count_words

    assert f"the same {count_words(len(ALL_OPS))} DataFrame operations" in html
    # The pipeline's headline, filled in (the literal in the embedded source ends differently).
    assert "agree across engines \\u2713." in html or "agree across engines ✓." in html


def test_rapids_smoke_run_checks_every_result_inside_the_marimo_runtime():
    """Run the notebook as marimo runs it (cells, private names and all) and read the checks it made.

    Importing helpers is not enough: marimo treats `_name` functions as cell-private, which once broke
    every comparison in the app while the imported helpers passed their tests.
    """
    code = (
        "import sys; sys.argv = ['app', '--smoke']\n"
        "import rapids_benchmark_dashboard as app\n"
        "outputs, defs = app.app.run()\n"
        "summary = defs['summary']\n"
        "print('MATCHES', sorted(set(summary['match'])), len(summary))\n"
        "assert (summary['match'] == '✓').all(), summary['detail'].tolist()\n"
        "assert not defs['bench']['errors'], defs['bench']['errors']\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MATCHES ['✓']" in proc.stdout


def test_the_section_numbers_read_in_order_before_any_run():
    """Headings once read 1, 2, 4, 5 until a run made section 3: every numbered heading shows without a run."""
    code = (
        "import re, sys; sys.argv = ['app']\n"
        "import rapids_benchmark_dashboard as app\n"
        "outputs, defs = app.app.run()\n"
        "assert 'bench' not in defs  # no run happened\n"
        "html = ' '.join(getattr(o, 'text', '') or '' for o in outputs)\n"
        "print('NUMBERS', [int(n) for n in re.findall(r'<h2[^>]*>(\\d+) · ', html)])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    numbers = ast.literal_eval(proc.stdout.split("NUMBERS", 1)[1].strip())
    assert numbers and numbers == list(range(1, len(numbers) + 1)), numbers


def test_no_cell_is_one_that_marimo_edit_opens_stale():
    """marimo renders a cell that is only `mo.md("...")` on open without running it; the editor then marks it
    stale ("Run all stale cells" on a fresh open, 2 cells here). marimo's own test for such a cell decides."""
    from marimo._ast.compiler import extract_markdown

    import rapids_benchmark_dashboard as notebook

    pure = [code.splitlines()[0] for code in notebook.app._cell_manager.codes() if extract_markdown(code)]
    assert pure == []
