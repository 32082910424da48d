"""A careful standalone timing of the same five ops, written independently of the app, to check its speedups.

Usage: python bench/rapids_standalone.py --rows 10000000 [--app]
Times each op with CUDA events on cuDF's stream (2 warm-ups, 7 repeats, median) and pandas with
perf_counter (1 warm-up on the full data, 3 repeats, median). With --app it also runs the app's
run_benchmark in the same process and prints the ratio of the two speedups (target: within ±15%).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import cudf
import cupy as cp
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "key_few": rng.integers(0, 100, n, dtype=np.int32),
            "key_many": rng.integers(0, 100_000, n, dtype=np.int32),
            "value": rng.random(n) * 100.0,
            "value2": rng.random(n) * 10.0,
            "category": pd.Categorical.from_codes(
                rng.integers(0, 8, n, dtype=np.int8), categories=list("abcdefgh")
            ),
        }
    )
    keys = np.arange(0, 100_000, 2, dtype=np.int32)
    lookup = pd.DataFrame(
        {
            "key_many": keys,
            "price": np.random.default_rng(seed + 1).random(len(keys)) * 50,
            "region": (keys % 7).astype(np.int16),
        }
    )
    return df, lookup


OPS = {
    "filter": lambda m, d, lk: d[(d["value"] > 50.0) & (d["key_few"] < 50)],
    "groupby_few": lambda m, d, lk: d.groupby("key_few", sort=False).agg(
        {"value": ["sum", "mean", "max", "count"], "value2": ["std"]}
    ),
    "groupby_many": lambda m, d, lk: d.groupby("key_many", sort=False).agg({"value": ["sum", "count"]}),
    "join": lambda m, d, lk: m.merge(d, lk, on="key_many", how="inner"),
    "sort": lambda m, d, lk: d.sort_values("value"),
}


def gpu_time(fn, warm=2, reps=7):
    for _ in range(warm):
        fn()
    cp.cuda.runtime.deviceSynchronize()
    times = []
    for _ in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        r = fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
        del r
    return statistics.median(times)


def cpu_time(fn, warm=1, reps=3):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, default=10_000_000)
    ap.add_argument("--app", action="store_true")
    args = ap.parse_args()
    n = int(args.rows)
    df, lookup = data(n)
    gdf, glookup = cudf.from_pandas(df), cudf.from_pandas(lookup)
    standalone = {}
    for name, fn in OPS.items():
        p = cpu_time(lambda fn=fn: fn(pd, df, lookup))
        g = gpu_time(lambda fn=fn, gdf=gdf, glookup=glookup: fn(cudf, gdf, glookup))
        standalone[name] = (p, g)
    app = {}
    if args.app:
        from gpu_notebooks.rapids_benchmark.engines import make_engines
        from gpu_notebooks.rapids_benchmark.report import summarize_records
        from gpu_notebooks.rapids_benchmark.runner import run_benchmark

        out = run_benchmark([n], list(OPS), make_engines(cudf), repeats=3)
        s = summarize_records(out["records"])
        app = {r.op: r.speedup for r in s.itertuples()}
    print(f"# standalone timing, {n:,} rows, card: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    print(
        "op | pandas median | cuDF median (CUDA events) | standalone speedup | app speedup | app/standalone"
    )
    for name, (p, g) in standalone.items():
        sp = p / g
        a = app.get(name)
        ratio = f"{a / sp:.2f}" if a else "—"
        print(
            f"{name} | {p * 1e3:.1f} ms | {g * 1e3:.2f} ms | {sp:.1f}x | {f'{a:.1f}x' if a else '—'} | {ratio}"
        )


if __name__ == "__main__":
    main()
