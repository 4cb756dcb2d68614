"""Time series: resample to calendar or N-minute buckets, then per-series features.

::

    ts = TimeSeries(TimeSeries.Config(
        time_column="ts", value_columns=["amount"], operations=["sum", "mean"],
        interval="weekly", group_by=["region"], timezone="Europe/Berlin",
        fill_gaps="zero", rolling={"window": 4, "function": "mean"},
    ))
    ts.run(df).table   # region, bucket, bucket_label, amount_sum, amount_mean, filled, ...

**Timestamps.** Datetime and Date columns are used as they are; strings are ISO-8601 (date,
date and time with ``T`` or a space, optional fraction, optional ``Z``/``±HH:MM`` offset) unless
``timestamp_format`` gives a strptime format; integer and float columns are seconds or
milliseconds since the Unix epoch (``epoch_unit``; when unset, values with ``|v| < 1e11`` are
seconds and larger ones milliseconds, which is right for seconds before the year 5138 and
milliseconds after March 1973; NaN counts as missing). A value that is not missing but does not
parse (or an epoch beyond the years 1–9999) raises :class:`InputError` naming the column and the
value. Rows with a null timestamp are dropped and counted in the summary
(``rows_without_timestamp``).

**Time zone.** Buckets are computed in one zone: ``timezone`` when given, else the zone of a
tz-aware Datetime column, else none (naive wall-clock time, UTC for epochs and offsets). With a
zone, instants (offsets, epochs, tz-aware values) are converted into it and naive values are read
as wall-clock time there (an ambiguous time takes the earlier instant; a time inside a DST gap
raises InputError, except a skipped midnight, which means the start of that day); the
``bucket`` column is then tz-aware in that zone. Without a zone, offset
strings and epochs become naive UTC and ``bucket`` is naive.

**Buckets** are Polars ``dt.truncate`` in the bucket zone's wall-clock time, so they follow
local midnight and DST: ``hourly``; ``daily`` (a bucket of 23 or 25 hours on a DST change);
``weekly`` (ISO weeks from Monday 00:00: 2020-12-31 lies in 2020-W53, which starts on
2020-12-28, and 2021-W01 starts on 2021-01-04); ``monthly`` (the 1st); ``quarterly`` (Jan 1,
Apr 1, Jul 1, Oct 1); ``yearly``; or a duration ``"15m"``, ``"15 minutes"``, ``"2h"``, ``"3d"``:
N-minute buckets aligned to the epoch of the wall clock (1970-01-01 00:00 local, the Unix epoch
without a zone), so a 7-minute bucket may span midnight; multiples of a day are calendar days
counted from 1970-01-01. A bucket starting in a DST gap starts at the gap's end. ``bucket`` is
the bucket's first instant; ``bucket_label`` is its wall-clock name: ``2021-03-15T10`` (hourly),
``2021-03-15T10:45`` (N minutes), ``2021-03-15`` (days), ``2021-W01`` (ISO year and week),
``2021-03``, ``2021-Q1``, ``2021``. In a DST fall-back two hourly buckets share a label;
``bucket`` tells them apart.

**Aggregates** per (group keys, bucket), columns ``{value}_{operation}``: ``count`` (non-null
values, Int64), ``sum`` (0 without values, the Polars sum dtype), ``mean`` (Float64, null
without values), ``min``/``max`` (the column dtype), ``first``/``last`` (the non-null value at
the earliest/latest timestamp of the bucket; among several rows at that timestamp the smallest
value for ``first`` and the largest for ``last``, so the answer never depends on row order or
partitioning). A bucket exists when a row falls in it, even one whose values are all null.
Rows are sorted by the group keys (nulls last), then ``bucket``.

**Gap filling** (``fill_gaps``) inserts, per series, every bucket between its first and last
one that has no rows, flagged in a Boolean column ``filled``. Their ``count`` is 0; the other
aggregates are null (``"null"``), 0 (``"zero"``) or the last non-null value before them
(``"forward"``).

**Features** on the bucketed series, for every aggregate column named in ``targets`` (default:
all of them), each computed per series in bucket order:

- ``rolling``: ``{column}_rolling_{function}`` over the last ``window`` rows (buckets present,
  so fill gaps first for regular spacing) or over a duration window ``(t - window, t]`` on
  ``bucket`` (Polars ``rolling_*`` / ``rolling_*_by``; ``min_periods`` defaults to the window
  for rows and 1 for durations; ``std`` is the sample std).
- ``transforms``: ``{column}_lag``, ``{column}_diff``, ``{column}_pct_change`` with ``periods``
  (Polars ``shift``/``diff``/``pct_change``).
- ``decompose``: classical decomposition as statsmodels' ``seasonal_decompose``:
  ``{column}_trend`` is the centred moving average of ``period`` rows (a 2×period average for
  an even period; null at the ends), ``{column}_seasonal`` the mean detrended value of each
  position modulo ``period`` counted from the series' first bucket, centred to mean 0
  (additive) or 1 (multiplicative), ``{column}_resid`` what is left. A series shorter than two
  periods gets nulls (counted in the summary); the multiplicative model needs positive values.
- ``anomalies``: ``{column}_anomaly`` (Boolean; null where the value or the statistics are
  missing). ``zscore``: ``|x - mean| > threshold * std`` (sample std; ``x != mean`` where the std
  is 0); ``iqr``: ``x`` outside ``[q1 - k·IQR, q3 + k·IQR]`` (linear quartiles). With ``window``
  the statistics come from the ``window`` buckets before the current one (all present), else
  from the whole series including the point.
- ``forecast``: ``seasonal_naive`` repeats the last ``season_length`` values (1 = naive);
  ``exp_smoothing`` is simple exponential smoothing (level only, started at the first value,
  flat forecast) with ``alpha`` or, when unset, the alpha in 0.01…0.99 (step 0.01) with the
  least one-step-ahead squared error on the fit data, chosen per series and column. Each model
  is fit on all but the last ``holdout`` buckets of a series (default: ``horizon``) to report
  MAE, RMSE and MAPE (percent, over non-zero actuals) on those buckets in
  ``summary["forecast"]["metrics"]`` (one entry per series and target, with ``n`` scored
  buckets and, for exp_smoothing, the ``alpha`` used); it is then refit on the whole series
  (alpha chosen again) and ``horizon`` buckets after the last one (calendar-aware, DST too)
  are appended as rows with ``kind = "forecast"`` (the others have ``kind = "actual"``),
  holding the forecasts in the target columns (which become Float64) and nulls elsewhere.
  Decomposition and forecasts count rows as consecutive buckets: fill gaps first when a series
  has holes.

**Distributed.** Resampling is mergeable: ``partial`` parses timestamps and aggregates one
partition per (keys, bucket): non-null count, sum, min, max, and first/last with their
timestamps; ``merge`` merges such tables into one of the same shape (associative, a
tree reduce works) and ``finalize`` computes the aggregates, then gap filling and the features
on the (small) bucketed series. ``run`` is ``combine([partial(df)])``.

Output columns, in order: group keys, ``bucket``, ``bucket_label``, aggregates (values in
order, operations in order), ``filled`` (with gap filling), rolling columns, transform columns
(per transform, targets in order), ``_trend``/``_seasonal``/``_resid`` per target, anomaly
columns, ``kind`` (with a forecast). A single ``value_column`` and ``operation``
(``"average"`` = mean) are accepted as aliases. An empty input gives an
empty table with these columns.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator, model_validator

from raysight.analyses.columns import as_frame, is_numeric, require_columns, stack
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = [
    "Anomalies",
    "Decompose",
    "Forecast",
    "Interval",
    "Rolling",
    "TimeSeries",
    "TimeSeriesConfig",
    "bucket_zone",
    "parse_duration",
    "parse_interval",
    "parse_timestamps",
]

Operation = Literal["sum", "mean", "min", "max", "count", "first", "last"]
Transform = Literal["lag", "diff", "pct_change"]
_MEAN: tuple[Operation, ...] = ("mean",)

#: prefix of internal columns (partial tables, helpers)
_P = "__rs_"
#: at most this many candidate buckets when filling gaps or laying out a forecast
MAX_BUCKETS = 10_000_000
#: exponential-smoothing alphas tried when none is given
ALPHA_GRID = tuple(round(0.01 * i, 2) for i in range(1, 100))

_UNIT_MINUTES = {
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 1),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 60),
    **dict.fromkeys(("d", "day", "days"), 1440),
    **dict.fromkeys(("w", "wk", "week", "weeks"), 10080),
}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")
_DAY = 1440


# ---------------------------------------------------------------------------------------------
# Intervals and durations


@dataclass(frozen=True)
class Interval:
    """A bucket rule: the Polars ``truncate`` duration and how to enumerate and name buckets."""

    #: Polars duration given to ``dt.truncate`` (``"1mo"``, ``"15m"``, ``"3d"``)
    every: str
    #: strftime pattern of ``bucket_label``; ``"quarter"`` for ``YYYY-Qn``
    label: str
    #: the bucket length in minutes for fixed sub-day buckets, else None
    minutes: int | None
    #: an upper bound on the length of one bucket, in minutes (a DST day has 25 hours)
    longest: int

    def probe_minutes(self, zoned: bool) -> int:
        """Step of an instant grid that meets every bucket (no bucket is shorter than it)."""
        if self.minutes is None:
            return _DAY if self.longest > 2 * _DAY else _DAY // 2
        # local wall-clock boundaries minus offsets that are multiples of 15 minutes
        return math.gcd(self.minutes, 15) if zoned else self.minutes


_CALENDAR = {
    "hourly": Interval("1h", "%Y-%m-%dT%H", 60, 120),
    "daily": Interval("1d", "%Y-%m-%d", None, _DAY + 120),
    "weekly": Interval("1w", "%G-W%V", None, 7 * _DAY + 120),
    "monthly": Interval("1mo", "%Y-%m", None, 31 * _DAY + 120),
    "quarterly": Interval("1q", "quarter", None, 92 * _DAY + 120),
    "yearly": Interval("1y", "%Y", None, 366 * _DAY + 120),
}


def parse_duration(text: str, *, weeks: bool = True) -> int:
    """Minutes in a duration such as ``"15m"``, ``"15 minutes"``, ``"2h"``, ``"3d"``, ``"1w"``.

    Raises ValueError naming the text when it is not a positive duration.

    >>> parse_duration("2 hours")
    120
    """
    match = _DURATION.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNIT_MINUTES or (unit.startswith("w") and not weeks):
        units = "minutes (m), hours (h), days (d)" + (" or weeks (w)" if weeks else "")
        raise ValueError(f"{text!r} is not a duration: use a count and {units}, e.g. '15m'")
    minutes = int(match.group(1)) * _UNIT_MINUTES[unit]
    if minutes <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return minutes


def _polars_duration(minutes: int) -> str:
    if minutes % 10080 == 0:
        return f"{minutes // 10080}w"
    if minutes % _DAY == 0:
        return f"{minutes // _DAY}d"
    return f"{minutes}m"


def parse_interval(text: str) -> Interval:
    """The bucket rule of ``hourly`` … ``yearly`` or of a duration (``"15m"``, ``"3d"``)."""
    calendar = _CALENDAR.get(text.strip().lower())
    if calendar is not None:
        return calendar
    try:
        minutes = parse_duration(text, weeks=False)
    except ValueError as exc:
        raise ValueError(
            f"interval {text!r} is not one of {', '.join(_CALENDAR)} "
            "nor a duration such as '15m', '15 minutes', '2h' or '3d'"
        ) from exc
    if minutes % _DAY == 0:
        return Interval(f"{minutes // _DAY}d", "%Y-%m-%d", None, minutes + 120)
    return Interval(f"{minutes}m", "%Y-%m-%dT%H:%M", minutes, minutes + 120)


# ---------------------------------------------------------------------------------------------
# Timestamps

#: ISO-8601 layouts tried in order, after normalising the separator and the UTC designator
_ISO_AWARE = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
_ISO_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


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
        return _localize(values, zone) if dtype.time_zone is None else _to_zone(values, zone)
    if dtype == pl.Date:
        return _localize(series.cast(pl.Datetime("us")), zone)
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
        text = (
            series.str.strip_chars()
            .str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]\s*", "${1}T")
            .str.replace(r"\s*[zZ]$", "Z")
            .str.replace(r"\s+([+-]\d{2}(?::?\d{2})?)$", "${1}")
        )
        aware = pl.select(
            pl.coalesce(
                [
                    pl.lit(text).str.strptime(pl.Datetime("us", "UTC"), f, strict=False)
                    for f in _ISO_AWARE
                ]
            )
        ).to_series()
        naive = pl.select(
            pl.coalesce(
                [pl.lit(text).str.strptime(pl.Datetime("us"), f, strict=False) for f in _ISO_NAIVE]
            )
        ).to_series()
        _require_parsed(
            series,
            aware.is_not_null() | naive.is_not_null(),
            column,
            "an ISO-8601 timestamp such as '2021-01-04T10:00:00Z' (or set timestamp_format)",
        )
        out = _to_zone(aware, zone)
        return out.zip_with(out.is_not_null(), _localize(naive, zone)).rename(column)
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
    return _localize(parsed, zone) if dtype.time_zone is None else _to_zone(parsed, zone)


def _to_zone(values: pl.Series, zone: str | None) -> pl.Series:
    if zone is None:
        return values.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return values.dt.convert_time_zone(zone)


def _localize(values: pl.Series, zone: str | None) -> pl.Series:
    """Naive wall-clock values as instants in ``zone`` (the earlier one when ambiguous).

    A midnight that a DST change skips (America/Sao_Paulo, 2018-11-04) means the start of
    that day; any other time in a DST gap raises InputError.
    """
    if zone is None:
        return values
    local = values.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    gap = values.is_not_null() & local.is_null()
    if gap.any():
        midnight = gap & (values.dt.time() == dt.time())
        noon = (values + dt.timedelta(hours=12)).dt.replace_time_zone(zone, ambiguous="earliest")
        local = local.zip_with(~midnight, noon.dt.truncate("1d"))
        bad = values.filter(gap & ~midnight)
        if bad.len():
            raise InputError(
                f"timestamp {bad[0]} in column {values.name!r} does not exist in time zone "
                f"{zone} (it falls in a daylight-saving gap); give it a UTC offset",
                column=values.name,
                value=str(bad[0]),
                timezone=zone,
            )
    return local


# ---------------------------------------------------------------------------------------------
# Config


class Rolling(PluginConfig):
    """A rolling window over each target series."""

    #: a number of rows (buckets), or a duration such as ``"7d"`` over ``bucket``
    window: int | str
    function: Literal["mean", "sum", "min", "max", "std"] = "mean"
    #: values needed for a result; default: the window (rows) or 1 (durations)
    min_periods: int | None = Field(default=None, ge=1)

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"window must be at least 1 row, got {value}")
        else:
            parse_duration(value)
        return value


class Decompose(PluginConfig):
    """Classical seasonal decomposition with a period in buckets."""

    period: int = Field(ge=2)
    model: Literal["additive", "multiplicative"] = "additive"


class Anomalies(PluginConfig):
    """Anomaly flags by rolling or whole-series z-score or IQR fences."""

    method: Literal["zscore", "iqr"] = "zscore"
    #: buckets before the current one the statistics come from; None: the whole series
    window: int | None = Field(default=None, ge=2)
    #: z-score threshold (zscore)
    threshold: float = Field(default=3.0, gt=0)
    #: IQR multiplier of the fences (iqr)
    k: float = Field(default=1.5, gt=0)


class Forecast(PluginConfig):
    """A forecast of ``horizon`` buckets, scored on a hold-out of the last buckets."""

    method: Literal["seasonal_naive", "exp_smoothing"] = "seasonal_naive"
    horizon: int = Field(ge=1)
    #: seasonal_naive: repeat the last ``season_length`` buckets (1 = naive forecast)
    season_length: int = Field(default=1, ge=1)
    #: exp_smoothing: the smoothing factor; None chooses it per series (least squares)
    alpha: float | None = Field(default=None, gt=0, le=1)
    #: buckets held out for MAE/RMSE/MAPE; None: as many as ``horizon``; 0: no scoring
    holdout: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Forecast:
        if self.method == "seasonal_naive" and self.alpha is not None:
            raise ValueError("alpha applies to method 'exp_smoothing' only")
        if self.method == "exp_smoothing" and self.season_length != 1:
            raise ValueError("season_length applies to method 'seasonal_naive' only")
        return self

    @property
    def holdout_buckets(self) -> int:
        return self.horizon if self.holdout is None else self.holdout


class TimeSeriesConfig(PluginConfig):
    """What to resample, how, and which features to add per series."""

    type: Literal["time_series"] = "time_series"
    time_column: str = Field(min_length=1)
    value_columns: list[str] = Field(min_length=1)
    operations: list[Operation] = Field(default_factory=lambda: list(_MEAN), min_length=1)
    #: hourly, daily, weekly (ISO), monthly, quarterly, yearly, or a duration ("15m", "3d")
    interval: str
    #: keys of separate series; empty: one series
    group_by: list[str] = Field(default_factory=list)
    #: IANA zone the buckets follow (local midnight, DST); see the module doc
    timezone: str | None = None
    #: strptime format of a string (or numeric) time column; default: ISO-8601
    timestamp_format: str | None = None
    #: unit of epoch numbers; None infers per value (|v| < 1e11 seconds, else milliseconds)
    epoch_unit: Literal["s", "ms"] | None = None
    fill_gaps: Literal["none", "null", "zero", "forward"] = "none"
    #: aggregate columns ({value}_{operation}) the features apply to; None: all
    targets: list[str] | None = Field(default=None, min_length=1)
    rolling: Rolling | None = None
    transforms: list[Transform] = Field(default_factory=list)
    periods: int = Field(default=1, ge=1)
    decompose: Decompose | None = None
    anomalies: Anomalies | None = None
    forecast: Forecast | None = None

    @model_validator(mode="before")
    @classmethod
    def _seed_aliases(cls, data: Any) -> Any:
        """Accept a single ``value_column`` and ``operation`` ("average" = mean)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for single, plural in (("value_column", "value_columns"), ("operation", "operations")):
            if single in data:
                if plural in data:
                    raise ValueError(f"give either {single!r} or {plural!r}, not both")
                value = data.pop(single)
                data[plural] = [value]
        if "operations" in data and isinstance(data["operations"], list):
            data["operations"] = ["mean" if op == "average" else op for op in data["operations"]]
        return data

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: str) -> str:
        parse_interval(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> TimeSeriesConfig:
        for name, values in (
            ("value_columns", self.value_columns),
            ("operations", self.operations),
            ("group_by", self.group_by),
            ("transforms", self.transforms),
            ("targets", self.targets or []),
        ):
            duplicates = sorted({str(v) for v in values if list(values).count(v) > 1})
            if duplicates:
                raise ValueError(f"{name} lists {duplicates[0]!r} more than once")
        if self.time_column in self.value_columns or self.time_column in self.group_by:
            raise ValueError(f"time_column {self.time_column!r} is also a value or group column")
        if self.timestamp_format is not None and self.epoch_unit is not None:
            raise ValueError("give either timestamp_format or epoch_unit, not both")
        aggregates = self.aggregate_columns
        for target in self.targets or []:
            if target not in aggregates:
                raise ValueError(
                    f"target {target!r} is not an aggregate column; choose from {aggregates}"
                )
        seen: set[str] = set()
        for name in self.output_columns:
            if name in seen:
                raise ValueError(f"output column {name!r} would appear twice; rename a column")
            seen.add(name)
        return self

    @property
    def aggregate_columns(self) -> list[str]:
        """``{value}_{operation}`` for every value column and operation, in that order."""
        return [f"{v}_{op}" for v in self.value_columns for op in self.operations]

    @property
    def target_columns(self) -> list[str]:
        return list(self.targets) if self.targets is not None else self.aggregate_columns

    @property
    def feature_columns(self) -> list[str]:
        """Names of the rolling, transform, decomposition and anomaly columns, in order."""
        names: list[str] = []
        targets = self.target_columns
        if self.rolling is not None:
            names += [f"{c}_rolling_{self.rolling.function}" for c in targets]
        names += [f"{c}_{t}" for t in self.transforms for c in targets]
        if self.decompose is not None:
            names += [f"{c}_{part}" for c in targets for part in ("trend", "seasonal", "resid")]
        if self.anomalies is not None:
            names += [f"{c}_anomaly" for c in targets]
        return names

    @property
    def output_columns(self) -> list[str]:
        return [
            *self.group_by,
            "bucket",
            "bucket_label",
            *self.aggregate_columns,
            *(["filled"] if self.fill_gaps != "none" else []),
            *self.feature_columns,
            *(["kind"] if self.forecast is not None else []),
        ]


# ---------------------------------------------------------------------------------------------
# Kernel

#: the internal key of the single series when there are no group keys
_SERIES = f"{_P}series"


class TimeSeries(Analysis[TimeSeriesConfig]):
    """Resampled series per group, with gaps filled, features and a forecast on request."""

    name: ClassVar[str] = "time_series"
    Config = TimeSeriesConfig
    mergeable: ClassVar[bool] = True

    def output_columns(self) -> list[str]:
        return self.config.output_columns

    @property
    def interval(self) -> Interval:
        return parse_interval(self.config.interval)

    @property
    def keys(self) -> list[str]:
        """The columns that tell series apart after resampling (an internal one without keys)."""
        return list(self.config.group_by) or [_SERIES]

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

    def _plan(self) -> list[tuple[str, pl.Expr, pl.Expr]]:
        """Columns of a partial table: (name, aggregate of rows, merge of partial rows).

        Value column ``j`` is ``{_P}v{j}`` and the parsed timestamp ``{_P}t`` in the rows.
        """
        ops, t = set(self.config.operations), pl.col(f"{_P}t")
        plan: list[tuple[str, pl.Expr, pl.Expr]] = []
        for j in range(len(self.config.value_columns)):
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
        values = [
            (pl.col(v).cast(pl.Float64) if df.schema[v] == pl.Null else pl.col(v)).alias(
                f"{_P}v{j}"
            )
            for j, v in enumerate(c.value_columns)
        ]
        table = (
            df.lazy()
            .select(*c.group_by, *values, pl.lit(stamps).alias(f"{_P}t"))
            .filter(pl.col(f"{_P}t").is_not_null())
            .with_columns(pl.col(f"{_P}t").dt.truncate(self.interval.every).alias("bucket"))
            .group_by([*c.group_by, "bucket"])
            .agg(expr.alias(name) for name, expr, _ in self._plan())
            .collect()
        )
        return {
            "table": to_arrow(table),
            "rows": df.height,
            "rows_without_timestamp": stamps.null_count(),
        }

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state of the same shape holding the merge of ``partials`` (associative)."""
        if not partials:
            raise ValueError("merge needs at least one partial state")
        stacked = stack([p["table"] for p in partials])
        merged = stacked.group_by([*self.config.group_by, "bucket"]).agg(
            merge.alias(name) for name, _, merge in self._plan()
        )
        return {
            "table": to_arrow(merged.select(stacked.columns)),
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
        aggregates = [
            _final(op, j).alias(f"{v}_{op}")
            for j, v in enumerate(c.value_columns)
            for op in c.operations
        ]
        table = as_frame(state["table"])
        if not c.group_by:
            table = table.with_columns(pl.lit(0, pl.Int8).alias(_SERIES))
        table = table.select(*keys, "bucket", *aggregates).sort([*keys, "bucket"], nulls_last=True)
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
            table = self._fill_gaps(table)
            summary["filled_buckets"] = int(table.get_column("filled").sum())
            summary["buckets"] = table.height
        table = self._features(table, summary)
        if c.forecast is not None:
            table = self._forecast(table, c.forecast, summary)
        table = table.with_columns(_label(pl.col("bucket"), self.interval).alias("bucket_label"))
        return AnalysisResult(
            kind="time_series", table=to_arrow(table.select(c.output_columns)), summary=summary
        )

    def _buckets_between(self, spans: pl.DataFrame, dtype: pl.DataType) -> pl.DataFrame:
        """Every bucket from ``start`` to ``end`` of each series (columns: keys, ``bucket``).

        A grid of instants no coarser than the shortest bucket meets every bucket, so the
        truncated grid holds exactly the buckets rows would fall in, DST changes included.
        """
        assert isinstance(dtype, pl.Datetime)
        zone, keys = dtype.time_zone, self.keys
        step = self.interval.probe_minutes(zone is not None) * 60_000_000
        spans = spans.select(
            *keys, pl.col("start").dt.epoch("us").alias("start"), pl.col("end").dt.epoch("us")
        )
        total = spans.select(((pl.col("end") - pl.col("start")) // step + 1).sum()).item()
        if total is not None and total > MAX_BUCKETS:
            raise InputError(
                f"interval {self.config.interval!r} gives more than {MAX_BUCKETS:,} buckets "
                "between the first and last timestamps; choose a coarser interval",
                field="interval",
                value=self.config.interval,
            )
        instants = pl.from_epoch(pl.col("bucket"), time_unit="us")
        if zone is not None:
            instants = instants.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
        return (
            spans.select(*keys, pl.int_ranges("start", pl.col("end") + 1, step).alias("bucket"))
            .explode("bucket")
            .drop_nulls("bucket")
            .select(*keys, instants.dt.truncate(self.interval.every).alias("bucket"))
            .unique()
        )

    def _fill_gaps(self, table: pl.DataFrame) -> pl.DataFrame:
        """Insert the missing buckets of each series, flagged in ``filled``."""
        c, keys = self.config, self.keys
        spans = table.group_by(keys).agg(
            pl.col("bucket").min().alias("start"), pl.col("bucket").max().alias("end")
        )
        grid = self._buckets_between(spans, table.schema["bucket"])
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

    # -- features -----------------------------------------------------------------------------

    def _features(self, table: pl.DataFrame, summary: dict[str, Any]) -> pl.DataFrame:
        c, keys = self.config, self.keys
        targets = c.target_columns
        exprs: list[pl.Expr] = []
        if c.rolling is not None:
            name = f"rolling_{c.rolling.function}"
            exprs += [
                _rolling(pl.col(t), c.rolling).over(keys).alias(f"{t}_{name}") for t in targets
            ]
        for transform in c.transforms:
            for t in targets:
                col = pl.col(t)
                if transform == "lag":
                    expr = col.shift(c.periods)
                elif transform == "diff":
                    expr = col.diff(c.periods)
                else:
                    expr = col.pct_change(c.periods)
                exprs.append(expr.over(keys).alias(f"{t}_{transform}"))
        table = table.with_columns(exprs)
        if c.decompose is not None:
            table = self._decompose(table, c.decompose, summary)
        if c.anomalies is not None:
            table = table.with_columns(
                self._anomaly(pl.col(t), c.anomalies).alias(f"{t}_anomaly") for t in targets
            )
            summary["anomalies"] = {t: int(table.get_column(f"{t}_anomaly").sum()) for t in targets}
        return table

    def _decompose(
        self, table: pl.DataFrame, spec: Decompose, summary: dict[str, Any]
    ) -> pl.DataFrame:
        """Trend, seasonal and residual columns (statsmodels' classical decomposition)."""
        keys, p = self.keys, spec.period
        multiplicative = spec.model == "multiplicative"
        # an even period takes a 2 x period moving average: half weights at both ends
        window, weights = (p, None) if p % 2 else (p + 1, [0.5, *([1.0] * (p - 1)), 0.5])
        row, pos, ok = f"{_P}row", f"{_P}pos", f"{_P}ok"
        table = table.with_columns(pl.int_range(pl.len()).over(keys).alias(row)).with_columns(
            (pl.col(row) % p).alias(pos), (pl.len().over(keys) >= 2 * p).alias(ok)
        )
        for t in self.config.target_columns:
            if multiplicative:
                bad = table.filter(pl.col(t) <= 0)
                if bad.height:
                    raise InputError(
                        f"multiplicative decomposition needs positive values; {t!r} is "
                        f"{bad.get_column(t)[0]} at {bad.get_column('bucket')[0]} "
                        "(use model 'additive')",
                        column=t,
                        field="decompose.model",
                    )
            y, trend, index = pl.col(t).cast(pl.Float64), pl.col(f"{t}_trend"), pl.col(f"{_P}index")
            table = table.with_columns(
                y.rolling_mean(window, weights, min_samples=window, center=True)
                .over(keys)
                .alias(f"{t}_trend")
            )
            detrended = y / trend if multiplicative else y - trend
            table = table.with_columns(detrended.mean().over([*keys, pos]).alias(f"{_P}index"))
            # centre the p seasonal indices (each position once) to mean 0 or 1
            level = pl.when(pl.col(row) < p).then(index).mean().over(keys)
            seasonal = index / level if multiplicative else index - level
            table = table.with_columns(seasonal.alias(f"{t}_seasonal"))
            seasonal = pl.col(f"{t}_seasonal")
            resid = y / (trend * seasonal) if multiplicative else y - trend - seasonal
            table = table.with_columns(resid.alias(f"{t}_resid")).with_columns(
                pl.when(ok).then(pl.col(f"{t}_{part}")).alias(f"{t}_{part}")
                for part in ("trend", "seasonal", "resid")
            )
        short = table.filter(~pl.col(ok))
        summary["decompose"] = {
            "period": p,
            "model": spec.model,
            "short_series": short.select(keys).n_unique() if short.height else 0,
        }
        return table.drop(row, pos, ok, f"{_P}index", strict=False)

    def _anomaly(self, y: pl.Expr, spec: Anomalies) -> pl.Expr:
        """True where a value lies beyond the z-score threshold or the IQR fences."""
        keys, w = self.keys, spec.window
        x = y.cast(pl.Float64)
        history = x.shift(1)
        if spec.method == "zscore":
            if w is None:
                mean, std = x.mean(), x.std()
            else:
                mean = history.rolling_mean(w, min_samples=w)
                std = history.rolling_std(w, min_samples=w)
            mean, std = mean.over(keys), std.over(keys)
            beyond = (x - mean).abs() > spec.threshold * std
            flag = pl.when(std == 0).then(x != mean).otherwise(beyond)
            return pl.when(x.is_not_null() & std.is_not_null()).then(flag)
        if w is None:
            q1, q3 = x.quantile(0.25, "linear"), x.quantile(0.75, "linear")
        else:
            q1 = history.rolling_quantile(0.25, "linear", w, min_samples=w)
            q3 = history.rolling_quantile(0.75, "linear", w, min_samples=w)
        q1, q3 = q1.over(keys), q3.over(keys)
        fence = spec.k * (q3 - q1)
        return (x < q1 - fence) | (x > q3 + fence)

    # -- forecast -----------------------------------------------------------------------------

    def _forecast(
        self, table: pl.DataFrame, spec: Forecast, summary: dict[str, Any]
    ) -> pl.DataFrame:
        """Score on the hold-out, then append ``horizon`` forecast rows per series."""
        keys, holdout = self.keys, spec.holdout_buckets
        row, n = f"{_P}row", f"{_P}n"
        numbered = table.with_columns(
            pl.int_range(pl.len()).over(keys).alias(row),
            pl.len().over(keys).cast(pl.Int64).alias(n),
        )
        future = self._future_buckets(table, spec.horizon)
        scores: list[pl.DataFrame] = []
        for t in self.config.target_columns:
            series = numbered.select(*keys, row, n, pl.col(t).cast(pl.Float64).alias("y"))
            if holdout > 0:
                cut = pl.col(n) - holdout
                fit = series.filter(pl.col(row) < cut)
                test = series.filter(pl.col(row) >= cut).with_columns(
                    (pl.col(row) - cut).alias("step")
                )
                predicted, alphas = self._predict(fit, test.select(*keys, "step"), spec)
                scores.append(_scores(test, predicted, alphas, keys, t))
            predicted, _ = self._predict(series, future.select(*keys, "step"), spec)
            future = future.join(
                predicted.rename({"forecast": t}), on=[*keys, "step"], how="left", nulls_equal=True
            )
        info: dict[str, Any] = {"method": spec.method, "horizon": spec.horizon, "holdout": holdout}
        if spec.method == "seasonal_naive":
            info["season_length"] = spec.season_length
        else:
            info["alpha"] = spec.alpha
        if scores:
            metrics = pl.concat(scores, how="vertical_relaxed").drop(_SERIES, strict=False)
            info["metrics"] = json.loads(metrics.write_json())
        summary["forecast"] = info
        rows = future.drop("step").with_columns(pl.lit("forecast").alias("kind"))
        actual = table.with_columns(pl.lit("actual").alias("kind"))
        return pl.concat([actual, rows], how="diagonal_relaxed").sort(
            [*keys, "bucket"], nulls_last=True
        )

    def _future_buckets(self, table: pl.DataFrame, horizon: int) -> pl.DataFrame:
        """The ``horizon`` buckets after the last one of each series (keys, bucket, step)."""
        keys = self.keys
        last = table.group_by(keys).agg(pl.col("bucket").max().alias("last"))
        reach = pl.duration(minutes=self.interval.longest * horizon)
        spans = last.select(
            *keys, pl.col("last").alias("start"), (pl.col("last") + reach).alias("end")
        )
        grid = self._buckets_between(spans, table.schema["bucket"])
        return (
            grid.join(last, on=keys, nulls_equal=True)
            .filter(pl.col("bucket") > pl.col("last"))
            .sort([*keys, "bucket"], nulls_last=True)
            .with_columns(pl.int_range(pl.len()).over(keys).alias("step"))
            .filter(pl.col("step") < horizon)
            .drop("last")
        )

    def _predict(
        self, fit: pl.DataFrame, steps: pl.DataFrame, spec: Forecast
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Forecasts (keys, step, forecast) from each series of ``fit`` (keys, row, n, y).

        ``step`` 0 is the first bucket after the fit data. Returns the alphas used by
        exponential smoothing too (None for seasonal naive).
        """
        keys, row = self.keys, f"{_P}row"
        fit = fit.sort([*keys, row], nulls_last=True)
        length = fit.group_by(keys).agg(pl.len().cast(pl.Int64).alias("length"))
        if spec.method == "seasonal_naive":
            m = spec.season_length
            source = (
                steps.join(length, on=keys, how="left", nulls_equal=True)
                .with_columns((pl.col("length") - m + pl.col("step") % m).alias(row))
                .join(fit.select(*keys, row, "y"), on=[*keys, row], how="left", nulls_equal=True)
            )
            return source.select(*keys, "step", pl.col("y").alias("forecast")), None
        alphas = self._alphas(fit, spec)
        levels = []
        for (alpha,), part in fit.join(alphas, on=keys, nulls_equal=True).group_by("alpha"):
            levels.append(
                part.sort([*keys, row], nulls_last=True)
                .group_by(keys)
                .agg(_ses_level(pl.col("y"), float(alpha)).last().alias("forecast"))  # type: ignore[arg-type]
            )
        level = (
            pl.concat(levels)
            if levels
            else pl.DataFrame(schema={**fit.select(keys).schema, "forecast": pl.Float64})
        )
        forecast = steps.join(level, on=keys, how="left", nulls_equal=True)
        return forecast.select(*keys, "step", "forecast"), alphas

    def _alphas(self, fit: pl.DataFrame, spec: Forecast) -> pl.DataFrame:
        """The smoothing factor per series: ``spec.alpha``, else the least one-step SSE."""
        keys, y = self.keys, pl.col("y")
        if spec.alpha is not None:
            return fit.select(keys).unique().with_columns(pl.lit(spec.alpha).alias("alpha"))
        sse = {f"{alpha}": ((y - _ses_level(y, alpha).shift(1)) ** 2).sum() for alpha in ALPHA_GRID}
        scores = fit.group_by(keys).agg(expr.alias(name) for name, expr in sse.items())
        return (
            scores.unpivot(index=keys, variable_name="alpha", value_name="sse")
            .with_columns(pl.col("alpha").cast(pl.Float64))
            .sort([*keys, "sse", "alpha"], nulls_last=True)
            .group_by(keys, maintain_order=True)
            .agg(pl.col("alpha").first())
        )


def _ses_level(y: pl.Expr, alpha: float) -> pl.Expr:
    """Simple exponential smoothing levels (started at the first value, carried over nulls)."""
    return y.ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True).forward_fill()


def _scores(
    test: pl.DataFrame,
    predicted: pl.DataFrame,
    alphas: pl.DataFrame | None,
    keys: list[str],
    column: str,
) -> pl.DataFrame:
    """MAE, RMSE and MAPE (percent, over non-zero actuals) per series on the hold-out."""
    both = test.join(predicted, on=[*keys, "step"], how="left", nulls_equal=True)
    error = pl.col("y") - pl.col("forecast")
    scored = error.is_not_null()
    ape = pl.when(scored & (pl.col("y") != 0)).then(error.abs() / pl.col("y").abs() * 100)
    out = both.group_by(keys).agg(
        pl.lit(column).alias("column"),
        scored.sum().cast(pl.Int64).alias("n"),
        error.abs().mean().alias("mae"),
        (error**2).mean().sqrt().alias("rmse"),
        ape.mean().alias("mape"),
    )
    if alphas is not None:
        out = out.join(alphas, on=keys, how="left", nulls_equal=True)
    return out.sort(keys, nulls_last=True)


def _rolling(col: pl.Expr, spec: Rolling) -> pl.Expr:
    fn = spec.function
    if isinstance(spec.window, int):
        return getattr(col, f"rolling_{fn}")(spec.window, min_samples=spec.min_periods)
    window = _polars_duration(parse_duration(spec.window))
    return getattr(col, f"rolling_{fn}_by")("bucket", window, min_samples=spec.min_periods or 1)


def _final(op: str, j: int) -> pl.Expr:
    """An aggregate from the columns of a merged partial table (value column number ``j``)."""
    if op == "mean":
        n = pl.col(f"{_P}n{j}")
        return pl.when(n > 0).then(pl.col(f"{_P}sum{j}").cast(pl.Float64) / n)
    return pl.col(f"{_P}{'n' if op == 'count' else op}{j}")


def _label(bucket: pl.Expr, interval: Interval) -> pl.Expr:
    if interval.label == "quarter":
        return pl.format("{}-Q{}", bucket.dt.year(), bucket.dt.quarter())
    return bucket.dt.strftime(interval.label)


def _zone_of(table: pl.DataFrame) -> str | None:
    dtype = table.schema["bucket"]
    return dtype.time_zone if isinstance(dtype, pl.Datetime) else None


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
