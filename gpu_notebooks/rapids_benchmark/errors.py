"""Which exceptions are a run's reported failures (out of memory, the libraries' own) and their words."""

from __future__ import annotations

import sys


def is_out_of_memory(err: BaseException) -> bool:
    """True for a host or GPU allocation failure, recognised by its type wherever the library gives one.

    MemoryError covers Python's own, RMM's and libcudf's `std::bad_alloc` (Cython maps it to MemoryError)
    and CuPy's OutOfMemoryError (a MemoryError subclass). CuPy's CUDARuntimeError carries the CUDA status
    (2 = cudaErrorMemoryAllocation). Only a libcudf `cuda_error` arrives as a bare RuntimeError with no type
    of its own, so for that one class alone the message is read.
    """
    if isinstance(err, MemoryError):
        return True
    if (duckdb := sys.modules.get("duckdb")) is not None and isinstance(err, duckdb.OutOfMemoryException):
        return True
    runtime = sys.modules.get("cupy_backends.cuda.api.runtime")
    if runtime is not None and isinstance(err, runtime.CUDARuntimeError):
        return getattr(err, "status", None) == 2
    return type(err) is RuntimeError and "out of memory" in str(err).lower()


def library_errors() -> tuple[type[BaseException], ...]:
    """The documented failures of the engines' libraries (those loaded): reported per op, never raised.

    cuDF and cudf-polars raise NotImplementedError for a feature or dtype they do not support; Polars'
    errors derive from PolarsError; a Dask worker that dies or a lost connection raises KilledWorker or
    CommClosedError. Anything else (NameError, TypeError, KeyError ...) is a bug and propagates.
    """
    errors: list[type[BaseException]] = [NotImplementedError]
    if (polars := sys.modules.get("polars")) is not None:
        errors.append(polars.exceptions.PolarsError)
    if (duckdb := sys.modules.get("duckdb")) is not None:
        errors.append(duckdb.Error)  # DuckDB's documented error base (IO, conversion, out of memory ...)
    if (distributed := sys.modules.get("distributed")) is not None:
        errors.append(distributed.KilledWorker)
        if (comm := sys.modules.get("distributed.comm.core")) is not None:
            errors.append(comm.CommClosedError)
    return tuple(errors)


def is_reported_failure(err: BaseException) -> bool:
    """Out of memory or a library's documented error: shown as a failed measurement, the run goes on."""
    return is_out_of_memory(err) or isinstance(err, library_errors())


def describe_error(err: BaseException) -> str:
    """One line a user can act on."""
    if is_out_of_memory(err):
        return (
            f"out of memory ({type(err).__name__}). Choose fewer rows, close other GPU programs "
            "(another notebook may hold memory), or use a card with more memory."
        )
    return f"{type(err).__name__}: {err}"
