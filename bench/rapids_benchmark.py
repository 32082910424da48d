"""Run the RAPIDS dashboard's own benchmark (imported from the notebook) and print one table.

Usage on a GPU box:  python bench/rapids_benchmark.py --rows 10000000 100000000 --repeats 3
            reads, pipeline and DuckDB too:  ... --ops all   (the five in-memory ops, read_parquet, read_csv, pipeline)
Prints per-op pandas and cuDF medians (min–max), transfer times, speedups, the whole run's wall time
(data generation included) and the peak GPU memory NVML saw.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_notebooks.gpu.nvml import read_gpu_status
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.rapids_benchmark.dask_engine import dask_client, detect_dask, make_dask_engine
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row
from gpu_notebooks.rapids_benchmark.duckdb_engine import detect_duckdb
from gpu_notebooks.rapids_benchmark.engines import detect_cudf, make_engines
from gpu_notebooks.rapids_benchmark.formatting import fmt_seconds, format_rows
from gpu_notebooks.rapids_benchmark.ops import ALL_OPS, OPS
from gpu_notebooks.rapids_benchmark.polars_engine import detect_polars
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.roofline import copy_bandwidth_probe
from gpu_notebooks.rapids_benchmark.runner import run_sized_benchmark
from gpu_notebooks.rapids_benchmark.sizing import plan_run, read_host_status


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, nargs="+", default=[10_000_000, 100_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ops", default=",".join(OPS), help="comma list, or 'all' (file ops and pipeline too)")
    ap.add_argument("--cpu", action="store_true", help="CPU engines only (pandas, Polars)")
    ap.add_argument("--engines", default="all", help="'all' or a comma list of pandas,polars,cudf,polars_gpu")
    ap.add_argument("--progress", action="store_true", help="print each step as it starts (long runs)")
    args = ap.parse_args()

    gpus = read_gpu_status()
    cudf, why = detect_cudf(len(gpus), force_cpu=args.cpu)
    host = read_host_status()
    card = gpus[0]["name"] if gpus else "no GPU"
    print(
        f"# card: {card} | peak bandwidth {gpus[0]['peak_bandwidth_gbs'] if gpus else None} GB/s | "
        f"{host['cpu_count']} CPU cores | {why}"
    )
    polars, polars_gpu, polars_why = detect_polars(cudf, force_cpu=args.cpu)
    print(f"# {polars_why}")
    duckdb, duckdb_why = detect_duckdb()
    print(f"# {duckdb_why}")
    engines = make_engines(cudf, polars, polars_gpu, duckdb)
    dask_ok, dask_why = detect_dask(len(gpus) if cudf else 0)
    print(f"# {dask_why}")
    if dask_ok and (args.engines == "all" or "dask_cudf" in args.engines):
        engines.append(make_dask_engine(dask_client("gpu")))
    if args.engines != "all":
        engines = [e for e in engines if e.name in args.engines.split(",") or e.name == "pandas"]
    for requested in map(int, args.rows):
        plan = plan_run(
            requested,
            list(ALL_OPS) if args.ops == "all" else args.ops.split(","),
            args.repeats,
            False,
            estimate_bytes_per_row(),
            min((g["memory_free_bytes"] for g in gpus), default=None) if cudf else None,
            host["available_bytes"],
            all_gpus_free_bytes=sum(g["memory_free_bytes"] for g in gpus)
            if any(e.name == "dask_cudf" for e in engines)
            else None,
            engine_names=[e.name for e in engines],
        )
        if plan["cap_message"]:
            print(f"# PLAN: {plan['cap_message']}")
        sampler = GpuSampler(0.1)
        sampler.start()
        t0 = time.perf_counter()
        tick = (
            (
                lambda label, gpus=None, t0=t0: print(
                    f"# {time.perf_counter() - t0:7.1f} s  {label}", flush=True
                )
            )
            if args.progress
            else None
        )
        out = run_sized_benchmark(plan, engines, tick)
        wall = time.perf_counter() - t0
        sampler.stop()
        summary = summarize_records(out["records"], gpus[0]["peak_bandwidth_gbs"] if gpus else None)
        n = plan["rows"]
        gen = out["generation"][0]["seconds"]
        print(
            f"\n## {format_rows(n)} rows, {plan['repeats']} repeats: wall {wall:.1f} s (generation "
            f"{gen:.1f} s), peak GPU memory {sampler.peak_memory_gb() or 0:.1f} GB, errors: {out['errors']}"
        )
        names = [e.name for e in engines]
        print(
            " | ".join(
                [
                    "op",
                    *names,
                    "h2d",
                    "d2h",
                    "cuDF vs pandas",
                    "vs fastest CPU",
                    "e2e",
                    "bw",
                    "Dask vs 1 GPU",
                    "match",
                ]
            )
        )
        for r in summary.to_dict("records"):
            cells = [r["op"]]
            for name in names:
                med = r.get(f"{name}_median_s")
                cells.append(
                    f"{fmt_seconds(med)} ({fmt_seconds(r[f'{name}_min_s'])}–{fmt_seconds(r[f'{name}_max_s'])})"
                    if med is not None
                    else "—"
                )
            gpu = "speedup" in r
            cells += [
                fmt_seconds(r["h2d_s"]) if gpu else "—",
                fmt_seconds(r["d2h_s"]) if gpu else "—",
                f"{r['speedup']:.1f}x" if gpu else "—",
                f"{r['speedup_vs_cpu']:.1f}x ({r['fastest_cpu']})" if gpu else "—",
                f"{r['speedup_e2e']:.1f}x" if gpu else "—",
                f"{r['bandwidth_gbs']:.0f} GB/s ({r.get('bandwidth_pct', 0):.0f}%)" if gpu else "—",
                f"{r['dask_vs_cudf']:.2f}x"
                if r.get("dask_vs_cudf") == r.get("dask_vs_cudf") and "dask_vs_cudf" in r
                else "—",
                f"{r['match'] or 'ref'} {'' if r['match'] != '✗' else r['detail']}",
            ]
            print(" | ".join(cells))
        sys.stdout.flush()

    if cudf is not None:
        print(f"\n# host→GPU copy probe: {copy_bandwidth_probe()}")
    import resource

    print(
        f"# peak host RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB"
    )


if __name__ == "__main__":
    main()
