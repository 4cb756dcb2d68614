"""Calendar parts of date, datetime and ISO-8601 string columns."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import polars as pl
from pydantic import Field

from raysight.analyses.columns import ListedOnce, require_columns
from raysight.analyses.preprocess.checks import as_text, first_failure, is_text, require_new
from raysight.analyses.temporal import parse_iso_datetime
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["DateExtraction", "DateExtractionConfig", "DatePart"]


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
    parts: Annotated[list[DatePart], ListedOnce] = Field(
        default_factory=lambda: [*_DEFAULT_PARTS], min_length=1)
    #: True: a string that is not ISO-8601 is an InputError; False: its parts are null
    strict: bool = True


class DateExtraction(Preprocessor[DateExtractionConfig]):
    """The table with ``{column}_{part}`` added for each part.

    Parts as Polars ``dt``: year (Int32), month, day, weekday (ISO: Monday 1 … Sunday 7), hour,
    minute, quarter, iso_week (ISO 8601 week number; early January may be week 52/53 of the
    previous ISO year) (Int8) and day_of_year (Int16). A date has hour and minute 0; a
    datetime with a time zone gives its local wall-clock parts; strings are parsed with
    :func:`raysight.analyses.temporal.parse_iso_datetime` (offsets converted to UTC). A null
    stays null.
    """

    name: ClassVar[str] = "date_extraction"
    Config = DateExtractionConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        column = self.config.column
        require_columns(df.columns, [column])
        names = [f"{column}_{p}" for p in self.config.parts]
        require_new("date_extraction", df.columns, names)
        dtype = df.schema[column]
        if isinstance(dtype, pl.Datetime):
            value = pl.col(column)
        elif dtype in (pl.Date, pl.Null):
            value = pl.col(column).cast(pl.Datetime("us"))
        elif is_text(dtype):
            value = parse_iso_datetime(as_text(column, dtype))
            if self.config.strict:
                parsed = df.select(value).to_series()
                what = "be parsed as an ISO-8601 date"
                first_failure(column, df.get_column(column), parsed, what)
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
