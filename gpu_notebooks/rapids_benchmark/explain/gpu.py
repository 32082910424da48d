"""Learner texts about the GPU: why it is fast, its metrics, bandwidth, copies and the roofline."""

from __future__ import annotations

import pandas as pd

from gpu_notebooks.gpu.datasheets import memory_kind
from gpu_notebooks.gpu.gpm import GPM_HZ, GPM_MIN_COVER, gpm_unavailable_reason
from gpu_notebooks.rapids_benchmark.data import estimate_bytes_per_row
from gpu_notebooks.rapids_benchmark.explain.results import crossover_sentence
from gpu_notebooks.rapids_benchmark.formatting import fmt_seconds, format_rows
from gpu_notebooks.rapids_benchmark.roofline import (
    FLOOR_ROWS,
    MEMORY_BOUND_SHARE,
    OVERHEAD_BOUND_TIMES,
    bandwidth_table,
)


def copy_text(probe: dict, summary: pd.DataFrame) -> str:
    """The copy probe beside from_pandas's rate in this run, and what the difference costs."""
    text = (
        f"### Copies, honestly\n\nA raw host→GPU copy of {probe['bytes'] / 2**20:.0f} MiB ran at "
        f"**{probe['pageable_gbs']:,.1f} GB/s from pageable** memory and **{probe['pinned_gbs']:,.1f} GB/s from "
        "pinned** memory on this machine."
    )
    if "cudf_load_s" in summary:
        n = int(summary["rows"].max())
        load = summary.loc[summary["rows"] == n, "cudf_load_s"].dropna()
        if len(load):
            rate = n * estimate_bytes_per_row() / float(load.iloc[0]) / 1e9
            text += (
                f" `cudf.from_pandas` moved the {format_rows(n)}-row frame at **{rate:,.1f} GB/s**: it converts "
                "each column (and the categorical one) and stages pageable memory through a pinned buffer, so "
                "it runs below the raw copy. The *with copies* column is data that starts and ends in pandas; "
                "reading the file straight into GPU memory (`cudf.read_parquet`, the read rows above) and keeping "
                "data on the GPU across operations avoid most of that cost."
            )
    return text


def bandwidth_intro(bench: dict) -> str:
    """The heading and reading guide of the bandwidth table, with this card's theoretical and achievable rates."""
    peak, got = bench.get("peak_bandwidth_gbs"), bench.get("achievable_gbs")
    rates = []
    if got:
        rates.append(f"achievable **{got:,.0f} GB/s** (a device-to-device copy measured in this run)")
    if peak:
        rates.append(f"theoretical **{peak:,.0f} GB/s** (NVML's memory clock × bus width)")
    return (
        "### Achieved memory bandwidth, and where each operation sits\n\n"
        + (f"This card: {' and '.join(rates)}. " if rates else "")
        + "**Achieved** is the op's byte model (`bytes_touched`: the columns it reads once plus the result it "
        "writes once) ÷ its median time — a lower bound on real traffic. **Floor** is the same op on "
        f"{FLOOR_ROWS:,} rows in this run, where fixed costs (Python dispatch, kernel launches, allocation, "
        "synchronization) are all there is. **Bound**: within `OVERHEAD_BOUND_TIMES` "
        f"({OVERHEAD_BOUND_TIMES:g}×) of its floor an op is *overhead-bound*; at `MEMORY_BOUND_SHARE` "
        f"({MEMORY_BOUND_SHARE:.0%}) or more of the achievable rate (or of DRAM bandwidth by GPM) it is "
        "*memory-bound*; between the two it is *below the memory roof*: it makes several passes, uses scratch "
        "or reads in random order, so it moves more bytes than the model counts."
    )


