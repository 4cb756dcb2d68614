"""Submitting raysight jobs to a Ray cluster through the Jobs API, and following them.

::

    client = jobs_client("http://10.0.0.5:8265")
    submission = submit(client, "spec.yaml")      # returns at once
    follow_logs(client, submission.job_id, sys.stdout)
    exit_code(client.get_job_info(submission.job_id))

The job's raysight id is its Ray submission id, so ``raysight status|logs|cancel`` take either.
Each submission renders the spec's ``job_id`` anew, and a fixed one (no ``{uuid}``) gets a
suffix of its own: the same spec submitted twice runs twice, in two run directories. The
driver runs ``python -m raysight run`` in the uploaded working directory (where the spec's
relative data paths resolve) with raysight itself in ``py_modules``
(:mod:`raysight.service.runtime_env`); its run directory is ``--run-dir`` when given (an
absolute path on storage the cluster shares, or ``~/...`` on the driver's node), else
``$RAYSIGHT_RUN_DIR`` or ``~/raysight-runs`` on the driver's node (:func:`default_run_dir`),
never the working directory, which Ray deletes with the session.

Token authentication is Ray's: with ``RAY_AUTH_MODE=token`` the client sends the token from
``RAY_AUTH_TOKEN`` or Ray's token file (``~/.ray/auth_token``); a refused or missing token and
an address nobody answers at are one-line errors (:class:`~raysight.cluster.ConnectError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import shlex
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raysight.cluster import ConnectError
from raysight.errors import InputError

#: where a run directory goes on the driver's node when nothing else says
DEFAULT_CLUSTER_RUN_DIR = "~/raysight-runs"
RUN_DIR_ENV = "RAYSIGHT_RUN_DIR"
#: Ray's own variables that override the address handed to JobSubmissionClient
_ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_HINT = "the Jobs API address is the dashboard's, http://HOST:8265 as `ray start --head` prints it"
#: set by Ray for a driver its Jobs API starts: the job's runtime env and metadata
_RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: exit status of ``submit --wait`` for a job stopped through the Jobs API (as for Ctrl-C)
EXIT_STOPPED = 130


@dataclass(frozen=True)
class Submission:
    """What ``raysight submit`` sent: the job's id (its submission id too) and where it runs."""

    job_id: str
    entrypoint: str
    run_dir: str
    metadata: dict[str, str]


def default_run_dir() -> str:
    """Where ``raysight run`` puts run folders when ``--run-dir`` is not given:
    ``$RAYSIGHT_RUN_DIR``, else ``~/raysight-runs`` inside a Ray Jobs working directory
    (a ``_ray_pkg_*`` folder, deleted with the Ray session), else ``./runs``."""
    if os.environ.get(RUN_DIR_ENV):
        return os.environ[RUN_DIR_ENV]
    return DEFAULT_CLUSTER_RUN_DIR if in_ray_package_dir(Path.cwd()) else "runs"


def in_ray_package_dir(path: Path) -> bool:
    """True for a path inside the folder Ray unpacks a job's ``working_dir`` into."""
    return any(part.startswith("_ray_pkg_") for part in Path(os.path.abspath(path)).parts)


def check_durable_run_dir(run_dir: str) -> Path:
    """The run root ``run_dir`` names (``~`` expanded); InputError inside Ray's package folder."""
    root = Path(os.path.abspath(os.path.expanduser(run_dir)))
    if in_ray_package_dir(root):
        raise InputError(f"run directory {root} is inside Ray's package folder, which is deleted "
                         f"with the Ray session; pass --run-dir on storage that outlives it (an "
                         f"absolute path) or set {RUN_DIR_ENV} (default {DEFAULT_CLUSTER_RUN_DIR})",
                         path=str(root))
    return root


