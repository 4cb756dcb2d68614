"""Specification of the time-series kernel (raysight.analyses.timeseries).

References: Polars ``group_by_dynamic``, ``rolling_*``, ``shift``/``diff``/``pct_change`` on
the same data, integer arithmetic for epoch alignment, and hand-written calendar facts (ISO
weeks, quarters, month ends, DST days in named zones).
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pydantic import ValidationError
from strategies import split

from raysight.analyses.temporal import parse_interval
from raysight.analyses.timeseries.analysis import TimeSeries
from raysight.errors import InputError

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1)


def kernel(**options) -> TimeSeries:
    options.setdefault("time_column", "t")
    options.setdefault("value_columns", ["v"])
    return TimeSeries(TimeSeries.Config(**options))


def run(df: pl.DataFrame, **options) -> pl.DataFrame:
    table = kernel(**options).run(df).table
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def naive(*args: int) -> dt.datetime:
    return dt.datetime(*args)  # noqa: DTZ001 - naive wall-clock times are the point here


def at(zone: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone))


# ---------------------------------------------------------------------------------------------
# Calendar rules


def test_iso_week_2021_w01_starts_on_monday_january_4():
    df = pl.DataFrame(
        {
            "t": [naive(2020, 12, 31, 12), naive(2021, 1, 3, 23, 59), naive(2021, 1, 4)],
            "v": [1, 2, 3],
        }
    )
    out = run(df, interval="weekly", operations=["count"])
    assert out.get_column("bucket").to_list() == [naive(2020, 12, 28), naive(2021, 1, 4)]
    assert out.get_column("bucket_label").to_list() == ["2020-W53", "2021-W01"]
    assert out.get_column("v_count").to_list() == [2, 1]


def test_quarter_buckets_start_on_the_first_day_of_the_quarter():
    stamps = [
        naive(2021, 1, 1),
        naive(2021, 3, 31, 23, 59, 59),
        naive(2021, 4, 1),
        naive(2021, 9, 30, 12),
        naive(2021, 10, 1),
        naive(2021, 12, 31, 23, 59),
    ]
    out = run(pl.DataFrame({"t": stamps, "v": [1] * 6}), interval="quarterly", operations=["count"])
    assert out.get_column("bucket").to_list() == [
        naive(2021, 1, 1),
        naive(2021, 4, 1),
        naive(2021, 7, 1),
        naive(2021, 10, 1),
    ]
    assert out.get_column("bucket_label").to_list() == ["2021-Q1", "2021-Q2", "2021-Q3", "2021-Q4"]
    assert out.get_column("v_count").to_list() == [2, 1, 1, 2]


def test_month_ends_and_leap_days_stay_in_their_month():
    stamps = [
        naive(2021, 1, 31, 23, 59, 59),
        naive(2021, 2, 1),
        naive(2021, 2, 28, 23, 59),
        naive(2021, 3, 1),
        naive(2020, 2, 28, 12),
        naive(2020, 2, 29, 23, 59, 59),
        naive(2020, 3, 1),
    ]
    out = run(pl.DataFrame({"t": stamps, "v": [1] * 7}), interval="monthly", operations=["count"])
    assert out.get_column("bucket_label").to_list() == [
        "2020-02",
        "2020-03",
        "2021-01",
        "2021-02",
        "2021-03",
    ]
    assert out.get_column("v_count").to_list() == [2, 1, 1, 2, 1]
    assert out.get_column("bucket").to_list()[0] == naive(2020, 2, 1)


def test_seed_bucket_names_for_one_timestamp():
    df = pl.DataFrame({"t": ["2023-03-15T10:47:00Z"], "v": [1.0]})
    labels = {
        "hourly": "2023-03-15T10",
        "daily": "2023-03-15",
        "weekly": "2023-W11",
        "monthly": "2023-03",
        "quarterly": "2023-Q1",
        "yearly": "2023",
        "15m": "2023-03-15T10:45",
        "15 minutes": "2023-03-15T10:45",
    }
    for interval, label in labels.items():
        assert run(df, interval=interval).get_column("bucket_label").to_list() == [label], interval


def hourly_instants(zone: str, first_day: dt.date, days: int) -> list[str]:
    """Every whole UTC hour from local midnight of ``first_day`` for ``days`` local days."""
    start = dt.datetime.combine(first_day, dt.time(), ZoneInfo(zone)).astimezone(UTC)
    end_day = first_day + dt.timedelta(days=days)
    end = dt.datetime.combine(end_day, dt.time(), ZoneInfo(zone)).astimezone(UTC)
    hours = int((end - start).total_seconds() // 3600)
    return [(start + dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in range(hours)]


@pytest.mark.parametrize(
    ("zone", "spring", "autumn"),
    [
        ("Europe/Berlin", dt.date(2021, 3, 28), dt.date(2021, 10, 31)),
        ("America/New_York", dt.date(2021, 3, 14), dt.date(2021, 11, 7)),
    ],
)
def test_daily_buckets_follow_local_midnight_across_dst_changes(zone, spring, autumn):
    for change, hours in ((spring, 23), (autumn, 25)):
        day_before = change - dt.timedelta(days=1)
        stamps = hourly_instants(zone, day_before, 3)
        out = run(
            pl.DataFrame({"t": stamps, "v": [1] * len(stamps)}),
            interval="daily",
            timezone=zone,
            operations=["count"],
        )
        assert out.schema["bucket"] == pl.Datetime("us", zone)
        days = [day_before + dt.timedelta(days=i) for i in range(3)]
        assert out.get_column("bucket").to_list() == [
            dt.datetime.combine(d, dt.time(), ZoneInfo(zone)) for d in days
        ]
        assert out.get_column("v_count").to_list() == [24, hours, 24]
        assert out.get_column("bucket_label").to_list() == [d.isoformat() for d in days]


def test_hourly_buckets_in_a_dst_fall_back_keep_the_repeated_hour_apart():
    stamps = hourly_instants("Europe/Berlin", dt.date(2021, 10, 31), 1)
    out = run(
        pl.DataFrame({"t": stamps, "v": list(range(25))}),
        interval="hourly",
        timezone="Europe/Berlin",
        operations=["sum"],
    )
    assert out.height == 25
    assert out.get_column("bucket_label").to_list().count("2021-10-31T02") == 2
    assert out.get_column("v_sum").to_list() == list(range(25))


def test_fill_gaps_on_dst_days_inserts_exactly_the_missing_local_days():
    zone = "Europe/Berlin"
    df = pl.DataFrame({"t": [at(zone, 2021, 3, 26, 12), at(zone, 2021, 3, 30, 12)], "v": [1, 2]})
    out = run(df, interval="daily", timezone=zone, fill_gaps="zero", operations=["sum"])
    assert out.get_column("bucket").to_list() == [at(zone, 2021, 3, d) for d in range(26, 31)]
    assert out.get_column("filled").to_list() == [False, True, True, True, False]
    assert out.get_column("v_sum").to_list() == [1, 0, 0, 0, 2]


@PROPERTY
@given(
    seconds=st.lists(st.integers(-(10**9), 2 * 10**9), min_size=1, max_size=20),
    minutes=st.integers(1, 24 * 60 - 1),
)
def test_n_minute_buckets_align_to_the_unix_epoch(seconds, minutes):
    width = 60 * minutes
    stamps = [EPOCH + dt.timedelta(seconds=s) for s in seconds]
    out = run(
        pl.DataFrame({"t": stamps, "v": [1] * len(stamps)}),
        interval=f"{minutes}m",
        operations=["count"],
    )
    expected = sorted({EPOCH + dt.timedelta(seconds=s - s % width) for s in seconds})
    assert out.get_column("bucket").to_list() == expected
    assert sum(out.get_column("v_count").to_list()) == len(seconds)


def test_n_minute_buckets_span_midnight_when_the_epoch_grid_says_so():
    # 7-minute buckets: 2021-03-28 23:58 lies in [23:54, 00:01), which crosses midnight
    df = pl.DataFrame(
        {"t": [naive(2021, 3, 28, 23, 58), naive(2021, 3, 29, 0, 0, 30)], "v": [1, 2]}
    )
    out = run(df, interval="7m", operations=["sum"])
    assert out.get_column("bucket").to_list() == [naive(2021, 3, 28, 23, 54)]
    assert out.get_column("v_sum").to_list() == [3]


def test_duration_buckets_in_a_zone_align_to_the_local_wall_clock():
    zone = "Asia/Kolkata"  # UTC+05:30: local hours are not UTC hours
    df = pl.DataFrame({"t": ["2021-06-01T04:45:00Z"], "v": [1]})
    out = run(df, interval="2h", timezone=zone, operations=["count"])
    assert out.get_column("bucket").to_list() == [at(zone, 2021, 6, 1, 10)]
    assert out.get_column("bucket_label").to_list() == ["2021-06-01T10:00"]


def test_multi_day_buckets_count_calendar_days_from_the_epoch():
    df = pl.DataFrame(
        {"t": [dt.date(2021, 1, 3), dt.date(2021, 1, 5), dt.date(2021, 1, 6)], "v": [1, 1, 1]}
    )
    out = run(df, interval="3d", operations=["count"])
    # 2021-01-03 is day 18630 after 1970-01-01, a multiple of 3
    assert out.get_column("bucket").to_list() == [naive(2021, 1, 3), naive(2021, 1, 6)]
    assert out.get_column("v_count").to_list() == [2, 1]


# ---------------------------------------------------------------------------------------------
# Timestamp parsing


def test_iso_strings_with_offsets_z_dates_and_spaces_are_instants():
    df = pl.DataFrame(
        {
            "t": [
                "2021-01-04T10:00:00Z",
                "2021-01-04T12:30:00+02:00",
                "2021-01-04 10:15:00.5",
                "2021-01-04",
                "2021-01-04T10:45",
            ],
            "v": [1, 2, 3, 4, 5],
        }
    )
    out = run(df, interval="hourly", operations=["sum", "count"])
    assert out.get_column("bucket").to_list() == [naive(2021, 1, 4), naive(2021, 1, 4, 10)]
    assert out.get_column("v_sum").to_list() == [4, 11]


def test_naive_strings_are_wall_clock_time_in_the_zone_and_offsets_are_converted():
    zone = "America/New_York"
    df = pl.DataFrame({"t": ["2021-07-01T23:30:00", "2021-07-02T02:00:00Z"], "v": [1, 2]})
    out = run(df, interval="daily", timezone=zone, operations=["sum"])
    # 02:00Z is 22:00 on July 1 in New York (EDT, UTC-4)
    assert out.get_column("bucket").to_list() == [at(zone, 2021, 7, 1)]
    assert out.get_column("v_sum").to_list() == [3]


@pytest.mark.parametrize(
    ("values", "unit"),
    [([1609459200, 1609545600], "s"), ([1609459200000, 1609545600000], "ms")],
)
def test_epoch_numbers_in_seconds_or_milliseconds(values, unit):
    df = pl.DataFrame({"t": values, "v": [1.0, 2.0]})
    expected = [naive(2021, 1, 1), naive(2021, 1, 2)]
    assert run(df, interval="daily", epoch_unit=unit).get_column("bucket").to_list() == expected
    # without epoch_unit the magnitude decides
    assert run(df, interval="daily").get_column("bucket").to_list() == expected


def test_timestamp_format_parses_custom_strings():
    df = pl.DataFrame({"t": ["04/01/2021 10:00", "05/01/2021 11:00"], "v": [1, 2]})
    out = run(df, interval="daily", timestamp_format="%d/%m/%Y %H:%M", operations=["sum"])
    assert out.get_column("bucket").to_list() == [naive(2021, 1, 4), naive(2021, 1, 5)]


def test_tz_aware_datetime_column_keeps_its_zone_without_timezone():
    zone = "Asia/Tokyo"
    df = pl.DataFrame({"t": [at(zone, 2021, 1, 1, 1)], "v": [1]}).with_columns(
        pl.col("t").dt.convert_time_zone(zone)
    )
    out = run(df, interval="daily")
    assert out.schema["bucket"] == pl.Datetime("us", zone)
    assert out.get_column("bucket").to_list() == [at(zone, 2021, 1, 1)]


def test_unparseable_timestamp_is_an_input_error_naming_the_value():
    df = pl.DataFrame({"t": ["2021-01-04T10:00:00Z", "yesterday"], "v": [1, 2]})
    with pytest.raises(InputError, match="yesterday") as err:
        run(df, interval="daily")
    assert err.value.details["column"] == "t"


def test_impossible_calendar_date_is_an_input_error():
    df = pl.DataFrame({"t": ["2021-02-30"], "v": [1]})
    with pytest.raises(InputError, match="2021-02-30"):
        run(df, interval="daily")


def test_naive_time_in_a_dst_gap_is_an_input_error():
    df = pl.DataFrame({"t": ["2021-03-28T02:30:00"], "v": [1]})
    with pytest.raises(InputError, match="daylight-saving gap"):
        run(df, interval="hourly", timezone="Europe/Berlin")


def test_invalid_timestamp_format_is_an_input_error_naming_the_field():
    df = pl.DataFrame({"t": ["2021-01-04"], "v": [1]})
    with pytest.raises(InputError) as err:
        run(df, interval="daily", timestamp_format="%Y-%m-%d %H")
    assert err.value.details["field"] == "timestamp_format"


# ---------------------------------------------------------------------------------------------
# Resampling against Polars

EVERY = {
    "hourly": "1h",
    "daily": "1d",
    "weekly": "1w",
    "monthly": "1mo",
    "quarterly": "1q",
    "yearly": "1y",
    "7m": "7m",
    "2h": "2h",
    "3d": "3d",
}
BASE = naive(2020, 11, 20)


@st.composite
def series_frames(draw: st.DrawFn, max_rows: int = 40) -> pl.DataFrame:
    """Rows with timestamps over hours, weeks or years (some null), values with nulls,
    integer-valued or quarter floats so that sums are exact, a group key with nulls."""
    n = draw(st.integers(0, max_rows))
    span = draw(st.sampled_from([6 * 3600, 20 * 86400, 800 * 86400]))
    # a few distinct instants make ties (several rows at one timestamp) likely
    instants = st.one_of(st.integers(0, span), st.sampled_from([0, 7, span // 2]))
    offsets = draw(st.lists(st.one_of(st.none(), instants), min_size=n, max_size=n))
    return pl.DataFrame(
        {
            "t": [None if s is None else BASE + dt.timedelta(seconds=s) for s in offsets],
            "g": draw(st.lists(st.sampled_from(["a", "b", None]), min_size=n, max_size=n)),
            "i": draw(st.lists(st.one_of(st.none(), st.integers(-50, 50)), min_size=n, max_size=n)),
            "f": draw(
                st.lists(
                    st.one_of(st.none(), st.integers(-400, 400).map(lambda x: x / 4)),
                    min_size=n,
                    max_size=n,
                )
            ),
        },
        schema={"t": pl.Datetime("us"), "g": pl.String, "i": pl.Int64, "f": pl.Float64},
    )


def dynamic_reference(df: pl.DataFrame, every: str, keys: list[str]) -> pl.DataFrame:
    """Sum, mean, min, max, count, first and last per bucket with Polars group_by_dynamic."""
    exprs = []
    for v in ("i", "f"):
        c = pl.col(v)
        exprs += [
            c.sum().alias(f"{v}_sum"),
            c.mean().alias(f"{v}_mean"),
            c.min().alias(f"{v}_min"),
            c.max().alias(f"{v}_max"),
            c.count().cast(pl.Int64).alias(f"{v}_count"),
            # the documented tie rule: earliest (latest) timestamp, then smallest (largest) value
            c.sort_by(["t", v], nulls_last=True).drop_nulls().first().alias(f"{v}_first"),
            c.sort_by(["t", v], descending=True, nulls_last=True)
            .drop_nulls()
            .first()
            .alias(f"{v}_last"),
        ]
    data = df.drop_nulls("t").sort([*keys, "t"])
    out = data.group_by_dynamic(
        "t", every=every, group_by=keys or None, closed="left", label="left", start_by="window"
    ).agg(exprs)
    return out.rename({"t": "bucket"}).sort([*keys, "bucket"], nulls_last=True)


@PROPERTY
@given(df=series_frames(), interval=st.sampled_from(sorted(EVERY)), grouped=st.booleans())
def test_resample_equals_polars_group_by_dynamic(df, interval, grouped):
    keys = ["g"] if grouped else []
    ops = ["sum", "mean", "min", "max", "count", "first", "last"]
    out = run(df, interval=interval, value_columns=["i", "f"], operations=ops, group_by=keys)
    expected = dynamic_reference(df, EVERY[interval], keys)
    assert_frame_equal(out.drop("bucket_label"), expected, check_dtypes=False)


def test_resample_of_a_dst_day_equals_polars_on_tz_aware_data():
    zone = "Europe/Berlin"
    stamps = pl.Series(hourly_instants(zone, dt.date(2021, 10, 30), 3)).str.to_datetime()
    df = pl.DataFrame({"t": stamps.dt.convert_time_zone(zone), "v": np.arange(len(stamps))})
    out = run(df, interval="daily", operations=["sum", "mean"])
    expected = (
        df.group_by_dynamic("t", every="1d")
        .agg(pl.col("v").sum().alias("v_sum"), pl.col("v").mean().alias("v_mean"))
        .rename({"t": "bucket"})
    )
    assert_frame_equal(out.drop("bucket_label"), expected)


# ---------------------------------------------------------------------------------------------
# Distributed


ALL_OPS = ["sum", "mean", "min", "max", "count", "first", "last"]


@st.composite
def configs(draw: st.DrawFn) -> dict:
    options: dict = {
        "value_columns": ["i", "f"],
        "operations": draw(st.lists(st.sampled_from(ALL_OPS), min_size=1, unique=True)),
        "interval": draw(st.sampled_from(sorted(EVERY))),
        "group_by": draw(st.sampled_from([[], ["g"]])),
        "fill_gaps": draw(st.sampled_from(["none", "null", "zero", "forward"])),
        "transforms": draw(st.lists(st.sampled_from(["lag", "diff"]), unique=True)),
    }
    if draw(st.booleans()):
        options["rolling"] = {"window": draw(st.integers(1, 3)), "function": "sum"}
    return options


@PROPERTY
@given(data=st.data())
def test_partitions_in_any_order_give_the_same_result_as_run(data):
    df = data.draw(series_frames())
    options = data.draw(configs())
    if options["fill_gaps"] != "none" and options["interval"] in ("7m", "hourly"):
        options["interval"] = "daily"  # keep the filled series small
    ts = kernel(**options)
    expected = ts.run(df)
    parts = data.draw(split(df))
    got = ts.combine([ts.partial(p) for p in parts])
    assert_frame_equal(pl.from_arrow(got.table), pl.from_arrow(expected.table))
    assert got.summary == expected.summary


@PROPERTY
@given(data=st.data())
def test_merging_partials_as_a_tree_equals_one_merge(data):
    df = data.draw(series_frames())
    ts = kernel(value_columns=["i", "f"], operations=ALL_OPS, interval="daily", group_by=["g"])
    partials = [ts.partial(p) for p in data.draw(split(df))]
    tree = partials[0]
    for p in partials[1:]:
        tree = ts.merge([tree, ts.merge([p])])
    assert_frame_equal(
        pl.from_arrow(ts.finalize(tree).table), pl.from_arrow(ts.combine(partials).table)
    )


def test_iso_string_partitions_with_mixed_offsets_merge_exactly():
    df = pl.DataFrame(
        {
            "t": ["2021-01-04T23:30:00-01:00", "2021-01-05T00:10:00Z", "2021-01-04T12:00:00+09:00"],
            "v": [1.0, 2.0, 4.0],
        }
    )
    ts = kernel(interval="daily", operations=["sum", "first", "last"])
    parts = [df.slice(0, 1), df.slice(1, 2)]
    assert_frame_equal(
        pl.from_arrow(ts.combine([ts.partial(p) for p in parts]).table),
        pl.from_arrow(ts.run(df).table),
    )
    out = run(df, interval="daily", operations=["sum", "first", "last"])
    assert out.get_column("bucket").to_list() == [naive(2021, 1, 4), naive(2021, 1, 5)]
    assert out.get_column("v_sum").to_list() == [4.0, 3.0]
    # 23:30-01:00 is 00:30Z on January 5, after the 00:10Z row
    assert out.get_column("v_first").to_list() == [4.0, 2.0]
    assert out.get_column("v_last").to_list() == [4.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Nulls, empty input, one row


def test_null_timestamps_are_dropped_and_counted():
    df = pl.DataFrame({"t": [naive(2021, 1, 1), None, None], "v": [1, 2, 3]})
    result = kernel(interval="daily", operations=["sum"]).run(df)
    assert pl.from_arrow(result.table).get_column("v_sum").to_list() == [1]
    assert result.summary["rows"] == 3
    assert result.summary["rows_without_timestamp"] == 2


def test_a_bucket_with_only_null_values_exists_with_count_zero_and_null_mean():
    df = pl.DataFrame({"t": [naive(2021, 1, 1), naive(2021, 1, 2)], "v": [1.0, None]})
    out = run(df, interval="daily", operations=["count", "sum", "mean", "min", "first"])
    assert out.get_column("v_count").to_list() == [1, 0]
    assert out.get_column("v_sum").to_list() == [1.0, 0.0]
    assert out.get_column("v_mean").to_list() == [1.0, None]
    assert out.get_column("v_min").to_list() == [1.0, None]
    assert out.get_column("v_first").to_list() == [1.0, None]


def test_first_and_last_skip_null_values():
    df = pl.DataFrame(
        {"t": [naive(2021, 1, 1, h) for h in (1, 2, 3, 4)], "v": [None, 5.0, 7.0, None]}
    )
    out = run(df, interval="daily", operations=["first", "last"])
    assert out.row(0, named=True)["v_first"] == 5.0
    assert out.row(0, named=True)["v_last"] == 7.0


def test_empty_input_gives_an_empty_table_with_every_column():
    df = pl.DataFrame(schema={"t": pl.String, "g": pl.String, "v": pl.Int64})
    options = dict(
        interval="daily",
        operations=["sum", "mean", "count"],
        group_by=["g"],
        fill_gaps="forward",
        rolling={"window": 2},
        transforms=["lag", "pct_change"],
        decompose={"period": 2},
        anomalies={"method": "iqr"},
        forecast={"horizon": 2},
    )
    result = kernel(**options).run(df)
    out = pl.from_arrow(result.table)
    assert out.height == 0
    assert out.columns == kernel(**options).config.output_columns
    assert out.schema["bucket"] == pl.Datetime("us")
    assert result.summary["series"] == 0
    assert result.summary["first_bucket"] is None


def test_one_row_gives_one_bucket():
    df = pl.DataFrame({"t": ["2021-05-05T05:05:05Z"], "v": [3]})
    out = run(
        df,
        interval="monthly",
        operations=["sum", "mean", "count", "first", "last"],
        fill_gaps="null",
        transforms=["diff"],
    )
    assert out.rows() == [
        (naive(2021, 5, 1), "2021-05", 3, 3.0, 1, 3, 3, False, None, None, None, None, None)
    ]


# ---------------------------------------------------------------------------------------------
# Gap filling


def gappy() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "t": [naive(2021, 1, 1), naive(2021, 1, 4), naive(2021, 1, 2), naive(2021, 1, 6)],
            "g": ["a", "a", "b", "b"],
            "v": [1, 4, 2, 6],
        }
    )


@pytest.mark.parametrize(
    ("mode", "sums", "means"),
    [
        ("null", [1, None, None, 4], [1.0, None, None, 4.0]),
        ("zero", [1, 0, 0, 4], [1.0, 0.0, 0.0, 4.0]),
        ("forward", [1, 1, 1, 4], [1.0, 1.0, 1.0, 4.0]),
    ],
)
def test_fill_gaps_inserts_missing_buckets_per_series(mode, sums, means):
    out = run(
        gappy(),
        interval="daily",
        group_by=["g"],
        fill_gaps=mode,
        operations=["sum", "mean", "count"],
    )
    a = out.filter(pl.col("g") == "a")
    assert a.get_column("bucket").to_list() == [naive(2021, 1, d) for d in range(1, 5)]
    assert a.get_column("filled").to_list() == [False, True, True, False]
    assert a.get_column("v_sum").to_list() == sums
    assert a.get_column("v_mean").to_list() == means
    assert a.get_column("v_count").to_list() == [1, 0, 0, 1]
    # each series spans only its own first to last bucket
    b = out.filter(pl.col("g") == "b")
    assert b.get_column("bucket").to_list() == [naive(2021, 1, d) for d in range(2, 7)]


def test_fill_gaps_without_fill_leaves_the_buckets_alone():
    out = run(gappy(), interval="daily", group_by=["g"], operations=["sum"])
    assert out.height == 4
    assert "filled" not in out.columns


def test_fill_gaps_across_months_of_different_length():
    df = pl.DataFrame({"t": [naive(2020, 1, 31), naive(2020, 5, 1)], "v": [1, 2]})
    out = run(df, interval="monthly", fill_gaps="zero", operations=["sum"])
    assert out.get_column("bucket_label").to_list() == [
        "2020-01",
        "2020-02",
        "2020-03",
        "2020-04",
        "2020-05",
    ]


def test_fill_gaps_refuses_an_absurd_number_of_buckets():
    df = pl.DataFrame({"t": [naive(1900, 1, 1), naive(2100, 1, 1)], "v": [1, 2]})
    with pytest.raises(InputError, match="buckets") as err:
        run(df, interval="1m", fill_gaps="zero")
    assert err.value.details["field"] == "interval"


# ---------------------------------------------------------------------------------------------
# Rolling windows and transforms


def daily_series(values: list[float | None], groups: list[str] | None = None) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "t": [naive(2021, 1, 1) + dt.timedelta(days=i) for i in range(n)],
            "g": groups or ["a"] * n,
            "v": values,
        },
        schema={"t": pl.Datetime("us"), "g": pl.String, "v": pl.Float64},
    )


@PROPERTY
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-9, 9).map(float)), min_size=1, max_size=25),
    window=st.integers(1, 5),
    function=st.sampled_from(["mean", "sum", "min", "max", "std"]),
)
def test_rolling_rows_equals_polars_rolling(values, window, function):
    df = daily_series(values, [("a", "b")[i % 2] for i in range(len(values))])
    out = run(
        df,
        interval="daily",
        group_by=["g"],
        operations=["sum"],
        rolling={"window": window, "function": function, "min_periods": 1},
    )
    expected = (
        df.sort("g", "t")
        .with_columns(
            getattr(pl.col("v").sum().over("g", "t"), f"rolling_{function}")(window, min_samples=1)
            .over("g")
            .alias("r")
        )
        .get_column("r")
    )
    np.testing.assert_allclose(
        out.get_column(f"v_sum_rolling_{function}").cast(pl.Float64).to_numpy(),
        expected.cast(pl.Float64).to_numpy(),
        rtol=1e-9,
        atol=1e-9,
    )


def test_rolling_duration_window_uses_time_not_rows():
    df = daily_series([1.0, 2.0, 4.0]).with_columns(
        pl.Series("t", [naive(2021, 1, 1), naive(2021, 1, 2), naive(2021, 1, 5)])
    )
    out = run(df, interval="daily", operations=["sum"], rolling={"window": "3d", "function": "sum"})
    expected = df.with_columns(pl.col("v").rolling_sum_by("t", "3d").alias("r"))
    assert out.get_column("v_sum_rolling_sum").to_list() == expected.get_column("r").to_list()
    assert out.get_column("v_sum_rolling_sum").to_list() == [1.0, 3.0, 4.0]


@PROPERTY
@given(
    values=st.lists(st.one_of(st.none(), st.integers(-5, 5).map(float)), min_size=1, max_size=20),
    periods=st.integers(1, 3),
)
def test_lag_diff_and_pct_change_equal_polars(values, periods):
    df = daily_series(values, [("a", "b")[i % 3 == 0] for i in range(len(values))])
    out = run(
        df,
        interval="daily",
        group_by=["g"],
        operations=["mean"],
        transforms=["lag", "diff", "pct_change"],
        periods=periods,
    )
    v = pl.col("v")
    expected = df.sort("g", "t").select(
        v.shift(periods).over("g").alias("v_mean_lag"),
        v.diff(periods).over("g").alias("v_mean_diff"),
        v.pct_change(periods).over("g").alias("v_mean_pct_change"),
    )
    assert_frame_equal(out.select(expected.columns), expected)


# ---------------------------------------------------------------------------------------------
# Decomposition, anomalies, forecast


@pytest.mark.parametrize("period", [4, 7])
def test_additive_decomposition_recovers_trend_and_season(period):
    n = 6 * period
    pattern = np.arange(period, dtype=float) - (period - 1) / 2  # mean 0
    t = np.arange(n)
    trend = 10 + 0.5 * t
    seasonal = pattern[t % period]
    out = run(daily_series(list(trend + seasonal)), interval="daily", decompose={"period": period})
    half = period // 2
    inner = slice(half, n - half)
    np.testing.assert_allclose(out.get_column("v_mean_trend").to_numpy()[inner], trend[inner])
    assert out.get_column("v_mean_trend")[:half].is_null().all()
    np.testing.assert_allclose(out.get_column("v_mean_seasonal").to_numpy(), seasonal, atol=1e-9)
    np.testing.assert_allclose(out.get_column("v_mean_resid").to_numpy()[inner], 0, atol=1e-9)


def test_multiplicative_decomposition_recovers_seasonal_factors():
    period, n = 4, 24
    factors = np.array([0.5, 1.5, 1.25, 0.75])  # mean 1
    t = np.arange(n)
    level = np.full(n, 20.0)
    out = run(
        daily_series(list(level * factors[t % period])),
        interval="daily",
        decompose={"period": period, "model": "multiplicative"},
    )
    np.testing.assert_allclose(out.get_column("v_mean_seasonal").to_numpy(), factors[t % period])
    np.testing.assert_allclose(out.get_column("v_mean_trend").drop_nulls().to_numpy(), 20.0)
    np.testing.assert_allclose(out.get_column("v_mean_resid").drop_nulls().to_numpy(), 1.0)


def test_decomposition_of_a_series_shorter_than_two_periods_is_null():
    result = kernel(interval="daily", decompose={"period": 4}).run(daily_series([1.0] * 7))
    out = pl.from_arrow(result.table)
    assert out.get_column("v_mean_seasonal").is_null().all()
    assert result.summary["decompose"]["short_series"] == 1


def test_multiplicative_decomposition_of_zero_is_an_input_error():
    with pytest.raises(InputError, match="positive"):
        run(
            daily_series([1.0, 0.0] * 4),
            interval="daily",
            decompose={"period": 2, "model": "multiplicative"},
        )


@pytest.mark.parametrize(
    "anomalies",
    [
        {"method": "zscore"},
        {"method": "zscore", "window": 10},
        {"method": "iqr", "k": 3.0},
        {"method": "iqr", "window": 10, "k": 3.0},
    ],
)
def test_anomaly_detection_flags_an_injected_spike(anomalies):
    rng = np.random.default_rng(7)
    values = 100 + rng.normal(0, 1, 60)
    values[40] = 130.0
    result = kernel(interval="daily", anomalies=anomalies).run(daily_series(list(values)))
    flags = pl.from_arrow(result.table).get_column("v_mean_anomaly")
    assert flags[40] is True
    assert flags.fill_null(False).sum() == 1
    assert result.summary["anomalies"] == {"v_mean": 1}


def test_iqr_fences_use_linear_quartiles_and_k():
    values = [*map(float, range(1, 10)), 14.0, 15.0]
    # linear quartiles of the 11 values: q1 = 3.5, q3 = 8.5; k = 1.5 gives fences -4 and 16
    flags = run(daily_series(values), interval="daily", anomalies={"method": "iqr"})
    assert not flags.get_column("v_mean_anomaly").any()
    # k = 1 gives fences -1.5 and 13.5
    flags = run(daily_series(values), interval="daily", anomalies={"method": "iqr", "k": 1.0})
    assert flags.get_column("v_mean_anomaly").to_list() == [False] * 9 + [True, True]


def test_rolling_anomaly_statistics_need_a_full_window_of_history():
    flags = run(
        daily_series([1.0, 2.0, 3.0, 50.0]), interval="daily", anomalies={"window": 3}
    ).get_column("v_mean_anomaly")
    assert flags.to_list() == [None, None, None, True]


def test_seasonal_naive_forecast_of_a_periodic_series_has_zero_holdout_error():
    pattern = [3.0, 1.0, 4.0, 1.0, 5.0]
    df = pl.DataFrame(
        {
            "t": [naive(2019 + i // 12, i % 12 + 1, 15) for i in range(30)],
            "v": (pattern * 6),
        }
    )
    result = kernel(
        interval="monthly", forecast={"horizon": 7, "season_length": 5, "holdout": 10}
    ).run(df)
    (metrics,) = result.summary["forecast"]["metrics"]
    assert metrics["n"] == 10
    assert metrics["mae"] == 0.0 and metrics["rmse"] == 0.0 and metrics["mape"] == 0.0
    out = pl.from_arrow(result.table)
    future = out.filter(pl.col("kind") == "forecast")
    assert future.get_column("bucket_label").to_list() == [
        "2021-07",
        "2021-08",
        "2021-09",
        "2021-10",
        "2021-11",
        "2021-12",
        "2022-01",
    ]
    assert future.get_column("v_mean").to_list() == (pattern * 2)[:7]
    assert out.filter(pl.col("kind") == "actual").height == 30


def test_exponential_smoothing_forecast_is_the_last_smoothed_level():
    values = [10.0, 12.0, 11.0, 15.0, 14.0]
    alpha = 0.3
    level = values[0]
    for y in values[1:3]:
        level = alpha * y + (1 - alpha) * level
    errors = [y - level for y in values[3:]]
    result = kernel(
        interval="daily",
        forecast={"method": "exp_smoothing", "horizon": 2, "alpha": alpha, "holdout": 2},
    ).run(daily_series(values))
    (metrics,) = result.summary["forecast"]["metrics"]
    assert math.isclose(metrics["mae"], np.mean(np.abs(errors)), rel_tol=1e-12)
    assert math.isclose(metrics["rmse"], math.sqrt(np.mean(np.square(errors))), rel_tol=1e-12)
    for y in values[3:]:
        level = alpha * y + (1 - alpha) * level
    future = pl.from_arrow(result.table).filter(pl.col("kind") == "forecast")
    np.testing.assert_allclose(future.get_column("v_mean").to_numpy(), [level, level])


def test_exponential_smoothing_picks_alpha_per_series():
    values = [5.0, 9.0, 5.0, 9.0, 5.0, 9.0, 7.0, 7.0]
    result = kernel(
        interval="daily",
        group_by=["g"],
        forecast={"method": "exp_smoothing", "horizon": 1, "holdout": 2},
    ).run(daily_series(values + [1.0] * 8, ["a"] * 8 + ["b"] * 8))
    metrics = {m["g"]: m for m in result.summary["forecast"]["metrics"]}
    assert 0 < metrics["a"]["alpha"] < 1
    assert metrics["b"]["mae"] == 0.0  # a constant series is forecast exactly


def test_forecast_holdout_longer_than_the_series_reports_no_error():
    result = kernel(interval="daily", forecast={"horizon": 1, "holdout": 5}).run(
        daily_series([1.0, 2.0])
    )
    (metrics,) = result.summary["forecast"]["metrics"]
    assert metrics["n"] == 0 and metrics["mae"] is None


# ---------------------------------------------------------------------------------------------
# Configuration and input errors


def test_missing_column_is_an_input_error_naming_it():
    df = pl.DataFrame({"t": [naive(2021, 1, 1)], "value": [1]})
    with pytest.raises(InputError, match="'v'") as err:
        run(df, interval="daily")
    assert err.value.details["column"] == "v"


def test_non_numeric_value_column_is_an_input_error():
    df = pl.DataFrame({"t": [naive(2021, 1, 1)], "v": ["x"]})
    with pytest.raises(InputError, match="numeric"):
        run(df, interval="daily")


@pytest.mark.parametrize("interval", ["fortnightly", "15 parsecs", "0m", "m15", "2w"])
def test_bad_interval_is_a_validation_error_naming_the_field(interval):
    with pytest.raises(ValidationError, match="interval") as err:
        kernel(interval=interval)
    assert interval in str(err.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"targets": ["w_mean"]}, "w_mean"),
        ({"rolling": {"window": "soon"}}, "window"),
        ({"group_by": ["bucket"]}, "bucket"),
        ({"value_columns": []}, "value_columns"),
        ({"extra": 1}, "extra"),
        ({"timestamp_format": "%Y", "epoch_unit": "s"}, "epoch_unit"),
        ({"forecast": {"horizon": 0}}, "horizon"),
    ],
)
def test_invalid_config_is_a_validation_error_naming_the_problem(options, field):
    with pytest.raises(ValidationError, match=field):
        kernel(interval="daily", **options)


def test_seed_style_single_value_column_and_average_operation_are_accepted():
    config = TimeSeries.Config.model_validate(
        {"time_column": "t", "value_column": "v", "operation": "average", "interval": "hourly"}
    )
    assert config.value_columns == ["v"]
    assert config.operations == ["mean"]


def test_kernel_is_registered_under_its_name():
    from raysight.registry import analyses

    assert analyses.get("time_series") is TimeSeries
    assert TimeSeries.Config.model_json_schema()["properties"]["type"]["const"] == "time_series"


def test_interval_parsing_normalises_units():
    assert parse_interval("15 minutes").every == "15m"
    assert parse_interval("2h").every == "120m"
    assert parse_interval("24h").every == "1d"
    assert parse_interval("Weekly").every == "1w"


def test_a_skipped_local_midnight_starts_the_day_at_the_end_of_the_gap():
    zone = "America/Sao_Paulo"  # 2018-11-04 began at 01:00 (-02)
    df = pl.DataFrame({"t": [dt.date(2018, 11, 3), dt.date(2018, 11, 4)], "v": [1, 2]})
    out = run(df, interval="daily", timezone=zone, operations=["sum"])
    assert out.get_column("bucket").to_list() == [at(zone, 2018, 11, 3), at(zone, 2018, 11, 4, 1)]
    assert out.get_column("bucket_label").to_list() == ["2018-11-03", "2018-11-04"]


def test_nan_epoch_is_missing_and_an_out_of_range_epoch_is_an_input_error():
    result = kernel(interval="daily").run(pl.DataFrame({"t": [float("nan"), 1.6e9], "v": [1, 2]}))
    assert result.summary["rows_without_timestamp"] == 1
    with pytest.raises(InputError, match="epoch"):
        run(pl.DataFrame({"t": [10**20], "v": [1]}), interval="daily")


def test_targets_limit_the_features_to_the_named_aggregates():
    out = run(
        daily_series([1.0, 2.0, 3.0]),
        interval="daily",
        operations=["sum", "count"],
        targets=["v_sum"],
        transforms=["diff"],
        anomalies={"method": "zscore"},
    )
    assert out.columns == [
        "bucket",
        "bucket_label",
        "v_sum",
        "v_count",
        "v_sum_diff",
        "v_sum_anomaly",
    ]
    assert out.get_column("v_sum_diff").to_list() == [None, 1.0, 1.0]


def test_partial_state_pickles_for_ray_tasks():
    import pickle

    ts = kernel(interval="daily", operations=ALL_OPS)
    state = ts.partial(daily_series([1.0, None, 3.0]))
    assert_frame_equal(
        pl.from_arrow(ts.combine([pickle.loads(pickle.dumps(state))]).table),
        pl.from_arrow(ts.combine([state]).table),
    )