def telemetry_text(bench: dict) -> str:
    """How each op's GPM figures and energy are taken, and what a 'shorter than a GPM window' op means."""
    gpm = (
        f"GPM sampled {bench['gpm_rate_hz']:.1f} windows per second per GPU in this run."
        if bench.get("gpm_samples")
        else f"GPM did not run: {bench.get('gpm_reason') or 'no GPU'} — only the energy column can be filled."
    )
    return (
        "**How these are taken.** Each GPM window is the average between two GPM samples "
        f"(`GPM_HZ` = {GPM_HZ:.0f} per second). An op's figure is the mean over the windows that overlap its "
        "**timed repeats** (not its warm-up or result check), each window weighted by how much of it the "
        "repeats cover. When the repeats fill less than `GPM_MIN_COVER` "
        f"({GPM_MIN_COVER:.0%}) of the windows they touch, the op is shorter than a window and its figures "
        "would mostly be other work's: it reads *shorter than a GPM window* instead of a made-up number (run "
        "more rows or more repeats to see it). **Energy per call** is NVML's total-energy counter "
        "(`nvmlDeviceGetTotalEnergyConsumption`) read just before the first timed repeat and after the last, "
        f"divided by the repeats; it includes the card's draw in the short gaps between repeats. {gpm}"
    )


def power_reading_text(cc: tuple | None) -> str:
    """What NVML's power reading is on this architecture (NVML API reference for nvmlDeviceGetPowerUsage)."""
    rule = (
        "per the NVML API reference, Ampere GPUs other than GA100 and all newer GPUs report power averaged over "
        "the last 1 s, while GA100 (A100) and older report an instantaneous value"
    )
    if not cc:
        return f"NVML did not report this card's architecture; {rule}."
    if tuple(cc) >= (8, 6):
        return (
            f"this card (compute capability {cc[0]}.{cc[1]}) reports power averaged over the last 1 s, so a "
            f"10 ms kernel barely moves it ({rule})."
        )
    return (
        f"this card (compute capability {cc[0]}.{cc[1]}) reports instantaneous power, so a short kernel shows "
        f"only when a sample lands on it ({rule})."
    )


def utilization_probe_text(rows: list[dict], gpm_reason: str = "") -> str:
    """The 'what utilization hides' callout, written from this GPU's probe: a table and what each row shows."""

    def pct(v):
        return "—" if v is None else f"{v:.1f}%"

    lines = [
        "| workload | classic utilization | SM active (GPM) | Tensor active (GPM) | DRAM bandwidth (GPM) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['workload']} ({r['seconds']:.1f} s) | {pct(r['classic_util_pct'])} | {pct(r['sm_active_pct'])} | "
        f"{pct(r['tensor_active_pct'])} | {pct(r['dram_bw_pct'])} |"
        for r in rows
    ]
    lines.append("")
    if all(r["sm_active_pct"] is None for r in rows):
        lines.append(
            "GPM gave no readings on this card: only classic utilization is shown, and it cannot tell these "
            "three apart by how busy the GPU really was. " + gpm_reason
        )
        return "\n".join(lines)
    for r in rows:
        util, sm, tensor, dram = (
            r[k] for k in ("classic_util_pct", "sm_active_pct", "tensor_active_pct", "dram_bw_pct")
        )
        if util is None or sm is None:
            continue
        if tensor is not None and tensor >= 100 * MEMORY_BOUND_SHARE:
            why = f"Tensor Cores active {tensor:.0f}% of the time: compute-bound, the one case of the three where the card's math units are the limit"
        elif dram is not None and dram >= 100 * MEMORY_BOUND_SHARE:
            why = f"DRAM bandwidth at {dram:.0f}% of its peak: memory-bound, as most DataFrame operations are"
        elif sm < 10 and util >= 20:
            why = (
                f"the SMs were active only {sm:.1f}% of the time: a kernel was *running* during {util:.0f}% of "
                "the samples, but each used one thread — launch-bound, like a DataFrame op on a few rows"
            )
        else:
            why = f"SMs active {sm:.0f}%"
        lines.append(f"- **{r['workload']}**: classic utilization {util:.0f}%; {why}.")
    lines.append(
        "\nClassic utilization is the share of time *any* kernel ran, so it cannot separate these: read SM "
        "activity for how much of the GPU worked, DRAM bandwidth for memory-bound work and Tensor activity for "
        "matrix math."
    )
    return "\n".join(lines)


