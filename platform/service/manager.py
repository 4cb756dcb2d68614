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
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from raysight.errors import InputError

log = logging.getLogger(__name__)

MANAGER_NAME = "raysight_job_manager"
NAMESPACE = "raysight"
DEFAULT_MAX_CONCURRENT = 20
#: a running job's driver that has not stopped this long after a cancel is killed
CANCEL_GRACE_S = 30.0
#: how often the dispatcher looks again without being woken (aging, retry delays)
TICK_S = 1.0
#: how many times a job whose driver died (node lost, manager restarted) is resumed
MAX_RETRIES = 3
#: how many times one job may be preempted (no livelock between two urgent jobs)
MAX_PREEMPTIONS = 3

#: the design's bonus per kind of analysis (Descriptive 0, Aggregation 5, TimeSeries 10,
#: MachineLearning 15, Custom 5); raysight's kernels by the design's kind they belong to
TYPE_BONUS = {"descriptive": 0, "correlation_matrix": 0, "outlier_detection": 0,
              "aggregation": 5, "text_frequency": 5, "time_series": 10,
              "machine_learning": 15}
CUSTOM_BONUS = 5
PREEMPT_AT, PREEMPTIBLE_BELOW, PREEMPT_MARGIN, PREEMPT_WITHIN_S = 80, 30, 30, 300.0


