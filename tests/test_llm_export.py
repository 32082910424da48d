"""The LLM dashboard runs all seven steps headless on a CPU: `marimo export html ... -- --smoke` exits 0."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_llm_dashboard_smoke_export_runs_all_seven_steps(tmp_path):
    out, adapters = tmp_path / "llm.html", tmp_path / "adapters"
    env = {**os.environ, "LLM_DASHBOARD_OUTPUT_DIR": str(adapters), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "marimo",
            "export",
            "html",
            "llm_finetuning_dashboard.py",
            "-o",
            str(out),
            "--",
            "--smoke",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = out.read_text()
    for step in range(1, 8):
        assert f"Step {step} complete" in html, f"step {step} did not report completion"
    assert "FP32 (CPU fallback)" in html or "FP16 + GradScaler" in html
    (folder,) = adapters.iterdir()
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and (folder / "adapter_model.safetensors").stat().st_size > 0
    assert seconds < 120, f"smoke export took {seconds:.0f} s"
