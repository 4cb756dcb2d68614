"""Runs workflow plans on Ray: tasks, retries with backoff, timeouts that cancel, fail-fast.

Every task returns two objects: a small :class:`~raysight.engine.context.TaskReport` (timings,
worker, rows, attributes) that the driver reads, and the step's output, which stays in Ray's
object store and is passed to the next step as an ObjectRef. Each Ray task is named
``<job_id>/<step>`` (``<job_id>/<node>/<step>`` inside a :class:`~raysight.engine.graph.Graph`)
so the Ray dashboard and ``ray.util.state`` show which job, node and step it belongs to.
Every failed attempt, wherever it ran, goes through one decision
(:meth:`Executor._attempt_failed`): record it, then retry after the policy's delay or raise.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import random
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import ray
from ray.exceptions import GetTimeoutError

from raysight.engine.calls import Call, payload_of, remote_for, run_calls, succeeded_record
from raysight.engine.context import (
    NOTHING,
    Partitions,
    RunContext,
    StepContext,
    StepOutcome,
    TaskReport,
)
from raysight.engine.events import Observers
from raysight.engine.failures import classify
from raysight.engine.graph import NODE_TAG, Graph, in_node, task_keys
from raysight.engine.graph_runner import run_graph
from raysight.engine.retry import RetryPolicy
from raysight.engine.trace import StepRecord
from raysight.engine.worker import compensate, inject_faults, pack, restore_partition
from raysight.engine.workflow import (
    Branch,
    Nested,
    Observed,
    Parallel,
    Pass,
    Recovered,
    Retrying,
    Sequence,
    Step,
    Task,
    TimeLimited,
    When,
    _map_tasks,
    holds,
)
from raysight.engine.workflow import tasks as tasks_of
from raysight.errors import (
    Cancelled,
    PermanentError,
    PlanError,
    StepTimeout,
    WorkflowError,
)
from raysight.tables import register_arrow_serializer

log = logging.getLogger(__name__)



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
        order before the error is raised (saga). Checkpoint keys come from
        :func:`~raysight.engine.graph.task_keys`: a task's position in the plan and its name,
        or, inside a graph, its node, its position in the node and its name."""
        register_arrow_serializer()
        for task_id, key in task_keys(node).items():
            ctx.task_keys.setdefault(task_id, key)
        ctx.trace.start()
        try:
            return self._run(node, value, ctx)
        except BaseException:
            if ctx.completed and not ctx.draining:  # a drained run resumes: nothing undone
                ctx.state["compensations"] = self.compensate(ctx)
            raise
        finally:
            ctx.trace.finish()

    def _run(self, node: Step, value: Any, ctx: RunContext) -> Any:
        if ctx.stopping:
            raise Cancelled(f"run {_stopped(ctx)} before {node.name}", step=node.name)
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
            taken = holds(node.predicate, ctx, value)
            ctx.trace.attributes[f"{node.name}.condition_result"] = str(taken).lower()
            if taken:
                return self._run(node.if_true, value, ctx)
            if node.if_false is not None:
                return self._run(node.if_false, value, ctx)
            return self._skip(node.if_true, value, ctx, node.description)
        if isinstance(node, Parallel):
            return self._run_parallel(node, value, ctx)
        if isinstance(node, Graph):
            return run_graph(self, node, value, ctx)
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
            return self._run(
                node.inner, value, ctx.fork(observers=observers, cancel_events=ctx.cancel_events)
            )
        if isinstance(node, Recovered):
            return self._run_recovered(node, value, ctx)
        if isinstance(node, Pass):
            return value
        raise TypeError(f"not a workflow step: {node!r}")

    # -- combinators ----------------------------------------------------------------------

    def _run_when(self, node: When, value: Any, ctx: RunContext) -> Any:
        met = holds(node.predicate, ctx, value)
        ctx.trace.attributes[f"{node.inner.name}.condition_result"] = str(met).lower()
        if met:
            return self._run(node.inner, value, ctx)
        return self._skip(node.inner, value, ctx, node.description)

    def _skip(self, node: Step, value: Any, ctx: RunContext, reason: str) -> Any:
        now = time.time()
        why = f"condition false: {reason}" if reason else "condition not met"
        ctx.trace.record_step(f"{node.name} (skipped)")
        ctx.trace.add(StepRecord(node.name, "skipped", started_at=now, ended_at=now, reason=why))
        ctx.emit("step_skipped", node.name, reason=why)
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
        results = run_calls(self, [Call(t, None, _args_of(t, value)) for t in branches], ctx)
        outputs = []
        for task, result in zip(branches, results, strict=True):
            outcome = _outcome(task, [result], ctx)
            outcome.duration_s = time.monotonic() - started
            if ctx.checkpoints is not None and task.checkpoint:
                parts = [r.checkpoint for r in outcome.reports if r.checkpoint is not None]
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
        start, first = 0, time.monotonic()
        retries = [0] * len(chain)
        while start < len(chain):
            submitted = []
            current = value
            for k in range(start, len(chain)):
                task = chain[k]
                if retries[k] == 0:
                    ctx.trace.record_step(task.name)
                    ctx.emit("step_started", task.name, attempt=1, tasks=1,
                             resources=task.resources.ray_options())
                args = _args_of(task, current)
                packed, layout = pack(args if len(args) != 1 else args[0])
                payload = payload_of(task, ctx, retries[k] + 1, None, layout)
                report_ref, data_ref = remote_for(
                    f"{ctx.job_id}/{task.name}", task).remote(task.fn, payload, *packed)
                submitted.append((k, report_ref, data_ref, time.time()))
                current = data_ref
            confirmed_at = time.monotonic()
            for n, (k, report_ref, data_ref, t_wall) in enumerate(submitted):
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
                    delay = self._attempt_failed(
                        ctx, task.name, task.retry or self.default_retry, err, retries[k], first,
                        started_at=t_wall,
                        state="timed_out" if isinstance(err, StepTimeout) else "failed")
                    if delay is None:
                        raise
                    retries[k] += 1
                    self._sleep(delay, ctx)
                    start = k
                    break
                ctx.trace.add(succeeded_record(report))
                outcome = _outcome(task, [(report, data_ref)], ctx)
                outcome.duration_s = time.monotonic() - confirmed_at
                confirmed_at = time.monotonic()
                if ctx.checkpoints is not None and task.checkpoint:
                    ctx.checkpoints.commit(ctx.key_of(task), task.name,
                                           [report.checkpoint], [report])
                ctx.emit("step_succeeded", task.name, duration_s=round(outcome.duration_s, 6),
                         tasks=1, rows=report.rows)
                if task.compensate is not None:
                    ctx.completed.append((task, data_ref))
                value = data_ref
                if ctx.draining and k + 1 < len(chain):  # a step boundary: stop here
                    for _, later, _, _ in submitted[n + 1:]:
                        ray.cancel(later, force=False)  # harmless on a finished task
                    raise Cancelled(f"run stopped at a step boundary before "
                                    f"{chain[k + 1].name!r}", step=chain[k + 1].name)
            else:
                start = len(chain)
        return value

    def _attempt_failed(self, ctx: RunContext, step: str, policy: RetryPolicy,
                        err: WorkflowError, retries: int, since: float, *,
                        partition: int | None = None, started_at: float | None = None,
                        worker_pid: int | None = None, state: str = "failed",
                        record: bool = True) -> float | None:
        """One failed attempt of ``step`` (after ``retries`` retries, the first attempt at
        ``since``): recorded in the trace (unless ``record`` is False: a combinator whose
        inner steps record their own), then the policy decides. Returns the delay before the
        next attempt, announced by a ``task_retry`` event, or None when the step fails,
        announced by ``step_failed``; the caller waits the delay, or raises."""
        retry = policy.should_retry(err, retries, time.monotonic() - since)
        if record:
            now = time.time()
            ctx.trace.add(StepRecord(step, "retried" if retry else state, retries + 1,
                                     partition, started_at=now if started_at is None
                                     else started_at, ended_at=now, worker_pid=worker_pid,
                                     error=err.to_dict()))
        where = {} if partition is None else {"partition": partition}
        if retry:
            delay = policy.delay(retries + 1, self.rng)
            ctx.emit("task_retry", step, task=step, **where, retry_count=retries + 1,
                     max_retries=_jsonable_count(policy.max_retries), delay=round(delay, 6),
                     error=err.to_dict())
            return delay
        err.details.setdefault("step", step)
        if record:
            ctx.emit("step_failed", step, **where, attempt=retries + 1, error=err.to_dict())
        return None

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
                delay = self._attempt_failed(ctx, node.name, node.policy, err, retries, started,
                                             record=False)
                if delay is None:
                    raise
                retries += 1
                self._sleep(delay, ctx)

    def _run_recovered(self, node: Recovered, value: Any, ctx: RunContext) -> Any:
        try:
            return self._run(node.inner, value, ctx)
        except (Cancelled, StepTimeout):
            raise
        except WorkflowError as err:
            if ctx.cancelled or (node.accept is not None and not node.accept(err)):
                raise
            ctx.emit(
                "step_recovered", node.inner.name, error=err.to_dict(), reason=node.description
            )
            return node.fallback(err)

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
        entry = ctx.restorable(task)
        if entry is not None:
            outcome = self._restore(task, entry, ctx)
        elif task.mode == "driver":
            outcome = self._run_in_driver(task, value, ctx)
        else:
            outcome = self._run_remote(task, value, ctx)
            if (
                ctx.checkpoints is not None
                and task.checkpoint
                and task.mode not in ("dynamic", "reduce")
            ):
                parts = [r.checkpoint for r in outcome.reports if r.checkpoint is not None]
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
            output: Any = Partitions(reports[0].items or [])
        else:
            load = restore_partition.options(name=f"{ctx.job_id}/{task.name}.restore", num_cpus=0)
            refs = [load.remote(ctx.checkpoints, part) for part in entry["parts"]]
            output = Partitions(refs, reports) if task.mode == "map" else refs[0]
        now = time.time()
        ctx.trace.add(StepRecord(task.name, "restored", started_at=now, ended_at=now))
        ctx.emit("step_restored", task.name, partitions=len(entry["parts"]),
                 rows=_sum_rows(reports), checkpoint=ctx.key_of(task))
        return StepOutcome(task.name, reports, output, 0.0)

    def _run_dynamic(self, task: Task, outcome: StepOutcome, value: Any, ctx: RunContext) -> Any:
        """A step that returned more steps: run them (as a nested workflow) on its input."""
        plan = outcome.reports[0].plan
        if isinstance(plan, (list, tuple)):
            plan = Parallel(tuple(plan))
        if not isinstance(plan, Step):
            raise PermanentError(f"dynamic step {task.name!r} must return a step or a list of "
                                 f"steps, not {type(plan).__name__}", step=task.name)
        node = task.tags.get(NODE_TAG)
        if node:  # the steps of a dynamic step inside a graph node belong to that node
            plan = _map_tasks(plan, lambda t: in_node(t, node))
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
                inject_faults(ctx.faults, sctx)  # a driver step fails as injected, too
                out = task.fn(*args, ctx=sctx) if task.wants_ctx else task.fn(*args)
            except Exception as exc:
                err = classify(exc, task.name)
                delay = self._attempt_failed(ctx, task.name, policy, err, retries, first,
                                             started_at=t0, worker_pid=os.getpid())
                if delay is None:
                    raise err from exc
                retries += 1
                self._sleep(delay, ctx)
                continue
            report = TaskReport(step=task.name, attempt=retries + 1, partition=None,
                                started_at=t0, ended_at=time.time(), worker_pid=os.getpid(),
                                attributes=sctx.attributes, metrics=sctx.metrics,
                                details=sctx.details)
            ctx.trace.add(succeeded_record(report))
            return StepOutcome(task.name, [report], out)

    def _run_remote(self, task: Task, value: Any, ctx: RunContext) -> StepOutcome:
        """Run one step's calls (one per partition for a mapped step) as Ray tasks."""
        if task.mode == "reduce":
            return self._run_reduce(task, value, ctx)
        if task.mode in ("map", "actor", "shard"):
            mapped, broadcast = _split_mapped(task, value)
            calls = [Call(task, i, (p, *broadcast)) for i, p in enumerate(mapped.items)]
        else:
            calls = [Call(task, None, _args_of(task, value))]
        if not calls:  # mapping over zero partitions
            ctx.emit("step_started", task.name, attempt=1, tasks=0)
            return StepOutcome(task.name, [], Partitions([], []), 0.0)
        ctx.emit("step_started", task.name, attempt=1, tasks=len(calls),
                 resources=task.resources.ray_options())
        results = run_calls(self, calls, ctx)
        return _outcome(task, results, ctx)

    def _run_reduce(self, task: Task, value: Any, ctx: RunContext) -> StepOutcome:
        """A tree reduce: the input partitions are merged in groups of at most ``fan_in``
        (one call each, neighbours together so order is kept), level by level, until at most
        ``fan_in`` remain; those are the output. No call ever receives more than ``fan_in``
        partitions, and an input of ``fan_in`` partitions or fewer passes through."""
        mapped, broadcast = _split_mapped(task, value)
        fan_in = max(2, task.fan_in)
        items, reports = list(mapped.items), list(mapped.reports)
        levels = calls_made = 0
        all_reports: list[TaskReport] = []
        while len(items) > fan_in:
            groups = [items[i : i + fan_in] for i in range(0, len(items), fan_in)]
            if levels == 0:
                ctx.emit(
                    "step_started",
                    task.name,
                    attempt=1,
                    tasks=len(groups),
                    resources=task.resources.ray_options(),
                )
            calls = [
                Call(task, calls_made + i, (Partitions(g), *broadcast))
                for i, g in enumerate(groups)
            ]
            results = run_calls(self, calls, ctx)
            items = [d for _, d in results]
            reports = [r for r, _ in results]
            all_reports += reports
            levels += 1
            calls_made += len(calls)
        if levels == 0:
            ctx.emit("step_started", task.name, attempt=1, tasks=0)
        ctx.trace.attributes[f"{task.name}.levels"] = str(levels)
        for report in all_reports:
            ctx.trace.set_attributes(
                {f"{task.name}.{k}": v for k, v in report.attributes.items()}
            )
        return StepOutcome(task.name, all_reports, Partitions(items, reports))

    # -- sagas ----------------------------------------------------------------------------

    def compensate(self, ctx: RunContext) -> list[dict[str, Any]]:
        """Undo completed steps that declared a compensation, newest first."""
        outcomes = []
        while ctx.completed:
            task, output = ctx.completed.pop()
            ctx.emit("compensation_started", task.name)
            try:
                ray.get(compensate.options(name=f"{ctx.job_id}/{task.name}.compensate")
                        .remote(task.compensate, ctx.job_id, f"{task.name}.compensate",
                                ctx.params, output))
            except Exception as exc:  # keep undoing the others; report this one
                err = classify(exc, f"{task.name}.compensate")
                ctx.emit("compensation_failed", task.name, error=err.to_dict())
                outcomes.append({"step": task.name, "state": "failed", "error": err.to_dict()})
                continue
            ctx.emit("compensation_succeeded", task.name)
            outcomes.append({"step": task.name, "state": "compensated"})
        return outcomes


