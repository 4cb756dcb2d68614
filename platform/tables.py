"""Arrow table helpers shared by the pipeline: schema unification across partitions, the
layout kernels hand tables on in, and how Ray serializes those tables."""

from __future__ import annotations

import threading
from typing import Any

import polars as pl
import pyarrow as pa

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
    return any(f.type in VIEWS for f in table.schema)


# -- serialization in Ray ---------------------------------------------------------------------
# Ray registers its own reducer for pa.Table (ray/_private/arrow_serialization.py): it trims
# the buffers of sliced arrays, which pickle would send whole (ARROW-10739, still so in
# pyarrow 26), but it knows no view types: under pytest it raises "Unhandled Arrow array type:
# string_view", elsewhere it copies the table into an IPC stream (with every data buffer a
# slice's views may point into). raysight's reducer sends a table with view types through
# pyarrow's own pickling (zero-copy out-of-band buffers) when its buffers hold little beyond
# its rows, a slice of one as a compact copy (made by the writer, so readers pay nothing), and
# leaves every other table to Ray's reducer.

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
    if _has_views(table) and _whole_buffers(table):
        return table.__reduce__()  # type: ignore[no-any-return]
    try:
        from ray._private.arrow_serialization import _arrow_table_reduce
    except ImportError:  # a Ray without the custom reducer: pickle it as pyarrow does
        return table.__reduce__()  # type: ignore[no-any-return]
    if _has_views(table):
        # a slice of views may point into all of its parent's data buffers, which IPC too
        # would send whole: send a compact copy of its rows, made once here (not per reader)
        return _compacted(table).__reduce__()  # type: ignore[no-any-return]
    return _arrow_table_reduce(table)  # type: ignore[no-any-return]


def _rebuild_table(reduced: tuple[Any, tuple[Any, ...]]) -> pa.Table:
    rebuild, args = reduced
    return rebuild(*args)


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


def _whole_buffers(table: pa.Table) -> bool:
    """Whether pickling ``table``'s buffers whole sends little more than its rows."""
    held = table.get_total_buffer_size()
    return held <= _SLACK * table.nbytes + 65536
