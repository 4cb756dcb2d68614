"""Column helpers every kernel shares: names listed once, required columns, numeric dtypes,
frames over Arrow tables.

``listed_once`` is the one validator for config lists of names (columns, keys, words): a name
listed twice is a spec error naming the field and the name. ``require_columns`` is the one
check of wanted columns against a table's schema: an ``InputError`` naming the first missing
column, the available ones and the closest match; ``require_numeric`` the one check that a
column holds numbers.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable, Sequence
from typing import Annotated, Any, TypeVar

import polars as pl
import pyarrow as pa
from pydantic import AfterValidator, ValidationInfo

from raysight.errors import InputError

__all__ = [
    "as_float",
    "as_frame",
    "is_numeric",
    "ListedOnce",
    "Names",
    "listed_once",
    "require_columns",
    "require_numeric",
    "stack",
]

NamesT = TypeVar("NamesT", bound="Sequence[Hashable] | None")


def listed_once(values: NamesT, field: str) -> NamesT:
    """``values`` unchanged, or ValueError naming every value ``field`` lists more than once
    (for pydantic ``field_validator``s; None passes; values need not be strings)."""
    if values is not None:
        duplicates = sorted({v for v in values if values.count(v) > 1}, key=str)
        if duplicates:
            raise ValueError(f"{field} lists {', '.join(map(repr, duplicates))} more than once")
    return values


def _listed_once_in_field(values: Any, info: ValidationInfo) -> Any:
    return listed_once(values, info.field_name or "the list")


#: marks a config list whose items are listed once: ``Annotated[list[Part], ListedOnce]``
ListedOnce = AfterValidator(_listed_once_in_field)
#: a config list of names (columns, keys), each listed once
Names = Annotated[list[str], ListedOnce]


def require_columns(
    available: Sequence[str], wanted: Iterable[str], *, what: str = "column"
) -> None:
    """Raise InputError naming the first wanted column that is not in ``available``."""
    present = set(available)
    missing = [c for c in dict.fromkeys(wanted) if c not in present]
    if not missing:
        return
    name = missing[0]
    listed = ", ".join(available[:30]) + (", ..." if len(available) > 30 else "")
    message = f"{what} {name!r} not found; available: {listed or '(none)'}"
    hint = difflib.get_close_matches(name, list(available), n=1)
    if hint:
        message += f" (did you mean {hint[0]!r}?)"
    raise InputError(message, column=name, missing=missing, available=list(available))


def is_numeric(dtype: pl.DataType) -> bool:
    """True for integer and float dtypes (booleans and decimals are not numeric here)."""
    return dtype.is_integer() or dtype.is_float()


def require_numeric(schema: pl.Schema, column: str, kernel: str) -> None:
    """Raise InputError unless ``column`` is an integer or float column (or all-null)."""
    dtype = schema[column]
    if not (is_numeric(dtype) or dtype == pl.Null):
        raise InputError(
            f"{kernel}: column {column!r} is {dtype}, not a numeric column",
            column=column,
            dtype=str(dtype),
        )


def as_float(column: str) -> pl.Expr:
    """The column as Float64 with NaN as missing (as pandas, so NaN never becomes a value)."""
    return pl.col(column).cast(pl.Float64).fill_nan(None)


def as_frame(table: pa.Table | pl.DataFrame) -> pl.DataFrame:
    """A Polars DataFrame over an Arrow table (zero-copy where the types allow)."""
    if isinstance(table, pl.DataFrame):
        return table
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def stack(tables: Sequence[pa.Table | pl.DataFrame]) -> pl.DataFrame:
    """Tables of the same columns one below the other (dtypes widened where they differ)."""
    return pl.concat([as_frame(t) for t in tables], how="vertical_relaxed")
