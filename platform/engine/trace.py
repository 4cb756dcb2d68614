"""Trace of a workflow run: what ran, where, when, how often, and with what outcome."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

#: guards every trace's compound updates: the branches of a parallel and the nodes of a graph
#: record from their own driver threads (one lock for all traces keeps TraceInfo picklable)
_LOCK = threading.RLock()


def new_instance_id() -> str:
    return str(uuid.uuid4())


@dataclass
class StepRecord:
    """One attempt of one step (or of one partition of a mapped step)."""

    step: str
    state: str  # succeeded | failed | skipped | retried | cancelled | timed_out
    attempt: int = 1
    partition: int | None = None
    started_at: float | None = None  # wall clock, seconds since the epoch
    ended_at: float | None = None
    worker_pid: int | None = None
    node_id: str | None = None
    task_id: str | None = None
    rows: int | None = None
    error: dict[str, Any] | None = None
    #: why a skipped step did not run (a false condition, a failed upstream graph node)
    reason: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duration_s": self.duration_s}


@dataclass
class StepStats:
    """Success and failure counts and execution times of one step name."""

    success_count: int = 0
    failure_count: int = 0
    retry_count: int = 0
    skipped_count: int = 0
    total_execution_time_s: float = 0.0
    last_execution_time_s: float = 0.0

    @property
    def average_execution_time_s(self) -> float:
        runs = self.success_count + self.failure_count
        return self.total_execution_time_s / runs if runs else 0.0

    def record(self, duration_s: float, ok: bool) -> None:
        if ok:
            self.success_count += 1
        else:
            self.failure_count += 1
        self.total_execution_time_s += duration_s
        self.last_execution_time_s = duration_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "average_execution_time_s": self.average_execution_time_s}


@dataclass
class TraceInfo:
    """The trace of one workflow instance; nested workflows get a child trace."""

    workflow_instance_id: str = field(default_factory=new_instance_id)
    trace_id: str = field(default_factory=new_instance_id)
    parent_workflow_instance_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    execution_path: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    records: list[StepRecord] = field(default_factory=list)
    stats: dict[str, StepStats] = field(default_factory=dict)
    children: list[TraceInfo] = field(default_factory=list)

    def child(self) -> TraceInfo:
        """A trace for a nested workflow: hierarchical trace id, parent link."""
        child = TraceInfo(
            trace_id=f"{self.trace_id}-{new_instance_id()}",
            parent_workflow_instance_id=self.workflow_instance_id,
        )
        with _LOCK:
            self.children.append(child)
        return child

    def start(self) -> None:
        self.started_at = time.time()

    def finish(self) -> None:
        self.ended_at = time.time()

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def record_step(self, name: str) -> None:
        with _LOCK:
            self.execution_path.append(name)

    def add(self, record: StepRecord) -> None:
        with _LOCK:
            self.records.append(record)
            stats = self.stats.setdefault(record.step, StepStats())
            if record.state == "skipped":
                stats.skipped_count += 1
            elif record.state == "retried":
                stats.retry_count += 1
                stats.record(record.duration_s or 0.0, ok=False)
            elif record.state in ("succeeded", "failed", "timed_out", "cancelled"):
                stats.record(record.duration_s or 0.0, ok=record.state == "succeeded")

    def set_attributes(self, attributes: dict[str, str]) -> None:
        """Add attributes (from a step's reports) as one update."""
        with _LOCK:
            self.attributes.update(attributes)

    def to_dict(self) -> dict[str, Any]:
        with _LOCK:
            return self._to_dict()

    def _to_dict(self) -> dict[str, Any]:
        return {
            "workflow_instance_id": self.workflow_instance_id,
            "trace_id": self.trace_id,
            "parent_workflow_instance_id": self.parent_workflow_instance_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "execution_path": list(self.execution_path),
            "attributes": dict(self.attributes),
            "records": [r.to_dict() for r in self.records],
            "stats": {k: v.to_dict() for k, v in self.stats.items()},
            "children": [c.to_dict() for c in self.children],
        }
