"""Stand-ins shared by the CPU tests: NVML patched everywhere the package looks it up."""

import sys

from gpu_notebooks.gpu import nvml


def use_nvml(monkeypatch, factory) -> None:
    """Make every package module that calls `nvml_module()` get `factory()` (None: no nvidia-ml-py).

    Modules import the function by name, so a patch on gpu_notebooks.gpu.nvml alone would miss their copies.
    """
    real = nvml.nvml_module
    for name, module in list(sys.modules.items()):
        if name.startswith("gpu_notebooks") and getattr(module, "nvml_module", None) is real:
            monkeypatch.setattr(module, "nvml_module", factory)
