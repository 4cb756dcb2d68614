"""A job's driver under the job manager: :func:`drive` runs one job to its end as the manager
asks (cancel, pause or preemption through one pending call to its ``directive``), in a thread
of the manager's :class:`DriverHost`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from raysight.errors import InputError
from raysight.service.schedule import first_error, join_path


def drive(spec: dict[str, Any], run_root: str, job_id: str, resume: bool,
          connections: str | None, manager: Any, run: int) -> dict[str, Any]:
    """Run one job to its end as the manager asked: the job's state and first error."""
    import ray

    from raysight.job import remote_run
    from raysight.job.graph_spec import parse_graph_spec
    from raysight.job.pipeline import AnalysisJob
    from raysight.job.result import DONE_STATES
    from raysight.job.rundir import driver_alive

    job_dir = join_path(run_root, job_id)
    path = Path(job_dir)
    try:
        if resume and not remote_run.is_url(job_dir):
            deadline = time.monotonic() + 30  # a killed driver's lock is released soon
            while driver_alive(path) and time.monotonic() < deadline:
                time.sleep(0.2)
        if resume:
            job = AnalysisJob.resume(job_id, run_root, connections=connections)
        else:
            job = AnalysisJob(parse_graph_spec(spec, f"job {job_id}", connections),
                              run_dir=run_root, job_id=job_id)
    except InputError as err:
        previous = remote_run.read_text(join_path(job_dir, "result.json")) if resume else None
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
    return {"state": result.state, "error": first_error(result.errors)}


class DriverHost:
    """The process whose threads run the manager's job drivers (:func:`drive`): no CPU of
    its own, since a job's steps are the Ray tasks that work; started once, so a job does not
    pay for a new worker process and its imports. Ray never retries a driver: the manager
    resumes it from its checkpoints instead."""

    def drive(self, *args: Any) -> dict[str, Any]:
        return drive(*args)
