"""Column type conversions; strings are parsed as numbers, booleans, dates or ISO-8601."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field

from raysight.analyses.columns import require_columns
from raysight.analyses.preprocess.checks import as_text, first_failure, is_text, polars_message
from raysight.analyses.temporal import parse_iso_datetime
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["Cast", "CastConfig", "CastType"]


CastType = Literal["int64", "int32", "float64", "float32", "string", "bool", "date", "datetime"]
_CAST_DTYPES: dict[str, pl.DataType] = {
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "float64": pl.Float64(),
    "float32": pl.Float32(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}


class CastConfig(PluginConfig):
    """Convert columns to other types."""

    op: Literal["cast"] = "cast"
    #: column -> int64, int32, float64, float32, string, bool, date or datetime
    columns: dict[str, CastType] = Field(min_length=1)
    #: True: a value that cannot be converted is an InputError; False: it becomes null
    strict: bool = True


class Cast(Preprocessor[CastConfig]):
    """The table with the chosen columns converted.

    Conversions follow Polars ``cast`` (floats to integers truncate toward zero; an integer
    that does not fit, NaN or infinity into an integer fails; numbers to bool are ``x != 0``;
    dates to datetimes are midnight), except from strings, which Polars 2 does not cast to
    dates or booleans: ``bool`` accepts ``true``/``false``/``1``/``0`` (any case), ``date``
    accepts ``YYYY-MM-DD``, ``datetime`` accepts ISO-8601 (see :mod:`raysight.analyses.temporal`;
    an offset is converted to UTC). ``datetime`` is microseconds, keeping the time zone of a
    datetime column. A value that cannot be converted raises InputError naming the column and
    the value, or becomes null with ``strict: false``.
    """

    name: ClassVar[str] = "cast"
    Config = CastConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        require_columns(df.columns, self.config.columns)
        converted = []
        for c, t in self.config.columns.items():
            dtype = df.schema[c]
            try:
                series = df.select(self._expr(c, dtype, t).alias(c)).to_series()
            except pl.exceptions.PolarsError as exc:
                raise InputError(
                    f"cannot cast column {c!r} ({dtype}) to {t}: {polars_message(exc)}",
                    column=c,
                    dtype=str(dtype),
                    to=t,
                ) from None
            if self.config.strict:
                first_failure(c, df.get_column(c), series, f"be cast to {t}", to=t)
            converted.append(series)
        return df.with_columns(converted)

    @staticmethod
    def _expr(column: str, dtype: pl.DataType, target: str) -> pl.Expr:
        if is_text(dtype):
            text = as_text(column, dtype)
            if target == "bool":
                lower = text.str.to_lowercase()
                return (
                    pl.when(lower.is_in(["true", "1"]))
                    .then(True)
                    .when(lower.is_in(["false", "0"]))
                    .then(False)
                    .otherwise(None)
                )
            if target == "date":
                return text.str.to_date("%Y-%m-%d", strict=False)
            if target == "datetime":
                return parse_iso_datetime(text)
            return text.cast(_CAST_DTYPES[target], strict=False)
        if target == "datetime" and isinstance(dtype, pl.Datetime):
            return pl.col(column).cast(pl.Datetime("us", dtype.time_zone), strict=False)
        return pl.col(column).cast(_CAST_DTYPES[target], strict=False)
