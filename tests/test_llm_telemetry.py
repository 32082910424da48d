"""GPU telemetry of the fine-tuning app with NVML mocked: GPM, clock-event reasons, energy, MFU by hand."""

import threading
import types

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import gpu_notebooks.llm_finetuning.telemetry as telemetry
from gpu_notebooks.gpu.gpm import GPM_FIELDS, GpmSampler, gpm_support, pcie_bytes_per_s
from gpu_notebooks.gpu.nvml import decode_clock_event_reasons, energy_joules
from gpu_notebooks.gpu.peaks import dense_peak_flops
from gpu_notebooks.gpu.sampler import GpuSampler
from gpu_notebooks.llm_finetuning.environment import device_status
from gpu_notebooks.llm_finetuning.lora import inject_lora
from gpu_notebooks.llm_finetuning.settings import ALL_TARGETS
from gpu_notebooks.llm_finetuning.telemetry import (
    device_energy_mj,
    lora_flops_per_token,
    mfu,
    run_flops_per_token,
)
from tests.fakes import use_nvml, wait_until


class NVMLError(Exception):
    """Stands for pynvml.NVMLError."""


def fake_nvml(supported=True, metric_returns=None, values=None, sample_fails=False, **overrides):
    """A pynvml stand-in with one GPU; `overrides` replace any function (e.g. to raise or return None)."""
    metric_ids = {name: i + 1 for i, name in enumerate(GPM_FIELDS.values())}
    values = values or {}

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

    nvml = types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_GPM_METRICS_GET_VERSION=1,
        NVML_TEMPERATURE_GPU=0,
        NVML_CLOCK_SM=1,
        NVML_CLOCK_MEM=2,
        c_nvmlGpmMetricsGet_t=Request,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlGpmQueryDeviceSupport=lambda h: types.SimpleNamespace(isSupportedDevice=int(supported)),
        nvmlGpmSampleAlloc=object,
        nvmlGpmSampleFree=lambda s: None,
        nvmlGpmSampleGet=sample_get,
        nvmlGpmMetricsGet=metrics_get,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=77),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(
            used=3 * 2**30, total=80 * 2**30, free=77 * 2**30
        ),
        nvmlDeviceGetTemperature=lambda h, kind: 55,
        nvmlDeviceGetPowerUsage=lambda h: 250_000,
        nvmlDeviceGetClockInfo=lambda h, kind: 1980 if kind == 1 else 2619,
        nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x4,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 1_000_000,
        **{name: value for name, value in metric_ids.items()},
    )
    for name, function in overrides.items():
        setattr(nvml, name, function)
    return nvml


def raises(*args, **kwargs):
    raise NVMLError("Not Supported")


# ---------------------------------------------------------------- decoding and arithmetic


def test_clock_event_reasons_are_decoded_into_words():
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x1 | 0x4) == ["idle", "software power cap"]
    assert decode_clock_event_reasons(0x40 | 0x20) == [
        "software thermal slowdown",
        "hardware thermal slowdown",
    ]
    assert decode_clock_event_reasons(0x80) == ["hardware power brake"]
    assert decode_clock_event_reasons(0x1000) == ["other (0x1000)"]
    assert decode_clock_event_reasons(None) == ["not reported"]


def test_energy_is_the_counter_difference_in_joules_and_missing_readings_give_none():
    assert energy_joules(1_000, 6_000) == 5.0
    assert energy_joules(None, 6_000) is None and energy_joules(1_000, None) is None
    assert energy_joules(6_000, 1_000) is None  # the counter was reset (driver reload)


def test_lora_flops_per_token_for_gpt2_124m_checked_by_hand():
    # GPT-2 124M: 12 blocks x (768x2304 + 768x768 + 768x3072 + 3072x768) = 84,934,656 matmul weights,
    # plus the tied LM head 768 x 50,257 = 38,597,376: N = 123,532,032.
    # LoRA r=8 on the four targets: per block 8 x (3072 + 1536 + 3840 + 3840) = 98,304; x 12 = 1,179,648.
    # At T = 128: 4N = 494,128,128; 4·L·T·d = 4 x 12 x 128 x 768 = 4,718,592; 6·N_lora = 7,077,888.
    assert lora_flops_per_token(123_532_032, 12, 128, 768, 1_179_648) == 505_924_608
    with torch.device("meta"):
        model = GPT2LMHeadModel(GPT2Config())
    inject_lora(model, ALL_TARGETS, r=8, alpha=16)
    run = types.SimpleNamespace(model=model)
    assert run_flops_per_token(run, 128) == 505_924_608


