"""Schemas of stream payloads: declared column types and Avro writer schemas, as Arrow.

Example::

    >>> declared_schema({"id": "int64", "at": "timestamp[us, UTC]", "price": "decimal(12, 2)"})
    id: int64
    at: timestamp[us, tz=UTC]
    price: decimal128(12, 2)
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*(?:tz=)?([^\]]+))?\]")
_DECIMAL = re.compile(r"decimal(?:128)?\((\d+),\s*(\d+)\)")
_ALIASES = {"int": "int64", "integer": "int64", "float": "float64", "double": "float64",
            "str": "string", "text": "string", "boolean": "bool", "bytes": "binary",
            "date": "date32", "timestamp": "timestamp[us]"}


def column_type(name: str) -> pa.DataType:
    """The Arrow type a declared type name means (ValueError listing the accepted forms)."""
    text = _ALIASES.get(name.strip().lower(), name.strip())
    if match := _TIMESTAMP.fullmatch(text):
        return pa.timestamp(match.group(1), tz=match.group(2))
    if match := _DECIMAL.fullmatch(text):
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    try:
        return pa.type_for_alias(text)
    except ValueError:
        raise ValueError(f"unknown column type {name!r} (use int64, int32, float64, bool, "
                         "string, binary, date32, timestamp[us] or timestamp[us, UTC], "
                         "decimal(precision, scale))") from None


def declared_schema(columns: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of ``{column: type name}`` (ValueError naming the column)."""
    fields = []
    for name, kind in columns.items():
        if not isinstance(kind, str):
            raise ValueError(f"column {name!r}: the type must be a name such as 'int64', "
                             f"not {kind!r}")
        try:
            fields.append(pa.field(name, column_type(kind)))
        except ValueError as err:
            raise ValueError(f"column {name!r}: {err}") from None
    return pa.schema(fields)


# ---------------------------------------------------------------------------------------------
# Avro

_AVRO_PRIMITIVES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
    "double": pa.float64(), "bytes": pa.binary(), "string": pa.string(), "null": pa.null(),
}
_AVRO_TIMES = {"timestamp-millis": ("ms", "UTC"), "timestamp-micros": ("us", "UTC"),
               "local-timestamp-millis": ("ms", None), "local-timestamp-micros": ("us", None)}


def avro_arrow_schema(schema: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of the records an Avro record schema describes (fastavro parses
    it, so an invalid schema is a ValueError with fastavro's reason)."""
    import fastavro

    try:
        fastavro.parse_schema(schema)
    except Exception as err:  # fastavro raises SchemaParseException, KeyError, TypeError ...
        raise ValueError(f"not a valid Avro schema: {err}") from None
    if schema.get("type") != "record":
        raise ValueError("the Avro schema must be a record (its fields become the columns)")
    kind = _avro_type(schema, {})
    assert isinstance(kind, pa.StructType)
    return pa.schema(list(kind))


def _avro_type(node: Any, named: dict[str, pa.DataType]) -> pa.DataType:
    if isinstance(node, str):
        if node in _AVRO_PRIMITIVES:
            return _AVRO_PRIMITIVES[node]
        return named[node]
    if isinstance(node, list):  # a union: [null, T] is a nullable T
        kinds = [k for k in node if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"Avro union {node} is not supported (only [null, T])")
        return _avro_type(kinds[0], named)
    logical, base = node.get("logicalType"), node["type"]
    if logical == "decimal":
        return pa.decimal128(node["precision"], node.get("scale", 0))
    if logical == "date":
        return pa.date32()
    if logical in _AVRO_TIMES:
        unit, tz = _AVRO_TIMES[logical]
        return pa.timestamp(unit, tz=tz)
    if logical == "uuid":
        return pa.string()
    kind: pa.DataType
    if base == "record":
        kind = pa.struct([pa.field(f["name"], _avro_type(f["type"], named))
                          for f in node["fields"]])
    elif base == "array":
        kind = pa.list_(_avro_type(node["items"], named))
    elif base == "map":
        kind = pa.map_(pa.string(), _avro_type(node["values"], named))
    elif base == "enum":
        kind = pa.string()
    elif base == "fixed":
        kind = pa.binary(node["size"])
    else:
        kind = _avro_type(base, named)
    if "name" in node:
        named[node["name"]] = kind
    return kind
