"""The step functions of the analysis pipeline, at module level so they pickle by reference
into Ray workers.

Everything a step needs arrives as its input: partitions as ObjectRefs, the unified schema as
a broadcast argument of the conform step, the data statistics and run metrics as the
:class:`RunFacts` beside the analysis result, the results manifest as the input of every
notification. Plugins are bound with ``functools.partial`` when the job is planned.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from raysight.engine.context import Partitions, StepContext
from raysight.engine.failures import classify
from raysight.errors import InputError, PermanentError, TransientError, WorkflowError
from raysight.job.messages import render
from raysight.plugins import (
    Analysis,
    AnalysisResult,
    Chart,
    Connector,
    Exporter,
    Notifier,
    PartitionSpec,
    Preprocessor,
    ReportContext,
    Sink,
    pop_warnings,
)
from raysight.tables import column_stats, conform, merge_column_stats, to_arrow, unify

#: the analysis completed and its outputs were committed, but some export could not be
#: written (each is an entry of ``errors``; the other exports are there)
COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"


@dataclass(frozen=True)
class RunFacts:
    """What the driver knows about the run that the report and the notifications show:
    statistics of the loaded data and the metrics so far (timings, row counts)."""

    data_stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Loaded:
    """The shape of the loaded data, from the reports of the load tasks."""

    schema: pa.Schema
    #: True when the partitions differ in schema (they are conformed to ``schema``)
    differs: bool
    stats: dict[str, Any]


def loaded(partitions: Partitions, source: str) -> Loaded:
    """Schema and statistics of loaded partitions; a source without columns is an error."""
    schemas = [r.schema for r in partitions.reports if r.schema is not None]
    schema = schemas[0] if schemas else pa.schema([])
    differs = any(not s.equals(schema) for s in schemas[1:])
    if differs:
        schema = unify(schemas)
    if not len(schema):
        raise InputError(
            f"source {source} has no columns: every partition of it is empty "
            "(an empty file, or a JSON document without records)",
            source=source,
        )
    # a partition restored from a checkpoint has no statistics: then they are unknown (None)
    parts = [(r.rows or 0, r.details["column_stats"]) for r in partitions.reports
             if "column_stats" in r.details]
    known = len(parts) == len(partitions.reports)
    stats = {
        "row_count": partitions.rows,
        "column_count": len(schema),
        "size_bytes": sum(r.bytes or 0 for r in partitions.reports),
        "partitions": len(partitions.reports),
        # per column: type, nulls, min, max
        "columns": merge_column_stats(parts, schema) if known else
        {f.name: {"type": str(f.type), "nulls": None, "min": None, "max": None} for f in schema},
    }
    return Loaded(schema, differs, stats)


# ---------------------------------------------------------------------------------------------
# load


def plan_source(_: Any, connector: Connector[Any]) -> list[PartitionSpec]:
    return connector.plan()


def read_partition(
    partition: PartitionSpec, connector: Connector[Any], ctx: StepContext
) -> pa.Table:
    table, stats = connector.read_stats(partition)
    table, warnings = pop_warnings(table)
    if warnings:
        ctx.details["warnings"] = warnings
    ctx.set_attribute(f"partition[{ctx.partition}]", partition.label)
    ctx.details["column_stats"] = column_stats(table) if stats is None else stats
    return table


def schema_to_conform(partitions: Partitions, source: str) -> Any:
    """Driver step: the partitions, with the unified schema beside them when they differ
    (the conform step then runs on each)."""
    shape = loaded(partitions, source)
    return (partitions, shape.schema) if shape.differs else partitions


def needs_conform(_: Any, value: Any) -> bool:
    return isinstance(value, tuple)


def conform_partition(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return conform(table, schema)


# ---------------------------------------------------------------------------------------------
# preprocess


def apply_ops(
    table: pa.Table, *stats: Any, ops: list[Preprocessor[Any]], ctx: StepContext
) -> pa.Table:
    """Apply preprocessing operations to one partition; the first may come with the merged
    statistics of the whole column."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    for i, op in enumerate(ops):
        df = op.apply(df, stats[0] if (i == 0 and stats) else None, partition=ctx.partition or 0)
    return to_arrow(df)


def op_partial_stats(table: pa.Table, op: Preprocessor[Any]) -> Any:
    return op.partial_stats(_frame(table))


def op_merge_stats(partials: list[Any], op: Preprocessor[Any]) -> Any:
    return op.merge_stats(partials)


# ---------------------------------------------------------------------------------------------
# analyze


def single_partition(_: Any, value: Partitions) -> bool:
    return len(value) == 1


def analyze_whole(tables: list[pa.Table], kernel: Analysis[Any]) -> AnalysisResult:
    """Single-partition fast path: no partial state, no combine task."""
    (table,) = tables
    return kernel.run(_frame(table))


def analyze_partial(table: pa.Table, kernel: Analysis[Any]) -> Any:
    return kernel.partial(_frame(table))


def analyze_merge(partials: list[Any], kernel: Analysis[Any], ctx: StepContext) -> Any:
    """One node of the combine tree: partial states merged into one."""
    ctx.set_attribute(f"inputs[{ctx.partition}]", len(partials))
    return kernel.merge(partials)


