"""The job manager (:mod:`raysight.service.manager`): the design's priority formula and
preemption rule, dispatch order under a concurrency cap, cancel/pause/resume, preemption that
resumes without redoing a step, many clients, and a SIGKILL of the manager's process."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob
from raysight.service import manager as mgr
from raysight.service.manager import ManagerError, priority_of, should_preempt, type_bonus

# -- the design's rules, as pure functions -----------------------------------------------------


@pytest.mark.parametrize("base, user, waited_s, bonus, expected", [
    (50, "analyst", 0, 0, 50),
    (50, "vip_anna", 0, 0, 70),         # + 20 for a vip_ user
    (50, "vipanna", 0, 0, 50),          # only the vip_ prefix counts
    (50, "analyst", 59, 0, 50),         # whole minutes only
    (50, "analyst", 60, 0, 51),
    (50, "analyst", 3600, 0, 60),       # aging stops at 10
    (50, "analyst", 0, 10, 60),         # time series bonus
    (90, "vip_anna", 600, 15, 100),     # capped at 100
    (0, "analyst", 0, 0, 0),
])
def test_priority_is_the_designs_formula(base, user, waited_s, bonus, expected):
    assert priority_of(base, user, waited_s, bonus) == expected


def test_the_bonus_is_the_largest_of_the_jobs_analyses():
    assert type_bonus(["descriptive"]) == 0
    assert type_bonus(["aggregation", "descriptive"]) == 5
    assert type_bonus(["time_series", "aggregation"]) == 10
    assert type_bonus(["machine_learning"]) == 15
    assert type_bonus(["my_custom_kernel"]) == 5
    assert type_bonus([]) == 0


@pytest.mark.parametrize("running, waiting, running_s, expected", [
    (20, 90, 10, True),
    (30, 80, 10, True),     # the edges: 30 and 80, 50 apart
    (31, 90, 10, False),    # the victim must be 30 or less
    (20, 79, 10, False),    # the waiter must be 80 or more
    (30, 59, 10, False),
    (10, 80, 299, True),
    (10, 80, 300, False),   # only a victim younger than 5 minutes
])
def test_preemption_is_the_designs_rule(running, waiting, running_s, expected):
    assert should_preempt(running, waiting, running_s) is expected


# -- a manager on the session's Ray -------------------------------------------------------------


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("k,v\na,1\nb,2\nc,3\n")
    return path


def spec(data: Path, priority: int = 50, user: str = "analyst", delay_s: float = 0,
         step: str = "analysis/analyze", **extra):
    faults = [{"step": step, "error": "delay", "delay_s": delay_s}] if delay_s else []
    return parse_graph_spec({
        "version": 1, "user_id": user, "priority": priority,
        "source": {"type": "file", "path": str(data)},
        "analysis": {"type": "descriptive"},
        "execution": {"faults": faults}, **extra})


@pytest.fixture
def manager_factory(ray_session, tmp_path):
    started = []

    def make(max_concurrent: int = 2):
        name = f"test-{uuid.uuid4().hex[:8]}"
        client = mgr.start_manager(str(tmp_path / "runs"), max_concurrent, name)
        started.append(client)
        return client

    yield make
    for client in started:
        ray_session.kill(client.handle, no_restart=True)


def submit(manager, job_spec, tmp_path) -> str:
    return manager.submit(AnalysisJob(job_spec, run_dir=tmp_path / "runs"))


def wait_state(manager, job_id, states, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while True:
        record = manager.status(job_id)
        if record["state"] in states:
            return record
        assert time.monotonic() < deadline, f"{job_id} stayed {record['state']}"
        time.sleep(0.1)


def events(record) -> list[dict]:
    lines = Path(record["job_dir"], "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_jobs_are_dispatched_in_the_formulas_order_under_the_cap(manager_factory, data,
                                                                 tmp_path):
    manager = manager_factory(max_concurrent=2)
    blockers = [submit(manager, spec(data, delay_s=6), tmp_path) for _ in range(2)]
    for job_id in blockers:
        wait_state(manager, job_id, ["RUNNING"])
    priorities = list(range(10, 101, 10))
    random.Random(7).shuffle(priorities)
    queued = {submit(manager, spec(data, priority=p), tmp_path): p for p in priorities}
    plain = submit(manager, spec(data, priority=45), tmp_path)
    vip = submit(manager, spec(data, priority=45, user="vip_anna"), tmp_path)  # 45 + 20
    assert all(manager.status(j)["state"] == "PENDING" for j in [*queued, plain, vip])
    for job_id in [*queued, plain, vip]:
        assert manager.wait(job_id, timeout_s=120)["state"] == "COMPLETED"
    order = sorted([*queued, plain, vip], key=lambda j: manager.status(j)["dispatch_order"])
    effective = {**queued, plain: 45, vip: 65}
    assert [effective[j] for j in order] == [100, 90, 80, 70, 65, 60, 50, 45, 40, 30, 20, 10]
    assert order.index(vip) < order.index(plain)
    records = manager.list()
    assert max_overlap(records) <= 2
    stats = manager.stats()
    assert stats["completed_count"] == 14 and stats["success_rate"] == 1.0
    assert stats["pending_count"] == stats["running_count"] == 0
    waits = [r["started_at"] - r["created_at"] for r in records]
    assert stats["average_wait_time"] == pytest.approx(sum(waits) / len(waits))


def max_overlap(records) -> int:
    """The most runs of drivers that overlapped in time (from their recorded spans)."""
    edges = sorted([(start, 1) for r in records for start, _ in r["runs"]]
                   + [(end, -1) for r in records for _, end in r["runs"]])
    most = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        current += step
        most = max(most, current)
    return most


def test_a_waiting_90_preempts_a_running_20_which_resumes_without_redoing_a_step(
        manager_factory, data, tmp_path):
    manager = manager_factory(max_concurrent=1)
    victim = submit(manager, spec(data, priority=20, delay_s=3), tmp_path)
    record = wait_state(manager, victim, ["RUNNING"])
    deadline = time.monotonic() + 60
    while not any(e["event_type"] == "step_started" and e["step"] == "analysis/analyze"
                  for e in events(record)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    urgent = submit(manager, spec(data, priority=90), tmp_path)
    assert manager.wait(urgent, timeout_s=60)["state"] == "COMPLETED"
    final = manager.wait(victim, timeout_s=60)
    assert final["state"] == "COMPLETED"
    assert final["preempted"] and final["preempt_count"] == 1
    assert manager.status(urgent)["preempted_workflow"] == victim
    assert len(final["runs"]) == 2
    assert manager.status(urgent)["runs"][0][0] < final["runs"][1][0]
    log = events(final)
    succeeded = [e["step"] for e in log if e["event_type"] == "step_succeeded"]
    # the analysis that was running when the 90 came finished, and was not run again
    assert succeeded.count("analysis/analyze") == 1 and succeeded.count("source/load") == 1
    restored = [e["step"] for e in log if e["event_type"] == "step_restored"]
    assert {"source/load", "analysis/analyze"} <= set(restored)
    kinds = [e["event_type"] for e in log]
    assert kinds.count("job_cancelled") == 1 and kinds.count("job_resumed") == 1
    assert kinds.count("job_completed") == 1
    cancelled = next(e for e in log if e["event_type"] == "job_cancelled")
    assert urgent in cancelled["data"]["error"]["message"]
    assert manager.stats()["preemptions"] == 1


def test_cancel_pause_and_resume(manager_factory, data, tmp_path):
    manager = manager_factory(max_concurrent=1)
    running = submit(manager, spec(data, delay_s=60), tmp_path)
    wait_state(manager, running, ["RUNNING"])
    waiting = submit(manager, spec(data), tmp_path)
    held = submit(manager, spec(data), tmp_path)
    assert manager.pause(held)["state"] == "PAUSED"
    assert manager.cancel(waiting)["state"] == "CANCELED"
    with pytest.raises(ManagerError, match="cannot cancel .* already ended"):
        manager.cancel(waiting)
    with pytest.raises(ManagerError, match="only a paused job resumes"):
        manager.resume(running)
    with pytest.raises(ManagerError, match="not found"):
        manager.status("job_nobody")
    began = time.monotonic()
    manager.cancel(running)
    stopped = manager.wait(running, timeout_s=30)
    assert stopped["state"] == "CANCELED" and time.monotonic() - began < 20
    result = json.loads(Path(stopped["job_dir"], "result.json").read_text())
    assert result["state"] == "CANCELED"
    assert "cancel in the job manager" in result["errors"][0]["message"]
    time.sleep(1.5)  # a paused job stays put while the slot is free
    assert manager.status(held)["state"] == "PAUSED"
    manager.resume(held)
    assert manager.wait(held, timeout_s=60)["state"] == "COMPLETED"
    stats = manager.stats()
    assert (stats["completed_count"], stats["canceled_count"]) == (1, 2)


def test_a_spec_the_manager_cannot_run_is_refused_at_submission(manager_factory, data,
                                                                 tmp_path):
    manager = manager_factory()
    job = AnalysisJob(spec(data), run_dir=tmp_path / "runs", job_id="fixed")
    manager.submit(job)
    with pytest.raises(ManagerError, match="already submitted"):
        manager.submit(job)


def test_a_job_no_node_could_run_is_refused_not_queued(manager_factory, data, tmp_path):
    manager = manager_factory()
    greedy = spec(data, resources={"analyze": {"num_cpus": 64}})
    with pytest.raises(ManagerError, match="not queued: step .* needs CPU=64"):
        submit(manager, greedy, tmp_path)
    assert manager.list() == []


def test_200_jobs_from_4_clients_run_once_each_under_the_cap(manager_factory, data, tmp_path):
    manager = manager_factory(max_concurrent=4)
    job_spec = spec(data)
    ids: list[str] = []
    lock = threading.Lock()

    def client():
        for _ in range(50):
            job_id = submit(manager, job_spec, tmp_path)
            with lock:
                ids.append(job_id)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    assert len(set(ids)) == 200
    records = [manager.wait(j, timeout_s=240) for j in ids]
    assert [r["state"] for r in records] == ["COMPLETED"] * 200
    assert all(len(r["runs"]) == 1 for r in records)  # none ran twice
    assert max_overlap(records) <= 4
    for r in random.Random(1).sample(records, 10):
        kinds = [e["event_type"] for e in events(r)]
        assert kinds.count("job_started") == 1 and kinds.count("job_completed") == 1
    assert manager.stats()["completed_count"] == 200


def test_a_killed_manager_restarts_and_every_job_ends_exactly_once(manager_factory, data,
                                                                   tmp_path):
    import ray

    manager = manager_factory(max_concurrent=2)
    slow = spec(data, delay_s=1.5, step="source/load")
    ids = [submit(manager, slow, tmp_path) for _ in range(6)]
    wait_state(manager, ids[0], ["RUNNING"])
    pid = ray.get(manager.handle.ping.remote())["pid"]
    os.kill(pid, signal.SIGKILL)  # mid-load: two jobs run, four wait
    # Ray restarts the detached actor, which recovers its records and dispatches them by
    # itself: no client calls it until every job has written its result
    results = [tmp_path / "runs" / job_id / "result.json" for job_id in ids]
    deadline = time.monotonic() + 120
    while not all(r.exists() and json.loads(r.read_text())["state"] == "COMPLETED"
                  for r in results):
        assert time.monotonic() < deadline, "the restarted manager did not finish the jobs"
        time.sleep(0.5)
    assert ray.get(manager.handle.ping.remote())["pid"] != pid
    assert manager.stats()["recovered"] >= 1
    records = [manager.wait(j, timeout_s=120) for j in ids]
    assert [r["state"] for r in records] == ["COMPLETED"] * 6
    for r in records:
        kinds = [e["event_type"] for e in events(r)]
        assert kinds.count("job_completed") == 1
        result = json.loads(Path(r["job_dir"], "result.json").read_text())
        assert result["state"] == "COMPLETED"
    assert any(len(r["runs"]) > 1 for r in records)  # some were resumed after the kill


def test_a_notebook_job_goes_through_the_running_manager(ray_session, data, tmp_path):
    client = mgr.start_manager(str(tmp_path / "runs"), 2)  # the default name: found by run()
    try:
        job = AnalysisJob(spec(data), run_dir=tmp_path / "runs")
        result = job.run()
        assert result.state == "COMPLETED"
        record = client.status(job.job_id)
        assert record["state"] == "COMPLETED" and record["dispatch_order"] == 1
        assert result.analyses == json.loads(
            Path(record["job_dir"], "result.json").read_text())["analyses"]
        kept = AnalysisJob(spec(data), run_dir=tmp_path / "runs", keep=["analysis"])
        assert kept.manager() is None  # objects of this process: it runs here
    finally:
        ray_session.kill(client.handle, no_restart=True)
    assert AnalysisJob(spec(data), run_dir=tmp_path / "runs").manager() is None


def test_records_are_files_a_restarted_manager_reads(manager_factory, data, tmp_path):
    manager = manager_factory()
    job_id = submit(manager, spec(data), tmp_path)
    manager.wait(job_id, timeout_s=60)
    name = manager.stats()
    files = list((tmp_path / "runs" / ".manager").rglob(f"{job_id}.json"))
    assert len(files) == 1 and name["run_dir"] == str(tmp_path / "runs")
    saved = json.loads(files[0].read_text())
    assert saved["state"] == "COMPLETED" and saved["spec"]["sources"]
    assert yaml.safe_dump(saved)  # plain data
