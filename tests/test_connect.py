"""How `raysight run` finds Ray: its own local instance by default, whatever else runs on the
machine; a named cluster within a time limit, with one line that says what to do otherwise."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES, REPO_ROOT

RAYSIGHT = [sys.executable, "-m", "raysight"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_file(tmp_path: Path, job_id: str) -> Path:
    path = tmp_path / f"{job_id}.yaml"
    path.write_text(yaml.safe_dump({
        "job_id": job_id,
        "source": {"type": "file", "path": str(EXAMPLES / "data" / "sales.csv")},
        "analysis": {"type": "descriptive", "columns": ["amount"]},
    }))
    return path


def raysight(*argv: str, env: dict[str, str] | None = None, timeout: float = 180,
             cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE",
                                                             "RAY_AUTH_TOKEN")}
    return subprocess.run([*RAYSIGHT, *argv], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("raysight: error:")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def node_ids_of(run_dir: Path) -> set[str]:
    result = json.loads((run_dir / "result.json").read_text())
    assert result["state"] == "COMPLETED", result["errors"]
    return {r["node_id"] for r in result["trace"]["records"] if r.get("node_id")}


@pytest.fixture(scope="module")
def short_tmp():
    """A short folder: Ray's socket paths under pytest's tmp_path exceed the 107-byte limit."""
    with tempfile.TemporaryDirectory(prefix="rs-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def head(short_tmp):
    """A `ray start --head` cluster of this module's own (own ports, temp dir and token),
    whose current-cluster file lies in ``<short_tmp>/live/ray``; stopped through its own
    process group, which leaves every other Ray instance on the machine alone."""
    port, dashboard = free_port(), free_port()
    token = secrets.token_hex(32)
    home = short_tmp / "head-home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
           "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
         f"--port={port}", f"--temp-dir={short_tmp / 'live' / 'ray'}", "--num-cpus=1",
         "--include-dashboard=true", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={free_port()}",
         f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--ray-client-server-port={free_port()}",
         f"--min-worker-port={20000 + port % 1000 * 20}",
         f"--max-worker-port={20000 + port % 1000 * 20 + 19}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address_file = short_tmp / "live" / "ray" / "ray_current_cluster"
    deadline = time.monotonic() + 90
    while not address_file.exists():
        assert proc.poll() is None, "ray start --head ended"
        assert time.monotonic() < deadline, "ray start --head did not come up"
        time.sleep(0.3)
    yield {"address": f"127.0.0.1:{port}", "token": token, "tmpdir": str(short_tmp / "live"),
           "jobs_api": f"http://127.0.0.1:{dashboard}"}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    time.sleep(1)
    with contextlib.suppress(ProcessLookupError):  # ray start's children share its group
        os.killpg(proc.pid, signal.SIGKILL)


def head_node_ids(head) -> set[str]:
    script = "import json, ray; ray.init(address={!r}); " \
             "print(json.dumps([n['NodeID'] for n in ray.nodes()]))".format(head["address"])
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head["token"]}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_a_plain_run_starts_its_own_ray_next_to_a_live_ray_start_cluster(head, tmp_path):
    # RAY_TMPDIR makes the live head's current-cluster file the one Ray would follow
    proc = raysight("run", str(spec_file(tmp_path, "beside-live")), "--run-dir",
                    str(tmp_path / "runs"), "--quiet", env={"RAY_TMPDIR": head["tmpdir"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ours = node_ids_of(tmp_path / "runs" / "beside-live")
    assert ours and not ours & head_node_ids(head)


def test_a_plain_run_ignores_a_stale_current_cluster_file(short_tmp, tmp_path):
    stale = short_tmp / "stale" / "ray"
    stale.mkdir(parents=True)
    (stale / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    proc = raysight("run", str(spec_file(tmp_path, "beside-stale")), "--run-dir",
                    str(tmp_path / "runs"), "--quiet",
                    env={"RAY_TMPDIR": str(short_tmp / "stale")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert node_ids_of(tmp_path / "runs" / "beside-stale")
    # Ray's start-up chatter stays off the terminal at the default log level
    assert "Token authentication" not in proc.stderr
    assert proc.stderr.strip() == ""


def test_a_closed_port_fails_at_once_with_one_line(tmp_path):
    started = time.monotonic()
    proc = raysight("run", str(spec_file(tmp_path, "closed")), "--address",
                    f"127.0.0.1:{free_port()}", "--run-dir", str(tmp_path / "runs"))
    one_line_error(proc, "cannot reach a Ray cluster", "check the address")
    assert time.monotonic() - started < 30  # the connect limit is 30 s; refused is at once
    assert not (tmp_path / "runs").exists()


def test_a_listener_that_never_answers_fails_at_the_connect_timeout(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: [accepted.append(server.accept()[0]) for _ in range(8)],
                     daemon=True).start()
    try:
        started = time.monotonic()
        proc = raysight("run", str(spec_file(tmp_path, "silent")), "--address",
                        f"127.0.0.1:{server.getsockname()[1]}", "--connect-timeout", "3",
                        "--run-dir", str(tmp_path / "runs"))
        elapsed = time.monotonic() - started
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    one_line_error(proc, "no Ray cluster answered", "within 3 s", "--connect-timeout")
    assert elapsed < 60


def test_a_dashboard_url_is_not_a_cluster_address(tmp_path):
    proc = raysight("run", str(spec_file(tmp_path, "dash")), "--address",
                    "http://127.0.0.1:8265")
    one_line_error(proc, "dashboard", "GCS address")


def test_a_token_auth_head_without_the_token_names_ray_auth_mode(head, tmp_path):
    home = tmp_path / "home"  # no ~/.ray/auth_token
    home.mkdir()
    proc = raysight("run", str(spec_file(tmp_path, "no-token")), "--address", head["address"],
                    "--run-dir", str(tmp_path / "runs"), env={"HOME": str(home)})
    one_line_error(proc, "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN")


def test_a_wrong_token_is_named_as_refused(head, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = raysight("run", str(spec_file(tmp_path, "bad-token")), "--address", head["address"],
                    env={"HOME": str(home), "RAY_AUTH_MODE": "token",
                         "RAY_AUTH_TOKEN": "0" * 64})
    one_line_error(proc, "refused", "RAY_AUTH_TOKEN")


def test_with_the_token_the_job_runs_on_the_named_cluster(head, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc = raysight("run", str(spec_file(tmp_path, "on-head")), "--address", head["address"],
                    "--run-dir", str(tmp_path / "runs"), "--quiet",
                    env={"HOME": str(home), "RAY_AUTH_MODE": "token",
                         "RAY_AUTH_TOKEN": head["token"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert node_ids_of(tmp_path / "runs" / "on-head") <= head_node_ids(head)


JOBS_API_STOP = """
import sys, time
from pathlib import Path
from ray.job_submission import JobStatus, JobSubmissionClient

