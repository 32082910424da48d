"""Peak host memory per row of the RAPIDS dashboard's benchmark, per engine, measured on this machine.

Usage:  python bench/rapids_host_memory.py [--rows 2000000 5000000 10000000] [--engines pandas,polars,...]

Each (engine set, size) runs in a fresh process: it imports the app, warms the libraries up on 20k rows,
reads its resident set size, runs the app's own `run_benchmark` on every op (1 repeat), and reports the
process's high-water mark (ru_maxrss) above that baseline, in bytes per row and as a multiple of the
benchmark frame's own bytes per row. An engine's own share is the difference between "pandas + engine"
and "pandas alone" (pandas always runs: it is the reference every result is compared with).

Engines (CPU stand-ins where the real one needs a GPU, so the host side of the GPU engines is measured):
  pandas       the reference: data generation, the five ops, the reference results kept while others run
  polars       Polars on all cores: its copy of the frame, its results, the checks done in Polars
  duckdb       DuckDB on all cores: SQL over the pandas frames (no copy), Arrow results, checks in Polars
  cudf_host    the cuDF engine's host side: each result copied back to pandas (to_host) and checked; the
               stand-in's "device" frame is a pandas copy, which lives on the GPU in a real run, so
               one frame's worth (1× the data) is subtracted in the printed "host share"
  polars_gpu   Polars' GPU engine's host side: its string-category copy of the frame and host results
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, resource, sys
sys.path.insert(0, {root!r})
import pandas as pd
import duckdb
import polars as pl
import psutil
from gpu_notebooks.rapids_benchmark.checks import results_match_polars
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.ops import OPS
from gpu_notebooks.rapids_benchmark.polars_engine import polars_frame_for_gpu, polars_ops
from gpu_notebooks.rapids_benchmark.runner import run_benchmark

names = {names!r}
engines = [e for e in make_engines(None, pl, False, duckdb) if e.name in names]
if "cudf_host" in names:
    engines.append(Engine("cudf_host", pd, on_gpu=True, to_device=lambda f: f.copy(),
                              to_host=lambda f: f.copy(deep=True)))
if "polars_gpu" in names:
    engines.append(Engine("polars_gpu", pl, on_gpu=False,
                              to_device=lambda f: polars_frame_for_gpu(pl, f),
                              ops=polars_ops("cpu"), compare=results_match_polars))
run_benchmark([20_000], list(OPS), engines, repeats=1)  # imports, thread pools, caches
gc.collect()
base = psutil.Process().memory_info().rss
out = run_benchmark([{rows}], list(OPS), engines, repeats=1)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"base": base, "peak": peak, "errors": out["errors"],
                  "bpr": estimate_bytes_per_row()}}))
"""


def measure(names: list[str], rows: int) -> dict:
    code = CHILD.format(root=str(ROOT), names=names, rows=rows)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, nargs="+", default=[2_000_000, 5_000_000, 10_000_000])
    ap.add_argument("--engines", default="pandas,polars,duckdb,cudf_host,polars_gpu")
    args = ap.parse_args()
    extra = [e for e in args.engines.split(",") if e != "pandas"]
    print("engine set | rows | peak above baseline | B/row | × frame B/row | engine's own share (× frame)")
    for rows in map(int, args.rows):
        alone = measure(["pandas"], rows)
        if "error" in alone:
            print(f"pandas | {rows:,} | FAILED: {alone['error']}")
            continue
        bpr = alone["bpr"]
        pandas_per_row = (alone["peak"] - alone["base"]) / rows
        print(
            f"pandas | {rows:,} | {(alone['peak'] - alone['base']) / 1e9:.2f} GB | {pandas_per_row:.0f} | "
            f"{pandas_per_row / bpr:.2f} | {pandas_per_row / bpr:.2f} {alone['errors'] or ''}"
        )
        for name in extra:
            both = measure(["pandas", name], rows)
            if "error" in both:
                print(f"pandas+{name} | {rows:,} | FAILED: {both['error']}")
                continue
            per_row = (both["peak"] - both["base"]) / rows
            share = (per_row - pandas_per_row) / bpr - (1.0 if name == "cudf_host" else 0.0)
            print(
                f"pandas+{name} | {rows:,} | {(both['peak'] - both['base']) / 1e9:.2f} GB | {per_row:.0f} | "
                f"{per_row / bpr:.2f} | {share:.2f} {both['errors'] or ''}"
            )
        if len(extra) > 1:  # the sum of the shares should bound what they take together
            every = measure(["pandas", *extra], rows)
            if "error" not in every:
                per_row = (every["peak"] - every["base"]) / rows
                print(
                    f"all ({'+'.join(['pandas', *extra])}) | {rows:,} | {(every['peak'] - every['base']) / 1e9:.2f} GB"
                    f" | {per_row:.0f} | {per_row / bpr:.2f} | — {every['errors'] or ''}"
                )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
