"""The RAPIDS app's explanations (issue 16): every figure comes from this run or this card, or carries its source."""

import pandas as pd
import pytest

import gpu_notebooks.rapids_benchmark.files as files
from gpu_notebooks.gpu.datasheets import memory_kind
from gpu_notebooks.gpu.nvml import nvml_card_facts
from gpu_notebooks.rapids_benchmark.engines import detect_cudf, make_engines
from gpu_notebooks.rapids_benchmark.explain.gpu import (
    explain_metrics,
    explain_why_gpu,
    host_bandwidth_text,
    power_reading_text,
    roofline_text,
)
from gpu_notebooks.rapids_benchmark.explain.method import (
    count_words,
    csv_parquet_size_text,
    explain_baseline,
    explain_multi_gpu,
    explain_operations,
    intro_text,
)
from gpu_notebooks.rapids_benchmark.explain.results import crossover_sentence, takeaways_text
from gpu_notebooks.rapids_benchmark.ops import ALL_OPS, OP_SHORT_NAMES
from gpu_notebooks.rapids_benchmark.runner import run_benchmark

HOST = {"cpu_count": 16}


def sweep(speedups_by_op: dict[str, list[float]], rows=(1_000, 10_000, 100_000)) -> pd.DataFrame:
    frames = [
        pd.DataFrame({"rows": list(rows), "op": op, "speedup": sp, "cudf_median_s": 0.002})
        for op, sp in speedups_by_op.items()
    ]
    return pd.concat(frames, ignore_index=True)


def test_the_crossover_is_read_from_the_sweep_per_op_and_on_average():
    text = crossover_sentence(sweep({"filter": [0.1, 1.0, 10.0], "sort": [0.01, 0.1, 1.0]}))
    assert "1K to 100K rows" in text
    assert "filter about 10K rows" in text and "sort about 100K rows" in text
    assert "**about 31.6K rows**" in text  # geometric mean of the two: 10^-1.5, -0.5, 0.5 crosses at 10^4.5


def test_a_crossover_outside_the_sweep_is_said_so_and_one_size_is_no_sweep():
    text = crossover_sentence(sweep({"filter": [2.0, 3.0, 4.0], "sort": [0.1, 0.2, 0.5]}))
    assert "filter below 1K rows" in text and "sort not reached by 100K rows" in text
    assert crossover_sentence(sweep({"filter": [2.0]}, rows=(1_000,))) is None
    assert crossover_sentence(pd.DataFrame({"rows": [1, 2], "op": ["f", "f"]})) is None


def test_why_gpu_quotes_this_runs_crossover_or_says_it_was_not_measured():
    s = sweep({"filter": [0.1, 1.0, 10.0]})
    with_sweep = explain_why_gpu([], HOST, {"summary": s})
    assert "filter about 10K rows" in with_sweep and "not measured" not in with_sweep
    single = explain_why_gpu([], HOST, {"summary": s[s["rows"] == 100_000]})
    assert "not measured in this run" in single
    assert "not measured in this run" in explain_why_gpu([], HOST, None)
    for text in (with_sweep, single):
        assert "tens of microseconds" not in text and "million rows" not in text


def test_takeaways_quote_the_crossover_or_say_it_was_not_measured():
    s = sweep({"filter": [0.1, 1.0, 10.0]}).assign(
        speedup_e2e=1.0, pandas_median_s=0.01, fastest_cpu="pandas", speedup_vs_cpu=1.0
    )
    assert "filter about 10K rows" in takeaways_text({"summary": s, "bench": {}})
    top = s[s["rows"] == 100_000]
    assert "**not measured**" in takeaways_text({"summary": top, "bench": {}})


