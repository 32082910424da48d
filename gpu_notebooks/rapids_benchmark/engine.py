"""The Engine record: one library, its ops bound to it, and how its results are compared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Engine:
    """A DataFrame library and how to move data to it, back, and wait for it."""

    name: str
    lib: Any
    on_gpu: bool
    to_device: Callable = lambda frame: frame
    to_host: Callable | None = None  # how a result returns to pandas on the host; None: it is there already
    sync: Callable = lambda: None
    ops: dict | None = None  # op name → function(lib, df, lookup); None: the shared pandas-API functions
    compare: Callable | None = None  # (expected pandas, result, order) → (ok, detail); None: results_match
    load: Callable | None = None  # (n_rows, seed, df, lookup) → (frame, lookup) made where the engine lives
    slice_warmup: bool = False  # warm up on a CPU_WARMUP_ROWS slice (CPU engines: no JIT, no device pool)
    load_kind: str = ""  # what its timed load is (HOST_TO_GPU, a conversion, made on workers); "": none
    gpus: tuple[int, ...] | None = ()  # the GPUs its ops run on (None: every GPU); () for CPU engines
    file_ops: dict | None = None  # FILE_OPS name → function(lib, files, lookup); None: it does not read files
