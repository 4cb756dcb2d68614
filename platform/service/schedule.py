"""The job manager's rules and records: the design's ``ScheduleState`` machine, its
priority formula and preemption rule as pure functions, and a job's record as the manager
persists it, one JSON file per job on any fsspec filesystem."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

log = logging.getLogger("raysight.service.manager")

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
        data["job_dir"] = join_path(self.run_root, self.job_id)
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


def join_path(root: str, name: str) -> str:
    """``root/name`` for a local path and for a URL alike."""
    return f"{root.rstrip('/')}/{name}"


def first_error(errors: list[dict[str, Any]] | None) -> str | None:
    """The message of a result's first error, if any."""
    return str(errors[0].get("message")) if errors else None
