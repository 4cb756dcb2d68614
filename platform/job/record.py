"""The driver's record of one run: data statistics, metrics, the results' manifest and the
notifications' outcome, filled in by the steps' success hooks, which also emit the job's
progress events (``data_loaded``, ``analysis_completed`` ...)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from raysight.engine.context import Partitions, RunContext, StepOutcome
from raysight.engine.executor import fetch
from raysight.job import steps


@dataclass
class RunRecord:
    """What the driver records about one run of a job, for its result and the steps' inputs:
    data statistics per source, metrics (summed over nodes, and per node where they differ:
    ``result_rows.<analysis>``), the results' manifest. ``notifies`` says whether the job
    has notifications; the rest fills in as the steps succeed, in the threads of the graph's
    nodes (hence the lock)."""

    notifies: bool = False
    started_mono: float = field(default_factory=time.monotonic)
    data_stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    notifications: dict[str, Any] | None = None
    results_done: float = 0.0
    #: the signal (or exception) that stopped the run
    stopped_by: str | None = None
    #: who stopped the run and what happens next, when not a signal (the job manager)
    stop_reason: str | None = None
    #: each source's partitions as its ``load.plan`` step planned them (what it read)
    planned: dict[str, list[Any]] = field(default_factory=dict)
    #: warnings the connectors attached to the partitions they read (malformed messages)
    source_warnings: list[str] = field(default_factory=list)
    #: held while a hook updates what hooks of other threads (graph nodes) update too
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # -- driver steps ---------------------------------------------------------------------

    def complete(self, outcomes: Any) -> None:
        """Driver step: the notifications' outcomes summed up (when the job has any)."""
        if not self.notifies:
            return
        summary = steps.notification_summary(fetch(outcomes))
        self.notifications = summary
        self.metrics.update(
            notifications_sent=summary["success_count"],
            notifications_failed=summary["failure_count"],
        )
        self.metrics["notification_time"] = (
            self.metrics.get("notification_time", 0.0) + time.monotonic() - self.results_done
        )

    # -- success hooks --------------------------------------------------------------------

    def _add_time(self, metric: str, outcome: StepOutcome) -> None:
        with self.lock:
            self.metrics[metric] = self.metrics.get(metric, 0.0) + outcome.duration_s

    def on_planned(self, node: str, ctx: RunContext, outcome: StepOutcome) -> None:
        with self.lock:
            self.planned[node] = list(outcome.output.items)

    def on_loaded(self, node: str, label: str, ctx: RunContext, outcome: StepOutcome) -> None:
        stats = steps.loaded(Partitions(outcome.output.items, outcome.reports), label).stats
        with self.lock:
            self.source_warnings += [w for r in outcome.reports
                                     for w in r.details.get("warnings", [])]
            self.data_stats[node] = stats
            for key in ("row_count", "size_bytes", "partitions"):
                self.metrics[key] = self.metrics.get(key, 0) + stats[key]
        self._add_time("data_load_time", outcome)
        ctx.emit("data_loaded", f"{node}/load", job_id=ctx.job_id, node=node,
                 row_count=stats["row_count"], column_count=stats["column_count"],
                 size_bytes=stats["size_bytes"], partitions=stats["partitions"])

    def on_preprocessed(self, node: str, operations: int, ctx: RunContext,
                        outcome: StepOutcome) -> None:
        rows = sum(r.rows or 0 for r in outcome.reports)
        self._add_time("preprocessing_time", outcome)
        ctx.emit("data_preprocessed", f"{node}/preprocess", job_id=ctx.job_id, node=node,
                 operations_count=operations, row_count=rows)

    def on_analyzed(self, node: str, kind: str, ctx: RunContext,
                    outcome: StepOutcome) -> None:
        rows = outcome.reports[-1].rows
        with self.lock:
            self.metrics[f"result_rows.{node}"] = rows or 0
        self._add_time("analysis_time", outcome)
        ctx.emit("analysis_completed", f"{node}/analyze", job_id=ctx.job_id, node=node,
                 analysis_type=kind, result_type=kind, rows=rows)

    def on_results(self, ctx: RunContext, outcome: StepOutcome) -> None:
        manifest = ray.get(outcome.output)
        self.manifest = manifest
        self.metrics.update(
            visualizations_count=len(manifest["visualizations"]),
            exports_count=len(manifest["outputs"]),
            exports_failed=len(manifest["export_errors"]),
        )
        self._add_time("results_generation_time", outcome)
        self.results_done = time.monotonic()
        ctx.emit(
            "results_generated",
            "results",
            job_id=ctx.job_id,
            visualizations_count=len(manifest["visualizations"]),
            exports_count=len(manifest["outputs"]),
            exports_failed=len(manifest["export_errors"]),
        )

    def on_completed(self, ctx: RunContext, outcome: StepOutcome) -> None:
        if self.notifications is not None:
            ctx.emit(
                "notifications_sent",
                "notify",
                job_id=ctx.job_id,
                success_count=self.notifications["success_count"],
                failure_count=self.notifications["failure_count"],
            )
        self.metrics["total_execution_time"] = time.monotonic() - self.started_mono
