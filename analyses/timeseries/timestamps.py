"""The time column of a time series as instants in the zone its buckets follow.

**Timestamps.** Datetime and Date columns are used as they are; strings are ISO-8601 (date,
date and time with ``T`` or a space, optional fraction, optional ``Z``/``±HH:MM`` offset; see
:mod:`raysight.analyses.temporal`) unless ``timestamp_format`` gives a strptime format; integer
and float columns are seconds or milliseconds since the Unix epoch (``epoch_unit``; when unset,
values with ``|v| < 1e11`` are seconds and larger ones milliseconds, which is right for seconds
before the year 5138 and milliseconds after March 1973; NaN counts as missing). A value that is
not missing but does not parse (or an epoch beyond the years 1–9999) raises
:class:`InputError` naming the column and the value. Rows with a null timestamp are dropped and
counted in the summary (``rows_without_timestamp``).

**Time zone.** Buckets are computed in one zone: ``timezone`` when given, else the zone of a
tz-aware Datetime column, else none (naive wall-clock time, UTC for epochs and offsets). With a
zone, instants (offsets, epochs, tz-aware values) are converted into it and naive values are read
as wall-clock time there (an ambiguous time takes the earlier instant; a time inside a DST gap
raises InputError, except a skipped midnight, which means the start of that day); the
``bucket`` column is then tz-aware in that zone. Without a zone, offset
strings and epochs become naive UTC and ``bucket`` is naive.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from raysight.analyses.columns import is_numeric
from raysight.analyses.temporal import localize, parse_iso, to_zone
from raysight.errors import InputError

__all__ = ["bucket_zone", "parse_timestamps"]


def bucket_zone(dtype: pl.DataType, timezone: str | None) -> str | None:
    """The zone buckets are computed in: ``timezone``, else a tz-aware column's own zone."""
    if timezone is not None:
        return timezone
    return dtype.time_zone if isinstance(dtype, pl.Datetime) else None


def parse_timestamps(
    series: pl.Series,
    *,
    zone: str | None,
    timestamp_format: str | None = None,
    epoch_unit: Literal["s", "ms"] | None = None,
) -> pl.Series:
    """Timestamps of a column as ``Datetime("us", zone)`` (see the module doc for the rules).

    Nulls stay null; a non-null value that does not parse raises InputError naming it.
    """
    column, dtype = series.name, series.dtype
    if isinstance(dtype, pl.Datetime):
        values = series.cast(pl.Datetime("us", dtype.time_zone))
        return localize(values, zone) if dtype.time_zone is None else to_zone(values, zone)
    if dtype == pl.Date:
        return localize(series.cast(pl.Datetime("us")), zone)
    if dtype == pl.Null:
        return pl.Series(column, [None] * series.len(), pl.Datetime("us", zone))
    if timestamp_format is not None and (dtype == pl.String or is_numeric(dtype)):
        text = series.cast(pl.String)
        try:
            parsed = text.str.strptime(pl.Datetime("us"), timestamp_format, strict=False)
        except pl.exceptions.PolarsError as exc:
            raise InputError(
                f"timestamp_format {timestamp_format!r} is not a valid strptime format: {exc}",
                field="timestamp_format",
                value=timestamp_format,
            ) from exc
        _require_parsed(text, parsed, column, f"the format {timestamp_format!r}")
        return _finish(parsed, zone)
    if dtype == pl.String and epoch_unit is not None:
        numbers = series.str.strip_chars().cast(pl.Float64, strict=False)
        _require_parsed(series, numbers, column, f"a number of {epoch_unit} since the epoch")
        return _finish(_from_epoch(numbers, epoch_unit), zone)
    if dtype == pl.String:
        instant, wall_clock = parse_iso(pl.col("text"))
        iso = series.to_frame("text").select(
            instant.alias("instant"), wall_clock.alias("wall_clock")
        )
        aware = iso.get_column("instant").rename(column)
        naive = iso.get_column("wall_clock").rename(column)
        _require_parsed(
            series,
            aware.is_not_null() | naive.is_not_null(),
            column,
            "an ISO-8601 timestamp such as '2021-01-04T10:00:00Z' (or set timestamp_format)",
        )
        out = to_zone(aware, zone)
        return out.zip_with(out.is_not_null(), localize(naive, zone)).rename(column)
    if is_numeric(dtype):
        return _finish(_from_epoch(series, epoch_unit), zone).rename(column)
    raise InputError(
        f"time column {column!r} is {dtype}; expected datetimes, dates, ISO-8601 strings or "
        "epoch numbers",
        column=column,
        dtype=str(dtype),
    )


def _require_parsed(source: pl.Series, parsed: pl.Series, column: str, expected: str) -> None:
    ok = parsed if parsed.dtype == pl.Boolean else parsed.is_not_null()
    bad = source.filter(source.is_not_null() & ~ok)
    if bad.len():
        raise InputError(
            f"cannot parse {bad[0]!r} in time column {column!r} as {expected} "
            f"({bad.len()} such values)",
            column=column,
            value=str(bad[0]),
            count=bad.len(),
        )


def _from_epoch(values: pl.Series, unit: Literal["s", "ms"] | None) -> pl.Series:
    x = values.cast(pl.Float64).fill_nan(None)
    if unit == "s":
        micros = x * 1e6
    elif unit == "ms":
        micros = x * 1e3
    else:
        micros = pl.select(pl.when(x.abs() < 1e11).then(x * 1e6).otherwise(x * 1e3)).to_series()
    # years 1..9999: beyond them an epoch number is a mistake, not a time
    micros = micros.round().cast(pl.Int64, strict=False)
    micros = micros.zip_with(
        micros.abs() < 253_402_300_800_000_000, pl.Series([None], dtype=pl.Int64)
    )
    # NaN is a missing time, like null; values out of range are errors
    _require_parsed(x, micros, values.name, f"a time since the epoch in {unit or 's or ms'}")
    return pl.select(pl.from_epoch(micros, time_unit="us")).to_series()


def _finish(parsed: pl.Series, zone: str | None) -> pl.Series:
    """Naive values as wall-clock time in ``zone``; tz-aware ones converted to it."""
    dtype = parsed.dtype
    assert isinstance(dtype, pl.Datetime)
    return localize(parsed, zone) if dtype.time_zone is None else to_zone(parsed, zone)
