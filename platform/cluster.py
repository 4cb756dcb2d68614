"""Connecting the command line to Ray: its own local instance unless a cluster is named.

::

    connect(None)                      # an embedded local Ray, whatever else runs here
    connect("10.0.0.5:6379")           # the cluster whose head's GCS listens there
    connect("ray://10.0.0.5:10001")    # the same cluster through Ray Client

Without an address (and without ``RAY_ADDRESS``) raysight starts its own local instance
(Ray's ``address="local"``): ``ray.init()`` would instead join the cluster last started with
``ray start`` on this machine (Ray's current-cluster file), and hang forever when that cluster
is gone. With an address, connecting has a time limit: a closed port fails at once, and a
cluster that does not answer (or answers but refuses the client's token) ends the process with
one line that says what to check, exit status 2. Ray's start-up chatter (its own log records
and the core worker's retries on stderr) is kept off the terminal; ``--log-level INFO`` shows it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from raysight.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 30.0
#: what Ray's core worker prints while a cluster refuses the client's token
_AUTH_REFUSED = ("Unauthenticated", "InvalidAuthToken", "authentication token is missing")
_TOKEN_HINT = ("set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN "
               "(or ~/.ray/auth_token)")
_ADDRESS_HINT = ("check the address: HOST:PORT of the head's GCS as `ray start --head` prints "
                 "it, or ray://HOST:10001 for Ray Client")


class ConnectError(InputError):
    """Ray could not be reached at the given address (the CLI exits 2 with this message)."""

    category = "cannot_connect"


def connect(address: str | None = None, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
            log_level: str = "WARNING", runtime_env: dict[str, Any] | None = None) -> None:
    """Connect this process to Ray: its own local instance, or the cluster at ``address``.

    ``address`` None (and no ``RAY_ADDRESS``) or ``"local"`` starts an embedded local
    instance; ``"auto"`` asks Ray to find a running cluster on this machine; anything else is a
    cluster address. Meant for command-line entry points: a ``ray.init`` that hangs cannot be
    interrupted, so when the cluster gives no answer within ``timeout_s`` this prints the
    reason to stderr and ends the process with status 2. ``runtime_env`` is this driver's job
    runtime environment on a cluster (what detached actors it starts inherit).
    """
    import ray

    # failed attempts leave outputs nobody fetches; the executor already reported them
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    ray_level = _ray_log_level(log_level)
    if address == "local":
        ray.init(address="local", logging_level=ray_level, log_to_driver=False)
        log.info("started an embedded local Ray instance")
        return
    if address != "auto":
        _probe(address, min(timeout_s, 5.0))
    with _captured_stderr() as captured, _deadline(address, timeout_s, captured):
        try:
            ray.init(address=address, logging_level=ray_level, log_to_driver=False,
                     runtime_env=runtime_env)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            raise ConnectError(_failure(address, captured.read(), exc), address=address) \
                from None
        finally:
            chatter = captured.read()
    if chatter and ray_level < logging.WARNING:
        sys.stderr.write(chatter)
    log.info("connected to the Ray cluster at %s", address)


def _ray_log_level(level: str) -> int:
    """Ray's own records show from INFO down; at the default level only its errors do."""
    value = logging.getLevelName(level.upper())
    value = value if isinstance(value, int) else logging.WARNING
    return value if value < logging.WARNING else logging.ERROR


def _probe(address: str, timeout_s: float) -> None:
    """Fail at once when nothing listens at the address (Ray would retry for minutes)."""
    if address.startswith(("http://", "https://")):
        raise ConnectError(f"{address} is a dashboard (Jobs API) address; `--address` takes "
                           f"the cluster's GCS address. {_ADDRESS_HINT}", address=address)
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConnectError(f"cannot reach a Ray cluster at {address} ({reason.lower()}); "
                           f"{_ADDRESS_HINT}, and that the cluster is running",
                           address=address) from None


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConnectError(f"not a Ray address: {address!r}; {_ADDRESS_HINT}", address=address)
    return host.strip("[]"), int(port)


def _failure(address: str, chatter: str, exc: BaseException) -> str:
    if any(marker in chatter for marker in _AUTH_REFUSED) or "AuthenticationError" in repr(exc):
        return _auth_message(address)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot connect to the Ray cluster at {address}: {reason}; {_ADDRESS_HINT}"


def _auth_message(address: str) -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return (f"the Ray cluster at {address} refused this client's authentication token; "
                "check RAY_AUTH_TOKEN (or ~/.ray/auth_token) against the cluster's token")
    return (f"the Ray cluster at {address} requires token authentication: {_TOKEN_HINT}")


class _Captured:
    """What the process wrote to its stderr file descriptor while connecting, and where the
    real stderr (the terminal) went meanwhile."""

    def __init__(self, fd: int, terminal_fd: int) -> None:
        self.fd = fd
        self.terminal_fd = terminal_fd

    def read(self) -> str:
        chunks, offset = [], 0
        while chunk := os.pread(self.fd, 1 << 16, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks).decode(errors="replace")


@contextlib.contextmanager
def _captured_stderr() -> Iterator[_Captured]:
    """Send file descriptor 2 (Ray's C++ core logs there) to an unnamed temporary file."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd, path = tempfile.mkstemp(prefix="raysight-connect-", suffix=".log")
    os.unlink(path)  # nothing is left behind, even when the deadline ends the process
    try:
        os.dup2(fd, 2)
        yield _Captured(fd, saved)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


@contextlib.contextmanager
def _deadline(address: str, timeout_s: float, captured: _Captured) -> Iterator[None]:
    """End the process with one line when the cluster refuses the token or stays silent."""
    done = threading.Event()

    def watch() -> None:
        end = time.monotonic() + timeout_s
        while not done.wait(0.2):
            chatter = captured.read()
            if any(marker in chatter for marker in _AUTH_REFUSED):
                _exit(captured.terminal_fd, _auth_message(address))
            if time.monotonic() > end:
                _exit(captured.terminal_fd, f"no Ray cluster answered at {address} within "
                      f"{timeout_s:g} s; {_ADDRESS_HINT} (--connect-timeout sets the limit)")

    watcher = threading.Thread(target=watch, name="raysight-connect-deadline", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _exit(fd: int, message: str) -> None:
    os.write(fd, f"raysight: error: {message}\n".encode())
    os._exit(2)
