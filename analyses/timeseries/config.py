"""What a time series resamples and which features it adds per series, and its output columns.

Output columns, in order: group keys, ``bucket``, ``bucket_label``, aggregates (values in
order, operations in order), ``filled`` (with gap filling), rolling columns, transform columns
(per transform, targets in order), ``_trend``/``_seasonal``/``_resid`` per target, anomaly
columns, ``kind`` (with a forecast). A single ``value_column`` and ``operation``
(``"average"`` = mean) are accepted as aliases. An empty input gives an
empty table with these columns.
"""

from __future__ import annotations

import zoneinfo
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raysight.analyses.columns import listed_once
from raysight.analyses.temporal import Interval, parse_duration, parse_interval
from raysight.plugins import PluginConfig

__all__ = [
    "PREFIX",
    "SERIES",
    "Anomalies",
    "Decompose",
    "Forecast",
    "Operation",
    "Rolling",
    "TimeSeriesConfig",
    "Transform",
]

Operation = Literal["sum", "mean", "min", "max", "count", "first", "last"]
Transform = Literal["lag", "diff", "pct_change"]
_MEAN: tuple[Operation, ...] = ("mean",)

#: prefix of internal columns (partial tables, helpers)
PREFIX = "__rs_"
#: the internal key of the single series when there are no group keys
SERIES = f"{PREFIX}series"


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
        listed_once(self.value_columns, "value_columns")
        listed_once(self.operations, "operations")
        listed_once(self.group_by, "group_by")
        listed_once(self.transforms, "transforms")
        listed_once(self.targets, "targets")
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
    def bucket_interval(self) -> Interval:
        """The bucket rule of ``interval``."""
        return parse_interval(self.interval)

    @property
    def series_keys(self) -> list[str]:
        """The columns that tell series apart after resampling (an internal one without keys)."""
        return list(self.group_by) or [SERIES]

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
