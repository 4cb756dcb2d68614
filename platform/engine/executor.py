"""Runs workflow plans on Ray: tasks, retries with backoff, timeouts that cancel, fail-fast.

Every task returns two objects: a small report (timings, worker, rows, attributes) that the
driver reads, and the step's output, which stays in Ray's object store and is passed to the
next step as an ObjectRef. Each Ray task is named ``<job_id>/<step>`` so the Ray dashboard and
``ray.util.state`` show which job and step it belongs to.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import logging
import os
import random
import threading
import time
import traceback
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    TaskCancelledError,
    WorkerCrashedError,
)

from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.events import Event, Observers
from raysight.engine.retry import RetryPolicy
from raysight.engine.trace import StepRecord, TraceInfo
from raysight.engine.workflow import (
    Branch,
    Nested,
    Observed,
    Parallel,
    Pass,
    Retrying,
    Sequence,
    Step,
    Task,
    TimeLimited,
    When,
)
from raysight.engine.workflow import tasks as tasks_of
from raysight.errors import (
    Cancelled,
    PermanentError,
    PlanError,
    ResourceExhausted,
    SerializationError,
    StepTimeout,
    TransientError,
    WorkflowError,
    root_cause,
)
from raysight.tables import register_arrow_serializer

log = logging.getLogger(__name__)


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


#: the input of a workflow's first step when the workflow is run without input
NOTHING: Any = _Nothing()


@dataclass
class Partitions:
    """A partitioned value: one ObjectRef (or small inline value) per partition, plus each
    partition's task report (rows, bytes, schema...)."""

    items: list[Any]
    reports: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def rows(self) -> int:
        return sum(r.get("rows") or 0 for r in self.reports)


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
    #: where step outputs are persisted; a store with a manifest resumes the run
    checkpoints: CheckpointStore | None = None
    #: stable per-plan keys of tasks (their position in the plan), for checkpoints
    task_keys: dict[int, str] = field(default_factory=dict)
    #: completed steps with a compensation, oldest first (saga)
    completed: list[tuple[Task, Any]] = field(default_factory=list)
    #: True while the hooks of a step restored from its checkpoint run: the events they emit
    #: again (``data_loaded`` after a resume) carry ``restored: true``
    replaying: bool = False

    def key_of(self, task: Task) -> str:
        return self.task_keys.get(id(task), task.name)

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
    reports: list[dict[str, Any]]
    output: Any
    duration_s: float


# ---------------------------------------------------------------------------------------------
# Worker side


@ray.remote(num_returns=2)
def _run_task(fn: Any, meta: dict[str, Any], *args: Any) -> tuple[dict[str, Any], Any]:
    """Runs one attempt of one step in a Ray worker; returns (report, output)."""
    return _execute(fn, meta, args)


