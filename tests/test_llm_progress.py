"""The status line beside Train (issue 24, item 12): what the step cells report, and the thread that redraws it."""

import contextlib
import threading
import time

import torch

from gpu_notebooks.gpu.lock import GpuLease
from gpu_notebooks.llm_finetuning.explain.workflow import STEP_TITLES, status_text, steps_heading_text
from gpu_notebooks.llm_finetuning.precision import resolve_precision
from gpu_notebooks.llm_finetuning.progress import RunProgress, follow_progress
from gpu_notebooks.llm_finetuning.settings import TrainSettings
from gpu_notebooks.llm_finetuning.steps import load_step, show_waiting
from gpu_notebooks.llm_finetuning.tasks import builtin_examples


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_line_names_the_running_step_of_seven_and_the_time_since_train():
    clock = Clock()
    progress = RunProgress(clock)
    assert "Press **Train**" in progress.text() and progress.over
    progress.press()
    assert "Starting the 7 steps" in progress.text() and not progress.over
    clock.now = 1.0
    progress.begin(1)
    clock.now = 3.0
    progress.begin(2)
    clock.now = 65.0
    text = progress.text()
    assert (
        "**Running step 2 of 7 — tokenizer and model** · 1 min 02 s in this step, 1 min 05 s since Train"
        in text
    )
    assert "(#the-seven-steps)" in text  # a link down to the steps


def test_a_stopped_or_finished_run_freezes_its_time_and_ends_the_line():
    clock = Clock()
    progress = RunProgress(clock)
    progress.press()
    progress.begin(3)
    clock.now = 12.0
    assert progress.halt_if(False) is False and not progress.over
    assert progress.halt_if(True) is True and progress.over
    clock.now = 99.0
    assert "**Stopped at step 3 of 7 — LoRA injection** after 12 s" in progress.text()
    progress.press()  # the next Train click starts over
    for step in range(1, 8):
        progress.begin(step)
    clock.now = 140.0
    progress.finish()
    clock.now = 500.0
    assert progress.text().startswith("✓ **All 7 steps done** in 41 s")


def test_a_run_without_a_press_starts_at_step_one():
    """Under --smoke no button is pressed: step 1 starts the clock."""
    clock = Clock()
    progress = RunProgress(clock)
    clock.now = 5.0
    progress.begin(1)
    clock.now = 7.0
    assert (
        "**Running step 1 of 7 — environment and precision** · 2 s in this step, 2 s since Train"
        in progress.text()
    )


def test_the_thread_redraws_until_the_run_ends_then_draws_its_end_once():
    progress, shown, started = RunProgress(), [], threading.Event()
    progress.press()

    def show(text):
        shown.append(text)
        started.set()

    thread = threading.Thread(
        target=follow_progress, args=(progress, show, lambda: False), kwargs={"interval": 0.01}
    )
    thread.start()
    started.wait(30)
    progress.begin(1)
    progress.finish()
    thread.join(30)
    assert not thread.is_alive() and shown[-1].startswith("✓ **All 7 steps done**")
    assert sum("All 7 steps done" in text for text in shown) == 1


def test_the_thread_stops_when_its_cell_reruns_or_its_session_is_gone():
    progress = RunProgress()
    progress.press()  # a run that never ends: only the two exits can stop the thread
    for exits in ({"should_exit": lambda: True}, {"should_exit": lambda: False, "alive": lambda: False}):
        thread = threading.Thread(target=follow_progress, args=(progress, lambda text: None), kwargs=exits)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()


def test_the_steps_heading_lists_the_steps_the_line_counts():
    heading = steps_heading_text()
    assert heading.startswith("## The seven steps") and len(STEP_TITLES) == 7
    assert all(f"{n} {title}" in heading for n, title in enumerate(STEP_TITLES, start=1))
    assert "Press **Train**: the 7 steps" in status_text({"state": "idle", "step": 0}, 0)


class LoadedEnough(Exception):
    """Raised by the test's loader once it has seen what it came for."""


def test_a_run_waiting_for_the_gpu_says_so_then_runs_once_it_has_its_turn():
    """Two viewers: the second one's line says it waits for the machine, not that it loads, until it has the lease."""
    holder = GpuLease()
    assert holder.acquire()
    progress, seen = RunProgress(), {}
    progress.press()
    progress.begin(2)

    def loader(*args):
        seen["while loading"] = progress.text()
        raise LoadedEnough

    def second_viewer():
        with contextlib.suppress(LoadedEnough):
            load_step(
                TrainSettings(model_source="tiny"),
                builtin_examples(),
                torch.device("cpu"),
                resolve_precision("fp32", "cpu"),
                on_wait=lambda: show_waiting(torch.device("cpu"), progress),
                loader=loader,
                on_turn=progress.has_turn,
            )

    thread = threading.Thread(target=second_viewer)
    thread.start()
    try:
        for _ in range(600):
            if "waits for" in progress.text():
                break
            time.sleep(0.05)
        assert "**Step 2 of 7 waits for its turn on this machine**" in progress.text()
    finally:
        holder.release()
        thread.join(60)
    assert seen["while loading"].startswith("**Running step 2 of 7 — tokenizer and model**")
