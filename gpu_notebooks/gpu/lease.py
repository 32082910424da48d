"""The GPU lease a fine-tuning run holds from loading to release, on the machine-wide lock file."""

from __future__ import annotations

import contextlib
import threading
import time

from gpu_notebooks.gpu.lock import gpu_lock_path
from gpu_notebooks.registry import process_gpu_lock, process_registry


class GpuLease:
    """The GPU held by one holder: one viewer at a time in this process, one program at a time on this machine.

    A Train click takes one lease in step 2 and keeps it across the step cells until `FineTuneRun.release`
    (step 7, or any stop or failure) gives it back, so two viewers never share the GPU and every memory
    figure of a run is read while no other run of this process allocates. The file lock is the one the
    RAPIDS dashboard takes. The holder's thread is recorded: a session's cells all run on its thread, so a
    lease its previous run left behind (a cell that raised) is given back before that session waits.
    """

    def __init__(self, path=None):
        self.path = path or gpu_lock_path()
        self.held, self.waited_s, self.owner = False, 0.0, None
        self._handle = None

    def acquire(self, on_wait=None, wait=True):
        """Take the lease (True), calling `on_wait()` once if someone else has it; wait=False → False at once."""
        registry, lock = process_registry(), process_gpu_lock()
        stale = registry.get("lease_holder")
        if stale is not None and stale is not self and stale.owner == threading.get_ident():
            stale.release()
        started, told = time.perf_counter(), False
        if not lock.acquire(blocking=False):
            if not wait:
                return False
            if on_wait is not None:
                on_wait()
            told = True
            lock.acquire()
        try:
            import fcntl
        except ImportError:  # Windows: the in-process lock alone
            fcntl = None
        if fcntl is not None:
            handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lease
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    handle.close()
                    lock.release()
                    return False
                if on_wait is not None and not told:
                    on_wait()
                fcntl.flock(handle, fcntl.LOCK_EX)
            self._handle = handle
        self.held, self.owner = True, threading.get_ident()
        self.waited_s = time.perf_counter() - started
        registry["lease_holder"] = self
        return True

    def release(self):
        """Give the lease back (a no-op when not held)."""
        if not self.held:
            return
        self.held = False
        registry = process_registry()
        if registry.get("lease_holder") is self:
            registry["lease_holder"] = None
        if self._handle is not None:
            import fcntl

            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        process_gpu_lock().release()

    def __del__(self):
        # A lease whose holder vanished (its session closed) goes back; at interpreter exit the module's
        # globals may already be gone, and there is nothing left to give back to.
        if getattr(self, "held", False):
            with contextlib.suppress(Exception):
                self.release()


@contextlib.contextmanager
def gpu_turn(on_wait=None, path=None, wait=True):
    """A GpuLease for the length of a `with` block: yields True once held, or False at once with wait=False."""
    lease = GpuLease(path)
    held = lease.acquire(on_wait=on_wait, wait=wait)
    try:
        yield held
    finally:
        lease.release()
