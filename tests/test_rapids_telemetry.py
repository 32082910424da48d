"""GPU telemetry of the RAPIDS app with NVML mocked: GPM sampling, clocks and their reasons, energy per op,
GPM windows aligned to each op's timed repeats, and every reading NVML may not give."""

import time
import types

import pandas as pd
import pytest

from gpu_notebooks.gpu.gpm import (
    GPM_FIELDS,
    GpmSampler,
    gpm_frame,
    gpm_span_means,
    gpm_status_line,
    gpm_support,
    gpm_unavailable_reason,
    gpm_windows,
    pcie_bytes_per_s,
)
from gpu_notebooks.gpu.nvml import decode_clock_event_reasons, energy_joules, read_energy_mj, read_gpu_status
from gpu_notebooks.gpu.probe import probe_row, utilization_probe
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.rapids_benchmark.charts import live_gpu_panel, timeline_chart
from gpu_notebooks.rapids_benchmark.data import generate_data
from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.explain.gpu import (
    explain_metrics,
    explain_why_gpu,
    telemetry_text,
    utilization_probe_text,
)
from gpu_notebooks.rapids_benchmark.ops import bytes_touched, frame_nbytes, get_op
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.roofline import (
    bandwidth_table,
    card_probes,
    overhead_floor_probe,
    roofline_bound,
)
from gpu_notebooks.rapids_benchmark.runner import op_energy_j, run_benchmark, run_with_progress
from gpu_notebooks.rapids_benchmark.telemetry import (
    attach_gpm,
    engine_gpus,
    op_telemetry_table,
    run_utilization_probe,
)
from gpu_notebooks.rapids_benchmark.timing import Timing, time_operation
from tests.fakes import use_nvml


class NVMLError(Exception):
    """Stands for pynvml.NVMLError."""


def fake_nvml(supported=True, metric_returns=None, values=None, sample_fails=False, gpus=1, **overrides):
    """A pynvml stand-in with `gpus` GPUs; `overrides` replace any function (to raise or return None)."""
    metric_ids = {name: i + 1 for i, name in enumerate(GPM_FIELDS.values())}
    values = values or {}
    energy = {"mj": 1_000_000}

    class Metric:
        def __init__(self):
            self.metricId, self.nvmlReturn, self.value = 0, 0, 0.0
            self.metricInfo = types.SimpleNamespace(unit=b"MiB/sec")

    class Request:
        def __init__(self):
            self.version = self.numMetrics = 0
            self.sample1 = self.sample2 = None
            self.metrics = [Metric() for _ in range(16)]

    def metrics_get(request):
        by_id = {v: k for k, v in metric_ids.items()}
        for metric in request.metrics[: request.numMetrics]:
            name = by_id[metric.metricId]
            metric.nvmlReturn = (metric_returns or {}).get(name, 0)
            metric.value = values.get(name, 50.0)
        return request

    def sample_get(handle, sample):
        if sample_fails:
            raise NVMLError("GPM sample failed")
        return sample

    def total_energy(handle):
        energy["mj"] += 500  # half a joule more at every reading
        return energy["mj"]

    nvml = types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_GPM_METRICS_GET_VERSION=1,
        NVML_TEMPERATURE_GPU=0,
        NVML_TEMPERATURE_THRESHOLD_SLOWDOWN=1,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        c_nvmlGpmMetricsGet_t=Request,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: gpus,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlGpmQueryDeviceSupport=lambda h: types.SimpleNamespace(isSupportedDevice=int(supported)),
        nvmlGpmSampleAlloc=object,
        nvmlGpmSampleFree=lambda s: None,
        nvmlGpmSampleGet=sample_get,
        nvmlGpmMetricsGet=metrics_get,
        nvmlDeviceGetName=lambda h: "NVIDIA H200",
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=77, memory=30),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(total=141e9, used=3e9, free=138e9),
        nvmlDeviceGetTemperature=lambda h, kind: 55,
        nvmlDeviceGetTemperatureThreshold=lambda h, kind: 89,
        nvmlDeviceGetCudaComputeCapability=lambda h: (9, 0),
        nvmlDeviceGetPowerUsage=lambda h: 250_000,
        nvmlDeviceGetEnforcedPowerLimit=lambda h: 700_000,
        nvmlDeviceGetClockInfo=lambda h, kind: 1980 if kind == 1 else 3201,
        nvmlDeviceGetMaxClockInfo=lambda h, kind: 1980 if kind == 1 else 3201,
        nvmlDeviceGetMemoryBusWidth=lambda h: 6144,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x4,
        nvmlDeviceGetTotalEnergyConsumption=total_energy,
        **{name: value for name, value in metric_ids.items()},
    )
    for name, function in overrides.items():
        setattr(nvml, name, function)
    return nvml


