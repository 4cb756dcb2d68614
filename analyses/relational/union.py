"""Unions: the rows of several nodes one below the other, columns matched by name.

::

    schema = union_schema({"sales_2023": s23.schema, "sales_2024": s24.schema}, node="sales")
    union_tables([*parts_2023, *parts_2024], schema)

The result's columns are every input's columns in first-seen order (inputs in listed order); a
column an input lacks is null in its rows. Types unify as join keys do
(:mod:`~raysight.analyses.relational.supertypes`: integers and floats widen, strings and
categoricals become strings, datetimes go to the finer unit); a column whose types have no
common one is an ``InputError`` naming the node, the column and both inputs. This is Polars'
``concat(how="diagonal_relaxed")`` without its casts of numbers to strings.

Rows keep the order of the tables given. ``distinct=True`` keeps the first of each set of equal
rows (nulls equal, as SQL ``UNION``); distributed, hash-partition every input by all columns
(``hash_shards(t, schema.names, None, n)``) and call ``union_tables(..., distinct=True)`` per
shard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
import pyarrow as pa

from raysight.analyses.columns import as_frame
from raysight.analyses.relational.plan import polars_schema
from raysight.analyses.relational.supertypes import cast_to, common_type, describe
from raysight.errors import InputError
from raysight.tables import to_arrow

__all__ = ["union_schema", "union_tables"]


def union_schema(schemas: Mapping[str, pa.Schema], node: str) -> pa.Schema:
    """The schema of the union of the inputs ``schemas`` (input name -> schema)."""
    types: dict[str, pl.DataType] = {}
    first: dict[str, str] = {}
    for name, schema in schemas.items():
        for column, dtype in polars_schema(schema).items():
            if column not in types:
                types[column], first[column] = dtype, name
                continue
            common = common_type(types[column], dtype)
            if common is None:
                raise InputError(
                    f"union {node!r}: column {column!r} is {types[column]} in {first[column]!r} "
                    f"but {dtype} in {name!r}; {describe(types[column], dtype)}",
                    node=node, column=column, inputs=[first[column], name],
                    types=[str(types[column]), str(dtype)])
            types[column] = common
    return to_arrow(pl.DataFrame(schema=types)).schema


def union_tables(tables: Sequence[pa.Table], schema: pa.Schema,
                 distinct: bool = False) -> pa.Table:
    """``tables`` one below the other with exactly ``schema``'s columns; duplicate rows
    dropped (the first kept) when ``distinct``."""
    target = polars_schema(schema)
    frames = []
    for table in tables:
        frame = as_frame(table)
        frames.append(frame.select(
            cast_to(name, dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
            for name, dtype in target.items()))
    out = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=target)
    if distinct:
        out = out.unique(maintain_order=True)
    return to_arrow(out)
