"""The step functions of a job graph's join, union and results nodes.

A join plans from its sides' schemas (known from their steps' reports, no data read), then
either broadcasts its small side (one task gathers it, every partition of the other side is
joined with it) or hash-shuffles both sides by key into the same number of shards and joins
shard by shard, one Ray task each. A union conforms every partition of its inputs to their
unified schema. The results step renders every chart and writes every export of the job, each
from the analysis (or data node) it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from raysight.analyses.relational.config import JoinConfig, Side, UnionConfig
from raysight.analyses.relational.joins import join_broadcast, join_shard
from raysight.analyses.relational.plan import JoinPlan, plan_join
from raysight.analyses.relational.shards import asof_shards, hash_shards
from raysight.analyses.relational.strategy import choose_strategy
from raysight.analyses.relational.union import union_schema, union_tables
from raysight.engine.context import Partitions, StepContext
from raysight.engine.resources import cluster_cpus
from raysight.errors import InputError
from raysight.job.steps import render_chart, stage_sink, write_export
from raysight.plugins import (
    AnalysisResult,
    AnalysisSection,
    Chart,
    Exporter,
    ReportContext,
    Sink,
)
from raysight.tables import conform, portable, unify

# ---------------------------------------------------------------------------------------------
# joins

#: the most Arrow bytes of the large side one broadcast join task gets (unless a single
#: partition is larger): bounds a task's memory when a few CPUs face a large side
GROUP_BYTES = 512 * 2**20


@dataclass(frozen=True)
class PlannedJoin:
    """A join's sides with its plan and the strategy chosen for it."""

    left: Partitions
    right: Partitions
    plan: JoinPlan
    strategy: str  # broadcast | shuffle
    small: Side | None = None

    def side(self, side: Side) -> Partitions:
        return self.left if side == "left" else self.right


def schema_of(partitions: Partitions, node: str) -> pa.Schema:
    """The unified schema of a node's partitions, from the reports of the steps that made
    them (no data is read)."""
    schemas = [r.schema for r in partitions.reports if r is not None and r.schema is not None]
    if not schemas:
        raise InputError(f"node {node!r} has no partitions whose schema is known", node=node)
    return unify(schemas)


def _bytes(partitions: Partitions) -> int:
    return sum(r.bytes or 0 for r in partitions.reports if r is not None)


def plan_join_step(sides: tuple[Partitions, Partitions] | Partitions, config: JoinConfig,
                   node: str) -> PlannedJoin:
    """Driver step: the join's plan from its sides' schemas, and broadcast or shuffle (a
    self-join, whose sides are one node, gets that node's partitions once)."""
    left, right = (sides, sides) if isinstance(sides, Partitions) else sides
    plan = plan_join(config, schema_of(left, config.left), schema_of(right, config.right), node)
    strategy, small = choose_strategy(config, _bytes(left), _bytes(right))
    return PlannedJoin(left, right, plan, strategy, small)


def is_broadcast(_: Any, planned: PlannedJoin) -> bool:
    return planned.strategy == "broadcast"


def small_side(planned: PlannedJoin) -> Partitions:
    """Driver step: the side to broadcast."""
    assert planned.small is not None
    return planned.side(planned.small)