def raises(*args, **kwargs):
    raise NVMLError("Not Supported")


def wait_for(condition, seconds=20.0):
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.02)


# ---------------------------------------------------------------- decoding and arithmetic


def test_clock_event_reasons_are_decoded_into_words():
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x1 | 0x4) == ["idle", "software power cap"]
    assert decode_clock_event_reasons(0x40 | 0x20) == [
        "software thermal slowdown",
        "hardware thermal slowdown",
    ]
    assert decode_clock_event_reasons(0x1000) == ["other (0x1000)"]
    assert decode_clock_event_reasons(None) == ["not reported"]


def test_energy_is_the_counter_difference_in_joules_per_op_call():
    assert energy_joules(1_000, 6_000) == 5.0
    assert energy_joules(None, 6_000) is None and energy_joules(6_000, 1_000) is None  # reset counter
    timing = Timing(times=[0.1, 0.1, 0.1, 0.1], warmup_s=0.1, counter=(10_000, 30_000))
    assert op_energy_j(timing) == 5.0  # 20 J over 4 calls
    assert op_energy_j(Timing(times=[0.1], warmup_s=0.1)) is None  # no counter read


def test_pcie_readings_are_converted_to_bytes_per_second_from_their_unit():
    assert pcie_bytes_per_s(2.0, "MiB/sec") == 2 * 2**20
    assert pcie_bytes_per_s(2.0, "MB/s") == 2e6
    assert pcie_bytes_per_s(None, "MiB/sec") is None


def test_the_energy_counter_is_read_around_the_timed_repeats_only():
    reads = []
    calls = []

    def counter():
        reads.append(len(calls))
        return 1000.0 * len(reads)

    timing = time_operation(lambda: calls.append(1), 3, read_counter=counter)
    # warm-up (1 call) before the first reading; the second right after the third timed call
    assert reads == [1, 4] and timing.counter == (1000.0, 2000.0)
    assert len(timing.starts) == 3 and timing.starts == sorted(timing.starts)


def test_the_energy_of_every_gpu_an_op_runs_on_is_summed_and_a_missing_one_gives_none(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml(gpus=2))
    assert read_energy_mj((0,)) == 1_000_500
    assert read_energy_mj(None) == 1_000_500 + 1_001_000  # both GPUs (the stand-in counts up per reading)
    assert read_energy_mj((3,)) is None  # a GPU NVML does not see
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlDeviceGetTotalEnergyConsumption=raises))
    assert read_energy_mj((0,)) is None
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlDeviceGetTotalEnergyConsumption=lambda h: None))
    assert read_energy_mj((0,)) is None
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlInit=raises))
    assert read_energy_mj((0,)) is None
    use_nvml(monkeypatch, lambda: None)
    assert read_energy_mj((0,)) is None


# ---------------------------------------------------------------- GPM: available and not


def test_gpm_support_says_why_in_one_line_when_it_is_not_there():
    assert gpm_support(None, None)[0] is False and "nvidia-ml-py" in gpm_support(None, None)[1]
    assert "no GPM interface" in gpm_support(types.SimpleNamespace(NVMLError=NVMLError), "gpu0")[1]
    ok, why = gpm_support(fake_nvml(nvmlGpmQueryDeviceSupport=raises), "gpu0")
    assert not ok and "Hopper" in why
    ok, why = gpm_support(fake_nvml(supported=False), "gpu0")
    assert not ok and "Hopper" in why and "\n" not in why
    assert gpm_support(fake_nvml(), "gpu0") == (True, "")


def test_the_gpm_sampler_reads_every_metric_of_every_gpu_at_its_rate(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml(gpus=2, values={"NVML_GPM_METRIC_PCIE_RX_PER_SEC": 3.0}))
    sampler = GpmSampler(hz=50).start()
    assert sampler.available and sampler.unavailable_reason == ""
    wait_for(lambda: len(sampler.samples) >= 10)
    sampler.stop()
    assert len(sampler.samples) >= 10 and {s["gpu"] for s in sampler.samples} == {0, 1}
    first = sampler.samples[0]
    assert set(first) == {"t", "gpu", *GPM_FIELDS}
    assert first["sm_active_pct"] == 50.0 and first["pcie_rx_bytes_s"] == 3 * 2**20
    assert sampler.means()["dram_bw_pct"] == 50.0 and sampler.rate_hz() > 0
    only_one = GpmSampler(device_indices=[1], hz=50)
    assert [g["gpu"] for g in only_one._gpus] == [1]


