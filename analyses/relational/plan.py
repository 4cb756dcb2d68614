"""Planning a join from the schemas of its sides, before any data is read.

::

    plan = plan_join(JoinConfig(left="orders", right="customers", left_on=["customer_id"],
                                right_on=["id"], how="left"),
                     orders_schema, customers_schema, node="orders_with_customers")
    plan.left_casts      # {"customer_id": Int64} when the left key is Int32 and the right Int64
    plan.schema          # the columns of the result

``plan_join`` checks that every key exists on its side (an ``InputError`` naming the node, the
config field, the column and a close match), that each pair of keys has a common type
(:mod:`~raysight.analyses.relational.supertypes`; otherwise an ``InputError`` naming both
types), and gives the casts that bring both sides' keys to that type, so that equal values hash
to the same shard and compare equal whatever their physical width.

The columns of the result, as Polars' ``join``/``join_asof`` with their default ``coalesce``:

* ``inner``, ``left``: the left columns (the key columns hold the left keys, of the common key
  type), then the right columns except its keys;
* ``right``: the left columns except its keys, then the right columns (keys included, holding
  the right keys);
* ``full``: the left columns, then all right columns, keys included and not coalesced: a row
  without a match on one side has nulls in that side's keys;
* ``semi``, ``anti``: the left columns only;
* ``asof``: the left columns, then the right columns except the right ``by`` keys and except the
  right sorted key when it has the left one's name.

A right column whose name a left column already has gets ``suffix`` (default ``_right``); a
suffixed name that is still taken is an ``InputError``. Key columns of the result have the
common key type. Null keys never match (as SQL and Polars): they are kept, unmatched, by the
outer sides and by ``anti``. Row order of a join result is not defined.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import polars as pl
import pyarrow as pa

from raysight.analyses.columns import require_columns
from raysight.analyses.relational.config import How, JoinConfig, Side
from raysight.analyses.relational.supertypes import common_type, describe
from raysight.analyses.temporal import parse_duration
from raysight.errors import InputError
from raysight.tables import to_arrow

__all__ = ["JoinPlan", "polars_schema", "plan_join"]


@dataclass(frozen=True)
class JoinPlan:
    """What executing a join needs besides the data: keys, casts, schemas and options."""

    #: the join node's name (for errors)
    node: str
    how: How
    left_keys: tuple[str, ...]
    right_keys: tuple[str, ...]
    #: the common type of each key pair
    key_types: tuple[pl.DataType, ...]
    #: columns cast before joining and hashing (keys and by keys whose type is not the common one)
    left_casts: Mapping[str, pl.DataType]
    right_casts: Mapping[str, pl.DataType]
    #: the schemas the sides were planned with; partitions are conformed to them
    left_schema: pa.Schema
    right_schema: pa.Schema
    suffix: str = "_right"
    #: as-of only: the by keys, direction and tolerance (a timedelta for temporal keys)
    left_by: tuple[str, ...] = ()
    right_by: tuple[str, ...] = ()
    direction: Literal["backward", "forward", "nearest"] = "backward"
    tolerance: int | float | dt.timedelta | None = None
    #: the result's schema
    schema: pa.Schema = field(default_factory=lambda: pa.schema([]))

    def shard_keys(self, side: Side) -> tuple[str, ...]:
        """The columns a side is hash-partitioned by: the join keys, or an as-of's by keys."""
        if self.how == "asof":
            return self.left_by if side == "left" else self.right_by
        return self.left_keys if side == "left" else self.right_keys

    def casts(self, side: Side) -> Mapping[str, pl.DataType]:
        """The casts of one side's columns."""
        return self.left_casts if side == "left" else self.right_casts


def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The Polars dtypes of an Arrow schema's columns."""
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


def _require(schema: pa.Schema, keys: list[str], *, node: str, side: str, input_node: str,
             field_name: str) -> None:
    try:
        require_columns(schema.names, keys, what=f"{field_name} column")
    except InputError as err:
        raise InputError(f"join {node!r}: {err.message} in the {side} input {input_node!r}",
                         node=node, field=field_name, **err.details) from None