address, entrypoint, events = sys.argv[1], sys.argv[2], Path(sys.argv[3])
client = JobSubmissionClient(address)
submission = client.submit_job(entrypoint=entrypoint)
deadline = time.monotonic() + 120
while not (events.exists() and '"step": "analysis/analyze"' in events.read_text()):
    status = client.get_job_status(submission)
    if status in (JobStatus.FAILED, JobStatus.SUCCEEDED) or time.monotonic() > deadline:
        sys.exit(f"the job never reached analyze ({status}): {client.get_job_logs(submission)}")
    time.sleep(0.3)
client.stop_job(submission)
while client.get_job_status(submission) not in (JobStatus.STOPPED, JobStatus.FAILED):
    time.sleep(0.3)
print(client.get_job_status(submission))
"""


def test_a_stop_through_the_jobs_api_cancels_the_job_and_records_it(head, tmp_path):
    spec = tmp_path / "slow.yaml"
    spec.write_text(yaml.safe_dump({
        "job_id": "jobs-api-stop",
        "source": {"type": "file", "path": str(EXAMPLES / "data" / "sales.csv")},
        "analysis": {"type": "descriptive"},
        "execution": {"faults": [{"step": "analyze", "error": "delay", "delay_s": 120}]}}))
    runs = tmp_path / "runs"
    events = runs / "jobs-api-stop" / "events.jsonl"
    # the entrypoint Ray's documentation shows; the driver joins the cluster by RAY_ADDRESS
    entrypoint = f"{sys.executable} -m raysight run {spec} --run-dir {runs} --quiet"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", JOBS_API_STOP, head["jobs_api"], entrypoint,
                           str(events)], env={**env, "RAY_AUTH_MODE": "token",
                                              "RAY_AUTH_TOKEN": head["token"]},
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("STOPPED")
    result = json.loads((runs / "jobs-api-stop" / "result.json").read_text())
    assert result["state"] == "CANCELED"
    cancelled = [json.loads(line) for line in events.read_text().splitlines()
                 if '"job_cancelled"' in line]
    assert [e["data"]["signal"] for e in cancelled] == ["SIGTERM"]


def test_python_dash_m_raysight_is_the_command_line():
    proc = subprocess.run([*RAYSIGHT, "--help"], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0 and "usage: raysight" in proc.stdout