def test_a_missing_gpm_metric_is_none_and_a_failing_sample_never_crashes_the_sampler(monkeypatch):
    missing = {"NVML_GPM_METRIC_DRAM_BW_UTIL": 3}  # NVML_ERROR_NOT_SUPPORTED for this metric
    use_nvml(monkeypatch, lambda: fake_nvml(metric_returns=missing))
    sampler = GpmSampler(hz=50).start()
    wait_for(lambda: len(sampler.samples) >= 3)
    sampler.stop()
    assert sampler.samples and all(s["dram_bw_pct"] is None for s in sampler.samples)
    assert sampler.means()["dram_bw_pct"] is None and sampler.means()["sm_active_pct"] == 50.0
    use_nvml(monkeypatch, lambda: fake_nvml(sample_fails=True))
    sampler = GpmSampler(hz=50).start()
    wait_for(lambda: len(sampler.samples) >= 3)
    sampler.stop()
    assert sampler.samples and all(s[f] is None for s in sampler.samples for f in GPM_FIELDS)
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlGpmMetricsGet=raises))
    sampler = GpmSampler(hz=50).start()
    wait_for(lambda: len(sampler.samples) >= 3)
    sampler.stop()
    assert sampler.samples and all(s[f] is None for s in sampler.samples for f in GPM_FIELDS)


@pytest.mark.parametrize("nvml_state", ["not installed", "unsupported", "query raises", "no driver"])
def test_gpm_unavailable_paths_give_a_reason_and_no_samples(monkeypatch, nvml_state):
    nvml = {
        "not installed": None,
        "unsupported": fake_nvml(supported=False),
        "query raises": fake_nvml(nvmlGpmQueryDeviceSupport=raises),
        "no driver": fake_nvml(nvmlInit=raises, nvmlDeviceGetCount=raises),
    }[nvml_state]
    use_nvml(monkeypatch, lambda: nvml)
    sampler = GpmSampler().start()
    sampler.stop()
    assert not sampler.available and sampler.unavailable_reason and sampler.samples == []
    assert "\n" not in sampler.unavailable_reason
    line = gpm_status_line([{"index": 0}])
    assert line.startswith("GPM metrics are not available") and "classic readings" in line


def test_the_live_panel_says_gpm_is_sampled_on_a_card_that_has_it(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml())
    assert "sampled during each run" in gpm_status_line([{"index": 0}])
    assert gpm_status_line([]) == ""


# ---------------------------------------------------------------- classic readings NVML does not give

READINGS = [
    "nvmlDeviceGetName",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetMemoryBusWidth",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetTemperatureThreshold",
    "nvmlDeviceGetCudaComputeCapability",
]


@pytest.mark.parametrize("missing", READINGS)
@pytest.mark.parametrize("how", ["raises", "returns None", "absent from the binding"])
def test_a_missing_nvml_reading_never_crashes_the_status_the_sampler_or_the_panels(monkeypatch, missing, how):
    nvml = fake_nvml(**{missing: raises if how == "raises" else (lambda *a: None)})
    if how == "absent from the binding":
        delattr(nvml, missing)
    use_nvml(monkeypatch, lambda: nvml)
    gpus = read_gpu_status()
    assert len(gpus) == 1 and gpus[0]["name"]
    sampler = GpuSampler(interval_s=0.01)
    sampler.start()
    wait_for(lambda: len(sampler.samples) >= 2)
    sampler.stop()
    assert len(sampler.samples) >= 2
    assert sampler.latest_text().startswith(" · GPU 0")
    live_gpu_panel(gpus, gpm_status_line(gpus))  # builds: no None reaches a format string
    samples = pd.DataFrame(sampler.samples_relative_to(sampler.t0))
    timeline_chart(samples, pd.DataFrame()).to_dict()
    explain_metrics(gpus, None)
    explain_why_gpu(gpus, {"cpu_count": 4}, None)


