"""Hypothesis strategies shared by the kernel tests: tables and random partitionings."""

from __future__ import annotations

import itertools
from typing import Any

import polars as pl
from hypothesis import strategies as st


@st.composite
def frames(draw: st.DrawFn, columns: dict[str, Any], schema: dict[str, Any],
           max_rows: int = 30) -> pl.DataFrame:
    """Tables drawn column by column from ``columns`` (name -> value strategy); may be empty."""
    n = draw(st.integers(0, max_rows))
    data = {name: draw(st.lists(values, min_size=n, max_size=n))
            for name, values in columns.items()}
    return pl.DataFrame(data, schema=schema)


@st.composite
def split(draw: st.DrawFn, df: pl.DataFrame) -> list[pl.DataFrame]:
    """The rows of ``df`` shuffled into 1-5 partitions, some possibly empty."""
    k = draw(st.integers(1, 5))
    order = draw(st.permutations(range(df.height)))
    shuffled = df.select(pl.all().gather(pl.Series(order, dtype=pl.UInt32)))
    cuts = sorted(draw(st.lists(st.integers(0, df.height), min_size=k - 1, max_size=k - 1)))
    bounds = [0, *cuts, df.height]
    return [shuffled.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
