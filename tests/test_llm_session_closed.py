"""A closed tab's training run: once marimo closes the viewer's session, step 5 stops after the group of steps
under way, frees the model and gives the GPU lease back (the benchmark app's twin is test_rapids_session.py)."""

from marimo._session.managers.queue import QueueManagerImpl

import gpu_notebooks.llm_finetuning.steps as steps
from gpu_notebooks.llm_finetuning.steps import (
    evaluate_step,
    save_step,
    train_step_body,
)
from gpu_notebooks.llm_finetuning.tasks import builtin_examples
from gpu_notebooks.registry import process_gpu_lock
from tests.fakes import tiny_cpu_run
from tests.test_rapids_session import run_in_session


def tiny_run(epochs):
    data = builtin_examples()
    return tiny_cpu_run(data, epochs=epochs, batch_size=16, max_length=64), data[data["split"] == "eval"]


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


def test_a_session_closed_after_training_skips_evaluation_and_saving_and_frees_the_run(tmp_path):
    """The tab went while step 5's last group ran (or just after): steps 6 and 7 do not run for nobody."""
    queues = QueueManagerImpl(use_multiprocessing=False)

    def steps_6_and_7_after_the_tab_closed():
        run, eval_frame = tiny_run(epochs=1)
        train_step_body(run, eval_frame, 8)
        queues.close_queues()
        after, generations, stop = evaluate_step(run, eval_frame, 8)
        evaluated = (after, generations, stop, run.model is None, run.lease.held)
        run2, _ = tiny_run(epochs=1)
        saved = save_step(run2, tmp_path / "adapter", eval_frame["prompt"].head(2).tolist())
        return evaluated, saved, run2

    (after, generations, stop, freed, held), saved, run2 = run_in_session(
        queues, steps_6_and_7_after_the_tab_closed
    )["result"]
    assert (
        after is None and generations is None and "session closed" in stop.reason and "Step 6" in stop.reason
    )
    assert freed and not held
    assert "session closed" in saved["failure"] and saved["saved_files"] == {}
    assert not (tmp_path / "adapter").exists()  # nothing written for nobody
    assert run2.model is None and not run2.lease.held and not process_gpu_lock().locked()


def test_evaluation_and_saving_outside_a_session_run_as_before(tmp_path):
    run, eval_frame = tiny_run(epochs=1)
    train_step_body(run, eval_frame, 8)
    after, _, stop = evaluate_step(run, eval_frame, 8)
    assert stop is None and after is not None
    saved = save_step(run, tmp_path / "adapter", eval_frame["prompt"].head(2).tolist())
    assert saved["failure"] is None and (tmp_path / "adapter" / "adapter_config.json").exists()