def test_clocks_and_their_reasons_reach_the_sampler_the_progress_text_and_the_live_panel(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml())
    gpus = read_gpu_status()
    assert gpus[0]["sm_clock_mhz"] == 1980 and gpus[0]["mem_clock_mhz"] == 3201
    assert gpus[0]["clock_events"] == "software power cap"
    assert gpus[0]["peak_bandwidth_gbs"] == pytest.approx(3201e6 * 2 * 6144 / 8 / 1e9)
    sampler = GpuSampler(interval_s=0.01)
    sampler.start()
    wait_for(lambda: len(sampler.samples) >= 1)
    sampler.stop()
    assert "clocks held by software power cap" in sampler.latest_text()
    assert "software power cap" in str(live_gpu_panel(gpus).text)
    spec = str(
        timeline_chart(pd.DataFrame(sampler.samples_relative_to(sampler.t0)), pd.DataFrame()).to_dict()
    )
    assert "memory clock (MHz)" in spec and "clocks held by" in spec


# ---------------------------------------------------------------- GPM windows aligned to the timed repeats


def windows(values, width=0.1, gpu=0, field="sm_active_pct"):
    """GPM samples every `width` s from t = width, with `values` for `field` and 10.0 for the rest."""
    return [
        {"t": (i + 1) * width, "gpu": gpu, **dict.fromkeys(GPM_FIELDS, 10.0), field: v}
        for i, v in enumerate(values)
    ]


def test_each_sample_is_the_window_since_the_previous_one_of_its_gpu():
    w = gpm_windows(windows([1, 2]) + windows([3], gpu=1), origin=0.05)
    assert [(x["gpu"], x["start"], x["end"]) for x in w] == [(0, 0.05, 0.1), (1, 0.05, 0.1), (0, 0.1, 0.2)]


def test_windows_are_weighted_by_their_overlap_with_the_timed_repeats():
    w = gpm_windows(windows([80.0, 20.0, 0.0]))  # [0, .1] 80, [.1, .2] 20, [.2, .3] 0
    # repeats cover all of window 1 and 0.05 s of window 2: (80 × 0.1 + 20 × 0.05) / 0.15 = 60
    means = gpm_span_means(w, [(0.0, 0.1), (0.1, 0.15)], gpus=(0,))
    assert means["sm_active_pct"] == pytest.approx(60.0) and means["gpm_note"] == ""
    assert means["dram_bw_pct"] == pytest.approx(10.0)
    # the window the repeats do not touch never counts
    assert gpm_span_means(w, [(0.0, 0.1)], gpus=(0,))["sm_active_pct"] == pytest.approx(80.0)


def test_an_op_shorter_than_a_window_is_marked_short_and_given_no_number():
    w = gpm_windows(windows([80.0, 20.0]))
    means = gpm_span_means(w, [(0.01, 0.02), (0.03, 0.04)], gpus=(0,))  # 20 ms of a 100 ms window
    assert means["gpm_note"] == "short" and all(means[f] is None for f in GPM_FIELDS)
    assert gpm_span_means(w, [(5.0, 6.0)], gpus=(0,))["gpm_note"] == "no GPM window"
    assert gpm_span_means([], [(0.0, 1.0)], gpus=(0,))["gpm_note"] == "no GPM window"


def test_only_the_gpus_an_op_runs_on_count_and_none_readings_are_left_out():
    w = gpm_windows(windows([80.0]) + windows([0.0], gpu=1) + windows([None], gpu=2))
    assert gpm_span_means(w, [(0.0, 0.1)], gpus=(0,))["sm_active_pct"] == 80.0
    assert gpm_span_means(w, [(0.0, 0.1)], gpus=None)["sm_active_pct"] == 40.0  # Dask: every GPU
    assert gpm_span_means(w, [(0.0, 0.1)], gpus=(2,))["sm_active_pct"] is None


def test_attach_gpm_fills_gpu_records_only_from_their_own_spans():
    recs = [
        {"engine": "pandas", "op": "sort", "rows": 10, "on_gpu": False},
        {"engine": "cudf", "op": "sort", "rows": 10, "on_gpu": True},
        {"engine": "cudf", "op": "filter", "rows": 10, "on_gpu": True},
    ]
    spans = [
        {"engine": "pandas", "op": "sort", "rows": 10, "gpus": (), "repeats": [(0.0, 0.1)]},
        {"engine": "cudf", "op": "sort", "rows": 10, "gpus": (0,), "repeats": [(0.1, 0.2)]},
        {"engine": "cudf", "op": "filter", "rows": 10, "gpus": (0,), "repeats": [(0.21, 0.215)]},
    ]
    attach_gpm(recs, spans, windows([5.0, 95.0, 50.0]))
    assert "sm_active_pct" not in recs[0]
    assert recs[1]["sm_active_pct"] == pytest.approx(95.0) and recs[1]["gpm_note"] == ""
    assert recs[2]["gpm_note"] == "short" and recs[2]["sm_active_pct"] is None