@ray.remote
class _StepActor:
    """Runs the calls of an actor-mode step; a class is instantiated once per actor (load a
    model, open a connection), a function is called as it is."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn() if isinstance(fn, type) else fn

    @ray.method(num_returns=2)
    def run(self, meta: dict[str, Any], *args: Any) -> tuple[dict[str, Any], Any]:
        return _execute(self.fn, meta, args)


@ray.remote
def _restore_task(store: Any, part: dict[str, Any]) -> Any:
    """Loads one checkpointed partition into the object store."""
    register_arrow_serializer()
    return store.read(part)


@ray.remote
def _compensate_task(fn: Any, meta: dict[str, Any], output: Any) -> None:
    ctx = StepContext(meta["job_id"], meta["step"], 1, None, meta["params"])
    if "ctx" in inspect.signature(fn).parameters:
        fn(output, ctx=ctx)
    else:
        fn(output)


def _execute(fn: Any, meta: dict[str, Any], args: tuple[Any, ...]) -> tuple[dict[str, Any], Any]:
    started = time.time()
    register_arrow_serializer()
    ctx = StepContext(meta["job_id"], meta["step"], meta["attempt"], meta["partition"],
                      meta["params"])
    _inject_faults(meta, ctx)
    call_args = _unpack(meta["layout"], args)
    lock = meta.get("lock")
    if lock is not None:
        from raysight.engine.lock import distributed_lock

        with distributed_lock(lock.key, lease_s=lock.lease_s, timeout_s=lock.timeout_s) as lease:
            ctx.fencing_token = lease.token
            output = fn(*call_args, ctx=ctx) if meta["wants_ctx"] else fn(*call_args)
    else:
        output = fn(*call_args, ctx=ctx) if meta["wants_ctx"] else fn(*call_args)
    report = _report(meta, ctx, started, output)
    if meta["mode"] == "fanout":
        report["items"] = list(output)
        output = None
    elif meta["mode"] == "dynamic":
        report["plan"] = output
        output = None
    elif meta["mode"] == "shard":
        shards = list(output)
        if len(shards) != meta["shards"]:
            raise PermanentError(f"step {ctx.step!r} returned {len(shards)} shards, expected "
                                 f"{meta['shards']}", step=ctx.step)
        return (report, *shards)  # type: ignore[return-value]
    checkpoint = meta.get("checkpoint")
    if checkpoint is not None:
        report["checkpoint"] = checkpoint["store"].write(checkpoint["key"],
                                                         ctx.partition or 0, output)
    return report, output


def _inject_faults(meta: dict[str, Any], ctx: StepContext) -> None:
    for fault in meta["faults"]:
        if fault.step != ctx.step or ctx.attempt > fault.times:
            continue
        if fault.partition is not None and fault.partition != ctx.partition:
            continue
        if fault.error == "transient":
            raise TransientError(f"injected transient fault in {ctx.step} (attempt {ctx.attempt})")
        if fault.error == "permanent":
            raise PermanentError(f"injected permanent fault in {ctx.step}")
        if fault.error == "delay":
            time.sleep(fault.delay_s)
        if fault.error == "crash":
            os._exit(1)


def _report(meta: dict[str, Any], ctx: StepContext, started: float, output: Any) -> dict[str, Any]:
    rows = nbytes = None
    schema = None
    table = getattr(output, "table", output)  # AnalysisResult carries a table
    if hasattr(table, "num_rows") and hasattr(table, "schema"):
        rows, nbytes, schema = table.num_rows, table.nbytes, table.schema
    runtime = ray.get_runtime_context()
    return {
        "step": ctx.step,
        "attempt": ctx.attempt,
        "partition": ctx.partition,
        "started_at": started,
        "ended_at": time.time(),
        "worker_pid": os.getpid(),
        "node_id": runtime.get_node_id(),
        "task_id": runtime.get_task_id(),
        "rows": rows,
        "bytes": nbytes,
        "schema": schema,
        "attributes": ctx.attributes,
        "metrics": ctx.metrics,
    }


def _pack(value: Any) -> tuple[list[Any], list[Any]]:
    """Flatten a step input into top-level task args (so Ray resolves every ObjectRef in the
    worker) plus a layout that tells the worker how to regroup them."""
    if value is NOTHING:
        return [], []
    if isinstance(value, tuple):
        args: list[Any] = []
        layout: list[Any] = []
        for element in value:
            a, sub = _pack(element)
            args += a
            layout += sub
        return args, layout
    if isinstance(value, Partitions):
        return list(value.items), [len(value.items)]
    return [value], [None]


def _unpack(layout: list[Any], args: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    pos = 0
    for entry in layout:
        if entry is None:
            out.append(args[pos])
            pos += 1
        else:
            out.append(list(args[pos : pos + entry]))
            pos += entry
    return out


# ---------------------------------------------------------------------------------------------
# Driver side


def classify(exc: BaseException, step: str) -> WorkflowError:
    """Map whatever a task raised (through Ray's wrappers) onto the error taxonomy."""
    cause = root_cause(exc)
    if isinstance(cause, WorkflowError):
        return cause
    if isinstance(exc, TaskCancelledError) or isinstance(cause, TaskCancelledError):
        return Cancelled(f"step {step!r} was cancelled", step=step)
    if isinstance(exc, OutOfMemoryError):
        return ResourceExhausted(f"step {step!r} ran out of memory: {exc}", step=step)
    if isinstance(exc, (WorkerCrashedError, NodeDiedError, ObjectLostError)):
        return TransientError(f"step {step!r} lost its worker: {type(exc).__name__}", step=step)
    if isinstance(exc, GetTimeoutError):
        return StepTimeout(f"step {step!r} timed out waiting for a result", step=step)
    if isinstance(cause, (TypeError, AttributeError)) and "pickle" in str(cause).lower():
        return SerializationError(f"step {step!r}: {cause}", step=step)
    # a task's own traceback travels as text in Ray's wrapper; a local one is formatted
    detail = getattr(exc, "traceback_str", "") or (
        "".join(traceback.format_exception(cause)) if isinstance(cause, BaseException) else "")
    return PermanentError(f"step {step!r} failed: {type(cause).__name__}: {cause}",
                          step=step, traceback=detail[-4000:])


class Executor:
    """Interprets a workflow plan on the connected Ray cluster.

    ``default_retry`` applies to tasks without their own policy. ``rng`` and ``sleep`` are
    injectable so tests can pin backoff delays.
    """

    def __init__(
        self,
        default_retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        poll_s: float = 0.25,
        max_parallel_branches: int = 32,
    ) -> None:
        self.default_retry = default_retry or RetryPolicy()
        self.rng = rng or random.Random()
        self.poll_s = poll_s
        self.max_parallel_branches = max_parallel_branches

    # -- entry point ----------------------------------------------------------------------

    def run(self, node: Step, ctx: RunContext, value: Any = NOTHING) -> Any:
        """Run ``node`` on ``value``; returns its output (ObjectRefs/Partitions, not data).

        On failure, completed steps that declared a compensation are compensated in reverse
        order before the error is raised (saga)."""
        register_arrow_serializer()
        for i, task in enumerate(tasks_of(node)):
            ctx.task_keys.setdefault(id(task), f"{i:03d}-{task.name}")
        ctx.trace.start()
        try:
            return self._run(node, value, ctx)
        except BaseException:
            if ctx.completed:
                ctx.state["compensations"] = self.compensate(ctx)
            raise
        finally:
            ctx.trace.finish()

    def _run(self, node: Step, value: Any, ctx: RunContext) -> Any:
        if ctx.cancelled:
            raise Cancelled(f"run cancelled before {node.name}")
        if isinstance(node, Task):
            return self._run_task(node, value, ctx)
        if isinstance(node, Sequence):
            steps = list(node.steps)
            i = 0
            while i < len(steps):
                j = i
                while j < len(steps) and _is_plain_task(steps[j], ctx, chain=True):
                    j += 1
                if j - i >= 2:  # a run of plain steps: submit them chained, confirm in order
                    value = self._run_plain_chain(steps[i:j], value, ctx)  # type: ignore[arg-type]
                    i = j
                else:
                    value = self._run(steps[i], value, ctx)
                    i += 1
            return value
        if isinstance(node, When):
            return self._run_when(node, value, ctx)
        if isinstance(node, Branch):
            taken = bool(node.predicate(ctx))
            ctx.trace.attributes[f"{node.name}.condition_result"] = str(taken).lower()
            if taken:
                return self._run(node.if_true, value, ctx)
            if node.if_false is not None:
                return self._run(node.if_false, value, ctx)
            return self._skip(node.if_true, value, ctx, node.description)
        if isinstance(node, Parallel):
            return self._run_parallel(node, value, ctx)
        if isinstance(node, Nested):
            child = ctx.fork(trace=ctx.trace.child(), params={**ctx.params, **node.params},
                             cancel_events=ctx.cancel_events)
            child.trace.start()
            try:
                return self._run(node.inner, value, child)
            finally:
                child.trace.finish()
        if isinstance(node, Retrying):
            return self._run_retrying(node, value, ctx)
        if isinstance(node, TimeLimited):
            return self._run_time_limited(node, value, ctx)
        if isinstance(node, Observed):
            observers = Observers([ctx.observers, node.observer])
            return self._run(node.inner, value, ctx.fork(observers=observers,
                                                          cancel_events=ctx.cancel_events))
        if isinstance(node, Pass):
            return value
        raise TypeError(f"not a workflow step: {node!r}")

    # -- combinators ----------------------------------------------------------------------

    def _run_when(self, node: When, value: Any, ctx: RunContext) -> Any:
        met = bool(node.predicate(ctx))
        ctx.trace.attributes[f"{node.inner.name}.condition_result"] = str(met).lower()
        if met:
            return self._run(node.inner, value, ctx)
        return self._skip(node.inner, value, ctx, node.description)

    def _skip(self, node: Step, value: Any, ctx: RunContext, reason: str) -> Any:
        now = time.time()
        ctx.trace.record_step(f"{node.name} (skipped)")
        ctx.trace.add(StepRecord(node.name, "skipped", started_at=now, ended_at=now))
        ctx.emit("step_skipped", node.name,
                 reason=f"condition false: {reason}" if reason else "condition not met")
        return value

    def _run_parallel(self, node: Parallel, value: Any, ctx: RunContext) -> tuple[Any, ...]:
        if all(_is_plain_task(b, ctx) for b in node.branches):
            return self._run_plain_batch(node.branches, value, ctx)  # type: ignore[arg-type]
        branch_ctxs = [ctx.fork() for _ in node.branches]
        workers = min(len(node.branches), self.max_parallel_branches)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raysight-branch") as pool:
            futures = [pool.submit(self._run, b, value, c)
                       for b, c in zip(node.branches, branch_ctxs, strict=True)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f in done and f.exception() is not None]
            if failed:
                for c in branch_ctxs:
                    c.cancel()
                wait(futures)
                # the first branch in declaration order that failed for its own reason
                errors = [f.exception() for f in futures if f.exception() is not None]
                own = [e for e in errors if not isinstance(e, Cancelled)]
                raise (own or errors)[0]  # type: ignore[misc]
            return tuple(f.result() for f in futures)

    def _run_plain_batch(self, branches: tuple[Task, ...], value: Any,
                         ctx: RunContext) -> tuple[Any, ...]:
        """Parallel plain steps as one batch of Ray tasks (no thread per branch)."""
        started = time.monotonic()
        for task in branches:
            ctx.trace.record_step(task.name)
            ctx.emit("step_started", task.name, attempt=1, tasks=1,
                     resources=task.resources.ray_options())
        results = self._run_calls([_Call(t, None, _args_of(t, value)) for t in branches], ctx)
        outputs = []
        for task, result in zip(branches, results, strict=True):
            outcome = _outcome(task, [result], ctx)
            outcome.duration_s = time.monotonic() - started
            if ctx.checkpoints is not None and task.checkpoint:
                parts = [r["checkpoint"] for r in outcome.reports if "checkpoint" in r]
                ctx.checkpoints.commit(ctx.key_of(task), task.name, parts, outcome.reports)
            ctx.emit("step_succeeded", task.name, duration_s=round(outcome.duration_s, 6),
                     tasks=1, rows=_sum_rows(outcome.reports))
            if task.compensate is not None:
                ctx.completed.append((task, outcome.output))
            outputs.append(outcome.output)
        return tuple(outputs)

    def _run_plain_chain(self, chain: list[Task], value: Any, ctx: RunContext) -> Any:
        """Consecutive plain steps: each is submitted at once with the previous step's
        output ref as its input, so Ray pipelines them; reports are confirmed in order. A
        failed step cancels the ones after it, is retried under its policy, and the rest of
        the chain is submitted again behind it."""
        start, attempts, first = 0, [1] * len(chain), time.monotonic()
        retries = [0] * len(chain)
        while start < len(chain):
            submitted = []
            current = value
            for k in range(start, len(chain)):
                task = chain[k]
                if attempts[k] == 1 and k >= start:
                    ctx.trace.record_step(task.name)
                    ctx.emit("step_started", task.name, attempt=1, tasks=1,
                             resources=task.resources.ray_options())
                args = _args_of(task, current)
                packed, layout = _pack(args if len(args) != 1 else args[0])
                checkpoint = ctx.checkpoints is not None and task.checkpoint
                meta = {"job_id": ctx.job_id, "step": task.name, "attempt": attempts[k],
                        "partition": None, "params": ctx.params, "layout": layout,
                        "wants_ctx": task.wants_ctx, "mode": task.mode, "faults": ctx.faults,
                        "lock": task.lock,
                        "checkpoint": {"store": ctx.checkpoints, "key": ctx.key_of(task)}
                        if checkpoint else None}
                report_ref, data_ref = _remote_for(
                    f"{ctx.job_id}/{task.name}", task).remote(task.fn, meta, *packed)
                submitted.append((k, report_ref, data_ref, time.time()))
                current = data_ref
            confirmed_at = time.monotonic()
            for k, report_ref, data_ref, t_wall in submitted:
                task = chain[k]
                try:
                    report = self._await_report(report_ref, task, confirmed_at, ctx)
                except WorkflowError as err:
                    # Only a step that is still running is cancelled (timeout, cancellation);
                    # the steps after it depend on its output and fail with it on their own.
                    # Force-cancelling a task that already finished crashes Ray 2.60's core
                    # worker ("Tried to complete task that was not pending").
                    if isinstance(err, (StepTimeout, Cancelled)):
                        ray.cancel(report_ref, force=True, recursive=True)
                    policy = task.retry or self.default_retry
                    retry = policy.should_retry(err, retries[k], time.monotonic() - first)
                    state = "timed_out" if isinstance(err, StepTimeout) else "failed"
                    ctx.trace.add(StepRecord(task.name, "retried" if retry else state,
                                             attempts[k], started_at=t_wall,
                                             ended_at=time.time(), error=err.to_dict()))
                    if not retry:
                        err.details.setdefault("step", task.name)
                        ctx.emit("step_failed", task.name, attempt=attempts[k],
                                 error=err.to_dict())
                        raise
                    retries[k] += 1
                    attempts[k] += 1
                    delay = policy.delay(retries[k], self.rng)
                    ctx.emit("task_retry", task.name, task=task.name, retry_count=retries[k],
                             max_retries=_jsonable_count(policy.max_retries),
                             delay=round(delay, 6), error=err.to_dict())
                    self._sleep(delay, ctx)
                    start = k
                    break
                ctx.trace.add(StepRecord(
                    task.name, "succeeded", report["attempt"], None,
                    started_at=report["started_at"], ended_at=report["ended_at"],
                    worker_pid=report["worker_pid"], node_id=report["node_id"],
                    task_id=report["task_id"], rows=report["rows"]))
                outcome = _outcome(task, [(report, data_ref)], ctx)
                outcome.duration_s = time.monotonic() - confirmed_at
                confirmed_at = time.monotonic()
                if ctx.checkpoints is not None and task.checkpoint:
                    ctx.checkpoints.commit(ctx.key_of(task), task.name,
                                           [report["checkpoint"]], [report])
                ctx.emit("step_succeeded", task.name, duration_s=round(outcome.duration_s, 6),
                         tasks=1, rows=report["rows"])
                if task.compensate is not None:
                    ctx.completed.append((task, data_ref))
                value = data_ref
            else:
                start = len(chain)
        return value

    def _await_report(self, ref: Any, task: Task, since: float, ctx: RunContext) -> Any:
        """The report of one call, honouring the step timeout (counted from ``since``, when
        its input was ready), the job deadline and cancellation."""
        while True:
            if ctx.cancelled:
                raise Cancelled(f"step {task.name!r} cancelled", step=task.name)
            now = time.monotonic()
            wait_s = self.poll_s
            remaining = ctx.remaining_s()
            if remaining is not None:
                if remaining <= 0:
                    raise StepTimeout(f"job {ctx.job_id} exceeded its timeout during step "
                                      f"{task.name!r}", step=task.name)
                wait_s = min(wait_s, remaining)
            if task.timeout_s is not None:
                left = since + task.timeout_s - now
                if left <= 0:
                    raise StepTimeout(f"step {task.name!r} exceeded its timeout of "
                                      f"{task.timeout_s:g} s and was cancelled",
                                      timeout_s=task.timeout_s, step=task.name)
                wait_s = min(wait_s, left)
            try:  # one call: wait up to wait_s for the (small) report
                return ray.get(ref, timeout=max(0.0, wait_s))
            except GetTimeoutError:
                continue
            except Exception as exc:
                raise classify(exc, task.name) from exc

    def _run_retrying(self, node: Retrying, value: Any, ctx: RunContext) -> Any:
        started = time.monotonic()
        retries = 0
        while True:
            try:
                return self._run(node.inner, value, ctx)
            except WorkflowError as err:
                if not node.policy.should_retry(err, retries, time.monotonic() - started):
                    raise
                retries += 1
                delay = node.policy.delay(retries, self.rng)
                ctx.emit("task_retry", node.name, task=node.name, retry_count=retries,
                         max_retries=_jsonable_count(node.policy.max_retries), delay=delay,
                         error=err.to_dict())
                self._sleep(delay, ctx)

    def _run_time_limited(self, node: TimeLimited, value: Any, ctx: RunContext) -> Any:
        own = time.monotonic() + node.timeout_s
        deadline = own if ctx.deadline is None else min(own, ctx.deadline)
        try:
            return self._run(node.inner, value, ctx.fork(deadline=deadline,
                                                         cancel_events=ctx.cancel_events))
        except StepTimeout as err:
            if ctx.deadline is not None and ctx.deadline <= own:
                raise
            raise StepTimeout(f"{node.inner.name} exceeded its timeout of {node.timeout_s:g} s",
                              timeout_s=node.timeout_s, step=node.inner.name) from err

    def _sleep(self, seconds: float, ctx: RunContext) -> None:
        """Sleep, but wake up for cancellation and stop at the deadline."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if ctx.cancelled:
                raise Cancelled("run cancelled while waiting to retry")
            remaining = ctx.remaining_s()
            if remaining is not None and remaining <= 0:
                raise StepTimeout("job exceeded its timeout while waiting to retry")
            time.sleep(min(left, self.poll_s))

    # -- tasks ----------------------------------------------------------------------------

    def _run_task(self, task: Task, value: Any, ctx: RunContext) -> Any:
        ctx.trace.record_step(task.name)
        started = time.monotonic()
        key = ctx.key_of(task)
        entry = None
        if ctx.checkpoints is not None and task.checkpoint and task.mode != "driver":
            entry = ctx.checkpoints.completed(key)
        if entry is not None:
            outcome = self._restore(task, entry, ctx)
        elif task.mode == "driver":
            outcome = self._run_in_driver(task, value, ctx)
        else:
            outcome = self._run_remote(task, value, ctx)
            if ctx.checkpoints is not None and task.checkpoint and task.mode != "dynamic":
                parts = [r["checkpoint"] for r in outcome.reports if "checkpoint" in r]
                ctx.checkpoints.commit(key, task.name, parts, outcome.reports)
        outcome.duration_s = time.monotonic() - started
        if entry is None:
            ctx.emit("step_succeeded", task.name, duration_s=round(outcome.duration_s, 6),
                     tasks=len(outcome.reports), rows=_sum_rows(outcome.reports))
        if task.compensate is not None:
            ctx.completed.append((task, outcome.output))
        if task.on_success is not None:
            ctx.replaying = entry is not None
            try:
                task.on_success(ctx, outcome)
            finally:
                ctx.replaying = False
        if task.mode == "dynamic":
            return self._run_dynamic(task, outcome, value, ctx)
        return outcome.output

    def _restore(self, task: Task, entry: dict[str, Any], ctx: RunContext) -> StepOutcome:
        """A checkpointed step: its outputs are loaded by Ray tasks, not recomputed."""
        assert ctx.checkpoints is not None
        reports = ctx.checkpoints.reports(entry)
        if task.mode == "fanout":
            items = reports[0]["items"]
            output: Any = Partitions(items, [{"rows": None}] * len(items))
        else:
            load = _restore_task.options(name=f"{ctx.job_id}/{task.name}.restore", num_cpus=0)
            refs = [load.remote(ctx.checkpoints, part) for part in entry["parts"]]
            output = Partitions(refs, reports) if task.mode == "map" else refs[0]
        now = time.time()
        ctx.trace.add(StepRecord(task.name, "restored", started_at=now, ended_at=now))
        ctx.emit("step_restored", task.name, partitions=len(entry["parts"]),
                 rows=_sum_rows(reports), checkpoint=ctx.key_of(task))
        return StepOutcome(task.name, reports, output, 0.0)

    def _run_dynamic(self, task: Task, outcome: StepOutcome, value: Any, ctx: RunContext) -> Any:
        """A step that returned more steps: run them (as a nested workflow) on its input."""
        plan = outcome.reports[0]["plan"]
        if isinstance(plan, (list, tuple)):
            plan = Parallel(tuple(plan))
        if not isinstance(plan, Step):
            raise PermanentError(f"dynamic step {task.name!r} must return a step or a list of "
                                 f"steps, not {type(plan).__name__}", step=task.name)
        prefix = ctx.key_of(task) + "/"
        for i, sub in enumerate(tasks_of(plan)):
            ctx.task_keys.setdefault(id(sub), f"{prefix}{i:03d}-{sub.name}")
        ctx.emit("step_expanded", task.name, steps=len(tasks_of(plan)))
        ctx.state.setdefault("_dynamic_plans", []).append(plan)  # keep ids alive for keys
        return self._run(Nested(plan, f"Dynamic({task.name})"), value, ctx)

    def _run_in_driver(self, task: Task, value: Any, ctx: RunContext) -> StepOutcome:
        ctx.emit("step_started", task.name, attempt=1, tasks=0)
        policy = task.retry or self.default_retry
        retries = 0
        first = time.monotonic()
        while True:
            sctx = StepContext(ctx.job_id, task.name, retries + 1, None, ctx.params)
            t0 = time.time()
            args = () if value is NOTHING and not _takes_input(task) else (
                None if value is NOTHING else value,)
            try:
                out = task.fn(*args, ctx=sctx) if task.wants_ctx else task.fn(*args)
            except Exception as exc:
                err = classify(exc, task.name)
                record = StepRecord(task.name, "failed", retries + 1, started_at=t0,
                                    ended_at=time.time(), worker_pid=os.getpid(),
                                    error=err.to_dict())
                if policy.should_retry(err, retries, time.monotonic() - first):
                    retries += 1
                    record.state = "retried"
                    ctx.trace.add(record)
                    delay = policy.delay(retries, self.rng)
                    ctx.emit("task_retry", task.name, task=task.name, retry_count=retries,
                             max_retries=_jsonable_count(policy.max_retries), delay=delay,
                             error=err.to_dict())
                    self._sleep(delay, ctx)
                    continue
                ctx.trace.add(record)
                err.details.setdefault("step", task.name)
                ctx.emit("step_failed", task.name, error=err.to_dict())
                raise err from exc
            report = {"step": task.name, "attempt": retries + 1, "partition": None,
                      "started_at": t0, "ended_at": time.time(), "worker_pid": os.getpid(),
                      "attributes": sctx.attributes, "metrics": sctx.metrics}
            ctx.trace.add(StepRecord(task.name, "succeeded", retries + 1, started_at=t0,
                                     ended_at=report["ended_at"], worker_pid=os.getpid()))
            return StepOutcome(task.name, [report], out, 0.0)

    def _run_remote(self, task: Task, value: Any, ctx: RunContext) -> StepOutcome:
        """Run one step's calls (one per partition for a mapped step) as Ray tasks."""
        if task.mode in ("map", "actor", "shard"):
            mapped, broadcast = _split_mapped(task, value)
            calls = [_Call(task, i, (p, *broadcast)) for i, p in enumerate(mapped.items)]
        else:
            calls = [_Call(task, None, _args_of(task, value))]
        if not calls:  # mapping over zero partitions
            ctx.emit("step_started", task.name, attempt=1, tasks=0)
            return StepOutcome(task.name, [], Partitions([], []), 0.0)
        ctx.emit("step_started", task.name, attempt=1, tasks=len(calls),
                 resources=task.resources.ray_options())
        results = self._run_calls(calls, ctx)
        return _outcome(task, results, ctx)

    def _run_calls(self, calls: list[_Call], ctx: RunContext) -> list[tuple[dict[str, Any], Any]]:
        """Submit calls as Ray tasks, wait with timeouts, retry with backoff, fail fast.

        Calls may belong to different tasks (a parallel group of plain steps runs as one
        batch); each follows its own task's retry policy, timeout and guards."""
        steps = {id(c.task): c.task for c in calls}
        actor_task = next((t for t in steps.values() if t.mode == "actor"), None)
        pool = _ActorPool(actor_task, min(actor_task.concurrency, len(calls))) \
            if actor_task is not None else None
        # a function shared by many calls goes into the object store once
        shared = {k: ray.put(t.fn) for k, t in steps.items()
                  if t.mode != "actor" and sum(c.task is t for c in calls) > 1}
        options = {k: f"{ctx.job_id}/{t.name}" for k, t in steps.items()}
        breakers = {k: self._breaker(t.circuit_breaker)
                    for k, t in steps.items() if t.circuit_breaker}
        n = len(calls)
        retries = [0] * n
        results: list[tuple[dict[str, Any], Any] | None] = [None] * n
        # report ref -> (call index, data ref, submitted at: wall clock, monotonic, actor)
        inflight: dict[Any, tuple[int, Any, float, float, Any]] = {}
        due: list[tuple[float, int]] = [(0.0, i) for i in range(n)]  # calls waiting to start
        first = time.monotonic()
        timeouts = [c.task.timeout_s for c in calls]

        def submit(i: int) -> None:
            call = calls[i]
            task = call.task
            breaker = breakers.get(id(task))
            if breaker is not None and not ray.get(breaker.allow.remote()):
                from raysight.engine.breaker import CircuitOpenError

                fail(i, CircuitOpenError(
                    f"circuit breaker {task.circuit_breaker!r} is open: step {task.name!r} was "
                    "not run", breaker=task.circuit_breaker, step=task.name), time.time(),
                    count=False)
                return
            packed, layout = _pack(call.args if len(call.args) != 1 else call.args[0])
            checkpoint = (ctx.checkpoints is not None and task.checkpoint
                          and task.mode not in ("fanout", "dynamic", "shard"))
            meta = {
                "job_id": ctx.job_id, "step": task.name, "attempt": retries[i] + 1,
                "partition": call.partition, "params": ctx.params, "layout": layout,
                "wants_ctx": task.wants_ctx, "mode": task.mode, "faults": ctx.faults,
                "lock": task.lock, "shards": task.shards,
                "checkpoint": {"store": ctx.checkpoints, "key": ctx.key_of(task)}
                if checkpoint else None,
            }
            actor = None
            if pool is not None:
                actor = pool.take()
                if actor is None:  # every actor is busy: try again when one frees up
                    heapq.heappush(due, (time.monotonic() + self.poll_s / 5, i))
                    return
                report_ref, data_ref = actor.run.options(
                    name=options[id(task)]).remote(meta, *packed)
            else:
                fn = shared.get(id(task), task.fn)
                remote = _remote_for(options[id(task)], task)
                if task.mode == "shard":
                    refs = remote.remote(fn, meta, *packed)
                    report_ref, data_ref = refs[0], refs[1:]
                else:
                    report_ref, data_ref = remote.remote(fn, meta, *packed)
            inflight[report_ref] = (i, data_ref, time.time(), time.monotonic(), actor)

        def cancel_all() -> None:
            # tasks that already finished are left alone: force-cancelling one crashes Ray
            done = set(ray.wait(list(inflight), num_returns=len(inflight), timeout=0)[0]) \
                if inflight else set()
            for ref, (_, _, _, _, actor) in inflight.items():
                if ref in done:
                    continue
                try:
                    ray.cancel(ref, force=actor is None, recursive=True)
                except Exception:  # already finished or gone
                    log.debug("cancel of %s failed", ref, exc_info=True)
                if actor is not None and pool is not None:
                    pool.discard(actor)
            inflight.clear()

        def fail(i: int, err: WorkflowError, t_wall: float, state: str = "failed",
                 count: bool = True) -> None:
            task = calls[i].task
            breaker = breakers.get(id(task))
            if breaker is not None and count:
                from raysight.engine.breaker import counts_as_failure

                if counts_as_failure(err):
                    breaker.record.remote(False)
            policy = task.retry or self.default_retry
            retry = policy.should_retry(err, retries[i], time.monotonic() - first)
            ctx.trace.add(StepRecord(task.name, "retried" if retry else state, retries[i] + 1,
                                     calls[i].partition, started_at=t_wall, ended_at=time.time(),
                                     error=err.to_dict()))
            if retry:
                retries[i] += 1
                delay = policy.delay(retries[i], self.rng)
                ctx.emit("task_retry", task.name, task=task.name, partition=calls[i].partition,
                         retry_count=retries[i], max_retries=_jsonable_count(policy.max_retries),
                         delay=round(delay, 6), error=err.to_dict())
                heapq.heappush(due, (time.monotonic() + delay, i))
                return
            cancel_all()
            err.details.setdefault("step", task.name)
            ctx.emit("step_failed", task.name, partition=calls[i].partition,
                     attempt=retries[i] + 1, error=err.to_dict())
            raise err

        heapq.heapify(due)
        names = ", ".join(sorted({c.task.name for c in calls}))
        try:
            while inflight or due:
                now = time.monotonic()
                while due and due[0][0] <= now:
                    submit(heapq.heappop(due)[1])
                if ctx.cancelled:
                    cancel_all()
                    raise Cancelled(f"step {names!r} cancelled", step=names)
                remaining = ctx.remaining_s()
                if remaining is not None and remaining <= 0:
                    cancel_all()
                    err = StepTimeout(f"job {ctx.job_id} exceeded its timeout during step "
                                      f"{names!r}", step=names)
                    ctx.trace.add(StepRecord(names, "timed_out", started_at=time.time(),
                                             ended_at=time.time(), error=err.to_dict()))
                    ctx.emit("step_failed", names, error=err.to_dict())
                    raise err
                wait_s = self.poll_s
                if remaining is not None:
                    wait_s = min(wait_s, remaining)
                if due:
                    wait_s = min(wait_s, max(0.0, due[0][0] - now))
                limits = [v[3] + timeouts[v[0]] for v in inflight.values()
                          if timeouts[v[0]] is not None]
                if limits:
                    wait_s = min(wait_s, max(0.0, min(limits) - now))
                if not inflight:
                    time.sleep(max(0.0, wait_s))
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=max(0.0, wait_s))
                if ready and len(inflight) > 1:
                    ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                for ref in ready:
                    i, data_ref, t_wall, _, actor = inflight.pop(ref)
                    task = calls[i].task
                    if pool is not None:
                        pool.give_back(actor)
                    try:
                        report = ray.get(ref)
                    except Exception as exc:  # the task raised: classify, maybe retry
                        fail(i, classify(exc, task.name), t_wall)
                        continue
                    if id(task) in breakers:
                        breakers[id(task)].record.remote(True)
                    results[i] = (report, data_ref)
                    ctx.trace.add(StepRecord(
                        task.name, "succeeded", report["attempt"], report["partition"],
                        started_at=report["started_at"], ended_at=report["ended_at"],
                        worker_pid=report["worker_pid"], node_id=report["node_id"],
                        task_id=report["task_id"], rows=report["rows"]))
                if limits:
                    now = time.monotonic()
                    for ref, (i, _, t_wall, t_mono, actor) in list(inflight.items()):
                        limit = timeouts[i]
                        if limit is not None and now - t_mono >= limit:
                            inflight.pop(ref)
                            # a running actor task cannot be force-cancelled: kill its actor
                            ray.cancel(ref, force=actor is None, recursive=True)
                            if actor is not None and pool is not None:
                                pool.discard(actor)
                            name = calls[i].task.name
                            fail(i, StepTimeout(
                                f"step {name!r} exceeded its timeout of {limit:g} s and was "
                                "cancelled", timeout_s=limit, step=name), t_wall, "timed_out")
        except BaseException:
            cancel_all()
            raise
        finally:
            if pool is not None:
                pool.close()
        return results  # type: ignore[return-value]

    def _breaker(self, name: str) -> Any:
        from raysight.engine.breaker import breaker

        return breaker(name)

    # -- sagas ----------------------------------------------------------------------------

    def compensate(self, ctx: RunContext) -> list[dict[str, Any]]:
        """Undo completed steps that declared a compensation, newest first."""
        outcomes = []
        while ctx.completed:
            task, output = ctx.completed.pop()
            ctx.emit("compensation_started", task.name)
            meta = {"job_id": ctx.job_id, "step": f"{task.name}.compensate", "attempt": 1,
                    "partition": None, "params": ctx.params}
            try:
                ray.get(_compensate_task.options(name=f"{ctx.job_id}/{task.name}.compensate")
                        .remote(task.compensate, meta, output))
            except Exception as exc:  # keep undoing the others; report this one
                err = classify(exc, f"{task.name}.compensate")
                ctx.emit("compensation_failed", task.name, error=err.to_dict())
                outcomes.append({"step": task.name, "state": "failed", "error": err.to_dict()})
                continue
            ctx.emit("compensation_succeeded", task.name)
            outcomes.append({"step": task.name, "state": "compensated"})
        return outcomes