@pytest.mark.parametrize(
    "name, kind",
    [
        ("NVIDIA H200", "HBM3e"),
        ("NVIDIA H100 80GB HBM3", "HBM3"),
        ("NVIDIA H100 PCIe", "HBM2e"),
        ("NVIDIA A100-SXM4-80GB", "HBM2e"),
        ("NVIDIA A100-PCIE-40GB", "HBM2"),
        ("NVIDIA L4", "GDDR6"),
        ("NVIDIA L40S", "GDDR6"),
        ("Tesla T4", "GDDR6"),
        ("NVIDIA GH200 480GB", None),  # not in the table: no name is guessed
        ("Some Future GPU", None),
        (None, None),
    ],
)
def test_the_memory_is_named_from_the_device_name(name, kind):
    assert memory_kind(name) == kind


def bandwidth_paragraph(gpus) -> str:
    text = explain_why_gpu(gpus, HOST, None)
    return text[text.index("**Memory bandwidth") : text.index("**When it helps")]


def test_the_bandwidth_text_names_this_cards_memory_and_no_h100_figure_on_another_card():
    h200 = bandwidth_paragraph([{"name": "NVIDIA H200", "peak_bandwidth_gbs": 4814.0}])
    assert "HBM3e" in h200 and "4,814 GB/s" in h200 and "H100" not in h200
    l4 = bandwidth_paragraph([{"name": "NVIDIA L4", "peak_bandwidth_gbs": 300.0}])
    assert "GDDR6" in l4 and "HBM" not in l4
    unknown = bandwidth_paragraph([{"name": "Mystery GPU", "peak_bandwidth_gbs": None}])
    assert "did not report" in unknown and "3,350" not in unknown and "HBM" not in unknown
    assert "its memory" in bandwidth_paragraph([{"name": "Mystery GPU", "peak_bandwidth_gbs": 900.0}])
    assert "HBM" not in bandwidth_paragraph([])
    for text in (h200, l4, unknown):
        assert "200–300" not in text and "10–17" not in text and "400×" not in text and "45×" not in text


def test_host_bandwidth_is_ddr5_channel_arithmetic_and_the_ratio_uses_this_cards_peak():
    text = host_bandwidth_text(4800.0)
    assert "307 GB/s for 8 channels" in text and "461 GB/s for 12" in text and "0.56–0.92 TB/s" in text
    assert "arithmetic" in text
    assert "5.2–8.5×" in text  # 4800 / 921.6 and 4800 / 563.2
    assert "×" not in host_bandwidth_text(None).replace("channels × transfer rate × 8", "")


def test_the_ops_callout_gives_the_current_groupby_mechanism_and_no_contention_story():

    text = explain_operations(None)
    assert "shared memory" in text and "PR #16619" in text and "fewer than 128" in text
    assert "not established" in text and "hypothesis" in text
    assert "input rows, not of distinct keys" in text
    baseline = explain_baseline(HOST, None)
    for t in (text, baseline):
        low = t.lower()
        assert "no longer fits in cache" not in low and "100k slots" not in low
        assert "atomics on hot keys" not in low and "same few accumulators" not in low


def test_the_apply_limit_names_numba_udfs_and_the_cudf_pandas_fallback():
    text = explain_why_gpu([], HOST, None)
    assert "Numba" in text and "falls back to pandas" in text and "no GPU accelerates" not in text


def test_the_dask_callout_says_how_much_moves_in_a_shuffle_and_by_which_path():

    gpu = {"name": "NVIDIA H200", "memory_total_gb": 141.0}
    four = explain_multi_gpu([gpu] * 4, None)
    assert "(P−1)/P" in four and "3/4 with 4 GPUs (this machine)" in four
    assert "TCP" in four and "host memory" in four and 'protocol="ucx"' in four
    assert "every row" not in four and "crosses NVLink or PCIe" not in four
    assert "1/2 with 2 GPUs)" in explain_multi_gpu([gpu], None)  # one GPU: the example, not "this machine"


class FakeNvml:
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1

    class NVMLError(Exception):
        pass

    def __init__(self, threshold=89, cc=(9, 0)):
        self.threshold, self.cc = threshold, cc

    def nvmlDeviceGetTemperatureThreshold(self, handle, which):
        assert which == 1  # slowdown, not shutdown (0) or GPU max (3)
        if self.threshold is None:
            raise self.NVMLError("Not Supported")
        return self.threshold

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        if self.cc is None:
            raise self.NVMLError("Not Supported")
        return self.cc


