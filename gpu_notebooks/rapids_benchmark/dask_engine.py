"""Dask-cuDF over every GPU of the machine (one client per server process)."""

from __future__ import annotations

import contextlib
import functools
import threading

import pandas as pd

from gpu_notebooks.rapids_benchmark.checks import results_match
from gpu_notebooks.rapids_benchmark.data import data_chunk_rows, generate_chunk
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.registry import process_registry

# How each op's result is compared with pandas: in row order, as a set of rows, or ordered by a key.
DASK_SLOW_SORT_ROWS = 200_000_000  # above this, Dask-cuDF's TCP shuffle sort takes minutes per pass


def detect_dask(gpu_count: int) -> tuple[bool, str]:
    """Whether the Dask-cuDF engine can run here, and a sentence saying why or why not."""
    if gpu_count < 2:
        return False, (
            f"Dask-cuDF spreads one DataFrame over several GPUs; this machine has {gpu_count}. "
            "On a 2-, 4- or 8-GPU instance it appears here as a third engine."
        )
    try:
        import dask_cuda  # noqa: F401
        import dask_cudf  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as err:
        return False, (
            f"Dask-cuDF is not installed ({err.name} missing): `make install GPU=1` adds `requirements-gpu.txt`, "
            "which holds `dask-cuda` and `dask-cudf-cu12`."
        )
    return True, f"Dask-cuDF can spread the data over all {gpu_count} GPUs (one Dask worker per GPU)."


def dask_client(kind: str = "gpu", n_workers: int = 2):
    """The app's Dask cluster and client: started once per process, reused by every viewer and every re-run.

    Viewers of `marimo run` are threads of one process: the check and the start happen under one
    process-wide lock, so two viewers pressing Run together share one cluster instead of starting two.
    """
    registry = process_registry()
    # setdefault is atomic under the GIL: every thread gets the same lock object and the same client slot.
    with registry.setdefault("dask_lock", threading.Lock()):
        return start_dask_client(registry.setdefault("dask", {}), kind, n_workers)


def start_dask_client(registry: dict, kind: str, n_workers: int):
    """dask_client's body, run under its lock: reuse the running client of this kind or start one."""
    import atexit

    client = registry.get(kind)
    if client is not None and client.status == "running":
        return client
    from distributed import Client, LocalCluster

    if kind == "gpu":
        from dask_cuda import LocalCUDACluster

        cluster = LocalCUDACluster(dashboard_address=None)  # one worker process per visible GPU
    else:  # the CPU stand-in the tests use: pandas partitions on local workers
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=None
        )
    client = Client(cluster)  # the default client: len(), compute() and sorting all run on these workers
    registry[kind] = client

    def shutdown():
        # Workers first (retire, then close), so none is left heartbeating to a scheduler that is gone.
        with contextlib.suppress(Exception):
            client.retire_workers(close_workers=True)
        client.close()
        cluster.close()

    atexit.register(shutdown)
    return client


def dask_partition(index: int, n_rows: int, seed: int, gpu: bool):
    """Runs on a Dask worker: generate this partition's chunk there and, for Dask-cuDF, put it on that GPU."""
    frame = generate_chunk(n_rows, index, seed)
    if gpu:
        import cudf

        return cudf.from_pandas(frame)
    return frame


def make_dask_engine(client, gpu: bool = True) -> Engine:
    """Dask over one worker per GPU (or CPU workers in tests); data made on the workers, persisted before timing."""
    import dask.dataframe as dd
    from distributed import wait

    def load(n_rows, seed, df, lookup):
        with client.as_current():
            parts = -(-n_rows // data_chunk_rows(n_rows))
            frame = dd.from_map(
                functools.partial(dask_partition, n_rows=n_rows, seed=seed, gpu=gpu),
                range(parts),
                meta=dask_partition(0, 1, seed, gpu).iloc[:0],
            )
            lookup_frame = lookup
            if gpu:
                import cudf

                lookup_frame = cudf.from_pandas(lookup)
            # One partition: every worker joins against a broadcast copy instead of shuffling the big table.
            lk = dd.from_pandas(lookup_frame, npartitions=1)
            # The collection's own .persist(): `client.persist(groupby_result)` lost groups in dask 2026.7.
            frame, lk = frame.persist(), lk.persist()
            wait([frame, lk])
        return frame, lk

    def timed(fn):
        def run(xdf, frame, lookup):
            with client.as_current():
                out = fn(xdf, frame, lookup).persist()
                wait(out)
            return out

        return run

    def compare(expected, result, order):
        with client.as_current():
            computed = result.compute()
        to_lib = None
        if gpu and isinstance(expected, pd.DataFrame):  # pandas was the reference: compare on the GPU
            import cudf

            to_lib = cudf.from_pandas
        return results_match(expected, computed, order, to_library=to_lib)

    return Engine(
        "dask_cudf" if gpu else "dask",
        dd,
        on_gpu=gpu,
        ops={name: timed(get_op(name)) for name in OPS},
        compare=compare,
        load=load,
        load_kind="partitions generated on the workers",
        gpus=None if gpu else (),
    )
