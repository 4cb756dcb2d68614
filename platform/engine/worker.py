"""The worker side of the executor: what runs inside a Ray task or actor for one attempt.

:func:`execute` injects test faults, regroups the flat task arguments, holds the step's
distributed lock, calls the step function, persists its output when the step is
checkpointed, and returns a :class:`TaskReport` beside the output.
"""

from __future__ import annotations

import inspect
import os
import time
from typing import Any

import ray

from raysight.engine.context import NOTHING, Partitions, StepContext, TaskPayload, TaskReport
from raysight.errors import PermanentError, TransientError
from raysight.tables import register_arrow_serializer


@ray.remote(num_returns=2)
def run_attempt(fn: Any, payload: TaskPayload, *args: Any) -> tuple[TaskReport, Any]:
    """Runs one attempt of one step in a Ray worker; returns (report, output)."""
    return execute(fn, payload, args)


@ray.remote
class StepActor:
    """Runs the calls of an actor-mode step; a class is instantiated once per actor (load a
    model, open a connection), a function is called as it is."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn() if isinstance(fn, type) else fn

    @ray.method(num_returns=2)
    def run(self, payload: TaskPayload, *args: Any) -> tuple[TaskReport, Any]:
        return execute(self.fn, payload, args)


@ray.remote
def restore_partition(store: Any, part: dict[str, Any]) -> Any:
    """Loads one checkpointed partition into the object store."""
    register_arrow_serializer()
    return store.read(part)


@ray.remote
def compensate(fn: Any, job_id: str, step: str, params: dict[str, Any], output: Any) -> None:
    """Runs a step's compensation on its output (saga)."""
    ctx = StepContext(job_id, step, 1, None, params)
    if "ctx" in inspect.signature(fn).parameters:
        fn(output, ctx=ctx)
    else:
        fn(output)


def execute(fn: Any, payload: TaskPayload, args: tuple[Any, ...]) -> tuple[TaskReport, Any]:
    started = time.time()
    register_arrow_serializer()
    ctx = StepContext(payload.job_id, payload.step, payload.attempt, payload.partition,
                      payload.params)
    inject_faults(payload.faults, ctx)
    call_args = unpack(payload.layout, args)
    lock = payload.lock
    if lock is not None:
        from raysight.engine.lock import distributed_lock

        with distributed_lock(lock.key, lease_s=lock.lease_s, timeout_s=lock.timeout_s) as lease:
            ctx.fencing_token = lease.token
            output = fn(*call_args, ctx=ctx) if payload.wants_ctx else fn(*call_args)
    else:
        output = fn(*call_args, ctx=ctx) if payload.wants_ctx else fn(*call_args)
    report = _report(ctx, started, output)
    if payload.mode == "fanout":
        report.items = list(output)
        output = None
    elif payload.mode == "dynamic":
        report.plan = output
        output = None
    elif payload.mode == "shard":
        shards = list(output)
        if len(shards) != payload.shards:
            raise PermanentError(f"step {ctx.step!r} returned {len(shards)} shards, expected "
                                 f"{payload.shards}", step=ctx.step)
        return (report, *shards)  # type: ignore[return-value]
    target = payload.checkpoint
    if target is not None:
        report.checkpoint = target.store.write(target.key, ctx.partition or 0, output)
    return report, output


def inject_faults(faults: Any, ctx: StepContext) -> None:
    """Fail (or delay) the step as the job's injected faults say (tests, chaos drills)."""
    for fault in faults:
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


def _report(ctx: StepContext, started: float, output: Any) -> TaskReport:
    table = getattr(output, "table", output)  # AnalysisResult carries a table
    is_table = hasattr(table, "num_rows") and hasattr(table, "schema")
    runtime = ray.get_runtime_context()
    return TaskReport(
        step=ctx.step, attempt=ctx.attempt, partition=ctx.partition, started_at=started,
        ended_at=time.time(), worker_pid=os.getpid(), node_id=runtime.get_node_id(),
        task_id=runtime.get_task_id(),
        rows=table.num_rows if is_table else None,
        bytes=table.nbytes if is_table else None,
        schema=table.schema if is_table else None,
        attributes=ctx.attributes, metrics=ctx.metrics, details=ctx.details,
    )


def pack(value: Any) -> tuple[list[Any], list[Any]]:
    """Flatten a step input into top-level task args (so Ray resolves every ObjectRef in the
    worker) plus a layout that tells the worker how to regroup them."""
    if value is NOTHING:
        return [], []
    if isinstance(value, tuple):
        args: list[Any] = []
        layout: list[Any] = []
        for element in value:
            a, sub = pack(element)
            args += a
            layout += sub
        return args, layout
    if isinstance(value, Partitions):
        return list(value.items), [len(value.items)]
    return [value], [None]


def unpack(layout: list[Any], args: tuple[Any, ...]) -> list[Any]:
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
