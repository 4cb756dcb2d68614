"""Run directories at a URL (``--run-dir s3://...``, on moto's S3 server): the run folder
appears there whole when the job ends, a taken job id is refused, a failed run resumes from
the checkpoints it wrote there, and ``inspect`` reads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from s3_server import s3_endpoint

BUCKET = "runs-bucket"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    import fsspec

    env = {**os.environ, "AWS_ENDPOINT_URL": s3_endpoint(), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "RAYSIGHT_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}
    env.pop("RAY_ADDRESS", None)
    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint(), key="testing", secret="testing")
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return {"env": env, "fs": fs}


def raysight(s3, *argv, cwd):
    return subprocess.run([sys.executable, "-m", "raysight", *argv], cwd=cwd, env=s3["env"],
                          capture_output=True, text=True, timeout=180)


def write_spec(tmp_path, job_id, faults=()):
    (tmp_path / "t.csv").write_text("k,v\na,1\nb,2\nc,3\n")
    spec = {"version": 1, "job_id": job_id, "source": {"type": "file", "path": "t.csv"},
            "analysis": {"type": "descriptive"},
            "exports": [{"format": "csv", "path": "out/stats.csv"}],
            "execution": {"faults": list(faults), "keep_checkpoints": True}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))


def test_a_run_lands_whole_at_the_url_and_its_job_id_is_then_taken(s3, tmp_path):
    write_spec(tmp_path, "at-url")
    url = f"s3://{BUCKET}/runs"
    proc = raysight(s3, "run", "spec.yaml", "--run-dir", url, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run dir   {url}/at-url" in proc.stdout
    fs = s3["fs"]
    names = {p.split("/at-url/", 1)[1] for p in fs.find(f"{BUCKET}/runs/at-url")}
    assert {"spec.json", "events.jsonl", "audit.jsonl", "result.json",
            "out/stats.csv"} <= names
    assert not any(n.startswith((".staging", ".driver.lock")) for n in names)
    result = json.loads(fs.cat(f"{BUCKET}/runs/at-url/result.json"))
    assert result["state"] == "COMPLETED" and result["run_dir"] == f"{url}/at-url"
    stats = fs.cat(f"{BUCKET}/runs/at-url/out/stats.csv").decode()
    assert stats.splitlines()[0].startswith("column")
    again = raysight(s3, "run", "spec.yaml", "--run-dir", url, "--quiet", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_failed_run_at_a_url_resumes_from_its_checkpoints_there(s3, tmp_path):
    write_spec(tmp_path, "resumed", faults=[{"step": "analysis/analyze",
                                              "error": "permanent"}])
    url = f"s3://{BUCKET}/runs"
    failed = raysight(s3, "run", "spec.yaml", "--run-dir", url, "--quiet", cwd=tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    fs = s3["fs"]
    assert json.loads(fs.cat(f"{BUCKET}/runs/resumed/result.json"))["state"] == "FAILED"
    assert fs.find(f"{BUCKET}/runs/resumed/checkpoints")  # the load's output is there
    resumed = raysight(s3, "resume", "resumed", "--run-dir", url, "--quiet",
                       "--set", "execution.faults=[]", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = json.loads(fs.cat(f"{BUCKET}/runs/resumed/result.json"))
    assert result["state"] == "COMPLETED"
    events = [json.loads(line) for line in
              fs.cat(f"{BUCKET}/runs/resumed/events.jsonl").decode().splitlines()]
    kinds = [e["event_type"] for e in events]
    assert kinds.count("job_started") == 1 and kinds.count("job_resumed") == 1
    assert any(e["event_type"] == "step_restored" and e["step"] == "source/load"
               for e in events)
    shown = raysight(s3, "inspect", "resumed", "--run-dir", url, cwd=tmp_path)
    assert shown.returncode == 0 and "COMPLETED" in shown.stdout
    missing = raysight(s3, "inspect", "nobody", "--run-dir", url, cwd=tmp_path)
    assert missing.returncode == 2 and "nobody" in missing.stderr