class _ActorPool:
    """Actors that serve the calls of one execution of an actor-mode step."""

    def __init__(self, task: Task, size: int) -> None:
        self.task = task
        self.factory = _StepActor.options(**task.resources.ray_options())
        self.free: list[Any] = [self.factory.remote(task.fn) for _ in range(max(1, size))]
        self.all: list[Any] = list(self.free)

    def take(self) -> Any:
        return self.free.pop() if self.free else None

    def give_back(self, actor: Any) -> None:
        if actor in self.all and actor not in self.free:
            self.free.append(actor)

    def discard(self, actor: Any) -> None:
        """Kill an actor whose call must stop (timeout, fail-fast) and start a fresh one."""
        ray.kill(actor, no_restart=True)
        self.all.remove(actor)
        fresh = self.factory.remote(self.task.fn)
        self.all.append(fresh)
        self.free.append(fresh)

    def close(self) -> None:
        for actor in self.all:
            ray.kill(actor, no_restart=True)
        self.all.clear()
        self.free.clear()


@dataclass
class _Call:
    """One Ray task to run: a step, the partition it works on, and its arguments."""

    task: Task
    partition: int | None
    args: tuple[Any, ...]


@functools.lru_cache(maxsize=1024)
def _remote_options(name: str, system_retries: int, num_returns: int, num_cpus: float,
                    num_gpus: float, memory: int | None,
                    resources: tuple[tuple[str, float], ...]) -> Any:
    opts: dict[str, Any] = {"name": name, "max_retries": system_retries,
                            "retry_exceptions": False, "num_returns": num_returns,
                            "num_cpus": num_cpus}
    if num_gpus:
        opts["num_gpus"] = num_gpus
    if memory:
        opts["memory"] = memory
    if resources:
        opts["resources"] = dict(resources)
    return _run_task.options(**opts)


