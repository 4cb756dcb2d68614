"""The job manager: one queue of raysight jobs per Ray cluster, with priorities, a cap on how
many run at once, pause, cancel and preemption (digest part1 §7.1, part2 §10.2, part3 §1.9).

Ray has no job queue, no priorities and no preemption; the manager adds them on top of Ray.
It is a detached, named, async actor (``raysight_job_manager`` in namespace ``raysight``) that
Ray restarts when its process dies; every change of a job's record is written to the run
directory (an fsspec URL) before the call that made it returns, so a restarted manager
carries on with every job it had accepted::

    raysight manager start --address HOST:6379 --run-dir /shared/runs
    raysight run job.yaml --address HOST:6379   # queued in the manager while one runs
    raysight manager list --address HOST:6379

Each job's driver runs in a thread of one actor of the manager's (no CPU of its own: its
steps are the Ray tasks that work), so the drivers share fate with it: when the manager's
process dies, its running jobs stop, and the restarted manager requeues them to resume from their
checkpoints. A job's record goes through the design's ``ScheduleState`` machine: PENDING
(waiting), QUEUED (dispatched, its driver not yet started), RUNNING, then COMPLETED, FAILED or
CANCELED; PAUSED holds a job back until ``resume``.

Dispatch takes the waiting job of highest priority, first come first served within a
priority, whenever a slot is free; priorities are recomputed at each dispatch
(:func:`priority_of`: the spec's priority, + 20 for a ``vip_`` user, + one per minute waited
up to 10, + the bonus of its kind of analysis, capped at 100). A waiting job of priority 80 or
more that finds every slot taken preempts a running one of priority 30 or less that started
less than 5 minutes ago and is outranked by 30 (:func:`should_preempt`): the victim stops at
its next step boundary (running steps finish and are checkpointed), goes back to the queue,
and later resumes without redoing a finished step.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from raysight.errors import InputError
from raysight.service.driver import DriverHost, drive
from raysight.service.schedule import (
    ACTIVE,
    CANCEL_GRACE_S,
    CUSTOM_BONUS,
    DEFAULT_MAX_CONCURRENT,
    MANAGER_NAME,
    MAX_PREEMPTIONS,
    MAX_RETRIES,
    NAMESPACE,
    TERMINAL,
    TICK_S,
    TYPE_BONUS,
    JobRecord,
    RecordStore,
    ScheduleState,
    first_error,
    join_path,
    priority_of,
    should_preempt,
    type_bonus,
)

log = logging.getLogger(__name__)


class JobManager:
    """The manager's actor (see the module's docstring); use :func:`start_manager` and
    :class:`ManagerClient` rather than calling it directly."""

    def __init__(self, run_root: str, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                 name: str = MANAGER_NAME) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent}")
        self.name = name
        self.run_root = run_root
        self.max_concurrent = max_concurrent
        self.store = RecordStore(run_root, name)
        self.jobs: dict[str, JobRecord] = {}
        self._refs: dict[str, Any] = {}
        self._directives: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ended: dict[str, asyncio.Event] = {}
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._host: Any = None
        self._metrics = _manager_metrics(name)
        self._recovered = self._recover()
        self._dispatched = max((r.dispatch_order or 0 for r in self.jobs.values()), default=0)
        # Ray runs an async actor's constructor on its event loop: a restarted manager
        # dispatches its recovered jobs before any client calls it
        with contextlib.suppress(RuntimeError):
            self._ensure_loop()

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self) -> int:
        """Load the records; a job that was dispatched when the manager stopped is finished
        from what its run directory says, or requeued to resume. Returns how many jobs were
        requeued."""
        requeued = 0
        for record in self.store.load():
            self.jobs[record.job_id] = record
            if record.state not in ACTIVE:
                continue
            if self._take_result(record):
                continue
            record.state = ScheduleState.PENDING
            record.resume = _spec_written(record)
            record.stopping = None
            if record.runs and record.runs[-1][1] is None:
                record.runs[-1][1] = time.time()
            self.store.save(record)
            requeued += 1
        if self.jobs:
            log.warning("job manager %s: recovered %d jobs (%d requeued)", self.name,
                        len(self.jobs), requeued)
        return requeued

    def _take_result(self, record: JobRecord) -> bool:
        """Finish ``record`` from its ``result.json`` when its last run ended there (a run
        that ended while no manager was listening); False when it has to run again."""
        from raysight.job import remote_run
        from raysight.job.rundir import driver_alive

        job_dir = join_path(record.run_root, record.job_id)
        if not remote_run.is_url(job_dir) and driver_alive(Path(job_dir)):
            return False
        try:
            text = remote_run.read_text(join_path(job_dir, "result.json"))
            result = json.loads(text) if text is not None else None
        except (OSError, ValueError):
            return False
        if result is None:
            return False
        dispatched = record.runs[-1][0] if record.runs else record.created_at
        finished = dt.datetime.fromisoformat(result["finished_at"]).timestamp()
        if finished < (dispatched or 0) or result["state"] == "CANCELED":
            return False  # an earlier run's result (preempted, paused), or a stopped run
        self._end(record, result["state"], first_error(result.get("errors")))
        return True

    # -- the dispatcher ----------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_task is None:
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._dispatcher())

    def _poke(self) -> None:
        self._ensure_loop()
        assert self._wake is not None
        self._wake.set()

    async def _dispatcher(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                self._dispatch()
            except Exception:  # the dispatcher must outlive one bad record
                log.exception("job manager %s: dispatch failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)

    def _dispatch(self) -> None:
        now = time.time()
        waiting = [r for r in self.jobs.values()
                   if r.state == ScheduleState.PENDING and r.next_retry_at <= now]
        for r in waiting:
            r.priority = priority_of(r.base_priority, r.user_id, now - r.created_at, r.bonus)
        waiting.sort(key=lambda r: (-r.priority, r.seq))
        active = [r for r in self.jobs.values() if r.state in ACTIVE]
        free = self.max_concurrent - len(active)
        for record in waiting[:max(0, free)]:
            self._start(record, now)
        self._preempt(waiting[max(0, free):], active, now)
        self._report_queue()

    def _preempt(self, waiting: list[JobRecord], active: list[JobRecord], now: float) -> None:
        """Waiting jobs that find every slot taken may each stop one running job (design
        rule, at most one victim per waiter and :data:`MAX_PREEMPTIONS` per job); a slot a
        victim is about to free already counts as the waiter's."""
        freeing = sum(1 for r in active if r.stopping == "preempt")
        victims = sorted((r for r in active if r.stopping is None and r.started_at
                          and r.preempt_count < MAX_PREEMPTIONS and _checkpointed(r)),
                         key=lambda r: r.priority)
        for waiter in waiting:
            if freeing > 0:
                freeing -= 1
                continue
            for victim in victims:
                running_s = now - (victim.runs[-1][0] or now)
                if should_preempt(victim.priority, waiter.priority, running_s):
                    victims.remove(victim)
                    waiter.preempted_workflow = victim.job_id
                    self.store.save(waiter)
                    self._stop(victim, "preempt",
                               f"the job manager, to run job {waiter.job_id} (priority "
                               f"{waiter.priority}) before it (priority {victim.priority}); "
                               "it resumes from its checkpoints when a slot is free",
                               at_step_boundary=True)
                    if self._metrics is not None:
                        self._metrics.preempted()
                    log.warning("job manager: job %s (priority %d) preempts job %s "
                                "(priority %d)", waiter.job_id, waiter.priority,
                                victim.job_id, victim.priority)
                    break

    def _start(self, record: JobRecord, now: float) -> None:
        import ray

        record.state = ScheduleState.QUEUED
        record.started_at = record.started_at or now
        if record.dispatch_order is None:
            self._dispatched += 1
            record.dispatch_order = self._dispatched
        record.runs.append([now, None])
        record.stopping = record.stop_reason = None
        if self._metrics is not None:
            self._metrics.started(now - record.created_at)
        me = ray.get_runtime_context().current_actor
        ref = self._driver_host().drive.options(name=f"{record.job_id}/driver").remote(
            record.spec, record.run_root, record.job_id, record.resume, record.connections,
            me, len(record.runs))
        self._refs[record.job_id] = ref
        self._directives[record.job_id] = asyncio.get_running_loop().create_future()
        self.store.save(record)
        asyncio.get_running_loop().create_task(self._watch(record.job_id, ref,
                                                           len(record.runs)))

    def _driver_host(self) -> Any:
        """The actor whose threads drive the jobs: one process for all the manager's drivers
        (they mostly wait on Ray), started once and made again when it dies. It belongs to
        the manager, so it dies with it."""
        import ray

        if self._host is None:
            self._host = ray.remote(DriverHost).options(
                num_cpus=0, max_concurrency=max(16, 2 * self.max_concurrent),
                name=f"{self.name}/drivers-{uuid.uuid4().hex[:8]}",
                namespace=NAMESPACE).remote()
        return self._host

    async def _watch(self, job_id: str, ref: Any, run: int) -> None:
        import ray

        record = self.jobs[job_id]
        try:
            outcome: dict[str, Any] = await ref
        except Exception as exc:  # the driver died: a lost node, its host killed
            if isinstance(exc, ray.exceptions.RayActorError):
                self._host = None  # the next dispatch starts another host
            outcome = {"state": None, "error": f"the job's driver died: {_first_line(exc)}"}
        finally:
            if self._refs.get(job_id) is ref:
                self._refs.pop(job_id, None)
        if len(record.runs) != run or record.state in TERMINAL:
            return  # a run the manager gave up on (see _kill)
        record.runs[-1][1] = time.time()
        directive = self._directives.pop(job_id, None)
        if directive is not None and not directive.done():
            directive.set_result({"action": "none"})
        self._settle(record, outcome)
        self._poke()

    def _settle(self, record: JobRecord, outcome: dict[str, Any]) -> None:
        """A run of the job's driver ended: requeue, hold or finish the job."""
        state, error = outcome.get("state"), outcome.get("error")
        stopping = record.stopping
        record.stopping = None
        if state == "CANCELED" and stopping == "preempt":
            record.state = ScheduleState.PENDING
            record.resume = record.preempted = True
            record.preempt_count += 1
            self.store.save(record)
        elif state == "CANCELED" and stopping == "pause":
            record.state = ScheduleState.PAUSED
            record.resume = True
            self.store.save(record)
        elif state is None and stopping == "cancel":
            self._end(record, "CANCELED", error)
        elif state is None and record.retry_count < MAX_RETRIES:
            record.retry_count += 1
            record.state = ScheduleState.PENDING
            record.resume = _spec_written(record)
            record.next_retry_at = time.time() + 0.1 * 2 ** record.retry_count
            record.error = error
            log.warning("job manager: job %s: %s; retry %d of %d", record.job_id, error,
                        record.retry_count, MAX_RETRIES)
            self.store.save(record)
        else:
            self._end(record, state or "FAILED", error)

    def _end(self, record: JobRecord, job_state: str, error: str | None) -> None:
        record.job_state = job_state
        record.state = (ScheduleState.COMPLETED if job_state.startswith("COMPLETED") else
                        ScheduleState.CANCELED if job_state == "CANCELED" else
                        ScheduleState.FAILED)
        record.error = error
        record.completed_at = time.time()
        self.store.save(record)
        ended = self._ended.pop(record.job_id, None)
        if ended is not None:
            ended.set()
        if self._metrics is not None:
            self._metrics.finished(record.state, record.completed_at - (record.started_at
                                                                        or record.created_at))

    def _stop(self, record: JobRecord, why: str, reason: str,
              at_step_boundary: bool = False) -> None:
        """Ask the running job's driver to stop (its directive), and kill it when it has not
        stopped in :data:`CANCEL_GRACE_S` after a cancel."""
        record.stopping, record.stop_reason = why, reason
        self.store.save(record)
        directive = self._directives.get(record.job_id)
        if directive is not None and not directive.done():
            directive.set_result({"action": "drain" if at_step_boundary else "cancel",
                                  "reason": reason})
        if not at_step_boundary:
            asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._kill, record.job_id,
                                                  len(record.runs))

    def _kill(self, job_id: str, run: int) -> None:
        import ray

        record, ref = self.jobs[job_id], self._refs.pop(job_id, None)
        if ref is not None and len(record.runs) == run and record.state in ACTIVE:
            # a driver thread cannot be killed alone (its host drives other jobs): the job
            # ends here and whatever its thread still does is ignored
            log.warning("job manager: job %s did not stop in %.0f s; abandoning its driver",
                        job_id, CANCEL_GRACE_S)
            ray.cancel(ref)
            record.runs[-1][1] = time.time()
            directive = self._directives.pop(job_id, None)
            if directive is not None and not directive.done():
                directive.set_result({"action": "none"})
            self._end(record, "CANCELED", f"its driver did not stop within "
                                          f"{CANCEL_GRACE_S:g} s of the cancel")
            self._poke()

    def _report_queue(self) -> None:
        if self._metrics is None:
            return
        counts = self._counts()
        self._metrics.queue(counts[ScheduleState.PENDING],
                            counts[ScheduleState.QUEUED] + counts[ScheduleState.RUNNING],
                            counts[ScheduleState.PAUSED])

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(ScheduleState, 0)
        for r in self.jobs.values():
            counts[ScheduleState(r.state)] += 1
        return counts

    # -- what drivers call -------------------------------------------------------------------

    async def directive(self, job_id: str, run: int) -> dict[str, Any]:
        """Called by a job's driver as it starts: marks the job RUNNING, then answers when
        the manager wants the run stopped (or when it ended)."""
        record = self.jobs.get(job_id)
        future = self._directives.get(job_id)
        if record is None or future is None or len(record.runs) != run:
            return {"action": "cancel", "reason": "the job manager (a stale run)"}
        if record.state == ScheduleState.QUEUED:
            record.state = ScheduleState.RUNNING
            self.store.save(record)
        return await future

    # -- the client's calls ------------------------------------------------------------------

    async def submit(self, spec: dict[str, Any], job_id: str, run_root: str | None = None,
                     connections: str | None = None,
                     submitter: str | None = None) -> dict[str, Any]:
        """Accept a job (persisted before this returns); the record, or ``{"error": ...}``."""
        from raysight.job.graph_spec import parse_graph_spec

        self._ensure_loop()
        if job_id in self.jobs:
            return {"error": f"job {job_id} was already submitted to the job manager "
                             f"(state {self.jobs[job_id].state}); choose another job_id"}
        from raysight.job import remote_run

        root = run_root or self.run_root
        taken = (remote_run.exists(join_path(root, job_id)) if remote_run.is_url(root)
                 else os.path.exists(join_path(root, job_id)))
        if taken:
            return {"error": f"run directory {join_path(root, job_id)} already exists; "
                             "choose another job_id or --run-dir"}
        try:
            parsed = parse_graph_spec(spec, f"job {job_id}", connections)
        except InputError as err:
            return {"error": str(err)}
        record = JobRecord(
            job_id=job_id, seq=max((r.seq for r in self.jobs.values()), default=0) + 1,
            spec=spec, user_id=parsed.user_id, base_priority=parsed.priority,
            bonus=type_bonus(getattr(a, "type", "custom") for a in parsed.analyses.values()),
            run_root=root,
            connections=connections, submitter=submitter)
        record.priority = priority_of(record.base_priority, record.user_id, 0, record.bonus)
        self.jobs[job_id] = record
        self.store.save(record)
        if self._metrics is not None:
            self._metrics.submitted(record.user_id)
        self._poke()
        return record.public()

    async def status(self, job_id: str) -> dict[str, Any]:
        self._ensure_loop()
        record = self.jobs.get(job_id)
        if record is None:
            return self._missing(job_id)
        return record.public()

    async def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The record once the job has ended (or as it is when ``timeout_s`` passes)."""
        self._ensure_loop()
        record = self.jobs.get(job_id)
        if record is None:
            return self._missing(job_id)
        if record.state not in TERMINAL:
            ended = self._ended.setdefault(job_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout_s)
        return record.public()

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: a waiting or paused one at once, a running one through its driver
        (its running tasks are cancelled)."""
        self._ensure_loop()
        record = self.jobs.get(job_id)
        if record is None:
            return self._missing(job_id)
        if record.state in TERMINAL:
            return {"error": f"cannot cancel job {job_id}: it has already ended "
                             f"({record.state})"}
        if record.state in (ScheduleState.PENDING, ScheduleState.PAUSED):
            self._end(record, "CANCELED", "cancelled in the job manager before it ran")
        else:
            self._stop(record, "cancel", "a cancel in the job manager; `raysight resume "
                       f"{job_id}` finishes it")
        self._poke()
        return record.public()

    async def pause(self, job_id: str) -> dict[str, Any]:
        """Hold a job back: a waiting one stays in the queue unstarted, a running one stops
        at its next step boundary; ``resume`` puts it back in the queue."""
        self._ensure_loop()
        record = self.jobs.get(job_id)
        if record is None:
            return self._missing(job_id)
        if record.state == ScheduleState.PENDING:
            record.state = ScheduleState.PAUSED
            self.store.save(record)
        elif record.state in ACTIVE and record.stopping is None:
            self._stop(record, "pause", "a pause in the job manager; `raysight manager "
                       f"resume {job_id}` finishes it", at_step_boundary=True)
        else:
            return {"error": f"cannot pause job {job_id} in state {record.state}"}
        self._poke()
        return record.public()

    async def resume(self, job_id: str) -> dict[str, Any]:
        self._ensure_loop()
        record = self.jobs.get(job_id)
        if record is None:
            return self._missing(job_id)
        if record.state != ScheduleState.PAUSED:
            return {"error": f"cannot resume job {job_id} in state {record.state} "
                             "(only a paused job resumes)"}
        record.state = ScheduleState.PENDING
        self.store.save(record)
        self._poke()
        return record.public()

    async def list(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        self._ensure_loop()
        return [r.public() for r in sorted(self.jobs.values(), key=lambda r: r.seq)
                if not states or r.state in states]

    async def stats(self) -> dict[str, Any]:
        """The design's ``SchedulerStats`` (durations in seconds), with the queue's length,
        the cap and the preemptions so far."""
        self._ensure_loop()
        counts = self._counts()
        ended = [r for r in self.jobs.values()
                 if r.state in (ScheduleState.COMPLETED, ScheduleState.FAILED)]
        waits = [r.started_at - r.created_at for r in ended if r.started_at]
        runs = [r.completed_at - r.started_at for r in ended
                if r.completed_at and r.started_at]
        done = counts[ScheduleState.COMPLETED] + counts[ScheduleState.FAILED]
        return {
            "pending_count": counts[ScheduleState.PENDING],
            "queued_count": counts[ScheduleState.QUEUED],
            "running_count": counts[ScheduleState.RUNNING],
            "completed_count": counts[ScheduleState.COMPLETED],
            "failed_count": counts[ScheduleState.FAILED],
            "canceled_count": counts[ScheduleState.CANCELED],
            "paused_count": counts[ScheduleState.PAUSED],
            "average_wait_time": _mean(waits),
            "average_execution_time": _mean(runs),
            "average_retry_count": _mean([float(r.retry_count) for r in ended]),
            "success_rate": counts[ScheduleState.COMPLETED] / done if done else 0.0,
            "queue_length": counts[ScheduleState.PENDING],
            "max_concurrent": self.max_concurrent,
            "preemptions": sum(r.preempt_count for r in self.jobs.values()),
            "recovered": self._recovered,
            "run_dir": self.run_root,
        }

    def _missing(self, job_id: str) -> dict[str, Any]:
        return {"error": f"job {job_id} not found in the job manager {self.name}"}

    async def ping(self) -> dict[str, Any]:
        """The manager's name and process (for tests and ``raysight cluster``)."""
        import ray

        self._ensure_loop()
        return {"name": self.name, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0



def _spec_written(record: JobRecord) -> bool:
    """True when a run of the job began (its spec.json is written): a resume can finish it."""
    from raysight.job import remote_run

    spec_file = join_path(join_path(record.run_root, record.job_id), "spec.json")
    return remote_run.exists(spec_file) if remote_run.is_url(spec_file) \
        else os.path.exists(spec_file)


def _checkpointed(record: JobRecord) -> bool:
    """Only a job that checkpoints its steps can be preempted without losing work."""
    return bool(record.spec.get("execution", {}).get("checkpoint", True))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else type(exc).__name__


def _manager_metrics(name: str) -> Any:
    try:
        from raysight.service.metrics import ManagerMetrics
    except ImportError:
        return None
    try:
        return ManagerMetrics(name)
    except Exception as err:  # metrics are never worth a manager that does not start
        log.warning("job manager metrics unavailable: %s", err)
        return None


# the client side, importable from here as before
from raysight.service.manager_client import (  # noqa: E402
    ManagerClient,
    ManagerError,
    connect_manager,
    describe,
    find_manager,
    portable_spec,
    start_manager,
    stop_manager,
    table,
)

__all__ = ["ACTIVE", "CUSTOM_BONUS", "DEFAULT_MAX_CONCURRENT", "MANAGER_NAME", "NAMESPACE",
           "TERMINAL", "TYPE_BONUS", "DriverHost", "JobManager", "ManagerClient",
           "ManagerError", "ScheduleState", "connect_manager", "describe", "drive",
           "find_manager", "portable_spec", "priority_of", "should_preempt", "start_manager",
           "stop_manager", "table", "type_bonus"]
