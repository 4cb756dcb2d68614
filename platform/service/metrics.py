"""The job manager's metrics on Ray's Prometheus endpoint: queue, outcomes and wait times.

::

    metrics = ManagerMetrics("default")        # inside the manager actor
    metrics.submitted("vip_ana")
    metrics.queue(pending=3, running=2, paused=0)
    metrics.started(wait_s=12.5)
    metrics.finished("COMPLETED", run_s=40.0)

Every series carries the tag ``manager`` (the manager's name), so two managers on one cluster
stay apart. Ray exports them from the process that records them, prefixed with ``ray_``, with
``_total`` after a counter's name and ``_bucket``/``_sum``/``_count`` after a histogram's
(``ray_raysight_jobs_finished_total{state="FAILED"}``); ``deploy/grafana/raysight.json`` charts
them. The ``ray.util.metrics`` objects are made on first use, in the process that records,
because they belong to that process's core worker.
"""

from __future__ import annotations

import threading
from typing import Any

#: seconds a job waits in the queue: from instant dispatch to an hour behind other work
WAIT_BOUNDARIES = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
#: seconds a job runs
RUN_BOUNDARIES = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200]

#: every metric the manager records, by its raysight name (Ray adds ``ray_`` on export)
METRIC_NAMES = ("raysight_queue_length", "raysight_running_jobs", "raysight_paused_jobs",
                "raysight_jobs_submitted", "raysight_jobs_finished", "raysight_jobs_preempted",
                "raysight_job_wait_seconds", "raysight_job_run_seconds")


class ManagerMetrics:
    """Gauges, counters and histograms of one job manager, tagged with its name."""

    def __init__(self, manager: str) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._made: dict[str, Any] | None = None

    def _metrics(self) -> dict[str, Any]:
        with self._lock:
            if self._made is None:
                self._made = _make_metrics()
            return self._made

    def _tags(self, **extra: str) -> dict[str, str]:
        return {"manager": self.manager, **extra}

    def queue(self, pending: int, running: int, paused: int) -> None:
        """Set the queue gauges: jobs waiting, running and paused now."""
        metrics, tags = self._metrics(), self._tags()
        metrics["raysight_queue_length"].set(float(pending), tags=tags)
        metrics["raysight_running_jobs"].set(float(running), tags=tags)
        metrics["raysight_paused_jobs"].set(float(paused), tags=tags)

    def submitted(self, user: str) -> None:
        """Count a job accepted into the queue, by the user who submitted it."""
        self._metrics()["raysight_jobs_submitted"].inc(1.0, tags=self._tags(user=user))

    def started(self, wait_s: float) -> None:
        """Record how long a job waited in the queue before it was dispatched."""
        self._metrics()["raysight_job_wait_seconds"].observe(max(0.0, float(wait_s)),
                                                             tags=self._tags())

    def finished(self, state: str, run_s: float) -> None:
        """Count a job that reached a terminal state and record how long it ran."""
        metrics = self._metrics()
        metrics["raysight_jobs_finished"].inc(1.0, tags=self._tags(state=state))
        metrics["raysight_job_run_seconds"].observe(max(0.0, float(run_s)), tags=self._tags())

    def preempted(self) -> None:
        """Count a running job cancelled to make room for an urgent one."""
        self._metrics()["raysight_jobs_preempted"].inc(1.0, tags=self._tags())


def _make_metrics() -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge, Histogram

    manager = ("manager",)
    return {
        "raysight_queue_length": Gauge("raysight_queue_length", "jobs waiting in the queue",
                                       tag_keys=manager),
        "raysight_running_jobs": Gauge("raysight_running_jobs", "jobs running now",
                                       tag_keys=manager),
        "raysight_paused_jobs": Gauge("raysight_paused_jobs", "jobs paused now",
                                      tag_keys=manager),
        "raysight_jobs_submitted": Counter("raysight_jobs_submitted", "jobs accepted",
                                           tag_keys=("manager", "user")),
        "raysight_jobs_finished": Counter("raysight_jobs_finished",
                                          "jobs that reached a terminal state, by state",
                                          tag_keys=("manager", "state")),
        "raysight_jobs_preempted": Counter("raysight_jobs_preempted",
                                           "running jobs preempted for urgent ones",
                                           tag_keys=manager),
        "raysight_job_wait_seconds": Histogram("raysight_job_wait_seconds",
                                               "seconds from submission to dispatch",
                                               boundaries=WAIT_BOUNDARIES, tag_keys=manager),
        "raysight_job_run_seconds": Histogram("raysight_job_run_seconds",
                                              "seconds from dispatch to a terminal state",
                                              boundaries=RUN_BOUNDARIES, tag_keys=manager),
    }