class ScheduleState(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    PAUSED = "PAUSED"


TERMINAL = (ScheduleState.COMPLETED, ScheduleState.FAILED, ScheduleState.CANCELED)
ACTIVE = (ScheduleState.QUEUED, ScheduleState.RUNNING)


def type_bonus(analysis_types: Iterable[str]) -> int:
    """The bonus of a job's kinds of analysis: the largest of its analyses' bonuses."""
    return max((TYPE_BONUS.get(t, CUSTOM_BONUS) for t in analysis_types), default=0)


def priority_of(base: int, user_id: str, waited_s: float, bonus: int) -> int:
    """The design's priority: base + 20 for a ``vip_`` user + one per whole minute waited
    (at most 10) + the analysis bonus, capped at 100."""
    vip = 20 if user_id.startswith("vip_") else 0
    return min(100, base + vip + min(10, int(waited_s // 60)) + bonus)


def should_preempt(running_priority: int, waiting_priority: int, running_s: float) -> bool:
    """The design's rule: a waiting job of 80 or more preempts a running one of 30 or less
    that it outranks by 30 or more and that started less than 5 minutes ago."""
    return (waiting_priority >= PREEMPT_AT and running_priority <= PREEMPTIBLE_BELOW
            and waiting_priority >= running_priority + PREEMPT_MARGIN
            and running_s < PREEMPT_WITHIN_S)


@dataclass
class JobRecord:
    """One job of the manager (the design's ``ScheduleItem``), as persisted."""

    job_id: str
    seq: int
    spec: dict[str, Any]
    user_id: str
    base_priority: int
    bonus: int
    run_root: str
    connections: str | None = None
    submitter: str | None = None
    state: str = ScheduleState.PENDING
    #: the priority the job had at the last dispatch
    priority: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    #: the job's own end state (COMPLETED_WITH_ERRORS is COMPLETED here) and first error
    job_state: str | None = None
    error: str | None = None
    #: the job's place in the order the manager dispatched jobs (first dispatch)
    dispatch_order: int | None = None
    #: each run of the job's driver: [dispatched, ended]
    runs: list[list[float | None]] = field(default_factory=list)
    resume: bool = False
    retry_count: int = 0
    next_retry_at: float = 0.0
    preempted: bool = False
    preempt_count: int = 0
    preempted_workflow: str | None = None
    #: what was asked of the running job: cancel, pause or preempt (None: nothing)
    stopping: str | None = None
    stop_reason: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def public(self) -> dict[str, Any]:
        """The record as clients see it (without the spec)."""
        data = asdict(self)
        del data["spec"]
        data["job_dir"] = _join(self.run_root, self.job_id)
        return data


class RecordStore:
    """One JSON file per job under ``<run root>/.manager/<name>/jobs/``, on any fsspec
    filesystem; a record appears whole or not at all."""

    def __init__(self, run_root: str, name: str) -> None:
        import fsspec

        self.fs, root = fsspec.core.url_to_fs(run_root)
        self.root = f"{root.rstrip('/')}/.manager/{name}/jobs"
        self.fs.makedirs(self.root, exist_ok=True)
        self.local = "file" in _protocols(self.fs)

    def save(self, record: JobRecord) -> None:
        path = f"{self.root}/{record.job_id}.json"
        data = json.dumps(asdict(record), ensure_ascii=False).encode()
        if self.local:  # rename: a reader never sees half a record
            tmp = f"{self.root}/.{record.job_id}.json.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:  # an object store's put is atomic
            self.fs.pipe_file(path, data)

    def load(self) -> list[JobRecord]:
        records = []
        for path in self.fs.glob(f"{self.root}/*.json"):
            try:
                records.append(JobRecord.from_dict(json.loads(self.fs.cat_file(path))))
            except (ValueError, TypeError, OSError) as err:
                log.error("job manager: unreadable record %s skipped: %s", path, err)
        return sorted(records, key=lambda r: r.seq)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


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

        job_dir = _join(record.run_root, record.job_id)
        if not remote_run.is_url(job_dir) and driver_alive(_path(job_dir)):
            return False
        try:
            text = remote_run.read_text(_join(job_dir, "result.json"))
            result = json.loads(text) if text is not None else None
        except (OSError, ValueError):
            return False
        if result is None:
            return False
        dispatched = record.runs[-1][0] if record.runs else record.created_at
        finished = dt.datetime.fromisoformat(result["finished_at"]).timestamp()
        if finished < (dispatched or 0) or result["state"] == "CANCELED":
            return False  # an earlier run's result (preempted, paused), or a stopped run
        self._end(record, result["state"], _first_error(result.get("errors")))
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
        taken = (remote_run.exists(_join(root, job_id)) if remote_run.is_url(root)
                 else os.path.exists(_join(root, job_id)))
        if taken:
            return {"error": f"run directory {_join(root, job_id)} already exists; "
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
            return {"error": f"job {job_id} not found in the job manager {self.name}"}
        return record.public()

    async def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The record once the job has ended (or as it is when ``timeout_s`` passes)."""
        self._ensure_loop()
        record = self.jobs.get(job_id)
        if record is None:
            return {"error": f"job {job_id} not found in the job manager {self.name}"}
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
            return {"error": f"job {job_id} not found in the job manager {self.name}"}
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
            return {"error": f"job {job_id} not found in the job manager {self.name}"}
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
            return {"error": f"job {job_id} not found in the job manager {self.name}"}
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

    async def ping(self) -> dict[str, Any]:
        """The manager's name and process (for tests and ``raysight cluster``)."""
        import ray

        self._ensure_loop()
        return {"name": self.name, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def _path(job_dir: str) -> Any:
    from pathlib import Path

    return Path(job_dir)


def _spec_written(record: JobRecord) -> bool:
    """True when a run of the job began (its spec.json is written): a resume can finish it."""
    from raysight.job import remote_run

    spec_file = _join(_join(record.run_root, record.job_id), "spec.json")
    return remote_run.exists(spec_file) if remote_run.is_url(spec_file) \
        else os.path.exists(spec_file)


def _checkpointed(record: JobRecord) -> bool:
    """Only a job that checkpoints its steps can be preempted without losing work."""
    return bool(record.spec.get("execution", {}).get("checkpoint", True))


def _first_error(errors: list[dict[str, Any]] | None) -> str | None:
    return str(errors[0].get("message")) if errors else None


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


# ---------------------------------------------------------------------------------------------
# A job's driver


def drive(spec: dict[str, Any], run_root: str, job_id: str, resume: bool,
          connections: str | None, manager: Any, run: int) -> dict[str, Any]:
    """Run one job to its end as the manager asked: the job's state and first error."""
    import ray

    from raysight.job import remote_run
    from raysight.job.graph_spec import parse_graph_spec
    from raysight.job.pipeline import AnalysisJob
    from raysight.job.result import DONE_STATES
    from raysight.job.rundir import driver_alive

    job_dir = _join(run_root, job_id)
    try:
        if resume and not remote_run.is_url(job_dir):
            deadline = time.monotonic() + 30  # a killed driver's lock is released soon
            while driver_alive(_path(job_dir)) and time.monotonic() < deadline:
                time.sleep(0.2)
        if resume:
            job = AnalysisJob.resume(job_id, run_root, connections=connections)
        else:
            job = AnalysisJob(parse_graph_spec(spec, f"job {job_id}", connections),
                              run_dir=run_root, job_id=job_id)
    except InputError as err:
        previous = remote_run.read_text(_join(job_dir, "result.json")) if resume else None
        state = json.loads(previous)["state"] if previous is not None else None
        if state in DONE_STATES:  # it completed before the manager learned of it
            return {"state": state, "error": None}
        return {"state": "FAILED", "error": str(err)}
    job.managed = True
    ended = threading.Event()

    def follow() -> None:  # the manager's directive, until the run ends
        ref = manager.directive.remote(job_id, run)
        while not ended.is_set():
            ready, _ = ray.wait([ref], timeout=0.5)
            if not ready:
                continue
            try:
                answer = ray.get(ref)
            except Exception:  # the manager is gone; the driver goes with it
                return
            if answer.get("action") in ("cancel", "drain"):
                job.stop(answer.get("reason", "the job manager"),
                         at_step_boundary=answer["action"] == "drain")
            return

    watcher = threading.Thread(target=follow, name=f"raysight-directive-{job_id}",
                               daemon=True)
    watcher.start()
    try:
        result = job.run()
    except InputError as err:
        return {"state": "FAILED", "error": str(err)}
    finally:
        ended.set()
    return {"state": result.state, "error": _first_error(result.errors)}


class DriverHost:
    """The process whose threads run the manager's job drivers (:func:`drive`): no CPU of
    its own, since a job's steps are the Ray tasks that work; started once, so a job does not
    pay for a new worker process and its imports. Ray never retries a driver: the manager
    resumes it from its checkpoints instead."""

    def drive(self, *args: Any) -> dict[str, Any]:
        return drive(*args)


# ---------------------------------------------------------------------------------------------
# Clients


class ManagerError(InputError):
    """The job manager refused a call (unknown job, a state that does not allow it)."""

    category = "invalid_input"


class ManagerClient:
    """Calls to a running job manager from a driver, a notebook or the CLI::

        manager = start_manager("/shared/runs", max_concurrent=4)
        job_id = manager.submit(AnalysisJob(spec))
        manager.wait(job_id)["state"]            # 'COMPLETED'
        manager.result(job_id).analyses          # the job's JobResult
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import ray

        answer = ray.get(getattr(self.handle, method).remote(*args, **kwargs))
        if isinstance(answer, dict) and "error" in answer and "job_id" not in answer:
            raise ManagerError(answer["error"])
        return answer

    def submit(self, job: Any, run_dir: str | None = None, submitter: str | None = None,
               connections: str | None = None) -> str:
        """Queue an :class:`~raysight.job.pipeline.AnalysisJob` (its spec, with its sources'
        paths made absolute); returns its job id. A job that no node of the
        cluster could run is refused here (ResourceExhausted), not queued."""
        from raysight.errors import ResourceExhausted

        try:
            job.check_resources()
        except ResourceExhausted as err:
            raise ManagerError(f"job {job.job_id} not queued: {err}", **err.details) from None
        record = self._call("submit", portable_spec(job), job.job_id, run_dir,
                            connections, submitter or _who())
        return str(record["job_id"])

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("status", job_id))

    def wait(self, job_id: str, timeout_s: float | None = None,
             poll_s: float = 2.0) -> dict[str, Any]:
        """The job's record once it has ended (or at ``timeout_s``); waits in short calls so
        that Ctrl-C reaches the caller."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            record = dict(self._call("wait", job_id, max(0.0, left)))
            if record["state"] in TERMINAL or (deadline is not None
                                               and time.monotonic() >= deadline):
                return record

    def result(self, job_id: str, timeout_s: float | None = None) -> Any:
        """The :class:`~raysight.job.result.JobResult` of an ended job (waits for it)."""
        from raysight.job.remote_run import read_text
        from raysight.job.result import JobResult

        record = self.wait(job_id, timeout_s)
        if record["state"] not in TERMINAL:
            raise ManagerError(f"job {job_id} has not ended (state {record['state']})")
        text = read_text(_join(record["job_dir"], "result.json"))
        if text is None:
            raise ManagerError(f"job {job_id} ended {record['state']} without a result "
                               f"({record.get('error') or 'its driver never started'})")
        return JobResult.from_dict(json.loads(text))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("cancel", job_id))

    def pause(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("pause", job_id))

    def resume(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("resume", job_id))

    def list(self, states: Iterable[str] = ()) -> list[dict[str, Any]]:
        return list(self._call("list", list(states) or None))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("stats"))


def start_manager(run_dir: str, max_concurrent: int = DEFAULT_MAX_CONCURRENT,
                  name: str = MANAGER_NAME, ship_raysight: bool = False) -> ManagerClient:
    """The cluster's job manager ``name``, started (detached, restarted by Ray when its
    process dies) unless it already runs; a manager that runs keeps its own settings.
    ``ship_raysight`` gives the manager the ``py_modules`` this driver connected with
    (``raysight_py_modules()``, as ``raysight submit`` ships them), which its jobs' drivers
    inherit: a cluster without raysight installed runs this one."""
    import ray

    options: dict[str, Any] = {}
    if ship_raysight:  # Ray uploads local folders only for a job: the manager inherits it
        shipped = ray.get_runtime_context().runtime_env.get("py_modules")
        if not shipped:
            raise ManagerError("ship_raysight needs this driver connected with raysight in "
                               "its runtime environment: ray.init(address, runtime_env="
                               "{'py_modules': raysight_py_modules()})")
        options["runtime_env"] = {"py_modules": shipped}
    actor = ray.remote(JobManager).options(
        name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=1000, **options)
    client = ManagerClient(actor.remote(_absolute(run_dir), max_concurrent, name))
    ray.get(client.handle.ping.remote())  # constructed (records recovered), or an error
    return client


def find_manager(name: str = MANAGER_NAME) -> Any | None:
    """The handle of the running job manager ``name``, or None (also when Ray is not up)."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def connect_manager(name: str = MANAGER_NAME) -> ManagerClient:
    handle = find_manager(name)
    if handle is None:
        raise ManagerError(f"no job manager {name!r} runs on this Ray cluster; start one "
                           "with `raysight manager start`")
    return ManagerClient(handle)


def stop_manager(name: str = MANAGER_NAME) -> int:
    """Stop the job manager ``name``; returns how many of its jobs were running (they stop
    with it and resume when a manager with the same run directory starts again)."""
    import ray

    client = connect_manager(name)
    running = len(client.list([ScheduleState.QUEUED, ScheduleState.RUNNING]))
    ray.kill(client.handle, no_restart=True)
    return running


def portable_spec(job: Any) -> dict[str, Any]:
    """The job's spec as the manager's drivers read it: sources' relative paths made
    absolute (a driver runs elsewhere), everything else as ``spec.json`` keeps it."""
    data = job.spec_json()
    for name, connector in job.connectors.items():
        path = getattr(connector.config, "path", None)
        if isinstance(path, str) and name in data.get("sources", {}):
            data["sources"][name]["path"] = path
    return dict(data)


def _absolute(run_dir: str) -> str:
    return run_dir if "://" in run_dir else os.path.abspath(os.path.expanduser(run_dir))


def _who() -> str:
    import socket

    return f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}:{os.getpid()}"


def describe(record: dict[str, Any]) -> list[str]:
    """A job's record for people."""
    def clock(epoch: float | None) -> str:
        return "-" if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC")

    lines = [f"job       {record['job_id']}",
             f"state     {record['state']}"
             + (f" ({record['job_state']})" if record.get("job_state") not in
                (None, record["state"]) else ""),
             f"user      {record['user_id']}",
             f"priority  {record['priority']} (spec {record['base_priority']}, "
             f"analysis bonus {record['bonus']})",
             f"submitted {clock(record['created_at'])}",
             f"started   {clock(record['started_at'])}",
             f"ended     {clock(record['completed_at'])}",
             f"run dir   {record['job_dir']}"]
    if record.get("preempt_count"):
        lines.append(f"preempted {record['preempt_count']} time(s)")
    if record.get("retry_count"):
        lines.append(f"retried   {record['retry_count']} time(s) after its driver died")
    if record.get("error"):
        lines.append(f"error     {record['error']}")
    return lines


def table(records: list[dict[str, Any]]) -> list[str]:
    """One line per job, in submission order."""
    if not records:
        return ["no jobs"]
    rows = [("JOB", "STATE", "PRIO", "USER", "WAITED", "RAN")]
    for r in records:
        waited = (r["started_at"] or time.time()) - r["created_at"]
        ran = ((r["completed_at"] or time.time()) - r["started_at"]) if r["started_at"] else 0
        rows.append((r["job_id"], r["state"], str(r["priority"]), r["user_id"],
                     f"{waited:.1f} s", f"{ran:.1f} s" if r["started_at"] else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


__all__ = ["JobManager", "ManagerClient", "ScheduleState", "connect_manager", "find_manager",
           "priority_of", "should_preempt", "start_manager", "stop_manager", "type_bonus"]
