"""The "what utilization hides" probe (issue 14) on a CPU: samplers mocked, numbers in, callout out."""

import re
from pathlib import Path

import pytest
import torch

import gpu_notebooks.gpu.probe as probe
from gpu_notebooks.llm_finetuning.explain.memory import (
    UTILIZATION_REFERENCE,
    utilization_probe_text,
    utilization_reference_table_text,
    utilization_reference_text,
    utilization_section_text,
    utilization_table_text,
)
from gpu_notebooks.llm_finetuning.probe import run_utilization_probe, utilization_probe_unavailable
from tests.fakes import use_nvml

KEYS = ["workload", "classic_util_pct", "sm_active_pct", "tensor_active_pct", "dram_bw_pct", "seconds"]
# What NVML would say during each workload (classic utilization samples; GPM windows, the first dropped).
READINGS = [
    {"classic": [30, 28, 26], "gpm": [(50, 50, 50), (0.0, 0.0, 0.0), (0.4, 0.0, 0.1), (0.2, 0.0, 0.0)]},
    {
        "classic": [100, 100, 74],
        "gpm": [(1, 1, 1), (96.0, 93.0, 16.0), (97.0, 94.0, 17.0), (96.4, 93.5, 16.2)],
    },
    {"classic": [100, 100, 100], "gpm": [(1, 1, 1), (98.0, 0.0, 88.0), (99.0, 0.0, 89.0), (98.7, 0.0, 88.4)]},
]


@pytest.fixture
def mocked_nvml(monkeypatch):
    """GpuSampler and GpmSampler replaced by fakes that replay READINGS, one workload after the other."""
    seen = {"classic": 0, "gpm": 0}

    class FakeGpuSampler:
        def __init__(self, interval_s=0.1, device_indices=None, cpu_fallback=False):
            self.source, self.samples = "NVML", []

        def start(self):
            return self

        def stop(self):
            readings = READINGS[seen["classic"]]["classic"]
            self.samples = [{"t": i / 10, "util_pct": v} for i, v in enumerate(readings)]
            seen["classic"] += 1
            return self

    class FakeGpmSampler:
        def __init__(self, device_indices=None, hz=10.0):
            self.available, self.unavailable_reason, self.samples = True, "", []

        def start(self):
            return self

        def stop(self):
            windows = READINGS[seen["gpm"]]["gpm"]
            self.samples = [
                {"t": i / 5, "gpu": 0, "sm_active_pct": sm, "tensor_active_pct": tensor, "dram_bw_pct": dram}
                for i, (sm, tensor, dram) in enumerate(windows)
            ]
            seen["gpm"] += 1
            return self

    monkeypatch.setattr(probe, "GpuSampler", FakeGpuSampler)
    monkeypatch.setattr(probe, "GpmSampler", FakeGpmSampler)
    return seen


def small_probe():
    return run_utilization_probe(torch.device("cpu"), seconds=0.05, matmul_size=32, copy_bytes=4096)


def test_the_probe_returns_one_row_per_workload_with_the_shared_keys_and_medians(mocked_nvml):
    rows = small_probe()
    assert [list(row) for row in rows] == [KEYS] * 3
    assert (
        "tiny kernels" in rows[0]["workload"]
        and "matmul" in rows[1]["workload"]
        and "copy" in rows[2]["workload"]
    )
    assert rows[0]["classic_util_pct"] == 28 and rows[1]["classic_util_pct"] == 100
    # medians of the GPM windows after the first (which straddles the start: its 50%/1% never count)
    assert rows[0]["sm_active_pct"] == pytest.approx(0.2) and rows[1]["tensor_active_pct"] == pytest.approx(
        93.5
    )
    assert rows[2]["dram_bw_pct"] == pytest.approx(88.4) and rows[2]["tensor_active_pct"] == 0.0
    assert all(row["seconds"] >= 0.05 for row in rows)
    assert mocked_nvml == {"classic": 3, "gpm": 3}


def test_the_callout_is_written_from_the_measured_numbers(mocked_nvml):
    text = utilization_probe_text(small_probe())
    assert "classic utilization read **28%**, GPM's SM activity **0%**" in text
    assert "28 points of it were launches" in text and "launch-bound" in text
    assert "Tensor Core activity **94%**" in text and "compute-bound" in text  # 93.5 rounds to 94
    assert "DRAM bandwidth **88%**" in text and "memory-bound" in text


