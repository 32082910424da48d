"""A closed tab's run (issue 24): it stops at the next operation once marimo closes its session, and frees all."""

import gc
import threading
import types
import weakref

import pandas as pd
from marimo._runtime.commands import StopKernelCommand
from marimo._runtime.context import types as context_types
from marimo._runtime.kernel_lifecycle import make_control_enqueuer
from marimo._session.managers.queue import QueueManagerImpl

from gpu_notebooks.gpu.lock import GpuLease, gpu_turn
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import frames_freed_on_interrupt
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from gpu_notebooks.session import SessionClosed, session_closed, stop_if_session_closed


def run_in_session(queues, work) -> dict:
    """`work()` on a thread holding a `marimo run` kernel's context (marimo's own control-queue closure)."""
    outcome = {}

    def kernel_thread():
        enqueue = make_control_enqueuer(queues.control_queue, queues.set_ui_element_queue)
        context_types._THREAD_LOCAL_CONTEXT.runtime_context = types.SimpleNamespace(
            _kernel=types.SimpleNamespace(enqueue_control_request=enqueue)
        )
        try:
            outcome["result"] = work()
        except SessionClosed as err:
            outcome["stopped"] = (
                err  # kept, as marimo keeps a cell's error: its traceback must not pin the data
            )

    thread = threading.Thread(target=kernel_thread)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    return outcome


def test_a_run_whose_session_closes_mid_run_stops_at_the_next_op_and_frees_its_memory_and_the_lease(tmp_path):
    queues = QueueManagerImpl(use_multiprocessing=False)  # `marimo run`: the session's in-process queues
    lock_path = str(tmp_path / "gpu.lock")
    calls, frames = [], []

    def op_that_sees_the_tab_close(op):
        def run(xdf, df, lookup):
            calls.append(op)
            if len(calls) == 1:
                queues.close_queues()  # marimo closing the session (TTL expired) while this op runs
            return get_op(op)(xdf, df, lookup)

        return run

    def keep_a_weak_ref(frame):
        frames.append(weakref.ref(frame))
        return frame

    engine = Engine(
        "pandas",
        pd,
        on_gpu=False,
        to_device=keep_a_weak_ref,
        ops={op: op_that_sees_the_tab_close(op) for op in OPS},
    )

    def the_run_cell():  # as the notebook's run cell holds it: the lease, frames freed on the way out
        with gpu_turn(path=lock_path), frames_freed_on_interrupt():
            return run_benchmark([20_000, 40_000], list(OPS), [engine], 2, checkpoint=stop_if_session_closed)

    outcome = run_in_session(queues, the_run_cell)
    assert "result" not in outcome and "groupby_few" in str(outcome["stopped"])
    first = next(iter(OPS))
    assert calls == [first] * 3  # the op under way finished (warm-up + 2 repeats); nothing ran after it
    gc.collect()
    assert frames and all(ref() is None for ref in frames)  # the run's data is gone
    lease = GpuLease(lock_path)
    assert lease.acquire(wait=False)  # and the GPU lease is free for the next viewer
    lease.release()
    # Only peeked at: the kernel still finds the stop request when the cell returns.
    assert isinstance(queues.control_queue.get_nowait(), StopKernelCommand)


def test_a_session_that_stays_open_runs_to_the_end():
    queues = QueueManagerImpl(use_multiprocessing=False)
    outcome = run_in_session(
        queues, lambda: run_benchmark([5_000], ["filter", "sort"], [Engine("pandas", pd, on_gpu=False)], 1)
    )
    assert len(outcome["result"]["records"]) == 2


def test_without_a_marimo_session_nothing_is_closed():
    """pytest, `marimo export`, a script, `marimo edit` (a kernel process): no session to lose, never a stop."""
    assert session_closed() is False
    stop_if_session_closed("anything")
    edit_like = types.SimpleNamespace(_kernel=types.SimpleNamespace(enqueue_control_request=print))
    outcome = {}

    def other_kernel():
        context_types._THREAD_LOCAL_CONTEXT.runtime_context = edit_like
        outcome["closed"] = session_closed()

    thread = threading.Thread(target=other_kernel)
    thread.start()
    thread.join(10)
    assert outcome["closed"] is False
