"""Stand-ins shared by the CPU tests: NVML patched everywhere the package looks it up, a wait, and a tiny
fine-tuning run ready to train."""

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


def tiny_cpu_run(data, **settings):
    """The tiny offline GPT-2 through the app's steps 2-4 on the CPU in FP32 (loaded, LoRA injected, loaders and
    optimizer prepared): a run ready for step 5. `settings` are TrainSettings fields."""
    import torch

    from gpu_notebooks.llm_finetuning.precision import resolve_precision
    from gpu_notebooks.llm_finetuning.settings import TrainSettings
    from gpu_notebooks.llm_finetuning.steps import inject_step, load_step, prepare_step

    settings = TrainSettings(model_source="tiny", **settings)
    run, facts = load_step(settings, data, torch.device("cpu"), resolve_precision("fp32", "cpu"))
    assert not facts["out_of_memory"] and inject_step(run)[1] is None and prepare_step(run, data)[1] is None
    return run