def _stopped(ctx: RunContext) -> str:
    return "cancelled" if ctx.cancelled else "stopped at a step boundary"


def _is_plain_task(node: Step, ctx: RunContext, chain: bool = False) -> bool:
    """A step that can join a batch: one remote call, no hooks, nothing to restore (and, in
    a chain, no circuit breaker, which must be asked before each attempt)."""
    return (isinstance(node, Task) and node.mode == "apply" and node.on_success is None
            and not (chain and node.circuit_breaker) and ctx.restorable(node) is None)


def _args_of(task: Task, value: Any) -> tuple[Any, ...]:
    if value is NOTHING:
        return (None,) if _takes_input(task) else ()
    return value if isinstance(value, tuple) else (value,)


def _outcome(task: Task, results: list[tuple[TaskReport, Any]],
             ctx: RunContext) -> StepOutcome:
    """A step's outcome from the results of its calls."""
    reports = [r for r, _ in results]
    for report in reports:
        ctx.trace.set_attributes({f"{task.name}.{k}": v for k, v in report.attributes.items()})
    if task.mode == "shard":
        # shard j of the output holds shard j of every input partition
        output: Any = Partitions([Partitions([d[j] for _, d in results])
                                  for j in range(task.shards)])
    elif task.mode in ("map", "actor"):
        output = Partitions([d for _, d in results], reports)
    elif task.mode == "fanout":
        output = Partitions(reports[0].items or [])
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
    return Partitions([value]), ()


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


def _sum_rows(reports: list[TaskReport]) -> int | None:
    rows = [r.rows for r in reports]
    return sum(r for r in rows if r is not None) if any(r is not None for r in rows) else None


def _jsonable_count(value: float) -> float | int | None:
    return None if value == float("inf") else int(value)


def fetch(value: Any) -> Any:
    """Bring a step output to the caller: one ObjectRef, or all partitions of a Partitions."""
    if isinstance(value, Partitions):
        return ray.get(list(value.items))
    if isinstance(value, tuple):
        return tuple(fetch(v) for v in value)
    if isinstance(value, dict):  # a graph's outputs by node
        return {k: fetch(v) for k, v in value.items()}
    if isinstance(value, ray.ObjectRef):
        return ray.get(value)
    return value


__all__ = ["Executor", "fetch"]
