"""The start-up warm-up: runs the demo's work on a one-layer model, leaves the RNG and the GPU lock as found."""

import threading
import weakref

import torch

from gpu_notebooks.gpu.lock import gpu_turn
from gpu_notebooks.llm_finetuning.warmup import start_warm_up, warm_up_kernels, warm_up_note, warm_up_state
from gpu_notebooks.registry import process_gpu_lock
from tests.fakes import wait_until


class fresh_state:
    """Run a test with an empty process-wide warm-up state, and put the real one back afterwards."""

    def __enter__(self):
        self.state = warm_up_state()
        self.saved = dict(self.state)
        self.state.clear()
        return self.state

    def __exit__(self, *exc):
        self.state.clear()
        self.state.update(self.saved)


def test_warm_up_runs_the_whole_demo_path_on_one_layer_and_leaves_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    seconds = warm_up_kernels(torch.device("cpu"))
    assert seconds > 0
    assert torch.equal(torch.rand(4), expected)  # a Train click's seeded run is unaffected


def test_start_warm_up_runs_once_per_process_and_a_click_waits_for_it():
    release, calls = threading.Event(), []

    def fake(device):
        calls.append(device)
        release.wait(60)  # the test sets it; the cap only ends a broken test
        return 0.25

    with fresh_state():
        first = start_warm_up(torch.device("cpu"), run=fake)
        assert start_warm_up(torch.device("cpu"), run=fake) is first  # a second viewer starts nothing
        assert wait_until(lambda: calls) and first["status"] == "running"
        assert "still loading" in warm_up_note(torch.device("cuda"), first)
        entered, waited = threading.Event(), []

        def click():  # step 2 of a Train click: it must wait for the warm-up's GPU turn
            with gpu_turn(on_wait=lambda: waited.append(True)):
                entered.set()

        clicker = threading.Thread(target=click)
        clicker.start()
        assert wait_until(lambda: waited == [True])  # the click is queued behind the warm-up…
        assert not entered.is_set()  # …and cannot enter while it runs
        release.set()
        clicker.join(60)
        assert entered.is_set()
        assert wait_until(lambda: first["status"] == "done")
        assert first == {"status": "done", "seconds": 0.25} and len(calls) == 1
        assert "0.2 s" in warm_up_note(torch.device("cuda"), first) or "0.3 s" in warm_up_note(
            torch.device("cuda"), first
        )
        assert warm_up_note(torch.device("cpu"), first) == ""


def test_the_warm_up_is_skipped_rather_than_queued_when_the_gpu_is_busy():
    calls = []
    with fresh_state() as state, gpu_turn():  # a benchmark or another program holds the GPU
        start_warm_up(torch.device("cpu"), run=lambda device: calls.append(device) or 1.0)
        assert wait_until(lambda: state.get("status") == "skipped")
        assert calls == [] and "busy" in warm_up_note(torch.device("cuda"), state)
    assert not process_gpu_lock().locked()


def test_a_failed_warm_up_is_reported_frees_what_it_held_and_is_not_fatal():
    held = []

    def broken(device):
        tensor = torch.zeros(1000)  # stands for the warm-up's GPU tensors
        held.append(weakref.ref(tensor))
        raise RuntimeError("no kernels today")

    with fresh_state() as state:
        start_warm_up(torch.device("cpu"), run=broken)
        assert wait_until(lambda: state.get("status") == "failed")
        assert "no kernels today" in state["error"]
        assert "failed" in warm_up_note(torch.device("cuda"), state)
        assert held[0]() is None  # the error's frames were cleared: nothing of the run stays alive
        assert not process_gpu_lock().locked()
