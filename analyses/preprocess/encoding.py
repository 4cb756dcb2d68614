"""Categorical columns as indicator columns or integer labels."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from raysight.analyses.columns import as_frame, require_columns
from raysight.analyses.descriptive import merge_value_counts, value_counts
from raysight.analyses.preprocess.checks import as_text, require_new
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["Encode", "EncodeConfig"]


class EncodeConfig(PluginConfig):
    """Encode a categorical column as indicator columns or integer labels."""

    op: Literal["encode"] = "encode"
    column: str = Field(min_length=1)
    #: one_hot: a 0/1 column per distinct value; label: the value's rank among sorted values
    method: Literal["one_hot", "label"] = "one_hot"
    #: one_hot only: drop the source column (kept by default)
    drop_original: bool = False

    @model_validator(mode="after")
    def _drop_only_for_one_hot(self) -> EncodeConfig:
        if self.drop_original and self.method == "label":
            raise ValueError(
                "drop_original is only used with method 'one_hot'; "
                "label encoding replaces the column in place"
            )
        return self


class Encode(Preprocessor[EncodeConfig]):
    """The table with a categorical column encoded over its distinct values in all partitions.

    The categories are the distinct non-null values of the whole column, sorted (strings by
    code point, as Polars ``sort``; categoricals as their strings), so every partition gets the
    same columns and labels.

    - ``one_hot`` adds ``"{column}_{value}"`` (UInt8, 1 where the row has the value, else 0;
      a null row is 0 everywhere) right after the source column, or in its place with
      ``drop_original``; names are the values as Polars formats them (``cast(pl.String)``),
      as ``DataFrame.to_dummies(column, drop_nulls=True)``.
    - ``label`` replaces the column by the value's index among the sorted categories (Int64,
      0..k-1); null stays null.

    An indicator name that already exists is an InputError. Example:
    ``Encode(EncodeConfig(column="city")).apply(df)``.
    """

    name: ClassVar[str] = "encode"
    Config = EncodeConfig
    needs_stats: ClassVar[bool] = True

    def partial_stats(self, df: pl.DataFrame) -> pa.Table:
        """The distinct non-null values of the partition (with counts)."""
        require_columns(df.columns, [self.config.column])
        return value_counts(df, self.config.column).to_arrow()

    def merge_stats(self, partials: list[Any]) -> pa.Table:
        """The sorted categories of the whole column (one column ``value``)."""
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        return merge_value_counts(partials).select("value").to_arrow()

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """Encode; without ``stats`` the categories are those of ``df``."""
        column = self.config.column
        require_columns(df.columns, [column])
        if stats is None:
            stats = self.merge_stats([self.partial_stats(df)])
        categories = as_frame(stats).get_column("value")
        source = as_text(column, df.schema[column])
        if self.config.method == "label":
            labels = pl.Series(range(len(categories)), dtype=pl.Int64)
            return df.with_columns(
                source.replace_strict(categories, labels, default=None, return_dtype=pl.Int64)
            )
        names = [f"{column}_{v}" for v in categories.cast(pl.String)]
        require_new("encode", [c for c in df.columns if c != column], names)
        indicators = [
            (source == pl.lit(v, dtype=categories.dtype)).fill_null(False).cast(pl.UInt8).alias(n)
            for v, n in zip(categories, names, strict=True)
        ]
        keep = [] if self.config.drop_original else [pl.col(column)]
        return df.select(
            *(e for c in df.columns for e in ([*keep, *indicators] if c == column else [c]))
        )
