"""Checks and error messages the preprocessing operations share.

An operation checks its input columns at the boundary and raises :class:`InputError` naming the
column (and the value) a user has to fix: ``require_numeric`` and ``require_new`` for column
dtypes and names, ``first_failure`` for values a conversion turned into null.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from raysight.analyses.columns import is_numeric
from raysight.errors import InputError

__all__ = [
    "as_text",
    "first_failure",
    "is_text",
    "polars_message",
    "require_new",
    "require_numeric",
]


def require_numeric(op: str, column: str, dtype: pl.DataType) -> None:
    """Raise InputError naming ``column`` unless its dtype is numeric (or all-null)."""
    if not (is_numeric(dtype) or dtype == pl.Null):
        raise InputError(
            f"{op} needs a numeric column; column {column!r} is {dtype}",
            column=column,
            dtype=str(dtype),
        )


def require_new(op: str, available: list[str], names: list[str]) -> None:
    """Raise InputError when an output column of ``op`` would overwrite an existing one."""
    taken = [n for n in names if n in available]
    if taken:
        raise InputError(
            f"{op} would add column {taken[0]!r}, which already exists; rename or drop it first",
            column=taken[0],
        )


def first_failure(
    column: str, before: pl.Series, after: pl.Series, what: str, **details: Any
) -> None:
    """Raise InputError naming the first value of ``before`` that became null in ``after``."""
    failed = before.is_not_null() & after.is_null()
    if failed.any():
        value = before.filter(failed).item(0)
        raise InputError(
            f"column {column!r}: value {value!r} cannot {what}",
            column=column,
            value=value,
            **details,
        )


def polars_message(exc: Exception) -> str:
    """Polars' message on one line, without the expression dump it appends."""
    text = " ".join(str(exc).strip().split("\n\n")[0].split())
    return text or type(exc).__name__


def as_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """The column as an expression of its strings (categoricals and enums cast to String)."""
    col = pl.col(column)
    return col.cast(pl.String) if isinstance(dtype, (pl.Categorical, pl.Enum)) else col


def is_text(dtype: pl.DataType) -> bool:
    """True for String, Categorical and Enum dtypes."""
    return isinstance(dtype, (pl.String, pl.Categorical, pl.Enum))
