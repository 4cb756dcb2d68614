"""A Ray Client server of a test's own in front of the session's cluster, for the tests that
connect through ``ray://``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import ray
from test_connect import free_port


@contextlib.contextmanager
def ray_client_server() -> Iterator[str]:
    """Yield ``ray://127.0.0.1:PORT`` of a Ray Client server (Ray's legacy mode: one process,
    which becomes the client's driver on the session's cluster); stopped through its own
    process group, so nothing else on the machine is touched. Skips when it cannot start."""
    gcs = ray._private.worker.global_worker.node.gcs_address
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ray.util.client.server", "--mode", "legacy", "--address", gcs,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            time.sleep(0.2)
        else:
            pytest.skip("the Ray Client server did not start")
        yield f"ray://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