@contextlib.contextmanager
def _address_only(address: str) -> Iterator[None]:
    """Ray prefers RAY_ADDRESS to the address it is given; the command line's wins here."""
    saved = {name: os.environ.pop(name) for name in _ADDRESS_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def api_address(address: str | None) -> str:
    """The Jobs API URL: ``--address``, else RAY_API_SERVER_ADDRESS, else an http RAY_ADDRESS."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or ""
    if not address and os.environ.get("RAY_ADDRESS", "").startswith(("http://", "https://")):
        address = os.environ["RAY_ADDRESS"]
    if not address:
        raise ConnectError(f"no Jobs API address: pass --address http://HOST:8265 or set "
                           f"RAY_API_SERVER_ADDRESS; {_HINT}")
    if not address.startswith(("http://", "https://")):
        raise ConnectError(f"{address} is not a Jobs API address; {_HINT}", address=address)
    return address.rstrip("/")


def jobs_client(address: str | None, timeout_s: float = 5.0) -> Any:
    """A JobSubmissionClient for the cluster; ConnectError when it cannot be used."""
    url = api_address(address)
    _probe(url, timeout_s)
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    with _address_only(url):
        try:
            return JobSubmissionClient(url)
        except AuthenticationError as err:
            raise ConnectError(_auth_message(url, str(err)), address=url) from None
        except (ConnectionError, RuntimeError) as err:
            raise ConnectError(f"the Jobs API at {url} did not answer: {_first_line(err)}; "
                               f"{_HINT}", address=url) from None


def _probe(url: str, timeout_s: float) -> None:
    """Fail within seconds when nothing listens (requests would wait for the OS)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConnectError(f"cannot reach the Jobs API at {url} ({reason.lower()}); {_HINT}, "
                           "and that the cluster is running", address=url) from None


def _auth_message(url: str, detail: str) -> str:
    if "Authentication failed" in detail or os.environ.get("RAY_AUTH_MODE") == "token":
        return (f"the Ray cluster at {url} refused this client's authentication token; check "
                "RAY_AUTH_TOKEN (or ~/.ray/auth_token) against the cluster's token")
    return (f"the Ray cluster at {url} requires token authentication: set RAY_AUTH_MODE=token "
            "and the cluster's token in RAY_AUTH_TOKEN (or ~/.ray/auth_token)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def submission_job_id(template: str | None) -> str:
    """A job id of this submission's own: the spec's template rendered, with a suffix when
    the template is fixed, so that a spec submitted twice runs twice."""
    from raysight.job.spec import render_job_id

    job_id = render_job_id(template)
    if template is not None and "{uuid}" not in template:
        job_id = f"{job_id}-{uuid.uuid4().hex[:8]}"
    return job_id


def driver_job_id(template: str | None, own_run_dir: bool = True) -> str | None:
    """The job id of a driver the Jobs API started, None elsewhere: the one ``raysight
    submit`` chose (its metadata), else, for ``ray job submit``, the spec's template rendered
    with the Ray submission id appended when the template is fixed (no ``{uuid}``), so that
    a resubmission runs again instead of finding the first run's directory. A fixed job id
    with an explicit ``--run-dir`` (``own_run_dir`` False) is kept: that names one folder."""
    from raysight.job.spec import render_job_id

    try:
        config = json.loads(os.environ.get(_RAY_JOB_CONFIG, ""))
    except json.JSONDecodeError:
        return None
    metadata = config.get("metadata") or {}
    if metadata.get("raysight_job_id"):
        return str(metadata["raysight_job_id"])
    submission = str(metadata.get("job_submission_id") or "")
    job_id = render_job_id(template)
    if not own_run_dir or not submission or (template is None or "{uuid}" in template):
        return job_id
    suffix = re.sub(r"[^A-Za-z0-9._-]", "-", submission.removeprefix("raysubmit_"))
    return f"{job_id}-{suffix}"


def submit(client: Any, spec_path: str, *, working_dir: str = ".", run_dir: str | None = None,
           overrides: tuple[str, ...] = (), connections: str | None = None) -> Submission:
    """Submit the spec as a Jobs API job and return at once (the spec is validated here
    first, so a bad spec never reaches the cluster)."""
    from raysight.job.graph_spec import load_graph_spec
    from raysight.service.runtime_env import raysight_py_modules

    spec = load_graph_spec(spec_path, overrides, connections)
    root = Path(os.path.abspath(working_dir))
    spec_file = Path(os.path.abspath(spec_path))
    if not spec_file.is_relative_to(root):
        raise InputError(f"the spec {spec_path} is outside the working directory {root}, which "
                         "is what travels to the cluster; run from the project folder or pass "
                         "--working-dir", path=spec_path)
    if run_dir is not None and not (os.path.isabs(run_dir) or run_dir.startswith("~")
                                    or "://" in run_dir):
        raise InputError(f"--run-dir {run_dir!r} is relative: on the cluster it would land in "
                         "Ray's package folder, deleted with the session; give an absolute path "
                         "on storage the cluster shares (or ~/... on the driver's node)",
                         field="run_dir")
    job_id = submission_job_id(spec.job_id)
    command = ["python", "-m", "raysight", "run", spec_file.relative_to(root).as_posix(),
               "--set", f"job_id={job_id}", "--quiet", *_overrides(overrides)]
    if run_dir is not None:
        command += ["--run-dir", run_dir]
    entrypoint = " ".join(_quoted(word) for word in command)
    metadata = {"raysight_job_id": job_id, "user": spec.user_id or getpass.getuser(),
                "priority": str(spec.priority), "spec": spec_file.name}
    runtime_env = {"working_dir": str(root), "py_modules": raysight_py_modules()}
    try:
        client.submit_job(entrypoint=entrypoint, submission_id=job_id, runtime_env=runtime_env,
                          metadata=metadata)
    except RuntimeError as err:
        raise ConnectError(f"the Jobs API refused the job: {_first_line(err)}") from None
    shown = (f"{run_dir}/{job_id}" if run_dir else
             f"{DEFAULT_CLUSTER_RUN_DIR}/{job_id} on the driver's node "
             f"(${RUN_DIR_ENV}/{job_id} where the cluster sets {RUN_DIR_ENV})")
    return Submission(job_id, entrypoint, shown, metadata)


def _overrides(overrides: tuple[str, ...]) -> list[str]:
    return [word for item in overrides for word in ("--set", item)]


def _quoted(word: str) -> str:
    # ~ stays unquoted at the start so that the driver's shell expands it on its own node
    if word.startswith("~/"):
        return "~/" + shlex.quote(word[2:])
    return shlex.quote(word)


def job_info(client: Any, job_id: str) -> Any:
    """The Jobs API's record of a job; InputError naming it when there is none."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as err:
        if "404" in str(err) or "does not exist" in str(err):
            raise InputError(f"no job {job_id!r} on this cluster (`raysight list` shows them)",
                             job_id=job_id) from None
        raise ConnectError(f"the Jobs API failed: {_first_line(err)}") from None


def wait_for(client: Any, job_id: str, timeout_s: float = 600.0) -> Any:
    """The job's record once it has ended (SUCCEEDED, FAILED or STOPPED)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = job_info(client, job_id)
        if str(info.status) in TERMINAL or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


def follow_logs(client: Any, job_id: str, out: TextIO) -> None:
    """Write the job's logs to ``out`` as they come, until the job ends."""
    job_info(client, job_id)  # an unknown job is one line, not a websocket error

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())


def exit_code(info: Any) -> int:
    """The status ``submit --wait`` ends with: the driver's own exit code where it has one
    (raysight run's), 130 for a stopped job, 1 for a job that failed before its driver ran."""
    status = str(info.status)
    if status == "STOPPED":
        return EXIT_STOPPED
    if info.driver_exit_code is not None:
        return int(info.driver_exit_code)
    return 0 if status == "SUCCEEDED" else 1


def describe(info: Any) -> list[str]:
    """``raysight status``'s lines for a job."""
    meta = info.metadata or {}
    lines = [f"job       {meta.get('raysight_job_id', info.submission_id)}",
             f"status    {info.status}",
             f"user      {meta.get('user', '-')}   priority {meta.get('priority', '-')}"]
    if info.start_time:
        ended = f" -> {_clock(info.end_time)}" if info.end_time else ""
        lines.append(f"time      {_clock(info.start_time)}{ended}")
    if info.driver_exit_code is not None:
        lines.append(f"exit code {info.driver_exit_code}")
    if info.message:
        lines.append(f"message   {info.message.strip().splitlines()[0]}")
    lines.append(f"command   {info.entrypoint}")
    return lines


def table(jobs: list[Any], everything: bool = False) -> list[str]:
    """``raysight list``'s lines: raysight's jobs (every Jobs API job with ``everything``)."""
    rows = [("JOB", "STATUS", "USER", "PRIORITY", "STARTED")]
    for info in sorted(jobs, key=lambda j: j.start_time or 0):
        meta = info.metadata or {}
        if "raysight_job_id" not in meta and not everything:
            continue
        rows.append((meta.get("raysight_job_id", info.submission_id or info.job_id or "-"),
                     str(info.status), meta.get("user", "-"), meta.get("priority", "-"),
                     _clock(info.start_time) if info.start_time else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _clock(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_ms / 1000))