def test_mfu_arithmetic_for_gpt2_124m_on_an_h100_checked_by_hand():
    peak, source = dense_peak_flops("NVIDIA H100 80GB HBM3", torch.float16)
    assert peak == 989.4e12 and "datasheet" in source and "dense" in source
    # 400,000 tokens/s x 505,924,608 FLOPs/token = 2.0237e17 FLOP/s; / 9.894e14 = 0.20454...
    assert mfu(400_000, 505_924_608, peak) == pytest.approx(0.204538, rel=1e-5)
    assert mfu(None, 505_924_608, peak) is None and mfu(400_000, 505_924_608, None) is None


def test_the_peak_table_matches_whole_names_and_says_when_a_card_is_unknown():
    assert dense_peak_flops("NVIDIA L40S", torch.bfloat16)[0] == 362.05e12
    assert dense_peak_flops("NVIDIA L4", torch.float16)[0] == 121e12
    assert dense_peak_flops("NVIDIA H100 PCIe", torch.float16)[0] == 756e12
    assert dense_peak_flops("NVIDIA H200", torch.bfloat16)[0] == 989.4e12
    peak, why = dense_peak_flops("Tesla T4", torch.bfloat16)
    assert peak is None and "no BF16" in why
    peak, why = dense_peak_flops("NVIDIA GeForce GTX 1080", torch.float16)
    assert peak is None and "not in the app's small table" in why
    assert dense_peak_flops("NVIDIA H100 80GB HBM3", torch.float32)[0] is None


def test_pcie_readings_are_converted_to_bytes_per_second_from_their_unit():
    assert pcie_bytes_per_s(2.0, "MiB/sec") == 2 * 2**20
    assert pcie_bytes_per_s(2.0, "MB/s") == 2e6
    assert pcie_bytes_per_s(None, "MiB/sec") is None


# ---------------------------------------------------------------- GPM: available and not


def test_gpm_support_says_why_in_one_line_when_it_is_not_there():
    assert gpm_support(None, None)[0] is False and "nvidia-ml-py" in gpm_support(None, None)[1]
    old_binding = types.SimpleNamespace(NVMLError=NVMLError)
    assert "no GPM interface" in gpm_support(old_binding, "gpu0")[1]
    ok, why = gpm_support(fake_nvml(nvmlGpmQueryDeviceSupport=raises), "gpu0")
    assert not ok and "Hopper" in why
    ok, why = gpm_support(fake_nvml(supported=False), "gpu0")
    assert not ok and "Hopper" in why and "\n" not in why
    assert gpm_support(fake_nvml(), "gpu0") == (True, "")


def test_gpm_sampler_reads_every_metric_at_its_rate_and_names_the_fields(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml(values={"NVML_GPM_METRIC_PCIE_RX_PER_SEC": 3.0}))
    sampler = GpmSampler(hz=50).start()
    assert sampler.available and sampler.unavailable_reason == ""
    wait_until(lambda: len(sampler.samples) >= 5, seconds=20)
    sampler.stop()
    assert len(sampler.samples) >= 5
    first = sampler.samples[0]
    assert set(first) == {"t", "gpu", *GPM_FIELDS} and first["gpu"] == 0
    assert first["sm_active_pct"] == 50.0 and first["pcie_rx_bytes_s"] == 3 * 2**20
    assert sampler.means()["tensor_active_pct"] == 50.0


def wait_for_samples(sampler, count=3):
    """The sampler once it has `count` samples (how long that takes depends on how busy the machine is)."""
    wait_until(lambda: len(sampler.samples) >= count)
    return sampler


