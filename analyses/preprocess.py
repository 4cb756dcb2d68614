"""Preprocessing operations: cleaning, transforming and feature steps.

Each operation is a :class:`raysight.plugins.Preprocessor` built from its validated config and
applied per partition with Polars expressions (no Python loop over rows). Row-local operations
(``filter_rows``, ``select_columns``, ``derive``, ``cast``, ``rename``, ``date_extraction``,
``text_tokenization``, ``binning`` with explicit edges) only implement ``apply``. Operations
whose result depends on the whole table set ``needs_stats``: the engine runs ``partial_stats``
per partition, ``merge_stats`` once (partials in partition order), and hands the merged
statistics to ``apply`` on every partition::

    op = FillMissing(FillMissing.Config(op="fill_missing", columns=["amount"], method="mean"))
    stats = op.merge_stats([op.partial_stats(part) for part in parts])
    parts = [op.apply(part, stats, partition=i) for i, part in enumerate(parts)]

Concatenated in partition order, the result equals the operation applied to the whole table
(``op.apply(whole)``, which computes its statistics from ``whole`` itself), with one documented
exception: ``sample`` draws depend on the partitioning.

Missing values are nulls; ``DropMissing`` also treats float NaN as missing, ``FillMissing``
fills nulls only (as Polars ``fill_null``).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from raysight.analyses.columns import as_frame, is_numeric, listed_once, require_columns, stack
from raysight.analyses.descriptive import merge_value_counts, quantile_from_counts, value_counts
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = [
    "Binning",
    "BinningConfig",
    "Cast",
    "CastConfig",
    "DateExtraction",
    "DateExtractionConfig",
    "Deduplicate",
    "DeduplicateConfig",
    "Derive",
    "DeriveConfig",
    "DropMissing",
    "DropMissingConfig",
    "Encode",
    "EncodeConfig",
    "FillMissing",
    "FillMissingConfig",
    "FilterRows",
    "FilterRowsConfig",
    "Normalize",
    "NormalizeConfig",
    "Rename",
    "RenameConfig",
    "Sample",
    "SampleConfig",
    "SelectColumns",
    "SelectColumnsConfig",
    "TextTokenization",
    "TextTokenizationConfig",
    "parse_iso_datetime",
]


# ---------------------------------------------------------------------------------------------
# Shared checks


def _missing(column: str, dtype: pl.DataType) -> pl.Expr:
    expr = pl.col(column).is_null()
    return expr | pl.col(column).is_nan() if dtype.is_float() else expr


# ---------------------------------------------------------------------------------------------
# drop_missing


class DropMissingConfig(PluginConfig):
    """Drop rows with missing values (null, or NaN in a float column)."""

    op: Literal["drop_missing"] = "drop_missing"
    #: columns to look at; empty means every column
    columns: list[str] = Field(default_factory=list)
    #: "any": drop a row when any listed column is missing; "all": only when all are
    how: Literal["any", "all"] = "any"

    @field_validator("columns")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        return listed_once(value, "columns")


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


# ---------------------------------------------------------------------------------------------
# fill_missing

FillMethod = Literal[
    "constant", "mean", "median", "most_frequent", "min", "max", "forward", "backward"
]
#: fill methods that carry values along the row order instead of using a statistic
_DIRECTIONAL = ("forward", "backward")


class FillMissingConfig(PluginConfig):
    """Fill nulls with a constant, a statistic of the whole column, or a neighbouring value."""

    op: Literal["fill_missing"] = "fill_missing"
    columns: list[str] = Field(min_length=1)
    #: mean and median need numeric columns; most_frequent breaks ties by the smallest value;
    #: forward/backward carry the previous/next non-null value in row order (across partitions)
    method: FillMethod = "constant"
    #: the fill value for method "constant" (and only then)
    value: str | int | float | bool | None = None

    @field_validator("columns")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        return listed_once(value, "columns")

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


# ---------------------------------------------------------------------------------------------
# filter_rows


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


# ---------------------------------------------------------------------------------------------
# select_columns


class SelectColumnsConfig(PluginConfig):
    """Keep (or drop) a list of columns."""

    op: Literal["select_columns"] = "select_columns"
    columns: list[str] = Field(min_length=1)
    #: True keeps the columns in the listed order; False drops them
    include: bool = True

    @field_validator("columns")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        return listed_once(value, "columns")


class SelectColumns(Preprocessor[SelectColumnsConfig]):
    """The listed columns in the listed order, or every other column when ``include`` is False."""

    name: ClassVar[str] = "select_columns"
    Config = SelectColumnsConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        require_columns(df.columns, self.config.columns)
        if self.config.include:
            return df.select(self.config.columns)
        return df.drop(self.config.columns)


# ---------------------------------------------------------------------------------------------
# Helpers of the operations below


def _require_numeric(op: str, column: str, dtype: pl.DataType) -> None:
    if not (is_numeric(dtype) or dtype == pl.Null):
        raise InputError(
            f"{op} needs a numeric column; column {column!r} is {dtype}",
            column=column,
            dtype=str(dtype),
        )


def _require_new(op: str, available: list[str], names: list[str]) -> None:
    """Raise InputError when an output column of ``op`` would overwrite an existing one."""
    taken = [n for n in names if n in available]
    if taken:
        raise InputError(
            f"{op} would add column {taken[0]!r}, which already exists; rename or drop it first",
            column=taken[0],
        )


def _first_failure(
    column: str, before: pl.Series, after: pl.Series, what: str, **details: Any
) -> None:
    """Raise InputError naming the first value of ``before`` that became null in ``after``."""
    failed = before.is_not_null() & after.is_null()
    if failed.any():
        value = before.filter(failed).item(0)
        raise InputError(
            f"column {column!r}: value {value!r} cannot {what}",
            column=column,
            value=value,
            **details,
        )


def _polars_message(exc: Exception) -> str:
    """Polars' message on one line, without the expression dump it appends."""
    text = " ".join(str(exc).strip().split("\n\n")[0].split())
    return text or type(exc).__name__


