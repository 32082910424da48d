"""Process-wide state shared by every session of one server process (one registry)."""

from __future__ import annotations

import sys
import threading
import types


def process_registry():
    """This server process's shared objects: each `marimo run` viewer re-runs the setup, so they live in sys.modules."""
    holder = sys.modules.setdefault("llm_finetuning_dashboard_gpu_lock", types.ModuleType("gpu_lock"))
    return holder.__dict__


def process_gpu_lock():
    """One GPU lock per server process, shared by every viewer."""
    return process_registry().setdefault("lock", threading.Lock())


def process_gpu_lock_guard():
    """A small process-wide lock for shared bookkeeping (warm-up state, adapter folders), not the GPU lock."""
    return process_registry().setdefault("state_lock", threading.Lock())
