"""The step flows a job is planned from, one per kind of node: loading a source,
preprocessing a dataset, joining, concatenating (a union), analyzing.

Each flow takes a ``task`` factory, ``task(stage, name, fn, mode="apply", **hooks)``, that
gives a step the resources, retry policy and timeout the spec sets for its pipeline stage
(``load``, ``preprocess``, ``analyze`` ...), and the success hooks that record the run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from raysight.engine.resources import cluster_cpus
from raysight.engine.workflow import Pass, Step, Task, branch, parallel
from raysight.job import graph_steps as gs
from raysight.job import steps
from raysight.plugins import Analysis, Connector, Preprocessor

Hook = Callable[..., None] | None


class TaskFactory(Protocol):
    def __call__(self, stage: Any, name: str, fn: Any, mode: Any = "apply",
                 **hooks: Any) -> Task: ...


def load_flow(task: TaskFactory, connector: Connector[Any], source: str,
              on_loaded: Hook = None, on_planned: Hook = None) -> Step:
    """Plan the source's partitions, read each in a Ray task, and conform them to one
    schema when they differ."""
    return (
        task("load", "load.plan", partial(steps.plan_source, connector=connector),
             mode="fanout", on_success=on_planned)
        >> task("load", "load", partial(steps.read_partition, connector=connector),
                mode="map", on_success=on_loaded)
        >> task("load", "load.schema", partial(steps.schema_to_conform, source=source),
                mode="driver")
        >> task("load", "load.unify", steps.conform_partition, mode="map").when(
            steps.needs_conform, "the partitions differ in schema")
    )


def preprocess_flow(task: TaskFactory, ops: list[Preprocessor[Any]],
                    on_preprocessed: Hook = None) -> Step:
    """Row-local operations run per partition; an operation that needs whole-column
    statistics first computes partial statistics per partition and merges them."""
    flow: Step = Pass("preprocess.start")
    pending: list[Any] = []
    for op in ops:
        if getattr(op, "needs_stats", False):
            if pending:
                flow = flow >> task("preprocess", "preprocess",
                                    partial(steps.apply_ops, ops=pending), mode="map")
            flow = flow >> parallel(
                Pass(),
                task("preprocess", "preprocess.stats", partial(steps.op_partial_stats, op=op),
                     mode="map")
                >> task("preprocess", "preprocess.stats.merge",
                        partial(steps.op_merge_stats, op=op)),
            )
            pending = [op]
        else:
            pending.append(op)
    return flow >> task("preprocess", "preprocess", partial(steps.apply_ops, ops=pending),
                        mode="map", on_success=on_preprocessed)


def analyze_flow(task: TaskFactory, kernel: Analysis[Any], fan_in: int,
                 on_analyzed: Hook = None) -> Step:
    """One task on a single partition (no partial state); else partial states merged as a
    tree (no task receives more than ``fan_in`` of them), or, for holistic per-group work
    (median, top-k...), a shuffle by key with an exact reduce per shard."""
    return branch(
        steps.single_partition,
        task("analyze", "analyze", partial(steps.analyze_whole, kernel=kernel),
             on_success=on_analyzed),
        _analyze_partitions(task, kernel, fan_in, on_analyzed),
    )


def _analyze_partitions(task: TaskFactory, kernel: Analysis[Any], fan_in: int,
                        on_analyzed: Hook) -> Step:
    if kernel.shuffle_keys():
        shards = shard_count()
        return (
            task("analyze", "analyze.shuffle",
                 partial(steps.analyze_shard, kernel=kernel, shards=shards), mode="map")
            .with_checkpoint(False)
            .replace_shards(shards)
            >> task("analyze", "analyze", partial(steps.analyze_reduce, kernel=kernel),
                    mode="map")
            >> task("analyze", "analyze.combine", partial(steps.analyze_finish, kernel=kernel),
                    on_success=on_analyzed)
        )
    flow: Step = task("analyze", "analyze", partial(steps.analyze_partial, kernel=kernel),
                      mode="map")
    if kernel.mergeable:
        flow = flow >> dataclasses.replace(
            task("analyze", "analyze.merge", partial(steps.analyze_merge, kernel=kernel),
                 mode="reduce"),
            fan_in=fan_in,
        )
    return flow >> task("analyze", "analyze.combine",
                        partial(steps.analyze_combine, kernel=kernel), on_success=on_analyzed)


def join_flow(task: TaskFactory, config: Any, node: str) -> Step:
    """Plan the join from its sides' schemas and sizes, then either gather the small side
    once and join every partition of the other with it (broadcast), or hash both sides by
    key into the same shards and join shard by shard (shuffle)."""
    planned = task("preprocess", "join.plan",
                   partial(gs.plan_join_step, config=config, node=node), mode="driver")
    broadcast = (
        parallel(Pass(), task("preprocess", "join.small", gs.gather_inputs, mode="driver")
                 >> task("preprocess", "join.gather", gs.gather))
        >> task("preprocess", "join.broadcast.inputs", gs.broadcast_inputs, mode="driver")
        >> task("preprocess", "join", gs.broadcast_join, mode="map")
    )
    shards = shard_count()
    sides = parallel(*(
        task("preprocess", f"join.{side}", partial(gs.shard_inputs, side=side),
             mode="driver")
        >> task("preprocess", f"join.shard.{side}", partial(gs.shard_side, shards=shards),
                mode="map").with_checkpoint(False).replace_shards(shards)
        for side in ("left", "right")
    ))
    shuffle = (
        parallel(Pass(), sides)
        >> task("preprocess", "join.pairs", gs.shard_pairs, mode="driver")
        >> task("preprocess", "join", gs.join_pair, mode="map")
    )
    return planned >> branch(gs.is_broadcast, broadcast, shuffle)


def union_flow(task: TaskFactory, config: Any, node: str) -> Step:
    """Conform every input partition to the unified schema; a distinct union also splits
    each by a hash of all its columns and drops the duplicates shard by shard."""
    inputs = task("preprocess", "union.schema",
                  partial(gs.union_inputs, config=config, node=node), mode="driver")
    if not config.distinct:
        return inputs >> task("preprocess", "union", gs.union_partition, mode="map")
    shards = shard_count()
    return (
        inputs
        >> parallel(Pass(), task("preprocess", "union.shard",
                                 partial(gs.union_shard, shards=shards), mode="map")
                    .with_checkpoint(False).replace_shards(shards))
        >> task("preprocess", "union.shards", gs.union_shards, mode="driver")
        >> task("preprocess", "union", gs.union_distinct, mode="map")
    )


def shard_count() -> int:
    """Shards of a shuffle: one per CPU of the cluster (at least two)."""
    return max(2, cluster_cpus())


def absolute_source(source: Any) -> Any:
    """Relative local paths resolve against the current directory, here on the driver, so
    workers with another working directory read the same file."""
    path = getattr(source, "path", None)
    if isinstance(path, str) and "://" not in path and not os.path.isabs(path):
        return source.model_copy(update={"path": os.path.abspath(path)})
    return source
