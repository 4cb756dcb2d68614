"""`raysight submit|status|logs|cancel|list` against a real head node with token
authentication: a spec with a relative data path runs on the cluster, its run directory
outlives Ray's package folder, the same spec runs twice, a long job is cancelled."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES
from head_node import clean_env as _clean_env
from head_node import free_port

pytestmark = pytest.mark.slow

VENV_BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def head(cluster_head):
    """The session's head node (tests/head_node.py), clients run with its ``client`` env."""
    return {**cluster_head, "client": cluster_head["env"]}


def raysight(head, *argv: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raysight", *argv], cwd=cwd,
                          env={**head["client"], **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def start(head, *argv: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "raysight", *argv], cwd=cwd,
                            env=head["client"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def project(root: Path, job_id: str, **extra) -> Path:
    """A project folder: ``spec.yaml`` reading ``data/sales.csv`` by its relative path."""
    (root / "data").mkdir(parents=True)
    shutil.copy(EXAMPLES / "data" / "sales.csv", root / "data" / "sales.csv")
    (root / "spec.yaml").write_text(yaml.safe_dump({
        "job_id": job_id, "user_id": "analyst", "priority": 70,
        "source": {"type": "file", "path": "data/sales.csv"},
        "analysis": {"type": "descriptive", "columns": ["amount"]}, **extra}))
    return root


def submitted_id(stdout: str) -> str:
    match = re.search(r"^submitted (\S+)$", stdout, re.M)
    assert match, stdout
    return match.group(1)


def run_dir(head, job_id: str) -> Path:
    return head["home"] / "raysight-runs" / job_id


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raysight: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def wait_until(predicate, timeout_s: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def waited(head, tmp_path_factory):
    """One `raysight submit --wait` of a spec with a relative data path."""
    root = project(tmp_path_factory.mktemp("waited"), "sales-report")
    proc = raysight(head, "submit", "spec.yaml", "--address", head["url"], "--wait", cwd=root)
    return {"proc": proc, "root": root,
            "job_id": submitted_id(proc.stdout) if proc.returncode == 0 else None}


def test_submit_wait_follows_the_logs_and_exits_with_the_jobs_code(waited):
    proc = waited["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"^status\s+SUCCEEDED$", proc.stdout, re.M), proc.stdout
    assert "raysight: run directory" in proc.stdout  # the driver's own line, from its logs


def test_a_submitted_run_writes_its_run_dir_outside_rays_package_folder(head, waited):
    result = json.loads((run_dir(head, waited["job_id"]) / "result.json").read_text())
    assert result["state"] == "COMPLETED", result["errors"]
    assert result["data_stats"]  # the relative data path was found in the working dir
    packages = list(head["temp_dir"].rglob("_ray_pkg_*"))
    assert packages  # the working dir did travel as a package
    assert not [p for pkg in packages for p in pkg.rglob("result.json")]


def test_a_fixed_job_id_gets_a_suffix_of_its_submission(waited):
    assert re.fullmatch(r"sales-report-[0-9a-f]{8}", waited["job_id"])


def test_status_shows_the_jobs_raysight_metadata(head, waited):
    proc = raysight(head, "status", waited["job_id"], "--address", head["url"],
                    cwd=waited["root"])
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^status\s+SUCCEEDED$", proc.stdout, re.M)
    assert "user      analyst   priority 70" in proc.stdout


def jobs_api_script(head, script: str, *args: str) -> str:
    """Run ``script`` with the client's environment in a process of its own (Ray reads the
    token settings once per process) and return its stdout."""
    proc = subprocess.run([sys.executable, "-c", script, head["url"], *args],
                          env=head["client"], capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


METADATA = """
import json, sys
from ray.job_submission import JobSubmissionClient
print(json.dumps(JobSubmissionClient(sys.argv[1]).get_job_info(sys.argv[2]).metadata))
"""


def test_the_dashboard_sees_the_raysight_metadata_through_the_jobs_api(head, waited):
    metadata = json.loads(jobs_api_script(head, METADATA, waited["job_id"]).splitlines()[-1])
    assert {k: metadata[k] for k in ("raysight_job_id", "user", "priority")} == {
        "raysight_job_id": waited["job_id"], "user": "analyst", "priority": "70"}


def test_list_shows_raysight_jobs(head, waited):
    proc = raysight(head, "list", "--address", head["url"], cwd=waited["root"])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith(waited["job_id"]))
    assert row.split()[1:4] == ["SUCCEEDED", "analyst", "70"]


def test_the_same_spec_submitted_twice_runs_twice(head, tmp_path):
    root = project(tmp_path / "twice", "twice")
    ids = []
    for _ in range(2):
        proc = raysight(head, "submit", "spec.yaml", "--address", head["url"], cwd=root)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ids.append(submitted_id(proc.stdout))
    assert ids[0] != ids[1]
    for job_id in ids:
        wait_until(lambda j=job_id: (run_dir(head, j) / "result.json").exists(), what=job_id)
        result = json.loads((run_dir(head, job_id) / "result.json").read_text())
        assert result["state"] == "COMPLETED", result["errors"]


IMPORT_CHECK = """
import sys, time
from ray.job_submission import JobStatus, JobSubmissionClient
from raysight.service.runtime_env import raysight_py_modules

check = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
         "if 'editable' not in repr(f).lower()]; "
         "import raysight.cli, importlib.metadata as m; print('FILE', raysight.cli.__file__); "
         "print('PLUGINS', sorted(e.name for e in m.entry_points(group='raysight.connectors')))")
client = JobSubmissionClient(sys.argv[1])
job = client.submit_job(entrypoint=f'python -c "{check}"',
                        runtime_env={"py_modules": raysight_py_modules()})
deadline = time.monotonic() + 120
while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
    assert time.monotonic() < deadline, "the import check did not end"
    time.sleep(0.5)
print(client.get_job_status(job))
print(client.get_job_logs(job))
"""


def test_the_shipped_raysight_serves_imports_and_plugins_without_the_installed_one(head):
    # the head runs this venv, where raysight is installed (editable): the check drops the
    # editable finder first, so raysight can only come from the runtime env's py_modules
    out = jobs_api_script(head, IMPORT_CHECK)
    assert out.startswith("SUCCEEDED"), out
    path = re.search(r"^FILE (\S+)$", out, re.M).group(1)
    assert "py_modules" in path and not path.startswith(str(Path(__file__).parents[1]))
    assert "'file'" in re.search(r"^PLUGINS (.+)$", out, re.M).group(1)


def test_rays_own_job_submit_runs_a_spec_twice_outside_the_package_folder(head, tmp_path):
    root = project(tmp_path / "raycli", "raycli")
    ids = []
    for n in range(2):
        proc = subprocess.run(
            [os.path.join(VENV_BIN, "ray"), "job", "submit", "--address", head["url"],
             "--working-dir", ".", "--submission-id", f"raysubmit_cli{n}", "--",
             "python", "-m", "raysight", "run", "spec.yaml", "--quiet"],
            cwd=root, env=head["client"], capture_output=True, text=True, timeout=150)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "raysight: run directory" in proc.stdout  # the driver says where it wrote
        ids.append(f"raycli-cli{n}")
    for job_id in ids:
        result = json.loads((run_dir(head, job_id) / "result.json").read_text())
        assert result["state"] == "COMPLETED", result["errors"]
    assert not [p for pkg in head["temp_dir"].rglob("_ray_pkg_*") for p in pkg.rglob("runs")]


def test_a_relative_run_dir_is_refused_before_anything_is_sent(head, tmp_path):
    root = project(tmp_path / "rel", "rel")
    proc = raysight(head, "submit", "spec.yaml", "--address", head["url"], "--run-dir", "runs",
                    cwd=root)
    one_line_error(proc, "--run-dir 'runs' is relative", "absolute")


def test_a_wrong_token_is_one_line_naming_the_token(head, tmp_path):
    proc = raysight(head, "list", "--address", head["url"], cwd=tmp_path,
                    env={"RAY_AUTH_TOKEN": "0" * 64})
    one_line_error(proc, "refused", "RAY_AUTH_TOKEN")


def test_no_token_is_one_line_naming_ray_auth_mode(head, tmp_path):
    env = {k: v for k, v in head["client"].items() if not k.startswith("RAY_AUTH")}
    proc = subprocess.run([sys.executable, "-m", "raysight", "list", "--address", head["url"]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    one_line_error(proc, "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN")


def test_an_unreachable_address_fails_within_seconds(tmp_path):
    root = project(tmp_path / "closed", "closed")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "raysight", "submit", "spec.yaml", "--address",
                           f"http://127.0.0.1:{free_port()}"], cwd=root, env=_clean_env(),
                          capture_output=True, text=True, timeout=60)
    one_line_error(proc, "cannot reach the Jobs API", "http://HOST:8265")
    assert time.monotonic() - started < 20


def test_a_gcs_address_is_not_a_jobs_api_address(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raysight", "status", "x", "--address",
                           "127.0.0.1:6380"], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=60)
    one_line_error(proc, "not a Jobs API address")


@pytest.fixture(scope="module")
def cancelled(head, tmp_path_factory):
    """A long job followed by `submit --wait` and by `logs --follow`, then cancelled."""
    root = project(tmp_path_factory.mktemp("long"), "long", execution={
        "faults": [{"step": "analyze", "error": "delay", "delay_s": 120}]})
    waiter = start(head, "submit", "spec.yaml", "--address", head["url"], "--wait", cwd=root)
    first = waiter.stdout.readline()
    job_id = submitted_id(first)
    events = run_dir(head, job_id) / "events.jsonl"
    wait_until(lambda: events.exists() and '"step": "analysis/analyze"' in events.read_text(),
               what="the long job to reach analyze")
    follower = start(head, "logs", job_id, "--address", head["url"], "--follow", cwd=root)
    time.sleep(2)  # the follower is attached to a running job
    cancel = raysight(head, "cancel", job_id, "--address", head["url"], cwd=root)
    try:
        waited_out, _ = waiter.communicate(timeout=60)
        followed, _ = follower.communicate(timeout=60)
    finally:
        for proc in (waiter, follower):
            if proc.poll() is None:
                proc.kill()
    return {"job_id": job_id, "root": root, "cancel": cancel, "waiter": waiter,
            "waited": first + waited_out, "follower": follower, "followed": followed}


def test_cancel_stops_a_running_job(cancelled):
    assert cancelled["cancel"].returncode == 0, cancelled["cancel"].stderr
    assert cancelled["cancel"].stdout.strip() == f"{cancelled['job_id']} STOPPED"


def test_submit_wait_of_a_cancelled_job_exits_130(cancelled):
    assert cancelled["waiter"].returncode == 130, cancelled["waited"]
    assert re.search(r"^status\s+STOPPED$", cancelled["waited"], re.M)


def test_logs_follow_streams_a_running_job_until_it_ends(cancelled):
    assert cancelled["follower"].returncode == 0
    assert "raysight: run directory" in cancelled["followed"]


def test_status_of_a_cancelled_job_is_stopped(head, cancelled):
    proc = raysight(head, "status", cancelled["job_id"], "--address", head["url"],
                    cwd=cancelled["root"])
    assert re.search(r"^status\s+STOPPED$", proc.stdout, re.M), proc.stdout + proc.stderr


def test_a_cancelled_run_records_it_in_its_run_dir(head, cancelled):
    path = run_dir(head, cancelled["job_id"]) / "result.json"
    wait_until(path.exists, timeout_s=30, what="result.json of the cancelled run")
    assert json.loads(path.read_text())["state"] == "CANCELED"


def test_status_of_an_unknown_job_names_it(head, tmp_path):
    proc = raysight(head, "status", "no-such-job", "--address", head["url"], cwd=tmp_path)
    one_line_error(proc, "no job 'no-such-job'")


def test_a_jobs_api_job_and_a_cli_run_go_through_the_clusters_job_manager(head, tmp_path):
    gcs = head["gcs"]
    runs = tmp_path / "managed-runs"
    proc = raysight(head, "manager", "start", "--address", gcs, "--run-dir", str(runs),
                    "--max-concurrent", "2", "--ship-raysight", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "at most 2 jobs at once" in proc.stdout
    try:
        root = project(tmp_path / "managed", "managed")
        submitted = raysight(head, "submit", "spec.yaml", "--address", head["url"], "--wait",
                             cwd=root)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "queued in the job manager" in submitted.stdout  # the driver's own log
        job_id = submitted_id(submitted.stdout)
        local = raysight(head, "run", "spec.yaml", "--address", gcs, "--quiet", cwd=root)
        assert local.returncode == 0, local.stdout + local.stderr
        assert "queued in the job manager" in local.stderr
        listing = raysight(head, "manager", "list", "--address", gcs, "--json", cwd=root)
        records = {r["job_id"]: r for r in json.loads(listing.stdout)}
        assert len(records) == 2 and job_id in records
        assert {r["state"] for r in records.values()} == {"COMPLETED"}
        for record in records.values():
            result = json.loads(Path(record["job_dir"], "result.json").read_text())
            assert result["state"] == "COMPLETED" and result["user_id"] == "analyst"
        status = raysight(head, "manager", "status", job_id, "--address", gcs, cwd=root)
        assert "state     COMPLETED" in status.stdout and "priority  70" in status.stdout
        unknown = raysight(head, "manager", "status", "job_nobody", "--address", gcs, cwd=root)
        one_line_error(unknown, "job_nobody", "not found")
    finally:
        stopped = raysight(head, "manager", "stop", "--address", gcs, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    direct = raysight(head, "run", "spec.yaml", "--address", gcs, "--quiet", cwd=root)
    assert direct.returncode == 0 and "job manager" not in direct.stderr  # none runs now


def test_the_manager_needs_a_cluster_address(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raysight", "manager", "list"], cwd=tmp_path,
                          env=_clean_env(), capture_output=True, text=True, timeout=60)
    one_line_error(proc, "--address")
