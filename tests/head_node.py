"""One `ray start --head` node for the whole test session (the ``cluster_head`` fixture of
conftest): token authentication, a dashboard with the Jobs API, the custom resources
``time_series`` and ``high_memory`` and the label ``zone=eu-1``, all on free ports of its own,
with its own temp dir, HOME and token. It is stopped through its own process group, which
leaves every other Ray instance on the machine alone. Starting one takes tens of seconds:
the slow tests share it."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VENV_BIN = os.path.dirname(sys.executable)
RESOURCES = '{"time_series": 1, "high_memory": 2}'
LABELS = "zone=eu-1"
NUM_CPUS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without the Ray and raysight settings a test sets itself."""
    return {k: v for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE",
                         "RAY_AUTH_TOKEN", "RAYSIGHT_RUN_DIR")}


@contextlib.contextmanager
def head_node() -> Iterator[dict[str, Any] | None]:
    """The running head node's facts (``url`` of the Jobs API, ``gcs`` address, ``token``,
    ``home`` of its processes, ``temp_dir``, ``env`` to run a command against it as a client
    with HOME ``client_home``), or None when it did not come up."""
    short = Path(tempfile.mkdtemp(prefix="rs-head-", dir="/tmp"))  # Ray's socket path limit
    port, dashboard = free_port(), free_port()
    token = secrets.token_hex(32)
    home, client_home = short / "head-home", short / "client-home"
    home.mkdir()
    client_home.mkdir()
    env = {**clean_env(), "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [os.path.join(VENV_BIN, "ray"), "start", "--head", "--block", f"--port={port}",
         f"--temp-dir={short / 'ray'}", f"--num-cpus={NUM_CPUS}", f"--resources={RESOURCES}",
         f"--labels={LABELS}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}",
         f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--ray-client-server-port={free_port()}",
         f"--min-worker-port={21000 + port % 1000 * 20}",
         f"--max-worker-port={21000 + port % 1000 * 20 + 19}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        if not jobs_api_up(url, token, proc, timeout_s=120):
            yield None
            return
        yield {"url": url, "gcs": f"127.0.0.1:{port}", "token": token, "home": home,
               "temp_dir": short / "ray",
               "env": {**clean_env(), "HOME": str(client_home), "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN": token}}
    finally:
        stop(proc)
        shutil.rmtree(short, ignore_errors=True)


def jobs_api_up(url: str, token: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        request = urllib.request.Request(f"{url}/api/version",
                                         headers={"Authorization": f"Bearer {token}"})
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return True
        time.sleep(0.5)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(1)
    with contextlib.suppress(ProcessLookupError):  # ray start's children share its group
        os.killpg(proc.pid, signal.SIGKILL)
