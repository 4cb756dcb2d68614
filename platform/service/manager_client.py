"""Calls to a running job manager (:mod:`raysight.service.manager`) from a driver, a notebook
or the CLI: start, find, connect to and stop it, and show its records to people."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable
from typing import Any

from raysight.errors import InputError
from raysight.service.schedule import (
    DEFAULT_MAX_CONCURRENT,
    MANAGER_NAME,
    NAMESPACE,
    TERMINAL,
    ScheduleState,
    join_path,
)


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
        text = read_text(join_path(record["job_dir"], "result.json"))
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
    from raysight.service.manager import JobManager

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