def test_the_metrics_callout_quotes_the_cards_own_slowdown_threshold_or_says_not_reported():

    facts = nvml_card_facts(FakeNvml(), object())
    assert facts == {"temp_slowdown_c": 89, "compute_capability": (9, 0)}
    gpu = {"name": "NVIDIA H200", "power_limit_w": 700.0, **facts}
    text = explain_metrics([gpu], None)
    assert "**89 °C**" in text and "85 °C" not in text
    missing = nvml_card_facts(FakeNvml(threshold=None, cc=None), object())
    assert missing == {"temp_slowdown_c": None, "compute_capability": None}
    assert "not reported" in explain_metrics([{**gpu, **missing}], None)
    assert "not reported" in explain_metrics([], None)


@pytest.mark.parametrize(
    "cc, says",
    [
        ((9, 0), "averaged over the last 1 s"),
        ((8, 6), "averaged over the last 1 s"),
        ((8, 9), "averaged"),
        ((8, 0), "instantaneous power"),
        ((7, 0), "instantaneous power"),
        (None, "did not report"),
    ],
)
def test_the_power_reading_is_described_by_architecture(cc, says):

    verdict = power_reading_text(cc).split("per the NVML API reference")[0]  # the rule itself names both
    assert says in verdict
    other = "instantaneous" if "averaged" in says else "averaged"
    assert cc is None or other not in verdict


def test_the_cudf_requirement_names_both_wheel_lines():

    module, msg = detect_cudf(0)
    assert (
        "7.0 (Volta) or newer with the CUDA 12 wheels" in msg
        and "7.5 (Turing) or newer with the CUDA 13" in msg
    )


def test_no_rapids_callout_repeats_a_claim_issue_16_found_false():
    from tests.test_docs_claims import false_claims

    s = sweep({"filter": [0.1, 1.0, 10.0], "sort": [0.5, 2.0, 30.0]}).assign(
        speedup_e2e=1.0,
        pandas_median_s=0.01,
        fastest_cpu="pandas",
        speedup_vs_cpu=1.0,
        cudf_warmup_s=0.1,
        d2h_s=0.01,
    )
    last = {"summary": s, "bench": {"peak_gpu_memory_gb": 2.0}}
    for gpus in (
        [],
        [{"name": "NVIDIA H100 80GB HBM3", "peak_bandwidth_gbs": 3352.0, "memory_total_gb": 80.0}],
        [{"name": "NVIDIA L4", "peak_bandwidth_gbs": 300.0, "memory_total_gb": 24.0}],
    ):
        for run in (None, last):
            texts = [
                explain_why_gpu(gpus, HOST, run),
                explain_baseline(HOST, run),
                explain_operations(run),
                explain_multi_gpu(gpus, run),
                explain_metrics(gpus, run),
                takeaways_text(run),
            ]
            for text in texts:
                assert false_claims(text) == [], text
                assert "3,350" not in text and "85 °C" not in text and "below roughly a million" not in text


def metrics_run():
    """A last run with cuDF at 10M rows: medians, bytes, GPM figures, the floor and the copy probe."""
    summary = pd.DataFrame(
        {
            "rows": [10_000_000] * 2,
            "op": ["filter", "groupby_many"],
            "cudf_median_s": [0.004, 0.0025],
            "gpu_bytes": [8e9, 1e9],
            "cudf_sm_active_pct": [71.0, None],
            "cudf_dram_bw_pct": [64.0, None],
            "cudf_gpm_note": ["", "short"],
        }
    )
    summary["bandwidth_gbs"] = summary["gpu_bytes"] / summary["cudf_median_s"] / 1e9
    summary["bandwidth_pct"] = 100 * summary["bandwidth_gbs"] / 4_800.0
    summary["bandwidth_achievable_pct"] = 100 * summary["bandwidth_gbs"] / 4_000.0
    bench = {
        "peak_bandwidth_gbs": 4_800.0,
        "achievable_gbs": 4_000.0,
        "floor_s": {"filter": 0.0011, "groupby_many": 0.0019},
    }
    return {"summary": summary, "bench": bench}