def _as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(column)
    return col.cast(pl.String) if isinstance(dtype, (pl.Categorical, pl.Enum)) else col


def _is_text(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.String, pl.Categorical, pl.Enum))


#: ISO-8601 date-times after normalisation ("T" separator, "Z" as +00:00); %.f is optional
_ISO_WITH_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
_ISO_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def parse_iso_datetime(text: pl.Expr) -> pl.Expr:
    """ISO-8601 date or date-time strings as naive ``Datetime("us")`` (null where unparseable).

    Accepted: ``YYYY-MM-DD``, then optionally ``T`` or a space, ``HH:MM[:SS[.fff...]]`` and a
    UTC offset (``Z``, ``+HH:MM``, ``+HHMM``). A value with an offset is converted to UTC. The
    formats are fixed rather than inferred from the data, so a value parses the same way in
    whichever partition it is.
    """
    normalised = text.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T").str.replace(
        r"[zZ]$", "+00:00"
    )
    aware = [
        normalised.str.to_datetime(f, time_unit="us", strict=False)
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
        for f in _ISO_WITH_OFFSET
    ]
    naive = [normalised.str.to_datetime(f, time_unit="us", strict=False) for f in _ISO_NAIVE]
    return pl.coalesce(*aware, *naive)


# ---------------------------------------------------------------------------------------------
# normalize

NormalizeMethod = Literal["min_max", "z_score", "robust"]


class NormalizeConfig(PluginConfig):
    """Rescale numeric columns with statistics of the whole column."""

    op: Literal["normalize"] = "normalize"
    columns: list[str] = Field(min_length=1)
    #: min_max: (x - min) / (max - min); z_score: (x - mean) / std with population std
    #: (ddof=0, as scikit-learn StandardScaler); robust: (x - median) / (q3 - q1)
    method: NormalizeMethod = "min_max"

    @field_validator("columns")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        return listed_once(value, "columns")