def _pairs(
    config: JoinConfig, left: pl.Schema, right: pl.Schema, node: str,
    pairs: list[tuple[str, str]], fields: tuple[str, str],
) -> tuple[list[pl.DataType], dict[str, pl.DataType], dict[str, pl.DataType]]:
    types: list[pl.DataType] = []
    left_casts: dict[str, pl.DataType] = {}
    right_casts: dict[str, pl.DataType] = {}
    for lkey, rkey in pairs:
        ltype, rtype = left[lkey], right[rkey]
        common = common_type(ltype, rtype)
        if common is None:
            raise InputError(
                f"join {node!r}: key {fields[0]} {lkey!r} is {ltype} in {config.left!r} but "
                f"{fields[1]} {rkey!r} is {rtype} in {config.right!r}; "
                f"{describe(ltype, rtype)}",
                node=node, column=lkey, field=fields[0],
                left_type=str(ltype), right_type=str(rtype))
        types.append(common)
        if ltype != common:
            left_casts[lkey] = common
        if rtype != common:
            right_casts[rkey] = common
    return types, left_casts, right_casts


def _tolerance(config: JoinConfig, key: str, dtype: pl.DataType,
               node: str) -> int | float | dt.timedelta | None:
    assert config.asof is not None
    tolerance = config.asof.tolerance
    temporal = isinstance(dtype, (pl.Date, pl.Datetime, pl.Duration))
    if not (temporal or dtype.is_integer() or dtype.is_float()):
        raise InputError(f"join {node!r}: the as-of key {key!r} is {dtype}; it must be a "
                         f"number, a date or a datetime", node=node, column=key,
                         field=config.key_fields[0])
    if tolerance is None:
        return None
    if temporal != isinstance(tolerance, str):
        wanted = "a duration such as '5m'" if temporal else "a number"
        raise InputError(f"join {node!r}: tolerance {tolerance!r} does not fit the as-of key "
                         f"{key!r} of type {dtype}; give {wanted}", node=node, column=key,
                         field="asof.tolerance")
    if isinstance(tolerance, str):
        return dt.timedelta(minutes=parse_duration(tolerance))
    return tolerance


def plan_join(config: JoinConfig, left_schema: pa.Schema, right_schema: pa.Schema,
              node: str) -> JoinPlan:
    """The plan of join ``node``: casts of its keys and the result's schema (InputError when a
    key is missing on its side or a key pair has no common type)."""
    lfield, rfield = config.key_fields
    _require(left_schema, config.left_keys, node=node, side="left", input_node=config.left,
             field_name=lfield)
    _require(right_schema, config.right_keys, node=node, side="right", input_node=config.right,
             field_name=rfield)
    left, right = polars_schema(left_schema), polars_schema(right_schema)
    types, left_casts, right_casts = _pairs(
        config, left, right, node, list(zip(config.left_keys, config.right_keys, strict=True)),
        (lfield, rfield))
    plan = JoinPlan(
        node=node, how=config.how, left_keys=tuple(config.left_keys),
        right_keys=tuple(config.right_keys), key_types=tuple(types), left_casts=left_casts,
        right_casts=right_casts, left_schema=left_schema, right_schema=right_schema,
        suffix=config.suffix)
    if config.asof is not None:
        options = config.asof
        bfields = ("asof.by", "asof.by") if options.by is not None else (
            "asof.by_left", "asof.by_right")
        _require(left_schema, options.left_by, node=node, side="left", input_node=config.left,
                 field_name=bfields[0])
        _require(right_schema, options.right_by, node=node, side="right",
                 input_node=config.right, field_name=bfields[1])
        _, by_left_casts, by_right_casts = _pairs(
            config, left, right, node,
            list(zip(options.left_by, options.right_by, strict=True)), bfields)
        plan = replace(
            plan, left_by=tuple(options.left_by), right_by=tuple(options.right_by),
            left_casts={**left_casts, **by_left_casts},
            right_casts={**right_casts, **by_right_casts}, direction=options.direction,
            tolerance=_tolerance(config, config.left_keys[0], types[0], node))
    return replace(plan, schema=_output_schema(plan))


def _output_schema(plan: JoinPlan) -> pa.Schema:
    from raysight.analyses.relational.frames import join_frames, side_frame

    left, right = side_frame([], plan, "left"), side_frame([], plan, "right")
    try:
        return to_arrow(join_frames(left, right, plan)).schema
    except pl.exceptions.DuplicateError as err:
        raise InputError(f"join {plan.node!r}: the suffix {plan.suffix!r} gives a column name "
                         f"that is already taken ({str(err).splitlines()[0]}); choose another "
                         f"suffix", node=plan.node, field="suffix") from None
