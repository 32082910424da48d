"""First imports in a `marimo run` server: one process-wide lock, and marimo's per-session formatter
registration waits for it (it once imported torch.nn beside a session's `import torch` and broke every tab)."""

import importlib
import threading
import time

import pytest
from marimo._session.managers import kernel

from gpu_notebooks import first_imports
from gpu_notebooks.first_imports import import_lock


@pytest.fixture
def fake_registration(monkeypatch):
    """marimo's registration replaced by a recorder (the real one installs import hooks in this process)."""
    calls = []
    monkeypatch.setattr(kernel, "register_formatters", lambda: calls.append(time.monotonic()))
    return calls


def test_every_call_and_a_reloaded_module_give_the_same_lock(fake_registration):
    first = import_lock()
    importlib.reload(first_imports)  # marimo's autoreload may run the module again: the lock must survive it
    assert first_imports.import_lock() is first is import_lock()
    assert isinstance(first, type(threading.RLock()))


def test_marimo_registration_waits_while_a_session_imports(fake_registration):
    lock = import_lock()
    inside, leave = threading.Event(), threading.Event()

    def session_importing():
        with lock:
            inside.set()
            leave.wait(30)

    importer = threading.Thread(target=session_importing)
    importer.start()
    assert inside.wait(30)
    registrar = threading.Thread(target=kernel.register_formatters)  # what marimo's server thread calls
    registrar.start()
    registrar.join(0.3)
    assert registrar.is_alive() and fake_registration == []  # it waits for the import to finish
    released = time.monotonic()
    leave.set()
    importer.join(30)
    registrar.join(30)
    assert len(fake_registration) == 1 and fake_registration[0] >= released


def test_the_wrapper_is_installed_once_however_many_sessions_start(fake_registration):
    import_lock()
    wrapped = kernel.register_formatters
    for _ in range(3):
        import_lock()
    assert kernel.register_formatters is wrapped and wrapped.waits_for_imports
    wrapped()
    assert len(fake_registration) == 1  # one call through one wrapper, not a chain of them


def test_the_same_thread_may_take_the_lock_again(fake_registration):
    """A setup block holding the lock may import a package module that takes it too (an RLock)."""
    with import_lock():
        with import_lock():
            pass