def gather(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """One table of every partition of a side, one chunk per column (moved once, then
    shared by every task; Polars builds its hash table from one chunk faster)."""
    return pa.concat_tables([conform(t, schema) for t in tables]).combine_chunks() if tables \
        else schema.empty_table()


def gather_inputs(planned: PlannedJoin) -> tuple[Partitions, pa.Schema]:
    """Driver step: the small side's partitions and the schema they are gathered to."""
    assert planned.small is not None
    plan = planned.plan
    return planned.side(planned.small), (plan.left_schema if planned.small == "left"
                                         else plan.right_schema)


def broadcast_inputs(planned_and_small: tuple[PlannedJoin, Any]) -> tuple[Any, ...]:
    """Driver step: the large side's partitions in groups (one join task each, see
    :func:`grouped`), the gathered small side and the plan."""
    planned, small = planned_and_small
    large: Side = "right" if planned.small == "left" else "left"
    return grouped(planned.side(large), cluster_cpus()), small, planned.plan, planned.small


def grouped(partitions: Partitions, tasks: int, most_bytes: int = GROUP_BYTES) -> Partitions:
    """Neighbouring partitions in groups of about equal count, one Partitions each: as many
    groups as ``tasks`` (or as partitions, if fewer), more where a group would hold over
    ``most_bytes`` (Arrow bytes from the partitions' reports).

    Each task of a broadcast join builds the small side's hash table again, so a task per
    partition repeats that work where partitions outnumber CPUs: 1e7 fact rows in 8
    partitions joined with 1e6 dimension rows took 2.8 s in 8 tasks on 2 CPUs, 1.3 s in 2
    (benchmarks/bench_graph.py --only join --strategy broadcast). A shuffle splits a group
    of partitions in one task too: fewer tasks, and fewer, larger shard pieces to join."""
    count = len(partitions)
    sizes = [(r.bytes or 0) if r is not None else 0 for r in partitions.reports]
    sizes += [0] * (count - len(sizes))
    groups = max(1, min(count, tasks))
    while True:
        bounds = [count * g // groups for g in range(groups + 1)]
        if groups >= count or max(sum(sizes[a:b]) for a, b in zip(bounds, bounds[1:],
                                                                   strict=False)) <= most_bytes:
            break
        groups += 1
    reports = partitions.reports
    return Partitions([Partitions(partitions.items[a:b], reports[a:b])
                       for a, b in zip(bounds, bounds[1:], strict=False) if b > a])


def broadcast_join(parts: list[pa.Table], small: pa.Table, plan: JoinPlan,
                   side: Side) -> pa.Table:
    """One group of the large side's partitions joined with the whole small side."""
    return join_broadcast(parts, [small], plan, side)


def shard_inputs(planned: PlannedJoin, side: Side) -> tuple[Partitions, JoinPlan, Side]:
    """Driver step: one side's partitions in groups (one split task each, see
    :func:`grouped`), to be hash-split by key."""
    return grouped(planned.side(side), cluster_cpus()), planned.plan, side


def shard_side(tables: list[pa.Table], plan: JoinPlan, side: Side,
               shards: int) -> list[pa.Table]:
    """A group of partitions of one side, as one table, split into ``shards`` by key (as-of:
    by its by keys)."""
    schema = plan.left_schema if side == "left" else plan.right_schema
    table = tables[0] if len(tables) == 1 else \
        pa.concat_tables([conform(t, schema) for t in tables])
    if plan.how == "asof":
        parts = asof_shards(table, plan, side, shards)
        return parts if len(parts) == shards else parts + [table.slice(0, 0)] * (shards - 1)
    return hash_shards(table, plan.shard_keys(side), plan.casts(side), shards)


def shard_pairs(value: tuple[PlannedJoin, tuple[Partitions, Partitions]]) -> tuple[Any, ...]:
    """Driver step: shard j of the left side with shard j of the right, for every j."""
    planned, (left, right) = value
    return Partitions(list(zip(left.items, right.items, strict=True))), planned.plan


def join_pair(left: list[pa.Table], right: list[pa.Table], plan: JoinPlan) -> pa.Table:
    return join_shard(left, right, plan)


# ---------------------------------------------------------------------------------------------
# unions


def union_inputs(inputs: tuple[Partitions, ...], config: UnionConfig,
                 node: str) -> tuple[Partitions, pa.Schema]:
    """Driver step: every partition of the inputs, in order, and their unified schema."""
    schemas = {name: schema_of(p, name) for name, p in zip(config.inputs, inputs, strict=True)}
    items = [item for p in inputs for item in p.items]
    reports = [r for p in inputs for r in p.reports]
    return Partitions(items, reports), union_schema(schemas, node)


def union_partition(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return union_tables([table], schema)


def union_shard(table: pa.Table, schema: pa.Schema, shards: int) -> list[pa.Table]:
    """One input partition of a distinct union, conformed to its schema and split by a hash
    of every column, so that equal rows of any partitions meet in one shard."""
    conformed = union_tables([table], schema)
    return hash_shards(conformed, conformed.column_names, None, shards)


def union_shards(value: tuple[tuple[Partitions, pa.Schema], Partitions]
                 ) -> tuple[Partitions, pa.Schema]:
    """Driver step: the shards (each holds its rows of every partition) and the schema."""
    (_, schema), shards = value
    return shards, schema


def union_distinct(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The rows of one shard of a distinct union, each once (the first kept)."""
    return union_tables(tables, schema, distinct=True)


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ResultsLayout:
    """Which analysis and data node each entry of the results step's inputs is."""

    analyses: tuple[str, ...]
    #: data nodes an export writes, with how many partitions each has
    datasets: tuple[tuple[str, int], ...]
    sources: dict[str, str]  # analysis -> the node it reads


def make_graph_results(
    analysis_results: list[AnalysisResult],
    tables: list[pa.Table],
    layout: ResultsLayout,
    facts: Any,
    charts: list[tuple[Chart[Any], str]],
    exports: list[tuple[Exporter[Any], str, str]],
    staging: str,
    info: dict[str, Any],
    ctx: StepContext,
) -> dict[str, Any]:
    """Render every chart of its analysis and write every export of its node; an export
    that cannot be written spoils no other."""
    results = {name: AnalysisResult(r.kind, portable(r.table), r.summary)
               for name, r in zip(layout.analyses, analysis_results, strict=True)}
    data: dict[str, AnalysisResult] = {}
    offset = 0
    for name, count in layout.datasets:
        parts = tables[offset:offset + count]
        offset += count
        table = pa.concat_tables(portable(t) for t in parts) if parts else pa.table({})
        data[name] = AnalysisResult("dataset", table, {"row_count": table.num_rows})
    figures: dict[str, list[tuple[str, Any]]] = {name: [] for name in results}
    visualizations = []
    for i, (chart, name) in enumerate(charts):
        entry, figure = render_chart(i, chart, results[name])
        entry["analysis"] = name
        if figure is not None:
            figures[name].append(figure)
        visualizations.append(entry)
    sections = [AnalysisSection(name, info["analysis_types"][name], result, figures[name],
                                [v["error"] for v in visualizations
                                 if v.get("analysis") == name and "error" in v],
                                layout.sources.get(name, ""))
                for name, result in results.items()]
    outputs: list[str] = []
    failed: list[dict[str, Any]] = []
    per_analysis: dict[str, list[str]] = {name: [] for name in results}
    only = next(iter(results)) if len(results) == 1 else None
    for i, (exporter, relpath, name) in enumerate(exports):
        # the report of a one-analysis job is that analysis's page, not a page of sections
        name = only if name is None and only is not None else name
        result = results.get(name) or data.get(name) or next(iter(results.values()))
        report = ReportContext(
            job_id=ctx.job_id, user_id=info["user_id"],
            analysis_type=info["analysis_type"] if name is None
            else info["analysis_types"].get(name, "dataset"), result=result,
            figures=figures.get(name, []), data_stats=facts.data_stats, metrics=facts.metrics,
            warnings=[v["error"] for v in visualizations if "error" in v],
            analyses=sections if exporter.name == "html" and only is None else [])
        if isinstance(exporter, Sink):  # staged for the job's commit; a failure fails the job
            stage_sink(i, exporter, relpath, report, staging)
            continue
        problem = None if exporter.name == "html" else exporter.problem(result.table.schema)
        error = write_export(i, exporter, relpath, report, problem, staging)
        if error is not None:
            failed.append(error)
            continue
        outputs.append(relpath)
        if name in per_analysis:
            per_analysis[name].append(relpath)
    manifest = {
        "outputs": outputs,
        "export_errors": failed,
        "visualizations": visualizations,
        "analyses": {name: {"type": info["analysis_types"][name], "rows": r.table.num_rows,
                            "columns": r.table.column_names, "summary": r.summary,
                            "outputs": per_analysis[name], "from": layout.sources.get(name)}
                     for name, r in results.items()},
        "metrics": facts.metrics,
    }
    if len(results) == 1:  # the job's result is its one analysis's
        (only,) = results.values()
        manifest.update(summary=only.summary, result_rows=only.table.num_rows,
                        result_columns=only.table.column_names)
    return manifest
