"""The join itself, in one process: Polars over the frames of one shard (or one broadcast).

::

    left = side_frame(left_tables, plan, "left")     # conformed, concatenated, keys cast
    right = side_frame(right_tables, plan, "right")
    result_table(join_frames(left, right, plan), plan)

Every distributed path ends here, so a shuffle, a broadcast and a single-process join give the
same rows. An as-of join sorts both sides by the sorted key (stably, so rows with equal keys keep
their input order: with ties, ``backward`` takes the last such right row and ``forward`` the
first, as Polars on the whole table); right rows with a null sorted key or a null ``by`` key
never match and are dropped, left rows with a null sorted key are kept unmatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from raysight.analyses.columns import as_frame
from raysight.analyses.relational.config import Side
from raysight.analyses.relational.supertypes import cast_to
from raysight.tables import conform, to_arrow

if TYPE_CHECKING:
    from raysight.analyses.relational.plan import JoinPlan

__all__ = ["join_frames", "result_table", "side_frame"]


def side_frame(tables: Sequence[pa.Table], plan: JoinPlan, side: Side) -> pl.DataFrame:
    """One side's tables conformed to its planned schema, concatenated, keys cast."""
    schema = plan.left_schema if side == "left" else plan.right_schema
    frames = [as_frame(conform(t, schema)) for t in tables] or [as_frame(schema.empty_table())]
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical", rechunk=False)
    casts = plan.casts(side)
    if casts:
        frame = frame.with_columns(cast_to(name, dtype) for name, dtype in casts.items())
    return frame


def join_frames(left: pl.DataFrame, right: pl.DataFrame, plan: JoinPlan) -> pl.DataFrame:
    """The join of two whole sides (keys already cast), as planned."""
    if plan.how == "asof":
        return _asof(left, right, plan)
    return left.join(right, left_on=list(plan.left_keys), right_on=list(plan.right_keys),
                     how=plan.how, suffix=plan.suffix, nulls_equal=False)


def _asof(left: pl.DataFrame, right: pl.DataFrame, plan: JoinPlan) -> pl.DataFrame:
    lkey, rkey = plan.left_keys[0], plan.right_keys[0]
    right = right.drop_nulls([rkey, *plan.right_by]).sort(rkey, maintain_order=True)
    unkeyed = left.filter(pl.col(lkey).is_null())
    left = left.filter(pl.col(lkey).is_not_null()).sort(lkey, maintain_order=True)
    joined = left.join_asof(
        right, left_on=lkey, right_on=rkey, by_left=list(plan.left_by) or None,
        by_right=list(plan.right_by) or None, strategy=plan.direction, suffix=plan.suffix,
        tolerance=plan.tolerance, check_sortedness=False)
    if unkeyed.height == 0:
        return joined
    return pl.concat([joined, unkeyed], how="diagonal")


def result_table(frame: pl.DataFrame, plan: JoinPlan) -> pa.Table:
    """A join result as an Arrow table of exactly the planned schema."""
    return conform(to_arrow(frame), plan.schema)
