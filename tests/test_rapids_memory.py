"""Host-memory arithmetic of the RAPIDS dashboard: the cap holds for every engine, checks before each size/engine."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gpu_notebooks.rapids_benchmark.engine import Engine
from gpu_notebooks.rapids_benchmark.engines import make_engines
from gpu_notebooks.rapids_benchmark.ops import OPS
from gpu_notebooks.rapids_benchmark.runner import run_benchmark
from gpu_notebooks.rapids_benchmark.sizing import (
    HOST_FACTORS,
    MEMORY_HEADROOM,
    cap_rows,
    host_working_factor,
    memory_shortfall,
    plan_run,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_host_factor_is_the_sum_over_the_engines_of_the_run():
    assert host_working_factor(["pandas"]) == HOST_FACTORS["pandas"]
    both = host_working_factor(["pandas", "polars", "cudf"])
    assert both == pytest.approx(HOST_FACTORS["pandas"] + HOST_FACTORS["polars"] + HOST_FACTORS["cudf"])
    # Each engine measured on this machine took more than the old single factor allowed for the whole run.
    assert host_working_factor(["pandas", "polars"]) > 7.0


def test_more_engines_mean_a_smaller_cap_that_still_fits_free_memory():
    free = 24e9
    kw = dict(
        ops=list(OPS), repeats=1, sweep=False, bytes_per_row=25, free_gpu_bytes=None, free_host_bytes=free
    )
    cpu = plan_run(500_000_000, engine_names=["pandas", "polars"], **kw)
    gpu = plan_run(500_000_000, engine_names=["pandas", "polars", "cudf", "polars_gpu"], **kw)
    assert gpu["rows"] < cpu["rows"] < 500_000_000
    for plan in (cpu, gpu):
        assert plan["rows"] * 25 * plan["host_factor"] <= free * MEMORY_HEADROOM
        assert "host RAM" in plan["cap_message"]


def test_the_old_cap_that_let_the_server_be_killed_is_refused_now():
    """110M rows on 24 GB free with pandas + Polars: the run the OOM killer ended (issue 18)."""
    rows, msg = cap_rows(500_000_000, 25, None, 24e9, host_factor=host_working_factor(["pandas", "polars"]))
    assert rows < 110_000_000 and msg


def test_memory_shortfall_says_what_is_needed_and_what_is_free():
    assert memory_shortfall("host RAM", 8e9, 10e9) is None  # 8 ≤ 0.85 × 10
    text = memory_shortfall("host RAM", 9e9, 10e9)
    assert "9.0 GB of host RAM" in text and "10.0 GB is free" in text
    assert memory_shortfall("GPU memory", 1e12, None) is None  # unknown: nothing to say


def test_a_size_that_no_longer_fits_stops_the_run_with_a_message():
    free = iter(
        [{"host": 64e9, "gpu": None}, {"host": 1e6, "gpu": None}]
    )  # read once per size (pandas alone)
    out = run_benchmark([2_000, 20_000], ["filter"], make_engines(None), 1, free_memory=lambda: next(free))
    assert {r["rows"] for r in out["records"]} == {2_000}
    assert len(out["errors"]) == 1 and out["errors"][0].startswith("Stopped before 20K rows")
    assert "host RAM" in out["errors"][0]


def test_an_engine_that_no_longer_fits_is_skipped_and_the_others_run():
    pl = pytest.importorskip("polars")
    # Plenty at the start of the size, almost nothing when Polars is about to load its copy.
    readings = iter([{"host": 64e9, "gpu": None}, {"host": 1e5, "gpu": None}])
    out = run_benchmark([20_000], ["filter"], make_engines(None, pl), 1, free_memory=lambda: next(readings))
    assert [r["engine"] for r in out["records"]] == ["pandas"]
    assert len(out["errors"]) == 1 and out["errors"][0].startswith("polars skipped at 20K rows")


def test_a_gpu_engine_is_skipped_at_a_size_the_card_cannot_hold():
    standin = Engine("cudf", pd, on_gpu=True, to_device=lambda f: f.copy())
    out = run_benchmark(
        [20_000],
        ["filter"],
        make_engines(None) + [standin],
        1,
        free_memory=lambda: {"host": 64e9, "gpu": 1e5},
    )
    assert [r["engine"] for r in out["records"]] == ["pandas"]
    assert "cudf skipped at 20K rows" in out["errors"][0] and "GPU memory" in out["errors"][0]


@pytest.mark.slow
def test_the_capped_largest_size_completes_on_this_machine():
    """500M rows asked on this CPU machine: the cap from free memory, then the run itself, in its own process."""
    code = (
        "import resource, psutil, polars as pl, duckdb\n"
        "from gpu_notebooks.rapids_benchmark.engines import make_engines\n"
        "from gpu_notebooks.rapids_benchmark.ops import OPS\n"
        "from gpu_notebooks.rapids_benchmark.report import summarize_records\n"
        "from gpu_notebooks.rapids_benchmark.runner import run_benchmark\n"
        "from gpu_notebooks.rapids_benchmark.sizing import plan_from_settings\n"
        "engines = make_engines(None, pl, False, duckdb)  # the CPU engines of a default run\n"
        "settings = {'requested_rows': 500_000_000, 'ops': list(OPS), 'repeats': 1, 'sweep': False}\n"
        "plan = plan_from_settings(settings, engines)\n"
        "out = run_benchmark(plan['sizes'], plan['ops'], engines, 1)\n"
        "summary = summarize_records(out['records'])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print('ROWS', plan['rows'], 'PEAK_GB', round(peak / 1e9, 1), 'TOTAL_GB', round(psutil.virtual_memory().total / 1e9, 1))\n"
        "print('ERRORS', out['errors'])\n"
        "assert not out['errors'], out['errors']\n"
        "assert (summary['match'] == '✓').all(), summary['detail'].tolist()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]  # -9 would be the OOM killer
    assert "ROWS" in proc.stdout


@pytest.mark.parametrize(
    "which, free_gpu, free_host, advice, not_advice",
    [
        ("host RAM", None, 24e9, "more RAM", "bigger card"),
        ("GPU memory", 10e9, 2_000e9, "card with more memory", "more RAM"),
    ],
)
def test_the_cap_message_multiplies_the_factors_it_shows_and_advises_for_the_limit_it_hit(
    which, free_gpu, free_host, advice, not_advice
):
    """It once showed 500M × 25 × 26 ≈ 331 GB (26.5 was used) and said "use a bigger card" for host RAM."""
    import re

    factor = host_working_factor(["pandas", "duckdb", "polars"])  # 26.5: one decimal
    _, msg = cap_rows(500_000_000, 25.0108, free_gpu, free_host, host_factor=factor)
    rows, bpr, fac, need = re.search(
        r"([\d,]+) rows × ([\d.]+) B/row × ([\d.]+) .*?≈ ([\d,]+) GB", msg
    ).groups()
    product = int(rows.replace(",", "")) * float(bpr) * float(fac) / 1e9
    assert round(product) == int(need.replace(",", "")), msg
    assert f"GB of {which}" in msg and advice in msg and not_advice not in msg


def test_the_run_does_not_repeat_the_cap_the_preview_shows():
    from gpu_notebooks.rapids_benchmark.sizing import run_cap_notice

    preview = plan_run(10**8, ["filter"], 1, False, 25, None, 1e9)
    assert preview["cap_message"] and run_cap_notice(preview, preview) is None
    tighter = plan_run(10**8, ["filter"], 1, False, 25, None, 0.5e9)
    assert "at the click" in run_cap_notice(preview, tighter)
    assert run_cap_notice(plan_run(1_000, ["filter"], 1, False, 25, None, 1e9), tighter)  # no preview cap


def test_a_capped_run_shows_its_cap_once_in_the_notebook():
    """During the run the same cap callout was shown twice: the preview's and the run's."""
    code = (
        "import sys; sys.argv = ['app', '--run', '--rows', '1000000', '--ops', 'filter', '--repeats', '1']\n"
        "import gpu_notebooks.rapids_benchmark.sizing as sizing\n"
        "real = sizing.read_host_status\n"
        "def scarce():  # 0.3 GB free: a million rows is capped for pandas, Polars and DuckDB\n"
        "    return {**real(), 'available_bytes': 3e8, 'available_gb': 0.3}\n"
        "sizing.read_host_status = scarce\n"
        "import marimo\n"
        "shown, real_append = [], marimo.output.append\n"
        "def append(obj):\n"
        "    shown.append(getattr(obj, 'text', ''))\n"
        "    real_append(obj)\n"
        "marimo.output.append = append\n"
        "import rapids_benchmark_dashboard as app\n"
        "outputs, defs = app.app.run()\n"
        "texts = [getattr(o, 'text', '') or '' for o in outputs] + shown\n"
        "print('ROWS', defs['bench']['plan']['rows'])\n"
        "print('CAPS', sum(t.count('Size capped to') for t in texts))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ROWS 1000000" not in proc.stdout  # the cap held
    assert "CAPS 1" in proc.stdout, proc.stdout[-2000:]
