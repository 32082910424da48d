"""Facts about cards from their names: memory kind (datasheets, not measurements)."""

from __future__ import annotations

import re


def memory_kind(name: str | None) -> str | None:
    """The memory technology of a GPU, from its NVML name (NVIDIA datasheets); None for a card not listed."""
    n = (name or "").upper()
    table = (
        (r"\bH200\b", "HBM3e"),
        (r"\bH100\b.*\bPCIE\b", "HBM2e"),
        (r"\bH100\b", "HBM3"),
        (r"\bA100\b.*80GB", "HBM2e"),
        (r"\bA100\b", "HBM2"),
        (r"\bV100", "HBM2"),
        (r"\b(?:L4|L40S?|A10G?|T4)\b", "GDDR6"),
    )
    return next((kind for pattern, kind in table if re.search(pattern, n)), None)
