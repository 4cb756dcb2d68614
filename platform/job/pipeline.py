"""The analysis pipeline: load → preprocess → analyze → results → notify → complete.

:class:`AnalysisJob` turns a validated job spec into a workflow of Ray tasks and runs it. Data
between steps is a partitioned table: one ObjectRef of an Arrow table per partition. Exports are
written to a staging folder and moved into the run directory only when the job completes, so a
failed job leaves no partial output files.
"""

from __future__ import annotations

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

from raysight import registry
from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import RunContext
from raysight.engine.events import EventLog, JsonlObserver, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.observability import AuditLog, MetricsObserver, otel_observer
from raysight.engine.resources import Resources, node_resources
from raysight.engine.workflow import Mode, Step, Task, parallel, tasks
from raysight.errors import InputError
from raysight.job import steps
from raysight.job.flows import absolute_source, analyze_flow, load_flow, preprocess_flow
from raysight.job.record import RunRecord
from raysight.job.result import DONE_STATES, JobResult, write_json_atomic
from raysight.job.rundir import checkpoint_url, driver_identity, driver_lock
from raysight.job.spec import (
    JobSpec,
    StepName,
    apply_override,
    export_path,
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
        self._locate(spec, run_dir, job_id, resume)
        self.connector = registry.connectors.build(absolute_source(spec.source))
        self.ops = [registry.preprocessors.build(op) for op in spec.preprocessing]
        self.kernel = registry.analyses.build(spec.analysis)
        self.charts = [registry.charts.build(v) for v in spec.visualizations]
        self.exports = [(registry.exporters.build(e), export_path(e)) for e in spec.exports]
        self.notifiers = [registry.notifiers.build(n) for n in spec.notifications]
        self._record = self._new_record()

    def _locate(self, spec: Any, run_dir: str | Path, job_id: str | None,
                resume: bool) -> None:
        """The job's spec, id and run directory (``<run_dir>/<job_id>``)."""
        self.spec = spec
        self.job_id = job_id or render_job_id(spec.job_id)
        self.run_root = Path(os.path.abspath(run_dir))  # normalised: no "jobs/../runs"
        self.job_dir = self.run_root / self.job_id
        self.staging = self.job_dir / STAGING
        self.resuming = resume

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
        from raysight.job.graph_job import job_for, parse_any_spec

        return job_for(parse_any_spec(data, str(spec_file)), run_dir=run_dir, job_id=job_id,
                       resume=True)

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
        load = load_flow(self._task, self.connector, source,
                         on_planned=self._record.on_planned, on_loaded=self._record.on_loaded)
        preprocess = preprocess_flow(self._task, self.ops,
                                     on_preprocessed=self._record.on_preprocessed).when(
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
        return (load >> preprocess >> analyze >> results >> self._notify_flow(info)
                >> self._complete_step())

    def _notify_flow(self, info: dict[str, Any]) -> Step:
        """One step per notification, each retried under the notify policy; a notifier that
        still fails is counted, never fatal (a finished analysis stays finished)."""
        return parallel(
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

    def _complete_step(self) -> Step:
        return self._task(
            "complete",
            "complete",
            self._record.complete,
            mode="driver",
            on_success=self._record.on_completed,
        )

    def analyze_flow(self) -> Step:
        """The analyze steps of the job (see :func:`raysight.job.flows.analyze_flow`)."""
        return analyze_flow(self._task, self.kernel, self.spec.execution.combine_fan_in,
                            on_analyzed=self._record.on_analyzed)

    # -- running ----------------------------------------------------------------------------

    def preflight(self) -> None:
        """Checks of the user's input that need no Ray task: the source exists and the run
        directory is free. Nothing is written when they fail."""
        self.connector.check()
        self._check_run_dir()

    def _check_run_dir(self) -> None:
        """A new run needs a run directory of its own."""
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
            write_json_atomic(self.job_dir / SPEC_FILE, self.spec_json())
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
            analysis_type=self.analysis_type,
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
            analysis_type=self.analysis_type, priority=self.spec.priority,
            run_dir=str(self.job_dir), started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            execution_time_s=(finished - started).total_seconds(),
            data_stats=record.data_stats,
            metrics=dict(record.metrics),
            summary=manifest.get("summary", {}),
            analyses=manifest.get("analyses", {}),
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

    @property
    def analysis_type(self) -> str:
        """The job's kind of analysis, as events and the result name it."""
        return str(self.kernel.name)

    def spec_json(self) -> dict[str, Any]:
        """The spec as ``spec.json`` holds it (what ``resume`` and ``inspect`` read)."""
        return dict(self.spec.model_dump(mode="json"))

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


__all__ = ["AnalysisJob"]
