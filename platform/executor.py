"""Runs workflow plans on Ray: tasks, retries with backoff, timeouts that cancel, fail-fast.

Every task returns two objects: a small report (timings, worker, rows, attributes) that the
driver reads, and the step's output, which stays in Ray's object store and is passed to the
next step as an ObjectRef. Each Ray task is named ``<job_id>/<step>`` so the Ray dashboard and
``ray.util.state`` show which job and step it belongs to.
"""

from __future__ import annotations

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

from raysight.errors import (
    Cancelled,
    InputError,
    PermanentError,
    ResourceExhausted,
    SerializationError,
    StepTimeout,
    TransientError,
    WorkflowError,
    root_cause,
)
from raysight.events import Event, Observers
from raysight.retry import RetryPolicy
from raysight.trace import StepRecord, TraceInfo
from raysight.workflow import (
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

    def emit(self, event_type: str, step: str | None = None, **data: Any) -> None:
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
    started = time.time()
    ctx = StepContext(meta["job_id"], meta["step"], meta["attempt"], meta["partition"],
                      meta["params"])
    _inject_faults(meta, ctx)
    call_args = _unpack(meta["layout"], args)
    output = fn(*call_args, ctx=ctx) if meta["wants_ctx"] else fn(*call_args)
    report = _report(meta, ctx, started, output)
    if meta["mode"] == "fanout":
        report["items"] = list(output)
        output = None
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
    detail = "".join(traceback.format_exception(cause)) if isinstance(cause, BaseException) else ""
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
        """Run ``node`` on ``value``; returns its output (ObjectRefs/Partitions, not data)."""
        ctx.trace.start()
        try:
            return self._run(node, value, ctx)
        finally:
            ctx.trace.finish()

    def _run(self, node: Step, value: Any, ctx: RunContext) -> Any:
        if ctx.cancelled:
            raise Cancelled(f"run cancelled before {node.name}")
        if isinstance(node, Task):
            return self._run_task(node, value, ctx)
        if isinstance(node, Sequence):
            for child in node.steps:
                value = self._run(child, value, ctx)
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
        ctx.emit("step_skipped", node.name, reason=reason or "condition not met")
        return value

    def _run_parallel(self, node: Parallel, value: Any, ctx: RunContext) -> tuple[Any, ...]:
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
        if task.mode == "driver":
            outcome = self._run_in_driver(task, value, ctx)
        else:
            outcome = self._run_remote(task, value, ctx)
        outcome.duration_s = time.monotonic() - started
        ctx.emit("step_succeeded", task.name, duration_s=round(outcome.duration_s, 6),
                 tasks=len(outcome.reports),
                 rows=_sum_rows(outcome.reports))
        if task.on_success is not None:
            task.on_success(ctx, outcome)
        return outcome.output

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
        """Submit the task's calls, wait with timeouts, retry with backoff, fail fast."""
        policy = task.retry or self.default_retry
        if task.mode == "map":
            mapped, broadcast = _split_mapped(value)
            calls: list[tuple[int | None, tuple[Any, ...]]] = [
                (i, (p, *broadcast)) for i, p in enumerate(mapped.items)]
        elif value is NOTHING:
            calls = [(None, (None,) if _takes_input(task) else ())]
        else:
            calls = [(None, (value,) if not isinstance(value, tuple) else value)]
        if not calls:  # mapping over zero partitions
            ctx.emit("step_started", task.name, attempt=1, tasks=0)
            return StepOutcome(task.name, [], Partitions([], []), 0.0)

        # big or shared inputs are put into the object store once, not once per call
        fn_ref = ray.put(task.fn)
        options = {
            "name": f"{ctx.job_id}/{task.name}",
            "max_retries": task.system_retries,
            "retry_exceptions": False,
            **task.resources.ray_options(),
        }
        n = len(calls)
        retries = [0] * n
        results: list[tuple[dict[str, Any], Any] | None] = [None] * n
        # report ref -> (call index, data ref, submitted at: wall clock, monotonic)
        inflight: dict[Any, tuple[int, Any, float, float]] = {}
        due: list[tuple[float, int]] = []  # (monotonic time, idx) of scheduled retries
        first = time.monotonic()
        ctx.emit("step_started", task.name, attempt=1, tasks=n,
                 resources=task.resources.ray_options())

        def submit(i: int) -> None:
            partition, args = calls[i]
            packed, layout = _pack(args if len(args) != 1 else args[0])
            meta = {
                "job_id": ctx.job_id, "step": task.name, "attempt": retries[i] + 1,
                "partition": partition, "params": ctx.params, "layout": layout,
                "wants_ctx": task.wants_ctx, "mode": task.mode, "faults": ctx.faults,
            }
            report_ref, data_ref = _run_task.options(**options).remote(fn_ref, meta, *packed)
            inflight[report_ref] = (i, data_ref, time.time(), time.monotonic())

        def cancel_all() -> None:
            for ref in inflight:
                try:
                    ray.cancel(ref, force=True, recursive=True)
                except Exception:  # already finished or gone
                    log.debug("cancel of %s failed", ref, exc_info=True)
            inflight.clear()

        def fail(i: int, err: WorkflowError, t_wall: float, state: str = "failed") -> None:
            retry = policy.should_retry(err, retries[i], time.monotonic() - first)
            ctx.trace.add(StepRecord(task.name, "retried" if retry else state, retries[i] + 1,
                                     calls[i][0], started_at=t_wall, ended_at=time.time(),
                                     error=err.to_dict()))
            if retry:
                retries[i] += 1
                delay = policy.delay(retries[i], self.rng)
                ctx.emit("task_retry", task.name, task=task.name, partition=calls[i][0],
                         retry_count=retries[i], max_retries=_jsonable_count(policy.max_retries),
                         delay=round(delay, 6), error=err.to_dict())
                heapq.heappush(due, (time.monotonic() + delay, i))
                return
            cancel_all()
            err.details.setdefault("step", task.name)
            ctx.emit("step_failed", task.name, partition=calls[i][0], attempt=retries[i] + 1,
                     error=err.to_dict())
            raise err

        for i in range(n):
            submit(i)
        try:
            while inflight or due:
                now = time.monotonic()
                while due and due[0][0] <= now:
                    submit(heapq.heappop(due)[1])
                if ctx.cancelled:
                    cancel_all()
                    raise Cancelled(f"step {task.name!r} cancelled", step=task.name)
                remaining = ctx.remaining_s()
                if remaining is not None and remaining <= 0:
                    cancel_all()
                    err = StepTimeout(f"job {ctx.job_id} exceeded its timeout during step "
                                      f"{task.name!r}", step=task.name)
                    ctx.trace.add(StepRecord(task.name, "timed_out", started_at=time.time(),
                                             ended_at=time.time(), error=err.to_dict()))
                    ctx.emit("step_failed", task.name, error=err.to_dict())
                    raise err
                wait_s = self.poll_s
                if remaining is not None:
                    wait_s = min(wait_s, remaining)
                if due:
                    wait_s = min(wait_s, max(0.0, due[0][0] - now))
                if task.timeout_s is not None and inflight:
                    oldest = min(v[3] for v in inflight.values())
                    wait_s = min(wait_s, max(0.0, oldest + task.timeout_s - now))
                if not inflight:
                    time.sleep(max(0.0, wait_s))
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=max(0.0, wait_s))
                if ready:
                    ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                for ref in ready:
                    i, data_ref, t_wall, _ = inflight.pop(ref)
                    try:
                        report = ray.get(ref)
                    except Exception as exc:  # the task raised: classify, maybe retry
                        fail(i, classify(exc, task.name), t_wall)
                        continue
                    results[i] = (report, data_ref)
                    ctx.trace.add(StepRecord(
                        task.name, "succeeded", report["attempt"], report["partition"],
                        started_at=report["started_at"], ended_at=report["ended_at"],
                        worker_pid=report["worker_pid"], node_id=report["node_id"],
                        task_id=report["task_id"], rows=report["rows"]))
                if task.timeout_s is not None:
                    now = time.monotonic()
                    for ref, (i, _, t_wall, t_mono) in list(inflight.items()):
                        if now - t_mono >= task.timeout_s:
                            inflight.pop(ref)
                            ray.cancel(ref, force=True, recursive=True)
                            fail(i, StepTimeout(
                                f"step {task.name!r} exceeded its timeout of "
                                f"{task.timeout_s:g} s and was cancelled",
                                timeout_s=task.timeout_s, step=task.name), t_wall, "timed_out")
        except BaseException:
            cancel_all()
            raise

        reports = [r for r, _ in results]  # type: ignore[misc]
        for report in reports:
            ctx.trace.attributes.update({f"{task.name}.{k}": v
                                         for k, v in report["attributes"].items()})
        if task.mode == "map":
            output: Any = Partitions([d for _, d in results], reports)  # type: ignore[misc]
        elif task.mode == "fanout":
            items = reports[0].pop("items")
            output = Partitions(items, [{"rows": None} for _ in items])
        else:
            output = results[0][1]  # type: ignore[index]
        return StepOutcome(task.name, reports, output, 0.0)


def _split_mapped(value: Any) -> tuple[Partitions, tuple[Any, ...]]:
    """The partitions a map step maps over, and the values broadcast to every call."""
    if isinstance(value, Partitions):
        return value, ()
    if isinstance(value, tuple) and value and isinstance(value[0], Partitions):
        return value[0], tuple(value[1:])
    if value is NOTHING:
        raise InputError("a mapped step needs partitioned input")
    return Partitions([value], [{}]), ()


def _takes_input(task: Task) -> bool:
    params = inspect.signature(task.fn).parameters.values()
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
