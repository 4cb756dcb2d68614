"""Step metrics of a Ray Client (``ray://``) driver reach the cluster's Prometheus endpoint:
the driver sends them, a batch per finished step, to an actor that records them there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
from conftest import EXAMPLES
from ray_client import ray_client_server
from test_service_metrics import value, wait_for_samples

from raysight.engine import observability
from raysight.engine.events import Event
from raysight.engine.observability import MetricsObserver


@pytest.fixture
def client_address(ray_session):
    with ray_client_server() as address:
        yield address


def test_a_ray_client_runs_step_metrics_reach_the_clusters_endpoint(client_address, tmp_path):
    node = f"client_{uuid.uuid4().hex[:8]}"  # its step names are this run's own
    driver = textwrap.dedent(f"""
        import ray
        from raysight.job.pipeline import AnalysisJob
        from raysight.job.graph_spec import parse_graph_spec

        ray.init({client_address!r}, logging_level="ERROR")
        spec = parse_graph_spec({{
            "version": 2,
            "sources": {{"sales": {{"type": "file",
                                   "path": {str(EXAMPLES / "data" / "sales.csv")!r}}}}},
            "analyses": {{{node!r}: {{"from": "sales", "type": "aggregation",
                                     "group_by": ["region"],
                                     "metrics": [{{"function": "count"}}]}}}}}})
        print(AnalysisJob(spec, run_dir={str(tmp_path)!r}).run().state)
    """)
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "COMPLETED" in done.stdout, done.stdout + done.stderr
    mine = {"step": f"{node}/analyze"}
    expected = {"ray_raysight_steps_started_total": 1, "ray_raysight_steps_succeeded_total": 1,
                "ray_raysight_step_duration_seconds_count": 1}
    # Ray's metrics agent may show one metric an export before another: wait for them all
    samples = wait_for_samples(lambda s: all(value(s, name, **mine) is not None
                                             for name in expected))
    assert {name: value(samples, name, **mine) for name in expected} == expected


def test_a_client_driver_sends_one_batch_per_finished_step(monkeypatch):
    sent: list[list] = []
    waits: list[float] = []
    monkeypatch.setattr(observability._Forwarder, "send", classmethod(
        lambda cls, batch, wait_s=0: (sent.append(batch), waits.append(wait_s))))
    monkeypatch.setattr(observability, "_ray_client_driver", lambda: True)
    observer = MetricsObserver()
    step = "analysis/analyze"
    observer.on_event(Event("step_started", "j1", step))
    observer.on_event(Event("task_retry", "j1", step))
    observer.on_event(Event("node_event", "j1", step))
    assert sent == []
    observer.on_event(Event("step_succeeded", "j1", step, {"duration_s": 0.5, "rows": 7}))
    tags = {"step": step}
    assert sent == [[("step_started", 1.0, tags), ("task_retry", 1.0, tags),
                     ("step_succeeded", 1.0, tags), ("duration", 0.5, tags),
                     ("rows", 7.0, tags)]]
    assert waits == [0], "a step's batch is sent without waiting"


def test_a_client_driver_waits_for_its_last_batch_at_the_jobs_end(monkeypatch):
    """Calls still in flight when the driver exits die with it (their owner)."""
    calls: list[tuple[list, float]] = []
    monkeypatch.setattr(observability._Forwarder, "send", classmethod(
        lambda cls, batch, wait_s=0: calls.append((batch, wait_s))))
    monkeypatch.setattr(observability, "_ray_client_driver", lambda: True)
    observer = MetricsObserver()
    observer.on_event(Event("step_started", "j3", "complete"))
    observer.on_event(Event("step_succeeded", "j3", "complete", {"duration_s": 0.1}))
    observer.on_event(Event("job_completed", "j3", "complete"))
    assert [len(batch) for batch, _ in calls] == [3, 0]
    assert calls[0][1] == 0 and calls[1][1] > 0, "only the job's end waits"


def test_an_empty_batch_creates_no_actor_and_sends_nothing(ray_session, monkeypatch):
    monkeypatch.setattr(observability._Forwarder, "_handle", None)
    monkeypatch.setattr(observability._Forwarder, "_last", None)
    observability._Forwarder.send([], wait_s=5)
    assert observability._Forwarder._handle is None and observability._Forwarder._last is None


def test_a_driver_with_its_own_core_worker_records_in_process(monkeypatch):
    recorded: list[list] = []
    monkeypatch.setattr(observability, "record_metrics", recorded.append)
    monkeypatch.setattr(observability, "_ray_client_driver", lambda: False)
    monkeypatch.setattr(observability._Forwarder, "send", classmethod(
        lambda cls, batch, wait_s=0: pytest.fail("a driver with a core worker forwarded")))
    MetricsObserver().on_event(Event("step_started", "j2", "load"))
    assert recorded == [[("step_started", 1.0, {"step": "load"})]]
