"""Fault tolerance of the engine with real processes: dynamic steps, actor steps, sagas,
checkpoints and resume, a worker killed with SIGKILL, a driver killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import EXAMPLES, REPO_ROOT, state_address

from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import Fault, RunContext
from raysight.engine.events import EventLog, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.retry import Fixed, RetryPolicy
from raysight.engine.workflow import step
from raysight.errors import PermanentError, StepTimeout
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob
from raysight.job.spec import parse_spec

pytestmark = pytest.mark.usefixtures("ray_session")

FAST = RetryPolicy(max_retries=2, backoff=Fixed(0.01))
SALES = EXAMPLES / "data" / "sales.csv"


def run(flow, value=None, **ctx_kwargs):
    events = EventLog()
    ctx = RunContext(ctx_kwargs.pop("job_id", "job_ft"), observers=Observers([events]),
                     **ctx_kwargs)
    out = Executor(default_retry=FAST, poll_s=0.05).run(flow, ctx, *(() if value is None
                                                                      else (value,)))
    return fetch(out), ctx, events


def mark(folder: str, name: str) -> None:
    """Append a line to a file shared by the workers (they run in other processes)."""
    with open(Path(folder) / "log.txt", "a", encoding="utf-8") as f:
        f.write(name + "\n")


def marks(folder: Path) -> list[str]:
    path = folder / "log.txt"
    return path.read_text().split() if path.exists() else []


# -- dynamic workflows ------------------------------------------------------------------------


@step
def add_ten(x):
    return x + 10


@step
def times_three(x):
    return x * 3


@step(mode="dynamic")
def choose_steps(x):
    """Discovers at run time which steps to run: one per digit of the input."""
    return [add_ten.options(name=f"add_ten_{d}") for d in str(x)] + [times_three]


def test_a_dynamic_step_returns_steps_that_run_as_ray_tasks_on_its_input():
    value, ctx, events = run(choose_steps, 42)
    assert value == (52, 52, 126)
    expanded = events.of_type("step_expanded")
    assert expanded[0].data["steps"] == 3
    (child,) = ctx.trace.children  # the expansion runs as a nested workflow
    ran = {r.step for r in child.records if r.state == "succeeded"}
    assert ran == {"add_ten_4", "add_ten_2", "times_three"}


# -- actor steps ------------------------------------------------------------------------------


class Scaler:
    """An actor-mode step: set up once per actor, then called per partition."""

    def __init__(self):
        self.factor = 2
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return x * self.factor, os.getpid()


@step(mode="fanout")
def five_numbers():
    return [1, 2, 3, 4, 5]


def test_actor_steps_map_partitions_over_a_pool_of_actors():
    scale = step(Scaler, name="scale", mode="actor", concurrency=2)
    value, _, _ = run(five_numbers >> scale)
    assert [v for v, _ in value] == [2, 4, 6, 8, 10]
    assert len({pid for _, pid in value}) in (1, 2)  # no more actors than the concurrency


class Sleeper:
    def __call__(self, x):
        time.sleep(60)
        return x


def test_an_actor_step_over_its_timeout_is_cancelled_by_killing_its_actor():
    slow = step(Sleeper, name="sleeper", mode="actor", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(StepTimeout, match="sleeper"):
        run(five_numbers >> slow)
    assert time.monotonic() - started < 30
    # the actor is gone: no live actor of this class is left behind
    from ray.util.state import list_actors

    time.sleep(1.0)
    alive = [a for a in list_actors(address=state_address(), filters=[("state", "=", "ALIVE")],
                                    raise_on_missing_output=False)
             if a.class_name == "StepActor"]
    assert alive == []


# -- sagas ------------------------------------------------------------------------------------


def make_saga_step(name: str, folder: str, fail: bool = False):
    def body(x):
        if fail:
            raise PermanentError(f"{name} refused")
        mark(folder, f"do:{name}")
        return x + [name]

    def undo(output):
        mark(folder, f"undo:{name}:{len(output)}")

    return step(body, name=name).with_compensation(undo)


def test_on_failure_completed_steps_are_compensated_in_reverse_order(tmp_path):
    folder = str(tmp_path)
    flow = (make_saga_step("reserve", folder) >> make_saga_step("charge", folder)
            >> make_saga_step("ship", folder, fail=True))
    with pytest.raises(PermanentError, match="ship refused"):
        _, _, events = run(flow, [])
    assert marks(tmp_path) == ["do:reserve", "do:charge", "undo:charge:2", "undo:reserve:1"]


def test_compensation_events_name_each_step():
    events = EventLog()
    ctx = RunContext("job_saga_events", observers=Observers([events]))
    flow = (step(lambda x: x, name="a").with_compensation(lambda out: None)
            >> step(lambda x: 1 / 0, name="b"))
    with pytest.raises(PermanentError):
        Executor(default_retry=FAST).run(flow, ctx, 1)
    assert [(e.event_type, e.step) for e in events.events
            if e.event_type.startswith("compensation")] == [
        ("compensation_started", "a"), ("compensation_succeeded", "a")]


# -- checkpoints and resume -------------------------------------------------------------------


def counted(name: str, folder: str):
    def body(x):
        mark(folder, name)
        return pa.table({"x": [*(x.column("x").to_pylist() if x is not None else []), name]})

    return step(body, name=name)


def test_a_rerun_with_the_same_checkpoints_skips_completed_steps(tmp_path):
    folder = str(tmp_path)
    store_url = str(tmp_path / "ckpt")
    flow = counted("s1", folder) >> counted("s2", folder) >> counted("s3", folder)
    with pytest.raises(PermanentError):
        run(flow, job_id="job_resume", checkpoints=CheckpointStore(store_url),
            faults=(Fault("s3", "permanent"),))
    assert marks(tmp_path) == ["s1", "s2"]
    value, ctx, events = run(flow, job_id="job_resume", checkpoints=CheckpointStore(store_url))
    assert value.column("x").to_pylist() == ["s1", "s2", "s3"]
    assert marks(tmp_path) == ["s1", "s2", "s3"]  # s1 and s2 were not run again
    assert [e.step for e in events.of_type("step_restored")] == ["s1", "s2"]
    manifest = CheckpointStore(store_url).manifest()
    assert sorted(e["step"] for e in manifest["steps"].values()) == ["s1", "s2", "s3"]


def test_checkpoint_files_are_written_whole(tmp_path):
    store = CheckpointStore(str(tmp_path))
    table = pa.table({"a": [1, 2, None], "b": ["x", "東京", None]})
    entry = store.write("001-load", 3, table)
    assert entry["path"].endswith("part-00003.arrow")
    assert store.read(entry).equals(table)
    assert not [p for p in (tmp_path / "001-load").iterdir() if p.name.endswith(".tmp")]


def test_a_torn_last_manifest_line_means_that_step_is_not_done(tmp_path):
    store = CheckpointStore(str(tmp_path))
    entry = store.write("000-a", 0, pa.table({"a": [1]}))
    store.commit("000-a", "a", [entry], [{"rows": 1}])
    with open(tmp_path / "manifest.jsonl", "a") as f:
        f.write('{"key": "001-b", "step": "b", "par')  # the driver died mid-append
    fresh = CheckpointStore(str(tmp_path))
    assert fresh.completed("000-a") is not None
    assert fresh.completed("001-b") is None
    assert fresh.reports(fresh.completed("000-a")) == [{"rows": 1}]


def test_checkpoints_of_another_spec_version_are_refused(tmp_path):
    CheckpointStore(str(tmp_path), spec_version=1).commit("001-a", "a", [], [])
    from raysight.errors import InconsistentState

    with pytest.raises(InconsistentState, match="spec version 1"):
        CheckpointStore(str(tmp_path), spec_version=2).manifest()


# -- killed processes -------------------------------------------------------------------------


def sales_spec(**changes):
    spec = {
        "source": {"type": "file", "path": str(EXAMPLES / "data" / "sales_parts"),
                   "format": "csv"},
        "preprocessing": [{"op": "filter_rows", "condition": "amount > 0"}],
        "analysis": {"type": "aggregation", "group_by": ["region"], "metrics": [
            {"function": "count", "alias": "n"},
            {"column": "amount", "function": "sum", "alias": "total"}]},
        "exports": [{"format": "parquet", "path": "result.parquet"}],
        "execution": {"retry": {"initial_s": 0.01, "jitter": 0.0}},
    }
    spec.update(changes)
    return spec


def test_a_worker_killed_with_sigkill_does_not_stop_the_job(tmp_path):
    from ray.util.state import list_tasks

    baseline = AnalysisJob(parse_spec(sales_spec(job_id="kill-base")), run_dir=tmp_path).run()
    spec = parse_spec(sales_spec(job_id="kill-worker", execution={
        "retry": {"initial_s": 0.01}, "faults": [
            {"step": "analyze.combine", "error": "delay", "delay_s": 4.0}]}))
    killed: list[int] = []

    def kill_the_running_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for task in list_tasks(address=state_address(),
                                   filters=[("name", "=", "kill-worker/analysis/analyze.combine")],
                                   detail=True, raise_on_missing_output=False):
                if task.state == "RUNNING" and task.worker_pid:
                    os.kill(task.worker_pid, signal.SIGKILL)
                    killed.append(task.worker_pid)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_running_worker)
    killer.start()
    result = AnalysisJob(spec, run_dir=tmp_path).run()
    killer.join()
    assert killed, "the analyze.combine task was never seen running"
    assert result.state == "COMPLETED", result.errors
    ours = pq.read_table(Path(result.run_dir) / "result.parquet")
    assert ours.equals(pq.read_table(Path(baseline.run_dir) / "result.parquet"))


def events_in(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


DRIVER = [sys.executable, "-m", "raysight"]
DRIVER_ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def start_slow_driver(runs: Path, spec_dir: Path, job_id: str) -> subprocess.Popen:
    """A `raysight run` in its own process whose analyze step sleeps for two minutes;
    returns once that step has started."""
    spec = spec_dir / f"{job_id}.yaml"
    spec.write_text(yaml.safe_dump(sales_spec(job_id=job_id, execution={
        "retry": {"initial_s": 0.01}, "keep_checkpoints": True,
        "faults": [{"step": "analyze", "error": "delay", "delay_s": 120}]})))
    driver = subprocess.Popen([*DRIVER, "run", str(spec), "--run-dir", str(runs), "--quiet"],
                              cwd=REPO_ROOT, env=DRIVER_ENV, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = [e for e in events_in(runs / job_id) if e["event_type"] == "step_started"]
        if any(e["step"] == "analysis/analyze" for e in started):
            return driver
        assert driver.poll() is None, "the driver ended before it could be stopped"
        time.sleep(0.2)
    driver.kill()
    pytest.fail("the job never reached its analyze step")


def inspect_output(runs: Path, job_id: str, *flags: str) -> tuple[int, str]:
    proc = subprocess.run([*DRIVER, "inspect", job_id, "--run-dir", str(runs), *flags],
                          cwd=REPO_ROOT,
                          env=DRIVER_ENV, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def killed_driver(tmp_path_factory):
    """A job whose driver was killed with SIGKILL during analyze, then resumed; with what
    inspect said while it ran and after the kill."""
    tmp_path = tmp_path_factory.mktemp("killed")
    runs = tmp_path / "runs"
    expected = tmp_path / "expected.yaml"
    expected.write_text(yaml.safe_dump(sales_spec(job_id="expected")))
    assert subprocess.run([*DRIVER, "run", str(expected), "--run-dir", str(runs), "--quiet"],
                          cwd=REPO_ROOT, env=DRIVER_ENV, timeout=300).returncode == 0
    driver = start_slow_driver(runs, tmp_path, "killed")
    while_running = inspect_output(runs, "killed")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    run_dir = runs / "killed"
    had_result = (run_dir / "result.json").exists()
    after_kill = inspect_output(runs, "killed", "--views")
    views = sorted(p.name for p in run_dir.iterdir() if p.name in ("dag.mmd", "timeline.html"))
    before = len(events_in(run_dir))
    resumed = subprocess.run([*DRIVER, "resume", "killed", "--run-dir", str(runs), "--quiet",
                              "--set", "execution.faults=[]"], cwd=REPO_ROOT, env=DRIVER_ENV,
                             timeout=300, capture_output=True, text=True)
    return {"runs": runs, "run_dir": run_dir, "had_result": had_result, "before": before,
            "resumed": resumed, "while_running": while_running, "after_kill": after_kill,
            "views": views}


def test_a_driver_killed_with_sigkill_is_finished_by_resume(killed_driver):
    runs, run_dir, resumed = killed_driver["runs"], killed_driver["run_dir"], \
        killed_driver["resumed"]
    assert not killed_driver["had_result"]
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = events_in(run_dir)[killed_driver["before"]:]
    restored = [e["step"] for e in after if e["event_type"] == "step_restored"]
    started = [e["step"] for e in after if e["event_type"] == "step_started"]
    assert {"source/load.plan", "source/load", "data/preprocess"} <= set(restored)
    assert "source/load" not in started and "data/preprocess" not in started
    assert "analysis/analyze" in started
    assert json.loads((run_dir / "result.json").read_text())["state"] == "COMPLETED"
    assert pq.read_table(run_dir / "result.parquet").equals(
        pq.read_table(runs / "expected" / "result.parquet"))
    manifest = CheckpointStore(str(run_dir / "checkpoints")).manifest()
    assert {"source/load", "data/preprocess", "analysis/analyze",
            "analysis/analyze.combine"} <= {
        e["step"] for e in manifest["steps"].values()}


def test_inspect_of_a_running_job_says_running_and_names_its_step(killed_driver):
    code, out = killed_driver["while_running"]
    assert code == 0, out
    assert "Job killed: RUNNING" in out
    assert "running: analysis/analyze" in out
    assert "Traceback" not in out


def test_inspect_of_a_killed_driver_says_interrupted_what_is_done_and_where_it_stopped(
        killed_driver):
    code, out = killed_driver["after_kill"]
    assert code == 0, out
    assert "Job killed: INTERRUPTED" in out
    assert "stopped in: analysis/analyze" in out
    steps = {line.split()[0]: line.split()[1] for line in out.splitlines()
             if line.startswith("  ") and len(line.split()) > 1
             and line.split()[1] in ("succeeded", "running")}
    assert steps["source/load"] == "succeeded" and steps["data/preprocess"] == "succeeded"
    assert steps["analysis/analyze"] == "running"
    checkpointed = next(line for line in out.splitlines() if "checkpointed:" in line)
    assert "source/load" in checkpointed and "data/preprocess" in checkpointed
    assert "raysight resume killed" in out
    assert killed_driver["views"] == ["dag.mmd", "timeline.html"]


def test_restored_steps_mark_the_domain_events_they_emit_again(killed_driver):
    events = events_in(killed_driver["run_dir"])
    before, after = events[:killed_driver["before"]], events[killed_driver["before"]:]
    assert [e["data"].get("restored") for e in before if e["event_type"] == "data_loaded"] \
        == [None]
    assert [e["data"].get("restored") for e in after if e["event_type"] == "data_loaded"] \
        == [True]
    fresh = [e for e in after if e["event_type"] == "analysis_completed"]
    assert fresh and all("restored" not in e["data"] for e in fresh)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_cancels_the_job_records_it_and_resume_finishes_it(tmp_path, signum):
    runs = tmp_path / "runs"
    job_id = f"stopped-{signum.name.lower()}"
    driver = start_slow_driver(runs, tmp_path, job_id)
    os.kill(driver.pid, signum)  # Ctrl-C reaches the driver; a Jobs API stop sends SIGTERM
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, out + err
    assert "Traceback" not in err
    run_dir = runs / job_id
    result = json.loads((run_dir / "result.json").read_text())
    assert result["state"] == "CANCELED"
    (error,) = result["errors"]
    assert error["category"] == "cancelled" and error["step"] == "analysis/analyze"
    (cancelled,) = [e for e in events_in(run_dir) if e["event_type"] == "job_cancelled"]
    assert cancelled["data"]["signal"] == signum.name
    assert not (run_dir / "result.parquet").exists()
    resumed = subprocess.run([*DRIVER, "resume", job_id, "--run-dir", str(runs), "--quiet",
                              "--set", "execution.faults=[]"], cwd=REPO_ROOT, env=DRIVER_ENV,
                             timeout=300, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((run_dir / "result.json").read_text())["state"] == "COMPLETED"


def test_resume_of_a_completed_job_is_refused(tmp_path):
    job = AnalysisJob(parse_spec(sales_spec(job_id="done-job")), run_dir=tmp_path)
    assert job.run().state == "COMPLETED"
    from raysight.errors import InputError

    with pytest.raises(InputError, match="already completed"):
        AnalysisJob.resume("done-job", tmp_path)


def test_the_seed_v2_job_json_is_migrated():
    spec = parse_spec({"version": 0, "id": "seed-job",
                       "source": {"type": "file", "path": str(SALES)},
                       "analysis": {"type": "descriptive"},
                       "parameters": {"exports": [{"format": "json"}]},
                       "execution_settings": {"timeout": 300, "max_retries": 2}})
    assert spec.job_id == "seed-job" and spec.version == 1
    assert spec.execution.timeout_s == 300 and spec.execution.max_retries == 2
    assert spec.exports[0].format == "json"


def test_a_spec_newer_than_raysight_is_refused():
    from raysight.job.spec import SpecError

    with pytest.raises(SpecError, match="newer than this raysight"):
        parse_graph_spec({"version": 9, "source": {"type": "file", "path": "x.csv"},
                          "analysis": {"type": "descriptive"}})
