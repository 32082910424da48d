"""Process-wide state shared by every session of one server process (one registry)."""

from __future__ import annotations

import sys
import threading
import types


def process_registry():
    """This server process's shared objects (the GPU lease, the warm-up, the Dask client, adapter folders).

    `marimo run` imports package modules once per process but runs each notebook's setup once per session, and
    marimo's module autoreload may execute a package module again: the state lives in one object kept in
    sys.modules, which neither re-runs, so no session or reload ever makes a second lease or client.
    """
    holder = sys.modules.setdefault(
        "gpu_notebooks_process_registry", types.ModuleType("gpu_notebooks_registry")
    )
    return holder.__dict__


def process_gpu_lock():
    """One GPU lock per server process, shared by every viewer."""
    return process_registry().setdefault("lock", threading.Lock())


def process_gpu_lock_guard():
    """A small process-wide lock for shared bookkeeping (warm-up state, adapter folders), not the GPU lock."""
    return process_registry().setdefault("state_lock", threading.Lock())
