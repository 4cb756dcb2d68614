"""Random partitionings of a table, and a random tree of merges."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from raysight.testing.plugins import roundtrip

#: seeds of the random partitionings every partition check tries
SEEDS = (0, 1, 2)


def partitionings(df: pl.DataFrame, seeds: Sequence[int] = SEEDS) -> Iterator[list[pl.DataFrame]]:
    """Ways to split ``df`` into consecutive partitions (row order kept): whole, an empty
    partition first, one row per partition (up to 64 rows), and per seed random cuts with
    an empty and a one-row partition among them."""
    n = df.height
    yield [df]
    yield [df.clear(), df]
    if n <= 64:
        yield [df.slice(i, 1) for i in range(n)] or [df.clear()]
    for seed in seeds:
        rng = random.Random(seed)
        cuts = sorted(rng.randint(0, n) for _ in range(rng.randint(1, 5)))
        at = rng.randint(0, max(n - 1, 0))
        cuts = sorted([*cuts, at, min(at + 1, n), rng.choice(cuts)])  # a one-row, an empty part
        bounds = [0, *cuts, n]
        yield [df.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def tree_merge(kernel: Any, states: list[Any], rng: random.Random) -> Any:
    """Merge adjacent states in random groups, level by level, down to one state."""
    while True:
        groups, i = [], 0
        while i < len(states):
            size = rng.randint(1, 3)
            groups.append(states[i:i + size])
            i += size
        states = [roundtrip(kernel.merge([roundtrip(s) for s in g])) for g in groups]
        if len(states) == 1:
            return states[0]
