"""Circuit breakers and distributed locks on workflow steps."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from raysight.engine.breaker import CircuitBreakerConfig, CircuitOpenError, breaker
from raysight.engine.context import RunContext
from raysight.engine.events import EventLog, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.retry import Fixed, RetryPolicy
from raysight.engine.workflow import parallel, step
from raysight.errors import TransientError

pytestmark = pytest.mark.usefixtures("ray_session")


def attempts_in(folder: Path) -> int:
    path = folder / "attempts.txt"
    return len(path.read_text().split()) if path.exists() else 0


def flaky_dependency(folder: str):
    def call_service(_):
        with open(Path(folder) / "attempts.txt", "a") as f:
            f.write("x\n")
        raise TransientError("connection refused by warehouse")

    return step(call_service, name="call_service")


def test_an_open_circuit_refuses_attempts_without_running_the_step(tmp_path):
    name = f"warehouse-{uuid.uuid4().hex[:8]}"
    import ray

    ray.get(breaker(name, CircuitBreakerConfig(minimum_calls=3, cooldown_s=60)).reset.remote(
        CircuitBreakerConfig(minimum_calls=3, cooldown_s=60)))
    guarded = flaky_dependency(str(tmp_path)).with_circuit_breaker(name).with_retry(
        RetryPolicy(max_retries=5, backoff=Fixed(0.01)))
    events = EventLog()
    with pytest.raises(CircuitOpenError):
        Executor(poll_s=0.05).run(guarded, RunContext("job_cb", observers=Observers([events])))
    # three real calls failed and opened the breaker; the other attempts never ran
    assert attempts_in(tmp_path) == 3
    retries = events.of_type("task_retry")
    assert len(retries) == 5
    assert retries[-1].data["error"]["category"] == "circuit_open"
    assert ray.get(breaker(name).snapshot.remote())["state"] == "open"


@step
def critical_section(tag, ctx):
    start = time.time()
    time.sleep(0.5)
    return tag, ctx.fencing_token, start, time.time()


def test_steps_holding_one_lock_never_overlap_and_tokens_increase():
    key = f"inventory-{uuid.uuid4().hex[:8]}"
    guarded = [critical_section.options(name=f"writer_{i}").with_lock(key, lease_s=5)
               for i in range(3)]
    out = fetch(Executor().run(parallel(*guarded), RunContext("job_lock"), "t"))
    spans = sorted(out, key=lambda r: r[2])
    for (_, tok_a, _, end_a), (_, tok_b, start_b, _) in zip(spans, spans[1:], strict=False):
        assert end_a <= start_b  # one holder at a time
        assert tok_a < tok_b  # fencing tokens increase in the order the lock was taken
