"""Descriptive statistics per column, exact across partitions.

For every column: count (non-null), null_count, n_unique (distinct non-null values), and for
integer and float columns mean, sample std (ddof=1), min, q1, median, q3 and max, quartiles by
linear interpolation (as Polars ``quantile(q, "linear")`` and numpy's default)::

    result = Descriptive(Descriptive.Config(columns=["amount"])).run(df)
    result.table            # one row per column
    result.summary["columns"]["amount"]["median"]

Distributed, ``partial`` keeps per column the moments (count, sum, mean, M2, min, max) and the
value counts, so ``merge`` merges variances with Chan's formula (:mod:`raysight.analyses.moments`)
and sums the value counts (a tree of merges is possible), and ``finalize`` computes quartiles and
n_unique exactly from the merged counts. The value counts of a column are as large as its
number of distinct values.

The module also holds the value-count helpers other kernels share (``value_counts``,
``merge_value_counts``, ``quantile_from_counts``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from raysight.analyses.columns import Names, as_frame, is_numeric, require_columns, stack
from raysight.analyses.moments import merge_moments
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = [
    "Descriptive",
    "DescriptiveConfig",
    "merge_value_counts",
    "quantile_from_counts",
    "value_counts",
]

#: the float statistics of the result table, in column order after count/null_count/n_unique
FLOAT_STATS = ("mean", "std", "min", "q1", "median", "q3", "max")
QUARTILES = (0.25, 0.5, 0.75)
_STATE_KEYS = ("count", "null_count", "min", "max", "sum", "mean", "m2")

RESULT_SCHEMA = pl.Schema(
    {
        "column": pl.String,
        "dtype": pl.String,
        "count": pl.Int64,
        "null_count": pl.Int64,
        "n_unique": pl.Int64,
        **dict.fromkeys(FLOAT_STATS, pl.Float64),
    }
)


# ---------------------------------------------------------------------------------------------
# Value counts (shared by the kernels that need exact distinct counts and quantiles)


def _orderable(dtype: pl.DataType) -> bool:
    """Whether min/max are meaningful (booleans are excluded, as for the other stats)."""
    return (
        is_numeric(dtype)
        or dtype.is_temporal()
        or dtype.is_decimal()
        or isinstance(dtype, (pl.String, pl.Categorical, pl.Enum))
    )


def _comparable(column: str, dtype: pl.DataType) -> pl.Expr:
    # categories compare lexically, as their strings
    col = pl.col(column)
    return col.cast(pl.String) if isinstance(dtype, (pl.Categorical, pl.Enum)) else col


def value_counts(df: pl.DataFrame, column: str) -> pl.DataFrame:
    """Distinct non-null values of a column with their counts (columns ``value``, ``count``),
    sorted by value.

    The runs of the sorted values, not a hash group-by: as fast for a near-unique column
    (db-benchmark v3, 1.25e6 rows: 0.05 s), and sorted partials merge faster
    (:func:`merge_value_counts`: 0.41 s against 0.69 s for 8 of them).
    """
    # eager, on one chunk: Polars 2.1's streaming engine panics ("chunks.len() == 1") on the
    # rle of a sorted column that came in several chunks with nulls
    values = df.select(_comparable(column, df.schema[column]).alias("value")).rechunk()
    return (
        values.drop_nulls()
        .sort("value")
        .select(pl.col("value").rle().alias("run"))
        .unnest("run")
        .select("value", pl.col("len").cast(pl.Int64).alias("count"))
    )


def merge_value_counts(tables: Sequence[pa.Table | pl.DataFrame]) -> pl.DataFrame:
    """Value counts of several partitions, summed per value and sorted by value.

    Sorted first, then each run of equal values summed (run ends of ``rle_id``, which counts
    -0.0 and 0.0, and NaNs, as one value, as ``group_by`` does): no hash table. A hash
    group-by of a near-unique float column (1e7 rows in 8 partitions, db-benchmark v3) took
    2.7 s, this 0.46 s (benchmarks/bench_graph.py, the descriptive analysis' combine).
    """
    run, total = "__rs_run", "__rs_total"
    return (
        stack(tables).lazy().sort("value")
        .with_columns(pl.col("value").rle_id().alias(run), pl.col("count").cum_sum().alias(total))
        .filter(pl.col(run) != pl.col(run).shift(-1, fill_value=-1))
        .select("value", (pl.col(total) - pl.col(total).shift(1, fill_value=0)).alias("count"))
        .collect()
    )


def quantile_from_counts(
    values_sorted: np.ndarray, counts: np.ndarray, q: float | Sequence[float] | np.ndarray
) -> Any:
    """The q-quantile(s), by linear interpolation, of data given as sorted distinct values.

    ``counts[i]`` copies of ``values_sorted[i]`` form the data (n values in all); the quantile
    lies at position ``(n - 1) * q`` of the sorted data, between the values at its floor and
    ceiling, as Polars ``quantile(q, "linear")`` and ``numpy.quantile``. Returns a float for a
    scalar ``q``, else an array. Raises ValueError when there are no values.

    >>> quantile_from_counts(np.array([1.0, 2.0, 10.0]), np.array([2, 1, 1]), 0.5)
    1.5
    """
    values = np.asarray(values_sorted, dtype=np.float64)
    cumulative = np.cumsum(np.asarray(counts, dtype=np.int64))
    n = int(cumulative[-1]) if cumulative.size else 0
    if n == 0:
        raise ValueError("quantile of no values")
    qs = np.asarray(q, dtype=np.float64)
    if np.any((qs < 0) | (qs > 1)) or np.any(np.isnan(qs)):
        raise ValueError(f"quantile must be in [0, 1], got {q!r}")
    position = (n - 1) * qs
    lower, upper = np.floor(position), np.ceil(position)
    # the value at sorted position p is the first distinct value whose cumulative count exceeds p
    v_lower = values[np.searchsorted(cumulative, lower.astype(np.int64), side="right")]
    v_upper = values[np.searchsorted(cumulative, upper.astype(np.int64), side="right")]
    with np.errstate(invalid="ignore"):
        result = np.where(
            lower == upper, v_lower, v_lower + (position - lower) * (v_upper - v_lower)
        )
    return float(result) if result.ndim == 0 else result


# ---------------------------------------------------------------------------------------------
# Config and kernel


class DescriptiveConfig(PluginConfig):
    """Which columns to describe."""

    type: Literal["descriptive"] = "descriptive"
    #: columns to describe, in this order; None means every column, in schema order
    columns: Names | None = Field(default=None, min_length=1)


class Descriptive(Analysis[DescriptiveConfig]):
    """One row of statistics per column, plus a JSON-ready summary.

    Result table columns: ``column``, ``dtype`` (the Polars dtype as text), ``count``,
    ``null_count``, ``n_unique`` (Int64) and ``mean``, ``std``, ``min``, ``q1``, ``median``,
    ``q3``, ``max`` (Float64; null for non-numeric columns, for columns without values, and
    ``std`` for fewer than two values). The summary repeats the statistics per column with
    ``min``/``max`` as JSON values of the column's own type (exact integers, strings, ISO
    dates), for strings and dates too; NaN and infinities become None there.
    """

    name: ClassVar[str] = "descriptive"
    Config = DescriptiveConfig

    def output_columns(self) -> list[str]:
        return list(RESULT_SCHEMA)

    def required_columns(self) -> list[str]:
        return list(self.config.columns or [])

    def _columns(self, schema: pl.Schema) -> list[str]:
        names = list(schema.names())
        if self.config.columns is None:
            return names
        require_columns(names, self.config.columns)
        return list(self.config.columns)

    # -- single partition ---------------------------------------------------------------------

    def run(self, df: pl.DataFrame) -> AnalysisResult:
        """Describe a whole table in memory with one Polars query."""
        columns = self._columns(df.schema)
        exprs: list[pl.Expr] = []
        for i, c in enumerate(columns):
            dtype = df.schema[c]
            exprs += [
                pl.col(c).count().cast(pl.Int64).alias(f"{i}:count"),
                pl.col(c).null_count().cast(pl.Int64).alias(f"{i}:null_count"),
                pl.col(c).drop_nulls().n_unique().cast(pl.Int64).alias(f"{i}:n_unique"),
            ]
            if _orderable(dtype):
                value = _comparable(c, dtype)
                exprs += [value.min().alias(f"{i}:min"), value.max().alias(f"{i}:max")]
            if is_numeric(dtype):
                x = pl.col(c).cast(pl.Float64)
                exprs += [x.mean().alias(f"{i}:mean"), x.std().alias(f"{i}:std")]
                exprs += [
                    x.quantile(q, "linear").alias(f"{i}:{name}")
                    for q, name in zip(QUARTILES, ("q1", "median", "q3"), strict=True)
                ]
        row = df.select(exprs).row(0, named=True) if exprs else {}
        stats = []
        for i, c in enumerate(columns):
            entry = {"column": c, "dtype": df.schema[c]}
            for key in ("count", "null_count", "n_unique", *FLOAT_STATS):
                entry[key] = row.get(f"{i}:{key}")
            stats.append(entry)
        return _result(stats, df.height)

    # -- distributed --------------------------------------------------------------------------

    def partial(self, df: pl.DataFrame) -> dict[str, Any]:
        """Mergeable state of one partition: moments, min/max and value counts per column."""
        columns = self._columns(df.schema)
        exprs: list[pl.Expr] = []
        for i, c in enumerate(columns):
            dtype = df.schema[c]
            exprs += [
                pl.col(c).count().cast(pl.Int64).alias(f"{i}:count"),
                pl.col(c).null_count().cast(pl.Int64).alias(f"{i}:null_count"),
            ]
            if _orderable(dtype):
                value = _comparable(c, dtype)
                exprs += [value.min().alias(f"{i}:min"), value.max().alias(f"{i}:max")]
            if is_numeric(dtype):
                x = pl.col(c).cast(pl.Float64)
                # integer sums stay exact (Int128), so the merged integer mean is correctly rounded
                total = pl.col(c).cast(pl.Int128) if dtype.is_integer() else x
                exprs += [
                    total.sum().alias(f"{i}:sum"),
                    x.mean().alias(f"{i}:mean"),
                    ((x - x.mean()) ** 2).sum().alias(f"{i}:m2"),
                ]
        row = df.select(exprs).row(0, named=True) if exprs else {}
        state: dict[str, Any] = {}
        for i, c in enumerate(columns):
            entry = {key: row[f"{i}:{key}"] for key in _STATE_KEYS if f"{i}:{key}" in row}
            entry["dtype"] = df.schema[c]
            entry["values"] = value_counts(df, c).to_arrow()
            state[c] = entry
        return {"row_count": df.height, "columns": state}

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state holding the merge of ``partials`` (associative): counts summed,
        moments merged with Chan's formula, value counts summed per value."""
        if not partials:
            raise ValueError("combine needs the state of at least one partition")
        columns = list(partials[0]["columns"])
        for p in partials[1:]:
            if list(p["columns"]) != columns:
                other = [c for c in p["columns"] if c not in columns] or [
                    c for c in columns if c not in p["columns"]
                ]
                raise InputError(
                    f"partitions have different columns: {other[0]!r} is not in every partition",
                    column=other[0],
                )
        return {
            "row_count": sum(p["row_count"] for p in partials),
            "columns": {c: _merge_column([p["columns"][c] for p in partials]) for c in columns},
        }

    def finalize(self, state: dict[str, Any]) -> AnalysisResult:
        """The result from one (merged) partial state: quartiles exact from the counts."""
        stats = [_column_stats(c, entry) for c, entry in state["columns"].items()]
        return _result(stats, state["row_count"])


