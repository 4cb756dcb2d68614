"""The common type of two columns that must hold comparable values: join keys, union columns.

::

    >>> import polars as pl
    >>> common_type(pl.Int32, pl.Int64)
    Int64
    >>> common_type(pl.Int64, pl.Float32)
    Float64
    >>> common_type(pl.String, pl.Int64) is None
    True

Rules (the same for join keys and for the columns of a union):

* equal types are their own common type; an all-null column (``Null``) takes the other type;
* integers widen: the wider of two of the same signedness; a signed and an unsigned one give the
  narrowest signed type holding both (``UInt64`` with a signed integer gives ``Int128``);
* an integer and a float give ``Float64``, two floats the wider one;
* strings, categoricals and enums compare as ``String``;
* dates and datetimes give a datetime at the finer unit (a date is its midnight); naive and
  time-zone aware datetimes do not mix (``None``); aware ones of different zones compare as
  instants in UTC; durations widen to the finer unit;
* anything else (a string and a number, booleans and numbers, structs of different fields) has
  no common type: ``None``, which callers turn into an ``InputError`` naming both types.
"""

from __future__ import annotations

import polars as pl

__all__ = ["cast_to", "common_type", "describe"]

_UNITS = {"ms": 0, "us": 1, "ns": 2}
_SIGNED = {8: pl.Int8, 16: pl.Int16, 32: pl.Int32, 64: pl.Int64, 128: pl.Int128}


def _bits(dtype: pl.DataType) -> int:
    bits: dict[type[pl.DataType], int] = {
        pl.Int8: 8, pl.Int16: 16, pl.Int32: 32, pl.Int64: 64, pl.Int128: 128,
        pl.UInt8: 8, pl.UInt16: 16, pl.UInt32: 32, pl.UInt64: 64,
    }
    return bits.get(type(dtype), 64)


def _is_text(dtype: pl.DataType) -> bool:
    return isinstance(dtype, (pl.String, pl.Categorical, pl.Enum))


def _finer(a: str, b: str) -> str:
    return a if _UNITS.get(a, 1) >= _UNITS.get(b, 1) else b


def _integers(a: pl.DataType, b: pl.DataType) -> pl.DataType:
    if a.is_signed_integer() == b.is_signed_integer():
        return a if _bits(a) >= _bits(b) else b
    signed, unsigned = (a, b) if a.is_signed_integer() else (b, a)
    bits = max(_bits(signed), 2 * _bits(unsigned))
    return _SIGNED[min(bits, 128)]()


def _temporal(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    if isinstance(a, pl.Date) and isinstance(b, pl.Date):
        return pl.Date()
    if isinstance(a, pl.Date):
        a, b = b, a
    assert isinstance(a, pl.Datetime)
    if isinstance(b, pl.Date):
        return None if a.time_zone else pl.Datetime(a.time_unit)
    assert isinstance(b, pl.Datetime)
    if (a.time_zone is None) != (b.time_zone is None):
        return None
    zone = a.time_zone if a.time_zone == b.time_zone else "UTC"
    return pl.Datetime(_finer(a.time_unit, b.time_unit), zone)  # type: ignore[arg-type]


def common_type(a: pl.DataType, b: pl.DataType) -> pl.DataType | None:
    """The type both ``a`` and ``b`` cast to for comparing values; None when there is none."""
    if a == b:
        return pl.String() if _is_text(a) else a
    if isinstance(a, pl.Null):
        return b
    if isinstance(b, pl.Null):
        return a
    if a.is_integer() and b.is_integer():
        return _integers(a, b)
    if a.is_numeric() and b.is_numeric() and not (a.is_decimal() or b.is_decimal()):
        if a.is_float() and b.is_float():
            return a if isinstance(a, pl.Float64) or isinstance(b, pl.Float32) else b
        return pl.Float64()
    if _is_text(a) and _is_text(b):
        return pl.String()
    if isinstance(a, (pl.Date, pl.Datetime)) and isinstance(b, (pl.Date, pl.Datetime)):
        return _temporal(a, b)
    if isinstance(a, pl.Duration) and isinstance(b, pl.Duration):
        return pl.Duration(_finer(a.time_unit, b.time_unit))  # type: ignore[arg-type]
    return None


def describe(a: pl.DataType, b: pl.DataType) -> str:
    """Why ``a`` and ``b`` have no common type, for an error message."""
    if isinstance(a, pl.Datetime | pl.Date) and isinstance(b, pl.Datetime | pl.Date):
        return "one is time-zone aware and the other naive; convert one side first"
    return "cast one side first"


def cast_to(name: str, dtype: pl.DataType) -> pl.Expr:
    """Column ``name`` cast to ``dtype`` (strict: a value that does not fit is an error)."""
    return pl.col(name).cast(dtype, strict=True)
