"""The LLM dashboard runs all seven steps headless on a CPU: `marimo export html ... -- --smoke` exits 0."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


# A whole headless run per model family: minutes on a busy 2-core machine, and in CI (`make test`).
@pytest.mark.parametrize("model", [None, "tiny-llama"])
def test_llm_dashboard_smoke_export_runs_all_seven_steps(tmp_path, model):
    out, adapters = tmp_path / "llm.html", tmp_path / "adapters"
    env = {**os.environ, "LLM_DASHBOARD_OUTPUT_DIR": str(adapters), "HF_HUB_OFFLINE": "1"}
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
            *(["--model", model] if model else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # generous: a busy 2-core CI machine; speed is measured in bench/, not here
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = out.read_text()
    for step in range(1, 8):
        assert f"Step {step} complete" in html, f"step {step} did not report completion"
    # The plan that ran, in step 1's sentence (the dropdown's "FP16 + GradScaler" label is always on the page).
    ran = "FP16 + GradScaler" if torch.cuda.is_available() else "FP32 (CPU fallback)"
    assert re.search(r"→ running.{0,60}?" + re.escape(ran), html.replace("\\u2192", "→")), ran
    # Try it (issue 25): one short generation from the saved adapter, with its cost callout (text only in outputs)
    assert "What one generated token costs" in html
    (folder,) = adapters.iterdir()
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and (folder / "adapter_model.safetensors").stat().st_size > 0
    if model == "tiny-llama":  # the Llama path: its own layer names, PEFT's Linear orientation
        assert "tiny-offline-llama" in html and config["fan_in_fan_out"] is False
        assert set(config["target_modules"]) == {
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        }