def _remote_for(name: str, task: Task) -> Any:
    """The remote function with a task's Ray options (built once per name and options)."""
    r = task.resources
    return _remote_options(name, task.system_retries,
                           task.shards + 1 if task.mode == "shard" else 2, r.num_cpus,
                           r.num_gpus, r.memory, tuple(sorted(r.resources.items())))


def _is_plain_task(node: Step, ctx: RunContext, chain: bool = False) -> bool:
    """A step that can join a batch: one remote call, no hooks, nothing to restore (and, in
    a chain, no circuit breaker, which must be asked before each attempt)."""
    return (isinstance(node, Task) and node.mode == "apply" and node.on_success is None
            and not (chain and node.circuit_breaker)
            and (ctx.checkpoints is None or not node.checkpoint
                 or ctx.checkpoints.completed(ctx.key_of(node)) is None))


def _args_of(task: Task, value: Any) -> tuple[Any, ...]:
    if value is NOTHING:
        return (None,) if _takes_input(task) else ()
    return value if isinstance(value, tuple) else (value,)


def _outcome(task: Task, results: list[tuple[dict[str, Any], Any]],
             ctx: RunContext) -> StepOutcome:
    """A step's outcome from the results of its calls."""
    reports = [r for r, _ in results]
    for report in reports:
        ctx.trace.attributes.update({f"{task.name}.{k}": v
                                     for k, v in report["attributes"].items()})
    if task.mode == "shard":
        # shard j of the output holds shard j of every input partition
        output: Any = Partitions([Partitions([d[j] for _, d in results])
                                  for j in range(task.shards)],
                                 [{"rows": None} for _ in range(task.shards)])
    elif task.mode in ("map", "actor"):
        output = Partitions([d for _, d in results], reports)
    elif task.mode == "fanout":
        items = reports[0]["items"]
        output = Partitions(items, [{"rows": None} for _ in items])
    else:
        output = results[0][1]
    return StepOutcome(task.name, reports, output, 0.0)


