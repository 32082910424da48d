"""Stand-ins shared by the CPU tests: NVML patched everywhere the package looks it up, and a wait."""

import sys
import time

from gpu_notebooks.gpu import nvml


def use_nvml(monkeypatch, factory) -> None:
    """Make every package module that calls `nvml_module()` get `factory()` (None: no nvidia-ml-py).

    Modules import the function by name, so a patch on gpu_notebooks.gpu.nvml alone would miss their copies.
    """
    real = nvml.nvml_module
    for name, module in list(sys.modules.items()):
        if name.startswith("gpu_notebooks") and getattr(module, "nvml_module", None) is real:
            monkeypatch.setattr(module, "nvml_module", factory)


def wait_until(predicate, seconds=60.0) -> bool:
    """predicate(), polled until it holds or `seconds` pass: returns as soon as it holds (generous for a busy
    machine, where a thread may take a while to act)."""
    deadline = time.time() + seconds
    while not predicate() and time.time() < deadline:
        time.sleep(0.01)
    return bool(predicate())
