"""GPU detection for every test under tests/gpu/, in one place: the card list, cuDF and CUDA (skip without)."""

import pytest

from gpu_notebooks.gpu.nvml import read_gpu_status
from gpu_notebooks.rapids_benchmark.engines import detect_cudf

# Read once per test process: NVML's cards, cuDF as the app detects it (None and why when it cannot run).
GPUS = read_gpu_status()
CUDF, WHY = detect_cudf(len(GPUS)) if GPUS else (None, "no GPU")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


CUDA = _cuda_available()
needs_cudf = pytest.mark.skipif(CUDF is None, reason=f"needs cuDF on a GPU: {WHY}")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