def host_bandwidth_text(gpu_gbs: float | None) -> str:
    """Peak DDR5 bandwidth of a CPU socket and a dual-socket host (channel arithmetic), against this card's."""
    # channels × MT/s × 8 bytes per 64-bit channel: 8 × DDR5-4800 (Sapphire Rapids), 12 × DDR5-4800 (Genoa);
    # a dual-socket host from 2 × 8 channels at 4400 (2 DIMMs per channel) to 2 × 12 at 4800.
    one8, one12 = 8 * 4800 * 8 / 1e3, 12 * 4800 * 8 / 1e3
    dual_lo, dual_hi = 2 * 8 * 4400 * 8 / 1e3, 2 * one12
    text = (
        f"A CPU socket's DDR5 peaks far lower: channels × transfer rate × 8 bytes gives {one8:,.0f} GB/s for "
        f"8 channels of DDR5-4800 and {one12:,.0f} GB/s for 12, and a dual-socket GPU server about "
        f"{dual_lo / 1e3:.2f}–{dual_hi / 1e3:.2f} TB/s (arithmetic on the platforms' channel counts and DIMM speeds"
    )
    if gpu_gbs:
        text += f"; this card's peak is {gpu_gbs / dual_hi:,.1f}–{gpu_gbs / dual_lo:,.1f}× such a host's"
    return text + (
        "). These are peaks; measured stream rates are lower on both sides. pandas runs on one core, which "
        "reaches only part of one socket's bandwidth (this app does not measure this host's)."
    )


def explain_why_gpu(gpus: list[dict], host: dict, last: dict | None) -> str:
    """'Why GPU-accelerated DataFrames?' with this card's numbers and, after a run, this run's."""
    bw = next((g["peak_bandwidth_gbs"] for g in gpus if g.get("peak_bandwidth_gbs")), None)
    card = gpus[0]["name"] if gpus else None
    kind = memory_kind(card)
    memory = f"{kind} memory" if kind else "its memory"
    if bw:
        gpu_bw = f"This {card} can move **{bw:,.0f} GB/s** through {memory} (bandwidth from NVML: memory clock × bus width). "
    elif card:
        gpu_bw = (
            f"NVML did not report the memory clock and bus width of this {card}, so its peak is not shown. "
        )
    else:
        gpu_bw = "No GPU is visible, so no card's peak can be read here. "
    s = last["summary"] if last else None
    if s is not None and "cudf_median_s" in s and s["cudf_median_s"].notna().any():
        q = s.loc[s["cudf_median_s"].idxmin()]
        floor = (
            f"In this run cuDF's quickest operation took **{fmt_seconds(q['cudf_median_s'])}** ({q['op']}, "
            f"{format_rows(q['rows'])} rows)."
        )
    else:
        floor = (
            "In this project's recorded runs they add up to a millisecond or more per operation (cuDF's "
            "quickest operation at 10M rows took 2.2 ms, measured on an NVIDIA H100 80GB HBM3, 2026-11-25)."
        )
    cross = crossover_sentence(s) if s is not None else None
    text = [
        "**Parallelism.** pandas executes each operation on **one CPU core** (this machine has "
        f"{host['cpu_count']}). A data-center GPU runs tens of thousands of threads at once: a filter or a "
        "group-by is the same small piece of work repeated for every row, which is exactly what GPUs do well.",
        "",
        "**Memory bandwidth.** Most DataFrame operations do little arithmetic per byte, so their speed is set by "
        "how fast memory can be read. " + gpu_bw + host_bandwidth_text(bw),
        "",
        "**When it helps.** Every cuDF operation pays fixed costs: Python dispatch, launching several kernels, "
        "allocating the output, synchronizing, often a small read back to learn the output's size. "
        + floor
        + " With few rows those costs are the whole time and pandas wins; with enough rows the per-row work "
        "dominates and the GPU pulls ahead.",
        "\n"
        + (
            cross
            or "**Where cuDF overtakes pandas was not measured in this run:** run a **size sweep** "
            "to find the crossover on this machine."
        ),
        "\n**When it does not help:** small data; data that must travel to the GPU for a single cheap "
        "operation (the copy costs more than the work — see the *with copies* column); and arbitrary Python run "
        "row by row. cuDF compiles *simple numeric* functions given to `Series.apply` or `DataFrame.apply(axis=1)` "
        "for the GPU with Numba (the first call pays the compile), but code that uses Python objects, library "
        "calls or object columns cannot run on the GPU: under cudf.pandas it falls back to pandas on the CPU, "
        "as the fallback table of a cudf.pandas run shows.",
    ]
    return "\n".join(text)


