"""What a run directory says about its job, finished or not.

A finished run has ``result.json``. A run whose driver is still working, or was killed before
it could write one, is read from what it wrote as it went: ``events.jsonl`` (one event per
line, flushed as it happens) and the checkpoint manifest. Whether the driver is alive comes from
``.driver.lock``: the driver holds an exclusive lock on it for as long as it runs, and the
operating system releases the lock when the process ends, however it ends (even SIGKILL); a
driver that ends normally also removes the file::

    with driver_lock(job_dir):          # in the driver, for the whole run
        ...
    run_state(job_dir)["state"]         # elsewhere: COMPLETED, FAILED, ..., RUNNING, INTERRUPTED
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raysight.errors import InputError, WorkflowError

LOCK_FILE = ".driver.lock"
RESULT_FILE = "result.json"
EVENTS_FILE = "events.jsonl"
#: step events and the state of the trace record each one leaves
_STEP_STATES = {"step_succeeded": "succeeded", "step_failed": "failed",
                "step_restored": "restored", "step_skipped": "skipped"}


def driver_identity() -> dict[str, Any]:
    """Which process drives the job, as events record it."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


@contextlib.contextmanager
def driver_lock(job_dir: Path) -> Iterator[None]:
    """Hold the run's driver lock; InputError when another process is running the job."""
    job_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(job_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"job {job_dir.name} is being run by another process "
                             f"({_holder(fd)}); wait for it or stop it first",
                             path=str(job_dir)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(driver_identity()).encode(), 0)
        try:
            yield
        finally:  # a finished run leaves no lock file behind
            with contextlib.suppress(OSError):
                os.unlink(job_dir / LOCK_FILE)
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        who = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {who['pid']} on {who['host']}"
    return "its driver"


def driver_alive(job_dir: Path) -> bool:
    """True while some process holds the run's driver lock."""
    try:
        fd = os.open(job_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_events(job_dir: Path) -> list[dict[str, Any]]:
    """The run's events in order; a torn last line (a driver killed mid-write) is ignored."""
    path = job_dir / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


def run_state(job_dir: Path) -> dict[str, Any]:
    """A ``result.json``-shaped dict of the run: the result itself when the job finished,
    else what its events and checkpoints say, with ``state`` RUNNING (its driver holds the
    lock) or INTERRUPTED (no driver: ``raysight resume`` can finish it)."""
    result_path = job_dir / RESULT_FILE
    running = driver_alive(job_dir)
    if result_path.exists() and not running:
        return json.loads(result_path.read_text(encoding="utf-8"))
    events = read_events(job_dir)
    starts = [i for i, e in enumerate(events) if e["event_type"] in ("job_started",
                                                                      "job_resumed")]
    if not starts:
        raise InputError(f"no run of job {job_dir.name!r} under {job_dir.parent} "
                         f"(neither {RESULT_FILE} nor a job_started event in {EVENTS_FILE})",
                         path=str(job_dir))
    begin = events[starts[-1]]
    current = events[starts[-1]:]
    data = begin.get("data", {})
    loaded: dict[str, Any] = next(
        (e["data"] for e in reversed(events) if e["event_type"] == "data_loaded"), {})
    records, open_steps = _records(current)
    errors = [{**e["data"]["error"], "step": e.get("step")} for e in current
              if e["event_type"] == "step_failed" and isinstance(e["data"].get("error"), dict)]
    return {
        "job_id": begin.get("job_id", job_dir.name),
        "state": "RUNNING" if running else "INTERRUPTED",
        "user_id": data.get("user_id"), "analysis_type": data.get("analysis_type"),
        "priority": data.get("priority"), "run_dir": str(job_dir),
        "started_at": begin.get("timestamp"),
        "finished_at": None,
        "driver": data.get("driver"),
        "resumed": begin["event_type"] == "job_resumed",
        "data_stats": {k: v for k, v in loaded.items() if k != "job_id"},
        "trace": {"records": records, "execution_path": [r["step"] for r in records]},
        "running_steps": open_steps,
        "checkpointed_steps": _checkpointed(job_dir),
        "errors": errors, "outputs": [], "warnings": [],
    }


def _records(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Trace-shaped records of the steps in ``events``, and the steps started but not ended."""
    records: list[dict[str, Any]] = []
    started: dict[str, float] = {}
    for e in events:
        step, kind = e.get("step"), e["event_type"]
        if step is None:
            continue
        at = _epoch(e["timestamp"])
        if kind == "step_started":
            started.setdefault(step, at)
        elif kind == "task_retry":
            records.append({"step": step, "state": "retried", "attempt": None,
                            "partition": e["data"].get("partition"), "started_at": at,
                            "ended_at": at, "error": e["data"].get("error")})
        elif kind in _STEP_STATES:
            begun = started.pop(step, at)
            records.append({"step": step, "state": _STEP_STATES[kind], "attempt": 1,
                            "partition": None, "started_at": begun, "ended_at": at,
                            "rows": e["data"].get("rows"), "error": e["data"].get("error")})
    now = dt.datetime.now(dt.UTC).timestamp()
    for step, at in started.items():
        records.append({"step": step, "state": "running", "attempt": 1, "partition": None,
                        "started_at": at, "ended_at": now, "rows": None, "error": None})
    return records, list(started)


def checkpoint_url(job_dir: Path, configured: str | None) -> str:
    """Where a run's checkpoints live: ``execution.checkpoint_url`` with ``{job_id}``
    filled in, else ``<run dir>/checkpoints``."""
    if not configured:
        return str(job_dir / "checkpoints")
    return configured.replace("{job_id}", job_dir.name)


def _checkpointed(job_dir: Path) -> list[str]:
    """Steps whose outputs the checkpoint manifest lists (what a resume restores)."""
    configured = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        spec = json.loads((job_dir / "spec.json").read_text(encoding="utf-8"))
        configured = spec["execution"]["checkpoint_url"]
    from raysight.engine.checkpoint import CheckpointStore

    try:
        manifest = CheckpointStore(checkpoint_url(job_dir, configured)).manifest()
    except (OSError, WorkflowError):  # an unreadable store: inspect shows what it can
        return []
    return list(dict.fromkeys(entry["step"] for entry in manifest["steps"].values()))


def _epoch(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp).timestamp()
