"""Where a Jobs API driver writes and which job id it takes (no cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysight.errors import InputError
from raysight.service.jobs_api import (
    check_durable_run_dir,
    default_run_dir,
    driver_job_id,
    exit_code,
    submission_job_id,
)


def _in_jobs_driver(monkeypatch, **metadata: str) -> None:
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR",
                       json.dumps({"runtime_env": {}, "metadata": metadata}))


def test_the_default_run_dir_is_runs_outside_ray(monkeypatch, tmp_path):
    monkeypatch.delenv("RAYSIGHT_RUN_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_run_dir() == "runs"


def test_the_default_run_dir_in_rays_package_folder_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("RAYSIGHT_RUN_DIR", raising=False)
    package = tmp_path / "_ray_pkg_0123abcd"
    package.mkdir()
    monkeypatch.chdir(package)
    assert default_run_dir() == "~/raysight-runs"


def test_raysight_run_dir_sets_the_default(monkeypatch):
    monkeypatch.setenv("RAYSIGHT_RUN_DIR", "/shared/runs")
    assert default_run_dir() == "/shared/runs"


def test_a_run_dir_inside_rays_package_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="deleted with the Ray session"):
        check_durable_run_dir(str(tmp_path / "_ray_pkg_0123abcd" / "runs"))


def test_raysight_run_in_a_package_folder_refuses_a_relative_run_dir(tmp_path):
    package = tmp_path / "_ray_pkg_0123abcd"
    package.mkdir()
    proc = subprocess.run([sys.executable, "-m", "raysight", "run", "spec.yaml", "--run-dir",
                           "runs"], cwd=package, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "inside Ray's package folder" in proc.stderr
    assert not (package / "runs").exists()


def test_a_fixed_job_id_gets_a_suffix_per_submission():
    first, second = submission_job_id("sales"), submission_job_id("sales")
    assert first != second and first.startswith("sales-") and second.startswith("sales-")


def test_a_uuid_job_id_is_unique_without_a_suffix():
    assert submission_job_id("sales-{uuid}").count("-") == 5  # sales- and the uuid's four


def test_outside_a_jobs_driver_the_job_id_is_the_specs(monkeypatch):
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert driver_job_id("sales") is None


def test_a_raysight_submitted_driver_takes_the_submitted_job_id(monkeypatch):
    _in_jobs_driver(monkeypatch, raysight_job_id="sales-1a2b3c4d",
                    job_submission_id="sales-1a2b3c4d")
    assert driver_job_id("sales") == "sales-1a2b3c4d"


def test_a_ray_job_submit_driver_appends_the_submission_id(monkeypatch):
    _in_jobs_driver(monkeypatch, job_submission_id="raysubmit_4LamXRuQpYdSMg7J")
    assert driver_job_id("sales") == "sales-4LamXRuQpYdSMg7J"


def test_an_explicit_run_dir_keeps_a_fixed_job_id(monkeypatch):
    _in_jobs_driver(monkeypatch, job_submission_id="raysubmit_4LamXRuQpYdSMg7J")
    assert driver_job_id("sales", own_run_dir=False) == "sales"


class _Info:
    def __init__(self, status: str, code: int | None) -> None:
        self.status, self.driver_exit_code = status, code


@pytest.mark.parametrize(("status", "code", "expected"), [
    ("SUCCEEDED", 0, 0), ("FAILED", 2, 2), ("FAILED", None, 1), ("STOPPED", -15, 130),
    ("SUCCEEDED", None, 0)])
def test_submit_wait_exits_with_the_jobs_code(status, code, expected):
    assert exit_code(_Info(status, code)) == expected


def test_a_spec_outside_the_working_dir_is_refused(tmp_path):
    from raysight.service.jobs_api import submit

    (tmp_path / "project").mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text("source: {type: file, path: data.csv}\nanalysis: {type: descriptive}\n")
    with pytest.raises(InputError, match="outside the working directory"):
        submit(object(), str(spec), working_dir=str(tmp_path / "project"))
    assert Path(spec).exists()
