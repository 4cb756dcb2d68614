"""What the executor and its steps share: run and step contexts, partitioned values, and the
typed payload and report that cross the boundary between the driver and a Ray worker.

A task receives a :class:`TaskPayload` (which step, which attempt, how to regroup its
arguments, where to checkpoint) and returns a :class:`TaskReport` (timings, worker, rows,
schema, attributes) beside its output; the driver reads only the report, the output stays in
Ray's object store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.events import Event, Observers
from raysight.engine.trace import TraceInfo

if TYPE_CHECKING:
    from raysight.engine.workflow import LockSpec, Task

class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


#: the input of a workflow's first step when the workflow is run without input
NOTHING: Any = _Nothing()


@dataclass
class TaskReport:
    """What one attempt of a step reports to the driver (its output stays in the store)."""

    step: str
    attempt: int
    partition: int | None
    started_at: float
    ended_at: float
    worker_pid: int
    node_id: str | None = None
    task_id: str | None = None
    #: rows, bytes and schema of the output when it is a table (or carries one)
    rows: int | None = None
    bytes: int | None = None
    schema: pa.Schema | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    #: small picklable facts about the output the step chose to report (``StepContext.details``)
    details: dict[str, Any] = field(default_factory=dict)
    #: where the output was persisted (a checkpointed step)
    checkpoint: dict[str, Any] | None = None
    #: the values a fanout step returned, one partition each
    items: list[Any] | None = None
    #: the steps a dynamic step returned
    plan: Any = None


@dataclass(frozen=True)
class CheckpointTarget:
    """Where a worker persists the output of its step."""

    store: CheckpointStore
    key: str


@dataclass(frozen=True)
class TaskPayload:
    """Everything a worker needs to run one attempt of one step, besides its arguments."""

    job_id: str
    step: str
    attempt: int
    partition: int | None
    params: dict[str, Any]
    #: how the flat task arguments regroup into the step's arguments (see worker.pack)
    layout: list[Any] = field(default_factory=list)
    wants_ctx: bool = False
    mode: str = "apply"
    faults: tuple[Fault, ...] = ()
    lock: LockSpec | None = None
    shards: int = 0
    checkpoint: CheckpointTarget | None = None


@dataclass
class Partitions:
    """A partitioned value: one ObjectRef (or small inline value) per partition, plus the
    reports of the tasks that produced them (rows, bytes, schema...) where there were any."""

    items: list[Any]
    reports: list[TaskReport] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def rows(self) -> int:
        return sum(r.rows or 0 for r in self.reports)


@dataclass(frozen=True)
class Fault:
    """An injected failure for tests and chaos drills: the step raises (or sleeps) on its
    first ``times`` attempts. ``partition`` restricts it to one partition of a mapped step."""

    step: str
    error: str = "transient"  # transient | permanent | delay | crash
    times: int = 1
    delay_s: float = 0.0
    partition: int | None = None


@dataclass
class StepContext:
    """What a step function sees about its run (pass a parameter named ``ctx`` to get it)."""

    job_id: str
    step: str
    attempt: int
    partition: int | None
    params: dict[str, Any]
    attributes: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    #: small picklable facts about the output for the driver's hooks (column statistics)
    details: dict[str, Any] = field(default_factory=dict)
    #: the fencing token of the distributed lock held for this attempt (``with_lock``)
    fencing_token: int | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            logging.getLogger("raysight.step"), {"job_id": self.job_id, "step": self.step}
        )

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = str(value)

    def add_metric(self, key: str, value: float) -> None:
        self.metrics[key] = float(value)


@dataclass
class RunContext:
    """Driver-side state of one run: ids, parameters, trace, observers, deadline, metrics."""

    job_id: str
    params: dict[str, Any] = field(default_factory=dict)
    trace: TraceInfo = field(default_factory=TraceInfo)
    observers: Observers = field(default_factory=Observers)
    deadline: float | None = None  # time.monotonic() value
    faults: tuple[Fault, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    cancel_events: tuple[threading.Event, ...] = field(default_factory=lambda: (threading.Event(),))
    #: set to stop the run at the next step boundary: running steps finish (and are
    #: checkpointed), nothing new starts (a preempted job, which resumes later); shared by
    #: every branch of the run
    drain_event: threading.Event = field(default_factory=threading.Event)
    #: where step outputs are persisted; a store with a manifest resumes the run
    checkpoints: CheckpointStore | None = None
    #: stable per-plan keys of tasks (their position in the plan), for checkpoints
    task_keys: dict[int, str] = field(default_factory=dict)
    #: completed steps with a compensation, oldest first (saga)
    completed: list[tuple[Task, Any]] = field(default_factory=list)
    #: True while the hooks of a step restored from its checkpoint run: the events they emit
    #: again (``data_loaded`` after a resume) carry ``restored: true``
    replaying: bool = False
    #: the path of the graph node this context runs (``outer/n`` in a nested graph), if any
    node: str | None = None

    def key_of(self, task: Task) -> str:
        return self.task_keys.get(id(task), task.name)

    def restorable(self, task: Task) -> dict[str, Any] | None:
        """The checkpoint entry this run restores ``task`` from instead of running it, if
        any (driver and reduce steps always run)."""
        if self.checkpoints is None or not task.checkpoint or task.mode in ("driver", "reduce"):
            return None
        entry: dict[str, Any] | None = self.checkpoints.completed(self.key_of(task))
        return entry

    def emit(self, event_type: str, step: str | None = None, **data: Any) -> None:
        if self.replaying:
            data["restored"] = True
        self.observers.on_event(Event(event_type, self.job_id, step, data))

    @property
    def cancelled(self) -> bool:
        return any(e.is_set() for e in self.cancel_events)

    def cancel(self) -> None:
        """Cancel the run: running tasks are cancelled, nothing new starts."""
        self.cancel_events[-1].set()

    @property
    def draining(self) -> bool:
        return self.drain_event.is_set()

    @property
    def stopping(self) -> bool:
        """True once the run is cancelled or stops at the next step boundary."""
        return self.cancelled or self.draining

    def drain(self) -> None:
        """Stop the run at the next step boundary: running steps finish, nothing new starts."""
        self.drain_event.set()

    def fork(self, **changes: Any) -> RunContext:
        """A context for a branch: shares trace, observers and state; cancellable on its own."""
        changes.setdefault("cancel_events", self.cancel_events + (threading.Event(),))
        return replace(self, **changes)

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


@dataclass
class StepOutcome:
    """What a finished step produced: its reports and its output (refs, not data)."""

    step: str
    reports: list[TaskReport]
    output: Any
    duration_s: float = 0.0

