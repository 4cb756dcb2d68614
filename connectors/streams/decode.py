"""Payloads of a batch of messages decoded into one Arrow table, malformed ones set aside.

JSON payloads are parsed by pyarrow's JSON reader in one pass over the batch (one payload a
line: a newline outside a JSON string is whitespace, so it is replaced). With a declared
schema every column is cast to its type, and JSON's missing types travel as text: ISO 8601
timestamps (with a zone offset for a zoned column), dates, decimals as strings (``"12.50"``,
exact; a number would be a binary float) and binary as base64. Without one, pyarrow infers
the types over the batch. Avro payloads are read by fastavro's ``schemaless_reader`` with the
declared writer schema, one record each (Avro has no batch decoder), then built into a table
of the schema's Arrow types.

A payload that does not decode, or does not fit the schema, is *rejected* with its reason;
only when the batch fails is each payload tried alone, to find which.

Example::

    >>> decoder = PayloadDecoder("json", {"id": "int64"})
    >>> decoded = decoder.decode([b'{"id": 1}', b'not json', b'{"id": 3}'])
    >>> decoded.table.column("id").to_pylist(), [r.index for r in decoded.rejected]
    ([1, 3], [1])
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from raysight.connectors.streams.schema import avro_arrow_schema, declared_schema


class Undecodable(ValueError):
    """A payload (or a batch) that does not decode into the schema."""


@dataclass(frozen=True)
class Rejected:
    """A payload set aside: its position in the batch and why."""

    index: int
    reason: str


@dataclass
class Decoded:
    """The table of the payloads that decoded, in batch order, and those that did not."""

    table: pa.Table
    rejected: list[Rejected] = field(default_factory=list)


@dataclass
class PayloadDecoder:
    """Decodes payloads of one format and schema (plain data: it pickles into Ray tasks)."""

    format: str
    schema: dict[str, Any] | None = None
    #: Avro in Confluent's wire format: magic byte 0 and a 4-byte schema id before the record
    confluent_wire_format: bool = False
    #: the reason given for a message without a payload
    missing: str = "the message has no payload (a tombstone)"

    @functools.cached_property
    def arrow_schema(self) -> pa.Schema | None:
        """The table's schema when it is declared (None: inferred from the payloads)."""
        if self.schema is None:
            return None
        if self.format == "avro":
            return avro_arrow_schema(self.schema)
        return declared_schema(self.schema)

    @functools.cached_property
    def _avro_schema(self) -> Any:
        import fastavro

        assert self.schema is not None
        return fastavro.parse_schema(self.schema)

    def decode(self, payloads: list[bytes | None]) -> Decoded:
        """The payloads as one table; those that fail are rejected, the others kept."""
        return _decode(payloads, self._batch)

    def decode_fields(self, entries: list[dict[bytes, bytes]]) -> Decoded:
        """Entries of text fields (a Redis stream entry) as rows, each field a column cast to
        the declared type (binary columns keep the bytes); undeclared: every field, as text."""
        return _decode(entries, self._fields)

    def _batch(self, payloads: list[bytes | None]) -> pa.Table:
        for payload in payloads:
            if payload is None:
                raise Undecodable(self.missing)
        data: list[bytes] = payloads  # type: ignore[assignment]
        return self._avro(data) if self.format == "avro" else self._json(data)

    def _fields(self, entries: list[dict[bytes, bytes]]) -> pa.Table:
        schema = self.arrow_schema
        if schema is None:
            names = sorted({k.decode("utf-8", "replace") for e in entries for k in e})
            schema = pa.schema([pa.field(n, pa.string()) for n in names])
        raw = pa.table({f.name: pa.array([e.get(f.name.encode()) for e in entries], pa.binary())
                        for f in schema})
        columns = []
        for f in schema:
            column = raw.column(f.name)
            try:
                if pa.types.is_binary(f.type):
                    columns.append(column)
                else:
                    columns.append(pc.cast(pc.cast(column, pa.string()), f.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise Undecodable(f"field {f.name!r} is not {f.type}: {err}") from None
        return pa.table(columns, schema=schema)

    # -- JSON -----------------------------------------------------------------------------

    def _json(self, payloads: list[bytes]) -> pa.Table:
        schema = self.arrow_schema
        if not payloads:
            return pa.table({}) if schema is None else schema.empty_table()
        text = b"\n".join(p.replace(b"\n", b" ").replace(b"\r", b" ") for p in payloads)
        options = pj.ParseOptions(newlines_in_values=False)
        if schema is not None:
            options = pj.ParseOptions(explicit_schema=pa.schema([
                pa.field(f.name, _json_wire_type(f.type)) for f in schema
            ]), unexpected_field_behavior="ignore")
        try:
            table = pj.read_json(io.BytesIO(text), parse_options=options)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise Undecodable(_json_reason(str(err), len(payloads))) from None
        if table.num_rows != len(payloads):  # a payload of several documents, or none
            raise Undecodable(f"expected one JSON object per message, found {table.num_rows} "
                              f"in {len(payloads)} messages")
        return table if schema is None else _cast_columns(table, schema)

    # -- Avro -----------------------------------------------------------------------------

    def _avro(self, payloads: list[bytes]) -> pa.Table:
        import fastavro

        parsed = self._avro_schema
        records = []
        for payload in payloads:
            if self.confluent_wire_format:
                if len(payload) < 5 or payload[0] != 0:
                    raise Undecodable("no Confluent wire-format header (magic byte 0 and a "
                                      "4-byte schema id)")
                payload = payload[5:]
            stream = io.BytesIO(payload)
            try:
                records.append(fastavro.schemaless_reader(stream, parsed, None))
            except Exception as err:  # fastavro raises EOFError, ValueError, UnicodeError ...
                raise Undecodable(f"not an Avro record of the schema: {type(err).__name__}: "
                                  f"{err}") from None
            if stream.tell() != len(payload):
                left = len(payload) - stream.tell()
                raise Undecodable(f"not an Avro record of the schema: {left} bytes left after "
                                  "the record")
        schema = self.arrow_schema
        assert schema is not None
        try:
            return pa.Table.from_pylist(records, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
            raise Undecodable(f"the record does not fit the schema's Arrow types: {err}") from None


def _decode(items: list[Any], batch: Callable[[list[Any]], pa.Table]) -> Decoded:
    """``batch(items)``; when it fails, each item alone, to reject those that fail."""
    try:
        return Decoded(batch(items))
    except Undecodable as whole:
        rejected, kept = [], []
        for i, item in enumerate(items):
            try:
                batch([item])
                kept.append(item)
            except Undecodable as err:
                rejected.append(Rejected(i, str(err)))
        if not rejected:  # each decodes alone, not together: inferred types that differ
            raise Undecodable(f"{whole} (the messages disagree on a column's type: declare "
                              "the `schema`)") from None
        return Decoded(batch(kept), rejected)


def _json_wire_type(kind: pa.DataType) -> pa.DataType:
    """How a column of ``kind`` travels in JSON: as text when JSON has no such type."""
    if (pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_decimal(kind)
            or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            or pa.types.is_time(kind)):
        return pa.string()
    return kind


def _cast_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        column = table.column(f.name)
        try:
            if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
                columns.append(_base64(column).cast(f.type))
            else:
                columns.append(pc.cast(column, f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
            raise Undecodable(f"column {f.name!r} is not {f.type}: {err}") from None
    return pa.table(columns, schema=schema)


def _base64(column: pa.ChunkedArray) -> pa.Array:
    import polars as pl
    from polars.exceptions import ComputeError

    try:
        decoded: pa.Array = pl.Series(column).str.decode("base64").to_arrow()
    except ComputeError:
        raise ValueError("expected base64 text") from None
    return decoded


_CHANGED = re.compile(r"Column\((/?[^)]*)\) changed from (\w+) to (\w+)")


def _json_reason(message: str, rows: int) -> str:
    message = message.removeprefix("JSON parse error: ")
    if rows == 1:
        message = message.removesuffix(" in row 0")
    if match := _CHANGED.match(message):
        column, expected, found = match.groups()
        if not column:
            return f"the payload is a JSON {found}, not an object"
        return f"column {column.lstrip('/')!r} is a JSON {found} where the schema has {expected}"
    return f"not a JSON object: {message}"
