"""The engines (pandas, cuDF, Polars, DuckDB): each op bound to a library, and cuDF's detection."""

from __future__ import annotations

import contextlib
import functools
import gc
import traceback

import pandas as pd

from gpu_notebooks.rapids_benchmark.checks import results_match_polars
from gpu_notebooks.rapids_benchmark.duckdb_engine import make_duckdb_engine
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.ops import pandas_api_file_ops
from gpu_notebooks.rapids_benchmark.polars_engine import polars_file_ops, polars_frame_for_gpu, polars_ops
from gpu_notebooks.rapids_benchmark.timing import cuda_synchronize

HOST_TO_GPU = "host→GPU copy"
# RAPIDS platform support (26.x): CUDA 12 wheels from Volta, CUDA 13 wheels from Turing (CUDA 13 dropped Volta).
CUDF_GPU_REQUIREMENT = (
    "compute capability 7.0 (Volta) or newer with the CUDA 12 wheels, `cudf-cu12`; "
    "7.5 (Turing) or newer with the CUDA 13 wheels, `cudf-cu13`"
)


def current_gpu() -> int:
    """The CUDA device this process's cuDF work runs on (CuPy's current device; 0 without CuPy)."""
    try:
        import cupy
    except ImportError:
        return 0
    return int(cupy.cuda.runtime.getDevice())


def make_engines(
    cudf_module=None, polars_module=None, polars_gpu: bool = False, duckdb_module=None
) -> list[Engine]:
    """pandas first (the reference), then Polars and DuckDB on all CPU cores, cuDF, and Polars' GPU engine."""
    engines = [Engine("pandas", pd, on_gpu=False, slice_warmup=True, file_ops=pandas_api_file_ops(pd))]
    if duckdb_module is not None:
        engines.append(make_duckdb_engine(duckdb_module))
    if polars_module is not None:
        engines.append(
            Engine(
                "polars",
                polars_module,
                on_gpu=False,
                to_device=polars_module.from_pandas,
                ops=polars_ops("cpu"),
                compare=results_match_polars,
                slice_warmup=True,
                load_kind="pandas → Polars conversion",
                file_ops=polars_file_ops(),
            )
        )
    if cudf_module is not None:
        engines.append(
            Engine(
                "cudf",
                cudf_module,
                on_gpu=True,
                to_device=cudf_module.from_pandas,
                to_host=lambda frame: frame.to_pandas(),
                sync=cuda_synchronize,
                load_kind=HOST_TO_GPU,
                gpus=(current_gpu(),),
                file_ops=pandas_api_file_ops(cudf_module),
            )
        )
    if polars_module is not None and polars_gpu:
        # Polars' GPU engine reads host data and returns host data: every collect includes both copies.
        engines.append(
            Engine(
                "polars_gpu",
                polars_module,
                on_gpu=True,
                to_device=functools.partial(polars_frame_for_gpu, polars_module),
                ops=polars_ops("gpu"),
                compare=results_match_polars,
                load_kind="pandas → Polars conversion (each collect copies to the GPU and back)",
                gpus=(current_gpu(),),
            )
        )
    return engines


@contextlib.contextmanager
def frames_freed_on_interrupt():
    """An interrupted run (■ in `marimo edit`, a closing session) gives its frames back at once.

    The traceback of an interrupt holds every frame of the run, and with them the GPU frames and results;
    clearing them before the error is shown returns that memory now, not when the error is dropped.
    """
    try:
        yield
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        gc.collect()
        raise


def detect_cudf(gpu_count: int, force_cpu: bool = False):
    """cuDF's module when it can run here, else None; and a sentence saying why and how to fix it."""
    if force_cpu:
        return None, "The GPU engine was switched off with `--cpu`."
    if gpu_count == 0:
        return None, (
            "No NVIDIA GPU is visible (NVML found none, or the NVIDIA driver is not installed). "
            f"Run this app on a machine with an NVIDIA GPU ({CUDF_GPU_REQUIREMENT}) to compare cuDF with pandas."
        )
    try:
        import cudf
    except ModuleNotFoundError as err:
        if err.name not in ("cudf", None):  # cuDF is there, one of its own dependencies is not
            return None, (
                f"cuDF is installed but needs `{err.name}`, which is missing: reinstall it with "
                "`make install GPU=1` (the same CUDA major version for every RAPIDS wheel), then restart the app."
            )
        return None, (
            "cuDF is not installed. On this GPU machine run `make install GPU=1` (it installs "
            "`requirements-gpu.txt`: `cudf-cu12` for CUDA 12 drivers; use `cudf-cu13` for CUDA 13 drivers — "
            "see README), then restart the app."
        )
    except Exception as err:
        return None, (
            f"cuDF is installed but failed to import (`{type(err).__name__}: {err}`). This usually "
            "means the cuDF wheel does not match the driver's CUDA version (cu12 vs cu13) or the "
            f"GPU is too old (cuDF needs {CUDF_GPU_REQUIREMENT})."
        )
    try:
        cudf.Series([1, 2, 3]).sum()
    except Exception as err:
        return None, f"cuDF imported but could not run on the GPU (`{type(err).__name__}: {err}`)."
    return cudf, f"cuDF {cudf.__version__} will run on GPU 0."
