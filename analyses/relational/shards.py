"""Hash partitioning by key: which shard each row goes to, the same on both sides of a join.

::

    shards = hash_shards(partition, plan.left_keys, plan.left_casts, shards=8)
    shards[3]        # the rows of this partition whose keys hash to shard 3 (maybe none)

Keys are cast to the plan's common type before hashing, so an ``Int32`` 7 on the left and an
``Int64`` 7 on the right land in the same shard, whichever partition they are in. The hash is
Polars' with a fixed seed (:func:`raysight.analyses.aggregation.shuffle.shard_of`): the same in
every process of one Polars version. A row whose key is null goes to the shard of the null hash,
deterministically; it never matches, but outer joins and ``anti`` keep it. Rows keep their order
within a shard; the columns keep their input types (the join casts them), in Polars' layout
(string views).

``asof_shards`` partitions an as-of join's sides by its ``by`` keys; without them there is one
shard, the whole side, since any right row may be a left row's nearest match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl
import pyarrow as pa

from raysight.analyses.aggregation.shuffle import shard_of
from raysight.analyses.columns import as_frame
from raysight.analyses.relational.config import Side
from raysight.analyses.relational.plan import JoinPlan
from raysight.analyses.relational.supertypes import cast_to
from raysight.tables import to_arrow

__all__ = ["asof_shards", "hash_shards"]

_SHARD = "__rs_shard"


def hash_shards(table: pa.Table, keys: Sequence[str],
                casts: Mapping[str, pl.DataType] | None, shards: int) -> list[pa.Table]:
    """``table``'s rows split into ``shards`` tables by a stable hash of ``keys`` (cast by
    ``casts`` first); the i-th table holds the rows of shard i (possibly none)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, not {shards}")
    if shards == 1:
        return [table]
    frame = as_frame(table)
    hashed = frame.select(cast_to(k, casts[k]) if casts and k in casts else pl.col(k)
                          for k in keys)
    index = hashed.select(shard_of(hashed.schema, list(keys), shards).alias(_SHARD)).to_series()
    groups = frame.with_columns(index).partition_by(_SHARD, as_dict=True, maintain_order=True,
                                                    include_key=False)
    out = [to_arrow(frame.clear())] * shards
    for (number, *_), part in groups.items():
        out[int(number)] = to_arrow(part)  # type: ignore[call-overload]
    return out


def asof_shards(table: pa.Table, plan: JoinPlan, side: Side, shards: int) -> list[pa.Table]:
    """One side of an as-of join split by its ``by`` keys; ``[table]`` when it has none."""
    keys = plan.shard_keys(side)
    if not keys:
        return [table]
    return hash_shards(table, keys, plan.casts(side), shards)
