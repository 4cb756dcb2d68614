"""Shared fixtures: one Ray instance per test session, services that skip when absent."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by the whole session (ray.init takes seconds)."""
    import ray

    # workers inherit the environment: let them import helpers defined in test modules
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if not ray.is_initialized():
        context = ray.init(num_cpus=2, logging_level="ERROR", log_to_driver=False)
        # state queries go to this session's own cluster, never to another one on the machine
        os.environ["RAY_STATE_ADDRESS"] = f"http://{context.dashboard_url}"
    yield ray


@pytest.fixture(scope="session")
def cluster_head():
    """A token-auth `ray start --head` node shared by the slow tests (see head_node.py)."""
    from head_node import head_node

    with head_node() as head:
        if head is None:
            pytest.skip("a `ray start --head` node with token authentication did not come up")
        yield head


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is absent, except under CI=true where absence is a failure."""
    if service_available(host, port):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not reachable on {host}:{port} (required under CI=true)")
    pytest.skip(f"{name} is not reachable on {host}:{port}")


def state_address() -> str | None:
    """The dashboard of the session's Ray cluster (for ray.util.state queries)."""
    return os.environ.get("RAY_STATE_ADDRESS")


def job_tasks(job_id: str, expect: int, timeout_s: float = 20.0) -> list:
    """Ray's task records whose name starts with ``<job_id>/`` (state events arrive
    asynchronously, so poll until ``expect`` of them have finished or failed)."""
    import time

    from ray.util.state import list_tasks

    deadline = time.monotonic() + timeout_s
    found: list = []
    while time.monotonic() < deadline:
        found = [t for t in list_tasks(address=state_address(), limit=10000,
                                       raise_on_missing_output=False)
                 if t.name.startswith(f"{job_id}/")]
        if len(found) >= expect and all(t.state in ("FINISHED", "FAILED") for t in found):
            break
        time.sleep(0.5)
    return found


class FakeClock:
    """A clock that only moves when a test says so (for retry, breaker and lease tests)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
