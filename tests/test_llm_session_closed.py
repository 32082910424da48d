"""A closed tab's training run: once marimo closes the viewer's session, step 5 stops after the group of steps
under way, frees the model and gives the GPU lease back (the benchmark app's twin is test_rapids_session.py)."""

import torch
from marimo._session.managers.queue import QueueManagerImpl

import gpu_notebooks.llm_finetuning.steps as steps
from gpu_notebooks.llm_finetuning.precision import resolve_precision
from gpu_notebooks.llm_finetuning.settings import TrainSettings
from gpu_notebooks.llm_finetuning.steps import inject_step, load_step, prepare_step, train_step_body
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.registry import process_gpu_lock
from tests.test_rapids_session import run_in_session

CPU = torch.device("cpu")


def tiny_run(epochs):
    data = builtin_examples()
    settings = TrainSettings(model_source="tiny", epochs=epochs, batch_size=16, max_length=64)
    run, facts = load_step(settings, data, CPU, resolve_precision("fp32", "cpu"))
    assert not facts["out_of_memory"] and inject_step(run)[1] is None and prepare_step(run, data)[1] is None
    return run, data[data["split"] == "eval"]


def test_training_whose_session_closes_stops_frees_the_model_and_gives_the_lease_back(monkeypatch):
    monkeypatch.setattr(steps, "SESSION_CHECK_S", 0.0)  # look after every record
    queues = QueueManagerImpl(use_multiprocessing=False)  # `marimo run`: the session's in-process queues

    def close_after_two_steps(record, sampler, so_far):
        if len(so_far["train_records"]) == 2:
            queues.close_queues()  # marimo closing the session (its TTL after the tab went) mid-training

    def the_train_cells():
        run, eval_frame = tiny_run(epochs=3)
        out = train_step_body(run, eval_frame, 8, on_record=close_after_two_steps)
        return run, out

    run, out = run_in_session(queues, the_train_cells)["result"]
    stop = out["stop_reason"]
    assert "session closed" in stop.reason
    # every step that ran is recorded and counted (the fast path reads steps back in groups: the check comes
    # after a group), and nothing trained after the check
    assert stop.step == len(out["train_records"]) >= 2 and f"after step {stop.step}." in stop.reason
    assert stop.step < run.total_steps
    assert run.model is None and run.optimizer is None  # released: steps 6 and 7 will not run
    assert not process_gpu_lock().locked() and not run.lease.held


def test_training_outside_a_marimo_session_is_not_stopped(monkeypatch):
    """pytest, an export, a script: no session to lose, so the check never stops a run."""
    monkeypatch.setattr(steps, "SESSION_CHECK_S", 0.0)
    run, eval_frame = tiny_run(epochs=1)
    out = train_step_body(run, eval_frame, 8)
    assert out["stop_reason"] is None and len(out["train_records"]) == run.total_steps
    run.release()
