"""The time-series kernel: resampled series per group, with gaps filled, features and a forecast.

``partial`` parses timestamps and aggregates one partition per (keys, bucket); ``merge``
merges partial states into one of the same shape (associative, a tree reduce works) and
``finalize`` computes the aggregates, then gap filling and the features on the (small)
bucketed series. ``run`` is ``combine([partial(df)])``. The rules of each step are in the
modules of :mod:`raysight.analyses.timeseries`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import polars as pl

from raysight.analyses.columns import as_frame, is_numeric, require_columns, stack
from raysight.analyses.temporal import Interval
from raysight.analyses.timeseries.config import TimeSeriesConfig
from raysight.analyses.timeseries.features import add_features
from raysight.analyses.timeseries.forecast import forecast
from raysight.analyses.timeseries.gaps import fill_gaps
from raysight.analyses.timeseries.resample import aggregates, bucket_rows, merge_buckets
from raysight.analyses.timeseries.timestamps import bucket_zone, parse_timestamps
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult
from raysight.tables import to_arrow

__all__ = ["TimeSeries"]


class TimeSeries(Analysis[TimeSeriesConfig]):
    """Resampled series per group, with gaps filled, features and a forecast on request."""

    name: ClassVar[str] = "time_series"
    Config = TimeSeriesConfig
    mergeable: ClassVar[bool] = True

    def output_columns(self) -> list[str]:
        return self.config.output_columns

    @property
    def interval(self) -> Interval:
        return self.config.bucket_interval

    @property
    def keys(self) -> list[str]:
        """The columns that tell series apart after resampling (an internal one without keys)."""
        return self.config.series_keys

    def required_columns(self) -> list[str]:
        c = self.config
        return list(dict.fromkeys([c.time_column, *c.value_columns, *c.group_by]))

    def _validate(self, schema: pl.Schema) -> None:
        names = list(schema.names())
        require_columns(names, [self.config.time_column], what="time column")
        require_columns(names, self.config.value_columns, what="value column")
        require_columns(names, self.config.group_by, what="group-by column")
        for v in self.config.value_columns:
            dtype = schema[v]
            if not (is_numeric(dtype) or dtype == pl.Null):
                raise InputError(
                    f"value column {v!r} is {dtype}; time-series values must be numeric",
                    column=v,
                    dtype=str(dtype),
                )

    # -- partial state ------------------------------------------------------------------------

    def partial(self, df: pl.DataFrame) -> dict[str, Any]:
        """Aggregates of one partition per (keys, bucket), plus row counts for the summary."""
        self._validate(df.schema)
        c = self.config
        stamps = parse_timestamps(
            df.get_column(c.time_column),
            zone=bucket_zone(df.schema[c.time_column], c.timezone),
            timestamp_format=c.timestamp_format,
            epoch_unit=c.epoch_unit,
        )
        return {
            "table": to_arrow(bucket_rows(df, stamps, c)),
            "rows": df.height,
            "rows_without_timestamp": stamps.null_count(),
        }

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state of the same shape holding the merge of ``partials`` (associative)."""
        if not partials:
            raise ValueError("merge needs at least one partial state")
        stacked = stack([p["table"] for p in partials])
        return {
            "table": to_arrow(merge_buckets(stacked, self.config)),
            "rows": sum(p["rows"] for p in partials),
            "rows_without_timestamp": sum(p["rows_without_timestamp"] for p in partials),
        }

    def combine(self, partials: list[dict[str, Any]]) -> AnalysisResult:
        """The result from the partial states of all partitions."""
        return self.finalize(self.merge(partials))

    # -- finishing ----------------------------------------------------------------------------

    def finalize(self, state: dict[str, Any]) -> AnalysisResult:
        """Aggregates, gap filling, features and forecast from one merged partial state."""
        c, keys = self.config, self.keys
        table = aggregates(as_frame(state["table"]), c)
        summary: dict[str, Any] = {
            "interval": c.interval,
            "timezone": _zone_of(table),
            "group_by": list(c.group_by),
            "columns": c.aggregate_columns,
            "rows": state["rows"],
            "rows_without_timestamp": state["rows_without_timestamp"],
            "series": table.select(keys).n_unique() if table.height else 0,
            "buckets": table.height,
            "first_bucket": _iso(table.get_column("bucket").min()),
            "last_bucket": _iso(table.get_column("bucket").max()),
        }
        if c.fill_gaps != "none":
            table = fill_gaps(table, c)
            summary["filled_buckets"] = int(table.get_column("filled").sum())
            summary["buckets"] = table.height
        table = add_features(table, c, summary)
        if c.forecast is not None:
            table = forecast(table, c, summary)
        label = self.interval.bucket_label(pl.col("bucket"))
        table = table.with_columns(label.alias("bucket_label"))
        return AnalysisResult(
            kind="time_series", table=to_arrow(table.select(c.output_columns)), summary=summary
        )


def _zone_of(table: pl.DataFrame) -> str | None:
    dtype = table.schema["bucket"]
    return dtype.time_zone if isinstance(dtype, pl.Datetime) else None


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
