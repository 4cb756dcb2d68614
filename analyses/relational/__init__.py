"""Relational nodes of a job graph: joins and unions as plain functions over Arrow tables.

::

    from raysight.analyses.relational import (JoinConfig, choose_strategy, hash_shards,
                                              join_broadcast, join_shard, plan_join)

    config = JoinConfig(left="orders", right="customers", left_on=["customer_id"],
                        right_on=["id"], how="left")
    plan = plan_join(config, orders.schema, customers.schema, node="orders_x_customers")
    strategy, side = choose_strategy(config, orders.nbytes, customers.nbytes)
    join_broadcast(orders, [customers], plan, small_side="right")

One concept a module: ``config`` (JoinConfig, AsofOptions, UnionConfig), ``supertypes`` (the
common type of two keys or union columns), ``plan`` (keys checked, casts and the result's
columns, from schemas alone), ``shards`` (the hash partitioning of a shuffle), ``frames`` (the
Polars join of one task), ``joins`` (a shard or a broadcast over Arrow tables), ``strategy``
(broadcast or shuffle, and the measured threshold) and ``union``. No Ray inside: the job graph
compiler puts these functions in tasks.
"""

from raysight.analyses.relational.config import AsofOptions, JoinConfig, UnionConfig
from raysight.analyses.relational.joins import join_asof_shard, join_broadcast, join_shard
from raysight.analyses.relational.plan import JoinPlan, plan_join
from raysight.analyses.relational.shards import asof_shards, hash_shards
from raysight.analyses.relational.strategy import (
    BROADCAST_BYTES,
    broadcast_sides,
    choose_strategy,
)
from raysight.analyses.relational.supertypes import common_type
from raysight.analyses.relational.union import union_schema, union_tables

__all__ = [
    "BROADCAST_BYTES",
    "AsofOptions",
    "JoinConfig",
    "JoinPlan",
    "UnionConfig",
    "asof_shards",
    "broadcast_sides",
    "choose_strategy",
    "common_type",
    "hash_shards",
    "join_asof_shard",
    "join_broadcast",
    "join_shard",
    "plan_join",
    "union_schema",
    "union_tables",
]