def explain_metrics(gpus: list[dict], last: dict | None) -> str:
    """What each NVML reading and GPM metric measures, over what window, how to read them together, and the
    roofline framing of this run's ops."""
    g = gpus[0] if gpus else None
    limit = f"{g['power_limit_w']:.0f} W" if g and g.get("power_limit_w") else "its power limit"
    slowdown = (
        f"this card starts hardware slowdown (lower clocks) at **{g['temp_slowdown_c']} °C**, its own threshold "
        "from NVML (`nvmlDeviceGetTemperatureThreshold`, slowdown); readings well below it are healthy."
        if g and g.get("temp_slowdown_c") is not None
        else "this card's slowdown threshold is not reported by NVML (`nvmlDeviceGetTemperatureThreshold`); "
        "when a card throttles for heat, its SM clock drops under load and the clock-event reasons say thermal."
    )
    peak = (
        f" In your last run the GPU held at most **{last['bench']['peak_gpu_memory_gb']:.1f} GB**."
        if last and last["bench"].get("peak_gpu_memory_gb")
        else ""
    )
    no_gpm = gpm_unavailable_reason(g.get("index", 0)) if g else ""
    return "\n".join(
        [
            "The app reads two kinds of counters. NVML's **classic** readings come every 0.1 s from "
            "`GpuSampler`; NVML's **GPM** metrics (Hopper and newer) come from `GpmSampler` as windows, each the "
            f"average between two GPM samples, `GPM_HZ` = {GPM_HZ:.0f} per second. "
            + (f"On this card GPM is not available: {no_gpm}" if no_gpm else "")
            + gpm_ranges_text(last),
            "",
            "| metric | what it measures | window | for DataFrame work |",
            "|:---|:---|:---|:---|",
            "| **utilization** (classic) | share of the sample period in which *one or more kernels* ran "
            "(NVML API reference, `nvmlUtilization_t`) | NVML's own period, 1/6 s to 1 s by product (NVML API "
            "reference) | says only that *something* ran: one tiny kernel all the time reads 100% |",
            "| **SM active** (GPM) | share of the streaming multiprocessors that were busy (pynvml's "
            "`NVML_GPM_METRIC_SM_UTIL`) | one GPM window | high on large ops, near zero when kernels are tiny |",
            "| **SM occupancy** (GPM) | warps active against the SMs' theoretical maximum | one GPM window | "
            "how full the busy SMs are: a kernel can keep every SM busy with few warps each |",
            "| **Tensor active** (GPM) | share of time the SMs ran any Tensor Core instruction | one GPM window | "
            "near zero: no operation here is matrix math |",
            "| **DRAM bandwidth** (GPM) | memory bandwidth used against the theoretical maximum | one GPM window | "
            "the number to watch: most DataFrame ops are bounded by memory |",
            "| **PCIe RX / TX** (GPM) | bytes per second into / out of the GPU over PCIe (NVML reports MiB/s) | "
            "one GPM window | high only while data moves between host and GPU (`from_pandas`, `to_pandas`) |",
            "| **SM / memory clock**, **clock-event reasons** (classic) | the clocks now, and NVML's reasons "
            "holding them down (idle, software power cap, thermal slowdown, …) | instantaneous | a clock held by "
            "power cap or thermal during a run slows every op |",
            "",
            "**Reading them together:**",
            "- **Low SM active, high utilization → launch-bound.** Kernels run back to back but each is tiny: "
            "the time goes to Python dispatch and launches. A DataFrame op on a few thousand rows looks like this; "
            "more rows per call (or fewer, larger operations) is the fix.",
            "- **High DRAM bandwidth, moderate SM active → memory-bound.** The op streams memory; the only roof "
            "is the card's bandwidth. Large streaming ops (a filter's passes, a sort's) are expected to look like this; "
            "the tables above say whether this run's did.",
            "- **High Tensor active → compute-bound** on matrix math: what training does, not DataFrames.",
            "- **High PCIe, SM active near zero → copy-bound.** The GPU waits for data from the host: keep "
            "data on the GPU between operations, read files straight into GPU memory.",
            "Press **Measure what utilization hides** (section 1) to see the first three on this card.",
            "",
            "**The roofline, for DataFrame operations.** A roofline places each operation under two limits: the "
            "compute roof and the memory roof. DataFrame ops do a few operations per byte they move, so their "
            "roof is memory bandwidth, and below a certain size another limit shows: the fixed cost every call "
            "pays (dispatch, launches, allocation, synchronization). Each op is therefore *overhead-bound* (near "
            "its floor), *memory-bound* (near the memory roof) or in between. " + roofline_text(last),
            "",
            f"- **Memory used** counts every process on the card, including each process's CUDA context (its size "
            "depends on the card, driver and libraries) and memory that allocators keep after objects are freed "
            f"(an RMM pool if one is configured, PyTorch's caching allocator), so it can stay high after a run.{peak}",
            f"- **Temperature**: {slowdown}",
            f"- **Power** rises with work; this card's limit is {limit}; "
            + power_reading_text(g.get("compute_capability") if g else None),
            "",
            "**Troubleshooting:** no readings → the NVIDIA driver or `nvidia-ml-py` is missing; memory already high "
            "before you start → another process (another notebook?) holds memory; SM active low while cuDF runs → "
            "the data is too small to fill the GPU (launch-bound); clocks held by *software power cap* → the card "
            "is at its power limit.",
        ]
    )