class Normalize(Preprocessor[NormalizeConfig]):
    """The table with the chosen numeric columns rescaled, as Float64, in place.

    The centre and scale come from the whole column across partitions (min/max; mean and
    population std merged with Chan's formula; quartiles by linear interpolation, exact from
    merged value counts). Nulls stay null; NaN behaves as in Polars: min and max skip it, a
    column with NaN has a NaN mean (z_score gives NaN), and quartiles sort NaN last.

    A constant column (min == max over its non-NaN values) becomes 0.0 at every non-null,
    non-NaN value, for every method. Otherwise a zero scale is replaced by 1, as scikit-learn
    does (robust scaling of a column with q3 == q1 gives x - median). A column without values
    stays all null.

    Example: ``Normalize(NormalizeConfig(columns=["amount"], method="z_score")).apply(df)``.
    """

    name: ClassVar[str] = "normalize"
    Config = NormalizeConfig
    needs_stats: ClassVar[bool] = True

    def _check(self, schema: pl.Schema) -> None:
        require_columns(list(schema.names()), self.config.columns)
        for c in self.config.columns:
            _require_numeric("normalize", c, schema[c])

    def partial_stats(self, df: pl.DataFrame) -> dict[str, Any]:
        """Per column: non-null count, min, max (and Float64 sum and M2 about the partition's
        mean for z_score; value counts for robust)."""
        self._check(df.schema)
        exprs: list[pl.Expr] = []
        values: dict[str, pa.Table] = {}
        for i, c in enumerate(self.config.columns):
            x = pl.col(c).cast(pl.Float64)
            exprs += [
                x.count().cast(pl.Int64).alias(f"count{i}"),
                x.min().alias(f"min{i}"),
                x.max().alias(f"max{i}"),
            ]
            if self.config.method == "z_score":
                exprs += [x.sum().alias(f"sum{i}"), ((x - x.mean()) ** 2).sum().alias(f"m2{i}")]
            elif self.config.method == "robust":
                values[c] = value_counts(df.select(x), c).to_arrow()
        return {"summary": df.select(exprs).to_arrow(), "values": values}

    def merge_stats(self, partials: list[Any]) -> dict[str, tuple[float | None, float | None]]:
        """(centre, scale) of every column, from the states of all partitions."""
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        rows = stack([p["summary"] for p in partials])
        merged: dict[str, tuple[float | None, float | None]] = {}
        for i, c in enumerate(self.config.columns):
            counts = rows.get_column(f"count{i}")
            low, high = rows.get_column(f"min{i}").min(), rows.get_column(f"max{i}").max()
            if int(counts.sum()) == 0:
                merged[c] = (None, None)
            elif low == high:  # constant: every value maps to exactly 0.0
                merged[c] = (float(low), 1.0)  # type: ignore[arg-type]
            else:
                centre, scale = self._centre_scale(c, i, rows, partials, low, high)
                merged[c] = (centre, 1.0 if scale == 0 else scale)
        return merged

    def _centre_scale(
        self, column: str, i: int, rows: pl.DataFrame, partials: list[Any], low: Any, high: Any
    ) -> tuple[float, float]:
        method = self.config.method
        if method == "min_max":
            return float(low), float(high) - float(low)
        if method == "z_score":
            live = rows.filter(pl.col(f"count{i}") > 0)
            n = live.get_column(f"count{i}").cast(pl.Float64).to_numpy()
            sums = live.get_column(f"sum{i}").to_numpy()
            m2 = live.get_column(f"m2{i}").to_numpy()
            mean = float(np.sum(sums) / np.sum(n))
            # Chan et al.: M2 = sum of the partitions' M2 + sum n_i (mean_i - mean)^2
            total_m2 = np.sum(m2) + np.sum(n * (sums / n - mean) ** 2)
            return mean, float(np.sqrt(total_m2 / np.sum(n)))
        counts = merge_value_counts([p["values"][column] for p in partials])
        q1, median, q3 = quantile_from_counts(
            counts.get_column("value").to_numpy(),
            counts.get_column("count").to_numpy(),
            [0.25, 0.5, 0.75],
        )
        return float(median), float(q3 - q1)

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """Rescale; without ``stats`` the centre and scale come from ``df`` alone."""
        self._check(df.schema)
        if stats is None:
            stats = self.merge_stats([self.partial_stats(df)])
        exprs = []
        for c in self.config.columns:
            centre, scale = stats[c]
            x = pl.col(c).cast(pl.Float64)
            exprs.append(
                ((x - pl.lit(centre, dtype=pl.Float64)) / pl.lit(scale, dtype=pl.Float64)).alias(c)
            )
        return df.with_columns(exprs)