def test_engine_gpus_is_the_union_of_the_gpu_engines_gpus():
    cpu = make_engines(None)
    assert engine_gpus(cpu) == []
    assert engine_gpus(cpu + [Engine("cudf", pd, on_gpu=True, gpus=(1,))]) == [1]
    assert engine_gpus(cpu + [Engine("dask_cudf", pd, on_gpu=True, gpus=None)]) is None


def test_a_run_with_gpm_gives_each_gpu_ops_row_its_telemetry_and_energy(monkeypatch):
    nvml = fake_nvml()  # one instance: its energy counter goes up 0.5 J at each reading
    use_nvml(monkeypatch, lambda: nvml)
    standin = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), gpus=(0,))
    plan = {"sizes": [2_000], "rows": 2_000, "ops": ["filter", "sort"], "repeats": 2}
    out = run_with_progress(plan, make_engines(None) + [standin])
    assert out["gpm_reason"] == "" and out["gpm_samples"]
    gpu_recs = [r for r in out["records"] if r["engine"] == "cudf"]
    assert gpu_recs and all(r["energy_j"] == pytest.approx(0.25) for r in gpu_recs)  # 0.5 J over 2 calls
    assert all(r["gpm_note"] in ("", "short") for r in gpu_recs)  # ms-long ops: short, on any machine
    assert all(
        "gpm_note" not in r and r["energy_j"] is None for r in out["records"] if r["engine"] == "pandas"
    )
    summary = summarize_records(out["records"])
    assert "cudf_energy_j" in summary and "cudf_sm_active_pct" in summary and "pandas_energy_j" not in summary
    timeline_chart(pd.DataFrame(out["samples"]), pd.DataFrame(out["spans"]), gpm_frame(out)).to_dict()


def test_a_run_without_gpm_says_why_and_its_records_have_no_gpm_figures(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml(supported=False))
    standin = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), gpus=(0,))
    plan = {"sizes": [2_000], "rows": 2_000, "ops": ["filter"], "repeats": 1}
    out = run_with_progress(plan, make_engines(None) + [standin])
    assert "Hopper" in out["gpm_reason"] and out["gpm_samples"] == [] and gpm_frame(out) is None
    cpu_only = run_with_progress(plan, make_engines(None))
    assert "CPU-only" in cpu_only["gpm_reason"]


def test_records_without_telemetry_keep_the_summary_whole():
    out = run_benchmark([2_000], ["filter"], make_engines(None), 1)
    worker = {**out["records"][0], "engine": "cudf_pandas", "on_gpu": True}  # as the worker returns it
    for key in ("energy_j",):
        worker.pop(key, None)
    summary = summarize_records(out["records"] + [worker])
    assert summary["cudf_pandas_energy_j"].isna().all() and summary["cudf_pandas_gpm_note"].isna().all()


# ---------------------------------------------------------------- byte model, achievable bandwidth, roofline


def test_the_byte_model_counts_read_columns_and_result_for_ops_and_the_frame_for_reads():
    df, lookup = generate_data(2_000)
    result = get_op("filter")(pd, df, lookup)
    columns = ["key_few", "key_many", "value", "value2", "category"]
    expected = sum(int(df[c].memory_usage(index=False)) for c in columns) + frame_nbytes(result)
    assert bytes_touched("filter", df, result) == expected
    assert bytes_touched("read_parquet", None, df) == frame_nbytes(df)