def analyze_combine(partials: list[Any], kernel: Analysis[Any]) -> AnalysisResult:
    return kernel.combine(partials)


def analyze_shard(table: pa.Table, kernel: Analysis[Any], shards: int) -> list[pa.Table]:
    """Hash-split one partition by the kernel's keys (one output per shard)."""
    return kernel.shard(_frame(table), shards)


def analyze_reduce(tables: list[pa.Table], kernel: Analysis[Any]) -> pa.Table:
    """The exact answer for one shard: all rows of its groups, from every partition."""
    return kernel.reduce_shard(tables)


def analyze_finish(shards: list[pa.Table], kernel: Analysis[Any]) -> AnalysisResult:
    return kernel.finish(shards)


def _frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


# ---------------------------------------------------------------------------------------------
# results


def render_chart(i: int, chart: Chart[Any], result: AnalysisResult
                 ) -> tuple[dict[str, Any], tuple[str, Any] | None]:
    """The entry of chart ``i`` in the result (an ``error`` when it cannot render ``result``)
    and its (title, figure)."""
    title = getattr(chart.config, "title", "") or f"{chart.name} chart {i + 1}"
    entry: dict[str, Any] = {"index": i, "type": chart.name, "title": title}
    try:
        return entry, (title, chart.render(result))
    except WorkflowError as err:
        entry["error"] = str(err)
        return entry, None


def write_export(i: int, exporter: Exporter[Any], relpath: str, report: ReportContext,
                 problem: str | None, staging: str) -> dict[str, Any] | None:
    """Write export ``i`` into ``staging``; None, or the error entry of an export that could
    not be written (nothing of it is left; it spoils no other). A transient error raises:
    storage that may come back retries the step as a whole."""
    target = os.path.join(staging, relpath)
    try:
        if problem is not None:
            raise InputError(problem)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        exporter.export(report, target)
        return None
    except TransientError:
        raise
    except Exception as exc:
        failure = exc if isinstance(exc, WorkflowError) else classify(exc, "results")
        with contextlib.suppress(FileNotFoundError):
            os.remove(target)
        return {
            **failure.to_dict(),
            "step": "results",
            "export": i,
            "format": exporter.name,
            "path": relpath,
            "message": f"export {relpath} ({exporter.name}): {failure}",
        }


def stage_sink(i: int, sink: Sink[Any], relpath: str, report: ReportContext,
               staging: str) -> None:
    """Stage the rows of sink ``i`` in ``staging`` for the job's commit; a sink that cannot
    write them (a column its target cannot hold) fails the step, naming the sink."""
    problem = sink.problem(report.result.table.schema)
    if problem is not None:
        raise InputError(f"exports[{i}] ({sink.describe()}): {problem}", export=i)
    target = os.path.join(staging, relpath)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    sink.export(report, target)


# ---------------------------------------------------------------------------------------------
# notify


class NotificationFailed(TransientError):
    """A notifier could not deliver (retried by the notify step's policy)."""


class NotificationRefused(PermanentError):
    """A notifier's service refused the message (not retried)."""


def send_notification(
    manifest: dict[str, Any], notifier: Notifier[Any], info: dict[str, Any], ctx: StepContext
) -> dict[str, Any]:
    """Send one notification. A failure raises (the step's retry policy decides what is
    retried), and carries ``notifier`` so the pipeline can tell it from a fault of its own."""
    state = COMPLETED_WITH_ERRORS if manifest.get("export_errors") else "COMPLETED"
    metrics = manifest.get("metrics", {})
    context = {
        "job_id": ctx.job_id,
        "state": state,
        "metrics": metrics,
        "result": {**manifest.get("summary", {}), "rows": manifest.get("result_rows")},
        "analyses": manifest.get("analyses", {}),
        "outputs": manifest.get("outputs", []),
        **info,
    }
    message, missing = render(notifier.config.message, context)
    try:
        notifier.send(message, {"job_id": ctx.job_id, "state": state, "metrics": metrics})
    except TransientError as err:
        raise NotificationFailed(f"{notifier.name}: {err}", notifier=notifier.name) from None
    except WorkflowError as err:
        raise NotificationRefused(f"{notifier.name}: {err}", notifier=notifier.name) from None
    warnings = [f"{notifier.name}: unknown placeholders {sorted(set(missing))}"] if missing else []
    return {"notifier": notifier.name, "sent": True, "warnings": warnings}


def is_notifier_failure(err: WorkflowError) -> bool:
    return "notifier" in err.details


def notification_failed(err: WorkflowError) -> dict[str, Any]:
    """The outcome of a notification that failed for good (never fatal to the job)."""
    return {"notifier": err.details.get("notifier"), "sent": False, "error": str(err)}


def notification_summary(outcomes: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    sent = sum(1 for o in outcomes if o["sent"])
    errors = [w for o in outcomes for w in o.get("warnings", [])]
    errors += [o["error"] for o in outcomes if not o["sent"]]
    return {"success_count": sent, "failure_count": len(outcomes) - sent, "errors": errors}
