"""Command-line options of both apps, read per session: `-- --flag value` under marimo, `--flag value` under Python."""

from __future__ import annotations

import sys

import marimo as mo


def cli_options(argv: list[str] | None = None) -> dict[str, str]:
    """{"smoke": "", "rows": "1000"}: marimo's `cli_args()` inside a notebook run, else `argv` (default sys.argv).

    A function, not a module constant: package modules are imported once per server process, and each
    session (each `marimo run` tab, each export) has its own flags.
    """
    if argv is None and mo.running_in_notebook():
        return {k: str(v) for k, v in mo.cli_args().items()}
    argv = sys.argv[1:] if argv is None else argv
    return {
        a[2:]: (argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "")
        for i, a in enumerate(argv)
        if a.startswith("--")
    }
