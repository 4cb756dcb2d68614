"""Rows into (group keys, bucket) aggregates, mergeable across partitions.

**Buckets** follow :class:`raysight.analyses.temporal.Interval` in the bucket zone's wall-clock
time (local midnight, DST). ``bucket`` is the bucket's first instant; ``bucket_label`` is its
wall-clock name. In a DST fall-back two hourly buckets share a label; ``bucket`` tells them
apart.

**Aggregates** per (group keys, bucket), columns ``{value}_{operation}``: ``count`` (non-null
values, Int64), ``sum`` (0 without values, the Polars sum dtype), ``mean`` (Float64, null
without values), ``min``/``max`` (the column dtype), ``first``/``last`` (the non-null value at
the earliest/latest timestamp of the bucket; among several rows at that timestamp the smallest
value for ``first`` and the largest for ``last``, so the answer never depends on row order or
partitioning). A bucket exists when a row falls in it, even one whose values are all null.
Rows are sorted by the group keys (nulls last), then ``bucket``.

**Distributed.** :func:`bucket_rows` aggregates one partition per (keys, bucket): non-null
count, sum, min, max, and first/last with their timestamps; :func:`merge_buckets` merges such
tables into one of the same shape (associative, a tree reduce works) and :func:`aggregates`
computes the aggregates from it.
"""

from __future__ import annotations

import polars as pl

from raysight.analyses.timeseries.config import PREFIX, SERIES, TimeSeriesConfig

__all__ = ["aggregates", "bucket_rows", "merge_buckets", "partial_plan"]

_P = PREFIX


def partial_plan(config: TimeSeriesConfig) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """Columns of a partial table: (name, aggregate of rows, merge of partial rows).

    Value column ``j`` is ``{PREFIX}v{j}`` and the parsed timestamp ``{PREFIX}t`` in the rows.
    """
    ops, t = set(config.operations), pl.col(f"{_P}t")
    plan: list[tuple[str, pl.Expr, pl.Expr]] = []
    for j in range(len(config.value_columns)):
        v = pl.col(f"{_P}v{j}")
        has = v.is_not_null()
        if ops & {"count", "mean"}:
            plan.append((f"{_P}n{j}", v.count().cast(pl.Int64), pl.col(f"{_P}n{j}").sum()))
        if ops & {"sum", "mean"}:
            plan.append((f"{_P}sum{j}", v.sum(), pl.col(f"{_P}sum{j}").sum()))
        for op in ("min", "max"):
            if op in ops:
                name = f"{_P}{op}{j}"
                plan.append((name, getattr(v, op)(), getattr(pl.col(name), op)()))
        if "first" in ops:
            # the earliest timestamp with a value, and the smallest value there
            stamp, value = pl.col(f"{_P}tfirst{j}"), pl.col(f"{_P}first{j}")
            first_t = t.filter(has).min()
            plan += [
                (
                    value.meta.output_name(),
                    v.filter(has & (t == first_t)).min(),
                    value.filter(stamp == stamp.min()).min(),
                ),
                (stamp.meta.output_name(), first_t, stamp.min()),
            ]
        if "last" in ops:
            stamp, value = pl.col(f"{_P}tlast{j}"), pl.col(f"{_P}last{j}")
            last_t = t.filter(has).max()
            plan += [
                (
                    value.meta.output_name(),
                    v.filter(has & (t == last_t)).max(),
                    value.filter(stamp == stamp.max()).max(),
                ),
                (stamp.meta.output_name(), last_t, stamp.max()),
            ]
    return plan


def bucket_rows(df: pl.DataFrame, stamps: pl.Series, config: TimeSeriesConfig) -> pl.DataFrame:
    """The partial table of one partition: its rows with a timestamp, per (keys, bucket)."""
    values = [
        (pl.col(v).cast(pl.Float64) if df.schema[v] == pl.Null else pl.col(v)).alias(f"{_P}v{j}")
        for j, v in enumerate(config.value_columns)
    ]
    return (
        df.lazy()
        .select(*config.group_by, *values, pl.lit(stamps).alias(f"{_P}t"))
        .filter(pl.col(f"{_P}t").is_not_null())
        .with_columns(config.bucket_interval.bucket(pl.col(f"{_P}t")).alias("bucket"))
        .group_by([*config.group_by, "bucket"])
        .agg(expr.alias(name) for name, expr, _ in partial_plan(config))
        .collect()
    )


def merge_buckets(stacked: pl.DataFrame, config: TimeSeriesConfig) -> pl.DataFrame:
    """Partial tables stacked one below the other, merged into one of the same shape."""
    merged = stacked.group_by([*config.group_by, "bucket"]).agg(
        merge.alias(name) for name, _, merge in partial_plan(config)
    )
    return merged.select(stacked.columns)


def aggregates(table: pl.DataFrame, config: TimeSeriesConfig) -> pl.DataFrame:
    """Series keys, ``bucket`` and the aggregate columns of a merged partial table, sorted."""
    keys = config.series_keys
    columns = [
        _final(op, j).alias(f"{v}_{op}")
        for j, v in enumerate(config.value_columns)
        for op in config.operations
    ]
    if not config.group_by:
        table = table.with_columns(pl.lit(0, pl.Int8).alias(SERIES))
    return table.select(*keys, "bucket", *columns).sort([*keys, "bucket"], nulls_last=True)


def _final(op: str, j: int) -> pl.Expr:
    """An aggregate from the columns of a merged partial table (value column number ``j``)."""
    if op == "mean":
        n = pl.col(f"{_P}n{j}")
        return pl.when(n > 0).then(pl.col(f"{_P}sum{j}").cast(pl.Float64) / n)
    return pl.col(f"{_P}{'n' if op == 'count' else op}{j}")
