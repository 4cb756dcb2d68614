"""Numeric values assigned to equal-width bins or bins between explicit edges."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from raysight.analyses.columns import require_columns
from raysight.analyses.preprocess.checks import require_new, require_numeric
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["Binning", "BinningConfig"]


class BinningConfig(PluginConfig):
    """Assign each value of a numeric column to a bin."""

    op: Literal["binning"] = "binning"
    column: str = Field(min_length=1)
    #: equal-width bins between the column's global min and max
    bins: int | None = Field(default=None, ge=1)
    #: explicit edges, strictly increasing: bin i is [edges[i], edges[i+1]), the last is closed
    edges: list[float] | None = Field(default=None, min_length=2)

    @model_validator(mode="after")
    def _bins_or_edges(self) -> BinningConfig:
        if (self.bins is None) == (self.edges is None):
            raise ValueError("binning needs exactly one of bins or edges")
        if self.edges is not None:
            if not all(np.isfinite(self.edges)):
                raise ValueError("edges must be finite numbers")
            if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError(f"edges must be strictly increasing, got {self.edges}")
        return self


class Binning(Preprocessor[BinningConfig]):
    """The table with ``{column}_bin`` (Int64) added.

    With ``bins``: width = (max - min) / bins over the whole column (across partitions, NaN
    skipped) and bin = min(floor((x - min) / width), bins - 1); a constant column
    is bin 0. With ``edges``: bin i holds edges[i] <= x < edges[i+1], the last bin also holds
    x == edges[-1] (as numpy.histogram), and values outside the edges get null. A null or NaN
    value gets a null bin.
    """

    name: ClassVar[str] = "binning"
    Config = BinningConfig

    @property  # type: ignore[override]
    def needs_stats(self) -> bool:  # only equal-width bins need the column's min and max
        return self.config.bins is not None

    def _check(self, schema: pl.Schema) -> None:
        require_columns(list(schema.names()), [self.config.column])
        require_numeric("binning", self.config.column, schema[self.config.column])
        require_new("binning", list(schema.names()), [f"{self.config.column}_bin"])

    def partial_stats(self, df: pl.DataFrame) -> tuple[float | None, float | None] | None:
        """The partition's min and max (NaN skipped)."""
        if not self.needs_stats:
            return None
        self._check(df.schema)
        x = pl.col(self.config.column).cast(pl.Float64).fill_nan(None)
        return df.select(x.min().alias("min"), x.max().alias("max")).row(0)

    def merge_stats(self, partials: list[Any]) -> tuple[float | None, float | None] | None:
        """The column's global min and max."""
        if not self.needs_stats:
            return None
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        lows = [p[0] for p in partials if p[0] is not None]
        highs = [p[1] for p in partials if p[1] is not None]
        return (min(lows), max(highs)) if lows else (None, None)

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """Bin; without ``stats`` the min and max come from ``df``."""
        self._check(df.schema)
        x = pl.col(self.config.column).cast(pl.Float64).fill_nan(None)
        name = f"{self.config.column}_bin"
        if self.config.edges is not None:
            edges = self.config.edges
            position = pl.lit(pl.Series(edges)).search_sorted(x, side="right").cast(pl.Int64) - 1
            last = len(edges) - 2
            bin_ = (
                pl.when(x.is_null() | (x < edges[0]) | (x > edges[-1]))
                .then(None)
                .when(x == edges[-1])
                .then(last)
                .otherwise(position)
            )
            return df.with_columns(bin_.cast(pl.Int64).alias(name))
        if stats is None:
            stats = self.merge_stats([self.partial_stats(df)])
        low, high = stats
        bins = self.config.bins
        assert bins is not None
        if low is None or low == high:
            bin_ = pl.when(x.is_not_null()).then(pl.lit(0, dtype=pl.Int64))
        else:
            width = (high - low) / bins
            bin_ = ((x - low) / width).floor().clip(upper_bound=bins - 1).cast(pl.Int64)
        return df.with_columns(bin_.cast(pl.Int64).alias(name))
