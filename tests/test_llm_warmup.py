"""The start-up warm-up: runs the demo's work on a one-layer model, leaves the RNG and the GPU lock as found."""

import threading
import time

import torch

from llm_finetuning_dashboard import (
    gpu_turn,
    process_gpu_lock,
    start_warm_up,
    warm_up_kernels,
    warm_up_note,
    warm_up_state,
)


def test_warm_up_runs_the_whole_demo_path_on_one_layer_and_leaves_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    seconds = warm_up_kernels(torch.device("cpu"))
    assert seconds > 0
    assert torch.equal(torch.rand(4), expected)  # a Train click's seeded run is unaffected
    assert not process_gpu_lock().locked()


def test_start_warm_up_runs_once_per_process_in_the_background_holding_the_gpu(monkeypatch):
    state = warm_up_state()
    saved = dict(state)
    state.clear()
    release, calls = threading.Event(), []

    def fake(device):
        calls.append(device)
        assert process_gpu_lock().locked()  # holds the GPU: a Train click waits for it
        release.wait(5)
        return 0.25

    try:
        first = start_warm_up(torch.device("cpu"), run=fake)
        assert start_warm_up(torch.device("cpu"), run=fake) is first  # a second viewer starts nothing
        deadline = time.time() + 5
        while not calls and time.time() < deadline:
            time.sleep(0.01)
        assert first["status"] == "running"
        waited = []
        release.set()
        with gpu_turn(on_wait=lambda: waited.append(True)):
            pass
        deadline = time.time() + 5
        while first["status"] == "running" and time.time() < deadline:
            time.sleep(0.01)
        assert first == {"status": "done", "seconds": 0.25} and len(calls) == 1
        assert "0.2 s" in warm_up_note(torch.device("cuda")) or "0.3 s" in warm_up_note(torch.device("cuda"))
        assert warm_up_note(torch.device("cpu")) == ""
    finally:
        state.clear()
        state.update(saved)


def test_a_failed_warm_up_is_reported_and_not_fatal():
    state = warm_up_state()
    saved = dict(state)
    state.clear()

    def broken(device):
        raise RuntimeError("no kernels today")

    try:
        start_warm_up(torch.device("cpu"), run=broken)
        deadline = time.time() + 5
        while state.get("status") == "running" and time.time() < deadline:
            time.sleep(0.01)
        assert state["status"] == "failed" and "no kernels today" in state["error"]
        assert "failed" in warm_up_note(torch.device("cuda"))
        assert not process_gpu_lock().locked()
    finally:
        state.clear()
        state.update(saved)
