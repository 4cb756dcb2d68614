"""What a run directory says about its job while it runs and after its driver is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from raysight.errors import InputError
from raysight.job.rundir import LOCK_FILE, driver_alive, driver_lock, read_events, run_state


def event(kind, step=None, **data):
    return {"event_type": kind, "job_id": "j", "step": step,
            "timestamp": "2026-12-02T10:00:00+00:00", "data": data}


def write_events(job_dir, *events, torn: str = ""):
    job_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e) + "\n" for e in events) + torn
    (job_dir / "events.jsonl").write_text(text)


def test_a_second_driver_of_the_same_job_is_refused_with_the_first_ones_pid(tmp_path):
    job_dir = tmp_path / "j"
    with driver_lock(job_dir):
        assert driver_alive(job_dir)
        with pytest.raises(InputError, match=f"pid {os.getpid()} on "), driver_lock(job_dir):
            pytest.fail("a second driver got the lock")
    assert not driver_alive(job_dir)
    assert not (job_dir / LOCK_FILE).exists()


def test_the_lock_of_a_killed_process_is_released(tmp_path):
    job_dir = tmp_path / "j"
    code = ("import sys, os; from pathlib import Path\n"
            "from raysight.job.rundir import driver_lock\n"
            f"with driver_lock(Path({str(job_dir)!r})): os._exit(9)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    assert (job_dir / LOCK_FILE).exists() and not driver_alive(job_dir)


def test_a_torn_last_event_line_is_ignored(tmp_path):
    write_events(tmp_path / "j", event("job_started"), torn='{"event_type": "step_sta')
    assert [e["event_type"] for e in read_events(tmp_path / "j")] == ["job_started"]


def test_without_a_driver_or_result_the_run_is_interrupted_in_its_open_step(tmp_path):
    job_dir = tmp_path / "j"
    write_events(job_dir, event("job_started", user_id="u", analysis_type="descriptive"),
                 event("step_started", "load"), event("step_succeeded", "load", rows=5),
                 event("data_loaded", "load", job_id="j", row_count=5),
                 event("step_started", "analyze"))
    state = run_state(job_dir)
    assert state["state"] == "INTERRUPTED"
    assert state["running_steps"] == ["analyze"]
    assert state["data_stats"] == {"row_count": 5}
    assert [(r["step"], r["state"]) for r in state["trace"]["records"]] == [
        ("load", "succeeded"), ("analyze", "running")]


def test_only_the_latest_attempt_of_a_resumed_run_counts(tmp_path):
    job_dir = tmp_path / "j"
    write_events(job_dir, event("job_started"), event("step_started", "analyze"),
                 event("job_resumed"), event("step_restored", "load"),
                 event("step_started", "results"))
    state = run_state(job_dir)
    assert state["resumed"] and state["running_steps"] == ["results"]


def test_a_folder_without_events_or_result_is_no_run(tmp_path):
    (tmp_path / "j").mkdir()
    with pytest.raises(InputError, match="no run of job 'j'"):
        run_state(tmp_path / "j")
