"""Which of the seven steps a session's run is in: the step cells report, a thread redraws the status line."""

from __future__ import annotations

import threading
import time

from gpu_notebooks.llm_finetuning.explain.workflow import status_text


class RunProgress:
    """One session's Train click as its step cells report it; read from another thread, so under a lock."""

    def __init__(self, clock=time.monotonic):
        self._clock, self._lock = clock, threading.Lock()
        self._state = {"state": "idle", "step": 0, "started": None, "step_started": None}

    def press(self):
        """Train was pressed: a new run's clock starts (its step cells report next)."""
        with self._lock:
            now = self._clock()
            self._state = {"state": "running", "step": 0, "started": now, "step_started": now}

    def begin(self, step):
        """Step `step` (1–7) starts (a run started without a press, as under --smoke, starts here)."""
        with self._lock:
            now = self._clock()
            if self._state["state"] != "running":
                self._state = {"state": "running", "step": 0, "started": now}
            self._state.pop("waiting", None)
            self._state.update(step=step, step_started=now)

    def wait_for_turn(self, gpu=True):
        """The current step waits for another run to give back the GPU (`gpu`) or the machine."""
        with self._lock:
            self._state.update(
                waiting="the GPU" if gpu else "its turn on this machine", waiting_since=self._clock()
            )

    def has_turn(self):
        """The wait is over: this run holds the lease."""
        with self._lock:
            self._state.pop("waiting", None)

    def halt_if(self, condition):
        """Record that the run stopped at its current step when `condition` holds; return it (for mo.stop)."""
        if condition:
            with self._lock:
                self._state.update(state="stopped", stopped_at=self._clock())
        return condition

    def finish(self):
        """The last step is done."""
        with self._lock:
            self._state.update(state="done", finished_at=self._clock())

    @property
    def over(self):
        """True once the run finished or stopped (or never started)."""
        return self.snapshot()["state"] in ("idle", "done", "stopped")

    def snapshot(self):
        """A copy of the state, safe to read while the steps run."""
        with self._lock:
            return dict(self._state)

    def text(self):
        """The status line now; a finished or stopped run's time is frozen at its end."""
        snapshot = self.snapshot()
        end = snapshot.get("finished_at") or snapshot.get("stopped_at") or self._clock()
        return status_text(snapshot, end)


def follow_progress(progress, show, should_exit, alive=lambda: True, interval=0.5):
    """Call show(progress.text()) every `interval` s while the run goes on, then once more with its end.

    Stops early when `should_exit()` (the status cell re-ran) or not `alive()` (the session's kernel thread
    ended: a closed tab), so no thread outlives what it reports on.
    """
    while not should_exit() and alive():
        show(progress.text())
        if progress.over:
            return
        time.sleep(interval)