def gpm_ranges_text(last: dict | None) -> str:
    """' In your last run, cuDF's operations read SM active a–b% and DRAM bandwidth c–d% …', or ''."""
    summary = last["summary"] if last else None
    if summary is None or "cudf_sm_active_pct" not in summary:
        return ""
    top = summary[summary["rows"] == summary["rows"].max()]
    parts = []
    for col, name in (("cudf_sm_active_pct", "SM active"), ("cudf_dram_bw_pct", "DRAM bandwidth")):
        values = pd.to_numeric(top[col], errors="coerce").dropna() if col in top else pd.Series(dtype=float)
        if len(values):
            parts.append(f"{name} {values.min():.0f}–{values.max():.0f}%")
    short = int((top.get("cudf_gpm_note", pd.Series(dtype=object)) == "short").sum())
    text = f" In your last run cuDF's operations at {format_rows(int(top['rows'].iloc[0]))} rows read " + (
        " and ".join(parts) if parts else "no GPM figure"
    )
    return text + (f" ({short} too short for a GPM window)." if short else ".")


def roofline_text(last: dict | None) -> str:
    """Each cuDF op of the last run placed on the roofline: its floor, achieved bandwidth and bound, from this run."""
    if not last or "cudf_median_s" not in last["summary"]:
        return "Run the benchmark with cuDF to place each operation from this run's measurements."
    bench, summary = last["bench"], last["summary"]
    floor, got = bench.get("floor_s") or {}, bench.get("achievable_gbs")
    parts = []
    if floor:
        lo, hi = min(floor.values()), max(floor.values())
        parts.append(
            f"In this run the floor — each op on {FLOOR_ROWS:,} rows — was **{fmt_seconds(lo)}–{fmt_seconds(hi)}** "
            "per call."
        )
    else:
        parts.append("This run measured no floor (it runs after a cuDF benchmark, under the GPU lock).")
    if got:
        parts.append(f"The memory roof: a device-to-device copy reached **{got:,.0f} GB/s** on this card.")
    table = bandwidth_table(summary, bench.get("peak_bandwidth_gbs"), got, floor)
    if table is not None and len(table):
        parts.append(
            "At the largest size: "
            + "; ".join(
                f"**{r['operation']}** {r['cuDF median']}, {r['achieved']}"
                + (f" ({r['% of achievable']} of achievable)" if "% of achievable" in r else "")
                + (f", {r['× floor']} its floor" if "× floor" in r else "")
                + f" → *{r['bound']}*"
                for r in table.to_dict("records")
            )
            + "."
        )
        parts.append(
            f"The labels follow this app's rule of thumb, a convention rather than a measurement: within "
            f"{OVERHEAD_BOUND_TIMES:g}× of its floor an op is *overhead-bound*; at {MEMORY_BOUND_SHARE:.0%} or more "
            "of the achievable copy rate (or of GPM's DRAM bandwidth) *memory-bound*; in between it moves more bytes "
            "than the byte model counts, or waits on random access."
        )
    return " ".join(parts)
