"""ISO-8601 parsing, time zones and time buckets, written once for every kernel that reads time.

::

    >>> import polars as pl
    >>> pl.select(parse_iso_datetime(pl.lit("2021-01-04 10:00:00+02:00"))).item()
    datetime.datetime(2021, 1, 4, 8, 0)
    >>> parse_interval("15 minutes").every
    '15m'

**ISO-8601 strings**: ``YYYY-MM-DD``, then optionally ``T``, ``t`` or a space (spaces may
follow it) and ``HH:MM[:SS[.fff...]]`` (fractions to the microsecond, further digits cut), and
optionally a UTC offset: ``Z`` or ``z``, ``±HH:MM``, ``±HHMM`` or ``±HH`` (spaces may come
before it). Leading and trailing spaces are ignored. A value with an offset is an instant; one
without is wall-clock time. The layouts are fixed rather than inferred from the data, so a value
parses the same way in whichever partition it is. Parsing follows chrono's (Polars') reading of
those layouts, so a one-digit month or day (``2021-1-4``) is accepted and a leap second
(``23:59:60``) reads as the next minute. Not accepted, although Python's ``fromisoformat``
takes them: the basic format (``20210104``), week dates (``2021-W01-1``), an hour without
minutes (``T10``), a comma before the fraction, offsets with seconds and a date with an offset.

**Time zones**: :func:`to_zone` converts instants into a zone (naive UTC without one);
:func:`localize` reads naive wall-clock values as instants in a zone (DST rules below).

**Buckets** (:class:`Interval`): Polars ``dt.truncate`` in the wall-clock time of the values'
zone, so they follow local midnight and DST: ``hourly``; ``daily`` (a bucket of 23 or 25 hours
on a DST change); ``weekly`` (ISO weeks from Monday 00:00: 2020-12-31 lies in 2020-W53, which
starts on 2020-12-28, and 2021-W01 starts on 2021-01-04); ``monthly`` (the 1st); ``quarterly``
(Jan 1, Apr 1, Jul 1, Oct 1); ``yearly``; or a duration ``"15m"``, ``"15 minutes"``, ``"2h"``,
``"3d"``: N-minute buckets aligned to the epoch of the wall clock (1970-01-01 00:00 local, the
Unix epoch without a zone), so a 7-minute bucket may span midnight; multiples of a day are
calendar days counted from 1970-01-01. A bucket starting in a DST gap starts at the gap's end.
A bucket's label is its wall-clock name: ``2021-03-15T10`` (hourly), ``2021-03-15T10:45``
(N minutes), ``2021-03-15`` (days), ``2021-W01`` (ISO year and week), ``2021-03``, ``2021-Q1``,
``2021``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import polars as pl

from raysight.errors import InputError

__all__ = [
    "ISO_NAIVE",
    "ISO_WITH_OFFSET",
    "Interval",
    "localize",
    "parse_duration",
    "parse_interval",
    "parse_iso",
    "parse_iso_datetime",
    "polars_duration",
    "to_zone",
]

# ---------------------------------------------------------------------------------------------
# ISO-8601 strings

#: layouts after normalisation ("T" separator, no spaces around the offset); %.f is optional
ISO_WITH_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z")
ISO_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")


def _normalise(text: pl.Expr) -> pl.Expr:
    """ISO-8601 text trimmed, with a ``T`` separator and the offset right after the time."""
    return (
        text.str.strip_chars()
        .str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]\s*", "${1}T")
        .str.replace(r"\s*[zZ]$", "Z")
        .str.replace(r"\s+([+-]\d{2}(?::?\d{2})?)$", "${1}")
    )


def parse_iso(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``(instant, wall_clock)`` of ISO-8601 strings (see the module doc for the layouts).

    ``instant`` is ``Datetime("us", "UTC")`` for values with a UTC offset; ``wall_clock`` is
    naive ``Datetime("us")`` for the others. Both are null where the value is not of that kind
    or does not parse, so a non-null value that is null in both is not ISO-8601.
    """
    normalised = _normalise(text)
    instant = pl.coalesce(
        normalised.str.strptime(pl.Datetime("us", "UTC"), f, strict=False)
        for f in ISO_WITH_OFFSET
    )
    naive = pl.coalesce(
        normalised.str.strptime(pl.Datetime("us"), f, strict=False) for f in ISO_NAIVE
    )
    return instant, pl.when(instant.is_null()).then(naive)


def parse_iso_datetime(text: pl.Expr) -> pl.Expr:
    """ISO-8601 date or date-time strings as naive ``Datetime("us")`` (null where unparseable).

    A value with a UTC offset is converted to UTC; one without keeps its wall-clock time.
    """
    instant, wall_clock = parse_iso(text)
    return pl.coalesce(instant.dt.replace_time_zone(None), wall_clock)


# ---------------------------------------------------------------------------------------------
# Time zones


def to_zone(values: pl.Series, zone: str | None) -> pl.Series:
    """Tz-aware instants converted into ``zone``; naive UTC when ``zone`` is None."""
    if zone is None:
        return values.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return values.dt.convert_time_zone(zone)


def localize(values: pl.Series, zone: str | None) -> pl.Series:
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
# Durations and buckets

_UNIT_MINUTES = {
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 1),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 60),
    **dict.fromkeys(("d", "day", "days"), 1440),
    **dict.fromkeys(("w", "wk", "week", "weeks"), 10080),
}
_DURATION = re.compile(r"^\s*(\d+)\s*([a-zA-Z]+)\s*$")
_DAY = 1440


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

    def bucket(self, instant: pl.Expr) -> pl.Expr:
        """The first instant of the bucket each value falls in (wall-clock ``truncate``)."""
        return instant.dt.truncate(self.every)

    def bucket_label(self, bucket: pl.Expr) -> pl.Expr:
        """The wall-clock name of each bucket (``2021-W01``, ``2021-Q1``, ...)."""
        if self.label == "quarter":
            return pl.format("{}-Q{}", bucket.dt.year(), bucket.dt.quarter())
        return bucket.dt.strftime(self.label)


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


def polars_duration(minutes: int) -> str:
    """A Polars duration string for a number of minutes (``"2w"``, ``"3d"``, ``"90m"``)."""
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
