"""The fine-tuning app opened in `marimo edit`: a fresh open shows no cell as stale (issue 24, item 15)."""

from pathlib import Path

from marimo._ast.load import load_app

NOTEBOOK = Path(__file__).resolve().parents[1] / "llm_finetuning_dashboard.py"


def bare_markdown_cells(path):
    """First lines of the cells marimo's compiler reads as markdown only (a lone `mo.md("...")`)."""
    app = load_app(str(path))
    app._maybe_initialize()
    return [
        cell._cell.markdown.splitlines()[0]
        for _, cell in app._cell_manager.valid_cells()
        if cell._cell.markdown is not None
    ]


def test_no_cell_is_rendered_at_open_instead_of_run():
    """`marimo edit` (auto_instantiate) renders a lone-`mo.md` cell's text when the notebook opens and skips
    running it (Kernel._handle_markdown_cells_on_instantiate); the editor then shows that cell as never run,
    with the stale mark and a lit "run stale cells" button. Every cell of the app must be one that runs."""
    assert bare_markdown_cells(NOTEBOOK) == []