def _split_mapped(task: Task, value: Any) -> tuple[Partitions, tuple[Any, ...]]:
    """The partitions a map step maps over, and the values broadcast to every call."""
    if isinstance(value, Partitions):
        return value, ()
    if isinstance(value, tuple) and value and isinstance(value[0], Partitions):
        return value[0], tuple(value[1:])
    if value is NOTHING:
        raise PlanError(f"step {task.name!r} maps over partitions but nothing comes before it: "
                        "start the workflow with a fanout step or pass it an input",
                        step=task.name)
    return Partitions([value], [{}]), ()


def _takes_input(task: Task) -> bool:
    return _positional_params(task.fn)


@functools.lru_cache(maxsize=4096)
def _positional_params(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               and p.name != "ctx" for p in params)


def _sum_rows(reports: list[dict[str, Any]]) -> int | None:
    rows = [r.get("rows") for r in reports]
    return sum(r for r in rows if r is not None) if any(r is not None for r in rows) else None


def _jsonable_count(value: float) -> float | int | None:
    return None if value == float("inf") else int(value)


def fetch(value: Any) -> Any:
    """Bring a step output to the caller: one ObjectRef, or all partitions of a Partitions."""
    if isinstance(value, Partitions):
        return ray.get(list(value.items))
    if isinstance(value, tuple):
        return tuple(fetch(v) for v in value)
    if isinstance(value, ray.ObjectRef):
        return ray.get(value)
    return value


__all__ = [
    "NOTHING", "Executor", "Fault", "Partitions", "RunContext", "StepContext", "StepOutcome",
    "classify", "fetch",
]
