"""Sampler overhead judged on rounds paired in time: each round's median over that round's "none" median."""

import random
import statistics

TARGET = 0.02


def paired_overhead(config_rounds: list[float], none_rounds: list[float], seed: int = 0) -> tuple:
    """Median per-round overhead against "none" and its 95% bootstrap interval over rounds."""
    ratios = [c / n - 1 for c, n in zip(config_rounds, none_rounds, strict=True)]
    rng = random.Random(seed)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return statistics.median(ratios), boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]


def verdict(low: float, high: float) -> str:
    return "< 2%" if high < TARGET else "> 2%" if low > TARGET else "not resolved"