# ---------------------------------------------------------------------------------------------
# encode


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
        source = _as_text(column, df.schema[column])
        if self.config.method == "label":
            labels = pl.Series(range(len(categories)), dtype=pl.Int64)
            return df.with_columns(
                source.replace_strict(categories, labels, default=None, return_dtype=pl.Int64)
            )
        names = [f"{column}_{v}" for v in categories.cast(pl.String)]
        _require_new("encode", [c for c in df.columns if c != column], names)
        indicators = [
            (source == pl.lit(v, dtype=categories.dtype)).fill_null(False).cast(pl.UInt8).alias(n)
            for v, n in zip(categories, names, strict=True)
        ]
        keep = [] if self.config.drop_original else [pl.col(column)]
        return df.select(
            *(e for c in df.columns for e in ([*keep, *indicators] if c == column else [c]))
        )


# ---------------------------------------------------------------------------------------------
# derive

#: expression nodes and functions that look at other rows; a derived column must be row-local
_NOT_ROW_LOCAL = frozenset(
    {"Agg", "Over", "Len", "Window", "Slice", "Filter", "Gather", "Sort", "SortBy", "Explode",
     "Implode", "Range", "Shift", "Diff", "PctChange", "Rank", "Reverse", "Unique", "Mode",
     "Interpolate", "FillNullWithStrategy", "Head", "Tail", "Repeat", "ValueCounts"}
)
_ROW_COMBINING_PREFIXES = ("Cum", "Rolling", "Ewm", "Arg", "Forward", "Backward")


def _combines_rows(name: str) -> bool:
    return name in _NOT_ROW_LOCAL or name.startswith(_ROW_COMBINING_PREFIXES)


def _non_row_local_node(expr: pl.Expr) -> str | None:
    """The name of the first node of ``expr`` that combines rows (an aggregate, a window).

    Walks Polars' serialized expression tree. A function's descriptor is judged by its
    top-level name only, so functions inside a namespace (``StringExpr`` slice, ``ListExpr``
    unique) stay row-local; per-list evaluation (``array_reverse``) is row-local too.
    """
    pending: list[Any] = [json.loads(expr.meta.serialize(format="json"))]
    while pending:
        node = pending.pop()
        if isinstance(node, str) and _combines_rows(node):
            return node
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if _combines_rows(key):
                    return key
                if key == "function":  # a descriptor, e.g. "Shift" or {"StringExpr": "Slice"}
                    name = value if isinstance(value, str) else next(iter(value), "")
                    if _combines_rows(name):
                        return str(name)
                elif key == "Eval":
                    if value.get("variant") not in ("List", "Array"):
                        return "Eval"
                    pending.append(value.get("expr"))
                elif key not in ("Column", "Literal"):  # names and values are data, not nodes
                    pending.append(value)
    return None


