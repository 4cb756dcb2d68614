"""Metrics, traces and the audit log of jobs.

* :class:`MetricsObserver` counts steps started/succeeded/failed/retried, step durations and
  rows processed with ``ray.util.metrics``, tagged by job and step: they appear on Ray's
  Prometheus endpoint and in the dashboard's metrics view. A Ray Client driver (``ray://``)
  exports nothing itself, so there the observer sends its records in a batch per finished step
  to a named actor on the cluster (:data:`FORWARDER_NAME`) that records them.
* :class:`OtelObserver` opens one OpenTelemetry span per job and a child span per step when
  the OpenTelemetry API is installed (it is with ``ray[default]``); spans go wherever the
  application's tracer provider sends them.
* :class:`AuditLog` appends who did what to a job (``audit.jsonl``), one JSON line per action;
  the file is only ever appended to.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

from raysight.engine.events import Event

log = logging.getLogger(__name__)

#: step metrics are counted per step name, never per job: a tag of unbounded values (a job id
#: per run) makes a long-lived process's series grow without end, and Ray exports only the
#: first few thousand series of a metric (the events and result.json are per job)
_TAGS = ("step",)
_DURATION_BOUNDARIES = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800]
#: the actor that records a Ray Client driver's metrics on the cluster (one per cluster)
FORWARDER_NAME, FORWARDER_NAMESPACE = "raysight_metrics", "raysight"
#: events after which a Ray Client driver sends what it has gathered
_FLUSH_AFTER = frozenset({"step_succeeded", "step_failed", "step_skipped", "job_completed",
                          "job_failed", "job_cancelled"})

_JOB_END = frozenset({"job_completed", "job_failed", "job_cancelled"})
#: how long a Ray Client driver waits at a job's end for its last batch to be recorded
_JOB_END_WAIT_S = 10.0

#: one metric record: the metric's key in MetricsObserver.metrics(), the value, its tags
Record = tuple[str, float, dict[str, str]]


class MetricsObserver:
    """Ray metrics for every step event (created lazily in the process that observes)."""

    _lock = threading.Lock()
    _metrics: dict[str, Any] | None = None

    @classmethod
    def metrics(cls) -> dict[str, Any]:
        with cls._lock:
            if cls._metrics is None:
                from ray.util.metrics import Counter, Histogram

                def counter(name: str, what: str) -> Any:
                    return Counter(name, description=what, tag_keys=_TAGS)

                cls._metrics = {
                    "step_started": counter("raysight_steps_started", "steps started"),
                    "step_succeeded": counter("raysight_steps_succeeded", "steps succeeded"),
                    "step_failed": counter("raysight_steps_failed", "steps failed"),
                    "task_retry": counter("raysight_steps_retried", "step attempts retried"),
                    "step_skipped": counter("raysight_steps_skipped", "steps skipped"),
                    "rows": counter("raysight_rows_processed", "rows output by steps"),
                    "duration": Histogram("raysight_step_duration_seconds",
                                          description="step duration",
                                          boundaries=_DURATION_BOUNDARIES, tag_keys=_TAGS),
                }
            return cls._metrics

    def __init__(self) -> None:
        self._client: bool | None = None  # decided at the first event, once Ray is up
        self._pending: list[Record] = []
        self._pending_lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        records = metric_records(event)
        if self._client is None:
            self._client = _ray_client_driver()
        if not self._client:
            record_metrics(records)
            return
        with self._pending_lock:
            self._pending.extend(records)
            if event.event_type not in _FLUSH_AFTER:
                return
            batch, self._pending = self._pending, []
        # at the job's end the driver may exit next: calls still in flight would die with it
        # (their owner), so it waits for the last one, which the actor runs after the others
        _Forwarder.send(batch, wait_s=_JOB_END_WAIT_S if event.event_type in _JOB_END else 0)


def metric_records(event: Event) -> list[Record]:
    """What one event adds to the step metrics."""
    tags = {"step": event.step or ""}
    records: list[Record] = []
    if event.event_type in _COUNTED:
        records.append((event.event_type, 1.0, tags))
    if event.event_type == "step_succeeded":
        records.append(("duration", float(event.data.get("duration_s") or 0.0), tags))
        if event.data.get("rows"):
            records.append(("rows", float(event.data["rows"]), tags))
    return records


_COUNTED = frozenset({"step_started", "step_succeeded", "step_failed", "task_retry",
                      "step_skipped"})


def record_metrics(records: list[Record]) -> None:
    """Record metric records in this process (whose core worker exports them)."""
    metrics = MetricsObserver.metrics()
    for key, value, tags in records:
        if key == "duration":
            metrics[key].observe(value, tags=tags)
        else:
            metrics[key].inc(value, tags=tags)


def _ray_client_driver() -> bool:
    """Whether this process is a Ray Client (``ray://``) driver, which exports no metrics."""
    try:
        from ray.util.client import ray as client
    except ImportError:
        return False
    return bool(client.is_connected())


class MetricsForwarder:
    """The actor behind :data:`FORWARDER_NAME`: records batches that Ray Client drivers send."""

    def record(self, records: list[Record]) -> int:
        record_metrics(records)
        return len(records)


class _Forwarder:
    """A Ray Client driver's handle on the forwarding actor and its last batch in flight."""

    _lock = threading.Lock()
    _handle: Any = None
    _last: Any = None

    @classmethod
    def send(cls, batch: list[Record], wait_s: float = 0) -> None:
        """Send a batch to the actor (none for an empty one); with ``wait_s``, wait that long
        for the last batch sent to be recorded."""
        import ray

        with cls._lock:
            if cls._last is not None:
                cls._check_last(ray)
            if batch:
                cls._send(ray, batch)
            if wait_s > 0 and cls._last is not None:
                ready, _ = ray.wait([cls._last], timeout=wait_s)
                if ready:
                    cls._check_last(ray)
                else:
                    log.warning("raysight metrics: the %s actor did not record the job's last "
                                "metrics within %g s", FORWARDER_NAME, wait_s)

    @classmethod
    def _send(cls, ray: Any, batch: list[Record]) -> None:
        if cls._handle is None:
            # detached: the last values must outlive the client's job until the next scrape,
            # and counters keep adding up across runs as they do in one process
            cls._handle = ray.remote(num_cpus=0)(MetricsForwarder).options(
                name=FORWARDER_NAME, namespace=FORWARDER_NAMESPACE, get_if_exists=True,
                lifetime="detached").remote()
        # fire and forget: a step never waits for its metrics
        cls._last = cls._handle.record.remote(batch)

    @classmethod
    def _check_last(cls, ray: Any) -> None:
        """Report a batch the actor failed to record, and start over with a new handle."""
        ready, _ = ray.wait([cls._last], timeout=0)
        if not ready:
            return
        try:
            ray.get(ready[0])
        except Exception as exc:  # the actor died or could not be created
            log.warning("raysight metrics: the %s actor did not record a batch (%s); "
                        "creating it again", FORWARDER_NAME, exc)
            cls._handle = None
        cls._last = None


class OtelObserver:
    """One trace per job: a job span with a child span per step (and retries as events)."""

    def __init__(self, tracer: Any = None) -> None:
        from opentelemetry import trace

        self.trace = trace
        self.tracer = tracer or trace.get_tracer("raysight")
        self.job_span: Any = None
        self.steps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        kind = event.event_type
        with self._lock:
            if kind in ("job_started", "job_resumed"):
                self.job_span = self.tracer.start_span(
                    f"job {event.job_id}", attributes={"raysight.job_id": event.job_id,
                                                       "raysight.resumed": kind == "job_resumed"})
            elif kind == "step_started" and event.step:
                parent = self.trace.set_span_in_context(self.job_span) if self.job_span else None
                self.steps[event.step] = self.tracer.start_span(
                    event.step, context=parent,
                    attributes={"raysight.job_id": event.job_id, "raysight.step": event.step,
                                "raysight.tasks": int(event.data.get("tasks") or 0)})
            elif kind == "task_retry" and event.step in self.steps:
                self.steps[event.step].add_event("retry", {
                    "retry_count": int(event.data.get("retry_count", 0)),
                    "error": str(event.data.get("error", {}).get("message", ""))})
            elif kind in ("step_succeeded", "step_failed") and event.step in self.steps:
                span = self.steps.pop(event.step)
                if kind == "step_failed":
                    span.set_status(self.trace.Status(self.trace.StatusCode.ERROR,
                                                      str(event.data.get("error", ""))))
                if event.data.get("rows") is not None:
                    span.set_attribute("raysight.rows", int(event.data["rows"]))
                span.end()
            elif kind in ("job_completed", "job_failed", "job_cancelled") \
                    and self.job_span is not None:
                for span in self.steps.values():
                    span.end()
                self.steps.clear()
                if kind != "job_completed":
                    self.job_span.set_status(self.trace.Status(self.trace.StatusCode.ERROR))
                self.job_span.end()
                self.job_span = None


def otel_observer() -> OtelObserver | None:
    """An OtelObserver when the OpenTelemetry API is installed, else None."""
    try:
        return OtelObserver()
    except ImportError:
        return None


#: events that are actions worth an audit record
AUDITED = {
    "job_started": "job_submitted", "job_resumed": "job_resumed",
    "job_completed": "job_completed", "job_failed": "job_failed",
    "job_cancelled": "job_cancelled",
    "task_retry": "step_retried", "step_failed": "step_failed",
    "step_restored": "step_restored_from_checkpoint",
    "compensation_started": "compensation_started",
    "compensation_succeeded": "compensation_succeeded",
    "compensation_failed": "compensation_failed",
    "notifications_sent": "notifications_sent",
}


class AuditLog:
    """Append-only audit records of one job: timestamp, action, user, job, details."""

    def __init__(self, path: str | Path, user_id: str) -> None:
        self.path = Path(path)
        self.user_id = user_id
        self._lock = threading.Lock()

    def record(self, action: str, job_id: str, **details: Any) -> None:
        line = json.dumps({
            "timestamp": dt.datetime.now(dt.UTC).isoformat(), "action": action,
            "user_id": self.user_id, "job_id": job_id, "details": details,
        }, default=str, ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def on_event(self, event: Event) -> None:
        action = AUDITED.get(event.event_type)
        if action is not None:
            details = {k: v for k, v in event.data.items() if k not in ("job_id", "metrics")}
            if event.step:
                details["step"] = event.step
            self.record(action, event.job_id, **details)
