"""Hive-style partitioned folders: ``sales/year=2024/region=EU/part-0.parquet``.

Each ``key=value`` folder between the source folder and a file is a column of that file's
rows, with the same value on every row. Values are percent-decoded (as Spark and pyarrow
write them), ``__HIVE_DEFAULT_PARTITION__`` and an empty value are null, and a column's type
is the narrowest of int64, float64, date, bool and string that reads every value of the
source (or the type the spec declares in ``hive_types``). Partition columns come after the
file's own columns, in folder order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa

from raysight.errors import InputError

HiveType = Literal["int64", "float64", "date", "bool", "string"]
#: what Hive, Spark and pyarrow name the folder of a null value
DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
ARROW_TYPES: dict[str, pa.DataType] = {"int64": pa.int64(), "float64": pa.float64(),
                                       "date": pa.date32(), "bool": pa.bool_(),
                                       "string": pa.string()}
#: a partition column's Arrow type -> its name (partitions carry the names, not the types)
TYPE_NAMES: dict[pa.DataType, str] = {t: k for k, t in ARROW_TYPES.items()}
_BOOLS = {"true": True, "false": False}


def folder_values(relpath: str) -> dict[str, str] | None:
    """The ``key=value`` folders of a file's path relative to the source folder, in order;
    None when one of its folders is not ``key=value``."""
    values: dict[str, str] = {}
    for part in relpath.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            return None
        values[unquote(key)] = unquote(value)
    return values


def partition_columns(
    relpaths: Sequence[str], mode: bool | None, declared: dict[str, HiveType], source: str
) -> dict[str, pa.DataType]:
    """The partition columns and their types of a source whose files are ``relpaths``.

    ``mode`` True requires every file to lie in ``key=value`` folders with the same keys,
    False reads no partition columns, None (auto) reads them when every file does."""
    if mode is False:
        return {}
    found = [(r, folder_values(r)) for r in relpaths]
    keys = [tuple(v) if v is not None else None for _, v in found]
    if mode is None and (any(k is None for k in keys) or len(set(keys)) != 1 or not keys[0]):
        return {}
    for (relpath, values), names in zip(found, keys, strict=True):
        if not values:
            raise InputError(f"{source}: hive partitioning needs every file in key=value "
                             f"folders, but {relpath} is not", path=source, file=relpath)
        if names != keys[0]:
            raise InputError(f"{source}: partition folders differ: {relpath} has "
                             f"{'/'.join(names or ())}, others {'/'.join(keys[0] or ())}",
                             path=source, file=relpath)
    unknown = sorted(set(declared) - set(keys[0] or ()))
    if unknown:
        raise InputError(f"{source}: hive_types names {', '.join(unknown)}, which are not "
                         f"partition folders (found: {', '.join(keys[0] or ())})", path=source)
    columns: dict[str, pa.DataType] = {}
    for key in keys[0] or ():
        raw = [v[key] for _, v in found if v is not None]
        kind = declared.get(key) or _narrowest([r for r in raw if not _is_null(r)])
        for value in raw:  # a declared type must read every value
            _typed(value, kind, key, source)
        columns[key] = ARROW_TYPES[kind]
    return columns


def typed_values(relpath: str, columns: dict[str, pa.DataType], source: str) -> dict[str, Any]:
    """The file's partition values as Python values of their columns' types."""
    values = folder_values(relpath) or {}
    return {key: _typed(values[key], TYPE_NAMES[t], key, source) for key, t in columns.items()}


def with_partition_columns(
    table: pa.Table, values: dict[str, Any], columns: dict[str, pa.DataType], shown: str
) -> pa.Table:
    """``table`` with one constant column per partition folder."""
    clash = [k for k in columns if k in table.column_names]
    if clash:
        raise InputError(f"{shown} has a column {clash[0]!r}, which is also a partition folder "
                         f"name; rename one or set hive: false", path=shown, column=clash[0])
    for key, dtype in columns.items():
        table = table.append_column(pa.field(key, dtype),
                                    pa.repeat(pa.scalar(values[key], dtype), table.num_rows))
    return table


def constant_stats(values: dict[str, Any], columns: dict[str, pa.DataType], rows: int
                   ) -> dict[str, dict[str, Any]]:
    """The column statistics of the partition columns of a file of ``rows`` rows."""
    return {key: {"type": str(dtype), "nulls": rows if values[key] is None else 0,
                  "min": values[key] if rows else None, "max": values[key] if rows else None}
            for key, dtype in columns.items()}


def _is_null(value: str) -> bool:
    return value in ("", DEFAULT_PARTITION)


def _narrowest(values: list[str]) -> HiveType:
    for kind in ("int64", "float64", "date", "bool"):
        try:
            for value in values:
                _parse(value, kind)
        except ValueError:
            continue
        return kind  # type: ignore[return-value]
    return "string"


def _parse(value: str, kind: str) -> Any:
    if kind == "int64":
        return int(value)
    if kind == "float64":
        return float(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "bool":
        if value.lower() not in _BOOLS:
            raise ValueError(f"not a bool: {value!r}")
        return _BOOLS[value.lower()]
    return value


def _typed(value: str, kind: str, key: str, source: str) -> Any:
    if _is_null(value):
        return None
    try:
        return _parse(value, kind)
    except ValueError:
        raise InputError(f"{source}: partition folder {key}={value} is not a {kind}",
                         path=source, column=key, value=value) from None