class DeriveConfig(PluginConfig):
    """New columns from row-wise SQL expressions."""

    op: Literal["derive"] = "derive"
    #: new column name -> SQL expression (Polars SQL, never Python eval), applied in this
    #: order, so a later expression may use an earlier new column; an existing name is replaced
    columns: dict[str, str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _parses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, sql in value.items():
            if not name:
                raise ValueError("a derived column needs a non-empty name")
            try:
                expr = pl.sql_expr(sql)
            except pl.exceptions.PolarsError as exc:
                raise ValueError(f"invalid SQL expression {sql!r} for {name!r}: {exc}") from None
            assert isinstance(expr, pl.Expr)
            node = _non_row_local_node(expr)
            if node is not None:
                raise ValueError(
                    f"expression {sql!r} for {name!r} combines rows ({node}); derived columns "
                    "are computed per row (aggregates and window functions are not allowed)"
                )
        return value


class Derive(Preprocessor[DeriveConfig]):
    """The table with new columns computed per row from SQL expressions.

    Example: ``Derive(DeriveConfig(columns={"revenue": "price * quantity",
    "is_refund": "amount < 0"})).apply(df)``. The dtype is the expression's Polars dtype.
    """

    name: ClassVar[str] = "derive"
    Config = DeriveConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        for name, sql in self.config.columns.items():
            expr = pl.sql_expr(sql)
            assert isinstance(expr, pl.Expr)
            require_columns(df.columns, expr.meta.root_names())
            try:
                df = df.with_columns(expr.alias(name))
            except pl.exceptions.PolarsError as exc:
                raise InputError(
                    f"cannot derive column {name!r} from {sql!r}: {_polars_message(exc)}",
                    column=name,
                    expression=sql,
                ) from None
        return df


# ---------------------------------------------------------------------------------------------
# cast

CastType = Literal["int64", "int32", "float64", "float32", "string", "bool", "date", "datetime"]
_CAST_DTYPES: dict[str, pl.DataType] = {
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "float64": pl.Float64(),
    "float32": pl.Float32(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}


class CastConfig(PluginConfig):
    """Convert columns to other types."""

    op: Literal["cast"] = "cast"
    #: column -> int64, int32, float64, float32, string, bool, date or datetime
    columns: dict[str, CastType] = Field(min_length=1)
    #: True: a value that cannot be converted is an InputError; False: it becomes null
    strict: bool = True


class Cast(Preprocessor[CastConfig]):
    """The table with the chosen columns converted.

    Conversions follow Polars ``cast`` (floats to integers truncate toward zero; an integer
    that does not fit, NaN or infinity into an integer fails; numbers to bool are ``x != 0``;
    dates to datetimes are midnight), except from strings, which Polars 2 does not cast to
    dates or booleans: ``bool`` accepts ``true``/``false``/``1``/``0`` (any case), ``date``
    accepts ``YYYY-MM-DD``, ``datetime`` accepts ISO-8601 (see :func:`parse_iso_datetime`;
    an offset is converted to UTC). ``datetime`` is microseconds, keeping the time zone of a
    datetime column. A value that cannot be converted raises InputError naming the column and
    the value, or becomes null with ``strict: false``.
    """

    name: ClassVar[str] = "cast"
    Config = CastConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        require_columns(df.columns, self.config.columns)
        converted = []
        for c, t in self.config.columns.items():
            dtype = df.schema[c]
            try:
                series = df.select(self._expr(c, dtype, t).alias(c)).to_series()
            except pl.exceptions.PolarsError as exc:
                raise InputError(
                    f"cannot cast column {c!r} ({dtype}) to {t}: {_polars_message(exc)}",
                    column=c,
                    dtype=str(dtype),
                    to=t,
                ) from None
            if self.config.strict:
                _first_failure(c, df.get_column(c), series, f"be cast to {t}", to=t)
            converted.append(series)
        return df.with_columns(converted)

    @staticmethod
    def _expr(column: str, dtype: pl.DataType, target: str) -> pl.Expr:
        if _is_text(dtype):
            text = _as_text(column, dtype)
            if target == "bool":
                lower = text.str.to_lowercase()
                return (
                    pl.when(lower.is_in(["true", "1"]))
                    .then(True)
                    .when(lower.is_in(["false", "0"]))
                    .then(False)
                    .otherwise(None)
                )
            if target == "date":
                return text.str.to_date("%Y-%m-%d", strict=False)
            if target == "datetime":
                return parse_iso_datetime(text)
            return text.cast(_CAST_DTYPES[target], strict=False)
        if target == "datetime" and isinstance(dtype, pl.Datetime):
            return pl.col(column).cast(pl.Datetime("us", dtype.time_zone), strict=False)
        return pl.col(column).cast(_CAST_DTYPES[target], strict=False)


# ---------------------------------------------------------------------------------------------
# rename


class RenameConfig(PluginConfig):
    """Rename columns."""

    op: Literal["rename"] = "rename"
    #: old name -> new name; names may be swapped ({a: b, b: a})
    columns: dict[str, str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _distinct_targets(cls, value: dict[str, str]) -> dict[str, str]:
        if any(not new for new in value.values()):
            raise ValueError("a new column name must not be empty")
        listed_once(list(value.values()), "the new names")
        return value


class Rename(Preprocessor[RenameConfig]):
    """The table with columns renamed; a missing column or a name clash is an InputError."""

    name: ClassVar[str] = "rename"
    Config = RenameConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        mapping = self.config.columns
        require_columns(df.columns, mapping)
        renamed = [mapping.get(c, c) for c in df.columns]
        clash = next((n for n in renamed if renamed.count(n) > 1), None)
        if clash is not None:
            raise InputError(
                f"rename would give two columns the name {clash!r}; rename or drop the other",
                column=clash,
            )
        return df.rename(mapping)


# ---------------------------------------------------------------------------------------------
# deduplicate


class DeduplicateConfig(PluginConfig):
    """Drop rows whose key repeats an earlier (or later) row's key."""

    op: Literal["deduplicate"] = "deduplicate"
    #: key columns; empty means the whole row
    columns: list[str] = Field(default_factory=list)
    #: first: keep the first row of each key; last: keep the last one
    keep: Literal["first", "last"] = "first"

    @field_validator("columns")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        return listed_once(value, "columns")


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
        fields = [_as_text(c, df.schema[c]) for c in keys]
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


# ---------------------------------------------------------------------------------------------
# sample


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


# ---------------------------------------------------------------------------------------------
# date_extraction

DatePart = Literal[
    "year", "month", "day", "weekday", "hour", "minute", "quarter", "iso_week", "day_of_year"
]


def _date_part(value: pl.Expr, part: str) -> pl.Expr:
    return {
        "year": value.dt.year(),
        "month": value.dt.month(),
        "day": value.dt.day(),
        "weekday": value.dt.weekday(),
        "hour": value.dt.hour(),
        "minute": value.dt.minute(),
        "quarter": value.dt.quarter(),
        "iso_week": value.dt.week(),
        "day_of_year": value.dt.ordinal_day(),
    }[part]


_DEFAULT_PARTS: tuple[DatePart, ...] = ("year", "month", "day")


class DateExtractionConfig(PluginConfig):
    """Calendar parts of a date, datetime or ISO-8601 string column as new columns."""

    op: Literal["date_extraction"] = "date_extraction"
    column: str = Field(min_length=1)
    parts: list[DatePart] = Field(default_factory=lambda: [*_DEFAULT_PARTS], min_length=1)
    #: True: a string that is not ISO-8601 is an InputError; False: its parts are null
    strict: bool = True

    @field_validator("parts")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        return listed_once(value, "parts")


class DateExtraction(Preprocessor[DateExtractionConfig]):
    """The table with ``{column}_{part}`` added for each part.

    Parts as Polars ``dt``: year (Int32), month, day, weekday (ISO: Monday 1 … Sunday 7), hour,
    minute, quarter, iso_week (ISO 8601 week number; early January may be week 52/53 of the
    previous ISO year) (Int8) and day_of_year (Int16). A date has hour and minute 0; a
    datetime with a time zone gives its local wall-clock parts; strings are parsed with
    :func:`parse_iso_datetime` (offsets converted to UTC). A null stays null.
    """

    name: ClassVar[str] = "date_extraction"
    Config = DateExtractionConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        column = self.config.column
        require_columns(df.columns, [column])
        names = [f"{column}_{p}" for p in self.config.parts]
        _require_new("date_extraction", df.columns, names)
        dtype = df.schema[column]
        if isinstance(dtype, pl.Datetime):
            value = pl.col(column)
        elif dtype in (pl.Date, pl.Null):
            value = pl.col(column).cast(pl.Datetime("us"))
        elif _is_text(dtype):
            value = parse_iso_datetime(_as_text(column, dtype))
            if self.config.strict:
                parsed = df.select(value).to_series()
                what = "be parsed as an ISO-8601 date"
                _first_failure(column, df.get_column(column), parsed, what)
        else:
            raise InputError(
                f"date_extraction needs a date, datetime or string column; column {column!r} "
                f"is {dtype}",
                column=column,
                dtype=str(dtype),
            )
        return df.with_columns(
            _date_part(value, p).alias(n) for p, n in zip(self.config.parts, names, strict=True)
        )


# ---------------------------------------------------------------------------------------------
# text_tokenization


def _regex_problem(pattern: str) -> str | None:
    try:
        matches_empty = pl.Series([""]).str.contains(pattern).item()
    except pl.exceptions.PolarsError as exc:
        return f"invalid regular expression {pattern!r}: {_polars_message(exc)}"
    return f"pattern {pattern!r} matches an empty token" if matches_empty else None


class TextTokenizationConfig(PluginConfig):
    """Split a text column into tokens."""

    op: Literal["text_tokenization"] = "text_tokenization"
    column: str = Field(min_length=1)
    #: lower-case the text (and the stop words) first
    lowercase: bool = True
    #: a token (Rust regex syntax, Unicode-aware: \w matches 東京 and ü); must not match ""
    pattern: str = Field(default=r"\w+", min_length=1)
    #: tokens to leave out (compared after lower-casing when lowercase is on)
    stop_words: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        problem = _regex_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class TextTokenization(Preprocessor[TextTokenizationConfig]):
    """The table with ``{column}_tokens`` (List[String]) and ``{column}_token_count`` (Int64).

    Tokens are the non-overlapping matches of ``pattern`` from left to right (Polars
    ``str.extract_all``), minus the stop words. A null text gives null tokens and a null
    count; an empty text gives an empty list and 0.
    """

    name: ClassVar[str] = "text_tokenization"
    Config = TextTokenizationConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        column = self.config.column
        require_columns(df.columns, [column])
        dtype = df.schema[column]
        if not (_is_text(dtype) or dtype == pl.Null):
            raise InputError(
                f"text_tokenization needs a string column; column {column!r} is {dtype}",
                column=column,
                dtype=str(dtype),
            )
        tokens_name, count_name = f"{column}_tokens", f"{column}_token_count"
        _require_new("text_tokenization", df.columns, [tokens_name, count_name])
        text = _as_text(column, dtype).cast(pl.String)
        stop = self.config.stop_words
        if self.config.lowercase:
            text = text.str.to_lowercase()
            stop = [w.lower() for w in stop]
        tokens = text.str.extract_all(self.config.pattern)
        if stop:
            tokens = tokens.list.eval(pl.element().filter(~pl.element().is_in(stop)))
        return df.with_columns(tokens.alias(tokens_name)).with_columns(
            pl.col(tokens_name).list.len().cast(pl.Int64).alias(count_name)
        )


# ---------------------------------------------------------------------------------------------
# binning


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
        _require_numeric("binning", self.config.column, schema[self.config.column])
        _require_new("binning", list(schema.names()), [f"{self.config.column}_bin"])

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
