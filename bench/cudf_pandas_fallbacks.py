"""Which realistic pandas steps fall back to the CPU under cudf.pandas (run on the GPU device).

Usage:  python bench/cudf_pandas_fallbacks.py [--rows 1000000]

Runs itself again under `python -m cudf.pandas` (pandas must not be imported before cudf.pandas is on),
then tries each candidate in the app's `fallback_steps()` plus a few more, each under
`cudf.pandas.profiler.Profiler`, and prints per candidate: wall time, and every pandas function with its
GPU and CPU calls and seconds. A candidate with CPU calls is a real fallback: set FALLBACK_STEP in
rapids_benchmark_dashboard.py to it (and add it to fallback_steps() if it is one of the extras here).
"""

import argparse
import functools
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extra_candidates(pd, np):
    """More steps people write that cuDF may not run on the GPU."""
    return {
        "groupby_apply_python": lambda df: df.groupby("key_few")[["value", "value2"]].apply(
            lambda g: (g["value"] * g["value2"]).sum() / max(len(g), 1)
        ),
        "str_title": lambda df: df["category"].astype(str).str.title().to_frame(),
        "pivot_table_margins": lambda df: df.pivot_table(
            index="key_few", columns="category", values="value", aggfunc="sum", margins=True, observed=True
        ),
        "interpolate_pchip": lambda df: (
            df["value"]
            .head(100_000)
            .where(df["value"].head(100_000) > 5)
            .interpolate(method="pchip")
            .to_frame()
        ),
        "ewm_mean": lambda df: df["value"].head(1_000_000).ewm(span=20).mean().to_frame(),
        "qcut": lambda df: pd.qcut(df["value"], 10, labels=False).to_frame(),
    }


def child(rows: int) -> None:
    import numpy as np
    import pandas as pd
    from cudf.pandas import Profiler

    sys.path.insert(0, str(ROOT))
    from gpu_notebooks.rapids_benchmark.cudf_pandas import FALLBACK_STEP, fallback_steps
    from gpu_notebooks.rapids_benchmark.data import generate_data

    print(f"# cudf.pandas loaded: {'cudf.pandas' in sys.modules}; FALLBACK_STEP now: {FALLBACK_STEP}")
    df, lookup = generate_data(rows)
    candidates = {
        name: functools.partial(lambda fn, d: fn(pd, d, lookup), fn) for name, fn in fallback_steps().items()
    }
    candidates.update(extra_candidates(pd, np))
    for name, fn in candidates.items():
        try:
            fn(df)  # warm-up
            t0 = time.perf_counter()
            with Profiler() as profiler:
                fn(df)
            wall = time.perf_counter() - t0
        except Exception as err:  # a candidate that fails is reported; the others still run
            print(f"\n## {name}: FAILED {type(err).__name__}: {err}")
            continue
        stats = profiler.per_function_stats
        cpu = sum(len(t.get("cpu", [])) for t in stats.values())
        print(
            f"\n## {name}: {wall * 1e3:.1f} ms wall, {'FALLS BACK' if cpu else 'all on GPU'} ({cpu} CPU calls)"
        )
        print("function | GPU calls | GPU s | CPU calls | CPU s")
        for fname, t in stats.items():
            g, c = t.get("gpu", []), t.get("cpu", [])
            print(f"{fname} | {len(g)} | {sum(g):.4f} | {len(c)} | {sum(c):.4f}")
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.rows)
        return
    cmd = [sys.executable, "-m", "cudf.pandas", __file__, "--child", "--rows", str(args.rows)]
    sys.exit(subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode)


if __name__ == "__main__":
    main()