def test_the_metrics_callout_explains_each_pattern_and_places_this_runs_ops_on_the_roofline():

    gpu = {
        "index": 0,
        "name": "NVIDIA H200",
        "power_limit_w": 700.0,
        "temp_slowdown_c": 89,
        "compute_capability": (9, 0),
    }
    text = explain_metrics([gpu], metrics_run())
    for pattern in ("launch-bound", "memory-bound", "compute-bound", "copy-bound", "1/6 s to 1 s"):
        assert pattern in text, pattern
    assert "SM active 71–71% and DRAM bandwidth 64–64% (1 too short for a GPM window)" in text
    roof = roofline_text(metrics_run())
    assert "**1.1 ms–1.9 ms**" in roof and "**4,000 GB/s**" in roof
    # filter: 8 GB in 4 ms = 2,000 GB/s = 50% of achievable, 3.6× its floor → memory-bound;
    # groupby_many: 2.5 ms is 1.3× its 1.9 ms floor → overhead-bound
    assert "**filter** 4.0 ms, 2,000 GB/s (50.0% of achievable), 3.6× its floor → *memory-bound*" in roof
    assert (
        "**groupby_many** 2.5 ms, 400 GB/s (10.0% of achievable), 1.3× its floor → *overhead-bound*" in roof
    )
    assert "a convention rather than a measurement: within 2× of its floor" in roof  # the rule is named
    assert "Run the benchmark with cuDF" in roofline_text(None)
    no_floor = metrics_run()
    no_floor["bench"] = {"peak_bandwidth_gbs": 4_800.0}
    assert "measured no floor" in roofline_text(no_floor)


def test_csv_against_parquet_size_is_this_runs_files_not_a_fixed_ratio(tmp_path, monkeypatch):
    """The ops callout quoted "2–3× larger" from nowhere; now the ratio comes from the files this run wrote."""

    assert "×" not in csv_parquet_size_text(None)
    assert "2–3×" not in explain_operations(None)

    monkeypatch.setattr(files, "data_cache_dir", lambda: str(tmp_path))
    ops = ["read_parquet", "read_csv"]
    bench = run_benchmark([20_000], ops, make_engines(None), repeats=1)
    (gen,) = bench["generation"]
    csv, parquet = gen["file_bytes"]["csv"], gen["file_bytes"]["parquet"]
    assert csv > 0 and parquet > 0
    text = explain_operations({"bench": bench, "summary": pd.DataFrame({"rows": [20_000]})})
    assert f"{csv / parquet:.1f}×" in text and "20K rows" in text


def test_the_intro_counts_and_lists_the_operations_from_the_ops_the_app_runs():
    assert list(OP_SHORT_NAMES) == list(ALL_OPS)  # a new op needs its short name, in the same order
    names = [OP_SHORT_NAMES[op] for op in ALL_OPS]
    text = intro_text(names, 10)
    assert f"the same {count_words(len(ALL_OPS))} DataFrame operations" in text
    assert all(name in text for name in names)
    assert "same two DataFrame operations — **filter and sort**" in intro_text(["filter", "sort"], 10)
    assert "ten times a second" in text and "four times a second" in intro_text(names, 4)
    assert count_words(13) == "13"


def test_a_ratio_far_below_one_keeps_its_digits_instead_of_reading_zero():
    from gpu_notebooks.rapids_benchmark.explain.results import speed_range_text
    from gpu_notebooks.rapids_benchmark.formatting import fmt_ratio

    assert [fmt_ratio(x) for x in (0.021, 0.25, 2.04, 145.3)] == ["0.021×", "0.2×", "2.0×", "145×"]
    said = speed_range_text(pd.Series([0.021, 0.5]), "pandas")
    assert said == "0.021×–0.5× as fast as pandas (slower)" and "0.0×" not in said
