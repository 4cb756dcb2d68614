"""A batch of Ray task calls run to completion: submission, timeouts that cancel, retries with
backoff, circuit breakers, actor pools and fail-fast.

One call is one Ray task (a step, or one partition of a mapped step). The calls of a batch may
belong to different steps (a parallel group of plain steps runs as one batch); each follows its
own step's retry policy, timeout and guards. Failed attempts go through the executor's one
retry-or-raise decision.
"""

from __future__ import annotations

import functools
import heapq
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from raysight.engine.breaker import CircuitOpenError, breaker
from raysight.engine.context import CheckpointTarget, RunContext, TaskPayload, TaskReport
from raysight.engine.failures import classify
from raysight.engine.resources import scheduling_strategy
from raysight.engine.trace import StepRecord
from raysight.engine.worker import StepActor, pack, run_attempt
from raysight.engine.workflow import Task
from raysight.errors import Cancelled, StepTimeout, WorkflowError

if TYPE_CHECKING:
    from raysight.engine.executor import Executor

log = logging.getLogger(__name__)


def run_calls(executor: Executor, calls: list[Call],
              ctx: RunContext) -> list[tuple[TaskReport, Any]]:
    """Submit calls as Ray tasks, wait with timeouts, retry with backoff, fail fast.

    Calls may belong to different tasks (a parallel group of plain steps runs as one
    batch); each follows its own task's retry policy, timeout and guards."""
    steps = {id(c.task): c.task for c in calls}
    actor_task = next((t for t in steps.values() if t.mode == "actor"), None)
    pool = ActorPool(actor_task, min(actor_task.concurrency, len(calls))) \
        if actor_task is not None else None
    # a function shared by many calls goes into the object store once
    uses = Counter(id(c.task) for c in calls)
    shared = {k: ray.put(t.fn) for k, t in steps.items() if t.mode != "actor" and uses[k] > 1}
    options = {k: f"{ctx.job_id}/{t.name}" for k, t in steps.items()}
    breakers = {k: breaker(t.circuit_breaker)
                for k, t in steps.items() if t.circuit_breaker}
    n = len(calls)
    retries = [0] * n
    results: list[tuple[TaskReport, Any] | None] = [None] * n
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
            fail(i, CircuitOpenError(
                f"circuit breaker {task.circuit_breaker!r} is open: step {task.name!r} was "
                "not run", breaker=task.circuit_breaker, step=task.name), time.time(),
                count=False)
            return
        packed, layout = pack(call.args if len(call.args) != 1 else call.args[0])
        payload = payload_of(task, ctx, retries[i] + 1, call.partition, layout)
        actor = None
        if pool is not None:
            actor = pool.take()
            if actor is None:  # every actor is busy: try again when one frees up
                heapq.heappush(due, (time.monotonic() + executor.poll_s / 5, i))
                return
            report_ref, data_ref = actor.run.options(
                name=options[id(task)]).remote(payload, *packed)
        else:
            fn = shared.get(id(task), task.fn)
            remote = remote_for(options[id(task)], task)
            if task.mode == "shard":
                refs = remote.remote(fn, payload, *packed)
                report_ref, data_ref = refs[0], refs[1:]
            else:
                report_ref, data_ref = remote.remote(fn, payload, *packed)
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
        delay = executor._attempt_failed(ctx, task.name, task.retry or executor.default_retry,
                                         err, retries[i], first, partition=calls[i].partition,
                                         started_at=t_wall, state=state)
        if delay is not None:
            retries[i] += 1
            heapq.heappush(due, (time.monotonic() + delay, i))
            return
        cancel_all()
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
            wait_s = executor.poll_s
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
                ctx.trace.add(succeeded_record(report))
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


class ActorPool:
    """Actors that serve the calls of one execution of an actor-mode step."""

    def __init__(self, task: Task, size: int) -> None:
        self.task = task
        self.factory = StepActor.options(**task.resources.ray_options())
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
class Call:
    """One Ray task to run: a step, the partition it works on, and its arguments."""

    task: Task
    partition: int | None
    args: tuple[Any, ...]


@functools.lru_cache(maxsize=1024)
def _remote_options(name: str, system_retries: int, num_returns: int, num_cpus: float,
                    num_gpus: float, memory: int | None,
                    resources: tuple[tuple[str, float], ...],
                    scheduling: str | None = None) -> Any:
    opts: dict[str, Any] = {"name": name, "max_retries": system_retries,
                            "retry_exceptions": False, "num_returns": num_returns,
                            "num_cpus": num_cpus}
    if num_gpus:
        opts["num_gpus"] = num_gpus
    if memory:
        opts["memory"] = memory
    if resources:
        opts["resources"] = dict(resources)
    if scheduling:
        opts["scheduling_strategy"] = scheduling_strategy(scheduling)
    return run_attempt.options(**opts)


def remote_for(name: str, task: Task) -> Any:
    """The remote function with a task's Ray options (built once per name and options)."""
    r = task.resources
    return _remote_options(name, task.system_retries,
                           task.shards + 1 if task.mode == "shard" else 2, r.num_cpus,
                           r.num_gpus, r.memory, tuple(sorted(r.resources.items())),
                           r.scheduling)


def payload_of(task: Task, ctx: RunContext, attempt: int, partition: int | None,
             layout: list[Any]) -> TaskPayload:
    """The payload of one attempt of ``task`` (with its checkpoint target when persisted)."""
    persisted = (
        ctx.checkpoints is not None
        and task.checkpoint
        and task.mode not in ("fanout", "dynamic", "shard", "reduce")
    )
    return TaskPayload(
        job_id=ctx.job_id, step=task.name, attempt=attempt, partition=partition,
        params=ctx.params, layout=layout, wants_ctx=task.wants_ctx, mode=task.mode,
        faults=ctx.faults, lock=task.lock, shards=task.shards,
        checkpoint=CheckpointTarget(ctx.checkpoints, ctx.key_of(task))  # type: ignore[arg-type]
        if persisted else None)


def succeeded_record(report: TaskReport) -> StepRecord:
    """The trace record of a successful attempt."""
    return StepRecord(report.step, "succeeded", report.attempt, report.partition,
                      started_at=report.started_at, ended_at=report.ended_at,
                      worker_pid=report.worker_pid, node_id=report.node_id,
                      task_id=report.task_id, rows=report.rows)
