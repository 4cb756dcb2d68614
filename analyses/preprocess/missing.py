"""Missing values: drop the rows that have them, or fill them.

Missing values are nulls; ``DropMissing`` also treats float NaN as missing, ``FillMissing``
fills nulls only (as Polars ``fill_null``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from raysight.analyses.columns import Names, as_frame, is_numeric, require_columns, stack
from raysight.analyses.descriptive import merge_value_counts, quantile_from_counts, value_counts
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["DropMissing", "DropMissingConfig", "FillMethod", "FillMissing", "FillMissingConfig"]


def _missing(column: str, dtype: pl.DataType) -> pl.Expr:
    expr = pl.col(column).is_null()
    return expr | pl.col(column).is_nan() if dtype.is_float() else expr


class DropMissingConfig(PluginConfig):
    """Drop rows with missing values (null, or NaN in a float column)."""

    op: Literal["drop_missing"] = "drop_missing"
    #: columns to look at; empty means every column
    columns: Names = Field(default_factory=list)
    #: "any": drop a row when any listed column is missing; "all": only when all are
    how: Literal["any", "all"] = "any"


class DropMissing(Preprocessor[DropMissingConfig]):
    """Rows without missing values in the chosen columns.

    Example: ``DropMissing(DropMissingConfig(columns=["amount"])).apply(df)`` keeps the rows
    of ``df`` whose ``amount`` is neither null nor NaN.
    """

    name: ClassVar[str] = "drop_missing"
    Config = DropMissingConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        columns = self.config.columns or df.columns
        require_columns(df.columns, columns)
        if not columns:
            return df
        missing = [_missing(c, df.schema[c]) for c in columns]
        combined = (
            pl.any_horizontal(missing) if self.config.how == "any" else pl.all_horizontal(missing)
        )
        return df.filter(~combined)


FillMethod = Literal[
    "constant", "mean", "median", "most_frequent", "min", "max", "forward", "backward"
]
#: fill methods that carry values along the row order instead of using a statistic
_DIRECTIONAL = ("forward", "backward")


class FillMissingConfig(PluginConfig):
    """Fill nulls with a constant, a statistic of the whole column, or a neighbouring value."""

    op: Literal["fill_missing"] = "fill_missing"
    columns: Names = Field(min_length=1)
    #: mean and median need numeric columns; most_frequent breaks ties by the smallest value;
    #: forward/backward carry the previous/next non-null value in row order (across partitions)
    method: FillMethod = "constant"
    #: the fill value for method "constant" (and only then)
    value: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _value_matches_method(self) -> FillMissingConfig:
        if self.method == "constant" and self.value is None:
            raise ValueError("method 'constant' needs a value, e.g. value: 0")
        if self.method != "constant" and self.value is not None:
            raise ValueError(
                f"value is only used with method 'constant'; method {self.method!r} computes it"
            )
        return self


class FillMissing(Preprocessor[FillMissingConfig]):
    """The table with nulls in the chosen columns filled.

    Dtype rules: a constant keeps the column dtype when it converts losslessly (0 into an
    integer column stays integer); a non-integral number into an integer column makes the
    column Float64 (as Polars ``fill_null``); anything else that does not convert is an
    InputError. ``mean`` and ``median`` make integer columns Float64 first (the statistic is
    fractional) and keep float columns' dtype; ``min``, ``max`` and ``most_frequent`` keep the
    dtype. A statistic of a column without values is null, so nothing is filled.

    Statistics cover the whole column across partitions: ``partial_stats`` per partition, then
    ``merge_stats``. ``median`` interpolates linearly (as Polars ``median``); ``most_frequent``
    picks the smallest of the most frequent values.

    ``forward`` and ``backward`` fill in row order across partitions, as Polars
    ``fill_null(strategy="forward"/"backward")`` on the concatenated table: each partition's
    state is its last (first) non-null value per column, and partition ``i`` starts from the
    last non-null value of the partitions before it (the first of those after it). Leading
    (trailing) nulls of the whole table stay null; the dtype is kept.
    """

    name: ClassVar[str] = "fill_missing"
    Config = FillMissingConfig

    @property  # type: ignore[override]
    def needs_stats(self) -> bool:  # the base class declares it a ClassVar; here config decides
        return self.config.method != "constant"

    # -- statistics ---------------------------------------------------------------------------

    def partial_stats(self, df: pl.DataFrame) -> dict[str, Any] | None:
        """Per-partition state of what the method needs.

        mean: non-null count and Float64 sum; min/max: the partition's min and max (one
        summary row for all columns); median/most_frequent: the value counts of each column;
        forward/backward: the last/first non-null value of each column (one row).
        """
        if not self.needs_stats:
            return None
        self._check(df.schema)
        method = self.config.method
        if method in _DIRECTIONAL:
            edge = "last" if method == "forward" else "first"
            return df.select(
                getattr(pl.col(c).drop_nulls(), edge)() for c in self.config.columns
            ).to_arrow()
        summary: list[pl.Expr] = []
        values: dict[str, pa.Table] = {}
        for i, c in enumerate(self.config.columns):
            col = pl.col(c)
            if method == "mean":
                summary += [
                    col.count().cast(pl.Int64).alias(f"count{i}"),
                    col.cast(pl.Float64).sum().alias(f"sum{i}"),
                ]
            elif method in ("min", "max"):
                summary += [col.min().alias(f"min{i}"), col.max().alias(f"max{i}")]
            else:
                values[c] = value_counts(df, c).to_arrow()
        return {"summary": df.select(summary).to_arrow() if summary else None, "values": values}

    def merge_stats(self, partials: list[Any]) -> dict[str, Any] | None:
        """The fill value of every column, from the states of all partitions."""
        if not self.needs_stats:
            return None
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        method = self.config.method
        if method in _DIRECTIONAL:
            # row i: the value partition i starts from (the nearest non-null edge before/after it)
            carried = (
                pl.all().shift(1).fill_null(strategy="forward")
                if method == "forward"
                else pl.all().shift(-1).fill_null(strategy="backward")
            )
            return stack(partials).select(carried).to_arrow()
        fill: dict[str, Any] = {}
        if method in ("mean", "min", "max"):
            rows = stack([p["summary"] for p in partials])
            for i, c in enumerate(self.config.columns):
                if method == "mean":
                    count = int(rows.get_column(f"count{i}").sum())
                    total = float(rows.get_column(f"sum{i}").sum())
                    fill[c] = total / count if count else None
                else:
                    fill[c] = getattr(rows.get_column(f"{method}{i}"), method)()
            return fill
        for c in self.config.columns:
            counts = merge_value_counts([p["values"][c] for p in partials])
            if counts.height == 0:
                fill[c] = None
            elif method == "median":
                fill[c] = float(
                    quantile_from_counts(
                        counts.get_column("value").cast(pl.Float64).to_numpy(),
                        counts.get_column("count").to_numpy(),
                        0.5,
                    )
                )
            else:  # most_frequent: counts are sorted by value, so the first maximum is smallest
                fill[c] = counts.item(int(np.argmax(counts.get_column("count").to_numpy())), 0)
        return fill

    # -- transform ----------------------------------------------------------------------------

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """Fill nulls; without ``stats`` a statistic is computed from ``df`` alone."""
        self._check(df.schema)
        if self.config.method == "constant":
            return df.with_columns(
                self._constant_fill(c, df.schema[c]) for c in self.config.columns
            )
        if stats is None:
            stats = self.merge_stats([self.partial_stats(df)])
            partition = 0
        if self.config.method in _DIRECTIONAL:
            carry = as_frame(stats)
            if not 0 <= partition < carry.height:
                raise ValueError(
                    f"partition {partition} has no {self.config.method} fill state "
                    f"({carry.height} partitions were merged)"
                )
            stats = carry.row(partition, named=True)
        return df.with_columns(
            self._stat_fill(c, df.schema[c], stats[c]) for c in self.config.columns
        )

    def _check(self, schema: pl.Schema) -> None:
        require_columns(list(schema.names()), self.config.columns)
        if self.config.method in ("mean", "median"):
            for c in self.config.columns:
                if not (is_numeric(schema[c]) or schema[c] == pl.Null):
                    raise InputError(
                        f"fill_missing method {self.config.method!r} needs a numeric column; "
                        f"column {c!r} is {schema[c]}",
                        column=c,
                        dtype=str(schema[c]),
                    )

    def _stat_fill(self, column: str, dtype: pl.DataType, value: Any) -> pl.Expr:
        col = pl.col(column)
        if self.config.method in ("mean", "median"):
            target = dtype if dtype.is_float() else pl.Float64
            return col.cast(target).fill_null(pl.lit(value, dtype=target))
        if self.config.method in _DIRECTIONAL:
            col = col.fill_null(strategy=self.config.method)  # type: ignore[arg-type]
        return col.fill_null(pl.lit(value, dtype=dtype))

    def _constant_fill(self, column: str, dtype: pl.DataType) -> pl.Expr:
        value = self.config.value
        col = pl.col(column)
        if dtype == pl.Null:
            return col.fill_null(pl.lit(value))
        if isinstance(value, float) and dtype.is_integer() and not value.is_integer():
            return col.cast(pl.Float64).fill_null(value)
        try:
            original = pl.Series([value])
            converted = original.cast(dtype, strict=True)
            # floats are approximate by nature; elsewhere a number must survive the round trip
            lossless = converted.null_count() == 0 and (
                dtype.is_float()
                or not isinstance(value, (int, float))
                or bool(converted.cast(original.dtype, strict=False).eq(original).all())
            )
        except (pl.exceptions.PolarsError, OverflowError, ValueError):
            lossless = False
        if not lossless:
            raise InputError(
                f"cannot fill column {column!r} ({dtype}) with value {value!r}",
                column=column,
                value=value,
                dtype=str(dtype),
            )
        return col.fill_null(pl.lit(converted.item(), dtype=dtype))
