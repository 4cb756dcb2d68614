"""Metrics over whole groups as Polars expressions (one query per table: ``run`` and each
shard of the shuffle path)."""

from __future__ import annotations

import polars as pl

from raysight.analyses.aggregation.comoments import comoments, r_defined
from raysight.analyses.aggregation.config import Metric

__all__ = ["count_values", "direct", "grouped", "pair_complete", "pair_masks", "paired"]


def grouped(
    df: pl.DataFrame, keys: list[str], exprs: list[pl.Expr], masks: list[pl.Expr] | None = None
) -> pl.LazyFrame:
    """``exprs`` aggregated per group of ``keys`` (or over all rows without keys), after adding
    the ``masks`` columns, as a lazy query: Polars plans it whole, and the caller picks the
    engine that collects it (Aggregation._engine)."""
    lf = df.lazy()
    if masks:
        lf = lf.with_columns(masks)
    return lf.group_by(keys).agg(exprs) if keys else lf.select(exprs)


def direct(m: Metric, prefix: str, df: pl.DataFrame) -> tuple[list[pl.Expr], pl.Expr]:
    """A metric over whole groups: bare Polars aggregations (named with ``prefix``) and the
    expression that gives the metric from them after the group-by.

    Anything but a bare aggregation inside agg() takes Polars off its fast grouped path: at
    1e7 rows and 100 groups ``len()`` took 56 ms and ``len().cast(Int64)`` 142 ms. So casts
    to the metric's dtype happen on the grouped rows. ``count()`` is slow too (see count_values).
    """
    name = f"{prefix}a"
    out = pl.col(name)
    if m.column is None:
        return [pl.len().alias(name)], out.cast(pl.Int64)
    col = pl.col(m.column)
    match m.function:
        case "count":
            return [count_values(m.column, df).alias(name)], out.cast(pl.Int64)
        case "n_unique" | "count_distinct":
            # n_unique counts null as a value
            nulls = f"{prefix}nulls"
            return ([col.n_unique().alias(name), col.null_count().alias(nulls)],
                    (out.cast(pl.Int64) - (pl.col(nulls) > 0).cast(pl.Int64)))
        case "sum" | "min" | "max" | "first" | "last":
            return [getattr(col, m.function)().alias(name)], out
        case "mean" | "median":
            return [getattr(col, m.function)().alias(name)], out.cast(pl.Float64)
        case "percentile":
            assert m.q is not None
            return [col.quantile(m.q, "linear").alias(name)], out.cast(pl.Float64)
        case "std" | "var":
            return [getattr(col, m.function)(ddof=1).alias(name)], out.cast(pl.Float64)
    raise AssertionError(m.function)


def count_values(column: str, df: pl.DataFrame | None) -> pl.Expr:
    """The non-null values of ``column`` per group: len() where ``df`` has no nulls in it
    (count() took 90 ms where len() took 23 ms, with three sums, 5e6 rows, 100 groups)."""
    if df is not None and df[column].null_count() == 0:
        return pl.len()
    return pl.col(column).count()


# |sum| below this is exact in float64, so a mean of equal integers is exactly that integer
_EXACT = 2**53


def paired(
    m: Metric, df: pl.DataFrame, prefix: str
) -> tuple[list[pl.Expr], list[pl.Expr], pl.Expr]:
    """A corr/r2 metric over whole groups: columns to add before the group-by, aggregations
    (named with ``prefix``) and the expression that gives the metric after the group-by.

    r is null below two complete pairs or where a column is constant over them (as in
    correlation). ``pl.corr`` stays a bare aggregation, Polars' fast grouped path (wrapping
    it in when/then or fill_nan inside the group-by made q9 of db-benchmark 1.7x slower).
    Over integers whose sums are exact in float64 each undefined r comes out NaN (the
    deviations from an exact mean are exactly 0), so NaN -> null is the whole check. Floats
    need min/max over the complete pairs: a constant float column's mean may be off by an
    ulp, giving a spurious r.
    """
    assert m.column is not None and m.other is not None
    x, y = m.column, m.other
    corr = pl.col(f"{prefix}r")
    aggs = [pl.corr(x, y).alias(f"{prefix}r")]
    masks: list[pl.Expr] = []
    if integer_sums_exact(df, x) and integer_sums_exact(df, y):
        final = corr.fill_nan(None)
    else:
        masks = pair_masks(df, x, y, prefix)
        if masks:
            x, y = f"{prefix}x", f"{prefix}y"
        names = ("n", "minx", "maxx", "miny", "maxy")
        moments = comoments(x, y, complete=not masks)
        aggs += [moments[name][0].alias(f"{prefix}{name}") for name in names]
        final = pl.when(r_defined(*(pl.col(f"{prefix}{name}") for name in names))).then(corr)
    return masks, aggs, final if m.function == "corr" else final**2


def pair_masks(df: pl.DataFrame, x: str, y: str, prefix: str, p: int | str = "") -> list[pl.Expr]:
    """Copies of x and y (``{prefix}x{p}``, ``{prefix}y{p}``) that are null wherever either is:
    the pair's complete rows, made before the group-by so that the aggregations over them stay
    bare. None when neither column has nulls (x and y are their own complete rows)."""
    if pair_complete(df, x, y):
        return []
    both = pl.col(x).is_not_null() & pl.col(y).is_not_null()
    return [pl.when(both).then(pl.col(x)).alias(f"{prefix}x{p}"),
            pl.when(both).then(pl.col(y)).alias(f"{prefix}y{p}")]


def pair_complete(df: pl.DataFrame, x: str, y: str) -> bool:
    """Whether every row of ``df`` has both x and y."""
    return df[x].null_count() == 0 and df[y].null_count() == 0


def integer_sums_exact(df: pl.DataFrame, column: str) -> bool:
    """Whether ``column`` is integer and any sum of its values is exact in float64."""
    if not df.schema[column].is_integer():
        return False
    if df.height == 0 or df[column].null_count() == df.height:
        return True
    col = pl.col(column)
    low, high = df.select(col.min().alias("low"), col.max().alias("high")).row(0)
    return max(abs(low), abs(high)) * df.height < _EXACT
