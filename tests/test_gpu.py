"""GPU placement of workflow steps (runs where the Ray cluster has a GPU, skips elsewhere)."""

from __future__ import annotations

import os
import time

import pytest
import ray

from raysight.engine.context import RunContext
from raysight.engine.executor import Executor, fetch
from raysight.engine.workflow import parallel, step

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("ray_session")]


@pytest.fixture(autouse=True)
def needs_gpu(ray_session):
    if ray.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("the Ray cluster has no GPU")


@step(num_gpus=1)
def gpu_placement():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@step(num_gpus=0.5)
def half_gpu(_):
    start = time.time()
    time.sleep(5.0)  # longer than a worker process takes to start
    return ray.get_gpu_ids(), start, time.time()


@step
def cpu_only():
    return ray.get_gpu_ids()


def test_a_step_asking_for_a_gpu_gets_one_assigned():
    ids, visible = fetch(Executor().run(gpu_placement, RunContext("job_gpu")))
    assert len(ids) == 1
    assert visible == str(ids[0])


def test_a_cpu_step_is_assigned_no_gpu():
    assert fetch(Executor().run(cpu_only, RunContext("job_cpu"))) == []


def test_two_half_gpu_steps_share_one_gpu_concurrently():
    (a_ids, a_start, a_end), (b_ids, b_start, b_end) = fetch(
        Executor().run(parallel(half_gpu, half_gpu), RunContext("job_half"), None))
    assert a_ids == b_ids and len(a_ids) == 1
    assert a_start < b_end and b_start < a_end  # the two ran at the same time