def test_achieved_bandwidth_is_a_share_of_achievable_and_of_theoretical():
    recs = [
        {**r, "bytes_touched": 2e9}
        for r in run_benchmark([2_000], ["sort"], make_engines(None), 1)["records"]
    ]
    gpu = {**recs[0], "engine": "cudf", "on_gpu": True, "median_s": 0.001, "bytes_touched": 2e9}
    summary = summarize_records(recs + [gpu], peak_bandwidth_gbs=4_000.0, achievable_gbs=2_000.0)
    row = summary.iloc[0]
    assert row["bandwidth_gbs"] == pytest.approx(2_000.0)  # 2 GB in 1 ms
    assert row["bandwidth_achievable_pct"] == pytest.approx(100.0) and row["bandwidth_pct"] == pytest.approx(
        50.0
    )
    table = bandwidth_table(summary, 4_000.0, 2_000.0, {"sort": 0.0002})
    assert list(table.iloc[0][["% of achievable", "% of theoretical", "× floor", "bound"]]) == [
        "100.0%",
        "50.0%",
        "5.0×",
        "memory-bound",
    ]
    assert "% of achievable" not in bandwidth_table(summary, 4_000.0).columns  # no probe: not shown


@pytest.mark.parametrize(
    "median, floor, achieved, achievable, dram, bound",
    [
        (0.0015, 0.001, 10.0, 4_000.0, None, "overhead-bound"),  # 1.5× its floor
        (0.02, 0.001, 2_500.0, 4_000.0, None, "memory-bound"),  # 62% of achievable
        (0.02, 0.001, 400.0, 4_000.0, 70.0, "memory-bound"),  # GPM: DRAM busy, more bytes than the model
        (0.02, 0.001, 400.0, 4_000.0, 10.0, "below the memory roof"),
        (0.02, None, 400.0, 4_000.0, None, "below the memory roof"),  # no floor: placed by bandwidth alone
        (0.02, 0.001, 400.0, None, None, "not placed: no achievable bandwidth measured"),
        (float("nan"), 0.001, 400.0, 4_000.0, None, "—"),
    ],
)
def test_each_op_is_placed_on_the_roofline_from_its_floor_and_bandwidth(
    median, floor, achieved, achievable, dram, bound
):
    assert roofline_bound(median, floor, achieved, achievable, dram) == bound


def test_the_floor_probe_times_each_in_memory_op_on_a_thousand_rows():
    pandas_engine = make_engines(None)[0]
    floor = overhead_floor_probe(pandas_engine, ["filter", "sort", "read_csv"], repeats=2)
    assert set(floor) == {"filter", "sort"} and all(0 < v < 60 for v in floor.values())
    assert card_probes(make_engines(None), ["filter"]) == {
        "achievable_gbs_by_gpu": {},
        "achievable_gbs": None,
        "floor_s": {},
    }


def test_the_telemetry_table_shows_gpm_figures_short_ops_and_energy():
    base = {"rows": 10, "op": "sort", "cudf_median_s": 0.2, "cudf_energy_j": 1.5, "cudf_gpm_note": ""}
    gpm = {
        "cudf_sm_active_pct": 61.0,
        "cudf_dram_bw_pct": 72.5,
        "cudf_tensor_active_pct": 0.0,
        "cudf_pcie_rx_bytes_s": 2e9,
        "cudf_pcie_tx_bytes_s": None,
    }
    short = {**base, "op": "filter", "cudf_energy_j": None, "cudf_gpm_note": "short", **dict.fromkeys(gpm)}
    table = op_telemetry_table(pd.DataFrame([{**base, **gpm}, short]))
    first, second = table.iloc[0], table.iloc[1]
    assert (first["SM active"], first["DRAM bandwidth"], first["energy per call"]) == (
        "61.0%",
        "72.5%",
        "1.500 J",
    )
    assert first["PCIe RX / TX"] == "2.0 / — GB/s"
    assert second["SM active"] == "shorter than a GPM window" and second["energy per call"] == "—"
    assert op_telemetry_table(pd.DataFrame([{"rows": 10, "op": "sort", "pandas_median_s": 1.0}])) is None
    text = telemetry_text({"gpm_samples": [], "gpm_reason": "this GPU or driver has no GPM counters."})
    assert "no GPM counters" in text and "timed repeats" in text


# ---------------------------------------------------------------- "what utilization hides"

PROBE_KEYS = {"workload", "classic_util_pct", "sm_active_pct", "tensor_active_pct", "dram_bw_pct", "seconds"}


