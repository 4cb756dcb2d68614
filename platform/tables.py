"""Arrow table helpers shared by the pipeline: schema unification across partitions, the
layout kernels hand tables on in, and how Ray serializes those tables."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from raysight.errors import InputError

VIEWS = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}


def unify(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for all partitions: columns in first-seen order, types promoted
    (null → anything, int64 + float64 → float64); incompatible types are an InputError."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise InputError(f"partitions of the source have incompatible column types: {err}") \
            from None


def column_stats(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per column of ``table``: its Arrow type, its nulls, and its min and max (numbers,
    decimals, booleans, strings, dates and times; NaN left out, as Polars' min/max do);
    min and max are None for other types and for a column with no value."""
    out: dict[str, dict[str, Any]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        low = high = None
        if orderable(column.type) and column.null_count < len(column):
            try:
                extremes = pc.min_max(column)
                low, high = extremes["min"].as_py(), extremes["max"].as_py()
            except pa.ArrowNotImplementedError:
                pass
        out[name] = {"type": str(column.type), "nulls": column.null_count,
                     "min": low, "max": high}
    return out


def merge_column_stats(parts: list[tuple[int, dict[str, dict[str, Any]]]],
                       schema: pa.Schema) -> dict[str, dict[str, Any]]:
    """The statistics of a whole table from its partitions' ``(rows, column_stats)``, with
    the types of the unified ``schema``; a partition without a column counts its rows as
    nulls of it. Min and max are JSON-ready (temporal values in ISO 8601, decimals as
    exact strings)."""
    out: dict[str, dict[str, Any]] = {}
    for field_ in schema:
        name = field_.name
        present = [stats[name] for _, stats in parts if name in stats]
        nulls = sum(s["nulls"] for s in present) + sum(
            rows for rows, stats in parts if name not in stats)
        out[name] = {"type": str(field_.type), "nulls": nulls,
                     "min": _json_ready(_extreme(min, [s["min"] for s in present])),
                     "max": _json_ready(_extreme(max, [s["max"] for s in present]))}
    return out


def orderable(dtype: pa.DataType) -> bool:
    """Whether column statistics give a min and max for values of ``dtype``."""
    t = pa.types
    return (t.is_integer(dtype) or t.is_floating(dtype) or t.is_decimal(dtype)
            or t.is_boolean(dtype) or t.is_string(dtype) or t.is_large_string(dtype)
            or t.is_string_view(dtype) or t.is_temporal(dtype))


def _extreme(pick: Any, values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    try:
        return pick(known) if known else None
    except TypeError:  # partitions of different types (a date and a string)
        return None


def _json_ready(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.time)):  # datetimes too
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def portable(table: pa.Table) -> pa.Table:
    """``table`` with view types (Polars' string and binary views) cast to the classic large
    types that every Arrow consumer reads; a no-op when there are none."""
    if not _has_views(table):
        return table
    schema = pa.schema([f.with_type(VIEWS.get(f.type, f.type)) for f in table.schema],
                       metadata=table.schema.metadata)
    return table.cast(schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (absent columns become null)."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            try:
                columns.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise InputError(f"column {field.name!r} cannot be read as {field.type} in every "
                                 f"partition: {err}", column=field.name) from None
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def to_arrow(df: pl.DataFrame) -> pa.Table:
    """``df`` as an Arrow table without a copy: Polars' own layout (string views), not the
    classic large strings ``df.to_arrow()`` converts to (0.2 s for 3 string columns of 1e7
    rows). Tasks hand tables on in this layout; ``portable`` converts at the exporters."""
    return df.to_arrow(compat_level=pl.CompatLevel.newest())


def _has_views(table: pa.Table) -> bool:
    return any(_is_view(f.type) for f in table.schema)


# -- serialization in Ray ---------------------------------------------------------------------
# Ray registers its own reducer for pa.Table (ray/_private/arrow_serialization.py): it trims
# the buffers of sliced arrays, which pickle would send whole (ARROW-10739, still so in
# pyarrow 26), but it knows no view types: under pytest it raises "Unhandled Arrow array type:
# string_view", elsewhere it copies the table into an IPC stream (with every data buffer a
# slice's views may point into). raysight's reducer leaves tables without view types to Ray's
# reducer and sends the others through pyarrow's own pickling (zero-copy out-of-band buffers),
# after trimming each chunk's buffers to its rows, zero-copy. Polars' streaming engine hands
# out such chunks: 101 slices of the same buffers for q10 of db-benchmark, which pickle sent
# as 21 GB for 0.9 GB of rows. Where trimming cannot help (a data buffer of string views
# shared by several chunks, a nested type) the writer sends a compact copy instead, so that
# readers pay nothing.

_registered: set[int] = set()
_register_lock = threading.Lock()
_SLACK = 1.25  # buffers up to this much larger than the rows they hold go whole


def register_arrow_serializer() -> None:
    """Install raysight's pa.Table reducer in this process's Ray serialization context (once
    per connected Ray worker or driver; a no-op when Ray is not initialized)."""
    import ray

    if not ray.is_initialized():
        return
    worker = ray._private.worker.global_worker
    key = id(worker.get_serialization_context())
    if key in _registered:
        return
    with _register_lock:
        if key in _registered:
            return
        ray.util.register_serializer(pa.Table, serializer=_reduce_table,
                                     deserializer=_rebuild_table)
        _registered.add(key)


def _reduce_table(table: pa.Table) -> tuple[Any, tuple[Any, ...]]:
    ray_reduce = None if _has_views(table) else _ray_table_reduce()
    if ray_reduce is not None:
        return ray_reduce(table)  # type: ignore[no-any-return]
    trimmed = _trimmed(table)
    sent = trimmed if trimmed is not None else _compacted(table)
    return sent.__reduce__()  # type: ignore[no-any-return]


def _ray_table_reduce() -> Any:
    """Ray's own pa.Table reducer; None in a Ray without one (tables are trimmed here then)."""
    try:
        from ray._private.arrow_serialization import _arrow_table_reduce
    except ImportError:
        return None
    return _arrow_table_reduce


def _rebuild_table(reduced: tuple[Any, tuple[Any, ...]]) -> pa.Table:
    rebuild, args = reduced
    return rebuild(*args)


def _trimmed(table: pa.Table) -> pa.Table | None:
    """``table`` with every chunk's buffers cut to its rows (zero-copy), so that pickle sends
    little beyond them; None where that cannot be done."""
    columns = []
    for column in table.columns:
        chunks = []
        shared: set[int] = set()
        for chunk in column.chunks:
            if _is_view(chunk.type):
                data = [b.address for b in chunk.buffers()[2:] if b is not None and b.size]
                if shared.intersection(data) or not _data_used(chunk):
                    return None  # pickle would send strings that no row of the chunk holds
                shared.update(data)
            if not _whole(chunk):
                chunk = _trim(chunk)
                if chunk is None or not _whole(chunk):
                    return None
            chunks.append(chunk)
        columns.append(pa.chunked_array(chunks, type=column.type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _is_view(dtype: pa.DataType) -> bool:
    return dtype in VIEWS


def _data_used(chunk: pa.Array) -> bool:
    """Whether the data buffers of a view array hold little beyond the strings of its rows
    (strings up to 12 bytes live in the views themselves)."""
    held = sum(b.size for b in chunk.buffers()[2:] if b is not None)
    if held <= 4096:
        return True
    # a view is 16 bytes, its first 4 the string's length
    views = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    lengths = views[4 * chunk.offset: 4 * (chunk.offset + len(chunk)): 4]
    if chunk.null_count:
        lengths = np.where(chunk.is_valid().to_numpy(zero_copy_only=False), lengths, 0)
    used = int(lengths[lengths > 12].sum(dtype=np.int64))
    return held <= _SLACK * used + 4096


def _trim(chunk: pa.Array) -> pa.Array | None:
    """A zero-copy copy of ``chunk`` whose buffers start at the byte that holds its first row
    and end after its last (None for types other than fixed-width and string/binary views)."""
    buffers = chunk.buffers()
    if _is_view(chunk.type):
        width = 128
    else:
        try:
            width = chunk.type.bit_width
        except ValueError:
            return None
        if len(buffers) != 2:
            return None
    # keep the offset within a byte so that bitmaps need no shifting
    shift = chunk.offset % 8
    first, rows = chunk.offset - shift, len(chunk) + shift
    validity, values = buffers[0], buffers[1]
    if validity is not None:
        validity = validity.slice(first // 8, (rows + 7) // 8)
    if values is not None:  # first is a multiple of 8: a whole byte for any bit width
        values = values.slice(first * width // 8, (rows * width + 7) // 8)
    return pa.Array.from_buffers(chunk.type, len(chunk), [validity, values, *buffers[2:]],
                                 offset=shift)


def _compacted(table: pa.Table) -> pa.Table:
    """A copy of ``table`` whose buffers hold its rows only (view columns get fresh data
    buffers holding just the strings they use)."""
    columns = []
    for column, field in zip(table.columns, table.schema, strict=True):
        if field.type in VIEWS:
            columns.append(column.cast(VIEWS[field.type]).cast(field.type).combine_chunks())
        elif column.num_chunks:
            columns.append(pa.concat_arrays(column.chunks))
        else:
            columns.append(pa.array([], field.type))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _whole(chunk: pa.Array) -> bool:
    """Whether the validity and value buffers of ``chunk`` hold little more than its rows
    (pickle sends every buffer of every chunk whole; data buffers of views: _data_used)."""
    buffers = chunk.buffers()[:2] if _is_view(chunk.type) else chunk.buffers()
    held = sum(b.size for b in buffers if b is not None)
    needed = 16 * len(chunk) + (len(chunk) + 7) // 8 if _is_view(chunk.type) else chunk.nbytes
    return held <= _SLACK * needed + 4096
