"""The analysis pipeline: load → preprocess → analyze → results → notify → complete.

:class:`AnalysisJob` turns a validated job spec into a workflow of Ray tasks and runs it. Data
between steps is a partitioned table: one ObjectRef of an Arrow table per partition. Exports are
written to a staging folder and moved into the run directory only when the job completes, so a
failed job leaves no partial output files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import ray

from raysight import registry
from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import Fault, RunContext, StepOutcome
from raysight.engine.events import EventLog, JsonlObserver, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.failures import classify
from raysight.engine.observability import AuditLog, MetricsObserver, otel_observer
from raysight.engine.resources import Resources, node_resources
from raysight.engine.retry import Exponential, RetryPolicy
from raysight.engine.workflow import Pass, Step, Task, branch, parallel, tasks
from raysight.errors import Cancelled, InputError, TransientError, WorkflowError
from raysight.job.messages import render
from raysight.job.rundir import checkpoint_url, driver_identity, driver_lock
from raysight.job.spec import (
    DEFAULT_STEP_RETRIES,
    apply_override,
    export_path,
    parse_spec,
    render_job_id,
)
from raysight.plugins import AnalysisResult, ReportContext
from raysight.tables import conform, portable, to_arrow, unify

log = logging.getLogger(__name__)

STAGING = ".staging"
SPEC_FILE = "spec.json"
#: the analysis completed and its outputs were committed, but some export could not be
#: written (each is an entry of ``errors``; the other exports are there)
COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
DONE_STATES = ("COMPLETED", COMPLETED_WITH_ERRORS)


@dataclass
class JobResult:
    """What a finished job reports (written as ``result.json``)."""

    job_id: str
    user_id: str
    state: str  # COMPLETED | COMPLETED_WITH_ERRORS | FAILED | CANCELED
    analysis_type: str
    priority: int
    run_dir: str
    started_at: str
    finished_at: str
    execution_time_s: float
    data_stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    visualizations: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    execution_path: list[str] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the job completed and wrote every output it was asked for."""
        return self.state == "COMPLETED"

    @property
    def input_error(self) -> bool:
        """True when the job failed because of its input (exit status 2 in the CLI)."""
        return any(e.get("category") in ("invalid_input", "invalid_spec") for e in self.errors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Step functions (module level so they pickle by reference into Ray workers)


def _plan_source(_: Any, connector: Any) -> list[Any]:
    return connector.plan()


def _read_partition(partition: Any, connector: Any, ctx: Any) -> pa.Table:
    table = connector.read(partition)
    ctx.set_attribute(f"partition[{ctx.partition}]", partition.label)
    return table


def _conform(table: pa.Table, ctx: Any) -> pa.Table:
    return conform(table, ctx.params["schema"])


def _apply_ops(table: pa.Table, *stats: Any, ops: list[Any], ctx: Any) -> pa.Table:
    """Apply preprocessing operations to one partition; the first may come with the merged
    statistics of the whole column."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    for i, op in enumerate(ops):
        df = op.apply(df, stats[0] if (i == 0 and stats) else None, partition=ctx.partition or 0)
    return to_arrow(df)


def _op_partial_stats(table: pa.Table, op: Any) -> Any:
    return op.partial_stats(pl.from_arrow(table))


def _op_merge_stats(partials: list[Any], op: Any) -> Any:
    return op.merge_stats(partials)


def _analyze_whole(tables: list[pa.Table], kernel: Any) -> AnalysisResult:
    """Single-partition fast path: no partial state, no combine task."""
    (table,) = tables
    return kernel.run(pl.from_arrow(table))


def _analyze_partial(table: pa.Table, kernel: Any) -> Any:
    return kernel.partial(pl.from_arrow(table))


def _analyze_combine(partials: list[Any], kernel: Any) -> AnalysisResult:
    return kernel.combine(partials)


def _analyze_shard(table: pa.Table, kernel: Any, shards: int) -> list[pa.Table]:
    """Hash-split one partition by the kernel's keys (one output per shard)."""
    return kernel.shard(pl.from_arrow(table), shards)


def _analyze_reduce(tables: list[pa.Table], kernel: Any) -> pa.Table:
    """The exact answer for one shard: all rows of its groups, from every partition."""
    return kernel.reduce_shard(tables)


def _analyze_finish(shards: list[pa.Table], kernel: Any) -> AnalysisResult:
    return kernel.finish(shards)


def _make_results(result: AnalysisResult, charts: list[Any], exports: list[tuple[Any, str]],
                  staging: str, info: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Render charts (an unsupported pairing is an error entry) and write the exports."""
    result = AnalysisResult(result.kind, portable(result.table), result.summary)
    figures, visualizations = [], []
    for i, chart in enumerate(charts):
        title = getattr(chart.config, "title", "") or f"{chart.name} chart {i + 1}"
        entry: dict[str, Any] = {"index": i, "type": chart.name, "title": title}
        try:
            figures.append((title, chart.render(result)))
        except WorkflowError as err:
            entry["error"] = str(err)
        visualizations.append(entry)
    report = ReportContext(
        job_id=ctx.job_id, user_id=info["user_id"], analysis_type=info["analysis_type"],
        result=result, figures=figures, data_stats=ctx.params.get("data_stats", {}),
        metrics=ctx.params.get("metrics", {}),
        warnings=[v["error"] for v in visualizations if "error" in v],
    )
    # every export is checked against the result's schema before any file is written
    problems = [exporter.problem(result.table.schema) for exporter, _ in exports]
    outputs, failed = [], []
    for i, ((exporter, relpath), problem) in enumerate(zip(exports, problems, strict=True)):
        target = os.path.join(staging, relpath)
        try:
            if problem is not None:
                raise InputError(problem)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            exporter.export(report, target)
            outputs.append(relpath)
        except TransientError:
            raise  # storage that may come back: the step is retried as a whole
        except Exception as exc:  # one export that cannot be written spoils no other
            failure = exc if isinstance(exc, WorkflowError) else classify(exc, "results")
            with contextlib.suppress(FileNotFoundError):
                os.remove(target)
            failed.append({**failure.to_dict(), "step": "results", "export": i,
                           "format": exporter.name, "path": relpath,
                           "message": f"export {relpath} ({exporter.name}): {failure}"})
    return {"outputs": outputs, "export_errors": failed, "visualizations": visualizations,
            "summary": result.summary, "result_rows": result.table.num_rows,
            "result_columns": result.table.column_names}


def _send_notifications(manifest: dict[str, Any], notifiers: list[Any], ctx: Any,
                        attempts: int = 3, backoff_s: float = 0.5) -> dict[str, Any]:
    """Send every notification; each is retried a few times, and failures are counted, never
    fatal (a finished analysis stays finished)."""
    state = COMPLETED_WITH_ERRORS if manifest.get("export_errors") else "COMPLETED"
    context = {
        "job_id": ctx.job_id, "state": state, "metrics": ctx.params.get("metrics", {}),
        "result": {**manifest.get("summary", {}), "rows": manifest.get("result_rows")},
        "outputs": manifest.get("outputs", []), **ctx.params.get("info", {}),
    }
    sent, failed, errors = 0, 0, []
    for notifier in notifiers:
        message, missing = render(notifier.config.message, context)
        if missing:
            errors.append(f"{notifier.name}: unknown placeholders {sorted(set(missing))}")
        payload = {"job_id": ctx.job_id, "state": state, "metrics": context["metrics"]}
        for attempt in range(1, attempts + 1):
            try:
                notifier.send(message, payload)
                sent += 1
                break
            except TransientError as err:
                if attempt == attempts:
                    failed += 1
                    errors.append(f"{notifier.name}: {err}")
                else:
                    time.sleep(backoff_s * 2 ** (attempt - 1))
            except WorkflowError as err:
                failed += 1
                errors.append(f"{notifier.name}: {err}")
                break
    return {"success_count": sent, "failure_count": failed, "errors": errors}


# ---------------------------------------------------------------------------------------------
# The job


class AnalysisJob:
    """A job spec planned as a workflow of Ray tasks.

    >>> job = AnalysisJob(load_spec("examples/sales_by_category.yaml"))  # doctest: +SKIP
    >>> result = job.run()                                                # doctest: +SKIP
    >>> result.state, result.outputs                                      # doctest: +SKIP
    ('COMPLETED', ['report.html', 'analysis.json'])
    """

    def __init__(self, spec: Any, run_dir: str | Path = "runs", job_id: str | None = None,
                 resume: bool = False) -> None:
        self.spec = spec
        self.job_id = job_id or render_job_id(spec.job_id)
        self.run_root = Path(os.path.abspath(run_dir))  # normalised: no "jobs/../runs"
        self.job_dir = self.run_root / self.job_id
        self.staging = self.job_dir / STAGING
        self.resuming = resume
        self.connector = registry.connectors.build(_absolute_source(spec.source))
        self.ops = [registry.preprocessors.build(op) for op in spec.preprocessing]
        self.kernel = registry.analyses.build(spec.analysis)
        self.charts = [registry.charts.build(v) for v in spec.visualizations]
        self.exports = [(registry.exporters.build(e), export_path(e)) for e in spec.exports]
        self.notifiers = [registry.notifiers.build(n) for n in spec.notifications]

    @classmethod
    def resume(cls, job_id: str, run_dir: str | Path = "runs",
               overrides: list[str] | tuple[str, ...] = ()) -> AnalysisJob:
        """The job of an earlier run, to be finished from its checkpoints: steps whose output
        was persisted are restored, the rest run. ``overrides`` may change execution
        settings (``execution.timeout_s=600``)."""
        job_dir = Path(os.path.abspath(run_dir)) / job_id
        spec_file = job_dir / SPEC_FILE
        if not spec_file.exists():
            raise InputError(f"no run {job_id!r} to resume under {job_dir.parent} "
                             f"({SPEC_FILE} not found)", path=str(spec_file))
        previous = job_dir / "result.json"
        if previous.exists() and json.loads(previous.read_text())["state"] == "COMPLETED":
            raise InputError(f"job {job_id} already completed; nothing to resume")
        data = json.loads(spec_file.read_text(encoding="utf-8"))
        for item in overrides:
            apply_override(data, item)
        spec = parse_spec(data, str(spec_file))
        return cls(spec, run_dir=run_dir, job_id=job_id, resume=True)

    # -- planning --------------------------------------------------------------------------

    def _task(self, stage: str, name: str, fn: Any, mode: str = "apply", **hooks: Any) -> Task:
        spec = self.spec
        retries = DEFAULT_STEP_RETRIES[stage]
        if spec.execution.max_retries is not None:
            retries = min(retries, spec.execution.max_retries)
        r = spec.execution.retry
        res = spec.resources.get(stage)
        resources = Resources() if res is None else Resources().merged(
            num_cpus=res.num_cpus, num_gpus=res.num_gpus, memory=res.memory,
            resources=res.resources)
        return Task(fn=fn, name=name, mode=mode, resources=resources,  # type: ignore[arg-type]
                    retry=RetryPolicy(max_retries=retries, backoff=Exponential(
                        r.initial_s, r.multiplier, r.max_s, r.jitter)),
                    timeout_s=spec.execution.step_timeouts_s.get(stage), **hooks)

    def workflow(self) -> Step:
        """The plan: every step a Ray task named ``<job_id>/<step>``."""
        load = (self._task("load", "load.plan", partial(_plan_source, connector=self.connector),
                           mode="fanout", on_success=self._on_planned)
                >> self._task("load", "load", partial(_read_partition, connector=self.connector),
                              mode="map", on_success=self._on_loaded)
                >> self._task("load", "load.unify", _conform, mode="map").when(
                    lambda ctx: "schema" in ctx.params, "the partitions differ in schema"))
        preprocess = self._preprocess_flow().when(lambda ctx: bool(self.ops),
                                                  "the spec has preprocessing operations")
        kernel = self.kernel
        if kernel.shuffle_keys():
            # holistic per-group work (median, top-k...): shuffle rows by key, reduce each
            # shard exactly, then put the shards together
            shards = _shard_count()
            many: Step = (
                self._task("analyze", "analyze.shuffle", partial(
                    _analyze_shard, kernel=kernel, shards=shards), mode="map",
                ).with_checkpoint(False).replace_shards(shards)
                >> self._task("analyze", "analyze", partial(_analyze_reduce, kernel=kernel),
                              mode="map")
                >> self._task("analyze", "analyze.combine", partial(_analyze_finish,
                                                                    kernel=kernel),
                              on_success=self._on_analyzed))
        else:
            many = (self._task("analyze", "analyze", partial(_analyze_partial, kernel=kernel),
                               mode="map")
                    >> self._task("analyze", "analyze.combine", partial(
                        _analyze_combine, kernel=kernel), on_success=self._on_analyzed))
        analyze = branch(
            lambda ctx: ctx.state.get("partitions", 1) == 1,
            self._task("analyze", "analyze", partial(_analyze_whole, kernel=kernel),
                       on_success=self._on_analyzed),
            many,
        )
        info = {"user_id": self.spec.user_id, "analysis_type": self.kernel.name}
        # results re-run on resume: they write the staged files that the commit moves
        results = self._task("results", "results", partial(
            _make_results, charts=self.charts, exports=self.exports, staging=str(self.staging),
            info=info), on_success=self._on_results).with_checkpoint(False)
        notify = self._task("notify", "notify", partial(
            _send_notifications, notifiers=self.notifiers), on_success=self._on_notified).when(
            lambda ctx: bool(self.notifiers), "the spec has notifications")
        complete = self._task("complete", "complete", _complete, mode="driver",
                              on_success=self._on_completed)
        return load >> preprocess >> analyze >> results >> notify >> complete

    def _preprocess_flow(self) -> Step:
        """Row-local operations run per partition; an operation that needs whole-column
        statistics first computes partial statistics per partition and merges them."""
        flow: Step = Pass("preprocess.start")
        pending: list[Any] = []
        for op in self.ops:
            if getattr(op, "needs_stats", False):
                if pending:
                    flow = flow >> self._task("preprocess", "preprocess",
                                              partial(_apply_ops, ops=pending), mode="map")
                flow = flow >> parallel(
                    Pass(),
                    self._task("preprocess", "preprocess.stats",
                               partial(_op_partial_stats, op=op), mode="map")
                    >> self._task("preprocess", "preprocess.stats.merge",
                                  partial(_op_merge_stats, op=op)),
                )
                pending = [op]
            else:
                pending.append(op)
        return flow >> self._task("preprocess", "preprocess", partial(_apply_ops, ops=pending),
                                  mode="map", on_success=self._on_preprocessed)

    # -- driver-side hooks: events and metrics ---------------------------------------------

    def _add_time(self, ctx: RunContext, metric: str, outcome: StepOutcome) -> None:
        ctx.metrics[metric] = ctx.metrics.get(metric, 0.0) + outcome.duration_s
        ctx.params["metrics"] = dict(ctx.metrics)

    def _on_planned(self, ctx: RunContext, outcome: StepOutcome) -> None:
        ctx.state["partitions"] = len(outcome.output)
        self._add_time(ctx, "data_load_time", outcome)

    def _on_loaded(self, ctx: RunContext, outcome: StepOutcome) -> None:
        schemas = [r.schema for r in outcome.reports]
        schema = schemas[0] if schemas else pa.schema([])
        if any(not s.equals(schema) for s in schemas[1:]):
            schema = unify(schemas)
            ctx.params["schema"] = schema
        if not len(schema):
            source = getattr(self.connector.config, "path", self.spec.source.type)
            raise InputError(f"source {source} has no columns: every partition of it is empty "
                             "(an empty file, or a JSON document without records)",
                             source=str(source))
        rows = sum(r.rows or 0 for r in outcome.reports)
        size = sum(r.bytes or 0 for r in outcome.reports)
        stats = {"row_count": rows, "column_count": len(schema), "size_bytes": size,
                 "partitions": len(outcome.reports),
                 "columns": {f.name: str(f.type) for f in schema}}
        ctx.state["data_stats"] = stats
        ctx.params["data_stats"] = stats
        ctx.metrics.update(row_count=rows, column_count=len(schema), size_bytes=size,
                           partitions=len(outcome.reports))
        self._add_time(ctx, "data_load_time", outcome)
        ctx.emit("data_loaded", "load", job_id=ctx.job_id, row_count=rows,
                 column_count=len(schema), size_bytes=size, partitions=len(outcome.reports))

    def _on_preprocessed(self, ctx: RunContext, outcome: StepOutcome) -> None:
        rows = sum(r.rows or 0 for r in outcome.reports)
        before = ctx.metrics.get("row_count", rows)
        ctx.metrics.update(rows_after_preprocessing=rows,
                           preprocessing_row_reduction=before - rows)
        self._add_time(ctx, "preprocessing_time", outcome)
        ctx.emit("data_preprocessed", "preprocess", job_id=ctx.job_id,
                 operations_count=len(self.ops), row_count=rows)

    def _on_analyzed(self, ctx: RunContext, outcome: StepOutcome) -> None:
        rows = outcome.reports[-1].rows
        ctx.metrics["result_rows"] = rows or 0
        self._add_time(ctx, "analysis_time", outcome)
        ctx.emit("analysis_completed", "analyze", job_id=ctx.job_id,
                 analysis_type=self.kernel.name, result_type=self.kernel.name, rows=rows)

    def _on_results(self, ctx: RunContext, outcome: StepOutcome) -> None:
        manifest = ray.get(outcome.output)
        ctx.state["manifest"] = manifest
        ctx.metrics.update(visualizations_count=len(manifest["visualizations"]),
                           exports_count=len(manifest["outputs"]),
                           exports_failed=len(manifest["export_errors"]))
        self._add_time(ctx, "results_generation_time", outcome)
        ctx.emit("results_generated", "results", job_id=ctx.job_id,
                 visualizations_count=len(manifest["visualizations"]),
                 exports_count=len(manifest["outputs"]),
                 exports_failed=len(manifest["export_errors"]))

    def _on_notified(self, ctx: RunContext, outcome: StepOutcome) -> None:
        summary = ray.get(outcome.output)
        ctx.state["notifications"] = summary
        ctx.metrics.update(notifications_sent=summary["success_count"],
                           notifications_failed=summary["failure_count"])
        self._add_time(ctx, "notification_time", outcome)
        ctx.emit("notifications_sent", "notify", job_id=ctx.job_id,
                 success_count=summary["success_count"], failure_count=summary["failure_count"])

    def _on_completed(self, ctx: RunContext, outcome: StepOutcome) -> None:
        ctx.metrics["total_execution_time"] = time.monotonic() - ctx.state["started_mono"]

    # -- running ----------------------------------------------------------------------------

    def preflight(self) -> None:
        """Checks of the user's input that need no Ray task: the source exists and the run
        directory is free. Nothing is written when they fail."""
        self.connector.check()
        if self.job_dir.exists() and not self.resuming:
            raise InputError(f"run directory {self.job_dir} already exists; choose another "
                             "job_id or --run-dir", path=str(self.job_dir))

    def check_resources(self) -> None:
        """Raise ResourceExhausted when no node of the cluster could ever run some step."""
        nodes = node_resources()
        for t in tasks(self.workflow()):
            if t.mode != "driver":
                t.resources.check_feasible(nodes, t.name)

    def run(self, observers: Iterable[Any] = (), executor: Executor | None = None) -> JobResult:
        """Run the job to a terminal state and write ``result.json`` and ``events.jsonl``.

        Input errors found before anything runs (missing file, taken run directory) raise
        InputError and write nothing; everything later ends in a JobResult.
        """
        self.preflight()
        with driver_lock(self.job_dir):
            return self._run(observers, executor)

    def _run(self, observers: Iterable[Any], executor: Executor | None) -> JobResult:
        self.staging.mkdir(parents=True, exist_ok=True)
        if not self.resuming:
            _write_json_atomic(self.job_dir / SPEC_FILE, self.spec.model_dump(mode="json"))
        events = EventLog()
        jsonl = JsonlObserver(self.job_dir / "events.jsonl")
        standard = [events, jsonl, MetricsObserver(),
                    AuditLog(self.job_dir / "audit.jsonl", self.spec.user_id)]
        otel = otel_observer()
        if otel is not None:
            standard.append(otel)
        ctx = RunContext(
            job_id=self.job_id,
            params={"info": {"user_id": self.spec.user_id, "analysis_type": self.kernel.name,
                             "priority": self.spec.priority}},
            observers=Observers([*standard, *observers]),
            deadline=time.monotonic() + self.spec.execution.timeout_s,
            faults=tuple(Fault(**f.model_dump()) for f in self.spec.execution.faults),
            checkpoints=self._checkpoint_store(),
        )
        started = dt.datetime.now(dt.UTC)
        ctx.state["started_mono"] = time.monotonic()
        ctx.emit("job_resumed" if self.resuming else "job_started", None, job_id=self.job_id,
                 user_id=self.spec.user_id, priority=self.spec.priority,
                 analysis_type=self.kernel.name, driver=driver_identity())
        errors: list[dict[str, Any]] = []
        warnings: list[str] = []
        interrupt: BaseException | None = None
        try:
            with _cancelled_by_signals(ctx):
                self.check_resources()
                fetch((executor or Executor()).run(self.workflow(), ctx))
            errors += ctx.state["manifest"]["export_errors"]
            state = COMPLETED_WITH_ERRORS if errors else "COMPLETED"
            self._commit()
            if ctx.checkpoints is not None and not self.spec.execution.keep_checkpoints:
                ctx.checkpoints.fs.rm(ctx.checkpoints.root, recursive=True)
            ctx.emit("job_completed", "complete", job_id=self.job_id, state=state,
                     errors=len(errors), execution_time=ctx.metrics.get("total_execution_time"),
                     metrics=dict(ctx.metrics))
        except BaseException as exc:  # every failure ends as a result, never a crash
            if not isinstance(exc, Exception):  # a second Ctrl-C, or the interpreter exits
                interrupt = exc
                ctx.state.setdefault("stopped_by", type(exc).__name__)
            err = _job_error(exc, ctx)
            state = "CANCELED" if err.category == "cancelled" else "FAILED"
            errors.append(err.to_dict())
            shutil.rmtree(self.staging, ignore_errors=True)
            step = err.details.get("step")
            if state == "CANCELED":
                ctx.emit("job_cancelled", step, job_id=self.job_id,
                         signal=ctx.state.get("stopped_by"), error=err.to_dict())
            else:
                ctx.emit("job_failed", step, job_id=self.job_id, task=step,
                         error=err.to_dict())
        finally:
            jsonl.close()
        manifest = ctx.state.get("manifest", {})
        notes = ctx.state.get("notifications", {})
        warnings += [f"visualization {v['index']} ({v['type']}): {v['error']}"
                     for v in manifest.get("visualizations", []) if "error" in v]
        warnings += [f"notification failed: {e}" for e in notes.get("errors", [])]
        finished = dt.datetime.now(dt.UTC)
        result = JobResult(
            job_id=self.job_id, user_id=self.spec.user_id, state=state,
            analysis_type=self.kernel.name, priority=self.spec.priority,
            run_dir=str(self.job_dir), started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            execution_time_s=(finished - started).total_seconds(),
            data_stats=ctx.state.get("data_stats", {}), metrics=dict(ctx.metrics),
            summary=manifest.get("summary", {}),
            outputs=manifest.get("outputs", []) if state in DONE_STATES else [],
            visualizations=manifest.get("visualizations", []), warnings=warnings, errors=errors,
            execution_path=list(ctx.trace.execution_path),
            steps={k: v.to_dict() for k, v in ctx.trace.stats.items()},
            trace=ctx.trace.to_dict(),
        )
        _write_json_atomic(self.job_dir / "result.json", result.to_dict())
        if interrupt is not None:
            raise interrupt
        return result

    def _checkpoint_store(self) -> CheckpointStore | None:
        execution = self.spec.execution
        if not execution.checkpoint:
            return None
        return CheckpointStore(checkpoint_url(self.job_dir, execution.checkpoint_url),
                               spec_version=self.spec.version)

    def _commit(self) -> None:
        """Move staged exports into the run directory (rename, so each file appears whole)."""
        for path in sorted(self.staging.rglob("*")):
            if path.is_file():
                target = self.job_dir / path.relative_to(self.staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        shutil.rmtree(self.staging, ignore_errors=True)


def _complete(value: Any) -> Any:
    return value


#: signals that stop a job: Ctrl-C, and the SIGTERM of a stop through Ray's Jobs API
STOP_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM (a stop through Ray's Jobs API, or kill)"}


@contextlib.contextmanager
def _cancelled_by_signals(ctx: RunContext) -> Iterator[None]:
    """While the job runs, SIGINT and SIGTERM cancel it (running tasks are cancelled, the
    result says CANCELED, checkpoints stay for ``raysight resume``); a second one stops the
    process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        if ctx.cancelled:
            raise KeyboardInterrupt
        ctx.state["stopped_by"] = signal.Signals(signum).name
        log.warning("job %s: %s received, cancelling", ctx.job_id, signal.Signals(signum).name)
        ctx.cancel()

    previous = {name: signal.signal(getattr(signal, name), stop) for name in STOP_SIGNALS}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _job_error(exc: BaseException, ctx: RunContext) -> WorkflowError:
    """The error a job ended with; after a stop signal, a cancellation whatever broke."""
    err = exc if isinstance(exc, WorkflowError) else classify(exc, "job")
    by = ctx.state.get("stopped_by")
    if by is None:
        return err
    step = err.details.get("step")
    how = STOP_SIGNALS.get(by, by)
    return Cancelled(f"job {ctx.job_id} was stopped by {how}"
                     + (f" during step {step!r}" if step else "")
                     + f"; `raysight resume {ctx.job_id}` finishes it", step=step, signal=by)


def _shard_count() -> int:
    """Shards of a shuffle: one per CPU of the cluster (at least two)."""
    cpus = ray.cluster_resources().get("CPU", 2) if ray.is_initialized() else 2
    return max(2, int(cpus))


def _absolute_source(source: Any) -> Any:
    """Relative local paths resolve against the current directory, here on the driver, so
    workers with another working directory read the same file."""
    path = getattr(source, "path", None)
    if isinstance(path, str) and "://" not in path and not os.path.isabs(path):
        return source.model_copy(update={"path": os.path.abspath(path)})
    return source


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False),
                   encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, pa.Schema):
        return {f.name: str(f.type) for f in value}
    return str(value)


__all__ = ["AnalysisJob", "JobResult"]
