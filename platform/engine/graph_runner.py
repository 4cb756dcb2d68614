"""Running a :class:`~raysight.engine.graph.Graph`: each node starts in a driver thread of
its own as soon as the nodes it needs are done (see :mod:`raysight.engine.graph` for the
semantics); the executor runs each node's step."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from raysight.engine.context import RunContext
from raysight.engine.graph import Graph
from raysight.engine.trace import StepRecord
from raysight.engine.workflow import Branch, Sequence, Step, Task
from raysight.engine.workflow import tasks as tasks_of
from raysight.errors import Cancelled, WorkflowError

if TYPE_CHECKING:
    from raysight.engine.executor import Executor


def run_graph(executor: Executor, node: Graph, value: Any, ctx: RunContext) -> Any:
    """Run each node as soon as its needs are done, in a thread of its own with a forked
    context; see :mod:`raysight.engine.graph` for inputs, outputs and failures.

    Events: ``node_started``, ``node_succeeded`` (``restored: true`` when the node's Ray
    tasks came from checkpoints and none ran; a node whose output step was checkpointed is
    restored from that step alone), ``node_failed`` and ``node_skipped`` (with the
    reason); their step is the node's path (``n``, or ``outer/n`` in a nested graph), as
    is the trace attribute ``<path>.node_state``."""
    paths = {name: f"{ctx.node}/{name}" if ctx.node else name for name in node.nodes}
    outputs: dict[str, Any] = {}
    errors: list[BaseException] = []  # in the order the nodes failed
    failed: list[str] = []
    waiting = list(node.order)
    running: dict[Future[Any], tuple[str, RunContext]] = {}
    workers = min(len(node.nodes), executor.max_parallel_branches)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raysight-node")
    try:
        while True:
            if not errors and not ctx.stopping:
                ready = [n for n in waiting if all(d in outputs for d in node.nodes[n].needs)]
                # no more nodes than threads: a node queued in the pool could not be held
                # back after a failure
                for name in ready[:max(0, workers - len(running))]:
                    waiting.remove(name)
                    needs = node.nodes[name].needs
                    given = (value if not needs else outputs[needs[0]] if len(needs) == 1
                             else tuple(outputs[d] for d in needs))
                    node_ctx = ctx.fork(node=paths[name])
                    future = pool.submit(_run_node, executor, node, name, paths, given, node_ctx)
                    running[future] = (name, node_ctx)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in [f for f in running if f in done]:
                name, _ = running.pop(future)
                err = future.exception()
                if err is None:
                    outputs[name] = future.result()
                    continue
                errors.append(err)
                failed.append(name)
                reason = (("run cancelled" if ctx.cancelled else "run stopped at a step "
                           "boundary") if isinstance(err, Cancelled) and ctx.stopping
                          else f"upstream node {paths[name]} failed")
                for later in node.downstream(name):
                    if later in waiting:
                        waiting.remove(later)
                        _skip_node(node, later, paths[later], reason, ctx)
    except BaseException:
        for _, node_ctx in running.values():
            node_ctx.cancel()
        raise
    finally:
        # nodes queued behind a full pool never start once the graph is stopping
        pool.shutdown(wait=True, cancel_futures=True)
    if errors or (ctx.stopping and waiting):
        culprits = [paths[n] for n, e in zip(failed, errors, strict=True)
                    if not isinstance(e, Cancelled)]
        stopped = "run cancelled" if ctx.cancelled else "run stopped at a step boundary"
        reason = f"not started: node {culprits[0]} failed" if culprits else stopped
        for name in waiting:
            _skip_node(node, name, paths[name], reason, ctx)
        own = [e for e in errors if not isinstance(e, Cancelled)]
        if own or errors:
            raise (own or errors)[0]
        raise Cancelled(f"{stopped} before node {paths[waiting[0]]}",
                        step=paths[waiting[0]])
    return node.result(outputs)

def _run_node(executor: Executor, graph: Graph, name: str, paths: dict[str, str], value: Any,
              ctx: RunContext) -> Any:
    """One node of a graph, in its own thread: its step, framed by node events."""
    node, path = graph.nodes[name], paths[name]
    remote = {t.name for t in tasks_of(node.step) if t.mode != "driver"}
    finished = _finished_output(node.step, ctx)
    mark = len(ctx.trace.records)
    ctx.emit("node_started", path, needs=[paths[n] for n in node.needs])
    started = time.monotonic()
    try:
        # a node whose output step was checkpointed is restored from it alone: the steps
        # before it (a join's shuffle) do not run again
        out = executor._run(node.step if finished is None else finished, value, ctx)
    except BaseException as exc:
        error = exc.to_dict() if isinstance(exc, WorkflowError) else {
            "error": type(exc).__name__, "message": str(exc)}
        ctx.trace.attributes[f"{path}.node_state"] = "failed"
        ctx.emit("node_failed", path, duration_s=round(time.monotonic() - started, 6),
                 error=error)
        raise
    ctx.trace.attributes[f"{path}.node_state"] = "succeeded"
    # restored: its Ray tasks came from checkpoints, none ran (driver steps always re-run)
    states = {r.state for r in ctx.trace.records[mark:] if r.step in remote}
    restored = "restored" in states and "succeeded" not in states
    ctx.emit("node_succeeded", path, duration_s=round(time.monotonic() - started, 6),
             consumers=len(graph.consumers(name)), **({"restored": True} if restored else {}))
    return out

def _output_tasks(step: Step) -> list[Task] | None:
    """The tasks one of which gives ``step`` its output (one per branch), or None where its
    output may be something else (a skipped ``when``, a ``parallel``'s tuple)."""
    if isinstance(step, Task):
        return [step]
    if isinstance(step, Sequence) and step.steps:
        return _output_tasks(step.steps[-1])
    if isinstance(step, Branch) and step.if_false is not None:
        first, second = _output_tasks(step.if_true), _output_tasks(step.if_false)
        return None if first is None or second is None else first + second
    return None


def _finished_output(step: Step, ctx: RunContext) -> Task | None:
    """The output task of ``step`` whose checkpoint a resumed run can restore, if any."""
    return next((task for task in _output_tasks(step) or []
                 if task.mode != "dynamic" and ctx.restorable(task) is not None),
                None)


def _skip_node(graph: Graph, name: str, path: str, reason: str, ctx: RunContext) -> None:
    """A node that never started: each of its tasks is recorded as skipped."""
    now = time.time()
    ctx.trace.attributes[f"{path}.node_state"] = "skipped"
    for task in tasks_of(graph.nodes[name].step):
        ctx.trace.record_step(f"{task.name} (skipped)")
        ctx.trace.add(StepRecord(task.name, "skipped", started_at=now, ended_at=now,
                                 reason=reason))
    ctx.emit("node_skipped", path, reason=reason)
