"""Does sampling disturb what it measures? A timed cuDF op with no sampler, the classic one, and classic + GPM.

    python bench/rapids_sampler_overhead.py [--rows 10000000] [--ops sort,filter] [--rounds 6] [--repeats 10]
Each round runs the three configurations back to back in a rotated order (so drift does not favour one),
each a warm-up and `--repeats` timed calls through the app's own time_operation. Prints, per op, the median
of all timed calls per configuration, the min–max of the per-round medians, and the overhead against
"none" **paired by round** (each round's median over that round's "none" median, so slow drift cancels),
with a 95% bootstrap interval over rounds and a verdict against the target (< 2% of the op's median):
"< 2%" when the whole interval is below it, "> 2%" when it is above, "not resolved" otherwise (run more
rounds). Needs cuDF on a GPU; GPM rows need Hopper or newer.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired import paired_overhead, verdict

from gpu_notebooks.gpu.gpm import GpmSampler
from gpu_notebooks.gpu.nvml import read_gpu_status
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.rapids_benchmark.data import generate_data
from gpu_notebooks.rapids_benchmark.engines import detect_cudf
from gpu_notebooks.rapids_benchmark.ops import OPS, get_op
from gpu_notebooks.rapids_benchmark.timing import cuda_synchronize, time_operation

CONFIGS = ("none", "classic", "classic + GPM")


def timed(config, fn, repeats):
    """`repeats` timed calls of fn with the samplers of `config` running around them."""
    classic = GpuSampler(interval_s=0.1) if config != "none" else None
    gpm = GpmSampler() if config == "classic + GPM" else None
    if classic:
        classic.start()
    if gpm:
        gpm.start()
    try:
        return time_operation(fn, repeats, sync=cuda_synchronize).times, (gpm.rate_hz() if gpm else None)
    finally:
        if classic:
            classic.stop()
        if gpm:
            gpm.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--ops", default="sort,filter,groupby_many")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    gpus = read_gpu_status()
    cudf, why = detect_cudf(len(gpus))
    if cudf is None:
        sys.exit(f"needs cuDF on a GPU: {why}")
    gpm_probe = GpmSampler()
    print(f"{gpus[0]['name']}, {args.rows:,} rows, {args.rounds} rounds × {args.repeats} timed calls")
    print(f"GPM: {'available' if gpm_probe.available else gpm_probe.unavailable_reason}")
    df, lookup = generate_data(args.rows)
    dev_df, dev_lookup = cudf.from_pandas(df), cudf.from_pandas(lookup)
    del df
    print(
        "| op | config | median of all calls | per-round medians (min–max) | overhead vs none, paired "
        "(95% interval) | verdict | GPM windows/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for op in [o for o in args.ops.split(",") if o in OPS]:
        fn = lambda op=op: get_op(op)(cudf, dev_df, dev_lookup)  # noqa: E731
        for _ in range(3):  # warm the kernels and the pool before any configuration is timed
            fn()
        cuda_synchronize()
        calls = {c: [] for c in CONFIGS}
        rounds = {c: [] for c in CONFIGS}
        rates = []
        for r in range(args.rounds):
            order = CONFIGS[r % 3 :] + CONFIGS[: r % 3]
            for config in order:
                times, rate = timed(config, fn, args.repeats)
                calls[config] += times
                rounds[config].append(statistics.median(times))
                if rate:
                    rates.append(rate)
        for config in CONFIGS:
            if config == "classic + GPM" and not gpm_probe.available:
                continue
            med = statistics.median(calls[config])
            over, judged = "—", ""
            if config != "none":
                mid, low, high = paired_overhead(rounds[config], rounds["none"])
                over = f"{100 * mid:+.2f}% ({100 * low:+.2f} to {100 * high:+.2f}%)"
                judged = verdict(low, high)
            rate = f"{statistics.median(rates):.1f}" if config == "classic + GPM" and rates else ""
            print(
                f"| {op} | {config} | {med * 1e3:.2f} ms | {min(rounds[config]) * 1e3:.2f}–"
                f"{max(rounds[config]) * 1e3:.2f} ms | {over} | {judged} | {rate} |"
            )
    print("Target: each sampler's overhead < 2% of the op's median, judged on the paired 95% interval.")


if __name__ == "__main__":
    main()