def _merge_column(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The partial state of one column over the row sets of ``states``."""
    dtype = next((s["dtype"] for s in states if s["dtype"] != pl.Null), states[0]["dtype"])
    counts = merge_value_counts([s["values"] for s in states])
    entry: dict[str, Any] = {
        "count": sum(s["count"] for s in states),
        "null_count": sum(s["null_count"] for s in states),
        "dtype": dtype,
        "values": counts.to_arrow(),
    }
    if _orderable(dtype):
        mins = pl.Series([s.get("min") for s in states], dtype=counts.schema["value"])
        maxs = pl.Series([s.get("max") for s in states], dtype=counts.schema["value"])
        entry["min"], entry["max"] = mins.min(), maxs.max()
    if not is_numeric(dtype):
        return entry
    live = [s for s in states if s["count"] > 0]
    if not live:
        return entry | {"sum": 0, "mean": None, "m2": 0.0}
    sums = [s["sum"] for s in live]
    # integer sums are Python ints (exact), float sums add up in float64
    entry["sum"] = sum(sums) if dtype.is_integer() else float(np.sum(sums))
    mean, m2 = merge_moments(
        np.array([s["count"] for s in live], dtype=np.float64),
        np.array([s["mean"] for s in live], dtype=np.float64),
        np.array([s["m2"] for s in live], dtype=np.float64),
    )
    entry["mean"], entry["m2"] = float(mean), float(m2)
    return entry


def _column_stats(column: str, state: dict[str, Any]) -> dict[str, Any]:
    """The statistics of one column from its merged partial state."""
    dtype, count = state["dtype"], state["count"]
    counts = as_frame(state["values"])
    entry: dict[str, Any] = {
        "column": column,
        "dtype": dtype,
        "count": count,
        "null_count": state["null_count"],
        "n_unique": counts.height,
        **dict.fromkeys(FLOAT_STATS),
    }
    if _orderable(dtype):
        entry["min"], entry["max"] = state["min"], state["max"]
    if not is_numeric(dtype) or count == 0:
        return entry
    entry["mean"] = state["sum"] / count
    if count > 1:
        entry["std"] = math.sqrt(state["m2"] / (count - 1))
    quartiles = quantile_from_counts(
        counts.get_column("value").cast(pl.Float64).to_numpy(),
        counts.get_column("count").to_numpy(),
        QUARTILES,
    )
    entry["q1"], entry["median"], entry["q3"] = (float(v) for v in quartiles)
    return entry


def _result(stats: list[dict[str, Any]], row_count: int) -> AnalysisResult:
    """The result table and summary from per-column statistics (min/max in the column type)."""
    rows = []
    summary: dict[str, Any] = {}
    for entry in stats:
        numeric = is_numeric(entry["dtype"])
        row = {k: entry[k] for k in ("count", "null_count", "n_unique")}
        for key in FLOAT_STATS:
            value = entry.get(key)
            row[key] = float(value) if numeric and value is not None else None
        rows.append({"column": entry["column"], "dtype": str(entry["dtype"]), **row})
        summary[entry["column"]] = {
            "dtype": str(entry["dtype"]),
            **{k: entry[k] for k in ("count", "null_count", "n_unique")},
            **{k: _json_value(entry.get(k)) for k in FLOAT_STATS},
        }
    table = pl.DataFrame(rows, schema=RESULT_SCHEMA)
    return AnalysisResult(
        kind="descriptive",
        table=to_arrow(table),
        summary={"columns": summary, "row_count": row_count, "column_count": len(stats)},
    )


def _json_value(value: Any) -> Any:
    """A JSON-ready scalar: non-finite floats become None, dates ISO strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, (dt.timedelta, decimal.Decimal)):
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
