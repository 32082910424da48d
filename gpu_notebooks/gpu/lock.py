"""The machine-wide GPU lease both apps take, so two viewers never share the GPU."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable

# One machine-wide lock file shared with the fine-tuning app; tests point GPU_NOTEBOOKS_LOCK_PATH elsewhere.
GPU_LOCK_ENV = "GPU_NOTEBOOKS_LOCK_PATH"
DEFAULT_GPU_LOCK_PATH = os.path.join(tempfile.gettempdir(), "gpu-learning-notebooks.lock")


def gpu_lock_path() -> str:
    """The machine-wide lock file: $GPU_NOTEBOOKS_LOCK_PATH if set, else one file in the OS temp dir."""
    return os.environ.get(GPU_LOCK_ENV) or DEFAULT_GPU_LOCK_PATH


@contextlib.contextmanager
def gpu_lock(on_wait: Callable[[], None] | None = None, path: str | None = None):
    """Hold the GPU for this run; a second viewer (any app, any process on this machine) waits its turn.

    Yields a dict whose "waited_s" is how long this run waited for the lock (0.0 when it was free).
    """
    lease = {"waited_s": 0.0}
    try:
        import fcntl
    except ImportError:  # Windows: no file locks; fall back to no lock rather than break
        yield lease
        return
    with open(path or gpu_lock_path(), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            t0 = time.perf_counter()
            fcntl.flock(handle, fcntl.LOCK_EX)
            lease["waited_s"] = time.perf_counter() - t0
        try:
            yield lease
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
