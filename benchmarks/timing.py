"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """The shortest wall time of ``repeat`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """The wall time of one call of ``fn``, in seconds, and its result."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out
