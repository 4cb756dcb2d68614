"""The SQL the connector sends: the source query, its columns, its bounds and its ranges.

Every query wraps the source's own (``SELECT * FROM (<query>) AS raysight_source ...``), so a
partition reads exactly the rows of the source that fall in its range.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any

from raysight.connectors.database.urls import Dialect

ALIAS = "raysight_source"


def quote_identifier(name: str, dialect: Dialect) -> str:
    """``name`` as a quoted identifier (``"a""b"``; backticks in MySQL)."""
    q = "`" if dialect == "mysql" else '"'
    return q + name.replace(q, q + q) + q


def quote_table(name: str, dialect: Dialect) -> str:
    """A table name quoted part by part (``schema.table``)."""
    return ".".join(quote_identifier(part, dialect) for part in name.split("."))


def subquery(query: str) -> str:
    # the newline ends a trailing `--` comment of the user's query before the parenthesis
    return f"({query}\n) AS {ALIAS}"


def columns_query(query: str) -> str:
    return f"SELECT * FROM {subquery(query)} LIMIT 0"


def bounds_query(query: str, column: str, dialect: Dialect) -> str:
    col = quote_identifier(column, dialect)
    return f"SELECT min({col}) AS lo, max({col}) AS hi FROM {subquery(query)}"


def literal(value: Any) -> str:
    """A bound as an SQL literal (dates and timestamps as ISO text, which each dialect
    compares with its date and timestamp columns, and SQLite with its ISO text)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a range bound")
    if isinstance(value, int | decimal.Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"'{value.isoformat()}'"
    raise TypeError(f"cannot use {type(value).__name__} {value!r} as a range bound")


@dataclass(frozen=True)
class Range:
    """Rows with ``low <= column < high`` (an end None is open); ``nulls`` for the NULLs."""

    low: Any = None
    high: Any = None
    nulls: bool = False

    def predicate(self, col: str) -> str:
        if self.nulls:
            return f"{col} IS NULL"
        terms = ([f"{col} >= {literal(self.low)}"] if self.low is not None else []) + \
                ([f"{col} < {literal(self.high)}"] if self.high is not None else [])
        return " AND ".join(terms) or f"{col} IS NOT NULL"

    def label(self, column: str) -> str:
        if self.nulls:
            return f"{column} IS NULL"
        low = "" if self.low is None else f"{self.low} <= "
        high = "" if self.high is None else f" < {self.high}"
        return f"{low}{column}{high}"


def range_query(query: str, column: str, part: Range, dialect: Dialect) -> str:
    col = quote_identifier(column, dialect)
    return f"SELECT * FROM {subquery(query)} WHERE {part.predicate(col)}"


def split(low: Any, high: Any, n: int) -> list[Range]:
    """``n`` ranges of equal width between ``low`` and ``high`` (fewer for a narrow integer
    or date span), the first and last open-ended, then one for NULLs; [] when one range
    covers it all."""
    if n <= 1 or low is None or high is None or not low < high:
        return []
    edges: list[Any] = []
    for i in range(1, n):
        if isinstance(low, dt.datetime):
            edge: Any = low + (high - low) * i / n
        elif isinstance(low, dt.date):
            edge = low + dt.timedelta(days=(high - low).days * i // n)
        elif isinstance(low, int):
            edge = low + (high - low) * i // n
        else:
            edge = low + (high - low) * i / n
        if edge > low and (not edges or edge > edges[-1]):
            edges.append(edge)
    if not edges:
        return []
    ends = [None, *edges, None]
    return [Range(a, b) for a, b in zip(ends, ends[1:], strict=False)] + [Range(nulls=True)]
