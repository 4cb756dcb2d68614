"""Resource routing: the design's size, kind and affinity rules as Ray options, applied only
where the cluster offers what they ask for (rules on ``ray.nodes()``-shaped node dicts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import ray
from conftest import EXAMPLES
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raysight.connectors.files.connector import FileConnector
from raysight.engine.context import RunContext
from raysight.engine.events import EventLog, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.resources import Resources
from raysight.engine.trace import StepRecord
from raysight.engine.workflow import Task
from raysight.errors import InputError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob
from raysight.job.routing import (
    TOKEN,
    Directive,
    JobFacts,
    RoutingPlan,
    affinity_rule,
    data_size_rule,
    data_type_rule,
    job_facts,
    load_history,
    load_nodes,
    record_history,
    remembering,
    route,
)

MiB, GiB = 2**20, 2**30
A, B, C = "aa" * 28, "bb" * 28, "cc" * 28  # node ids: 28 bytes in hex, as Ray has them
SALES = EXAMPLES / "data" / "sales.csv"


def node(node_id: str = A, alive: bool = True, **resources: float) -> dict:
    return {"NodeID": node_id, "Alive": alive,
            "Resources": {"CPU": 4.0, "memory": 8.0 * GiB, **resources}}


def size(mib: float) -> JobFacts:
    return JobFacts(input_bytes=int(mib * MiB))


def asked(plan: RoutingPlan, stage: str) -> Resources:
    return plan.apply(stage, Resources())


# -- the data-size rule (85) -------------------------------------------------------------------


def test_an_input_over_1000_mib_asks_for_high_memory_nodes_in_its_data_steps():
    verdict = data_size_rule(size(1000.5), [node(high_memory=1.0)])
    assert verdict.directive == Directive("data_size", ("load", "preprocess", "analyze"),
                                          {"high_memory": TOKEN})


def test_exactly_1000_mib_asks_for_medium_memory_not_high_memory():
    nodes = [node(A, high_memory=1.0), node(B, medium_memory=1.0)]
    assert data_size_rule(size(1000), nodes).directive.resources == {"medium_memory": TOKEN}


@pytest.mark.parametrize("mib, resource", [(100, None), (100.01, "medium_memory"),
                                           (1000.01, "high_memory")])
def test_the_size_thresholds_are_strictly_greater_than(mib, resource):
    nodes = [node(A, high_memory=1.0), node(B, medium_memory=1.0)]
    directive = data_size_rule(size(mib), nodes).directive
    assert (directive and next(iter(directive.resources))) == resource


def test_an_input_of_unknown_size_asks_for_nothing():
    assert data_size_rule(JobFacts(input_bytes=None), [node(high_memory=1.0)]).directive is None


def test_a_capability_no_node_offers_is_a_no_op_with_a_note():
    verdict = data_size_rule(size(2048), [node(), node(B, medium_memory=1.0)])
    assert verdict.directive is None  # the seed's elif: no fallback to medium_memory
    (note,) = verdict.notes
    assert "input of 2 GiB" in note and "no node of the Ray cluster has high_memory" in note


def test_a_dead_node_offers_nothing():
    verdict = data_size_rule(size(2048), [node(alive=False, high_memory=1.0), node(B)])
    assert verdict.directive is None and verdict.notes


# -- the data-type rule (70) -------------------------------------------------------------------


def test_machine_learning_asks_for_gpu_nodes_in_its_analyze_steps():
    verdict = data_type_rule(JobFacts(kinds=("machine_learning",)), [node(gpu=1.0)])
    assert verdict.directive == Directive("data_type", ("analyze",), {"gpu": TOKEN})


def test_time_series_asks_for_time_series_nodes_or_notes_that_there_are_none():
    facts = JobFacts(kinds=("time_series",))
    assert data_type_rule(facts, [node(time_series=2.0)]).directive.resources == {
        "time_series": TOKEN}
    verdict = data_type_rule(facts, [node()])
    assert verdict.directive is None
    assert verdict.notes == ("a time_series analysis would go to nodes with time_series, but "
                             "no node of the Ray cluster has time_series; Ray places its tasks "
                             "as usual",)


def test_a_custom_kernel_asks_for_custom_resources_only_where_a_node_has_them():
    facts = JobFacts(kinds=("Outlier_Detection",))
    assert data_type_rule(facts, [node(custom_outlier_detection=1.0)]).directive.resources == {
        "custom_outlier_detection": TOKEN}
    assert data_type_rule(facts, [node()]) == data_type_rule(JobFacts(), [node()])  # no note


def test_descriptive_and_aggregation_ask_for_nothing():
    everything = node(gpu=1.0, time_series=1.0, custom_aggregation=1.0,
                      custom_descriptive=1.0)
    verdict = data_type_rule(JobFacts(kinds=("descriptive", "aggregation")), [everything])
    assert verdict.directive is None and not verdict.notes


def test_the_first_kind_a_node_offers_decides():
    verdict = data_type_rule(JobFacts(kinds=("aggregation", "time_series", "machine_learning")),
                             [node(gpu=1.0)])
    assert verdict.directive.resources == {"gpu": TOKEN}
    assert "time_series" in verdict.notes[0]


# -- the affinity rule (60) --------------------------------------------------------------------


def test_affinity_prefers_the_most_recent_live_node_that_ran_the_jobs_loads():
    verdict = affinity_rule(JobFacts(history=(C, B, A)), [node(A), node(B), node(C, alive=False)])
    assert verdict.directive == Directive("affinity", ("load",), scheduling=f"node:{B}")


def test_affinity_without_a_live_node_of_the_history_asks_for_nothing():
    assert affinity_rule(JobFacts(history=(C,)), [node(A)]).directive is None
    assert affinity_rule(JobFacts(), [node(A)]).directive is None


# -- the router --------------------------------------------------------------------------------


def test_a_mandatory_rule_that_applies_stops_the_evaluation():
    facts = JobFacts(input_bytes=2 * GiB, kinds=("time_series",), history=(A,))
    plan = route(facts, [node(A, high_memory=1.0, time_series=1.0)])
    assert [d.rule for d in plan.directives] == ["data_size"]
    assert asked(plan, "analyze") == Resources(resources={"high_memory": TOKEN})
    assert asked(plan, "load").scheduling is None


def test_a_mandatory_rule_that_cannot_apply_lets_the_lower_rules_decide():
    facts = JobFacts(input_bytes=2 * GiB, kinds=("time_series",), history=(A,))
    plan = route(facts, [node(A, time_series=1.0)])
    assert [d.rule for d in plan.directives] == ["data_type", "affinity"]
    assert "high_memory" in plan.notes[0]
    assert asked(plan, "analyze") == Resources(resources={"time_series": TOKEN})
    assert asked(plan, "load") == Resources(scheduling=f"node:{A}")


def test_without_a_rule_that_applies_ray_places_the_tasks_by_default_or_spreads_them():
    assert route(JobFacts(input_bytes=MiB), [node()]) == RoutingPlan()
    spread = route(JobFacts(input_bytes=MiB), [node()], spread=True)
    assert [asked(spread, s).scheduling for s in ("load", "preprocess", "analyze", "results")] \
        == ["SPREAD", "SPREAD", "SPREAD", None]


def test_a_rule_that_applies_is_not_spread():
    plan = route(JobFacts(history=(A,)), [node(A)], spread=True)
    assert asked(plan, "load").scheduling == f"node:{A}"
    assert asked(plan, "analyze").scheduling is None


def test_without_nodes_nothing_is_asked_for():
    assert route(JobFacts(input_bytes=2 * GiB, history=(A,)), []).directives == ()


def test_a_stage_whose_own_request_no_capable_node_can_meet_is_not_routed():
    nodes = [node(A, high_memory=1.0), node(B, CPU=16.0)]  # the 16 CPUs have no high_memory
    plan = route(size(2048), nodes, base={"analyze": Resources(num_cpus=8)})
    assert plan.directives[0].stages == ("load", "preprocess")
    assert "together with what the analyze steps ask for" in plan.notes[0]
    assert asked(plan, "analyze").resources == {}


def test_what_a_step_asks_for_itself_wins():
    plan = RoutingPlan((Directive("data_size", ("analyze",), {"high_memory": TOKEN}),))
    own = Resources(num_cpus=2, resources={"high_memory": 1.0}, scheduling="SPREAD")
    assert plan.apply("analyze", own) == own


def test_the_plan_is_json_ready_for_the_job_routed_event():
    plan = route(size(2048), [node()])
    assert json.loads(json.dumps(plan.to_dict())) == {"directives": [],
                                                      "notes": list(plan.notes),
                                                      "remember": False}


def test_where_a_job_loaded_is_remembered_only_on_a_cluster_of_several_nodes():
    assert not route(JobFacts(), [node(A)]).remember
    assert not route(JobFacts(), [node(A), node(B, alive=False)]).remember
    assert route(JobFacts(), [node(A), node(B)]).remember


# -- Ray options -------------------------------------------------------------------------------


def test_a_routed_resources_becomes_a_token_request_and_a_soft_spilling_node_affinity():
    opts = Resources().routed({"high_memory": TOKEN}, f"node:{A}").ray_options()
    assert opts["resources"] == {"high_memory": TOKEN}
    strategy = opts["scheduling_strategy"]
    assert isinstance(strategy, NodeAffinitySchedulingStrategy)
    assert (strategy.node_id, strategy.soft, strategy._spill_on_unavailable) == (A, True, True)
    assert Resources(scheduling="SPREAD").ray_options()["scheduling_strategy"] == "SPREAD"
    assert "scheduling_strategy" not in Resources().ray_options()


def test_a_scheduling_value_that_is_no_strategy_is_an_input_error():
    with pytest.raises(InputError, match="not a scheduling strategy: 'LOCAL'"):
        Resources(scheduling="LOCAL").ray_options()


def test_resources_keep_their_positional_fields_and_merged_keeps_the_strategy():
    assert Resources(2.0, 0.0, None, {}) == Resources(num_cpus=2)
    assert Resources(scheduling="SPREAD").merged(num_cpus=3) == Resources(3, scheduling="SPREAD")


def test_execution_routing_is_auto_by_default_and_names_its_choices_when_wrong(tmp_path):
    assert graph_job(tmp_path).spec.execution.routing == "auto"
    with pytest.raises(InputError, match=r"execution\.routing") as err:
        graph_job(tmp_path, routing="fast")
    assert "'auto', 'spread' or 'off'" in str(err.value)


# -- facts and history -------------------------------------------------------------------------


def test_the_file_connectors_estimate_is_the_size_of_its_files():
    folder = EXAMPLES / "data" / "sales_parts"
    connector = FileConnector(FileConnector.Config(path=str(folder)))
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    assert connector.estimated_bytes() == sum(p.stat().st_size for p in files) > 0


def test_a_source_of_unknown_size_leaves_the_jobs_size_unknown(tmp_path):
    class Unknown(FileConnector):
        def estimated_bytes(self) -> int | None:
            return None

    known = FileConnector(FileConnector.Config(path=str(SALES)))
    unknown = Unknown(FileConnector.Config(path=str(SALES)))
    facts = job_facts("j", [known, known], ["aggregation", "aggregation"], tmp_path)
    assert facts == JobFacts("j", 2 * SALES.stat().st_size, ("aggregation",), ())
    assert job_facts("j", [known, unknown], [], tmp_path).input_bytes is None


def test_a_source_whose_size_cannot_be_estimated_is_logged_and_of_unknown_size(tmp_path,
                                                                               caplog):
    gone = FileConnector(FileConnector.Config(path=str(tmp_path / "gone.csv")))
    with caplog.at_level(logging.WARNING, "raysight.job.routing"):
        assert job_facts("j", [gone], [], tmp_path).input_bytes is None
    assert "source file: size not estimated for routing: source file not found" in caplog.text


def test_the_history_keeps_the_most_recent_nodes_first_per_job_name(tmp_path):
    record_history(tmp_path, "daily-{date}", [A])
    record_history(tmp_path, "daily-{date}", [B, A])
    record_history(tmp_path, "other", [C])
    assert load_history(tmp_path, "daily-{date}") == (B, A)
    record_history(tmp_path, "daily-{date}", [f"{i:056x}" for i in range(10)])
    assert len(load_history(tmp_path, "daily-{date}")) == 8
    assert load_history(tmp_path, None) == () and load_history(tmp_path, "new") == ()
    assert not list((tmp_path / ".routing").glob("*.tmp"))


def test_a_broken_history_only_loses_the_preference(tmp_path, caplog):
    (tmp_path / ".routing").mkdir()
    (tmp_path / ".routing" / "affinity.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, "raysight.job.routing"):
        assert load_history(tmp_path, "job") == ()
    assert "not read" in caplog.text
    record_history(tmp_path, "job", [A])
    assert load_history(tmp_path, "job") == (A,)


def test_the_nodes_that_loaded_come_from_succeeded_load_records_of_every_trace():
    trace = {"records": [
        {"step": "source/load.plan", "state": "succeeded", "node_id": A},
        {"step": "source/load", "state": "failed", "node_id": C},
        {"step": "analysis/analyze", "state": "succeeded", "node_id": C},
    ], "children": [{"records": [
        {"step": "other/load", "state": "succeeded", "node_id": B},
        {"step": "other/load", "state": "succeeded", "node_id": B},
        {"step": "other/load.schema", "state": "succeeded", "node_id": None},
    ]}]}
    assert load_nodes(trace) == [B, A]


def test_the_last_steps_hook_records_the_nodes_that_loaded_after_its_own_hook(tmp_path):
    calls = []
    ctx = RunContext("job-1")
    ctx.trace.records.append(StepRecord("source/load", "succeeded", node_id=A))
    remembering(tmp_path, "job", lambda c, o: calls.append(o))(ctx, "outcome")
    assert calls == ["outcome"] and load_history(tmp_path, "job") == (A,)


def test_a_history_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    (tmp_path / ".routing").write_text("a file where the folder goes")
    ctx = RunContext("job-1")
    ctx.trace.records.append(StepRecord("source/load", "succeeded", node_id=A))
    with caplog.at_level(logging.WARNING, "raysight.job.routing"):
        remembering(tmp_path, "job", None)(ctx, None)
    assert "job job-1: routing history not written" in caplog.text


# -- on the session's Ray ----------------------------------------------------------------------


def _probe():
    context = ray.get_runtime_context()
    return context.get_assigned_resources(), context.get_node_id()


def test_routed_options_reach_the_ray_task(ray_session):
    # the head node's own resource stands in for a custom one (the session has no other)
    (head,) = [n for n in ray.nodes() if n["Alive"]]
    resources = Resources().routed({"node:__internal_head__": TOKEN}, f"node:{head['NodeID']}")
    task = Task(fn=_probe, name="probe", resources=resources)
    assigned, node_id = fetch(Executor().run(task, RunContext("routing-probe")))
    assert assigned["node:__internal_head__"] == pytest.approx(TOKEN)
    assert node_id == head["NodeID"]


def graph_job(tmp_path: Path, job_id: str = "routed", **execution) -> AnalysisJob:
    spec = parse_graph_spec({
        "job_id": job_id, "source": {"type": "file", "path": str(SALES)},
        "analysis": {"type": "aggregation", "group_by": ["region"],
                     "metrics": [{"column": "amount", "function": "sum", "alias": "total"}]},
        "execution": {"retry": {"initial_s": 0.01, "jitter": 0.0}, **execution},
    })
    return AnalysisJob(spec, run_dir=tmp_path / "runs")


def started(job: AnalysisJob) -> dict[str, dict]:
    lines = (job.job_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return {e["step"]: e["data"]["resources"] for e in events
            if e["event_type"] == "step_started" and "resources" in e["data"]}


def test_a_job_whose_size_asks_for_high_memory_runs_normally_with_a_note(
        ray_session, tmp_path, monkeypatch):
    monkeypatch.setattr(FileConnector, "estimated_bytes", lambda self: 3 * GiB)
    job = graph_job(tmp_path)
    result = job.run()
    assert result.state == "COMPLETED", result.errors
    assert job.routing.directives == ()
    assert any("input of 3 GiB would go to nodes with high_memory" in n
               for n in job.routing.notes)
    assert all("high_memory" not in str(r) for r in started(job).values())


def test_a_run_loads_preferably_where_an_earlier_run_of_the_job_loaded(ray_session, tmp_path):
    (head,) = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    record_history(tmp_path / "runs", "daily-{uuid}", [head])  # as a run on a cluster would
    second = graph_job(tmp_path, "daily-{uuid}")
    assert second.run().state == "COMPLETED"
    assert second.routing.directives == (
        Directive("affinity", ("load",), scheduling=f"node:{head}"),)
    steps = started(second)
    assert "NodeAffinitySchedulingStrategy" in str(steps["source/load"])
    assert "scheduling_strategy" not in steps["analysis/analyze"]


def test_on_a_cluster_of_one_node_no_history_is_written(ray_session, tmp_path):
    job = graph_job(tmp_path, "daily-{uuid}")
    assert job.run().state == "COMPLETED"
    assert not job.routing.remember
    assert not (job.run_root / ".routing").exists()


def test_routing_off_asks_for_nothing_and_remembers_nothing(ray_session, tmp_path):
    record_history(tmp_path / "runs", "plain", [A])
    job = graph_job(tmp_path, "plain", routing="off")
    assert job.run().state == "COMPLETED"
    assert job.routing == RoutingPlan()
    assert load_history(job.run_root, "plain") == (A,)


def test_check_resources_reports_the_plan_as_a_job_routed_event(ray_session, tmp_path,
                                                                monkeypatch):
    monkeypatch.setattr(FileConnector, "estimated_bytes", lambda self: 200 * MiB)
    job = graph_job(tmp_path)
    events = EventLog()
    job.check_resources(RunContext(job.job_id, observers=Observers([events])))
    (event,) = events.of_type("job_routed")
    assert event.data["job_id"] == "routed" and event.data["directives"] == []
    assert "medium_memory" in event.data["notes"][0]


# -- on a head node with capabilities (slow) ---------------------------------------------------


@pytest.fixture(scope="module")
def capable_head(cluster_head):
    """The session's head node (tests/head_node.py), which advertises ``time_series: 1`` and
    ``high_memory: 2``."""
    return {**cluster_head, "address": cluster_head["gcs"]}


def run_on(head: dict, tmp_path: Path, job_id: str, **spec) -> tuple[int, str, Path]:
    import subprocess
    import sys

    import yaml

    path = tmp_path / f"{job_id}.yaml"
    path.write_text(yaml.safe_dump({"job_id": job_id,
                                    "source": {"type": "file", "path": str(SALES)}, **spec}))
    proc = subprocess.run([sys.executable, "-m", "raysight", "run", str(path), "--address",
                           head["address"], "--run-dir", str(tmp_path / "runs"), "--quiet"],
                          env=head["env"], capture_output=True, text=True, timeout=240)
    return proc.returncode, proc.stdout + proc.stderr, tmp_path / "runs" / job_id


TIME_SERIES = {"type": "time_series", "time_column": "date", "value_columns": ["amount"],
               "operations": ["sum"], "interval": "weekly"}


@pytest.mark.slow
def test_a_time_series_job_asks_the_node_that_offers_time_series_for_it(capable_head, tmp_path):
    import subprocess
    import sys

    code, output, job_dir = run_on(capable_head, tmp_path, "ts-routed", analysis=TIME_SERIES)
    assert code == 0, output
    events = [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]
    asked_for = {e["step"]: e["data"].get("resources", {}) for e in events
                 if e["event_type"] == "step_started"}
    assert asked_for["analysis/analyze"]["resources"] == {"time_series": TOKEN}
    assert "resources" not in asked_for["source/load"]
    # what Ray recorded for the task (its state API), not only what the driver asked for
    script = ("import json, sys; from ray.util.state import list_tasks; "
              "print(json.dumps([t.required_resources for t in list_tasks(address=sys.argv[1], "
              "detail=True, limit=1000, filters=[('name', '=', 'ts-routed/analysis/analyze')], "
              "raise_on_missing_output=False)]))")
    proc = subprocess.run([sys.executable, "-c", script, capable_head["url"]],
                          env=capable_head["env"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    required = json.loads(proc.stdout.strip().splitlines()[-1])
    assert required and all(r.get("time_series") == pytest.approx(TOKEN) for r in required)


@pytest.mark.slow
def test_more_of_a_custom_resource_than_any_node_has_fails_at_once_with_exit_status_2(
        capable_head, tmp_path):
    code, output, job_dir = run_on(
        capable_head, tmp_path, "too-much", analysis=TIME_SERIES,
        resources={"analyze": {"resources": {"high_memory": 3}}})
    assert code == 2 and "Traceback" not in output
    (line,) = [x for x in output.splitlines() if x.startswith("error")]
    assert line.endswith("step 'analysis/analyze' needs high_memory=3 per task, but the Ray "
                         "cluster's only node has 2")
    assert json.loads((job_dir / "result.json").read_text())["state"] == "FAILED"
