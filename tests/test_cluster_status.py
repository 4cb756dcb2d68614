"""`raysight cluster` and platform_status(): nodes, resources, load and utilisation as Ray
itself counts them, the job manager's statistics when one runs, one-line errors otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
import ray
from ray_client import ray_client_server
from test_connect import free_port

from raysight.cli import main
from raysight.service.cluster_status import (
    custom_resources,
    describe_status,
    platform_status,
    utilisation,
)

pytestmark = pytest.mark.usefixtures("ray_session")

STATS = {"pending_count": 3, "running_count": 2, "completed_count": 40, "failed_count": 1,
         "canceled_count": 2, "paused_count": 1, "average_wait_time": 1.25,
         "average_execution_time": 12.5, "average_retry_count": 0.1, "success_rate": 0.93,
         "queue_length": 3, "max_concurrent": 20}


@ray.remote(num_cpus=0)
class FakeManager:
    """Answers stats() as the job manager does."""

    def stats(self) -> dict:
        return dict(STATS)


@ray.remote(num_cpus=1)
class Holder:
    """Holds one CPU for as long as it lives."""

    def ready(self) -> bool:
        return True


@ray.remote(num_cpus=1)
def wait_while(path: str) -> None:
    while Path(path).exists():
        time.sleep(0.05)


def test_node_totals_add_up_to_rays_cluster_resources():
    status = platform_status()
    alive = [n for n in status["nodes"] if n["alive"]]
    assert len(alive) == len([n for n in ray.nodes() if n["Alive"]])
    summed: dict[str, float] = {}
    for node in alive:
        for name, amount in node["resources_total"].items():
            summed[name] = summed.get(name, 0.0) + amount
    assert summed == pytest.approx(ray.cluster_resources())
    assert status["cluster"]["object_store_total_bytes"] == \
        ray.cluster_resources()["object_store_memory"]
    assert sum(n["cpu"] for n in alive) == ray.cluster_resources()["CPU"]
    assert [n["is_head"] for n in alive].count(True) == 1


def test_cpu_utilisation_counts_what_an_actor_holds():
    holder = Holder.remote()
    ray.get(holder.ready.remote())
    try:
        total = ray.cluster_resources()["CPU"]
        before = (total - ray.available_resources().get("CPU", 0.0)) / total
        status = platform_status()
        after = (total - ray.available_resources().get("CPU", 0.0)) / total
        # another test's leftover task may end meanwhile: Ray's own numbers bracket ours
        assert min(before, after) <= status["cluster"]["cpu_utilisation"] <= max(before, after)
        assert status["cluster"]["cpu_utilisation"] >= 1 / total
        node = next(n for n in status["nodes"] if n["alive"])
        assert node["cpu"] - node["cpu_available"] >= 1
    finally:
        ray.kill(holder)


def test_a_running_task_counts_in_its_nodes_load():
    with tempfile.NamedTemporaryFile(prefix="raysight-status-") as flag:
        ref = wait_while.remote(flag.name)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            running = platform_status()["cluster"]["running_tasks"]
            if running >= 1:
                break
            time.sleep(0.2)
        assert running >= 1
    ray.get(ref, timeout=10)


def test_object_store_use_includes_an_object_put_there():
    size = 8 << 20
    ref = ray.put(b"x" * size)
    cluster = platform_status()["cluster"]
    assert size <= cluster["object_store_used_bytes"] <= cluster["object_store_total_bytes"]
    del ref


def test_custom_resources_leave_out_rays_own():
    resources = {"CPU": 8.0, "GPU": 1.0, "memory": 1e9, "object_store_memory": 1e8,
                 "node:10.0.0.5": 1.0, "node:__internal_head__": 1.0,
                 "accelerator_type:A100": 1.0, "high_memory": 1.0, "ssd": 2.0}
    assert custom_resources(resources) == {"high_memory": 1.0, "ssd": 2.0}


def test_utilisation_treats_a_resource_missing_from_available_as_fully_used():
    # Ray leaves a resource that is fully in use out of ray.available_resources()
    assert utilisation({"CPU": 4.0}, {}, "CPU") == 1.0
    assert utilisation({"CPU": 4.0}, {"CPU": 3.0}, "CPU") == 0.25
    assert utilisation({"CPU": 4.0}, {}, "GPU") is None


def test_the_job_managers_statistics_fill_scheduler_and_queue():
    manager = FakeManager.remote()
    status = platform_status(manager)
    assert status["scheduler"] == STATS
    assert status["queue"] == {"queue_length": 3, "starting_jobs": 0, "running_jobs": 2,
                               "paused_jobs": 1, "max_concurrent": 20}
    text = "\n".join(describe_status(status))
    assert "3 waiting, 0 starting, 2 running (at most 20), 1 paused" in text
    assert "40 completed, 1 failed, 2 canceled (93% succeeded)" in text
    assert "1.25 s waiting, 12.5 s running on average" in text
    ray.kill(manager)


def test_without_a_job_manager_scheduler_is_none_and_the_text_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "raysight.service.manager",
                        types.SimpleNamespace(find_manager=lambda: None))
    status = platform_status()
    assert status["scheduler"] is None and status["queue"] is None
    assert "scheduler no job manager running" in describe_status(status)


@ray.remote(num_cpus=0)
class DeadManager:
    def stats(self) -> dict:
        raise SystemExit  # the actor process ends, as a killed manager's does


def test_a_job_manager_that_does_not_answer_is_reported_not_raised():
    manager = DeadManager.remote()
    status = platform_status(manager)
    assert status["scheduler"] is None and status["queue"] is None
    assert status["scheduler_error"].startswith("the job manager did not answer")
    assert f"scheduler {status['scheduler_error']}" in describe_status(status)


def test_without_the_job_manager_module_scheduler_is_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "raysight.service.manager", None)  # import fails
    assert platform_status()["scheduler"] is None


def test_the_running_job_manager_is_found_by_name(monkeypatch):
    manager = FakeManager.remote()
    monkeypatch.setitem(sys.modules, "raysight.service.manager",
                        types.SimpleNamespace(find_manager=lambda: manager))
    assert platform_status()["scheduler"] == STATS
    ray.kill(manager)


def test_the_text_has_a_line_per_node_with_units_and_percentages():
    status = platform_status()
    lines = describe_status(status)
    node_lines = [x for x in lines if x.startswith("node ")]
    assert len(node_lines) == len(status["nodes"])
    assert all(n["node_id"][:12] in x for n, x in zip(status["nodes"], node_lines, strict=True))
    memory = next(x for x in lines if x.startswith("memory"))
    assert "iB" in memory and "%" in memory
    assert "head" in node_lines[0] and "CPU " in node_lines[0]


def test_cluster_json_describes_the_connected_cluster(capsys):
    assert main(["cluster", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["nodes"]) == len(ray.nodes())
    assert printed["cluster"]["resources_total"] == pytest.approx(ray.cluster_resources())


def test_cluster_at_an_unreachable_address_exits_2_with_one_line():
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run([sys.executable, "-m", "raysight", "cluster", "--address", address],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and address in done.stderr
    assert "Traceback" not in done.stderr


def test_cluster_through_ray_client_reports_the_same_cluster():
    with ray_client_server() as address:
        done = subprocess.run([sys.executable, "-m", "raysight", "cluster", "--json",
                               "--address", address], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    assert printed["cluster"]["resources_total"] == pytest.approx(ray.cluster_resources())
    assert {n["node_id"] for n in printed["nodes"]} == {n["NodeID"] for n in ray.nodes()}
    assert printed["cluster"]["running_tasks"] >= 1  # the collecting task itself


@pytest.mark.slow
def test_cluster_on_a_token_auth_head_shows_its_custom_resources_and_labels(cluster_head):
    """The session's head node (tests/head_node.py: token authentication, custom resources,
    a label)."""
    env = cluster_head["env"]
    command = [sys.executable, "-m", "raysight", "cluster", "--json",
               "--address", cluster_head["gcs"]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    (node,) = json.loads(done.stdout)["nodes"]
    assert node["custom_resources"] == {"high_memory": 2.0, "time_series": 1.0}
    assert node["labels"]["zone"] == "eu-1"
    assert node["cpu"] == 2
    refused = subprocess.run(command, env={**env, "RAY_AUTH_TOKEN": "0" * 64},
                             capture_output=True, text=True, timeout=90)
    assert refused.returncode == 2 and "token" in refused.stderr


def test_a_dead_node_and_a_gpu_node_read_as_such():
    status = platform_status()
    live = next(n for n in status["nodes"] if n["alive"])
    gpu = {**live, "node_id": "g" * 56, "gpu": 4.0, "gpu_available": 1.0, "is_head": False}
    dead = {**live, "node_id": "d" * 56, "alive": False, "state": "DEAD", "is_head": False}
    status["nodes"] = [live, gpu, dead]
    lines = describe_status(status)
    assert any(x.startswith("node      gggggggggggg") and "GPU 3/4" in x for x in lines)
    assert any(x.startswith("node      dddddddddddd") and x.endswith("DEAD") for x in lines)
    assert not any("GPU" in x for x in lines if x.startswith(f"node      {live['node_id'][:12]}"))


def test_the_clusters_running_job_manager_fills_scheduler(tmp_path):
    from raysight.service import manager as mgr

    client = mgr.start_manager(str(tmp_path / "runs"), 3)  # the default name: found by name
    try:
        status = platform_status()
        stats = client.stats()
        assert status["scheduler"] == stats
        assert status["queue"]["max_concurrent"] == 3 == stats["max_concurrent"]
        assert status["queue"]["queue_length"] == stats["queue_length"] == 0
        assert "queue     0 waiting, 0 starting, 0 running (at most 3), 0 paused" in \
            describe_status(status)
    finally:
        ray.kill(client.handle, no_restart=True)
    assert platform_status()["scheduler"] is None
