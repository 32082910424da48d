"""How the fine-tuning app writes counts and bytes."""

from __future__ import annotations


def mib_with_units(mib):
    """MiB as written in the benchmarks, with the same amount in GB and GiB (6,581 → 6.90 GB, 6.43 GiB)."""
    return f"{mib:,} MiB ({mib * 2**20 / 1e9:.2f} GB, {mib / 1024:.2f} GiB)"


def fmt_count(n):
    """1234567 → '1.23 M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:,}"


def fmt_bytes(n):
    """Bytes as MiB/GiB."""
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"
