"""Percentiles and latency summaries."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max in milliseconds, and the count, of durations given in seconds."""
    ms = [value * 1000 for value in seconds]
    return {
        "n": len(ms),
        "p50_ms": rounded(percentile(ms, 50)),
        "p90_ms": rounded(percentile(ms, 90)),
        "p99_ms": rounded(percentile(ms, 99)),
        "max_ms": rounded(max(ms) if ms else None),
    }


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
