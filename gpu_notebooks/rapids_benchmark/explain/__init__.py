"""The benchmark app's learner texts: this run's numbers in, markdown out (no marimo, no GPU)."""

from __future__ import annotations
