"""Arrow types as the column types of PostgreSQL, MySQL/MariaDB and SQLite tables, and the
check that a table's columns can take a result's.

>>> column_type(pa.timestamp("us", tz="UTC"), "postgresql")
'TIMESTAMPTZ'
>>> column_type(pa.decimal128(10, 2), "mysql")
'DECIMAL(10,2)'

Where a dialect has no such type the value is kept exactly in another: MySQL/MariaDB store
zoned timestamps as ``DATETIME(6)`` in UTC (its ``TIMESTAMP`` ends in 2038 and converts by
the session's zone); SQLite, which has no types of its own, stores decimals, dates and
timestamps as ISO text (zoned ones in UTC, as connectorx reads them back) under declared
types that readers (connectorx, pandas) recognise.
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

from raysight.connectors.database.urls import Dialect

Category = Literal["integer", "float", "decimal", "text", "bool", "date", "timestamp", "time",
                   "binary", "null"]

_INTS: dict[Dialect, dict[int, str]] = {
    "postgresql": {8: "SMALLINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"},
    "mysql": {8: "TINYINT", 16: "SMALLINT", 32: "INT", 64: "BIGINT"},
    "sqlite": {8: "INTEGER", 16: "INTEGER", 32: "INTEGER", 64: "INTEGER"},
}
#: the other types, by category and dialect
_TYPES: dict[str, dict[Dialect, str]] = {
    "bool": {"postgresql": "BOOLEAN", "mysql": "BOOLEAN", "sqlite": "BOOLEAN"},
    "float32": {"postgresql": "REAL", "mysql": "FLOAT", "sqlite": "REAL"},
    "float64": {"postgresql": "DOUBLE PRECISION", "mysql": "DOUBLE", "sqlite": "REAL"},
    "text": {"postgresql": "TEXT", "mysql": "LONGTEXT", "sqlite": "TEXT"},
    "binary": {"postgresql": "BYTEA", "mysql": "LONGBLOB", "sqlite": "BLOB"},
    "date": {"postgresql": "DATE", "mysql": "DATE", "sqlite": "DATE"},
    "timestamptz": {"postgresql": "TIMESTAMPTZ", "mysql": "DATETIME(6)", "sqlite": "TIMESTAMP"},
    "timestamp": {"postgresql": "TIMESTAMP", "mysql": "DATETIME(6)", "sqlite": "TIMESTAMP"},
    "time": {"postgresql": "TIME", "mysql": "TIME(6)", "sqlite": "TIME"},
}
#: MySQL's and MariaDB's widest DECIMAL
_MYSQL_PRECISION = 65


def category(dtype: pa.DataType) -> Category | None:
    """What kind of value an Arrow type holds; None for one no table column holds (lists,
    structs, durations)."""
    if pa.types.is_null(dtype):
        return "null"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_decimal(dtype):
        return "decimal"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) \
            or pa.types.is_string_view(dtype):
        return "text"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) \
            or pa.types.is_binary_view(dtype) or pa.types.is_fixed_size_binary(dtype):
        return "binary"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_time(dtype):
        return "time"
    return None


def column_type(dtype: pa.DataType, dialect: Dialect) -> str | None:
    """The column type a new table gets for an Arrow type; None when it has none."""
    kind = category(dtype)
    if kind == "integer":
        unsigned = pa.types.is_unsigned_integer(dtype)
        if dialect == "mysql":
            return _INTS["mysql"][dtype.bit_width] + (" UNSIGNED" if unsigned else "")
        if unsigned:  # one size up holds every value; NUMERIC(20) every uint64
            wider = {8: 16, 16: 32, 32: 64}.get(dtype.bit_width)
            return _INTS[dialect][wider] if wider else \
                ("NUMERIC(20)" if dialect == "postgresql" else "INTEGER")
        return _INTS[dialect][dtype.bit_width]
    if kind == "float":
        return _TYPES["float64" if dtype.bit_width == 64 else "float32"][dialect]
    if kind == "decimal":
        if dialect == "sqlite":
            return "TEXT"  # SQLite's NUMERIC affinity would round to 15 digits
        if dialect == "mysql" and dtype.precision > _MYSQL_PRECISION:
            return None
        return f"{'NUMERIC' if dialect == 'postgresql' else 'DECIMAL'}" \
            f"({dtype.precision},{dtype.scale})"
    if kind == "timestamp":
        return _TYPES["timestamptz" if dtype.tz else "timestamp"][dialect]
    if kind == "null":
        return _TYPES["text"][dialect]
    return None if kind is None else _TYPES[kind][dialect]


def schema_problem(schema: pa.Schema, dialect: Dialect) -> str | None:
    """Why a table of this dialect cannot hold the schema's columns, or None."""
    bad = [f"{f.name} ({f.type})" for f in schema if column_type(f.type, dialect) is None]
    if not bad:
        return None
    return (f"a {dialect} table cannot hold the column(s) {', '.join(bad)}; cast or drop "
            "them first (lists, structs and durations have no column type)")


def declared_category(declared: str) -> Category | None:
    """What kind of value a table column of this declared type holds (``bigint``,
    ``character varying``, ``timestamp with time zone``); None when it is not known."""
    name = declared.lower()
    if "bool" in name:
        return "bool"
    if "int" in name and "interval" not in name and "point" not in name:
        return "integer"
    if "numeric" in name or "decimal" in name:
        return "decimal"
    if any(k in name for k in ("double", "float", "real")):
        return "float"
    if any(k in name for k in ("char", "text", "clob")):
        return "text"
    if any(k in name for k in ("bytea", "blob", "binary")):
        return "binary"
    if "timestamp" in name or "datetime" in name:
        return "timestamp"
    if "date" in name:
        return "date"
    if "time" in name:
        return "time"
    return None


#: the table column categories a result column of each category may be appended to
_FITS: dict[Category, set[Category]] = {
    "integer": {"integer", "float", "decimal"},
    "float": {"float", "decimal"},
    "decimal": {"decimal", "float", "text"},
    "text": {"text"},
    "bool": {"bool", "integer"},
    "date": {"date", "timestamp", "text"},
    "timestamp": {"timestamp", "text"},
    "time": {"time", "text"},
    "binary": {"binary"},
}


def append_problem(schema: pa.Schema, table: str, columns: dict[str, str]) -> str | None:
    """Why the rows of ``schema`` cannot be appended to ``table``, whose columns are
    ``columns`` (name -> declared type), or None: a result column the table lacks, or one
    whose kind of value the table's column does not take (columns of a type it does not
    know are left to the database)."""
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        return (f"table {table} has no column(s) {', '.join(missing)} (its columns: "
                f"{', '.join(columns) or 'none'}); use mode replace to give it the result's "
                "columns")
    clashes = []
    for f in schema:
        kind, declared = category(f.type), columns[f.name]
        theirs = declared_category(declared)
        if kind in (None, "null") or theirs is None:
            continue
        if theirs not in _FITS[kind]:
            clashes.append(f"{f.name} is {f.type} in the result but {declared} in the table")
    if clashes:
        return f"the result does not fit table {table}: {'; '.join(clashes)}"
    return None
