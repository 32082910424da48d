"""The page's cards about this machine (marimo elements): its GPUs and CPU, and whether the GPU engine runs."""

from __future__ import annotations

import marimo as mo


def machine_cards(gpus: list[dict], host: dict):
    """One card per GPU (memory, datasheet peak bandwidth when known) and one for the CPU and its free RAM."""
    cards = [
        mo.stat(
            value=g["name"].replace("NVIDIA ", ""),
            label=f"GPU {g['index']}",
            caption=(
                f"{g['memory_total_gb']:.0f} GB · peak bandwidth {g['peak_bandwidth_gbs']:,.0f} GB/s"
                if g.get("peak_bandwidth_gbs")
                else f"{g['memory_total_gb']:.0f} GB"
            ),
            bordered=True,
        )
        for g in gpus
    ]
    cards.append(
        mo.stat(
            value=f"{host['cpu_count']} cores",
            label="CPU",
            caption=f"{host['available_gb']:.0f} of {host['total_gb']:.0f} GB RAM free",
            bordered=True,
        )
    )
    return mo.hstack(cards, wrap=True, justify="start")


def gpu_engine_callout(cudf_ready: bool, cudf_message: str):
    """Green when cuDF runs here; otherwise what is missing, and that the CPU engines still run in full."""
    if cudf_ready:
        return mo.callout(mo.md(f"**GPU engine ready.** {cudf_message}"), kind="success")
    return mo.callout(
        mo.md(
            f"**Running pandas only — the GPU side is missing.** {cudf_message}\n\n"
            "Everything below still works: you get the full benchmark on the CPU engines, and cuDF's "
            "columns appear once cuDF can run."
        ),
        kind="warn",
    )