def test_a_missing_gpm_metric_is_none_and_a_failing_sample_never_crashes_the_sampler(monkeypatch):
    missing = {"NVML_GPM_METRIC_HMMA_TENSOR_UTIL": 3}  # NVML_ERROR_NOT_SUPPORTED for this metric
    use_nvml(monkeypatch, lambda: fake_nvml(metric_returns=missing))
    sampler = wait_for_samples(GpmSampler(hz=50).start())
    sampler.stop()
    assert sampler.samples and all(s["hmma_active_pct"] is None for s in sampler.samples)
    assert sampler.means()["hmma_active_pct"] is None
    use_nvml(monkeypatch, lambda: fake_nvml(sample_fails=True))
    sampler = wait_for_samples(GpmSampler(hz=50).start())
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


# ---------------------------------------------------------------- the classic sampler with missing readings


@pytest.mark.parametrize(
    "missing",
    [
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetClockInfo",
        "nvmlDeviceGetCurrentClocksEventReasons",
    ],
)
@pytest.mark.parametrize("how", ["raises", "returns None"])
def test_a_missing_nvml_reading_never_crashes_the_sampler_or_its_text(missing, how, monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml(**{missing: raises if how == "raises" else (lambda *a: None)}))
    sampler = GpuSampler(device_indices=[0])
    assert sampler.source == "NVML"
    (reading,) = sampler.read()
    if how == "returns None" and missing in ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo"):
        assert reading["util_pct" if "Util" in missing else "memory_used_gb"] is None
    sampler.samples.append(reading)
    text = device_status(sampler)
    assert isinstance(text, str) and text
    assert sampler.frame().shape[0] == 1
    if how == "raises":
        assert None in reading.values() or reading["clock_events"] == "not reported"


def test_the_clock_reasons_reach_the_progress_text(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml())
    sampler = GpuSampler(device_indices=[0])
    sampler.samples.extend(sampler.read())
    assert "SM 1980 MHz" in device_status(sampler) and "software power cap" in device_status(sampler)


def test_energy_is_read_from_nvml_when_it_starts_and_is_none_when_it_does_not(monkeypatch):
    use_nvml(monkeypatch, lambda: fake_nvml())
    monkeypatch.setattr(telemetry, "nvml_device_index", lambda device: 0)
    assert device_energy_mj(torch.device("cuda", 0)) == 1_000_000
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlInit=raises))
    assert device_energy_mj(torch.device("cuda", 0)) is None
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlDeviceGetTotalEnergyConsumption=raises))
    assert device_energy_mj(torch.device("cuda", 0)) is None
    assert device_energy_mj(torch.device("cpu")) is None


def test_stop_keeps_the_gpm_samples_while_the_thread_is_still_inside_nvml(monkeypatch):
    """A sampling thread stuck in an NVML call (a busy machine) still reads its two GPM samples: stop() must not
    free them under it; the thread frees them itself once the call returns, and only once."""
    inside, leave, freed = threading.Event(), threading.Event(), []

    def slow_metrics_get(request):
        inside.set()
        leave.wait(60)
        return request

    use_nvml(
        monkeypatch,
        lambda: fake_nvml(nvmlGpmMetricsGet=slow_metrics_get, nvmlGpmSampleFree=freed.append),
    )
    monkeypatch.setattr(GpmSampler, "STOP_WAIT_S", 0.1)
    sampler = GpmSampler(hz=50).start()
    assert inside.wait(60)
    sampler.stop()
    assert freed == []  # the thread is still reading them
    leave.set()
    sampler._thread.join(60)
    assert len(freed) == 2  # the pair of the one GPU, freed by the thread as it ended
    sampler.stop()
    assert len(freed) == 2  # a second stop frees nothing twice


def test_a_normal_stop_frees_the_gpm_samples_once(monkeypatch):
    freed = []
    use_nvml(monkeypatch, lambda: fake_nvml(nvmlGpmSampleFree=freed.append))
    sampler = wait_for_samples(GpmSampler(hz=50).start())
    sampler.stop()
    sampler._thread.join(60)  # stop() waits STOP_WAIT_S; a busy machine may need longer
    assert len(freed) == 2
