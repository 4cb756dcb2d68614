"""The analysis pipeline: load → preprocess → analyze → results → notify → complete.

:class:`AnalysisJob` turns a validated job spec into a workflow of Ray tasks and runs it. Data
between steps is a partitioned table: one ObjectRef of an Arrow table per partition. Exports are
written to a staging folder and moved into the run directory only when the job completes, so a
failed job leaves no partial output files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import ray

from raysight import registry
from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import RunContext
from raysight.engine.events import EventLog, JsonlObserver, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.observability import AuditLog, MetricsObserver, otel_observer
from raysight.engine.resources import Resources, node_resources
from raysight.engine.workflow import Mode, Pass, Step, Task, branch, parallel, tasks
from raysight.errors import InputError
from raysight.job import steps
from raysight.job.record import RunRecord
from raysight.job.result import DONE_STATES, JobResult, write_json_atomic
from raysight.job.rundir import checkpoint_url, driver_identity, driver_lock
from raysight.job.spec import (
    JobSpec,
    StepName,
    apply_override,
    export_path,
    parse_spec,
    render_job_id,
)
from raysight.job.steps import COMPLETED_WITH_ERRORS
from raysight.job.stopping import cancelled_by_signals, job_error

log = logging.getLogger(__name__)

STAGING = ".staging"
SPEC_FILE = "spec.json"


# ---------------------------------------------------------------------------------------------
# The job


class AnalysisJob:
    """A job spec planned as a workflow of Ray tasks.

    >>> job = AnalysisJob(load_spec("examples/sales_by_category.yaml"))  # doctest: +SKIP
    >>> result = job.run()                                                # doctest: +SKIP
    >>> result.state, result.outputs                                      # doctest: +SKIP
    ('COMPLETED', ['report.html', 'analysis.json'])
    """

    def __init__(
        self,
        spec: JobSpec,
        run_dir: str | Path = "runs",
        job_id: str | None = None,
        resume: bool = False,
    ) -> None:
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
        self._record = self._new_record()

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

    def _task(
        self, stage: StepName, name: str, fn: Any, mode: Mode = "apply", **hooks: Any
    ) -> Task:
        spec = self.spec
        res = spec.resources.get(stage)
        return Task(
            fn=fn,
            name=name,
            mode=mode,
            resources=Resources() if res is None else res.to_resources(),
            retry=spec.execution.retry_policy(stage),
            timeout_s=spec.execution.step_timeouts_s.get(stage),
            **hooks,
        )

    def workflow(self) -> Step:
        """The plan: every step a Ray task named ``<job_id>/<step>``."""
        source = str(getattr(self.connector.config, "path", self.spec.source.type))
        load = (
            self._task(
                "load",
                "load.plan",
                partial(steps.plan_source, connector=self.connector),
                mode="fanout",
                on_success=self._record.on_planned,
            )
            >> self._task(
                "load",
                "load",
                partial(steps.read_partition, connector=self.connector),
                mode="map",
                on_success=self._record.on_loaded,
            )
            >> self._task(
                "load",
                "load.schema",
                partial(steps.schema_to_conform, source=source),
                mode="driver",
            )
            >> self._task("load", "load.unify", steps.conform_partition, mode="map").when(
                steps.needs_conform, "the partitions differ in schema"
            )
        )
        preprocess = self._preprocess_flow().when(
            lambda ctx: bool(self.ops), "the spec has preprocessing operations"
        )
        analyze = self.analyze_flow()
        info = {"user_id": self.spec.user_id, "analysis_type": self.kernel.name}
        # results re-run on resume: they write the staged files that the commit moves
        results = self._task(
            "results", "results.inputs", self._record.report_inputs, mode="driver"
        ) >> self._task(
            "results",
            "results",
            partial(
                steps.make_results,
                charts=self.charts,
                exports=self.exports,
                staging=str(self.staging),
                info=info,
            ),
            on_success=self._record.on_results,
        ).with_checkpoint(False)
        info = {**info, "priority": self.spec.priority}
        # one step per notification, each retried under the notify policy; a notifier that
        # still fails is counted, never fatal (a finished analysis stays finished)
        notify = parallel(
            *(
                self._task(
                    "notify", "notify", partial(steps.send_notification, notifier=n, info=info)
                )
                .with_checkpoint(False)
                .or_else(
                    steps.notification_failed,
                    "a failed notification is counted",
                    accept=steps.is_notifier_failure,
                )
                for n in self.notifiers
            )
        ).when(lambda ctx: bool(self.notifiers), "the spec has notifications")
        complete = self._task(
            "complete",
            "complete",
            self._record.complete,
            mode="driver",
            on_success=self._record.on_completed,
        )
        return load >> preprocess >> analyze >> results >> notify >> complete

    def analyze_flow(self) -> Step:
        """The analyze steps: one task on a single partition (no partial state), else
        partial states combined as a tree, or a shuffle (see :meth:`_analyze_partitions`)."""
        return branch(
            steps.single_partition,
            self._task(
                "analyze",
                "analyze",
                partial(steps.analyze_whole, kernel=self.kernel),
                on_success=self._record.on_analyzed,
            ),
            self._analyze_partitions(),
        )

    def _analyze_partitions(self) -> Step:
        """Analysis over several partitions: a partial state per partition merged as a tree
        (no task receives more than ``execution.combine_fan_in`` states), or, for holistic
        per-group work (median, top-k...), a shuffle by key with an exact reduce per shard."""
        kernel = self.kernel
        if kernel.shuffle_keys():
            shards = _shard_count()
            return (
                self._task(
                    "analyze",
                    "analyze.shuffle",
                    partial(steps.analyze_shard, kernel=kernel, shards=shards),
                    mode="map",
                )
                .with_checkpoint(False)
                .replace_shards(shards)
                >> self._task(
                    "analyze", "analyze", partial(steps.analyze_reduce, kernel=kernel), mode="map"
                )
                >> self._task(
                    "analyze",
                    "analyze.combine",
                    partial(steps.analyze_finish, kernel=kernel),
                    on_success=self._record.on_analyzed,
                )
            )
        flow: Step = self._task(
            "analyze", "analyze", partial(steps.analyze_partial, kernel=kernel), mode="map"
        )
        if kernel.mergeable:
            flow = flow >> dataclasses.replace(
                self._task(
                    "analyze",
                    "analyze.merge",
                    partial(steps.analyze_merge, kernel=kernel),
                    mode="reduce",
                ),
                fan_in=self.spec.execution.combine_fan_in,
            )
        return flow >> self._task(
            "analyze",
            "analyze.combine",
            partial(steps.analyze_combine, kernel=kernel),
            on_success=self._record.on_analyzed,
        )

    def _preprocess_flow(self) -> Step:
        """Row-local operations run per partition; an operation that needs whole-column
        statistics first computes partial statistics per partition and merges them."""
        flow: Step = Pass("preprocess.start")
        pending: list[Any] = []
        for op in self.ops:
            if getattr(op, "needs_stats", False):
                if pending:
                    flow = flow >> self._task(
                        "preprocess",
                        "preprocess",
                        partial(steps.apply_ops, ops=pending),
                        mode="map",
                    )
                flow = flow >> parallel(
                    Pass(),
                    self._task(
                        "preprocess",
                        "preprocess.stats",
                        partial(steps.op_partial_stats, op=op),
                        mode="map",
                    )
                    >> self._task(
                        "preprocess", "preprocess.stats.merge", partial(steps.op_merge_stats, op=op)
                    ),
                )
                pending = [op]
            else:
                pending.append(op)
        return flow >> self._task(
            "preprocess",
            "preprocess",
            partial(steps.apply_ops, ops=pending),
            mode="map",
            on_success=self._record.on_preprocessed,
        )

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
            write_json_atomic(self.job_dir / SPEC_FILE, self.spec.model_dump(mode="json"))
        events = EventLog()
        jsonl = JsonlObserver(self.job_dir / "events.jsonl")
        standard = [events, jsonl, MetricsObserver(),
                    AuditLog(self.job_dir / "audit.jsonl", self.spec.user_id)]
        otel = otel_observer()
        if otel is not None:
            standard.append(otel)
        ctx = RunContext(
            job_id=self.job_id,
            observers=Observers([*standard, *observers]),
            deadline=time.monotonic() + self.spec.execution.timeout_s,
            faults=tuple(f.to_fault() for f in self.spec.execution.faults),
            checkpoints=self._checkpoint_store(),
        )
        started = dt.datetime.now(dt.UTC)
        record = self._record = self._new_record()
        ctx.emit(
            "job_resumed" if self.resuming else "job_started",
            None,
            job_id=self.job_id,
            user_id=self.spec.user_id,
            priority=self.spec.priority,
            analysis_type=self.kernel.name,
            driver=driver_identity(),
        )
        errors: list[dict[str, Any]] = []
        warnings: list[str] = []
        interrupt: BaseException | None = None
        try:
            with cancelled_by_signals(ctx, record):
                self.check_resources()
                fetch((executor or Executor()).run(self.workflow(), ctx))
            errors += record.manifest["export_errors"]
            state = COMPLETED_WITH_ERRORS if errors else "COMPLETED"
            self._commit()
            if ctx.checkpoints is not None and not self.spec.execution.keep_checkpoints:
                ctx.checkpoints.fs.rm(ctx.checkpoints.root, recursive=True)
            ctx.emit(
                "job_completed",
                "complete",
                job_id=self.job_id,
                state=state,
                errors=len(errors),
                execution_time=record.metrics.get("total_execution_time"),
                metrics=dict(record.metrics),
            )
        except BaseException as exc:  # every failure ends as a result, never a crash
            if not isinstance(exc, Exception):  # a second Ctrl-C, or the interpreter exits
                interrupt = exc
                record.stopped_by = record.stopped_by or type(exc).__name__
            err = job_error(exc, ctx, record)
            state = "CANCELED" if err.category == "cancelled" else "FAILED"
            errors.append(err.to_dict())
            shutil.rmtree(self.staging, ignore_errors=True)
            step = err.details.get("step")
            if state == "CANCELED":
                ctx.emit(
                    "job_cancelled",
                    step,
                    job_id=self.job_id,
                    signal=record.stopped_by,
                    error=err.to_dict(),
                )
            else:
                ctx.emit("job_failed", step, job_id=self.job_id, task=step,
                         error=err.to_dict())
        finally:
            jsonl.close()
        manifest = record.manifest
        notes = record.notifications or {}
        warnings += [
            f"visualization {v['index']} ({v['type']}): {v['error']}"
            for v in manifest.get("visualizations", [])
            if "error" in v
        ]
        warnings += [f"notification failed: {e}" for e in notes.get("errors", [])]
        finished = dt.datetime.now(dt.UTC)
        result = JobResult(
            job_id=self.job_id, user_id=self.spec.user_id, state=state,
            analysis_type=self.kernel.name, priority=self.spec.priority,
            run_dir=str(self.job_dir), started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            execution_time_s=(finished - started).total_seconds(),
            data_stats=record.data_stats,
            metrics=dict(record.metrics),
            summary=manifest.get("summary", {}),
            outputs=manifest.get("outputs", []) if state in DONE_STATES else [],
            visualizations=manifest.get("visualizations", []), warnings=warnings, errors=errors,
            execution_path=list(ctx.trace.execution_path),
            steps={k: v.to_dict() for k, v in ctx.trace.stats.items()},
            trace=ctx.trace.to_dict(),
        )
        write_json_atomic(self.job_dir / "result.json", result.to_dict())
        if interrupt is not None:
            raise interrupt
        return result

    def _new_record(self) -> RunRecord:
        return RunRecord(
            source=str(getattr(self.connector.config, "path", self.spec.source.type)),
            analysis_type=self.kernel.name,
            operations=len(self.ops),
            notifies=bool(self.notifiers),
        )

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


__all__ = ["AnalysisJob"]
