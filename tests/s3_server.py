"""moto's S3 API on a loopback port, started once per test process (a real HTTP server in a
thread, not patched functions), for the tests that read object storage."""

from __future__ import annotations

import functools
import logging


@functools.cache
def s3_endpoint() -> str:
    """The server's URL (``http://127.0.0.1:PORT``); it runs until the process ends."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}"
