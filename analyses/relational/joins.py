"""Executing a join over Arrow tables: one shard of a shuffle, or one broadcast task.

::

    plan = plan_join(config, left_schema, right_schema, node="orders_with_customers")
    # shuffle: every partition split by key, shard i of each side joined in task i
    left_shards = [hash_shards(p, plan.left_keys, plan.left_casts, 8) for p in left_parts]
    right_shards = [hash_shards(p, plan.right_keys, plan.right_casts, 8) for p in right_parts]
    out = [join_shard([s[i] for s in left_shards], [s[i] for s in right_shards], plan)
           for i in range(8)]
    # broadcast: every left partition joined with the whole (small) right side
    out = [join_broadcast(p, right_parts, plan, small_side="right") for p in left_parts]

The answers concatenated are the rows of Polars' ``join`` on the whole sides (in another order:
the row order of a join is not defined). An as-of join shards by its ``by`` keys
(:func:`~raysight.analyses.relational.shards.asof_shards`) and runs ``join_shard`` (alias
``join_asof_shard``) per shard, or broadcasts its right side. These are plain functions, no Ray
inside: the graph compiler wraps them in tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from raysight.analyses.relational.config import Side
from raysight.analyses.relational.frames import join_frames, result_table, side_frame
from raysight.analyses.relational.plan import JoinPlan
from raysight.analyses.relational.strategy import broadcast_sides
from raysight.errors import PlanError

__all__ = ["join_asof_shard", "join_broadcast", "join_shard"]


def join_shard(left_tables: Sequence[pa.Table], right_tables: Sequence[pa.Table],
               plan: JoinPlan) -> pa.Table:
    """The join of one shard: that shard's tables of each side (from every partition)
    concatenated and joined; either list may be empty."""
    left = side_frame(left_tables, plan, "left")
    right = side_frame(right_tables, plan, "right")
    return result_table(join_frames(left, right, plan), plan)


#: one shard of an as-of join (the sorting happens inside): the same function
join_asof_shard = join_shard


def join_broadcast(part: pa.Table | Sequence[pa.Table], small: Sequence[pa.Table],
                   plan: JoinPlan, small_side: Side) -> pa.Table:
    """The join of one partition of the large side (or of several, as one) with the whole
    small side (all its partitions); PlanError when the join kind cannot broadcast
    ``small_side``."""
    if small_side not in broadcast_sides(plan.how):
        raise PlanError(f"join {plan.node!r}: a {plan.how} join cannot broadcast its "
                        f"{small_side} side", node=plan.node)
    large = [part] if isinstance(part, pa.Table) else part
    if small_side == "right":
        left, right = side_frame(large, plan, "left"), side_frame(small, plan, "right")
    else:
        left, right = side_frame(small, plan, "left"), side_frame(large, plan, "right")
    return result_table(join_frames(left, right, plan), plan)
