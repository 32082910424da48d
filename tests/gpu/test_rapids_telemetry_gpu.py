"""The RAPIDS app's GPU telemetry on a real card (skipped without cuDF on a GPU): GPM sampling, energy per op,
GPM windows on each op, the achievable-bandwidth and floor probes, and "what utilization hides".

    python -m pytest -q -s tests/gpu/test_rapids_telemetry_gpu.py
Prints what it measured (-s) so the figures can be recorded in notes/BENCHMARKS.md.
"""

import pytest

from gpu_notebooks.gpu.gpm import GpmSampler
from gpu_notebooks.gpu.probe import utilization_probe
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.explain.gpu import explain_metrics, utilization_probe_text
from gpu_notebooks.rapids_benchmark.ops import OPS
from gpu_notebooks.rapids_benchmark.report import summarize_records
from gpu_notebooks.rapids_benchmark.roofline import card_probes
from gpu_notebooks.rapids_benchmark.runner import run_with_progress
from gpu_notebooks.rapids_benchmark.telemetry import op_telemetry_table, probe_workloads
from tests.gpu.conftest import CUDF, GPUS, WHY, needs_cudf

pytestmark = [pytest.mark.gpu, needs_cudf]
GPM = GpmSampler(device_indices=[0]) if CUDF is not None else None
needs_gpm = pytest.mark.skipif(
    GPM is None or not GPM.available, reason=f"no GPM here: {GPM.unavailable_reason if GPM else WHY}"
)


@pytest.fixture(scope="module")
def run_10m():
    engines = make_engines(CUDF)
    plan = {"sizes": [10_000_000], "rows": 10_000_000, "ops": list(OPS), "repeats": 5}
    bench = run_with_progress(plan, engines)
    assert not bench["errors"], bench["errors"]
    bench.update(card_probes(engines, plan["ops"]))
    summary = summarize_records(bench["records"], bench["peak_bandwidth_gbs"], bench["achievable_gbs"])
    return bench, summary


@needs_gpm
def test_gpm_samples_every_metric_at_five_hertz_or_more():
    import time

    sampler = GpmSampler(device_indices=[0]).start()
    time.sleep(2.0)
    sampler.stop()
    print(f"GPM windows/s: {sampler.rate_hz():.1f}; means {sampler.means()}")
    assert sampler.rate_hz() >= 5
    for s in sampler.samples:
        for key in ("sm_active_pct", "dram_bw_pct", "tensor_active_pct"):
            assert s[key] is None or 0 <= s[key] <= 100.5
        assert s["pcie_rx_bytes_s"] is None or s["pcie_rx_bytes_s"] >= 0


def test_each_gpu_op_has_its_energy_and_the_run_its_clocks(run_10m):
    bench, summary = run_10m
    cudf = [r for r in bench["records"] if r["engine"] == "cudf"]
    print({r["op"]: r["energy_j"] for r in cudf})
    assert all(r["energy_j"] is not None and r["energy_j"] > 0 for r in cudf)
    clocks = [s["sm_clock_mhz"] for s in bench["samples"] if s["sm_clock_mhz"]]
    assert clocks and max(clocks) > 500
    print({s["clock_events"] for s in bench["samples"]})


@needs_gpm
def test_ops_longer_than_a_window_get_gpm_figures_and_shorter_ones_are_marked(run_10m):
    bench, summary = run_10m
    print(op_telemetry_table(summary).to_string())
    print(f"GPM {bench['gpm_rate_hz']:.1f} windows/s, {len(bench['gpm_samples'])} windows")
    for r in (r for r in bench["records"] if r["engine"] == "cudf"):
        assert r["gpm_note"] in ("", "short")
        if r["gpm_note"] == "":
            assert r["sm_active_pct"] is not None and 0 <= r["dram_bw_pct"] <= 100.5
        if 5 * r["median_s"] >= 0.5:  # five repeats of half a second or more cover their windows
            assert r["gpm_note"] == "", r


def test_achievable_bandwidth_is_below_theoretical_and_the_floor_is_milliseconds(run_10m):
    bench, summary = run_10m
    got, peak = bench["achievable_gbs"], bench["peak_bandwidth_gbs"]
    print(f"achievable {got:,.0f} GB/s of theoretical {peak:,.0f} GB/s; floor {bench['floor_s']}")
    assert 0.3 * peak < got < 1.05 * peak
    assert set(bench["floor_s"]) == set(OPS) and all(1e-5 < v < 0.1 for v in bench["floor_s"].values())
    text = explain_metrics(GPUS, {"bench": bench, "summary": summary})
    print(text.split("**The roofline")[1].split("\n")[0])
    assert "its floor →" in text


def test_what_utilization_hides_on_this_card():
    rows = utilization_probe(*probe_workloads(0), gpu=0)
    print(utilization_probe_text(rows))
    assert [r["workload"] for r in rows] == ["tiny kernels", "FP16 matmul 8192²", "device-to-device copy"]
    tiny, matmul, copy = rows
    assert all(r["classic_util_pct"] is not None for r in rows)
    if GPM is not None and GPM.available:
        assert tiny["sm_active_pct"] < 10 and matmul["tensor_active_pct"] > 50 and copy["dram_bw_pct"] > 50
