"""The first imports of heavy libraries in a `marimo run` server: one at a time, and never beside marimo's own.

`marimo run` runs every viewer's session as a thread of one server process, so the notebooks' setup blocks
import pandas, torch and transformers for the first time in several threads at once. Two things make that
unsafe, and one process-wide lock (kept in sys.modules, like the registry) covers both:

- two sessions importing the same package concurrently can see it half-initialised
  (`cannot import name 'AutoConfig'`);
- whenever a session starts, marimo's server thread registers its output formatters for every package
  already in `sys.modules` (seen in marimo 0.25.2: `register_formatters()` in
  `marimo._session.managers.kernel`), and that imports `torch.nn` — while another session may still be
  inside `import torch`. The two threads then deadlock on Python's module locks, Python breaks the cycle by
  handing one of them a half-built module, and every session of the server fails with
  `partially initialized module 'torch.nn.parameter'` (a browser test opening three tabs at once caught it).

`import_lock()` returns the lock and, once per process, makes marimo's registration take it too: a session
that starts while another imports waits (a few seconds, once per server) instead of breaking it.
"""

from __future__ import annotations

import sys
import threading
import types

_HOLDER = "gpu_notebooks_import_lock"


def import_lock() -> threading.RLock:
    """The process-wide lock to hold around a setup block's imports (marimo's registration waits for it)."""
    holder = sys.modules.setdefault(_HOLDER, types.ModuleType(_HOLDER))
    lock = holder.__dict__.setdefault("lock", threading.RLock())
    _registration_waits_for(lock)
    return lock


def _registration_waits_for(lock) -> None:
    """Wrap marimo's per-session formatter registration so that it runs under `lock` (once per process)."""
    try:
        from marimo._session.managers import kernel
    except ImportError:  # a marimo without this module (a later layout): nothing of ours to wrap
        return
    original = getattr(kernel, "register_formatters", None)
    if original is None or getattr(original, "waits_for_imports", False):
        return

    def register_formatters_after_imports(*args, **kwargs):
        with lock:
            return original(*args, **kwargs)

    register_formatters_after_imports.waits_for_imports = True
    kernel.register_formatters = register_formatters_after_imports
