"""Whether the viewer's marimo session still exists: a closed tab's benchmark stops at the next operation,
its training run after the optimizer step under way."""

from __future__ import annotations

import inspect
import queue


class SessionClosed(Exception):
    """The session that started this run is gone (its tab closed): the run stops and gives back what it holds."""


def session_closed() -> bool:
    """True once marimo has closed the session this code runs in; False outside one (pytest, export, a script).

    Under `marimo run` every session's kernel is a thread of the server. When a tab has been gone for the
    session TTL (`marimo run --session-ttl`, 120 s by default) marimo closes the session by putting a
    StopKernelCommand on that kernel's control queue, which the kernel reads only once the running cell
    returns: a long run would go on for nobody, holding its memory and the GPU lease. This looks for that
    request. It reads marimo 0.25's internals (the kernel's control-request closure); where they differ, or
    the kernel is a separate process (`marimo edit`, whose ■ button interrupts instead), it says False.
    """
    from marimo._runtime.commands import StopKernelCommand
    from marimo._runtime.context.types import safe_get_context

    control = kernel_control_queue(safe_get_context())
    if control is None:
        return False
    with control.mutex:  # a peek: the request stays queued for the kernel to act on when the cell returns
        return any(isinstance(request, StopKernelCommand) for request in control.queue)


def kernel_control_queue(context) -> queue.Queue | None:
    """The in-process control queue of this runtime context's kernel (a `marimo run` session), else None."""
    enqueue = getattr(getattr(context, "_kernel", None), "enqueue_control_request", None)
    if enqueue is None or not inspect.isfunction(enqueue):
        return None
    found = inspect.getclosurevars(enqueue).nonlocals.get("control_queue")
    return found if isinstance(found, queue.Queue) else None


def stop_if_session_closed(where: str) -> None:
    """Raise SessionClosed (saying `where` the run stopped) once this run's session is gone."""
    if session_closed():
        raise SessionClosed(f"The viewer's session closed; the run stopped before {where}.")
