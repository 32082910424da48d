"""Which realistic pandas steps does cudf.pandas (cuDF 26.10) run on the GPU, and which fall back to the CPU?

Run on a GPU machine in a fresh process (pandas must not be imported before `install()`):
    python bench/device_probe_cudf_pandas.py --rows 10000000
Prints, per candidate step: wall time under cudf.pandas (no profiler), the profiler's per-function GPU/CPU
split (a second, profiled run on the first 50,000 rows: the profiler is a sys.settrace hook that sees every
Python call, so a fallback that calls a Python function per row runs orders of magnitude slower under it —
seen on the H200, 2026-12-01: the first version of this probe profiled 10M rows and did not finish in 8
minutes), and whether the result equals real pandas' (computed in a child process without cudf.pandas).
Each child streams one JSON line per step and is stopped after --timeout seconds; steps not reached say so.
"""

import argparse
import json
import subprocess
import sys
import time

CANDIDATES = {
    # name: (setup-free snippet over `df`, `pd`, `np`; must assign `out`)
    "groupby_sum": "out = df.groupby('key')['value'].sum()",
    "groupby_agg_lambda_p90": "out = df.groupby('key')['value'].agg(lambda s: s.quantile(0.9))",
    "groupby_quantile": "out = df.groupby('key')['value'].quantile(0.9)",
    "apply_rowwise_lambda": "out = df.head(200_000).apply(lambda r: r['value'] * 2 if r['flag'] else 0.0, axis=1)",
    "series_map_python_fn": "out = df['value'].head(1_000_000).map(lambda v: round(v, 1))",
    "series_map_dict": "out = df['key'].map({k: k % 7 for k in range(1000)})",
    "rolling_apply_raw": "out = df['value'].head(200_000).rolling(20).apply(lambda a: a.max() - a.min(), raw=True)",
    "rolling_mean": "out = df['value'].rolling(20).mean()",
    "ewm_mean": "out = df['value'].ewm(span=20).mean()",
    "merge_asof": (
        "l = df[['ts', 'value']].sort_values('ts').head(1_000_000); r = l.iloc[::10].rename(columns={'value': 'v2'}); "
        "out = pd.merge_asof(l, r, on='ts')"
    ),
    "pivot_table": "out = df.pivot_table(index='key', columns='flag', values='value', aggfunc='mean')",
    "rank_dense_pct": "out = df['value'].rank(method='dense', pct=True)",
    "str_contains_regex": "out = df['label'].str.contains(r'^ab[0-9]+$', regex=True)",
    "str_slice_upper": "out = df['label'].str.slice(0, 3).str.upper()",
    "to_datetime_format": "out = pd.to_datetime(df['date_str'].head(1_000_000), format='%Y-%m-%d')",
    "resample_1h_mean": "out = df.set_index('ts')['value'].resample('1h').mean()",
    "cut_bins": "out = pd.cut(df['value'], bins=[0, 10, 50, 100])",
    "describe": "out = df[['value', 'key']].describe()",
    "interpolate_linear": "s = df['value'].copy(); s.iloc[::7] = np.nan; out = s.interpolate()",
    "dt_day_name": "out = df['ts'].dt.day_name()",
    "value_counts_normalize": "out = df['key'].value_counts(normalize=True)",
}

SETUP = """
import numpy as np
rng = np.random.default_rng(0)
n = {rows}
df = pd.DataFrame({{
    'key': rng.integers(0, 1000, n),
    'value': rng.random(n) * 100,
    'flag': rng.random(n) < 0.5,
    'ts': pd.Timestamp('2026-01-01') + pd.to_timedelta(rng.integers(0, 86400 * 30, n), unit='s'),
}})
df['label'] = pd.Series(np.where(df['flag'].to_numpy(), 'ab12', 'xy9'))
df['date_str'] = '2026-01-0' + (df['key'] % 9 + 1).astype(str)
"""


def child(rows: int, accelerated: bool) -> None:
    if accelerated:
        import cudf.pandas

        cudf.pandas.install()
    import numpy as np  # noqa: F401
    import pandas as pd

    ns = {"pd": pd, "np": np}
    exec(SETUP.format(rows=rows), ns)
    small = dict(ns, df=ns["df"].head(50_000))
    for name, code in CANDIDATES.items():
        entry = {}
        try:
            if accelerated:  # warm-up: the first call pays for CUDA context, kernels and the proxy's set-up
                exec(code, dict(ns))
            t = time.perf_counter()
            scope = dict(ns)
            exec(code, scope)
            out = scope["out"]
            if accelerated:
                # Materialise on the host so the time includes any device work.
                out = out.to_pandas() if hasattr(out, "to_pandas") else out
            entry["seconds"] = time.perf_counter() - t
            if accelerated:
                from cudf.pandas.profiler import Profiler

                with Profiler() as prof:
                    exec(code, dict(small))
                entry["functions"] = {
                    fn: {k: [len(v), sum(v)] for k, v in d.items()}
                    for fn, d in prof.per_function_stats.items()
                }
            head = pd.Series(out).head(2000) if not isinstance(out, pd.DataFrame) else out.head(2000)
            entry["digest"] = str(pd.util.hash_pandas_object(head.astype(str), index=True).sum())
        except Exception as exc:  # a probe: record what each library raised
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        print(json.dumps({"name": name, **entry}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--child", choices=["pandas", "cudf_pandas"])
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    if a.child:
        child(a.rows, a.child == "cudf_pandas")
        return
    runs = {}
    for mode in ("pandas", "cudf_pandas"):
        try:
            p = subprocess.run(
                [sys.executable, __file__, "--rows", str(a.rows), "--child", mode],
                capture_output=True,
                text=True,
                timeout=a.timeout,
            )
            out, err = p.stdout, p.stderr
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = f"stopped after {a.timeout:.0f} s"
        runs[mode] = {r["name"]: r for r in map(json.loads, filter(None, out.splitlines()))}
        if err.strip():
            print(f"{mode} child stderr (tail): {err[-1500:]}")
    print(f"rows={a.rows:,}")
    print(
        f"{'step':26} {'pandas s':>9} {'cudf.pd s':>9} {'speedup':>8} {'same':>5}  GPU calls / CPU calls (CPU s)"
    )
    for name in CANDIDATES:
        if name not in runs["pandas"] or name not in runs["cudf_pandas"]:
            print(f"{name:26} not reached before the timeout")
            continue
        pa, cp = runs["pandas"][name], runs["cudf_pandas"][name]
        if "error" in pa or "error" in cp:
            print(f"{name:26} error pandas={pa.get('error')} cudf.pandas={cp.get('error')}")
            continue
        fns = cp.get("functions", {})
        gpu = [f"{fn}×{v['gpu'][0]}" for fn, v in fns.items() if "gpu" in v]
        cpu = [f"{fn}×{v['cpu'][0]}({v['cpu'][1]:.3f}s)" for fn, v in fns.items() if "cpu" in v]
        same = "yes" if pa["digest"] == cp["digest"] else "NO"
        print(
            f"{name:26} {pa['seconds']:9.4f} {cp['seconds']:9.4f} {pa['seconds'] / cp['seconds']:7.1f}× {same:>5}  "
            f"GPU[{', '.join(gpu)}] CPU[{', '.join(cpu)}]"
        )


if __name__ == "__main__":
    main()
