"""Which rows stay: a SQL condition, one row per key, or a seeded random sample."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from raysight.analyses.columns import Names, as_frame, require_columns
from raysight.analyses.preprocess.checks import as_text
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = [
    "Deduplicate",
    "DeduplicateConfig",
    "FilterRows",
    "FilterRowsConfig",
    "Sample",
    "SampleConfig",
]


class FilterRowsConfig(PluginConfig):
    """Keep the rows where an SQL boolean expression is true."""

    op: Literal["filter_rows"] = "filter_rows"
    #: e.g. ``amount > 0 AND region <> 'Test'``; rows where it is NULL are dropped (SQL WHERE)
    condition: str = Field(min_length=1)

    @field_validator("condition")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            pl.sql_expr(value)
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"invalid SQL condition {value!r}: {exc}") from None
        return value


class FilterRows(Preprocessor[FilterRowsConfig]):
    """Rows where ``condition`` (Polars SQL, never Python ``eval``) is true."""

    name: ClassVar[str] = "filter_rows"
    Config = FilterRowsConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        condition = self.config.condition
        expr = pl.sql_expr(condition)
        assert isinstance(expr, pl.Expr)
        require_columns(df.columns, expr.meta.root_names())
        try:
            return df.filter(expr)
        except pl.exceptions.PolarsError as exc:
            raise InputError(
                f"cannot filter rows with condition {condition!r}: {exc}", condition=condition
            ) from None


class DeduplicateConfig(PluginConfig):
    """Drop rows whose key repeats an earlier (or later) row's key."""

    op: Literal["deduplicate"] = "deduplicate"
    #: key columns; empty means the whole row
    columns: Names = Field(default_factory=list)
    #: first: keep the first row of each key; last: keep the last one
    keep: Literal["first", "last"] = "first"


class Deduplicate(Preprocessor[DeduplicateConfig]):
    """One row per distinct key, in row order, across all partitions.

    Equals Polars ``unique(subset, keep=..., maintain_order=True)`` on the concatenated table
    (nulls equal nulls, NaN equals NaN, -0.0 equals 0.0). Across partitions keys are compared
    by a 64-bit hash of the key row (Polars ``struct(...).hash``, stable within one Polars
    version): each partition's state is its set of key hashes, merged into the first and last
    partition of every hash, and partition ``i`` drops the keys whose first (keep first) or
    last (keep last) partition is another one; within a partition keys are compared exactly.
    Two different keys in different partitions collide with probability about d² / 2⁶⁵ for
    d distinct keys (3e-8 for a million, 3 % for a billion); a collision drops a row.
    The merged state holds 16 bytes per distinct key.
    """

    name: ClassVar[str] = "deduplicate"
    Config = DeduplicateConfig
    needs_stats: ClassVar[bool] = True

    def _keys(self, df: pl.DataFrame) -> list[str]:
        require_columns(df.columns, self.config.columns)
        return self.config.columns or df.columns

    @staticmethod
    def _hash(df: pl.DataFrame, keys: list[str]) -> pl.Series:
        # categoricals by their strings: physical codes may differ between partitions
        fields = [as_text(c, df.schema[c]) for c in keys]
        return df.select(pl.struct(fields).hash(seed=0).alias("hash")).get_column("hash")

    def partial_stats(self, df: pl.DataFrame) -> pa.Table:
        """The distinct key hashes of the partition (one UInt64 column ``hash``)."""
        keys = self._keys(df)
        hashes = self._hash(df, keys) if keys else pl.Series("hash", [], dtype=pl.UInt64)
        return hashes.unique().to_frame().to_arrow()

    def merge_stats(self, partials: list[Any]) -> pa.Table:
        """Every key hash with the first and last partition that holds it."""
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        tagged = [
            as_frame(p).with_columns(pl.lit(i, dtype=pl.Int32).alias("partition"))
            for i, p in enumerate(partials)
        ]
        return (
            pl.concat(tagged)
            .group_by("hash")
            .agg(pl.col("partition").min().alias("first"), pl.col("partition").max().alias("last"))
            .to_arrow()
        )

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """Deduplicate; without ``stats`` ``df`` is the whole table."""
        keys = self._keys(df)
        if not keys:
            return df
        if stats is not None:
            owners = as_frame(stats)
            elsewhere = (
                owners.filter(pl.col("first") < partition)
                if self.config.keep == "first"
                else owners.filter(pl.col("last") > partition)
            ).get_column("hash")
            df = df.filter(~self._hash(df, keys).is_in(elsewhere.implode()))
        return df.unique(subset=keys, keep=self.config.keep, maintain_order=True)


class SampleConfig(PluginConfig):
    """A random sample of rows: a fraction of them or exactly n."""

    op: Literal["sample"] = "sample"
    #: the share of rows to keep, in (0, 1]: floor(fraction * rows) rows, as Polars
    fraction: float | None = Field(default=None, gt=0, le=1)
    #: the number of rows to keep (all of them when the table has fewer, without replacement)
    n: int | None = Field(default=None, ge=0)
    seed: int = Field(default=0, ge=0)
    with_replacement: bool = False

    @model_validator(mode="after")
    def _one_size(self) -> SampleConfig:
        if (self.fraction is None) == (self.n is None):
            raise ValueError("sample needs exactly one of fraction or n")
        return self


class Sample(Preprocessor[SampleConfig]):
    """A seeded random sample of the rows, in their original order.

    The sample size is ``n`` or ``floor(fraction * rows)`` over the whole table, capped at the
    number of rows without replacement (with replacement, a non-empty table gives exactly that
    many rows). Each partition's state is its row count; ``merge_stats`` shares the size among
    partitions with a seeded multivariate hypergeometric draw (multinomial with replacement),
    so the total is exact and every row is equally likely; each partition then draws its rows
    with a generator seeded by ``(seed, partition)``. The result is deterministic for a seed
    and a partitioning, but another partitioning of the same rows gives another sample.
    """

    name: ClassVar[str] = "sample"
    Config = SampleConfig
    needs_stats: ClassVar[bool] = True

    def _rng(self, *key: int) -> np.random.Generator:
        # spawn_key keeps the streams of the allocation and of each partition apart
        return np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=key))

    def partial_stats(self, df: pl.DataFrame) -> int:
        """The partition's row count."""
        return df.height

    def merge_stats(self, partials: list[Any]) -> list[int]:
        """How many rows each partition contributes."""
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        rows = np.asarray(partials, dtype=np.int64)
        total = int(rows.sum())
        if self.config.n is not None:
            size = self.config.n
        else:
            size = int(self.config.fraction * total)  # type: ignore[operator]
        rng = self._rng(0)
        if total == 0:
            return [0] * len(partials)
        if self.config.with_replacement:
            return [int(k) for k in rng.multinomial(size, rows / total)]
        return [int(k) for k in rng.multivariate_hypergeometric(rows, min(size, total))]

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """This partition's share of the sample; without ``stats`` ``df`` is the whole table."""
        if stats is None:
            stats, partition = self.merge_stats([self.partial_stats(df)]), 0
        if not 0 <= partition < len(stats):
            raise ValueError(f"partition {partition} has no sample size ({len(stats)} merged)")
        size = stats[partition]
        if size == 0:
            return df.clear()
        if size > df.height and not self.config.with_replacement or df.height == 0:
            raise ValueError(f"partition {partition} has {df.height} rows but should give {size}")
        rng = self._rng(1, partition)
        rows = np.sort(rng.choice(df.height, size=size, replace=self.config.with_replacement))
        return df.select(pl.all().gather(pl.Series(rows, dtype=pl.UInt32)))