def test_the_callout_follows_the_numbers_when_they_disagree_with_the_lesson():
    rows = [
        {
            "workload": "tiny",
            "classic_util_pct": 5.0,
            "sm_active_pct": 3.0,
            "tensor_active_pct": 0.0,
            "dram_bw_pct": 0.0,
        },
        {
            "workload": "mm",
            "classic_util_pct": 60.0,
            "sm_active_pct": 40.0,
            "tensor_active_pct": 20.0,
            "dram_bw_pct": 5.0,
        },
        {
            "workload": "copy",
            "classic_util_pct": 50.0,
            "sm_active_pct": 30.0,
            "tensor_active_pct": 0.0,
            "dram_bw_pct": 20.0,
        },
    ]
    text = utilization_probe_text(rows)
    assert "agreed within 2 points" in text
    assert "not compute-bound here" in text and "DRAM was busy less than half the time" in text


def test_without_gpm_or_nvml_the_probe_says_why_in_a_line_and_nothing_crashes(monkeypatch):
    use_nvml(monkeypatch, lambda: None)  # no nvidia-ml-py: both samplers fall back
    rows = small_probe()  # the real samplers, on a CPU
    assert all(row["sm_active_pct"] is None and row["classic_util_pct"] is None for row in rows)
    assert "no utilization readings" in utilization_probe_text(rows)
    no_gpm = [dict(row, classic_util_pct=90.0) for row in rows]
    text = utilization_probe_text(no_gpm, "this GPU or driver has no GPM counters")
    assert "GPM is not available here (this GPU or driver has no GPM counters)" in text
    assert "cannot tell" in text


def test_no_gpu_gives_a_one_line_reason():
    assert "No CUDA GPU here" in utilization_probe_unavailable({"cuda_available": False})
    assert utilization_probe_unavailable({"cuda_available": True}) is None
    reference = utilization_reference_text()
    assert "measured on an NVIDIA H200 on 2026-12-01" in reference and "93.5%" in reference


def test_without_a_gpu_the_reference_is_labelled_with_its_card_and_date_everywhere():
    """Issue 24, item 14: "(What the device's H200 measured is below.)" → the card and the date, in the reason,
    the section's heading and the table's label alike."""
    label = "measured on an NVIDIA H200 on 2026-12-01"
    reason = utilization_probe_unavailable({"cuda_available": False})
    assert label in reason and "device's" not in reason
    assert f"## What GPU utilization hides — {label}" in utilization_section_text(False)
    assert "## What GPU utilization hides — measured on this GPU" in utilization_section_text(True)
    table = utilization_reference_table_text()
    assert table.startswith(f"**M{label[1:]} (`bench/device_probe_telemetry.py`, notes/BENCHMARKS.md)**")
    assert "| BF16 matmul 8,192 × 8,192 | 100.0 | 96.4 | 93.5 | 16.2 |" in table


def notes_reference():
    """Card, date and the three probe workloads' medians from notes/BENCHMARKS.md's GPU telemetry section."""
    notes = (Path(__file__).resolve().parents[1] / "notes" / "BENCHMARKS.md").read_text()
    section = notes.split("## GPU telemetry: classic utilization against NVML GPM")[1].split("\n## ")[0]
    first = section.split("\n", 1)[1].strip().splitlines()[0]  # the line under the heading
    card, date = first.split(" (")[0], re.search(r"\), (\d{4}-\d{2}-\d{2}),", first).group(1)
    rows = [
        line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| workload")
    ]

    def first_number(cell):
        return float(re.search(r"[\d.]+", cell.replace(",", "")).group())

    medians = []
    for line in rows[
        :3
    ]:  # tiny kernels, matmul, device-to-device copy (the fourth, host→GPU, is not probed here)
        cells = [c.strip() for c in line.strip("|").split("|")]
        medians.append([first_number(cells[i]) for i in (1, 2, 4, 5)])
    return card, date, medians


def test_the_reference_figures_are_the_ones_recorded_in_the_notes():
    card, date, medians = notes_reference()
    assert (UTILIZATION_REFERENCE["card"], UTILIZATION_REFERENCE["date"]) == (card, date)
    ours = [
        [row[k] for k in ("classic_util_pct", "sm_active_pct", "tensor_active_pct", "dram_bw_pct")]
        for row in UTILIZATION_REFERENCE["rows"]
    ]
    assert ours == medians


def test_this_gpus_probe_rows_make_a_table_labelled_with_the_card():
    """On a GPU the probe's own rows (missing GPM readings are None, `seconds` is not shown) get their own label."""
    rows = [
        {
            "workload": "tiny",
            "classic_util_pct": 31.0,
            "sm_active_pct": None,
            "tensor_active_pct": None,
            "dram_bw_pct": None,
            "seconds": 1.5,
        },
    ]
    table = utilization_table_text(rows, "measured just now on NVIDIA H100 80GB HBM3")
    assert table.startswith("**Measured just now on NVIDIA H100 80GB HBM3** (medians over each workload)")
    assert "| tiny | 31.0 | n/a | n/a | n/a |" in table and "1.5" not in table
