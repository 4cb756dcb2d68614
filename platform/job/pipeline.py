"""The analysis job: a graph of named nodes, then results → notify → complete.

:class:`AnalysisJob` plans a validated job spec (a version 1 spec through its migration to a
one-node-per-stage graph) as one engine graph of Ray tasks and runs it. Each node is the flow
of its kind (:mod:`raysight.job.flows`): a source loads (``<node>/load`` ...), a dataset
preprocesses, a join plans and then broadcasts or shuffles, a union conforms its inputs, an
analysis analyzes. A node starts when its inputs are done, independent nodes run
concurrently, a node read by several others runs once, and its Ray tasks are named
``<job_id>/<node>/<step>``. After the graph, one results step renders every chart and writes
every export (the HTML report covers every analysis), then the notifications and the
completion run.

Steps take the resources, retries and timeouts of their pipeline stage: sources ``load``,
datasets, joins and unions ``preprocess``, analyses ``analyze``. Data between steps is a
partitioned table: one ObjectRef of an Arrow table per partition. Exports are written to a
staging folder and moved into the run directory only when the job completes, so a failed job
leaves no partial output files.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from raysight import registry
from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import Partitions, RunContext
from raysight.engine.events import EventLog, JsonlObserver, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.graph import Node, graph
from raysight.engine.observability import AuditLog, MetricsObserver, otel_observer
from raysight.engine.resources import Resources, live_nodes, node_resources
from raysight.engine.workflow import Mode, Step, Task, parallel, tasks
from raysight.errors import InputError
from raysight.job import graph_steps as gs
from raysight.job import remote_run, steps
from raysight.job.flows import (
    absolute_source,
    analyze_flow,
    join_flow,
    load_flow,
    preprocess_flow,
    union_flow,
)
from raysight.job.graph_spec import GraphSpec, parse_graph_spec
from raysight.job.preflight import known_schemas
from raysight.job.pushdown import read_hints
from raysight.job.record import RunRecord
from raysight.job.result import DONE_STATES, JobResult, ray_dataset, write_json_atomic
from raysight.job.routing import NO_ROUTING, RoutingPlan, job_facts, remembering, route
from raysight.job.rundir import checkpoint_url, driver_identity, driver_lock
from raysight.job.sinks import commit_sinks
from raysight.job.spec import (
    SINK_STAGING,
    JobSpec,
    StepName,
    apply_override,
    export_path,
    render_job_id,
)
from raysight.job.steps import COMPLETED_WITH_ERRORS
from raysight.job.stopping import cancelled_by_signals, job_error
from raysight.plugins import Sink

log = logging.getLogger(__name__)

STAGING = ".staging"
SPEC_FILE = "spec.json"


# ---------------------------------------------------------------------------------------------
# The job


class AnalysisJob:
    """A job spec planned as one graph of Ray tasks.

    >>> job = AnalysisJob(load_graph_spec("examples/sales_graph.yaml"))  # doctest: +SKIP
    >>> result = job.run()                                               # doctest: +SKIP
    >>> result.state, result.analyses["by_manager"]["rows"]              # doctest: +SKIP
    ('COMPLETED', 5)

    A version 1 spec (a :class:`JobSpec`) runs as its graph: nodes ``source``, ``data`` (its
    preprocessing, when it has any) and ``analysis``.
    """

    def __init__(
        self,
        spec: GraphSpec | JobSpec,
        run_dir: str | Path = "runs",
        job_id: str | None = None,
        resume: bool = False,
        inputs: Mapping[str, Any] | None = None,
        keep: Iterable[str] = (),
    ) -> None:
        if isinstance(spec, JobSpec):
            spec = parse_graph_spec(spec.model_dump(mode="json"),
                                    connections=spec.file_connections)
        self.spec: GraphSpec = spec
        self.job_id = job_id or render_job_id(spec.job_id)
        #: where the run folder ends up when the run root is a URL (s3://...); the job runs
        #: in a local mirror of it (see :mod:`raysight.job.remote_run`)
        self.remote: str | None = None
        if remote_run.is_url(run_dir):
            self.remote = f"{str(run_dir).rstrip('/')}/{self.job_id}"
            run_dir = remote_run.local_mirror(str(run_dir))
        self.run_root = Path(os.path.abspath(run_dir))  # normalised: no "jobs/../runs"
        self.job_dir = self.run_root / self.job_id
        self.staging = self.job_dir / STAGING
        self.resuming = resume
        self.operations = {name: [registry.preprocessors.build(op) for op in d.preprocessing]
                           for name, d in spec.datasets.items()}
        # each connector knows what the job needs of its source (columns, rows) and may
        # read less
        self.connectors = {
            name: registry.connectors.build(absolute_source(config))
            .with_hints(read_hints(spec, name, self.operations))
            for name, config in spec.sources.items()
        }
        for name, data in (inputs or {}).items():  # objects given in Python (Ray Datasets)
            if name not in self.connectors:
                raise InputError(f"inputs names {name!r}, which is not a source of the job "
                                 f"(sources: {', '.join(self.connectors)})", node=name)
            self.connectors[name] = self.connectors[name].with_data(data)
        self.keep = tuple(keep)
        unknown = [n for n in self.keep if n not in spec.nodes()]
        if unknown:
            raise InputError(f"keep names {unknown[0]!r}, which is not a node of the job",
                             node=unknown[0])
        self._kept: dict[str, Any] = {}
        self._checked = False  # preflight passed (run() checks first unless it has)
        #: Ray options for the job's input size, kinds and history (set by check_resources)
        self.routing: RoutingPlan = NO_ROUTING
        self.kernels = {name: registry.analyses.build(config)
                        for name, config in spec.analyses.items()}
        only = next(iter(spec.analyses))
        self.charts = [(registry.charts.build(c), c.from_ or only) for c in spec.visualizations]
        # the HTML report covers every analysis: it reads no one node
        self.exports = [(registry.exporters.build(e), export_path(e),
                         e.from_ or (None if e.format == "html" else only))
                        for e in spec.exports]
        self.notifiers = [registry.notifiers.build(n) for n in spec.notifications]
        self._record = RunRecord(notifies=bool(self.notifiers))
        # set from another thread (the job manager) to stop the run: at once, or at the
        # next step boundary
        self._cancel = threading.Event()
        self._drain = threading.Event()
        self._stop_reason: str | None = None
        #: True for a job the job manager runs (it never goes back to the manager)
        self.managed = False
        self._given_inputs = bool(inputs)

    def stop(self, reason: str, at_step_boundary: bool = False) -> None:
        """Stop the run from another thread: at once (running tasks are cancelled), or at
        the next step boundary (running steps finish and are checkpointed, nothing new
        starts; a resume then redoes no finished step). ``reason`` completes the sentence
        "the job was stopped by ..." in its error. A job stopped before it starts ends
        CANCELED without running a step."""
        self._stop_reason = reason
        self._record.stopped_by = self._record.stopped_by or "job manager"
        self._record.stop_reason = reason
        (self._drain if at_step_boundary else self._cancel).set()

    @classmethod
    def resume(cls, job_id: str, run_dir: str | Path = "runs",
               overrides: list[str] | tuple[str, ...] = (),
               connections: str | Path | None = None) -> AnalysisJob:
        """The job of an earlier run, to be finished from its checkpoints: steps whose output
        was persisted are restored, the rest run. ``overrides`` may change execution
        settings (``execution.timeout_s=600``); ``connections`` is the connections file its
        sources' named connections are looked up in again (``spec.json`` keeps the names)."""
        if remote_run.is_url(run_dir):  # its records come back into the local mirror
            remote = f"{str(run_dir).rstrip('/')}/{job_id}"
            job_dir = remote_run.local_mirror(str(run_dir)) / job_id
            remote_run.download_records(remote, job_dir)
        else:
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
        return cls(parse_graph_spec(data, str(spec_file), connections), run_dir=run_dir,
                   job_id=job_id, resume=True)

    # -- planning --------------------------------------------------------------------------

    def _task(
        self, stage: StepName, name: str, fn: Any, mode: Mode = "apply", **hooks: Any
    ) -> Task:
        spec = self.spec
        res = spec.resources.get(stage)
        if stage == "complete" and self.routing.remember:  # the job succeeded
            hooks["on_success"] = remembering(self.run_root, spec.job_id,
                                              hooks.get("on_success"))
        return Task(
            fn=fn,
            name=name,
            mode=mode,
            resources=self.routing.apply(stage, Resources() if res is None
                                         else res.to_resources()),
            retry=spec.execution.retry_policy(stage),
            timeout_s=spec.execution.step_timeouts_s.get(stage),
            **hooks,
        )

    def graph(self) -> Step:
        """The nodes of the job as one engine graph (without results and notifications)."""
        spec = self.spec
        nodes: dict[str, Node] = {}
        for name in spec.nodes():
            # a self-join reads its one input once
            nodes[name] = Node(self.node_flow(name), tuple(dict.fromkeys(spec.inputs(name))))
        return graph(nodes)

    def node_flow(self, name: str) -> Step:
        """The steps of node ``name`` as the job plans them (the flow of its kind)."""
        section = self.spec.nodes()[name]
        record = self._record
        if section == "sources":
            connector = self.connectors[name]
            path = getattr(connector.config, "path", None)
            label = f"{name!r}" + ("" if path is None else f" ({path})")  # in its errors
            return load_flow(self._task, connector, label,
                             on_loaded=partial(record.on_loaded, name, label),
                             on_planned=partial(record.on_planned, name))
        if section == "datasets":
            ops = self.operations[name]
            return preprocess_flow(self._task, ops,
                                   on_preprocessed=partial(record.on_preprocessed, name,
                                                           len(ops)))
        if section == "joins":
            return join_flow(self._task, self.spec.joins[name], name)
        if section == "unions":
            return union_flow(self._task, self.spec.unions[name], name)
        kernel = self.kernels[name]
        return analyze_flow(self._task, kernel, self.spec.execution.combine_fan_in,
                            on_analyzed=partial(record.on_analyzed, name, kernel.name))

    def workflow(self) -> Step:
        """The plan: the graph of nodes, then results, notifications and completion."""
        info = {"user_id": self.spec.user_id, "priority": self.spec.priority,
                "analysis_type": self.analysis_type,
                "analysis_types": {n: k.name for n, k in self.kernels.items()}}
        # results re-run on resume: they write the staged files that the commit moves
        results = self._task(
            "results", "results.inputs", self._results_inputs, mode="driver"
        ) >> self._task(
            "results", "results",
            partial(gs.make_graph_results, charts=self.charts, exports=self.exports,
                    staging=str(self.staging), info=info),
            on_success=self._record.on_results,
        ).with_checkpoint(False)
        return self.graph() >> results >> self._notify_flow(info) >> self._complete_step()

    def _results_inputs(self, outputs: dict[str, Any]) -> tuple[Any, ...]:
        """Driver step: the analyses' results and the exported data nodes' partitions, with
        the layout that says which is which and the facts the report shows."""
        spec = self.spec
        analyses = tuple(spec.analyses)
        exported = tuple(dict.fromkeys(n for _, _, n in self.exports
                                       if n is not None and n not in spec.analyses))
        tables = [item for n in exported for item in outputs[n].items]
        layout = gs.ResultsLayout(
            analyses, tuple((n, len(outputs[n].items)) for n in exported),
            {n: spec.analyses[n].from_ for n in analyses})
        record = self._record
        facts = steps.RunFacts(dict(record.data_stats), dict(record.metrics))
        self._kept = {n: outputs[n] for n in self.keep}
        return Partitions([outputs[n] for n in analyses]), Partitions(tables), layout, facts

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
            ), name="notify"
        ).when(lambda ctx: bool(self.notifiers), "the spec has notifications")

    def _complete_step(self) -> Step:
        return self._task(
            "complete",
            "complete",
            self._record.complete,
            mode="driver",
            on_success=self._record.on_completed,
        )

    # -- running ----------------------------------------------------------------------------

    def preflight(self) -> None:
        """Checks of the user's input before anything runs or is written: every source
        exists; where schemas are known without reading data (Parquet footers), join keys
        exist on their sides with compatible types and analyses find their columns (see
        :mod:`raysight.job.preflight`); the run directory is free."""
        for name, connector in self.connectors.items():
            try:
                connector.check()
            except InputError as err:
                raise InputError(f"source {name!r}: {err}", node=name,
                                 field=f"sources.{name}", **err.details) from None
        self.known_schemas()
        self._check_run_dir()
        self._checked = True

    def known_schemas(self) -> dict[str, pa.Schema | None]:
        """Each data node's schema where it is known without reading data."""
        return known_schemas(self.spec, self.connectors, self.operations, self.kernels)

    def _check_run_dir(self) -> None:
        """A new run needs a run directory of its own."""
        if self.resuming:
            return
        if self.remote is not None:
            if remote_run.exists(self.remote):
                raise InputError(f"run directory {self.remote} already exists; choose "
                                 "another job_id or --run-dir", path=self.remote)
            shutil.rmtree(self.job_dir, ignore_errors=True)  # a mirror nobody finished
            return
        if self.job_dir.exists():
            raise InputError(f"run directory {self.job_dir} already exists; choose another "
                             "job_id or --run-dir", path=str(self.job_dir))

    def check_resources(self, ctx: RunContext | None = None) -> None:
        """Raise ResourceExhausted when no node of the cluster could ever run some step of
        the spec, then route the job on the same nodes (:mod:`raysight.job.routing`): the
        steps planned next carry its Ray options; ``ctx`` gets a ``job_routed`` event."""
        nodes = live_nodes()
        capacities = node_resources(nodes)
        self.routing = NO_ROUTING
        for t in tasks(self.workflow()):
            if t.mode != "driver":
                t.resources.check_feasible(capacities, t.name)
        execution = self.spec.execution
        if execution.routing == "off":
            return
        facts = job_facts(self.spec.job_id, self.connectors.values(),
                          (k.name for k in self.kernels.values()), self.run_root)
        self.routing = route(facts, nodes, spread=execution.routing == "spread",
                             base={s: r.to_resources() for s, r in self.spec.resources.items()})
        log.info("job %s: routing %s", self.job_id, self.routing.to_dict())
        if ctx is not None:
            ctx.emit("job_routed", None, job_id=self.job_id, **self.routing.to_dict())

    def run(self, observers: Iterable[Any] = (), executor: Executor | None = None) -> JobResult:
        """Run the job to a terminal state and write ``result.json`` and ``events.jsonl``.

        Input errors found before anything runs (missing file, taken run directory) raise
        InputError and write nothing; everything later ends in a JobResult.
        """
        if not self._checked:  # the CLI checks before it connects to Ray
            self.preflight()
        manager = self.manager()
        if manager is not None and executor is None and not observers:
            log.info("job %s: running through the job manager", self.job_id)
            job_id = manager.submit(self)
            return manager.result(job_id)
        with driver_lock(self.job_dir):
            return self._run(observers, executor)

    def manager(self) -> Any | None:
        """The client of the cluster's job manager when this job should go through it: one
        runs on the connected cluster, and the job is new, not run by the manager itself, and
        holds no objects of this process (``inputs``, ``keep``)."""
        if self.managed or self.resuming or self.keep or self._given_inputs:
            return None
        from raysight.service.manager import ManagerClient, find_manager

        handle = find_manager()
        return None if handle is None else ManagerClient(handle)

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
            cancel_events=(self._cancel,),
            drain_event=self._drain,
        )
        started = dt.datetime.now(dt.UTC)
        record = self._record = RunRecord(notifies=bool(self.notifiers))
        if self._stop_reason is not None:  # stopped before it began
            record.stopped_by, record.stop_reason = "job manager", self._stop_reason
        ctx.emit(
            "job_resumed" if self.resuming else "job_started",
            None,
            job_id=self.job_id,
            user_id=self.spec.user_id,
            priority=self.spec.priority,
            analysis_type=self.analysis_type,
            driver=driver_identity(),
        )
        written: list[str] = []  # the sinks' targets, once committed
        errors: list[dict[str, Any]] = []
        warnings: list[str] = []
        interrupt: BaseException | None = None
        try:
            with cancelled_by_signals(ctx, record):
                self.check_resources(ctx)
                fetch((executor or Executor()).run(self.workflow(), ctx))
            errors += record.manifest["export_errors"]
            state = COMPLETED_WITH_ERRORS if errors else "COMPLETED"
            written = self._commit_sinks()
            self._commit()
            warnings += self._acknowledge_sources()
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
            step = err.details.get("step")
            node = step.split("/")[0] if isinstance(step, str) and "/" in step else None
            errors.append({**err.to_dict(), **({"node": node} if node else {})})
            shutil.rmtree(self.staging, ignore_errors=True)
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
        warnings = record.source_warnings + warnings
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
            run_dir=self.remote or str(self.job_dir), started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            execution_time_s=(finished - started).total_seconds(),
            data_stats=record.data_stats,
            metrics=dict(record.metrics),
            summary=manifest.get("summary", {}),
            analyses=manifest.get("analyses", {}),
            outputs=manifest.get("outputs", []) if state in DONE_STATES else [],
            written=written,
            visualizations=manifest.get("visualizations", []), warnings=warnings, errors=errors,
            execution_path=list(ctx.trace.execution_path),
            steps={k: v.to_dict() for k, v in ctx.trace.stats.items()},
            trace=ctx.trace.to_dict(),
        )
        write_json_atomic(self.job_dir / "result.json", result.to_dict())
        if self.remote is not None:
            self._upload(result)
        if state in DONE_STATES:
            result.datasets = {n: ray_dataset(v, n in self.spec.analyses)
                               for n, v in self._kept.items()}
        self._kept = {}
        if interrupt is not None:
            raise interrupt
        return result

    @property
    def analysis_type(self) -> str:
        """The job's kinds of analysis, as events and the result name them (``a,b``)."""
        return ",".join(sorted({k.name for k in self.kernels.values()}))

    def spec_json(self) -> dict[str, Any]:
        """The spec as ``spec.json`` holds it (what ``resume`` and ``inspect`` read)."""
        return dict(self.spec.model_dump(mode="json", by_alias=True))

    def _checkpoint_store(self) -> CheckpointStore | None:
        execution = self.spec.execution
        if not execution.checkpoint:
            return None
        configured = execution.checkpoint_url
        if configured is None and self.remote is not None:
            configured = f"{self.remote}/checkpoints"
        return CheckpointStore(checkpoint_url(self.job_dir, configured),
                               spec_version=self.spec.version)

    def _upload(self, result: JobResult) -> None:
        """Copy the run folder to its URL, ``result.json`` last. A copy that fails leaves
        the job's state as it is, with a warning naming the local folder that holds it."""
        try:
            remote_run.upload(self.job_dir, self.remote or "")
        except Exception as err:  # the outputs exist: say where, never lose them
            log.error("job %s: run folder not copied to %s: %s", self.job_id, self.remote, err)
            result.run_dir = str(self.job_dir)
            result.warnings.append(f"the run folder could not be copied to {self.remote} "
                                   f"({err}); it is at {self.job_dir}")
            write_json_atomic(self.job_dir / "result.json", result.to_dict())
            return
        shutil.rmtree(self.job_dir, ignore_errors=True)  # the URL holds it now

    def _acknowledge_sources(self) -> list[str]:
        """Tell each source that the job succeeded with the partitions it planned (a stream
        commits its consumer offsets); a source that cannot be told is a warning, since the
        job's outputs are already committed. Returns the warnings."""
        warnings = []
        for name, partitions in self._record.planned.items():
            try:
                self.connectors[name].acknowledge(partitions)
            except Exception as err:  # the run stays completed; the next run re-reads
                log.warning("job %s: source %r not acknowledged: %s", self.job_id, name, err)
                warnings.append(f"source {name!r}: what was read is not acknowledged ({err}); "
                                "the next run reads it again")
        return warnings

    def _commit_sinks(self) -> list[str]:
        """Write every sink's staged rows to its target, all or none (see
        :mod:`raysight.job.sinks`); the staged rows are never moved into the run directory."""
        sinks = [(i, exporter, str(self.staging / relpath))
                 for i, (exporter, relpath, _) in enumerate(self.exports)
                 if isinstance(exporter, Sink)]
        written = commit_sinks(sinks, self.job_id) if sinks else []
        shutil.rmtree(self.staging / SINK_STAGING, ignore_errors=True)
        return written

    def _commit(self) -> None:
        """Move staged exports into the run directory (rename, so each file appears whole)."""
        for path in sorted(self.staging.rglob("*")):
            if path.is_file():
                target = self.job_dir / path.relative_to(self.staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        shutil.rmtree(self.staging, ignore_errors=True)


__all__ = ["AnalysisJob"]
