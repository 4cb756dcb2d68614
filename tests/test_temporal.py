"""Specification of ISO-8601 parsing (raysight.analyses.temporal) and of its two users.

``date_extraction`` and ``cast`` (preprocessing) and the time-series kernel read ISO-8601
strings with the one parser of ``raysight.analyses.temporal``, so they accept the same strings
and read them the same way. The reference is Python's ``datetime.fromisoformat`` (offsets
converted to UTC), on the string as written or, for the spellings it does not take but raysight
does (surrounding spaces, a lower-case ``z``, a space before the offset), on its canonical form.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from raysight.analyses.preprocess.cast import Cast, CastConfig
from raysight.analyses.preprocess.dates import DateExtraction, DateExtractionConfig
from raysight.analyses.temporal import parse_iso, parse_iso_datetime
from raysight.analyses.timeseries.analysis import TimeSeries
from raysight.analyses.timeseries.timestamps import parse_timestamps
from raysight.errors import InputError

#: string -> the spelling Python's fromisoformat reads the same way
ACCEPTED = {
    "2021-01-04": "2021-01-04",
    "2024-02-29": "2024-02-29",
    "2021-01-04T10:11": "2021-01-04T10:11",
    "2021-01-04T10:11:12": "2021-01-04T10:11:12",
    "2021-01-04 10:11:12": "2021-01-04 10:11:12",
    "2021-01-04t10:11:12": "2021-01-04T10:11:12",
    "2021-01-04T10:11:12.5": "2021-01-04T10:11:12.5",
    "2021-01-04T10:11:12.123456": "2021-01-04T10:11:12.123456",
    "2021-01-04T10:11:12Z": "2021-01-04T10:11:12Z",
    "2021-01-04T10:11:12z": "2021-01-04T10:11:12Z",
    "2021-01-04T10:11:12.25Z": "2021-01-04T10:11:12.25Z",
    "2021-01-04T10:11Z": "2021-01-04T10:11Z",
    "2021-01-04T10:11:12+02:00": "2021-01-04T10:11:12+02:00",
    "2021-01-04T00:30:00+05:30": "2021-01-04T00:30:00+05:30",
    "2021-01-04T23:30:00-08:00": "2021-01-04T23:30:00-08:00",
    "2021-01-04T10:11:12+0200": "2021-01-04T10:11:12+02:00",
    "2021-01-04T10:11:12+02": "2021-01-04T10:11:12+02:00",
    "2021-01-04 10:11:12 +02:00": "2021-01-04T10:11:12+02:00",
    "2021-01-04T10:11:12 Z": "2021-01-04T10:11:12Z",
    "  2021-01-04T10:11:12  ": "2021-01-04T10:11:12",
    "1900-03-01T00:00:00+01:00": "1900-03-01T00:00:00+01:00",
}
#: not ISO-8601 for raysight (the last ones are for Python, in other layouts than raysight's)
REJECTED = [
    "yesterday",
    "",
    "04/01/2021",
    "2021-02-30",
    "2021-01-04T25:00",
    "2021-01-04T10:00:00.",
    "2021-01-04Z",
    "2021-01-04T10:00:00+24:00",
    "20210104",
    "2021-W01-1",
    "2021-01-04T10",
    "2021-01-04T10:00:00,5",
    "2021-01-04T10:00:00+02:00:00",
    "2021-01-04+01:00",
]


def reference(text: str) -> dt.datetime:
    """fromisoformat of the canonical spelling, an offset converted to naive UTC."""
    value = dt.datetime.fromisoformat(ACCEPTED[text])
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def strings(values: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"t": [None, *values]}, schema={"t": pl.String})


def time_series(df: pl.DataFrame, **options) -> pl.DataFrame:
    kernel = TimeSeries(
        TimeSeries.Config(time_column="t", value_columns=["v"], interval="1m", **options)
    )
    frame = pl.from_arrow(kernel.run(df.with_columns(pl.lit(1.0).alias("v"))).table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_the_rejected_strings_are_not_iso_8601_for_raysight_only_where_python_agrees():
    python_takes = {"20210104", "2021-W01-1", "2021-01-04T10", "2021-01-04T10:00:00,5",
                    "2021-01-04T10:00:00+02:00:00", "2021-01-04+01:00"}
    for text in REJECTED:
        try:
            dt.datetime.fromisoformat(text)
        except ValueError:
            assert text not in python_takes
        else:
            assert text in python_takes


def test_parse_iso_datetime_equals_fromisoformat_for_every_accepted_spelling():
    parsed = strings(list(ACCEPTED)).select(parse_iso_datetime(pl.col("t"))).to_series()
    assert parsed.dtype == pl.Datetime("us")
    assert parsed.to_list() == [None, *(reference(s) for s in ACCEPTED)]


def test_parse_iso_tells_instants_with_an_offset_from_wall_clock_times():
    instant, wall_clock = parse_iso(pl.col("t"))
    out = strings(list(ACCEPTED)).select(instant.alias("instant"), wall_clock.alias("wall"))
    assert out.schema == pl.Schema({"instant": pl.Datetime("us", "UTC"), "wall": pl.Datetime("us")})
    for text, (at, wall) in zip(ACCEPTED, out.rows()[1:], strict=True):
        has_offset = dt.datetime.fromisoformat(ACCEPTED[text]).tzinfo is not None
        assert (at is not None, wall is not None) == (has_offset, not has_offset), text


def test_time_series_and_preprocessing_read_every_accepted_string_the_same_way():
    df = strings(list(ACCEPTED))
    expected = [None, *(reference(s) for s in ACCEPTED)]
    stamps = parse_timestamps(df.get_column("t"), zone=None)
    cast = Cast(CastConfig(columns={"t": "datetime"})).apply(df).get_column("t")
    assert stamps.dtype == cast.dtype == pl.Datetime("us")
    assert stamps.to_list() == cast.to_list() == expected
    parts = ["year", "month", "day", "hour", "minute"]
    extracted = DateExtraction(DateExtractionConfig(column="t", parts=parts)).apply(df)  # type: ignore[arg-type]
    assert extracted.select(f"t_{p}" for p in parts).rows()[1:] == [
        (v.year, v.month, v.day, v.hour, v.minute) for v in expected[1:]
    ]
    buckets = time_series(df).get_column("bucket").to_list()
    assert buckets == sorted({v.replace(second=0, microsecond=0) for v in expected[1:]})


def test_time_series_in_a_zone_converts_instants_and_reads_wall_clock_times_there():
    zone = "Asia/Kolkata"
    stamps = parse_timestamps(strings(list(ACCEPTED)).get_column("t"), zone=zone)
    assert stamps.dtype == pl.Datetime("us", zone)
    expected = []
    for text in ACCEPTED:
        value = dt.datetime.fromisoformat(ACCEPTED[text])
        if value.tzinfo is None:
            expected.append(value.replace(tzinfo=ZoneInfo(zone)))
        else:
            expected.append(value.astimezone(ZoneInfo(zone)))
    assert stamps.to_list()[1:] == expected


@pytest.mark.parametrize("text", REJECTED)
def test_a_rejected_string_is_an_input_error_naming_the_column_and_value_for_every_user(text):
    df = strings(["2021-01-04T10:00:00Z", text])
    with pytest.raises(InputError) as extraction:
        DateExtraction(DateExtractionConfig(column="t")).apply(df)
    with pytest.raises(InputError) as cast:
        Cast(CastConfig(columns={"t": "datetime"})).apply(df)
    with pytest.raises(InputError) as series:
        time_series(df)
    for err in (extraction, cast, series):
        assert err.value.details["column"] == "t"
        assert err.value.details["value"] == text
        assert repr(text) in str(err.value)


def test_without_strict_a_rejected_string_is_null_in_preprocessing():
    df = strings(REJECTED)
    out = Cast(CastConfig(columns={"t": "datetime"}, strict=False)).apply(df)
    assert out.get_column("t").null_count() == df.height
    parts = DateExtraction(DateExtractionConfig(column="t", parts=["day"], strict=False)).apply(df)
    assert parts.get_column("t_day").null_count() == df.height
