"""Arrow table helpers shared by the pipeline: schema unification across partitions."""

from __future__ import annotations

import pyarrow as pa

from raysight.errors import InputError


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
    views = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}
    if not any(f.type in views for f in table.schema):
        return table
    schema = pa.schema([f.with_type(views.get(f.type, f.type)) for f in table.schema],
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
