"""Missing buckets of each series: enumerated between two instants, inserted and filled.

**Gap filling** (``fill_gaps``) inserts, per series, every bucket between its first and last
one that has no rows, flagged in a Boolean column ``filled``. Their ``count`` is 0; the other
aggregates are null (``"null"``), 0 (``"zero"``) or the last non-null value before them
(``"forward"``).
"""

from __future__ import annotations

import polars as pl

from raysight.analyses.timeseries.config import TimeSeriesConfig
from raysight.errors import InputError

__all__ = ["MAX_BUCKETS", "buckets_between", "fill_gaps"]

#: at most this many candidate buckets when filling gaps or laying out a forecast
MAX_BUCKETS = 10_000_000


def buckets_between(
    spans: pl.DataFrame, dtype: pl.DataType, config: TimeSeriesConfig
) -> pl.DataFrame:
    """Every bucket from ``start`` to ``end`` of each series (columns: keys, ``bucket``).

    A grid of instants no coarser than the shortest bucket meets every bucket, so the
    truncated grid holds exactly the buckets rows would fall in, DST changes included.
    """
    assert isinstance(dtype, pl.Datetime)
    zone, keys, interval = dtype.time_zone, config.series_keys, config.bucket_interval
    step = interval.probe_minutes(zone is not None) * 60_000_000
    spans = spans.select(
        *keys, pl.col("start").dt.epoch("us").alias("start"), pl.col("end").dt.epoch("us")
    )
    total = spans.select(((pl.col("end") - pl.col("start")) // step + 1).sum()).item()
    if total is not None and total > MAX_BUCKETS:
        raise InputError(
            f"interval {config.interval!r} gives more than {MAX_BUCKETS:,} buckets "
            "between the first and last timestamps; choose a coarser interval",
            field="interval",
            value=config.interval,
        )
    instants = pl.from_epoch(pl.col("bucket"), time_unit="us")
    if zone is not None:
        instants = instants.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
    return (
        spans.select(*keys, pl.int_ranges("start", pl.col("end") + 1, step).alias("bucket"))
        .explode("bucket")
        .drop_nulls("bucket")
        .select(*keys, interval.bucket(instants).alias("bucket"))
        .unique()
    )


def fill_gaps(table: pl.DataFrame, config: TimeSeriesConfig) -> pl.DataFrame:
    """Insert the missing buckets of each series, flagged in ``filled``."""
    c, keys = config, config.series_keys
    spans = table.group_by(keys).agg(
        pl.col("bucket").min().alias("start"), pl.col("bucket").max().alias("end")
    )
    grid = buckets_between(spans, table.schema["bucket"], config)
    missing = grid.join(table, on=[*keys, "bucket"], how="anti", nulls_equal=True)
    filled = pl.col("filled")
    fills = []
    for v in c.value_columns:
        for op in c.operations:
            name = f"{v}_{op}"
            col, dtype = pl.col(name), table.schema[name]
            if op == "count":
                value = pl.lit(0, pl.Int64)
            elif c.fill_gaps == "zero":
                value = pl.lit(0).cast(dtype)
            elif c.fill_gaps == "forward":
                value = col.forward_fill().over(keys)
            else:
                value = pl.lit(None, dtype)
            fills.append(pl.when(filled).then(value).otherwise(col).alias(name))
    return (
        pl.concat(
            [
                table.with_columns(pl.lit(False).alias("filled")),
                missing.with_columns(pl.lit(True).alias("filled")),
            ],
            how="diagonal",
        )
        .sort([*keys, "bucket"], nulls_last=True)
        .with_columns(fills)
    )
