"""Mergeable partial tables: per-group partial aggregates, their merge, the metrics from them.

A partial table has the group keys and, per value column ``j``, the columns its metrics need
(``__rs_len`` rows, ``__rs_n{j}`` values, ``__rs_sum{j}``, ``__rs_min{j}``, ``__rs_first{j}``,
``__rs_mean{j}`` with ``__rs_m2_{j}`` for std/var) and per corr pair ``p`` its co-moments
(``__rs_c{name}{p}``). Stacked partial tables merge group by group into one of the same shape,
associative over adjacent partials in partition order (first and last depend on it).
"""

from __future__ import annotations

import polars as pl

from raysight.analyses.aggregation.comoments import (
    comoments,
    comoments_after,
    correlation,
    merge_comoments,
)
from raysight.analyses.aggregation.config import INTERNAL, PAIRED, Metric, Plan
from raysight.analyses.aggregation.groups import count_values, pair_complete
from raysight.analyses.moments import merge_moments

__all__ = ["final", "final_columns", "merged_columns", "partial_after", "partial_columns"]


def partial_columns(plan: Plan, df: pl.DataFrame | None = None) -> list[tuple[str, pl.Expr, str]]:
    """Columns of a mergeable partial table: (name, aggregate per partition, merge rule).

    The merge rule is ``sum``, ``min``, ``max``, ``first`` or ``last`` of the partial
    values, ``moments`` for the mean/M2 pairs that Chan's formula merges together, or
    ``comoments`` for the co-moments of a corr pair. The aggregates are bare (see direct);
    ``partial_after`` gives the columns their dtypes and M2 its value on the grouped rows.
    With the partition ``df`` given, a column without nulls counts its values by len().
    """
    columns = [(f"{INTERNAL}len", pl.len(), "sum")]
    for j, c in enumerate(plan.value_columns):
        functions = {
            m.function for m in plan.computed if m.column == c and m.function not in PAIRED
        }
        col = pl.col(c)
        if functions & {"count", "mean", "std", "var"}:
            columns.append((f"{INTERNAL}n{j}", count_values(c, df), "sum"))
        if functions & {"sum", "mean"}:
            columns.append((f"{INTERNAL}sum{j}", col.sum(), "sum"))
        for rule in ("min", "max", "first", "last"):
            if rule in functions:
                columns.append((f"{INTERNAL}{rule}{j}", getattr(col, rule)(), rule))
        if functions & {"std", "var"}:
            columns.append((f"{INTERNAL}mean{j}", col.mean(), "moments"))
            # the population variance here; times n in partial_after (M2 = n var)
            columns.append((f"{INTERNAL}m2_{j}", col.var(ddof=0), "moments"))
    for p, (c, o) in enumerate(plan.pairs):
        complete = df is None or pair_complete(df, c, o)
        x, y = (c, o) if complete else (f"{INTERNAL}px{p}", f"{INTERNAL}py{p}")
        columns += [(f"{INTERNAL}c{name}{p}", e, rule)
                 for name, (e, rule) in comoments(x, y, complete).items()]
    return columns


def partial_after(plan: Plan, columns: list[str]) -> list[pl.Expr]:
    """Dtypes of the partial columns (counts Int64, moments Float64) and M2 = n * var."""
    after = [pl.col(f"{INTERNAL}len").cast(pl.Int64)]
    for j in range(len(plan.value_columns)):
        n = f"{INTERNAL}n{j}"
        if n in columns:
            after.append(pl.col(n).cast(pl.Int64))
        if f"{INTERNAL}m2_{j}" in columns:
            after.append(pl.col(f"{INTERNAL}mean{j}").cast(pl.Float64))
            after.append((pl.col(f"{INTERNAL}m2_{j}").cast(pl.Float64) * pl.col(n).cast(pl.Float64))
                         .fill_null(0.0).alias(f"{INTERNAL}m2_{j}"))
    for p in range(len(plan.pairs)):
        after += comoments_after(f"{INTERNAL}c", p)
    return after


def merged_columns(plan: Plan, columns: list[str]) -> list[pl.Expr]:
    """Aggregations that merge the rows of each group of stacked partial tables (with
    ``columns``) into one partial row: sum, min, max, first or last per rule, Chan's formula
    (:mod:`raysight.analyses.moments`) for mean/M2 and for co-moments."""
    live = pl.col(f"{INTERNAL}len") > 0  # the partial row of an empty partition has no first/last
    exprs = []
    for name, _, rule in partial_columns(plan):
        if rule in ("first", "last"):
            exprs.append(getattr(pl.col(name).filter(live), rule)())
        elif rule in ("sum", "min", "max"):
            exprs.append(getattr(pl.col(name), rule)())
    for j in range(len(plan.value_columns)):
        n, mean, m2 = f"{INTERNAL}n{j}", f"{INTERNAL}mean{j}", f"{INTERNAL}m2_{j}"
        if m2 in columns:
            # rows of partitions without values have a null mean; the sums skip them
            grand, spread = merge_moments(pl.col(n), pl.col(mean), pl.col(m2))
            exprs += [grand.alias(mean), spread.alias(m2)]
    for p in range(len(plan.pairs)):
        exprs += merge_comoments(f"{INTERNAL}c", p)
    return exprs


def final_columns(plan: Plan) -> list[pl.Expr]:
    """The computed metrics from the columns of a merged partial table."""
    index = {c: j for j, c in enumerate(plan.value_columns)}
    pairs = {pair: p for p, pair in enumerate(plan.pairs)}
    exprs = []
    for m in plan.computed:
        if m.function in PAIRED:
            number = pairs[(m.column or "", m.other or "")]
        else:
            number = index.get(m.column or "", -1)
        exprs.append(final(m, number).alias(m.output_name))
    return exprs


def final(m: Metric, j: int) -> pl.Expr:
    """A metric from the columns of a merged partial table (value column or pair ``j``)."""
    if m.column is None:
        return pl.col(f"{INTERNAL}len")
    n = pl.col(f"{INTERNAL}n{j}")
    match m.function:
        case "count":
            return n
        case "sum":
            return pl.col(f"{INTERNAL}sum{j}")
        case "min" | "max" | "first" | "last":
            return pl.col(f"{INTERNAL}{m.function}{j}")
        case "mean":
            return pl.when(n > 0).then(pl.col(f"{INTERNAL}sum{j}").cast(pl.Float64) / n)
        case "std" | "var":
            var = pl.when(n > 1).then(pl.col(f"{INTERNAL}m2_{j}") / (n - 1))
            return var.sqrt() if m.function == "std" else var
        case "corr" | "r2":
            names = ("n", "mx", "my", "cxy", "m2x", "m2y", "minx", "maxx", "miny", "maxy")
            corr = correlation(**{name: pl.col(f"{INTERNAL}c{name}{j}") for name in names})
            return corr if m.function == "corr" else corr**2
    raise AssertionError(m.function)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
