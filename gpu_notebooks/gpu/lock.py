"""The one GPU lease of both apps: one holder at a time in this process, one program at a time on this machine."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable

import filelock

from gpu_notebooks.registry import process_gpu_lock, process_registry

# One machine-wide lock file for both apps; tests point GPU_NOTEBOOKS_LOCK_PATH elsewhere.
GPU_LOCK_ENV = "GPU_NOTEBOOKS_LOCK_PATH"
DEFAULT_GPU_LOCK_PATH = os.path.join(tempfile.gettempdir(), "gpu-learning-notebooks.lock")


def gpu_lock_path() -> str:
    """The machine-wide lock file: $GPU_NOTEBOOKS_LOCK_PATH if set, else one file in the OS temp dir."""
    return os.environ.get(GPU_LOCK_ENV) or DEFAULT_GPU_LOCK_PATH


class GpuLease:
    """The GPU held by one holder: one viewer at a time in this process, one program at a time on this machine.

    Two locks: a process-wide threading lock (every `marimo run` viewer is a thread of one process) and a
    file lock (`filelock`) that other processes on the machine, the other app included, take too. A
    benchmark holds it for one `with gpu_turn():` block; a Train click takes one lease in step 2 and keeps it
    across the step cells until `FineTuneRun.release` (step 7, or any stop or failure). The holder's thread
    is recorded: a session's cells all run on its thread, so a lease its previous run left behind (a cell
    that raised) is given back before that session waits. A lease is true while held.
    """

    def __init__(self, path: str | None = None):
        self.path = path or gpu_lock_path()
        self.held, self.waited_s, self.owner = False, 0.0, None
        self._file_lock: filelock.BaseFileLock | None = None

    def __bool__(self) -> bool:
        return self.held

    def acquire(self, on_wait: Callable[[], None] | None = None, wait: bool = True) -> bool:
        """Take the lease (True), calling `on_wait()` once if someone else has it; wait=False → False at once."""
        registry, lock = process_registry(), process_gpu_lock()
        stale = registry.get("lease_holder")
        if stale is not None and stale is not self and stale.owner == threading.get_ident():
            stale.release()
        started, told, waited = time.perf_counter(), False, False
        if not lock.acquire(blocking=False):
            if not wait:
                return False
            if on_wait is not None:
                on_wait()
            told = waited = True
            lock.acquire()
        # thread_local=False: a lease taken on one thread may be given back on another (a closed session).
        file_lock = filelock.FileLock(self.path, thread_local=False)
        try:
            file_lock.acquire(timeout=0)
        except filelock.Timeout:
            if not wait:
                lock.release()
                return False
            if on_wait is not None and not told:
                on_wait()
            waited = True
            file_lock.acquire()
        self._file_lock = file_lock
        self.held, self.owner = True, threading.get_ident()
        self.waited_s = time.perf_counter() - started if waited else 0.0
        registry["lease_holder"] = self
        return True

    def release(self) -> None:
        """Give the lease back (a no-op when not held)."""
        if not self.held:
            return
        self.held = False
        registry = process_registry()
        if registry.get("lease_holder") is self:
            registry["lease_holder"] = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        process_gpu_lock().release()

    def __del__(self):
        # A lease whose holder vanished (its session closed) goes back; at interpreter exit the module's
        # globals may already be gone, and there is nothing left to give back to.
        if getattr(self, "held", False):
            with contextlib.suppress(Exception):
                self.release()


@contextlib.contextmanager
def gpu_turn(on_wait: Callable[[], None] | None = None, path: str | None = None, wait: bool = True):
    """A GpuLease for the length of a `with` block: yields the lease (true once held; false at once with
    wait=False when someone else has it); `lease.waited_s` is how long it waited."""
    lease = GpuLease(path)
    lease.acquire(on_wait=on_wait, wait=wait)
    try:
        yield lease
    finally:
        lease.release()


def lock_wait_text(has_gpu: bool) -> str:
    """What a queued viewer waits for: the GPU, or (on a machine without one) the other run to finish."""
    if has_gpu:
        return (
            "**Waiting for the GPU** — another viewer is running a benchmark or a training job on this card. "
            "Yours starts as soon as it finishes."
        )
    return (
        "**Waiting for the other run to finish** — this machine has no GPU, but the apps still take turns "
        "(one benchmark or training run at a time on this machine) so they do not slow each other's timings. "
        "Yours starts as soon as it finishes."
    )


def lock_waited_text(waited_s: float, has_gpu: bool) -> str:
    """One line saying how long this run waited for its turn, or '' when it did not wait."""
    if waited_s <= 0:
        return ""
    what = "the GPU" if has_gpu else "its turn (another run was in progress)"
    return f"Waited {waited_s:.1f} s for {what}."