def test_the_utilization_probe_runs_each_workload_with_both_samplers(monkeypatch):
    nvml = fake_nvml(values={"NVML_GPM_METRIC_SM_UTIL": 12.5})
    use_nvml(monkeypatch, lambda: nvml)
    calls = {"a": 0, "b": 0}
    workloads = {
        "a": lambda: lambda: calls.__setitem__("a", calls["a"] + 1),
        "b": lambda: lambda: calls.__setitem__("b", calls["b"] + 1),
    }
    synced = []
    rows = utilization_probe(workloads, sync=lambda: synced.append(1), gpu=0, seconds=0.4)
    assert [r["workload"] for r in rows] == ["a", "b"] and all(set(r) == PROBE_KEYS for r in rows)
    assert calls["a"] > 1 and calls["b"] > 1 and synced
    assert all(r["classic_util_pct"] == 77 and r["sm_active_pct"] == 12.5 for r in rows)
    assert all(r["seconds"] >= 0.4 for r in rows)


def test_the_probe_without_gpm_gives_none_and_the_callout_says_so(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml(supported=False))
    rows = utilization_probe({"x": lambda: lambda: None}, gpu=0, seconds=0.2)
    assert rows[0]["sm_active_pct"] is None and rows[0]["classic_util_pct"] == 77
    text = utilization_probe_text(rows, gpm_unavailable_reason(0))
    assert "GPM gave no readings" in text and "Hopper" in text


def test_probe_rows_are_medians_without_the_first_gpm_window():
    gpm = [{"sm_active_pct": 99.0}, {"sm_active_pct": 10.0}, {"sm_active_pct": 20.0}, {"sm_active_pct": None}]
    row = probe_row("w", [{"util_pct": 30}, {"util_pct": None}, {"util_pct": 10}], gpm, 1.5)
    assert row["sm_active_pct"] == 15.0 and row["classic_util_pct"] == 20 and row["dram_bw_pct"] is None


def test_the_callout_reads_each_workload_from_its_numbers():
    rows = [  # shaped like the H200 probe in notes/BENCHMARKS.md
        {
            "workload": "tiny kernels",
            "classic_util_pct": 28.0,
            "sm_active_pct": 0.0,
            "tensor_active_pct": 0.0,
            "dram_bw_pct": 0.0,
            "seconds": 1.5,
        },
        {
            "workload": "matmul",
            "classic_util_pct": 100.0,
            "sm_active_pct": 96.4,
            "tensor_active_pct": 93.5,
            "dram_bw_pct": 16.2,
            "seconds": 1.5,
        },
        {
            "workload": "copy",
            "classic_util_pct": 100.0,
            "sm_active_pct": 98.7,
            "tensor_active_pct": 0.0,
            "dram_bw_pct": 88.4,
            "seconds": 1.5,
        },
    ]
    text = utilization_probe_text(rows)
    lines = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **")}
    assert "launch-bound" in lines["tiny kernels"] and "28%" in lines["tiny kernels"]
    assert "compute-bound" in lines["matmul"] and "94%" in lines["matmul"]
    assert "memory-bound" in lines["copy"] and "88%" in lines["copy"]
    assert "| tiny kernels (1.5 s) | 28.0% | 0.0% |" in text


def test_without_cupy_the_probe_says_why(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_cupy(name, *a, **k):
        if name == "cupy":
            raise ImportError("no cupy")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    rows, why = run_utilization_probe()
    assert rows == [] and "CuPy" in why


@pytest.mark.parametrize(
    "broken",
    [
        {"nvmlDeviceGetTotalEnergyConsumption": raises, "nvmlGpmMetricsGet": raises},
        {"nvmlDeviceGetUtilizationRates": lambda h: None, "nvmlGpmSampleGet": raises},
        {"nvmlDeviceGetTotalEnergyConsumption": lambda h: None, "nvmlDeviceGetClockInfo": raises},
    ],
)
def test_a_run_with_readings_missing_completes_and_its_tables_build(monkeypatch, broken):
    nvml = fake_nvml(**broken)
    use_nvml(monkeypatch, lambda: nvml)
    standin = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy(), gpus=(0,))
    plan = {"sizes": [2_000], "rows": 2_000, "ops": ["sort"], "repeats": 2}
    out = run_with_progress(plan, make_engines(None) + [standin])
    assert not out["errors"] and out["records"]
    summary = summarize_records(out["records"], out["peak_bandwidth_gbs"])
    table = op_telemetry_table(summary)
    assert table is not None and len(table) == 1
    last = {"summary": summary, "bench": {**out, "floor_s": {}, "achievable_gbs": None}}
    explain_metrics(read_gpu_status(), last)
    timeline_chart(pd.DataFrame(out["samples"]), pd.DataFrame(out["spans"]), gpm_frame(out)).to_dict()
