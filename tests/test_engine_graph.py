"""Graphs of named nodes in the engine: a node runs when its own needs are done."""

from __future__ import annotations

import time

import pytest
from conftest import job_tasks
from test_fault_tolerance import mark, marks

from raysight.debug.dag import dag_figure
from raysight.debug.inspect import inspect_text
from raysight.debug.plan import plan_graph, to_mermaid
from raysight.debug.timeline import timeline_figure
from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import Fault, RunContext
from raysight.engine.events import EventLog, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.graph import Graph, GraphError, Node, graph, task_keys
from raysight.engine.retry import Fixed, RetryPolicy
from raysight.engine.workflow import step, tasks
from raysight.errors import Cancelled, PermanentError

pytestmark = pytest.mark.usefixtures("ray_session")

FAST = RetryPolicy(max_retries=3, backoff=Fixed(0.01))


def run(flow, value=None, **ctx_kwargs):
    events = EventLog()
    ctx = RunContext(ctx_kwargs.pop("job_id", "job_graph"), observers=Observers([events]),
                     **ctx_kwargs)
    executor = Executor(default_retry=FAST, poll_s=0.05)
    out = executor.run(flow, ctx) if value is None else executor.run(flow, ctx, value)
    return fetch(out), ctx, events


def counted(name: str, folder: str, fn=None):
    """A step that marks each call and returns ``fn(*inputs)`` (default: the sum + 1)."""

    def body(*xs):
        mark(folder, name)
        return fn(*xs) if fn is not None else sum(x for x in xs if x is not None) + 1

    return step(body, name=name)


def sleeper(name: str, seconds: float, result: int = 0):
    def body(*_):
        time.sleep(seconds)
        return result

    return step(body, name=name)


def record(ctx, step_name: str):
    return next(r for r in ctx.trace.records if r.step == step_name and r.state == "succeeded")


@step
def three():
    return 3


@step
def double(x):
    return 2 * x


@step
def add(x, y):
    return x + y


@step
def boom(x):
    raise PermanentError("boom: no such table")


def diamond(folder: str) -> Graph:
    return graph({
        "a": counted("load", folder, lambda *_: 3),
        "b": Node(counted("double", folder, lambda x: 2 * x), needs=("a",)),
        "c": Node(counted("square", folder, lambda x: x * x), needs=("a",)),
        "d": Node(counted("add", folder, lambda x, y: x + y), needs=("b", "c")),
    })


# -- wiring -----------------------------------------------------------------------------------


def test_each_node_gets_its_needs_outputs_and_the_graph_returns_every_node():
    flow = graph({"a": three, "b": Node(double, needs=("a",)),
                  "c": Node(double, needs="a"), "d": Node(add, needs=("b", "c"))})
    value, _, _ = run(flow)
    assert value == {"a": 3, "b": 6, "c": 6, "d": 12}


def test_nodes_without_needs_get_the_graph_input():
    value, _, _ = run(graph({"x": double, "y": double}), 5)
    assert value == {"x": 10, "y": 10}


def test_outputs_chooses_the_graph_output():
    nodes = {"a": three, "b": Node(double, needs=("a",))}
    assert run(graph(nodes, outputs="b"))[0] == 6
    assert run(graph(nodes, outputs=("b",)))[0] == {"b": 6}


def test_a_graph_is_a_step_that_composes():
    flow = three >> graph({"x": double, "y": Node(double, needs=("x",))}, outputs="y") >> double
    assert run(flow)[0] == 24


def test_a_node_used_by_several_consumers_runs_once(tmp_path):
    value, _, _ = run(diamond(str(tmp_path)))
    assert value["d"] == 6 + 9
    assert sorted(marks(tmp_path)) == ["add", "double", "load", "square"]


# -- scheduling -------------------------------------------------------------------------------


def test_independent_nodes_run_concurrently():
    flow = graph({"left": sleeper("nap", 1.0), "right": sleeper("nap", 1.0)})
    _, ctx, _ = run(flow)
    left, right = record(ctx, "left/nap"), record(ctx, "right/nap")
    assert left.started_at < right.ended_at and right.started_at < left.ended_at


def test_a_node_starts_when_its_own_needs_are_done_not_when_its_level_is():
    flow = graph({
        "slow": sleeper("nap", 2.0),
        "fast": sleeper("quick", 0.0, 1),
        "next": Node(double, needs=("fast",)),
    })
    value, ctx, _ = run(flow)
    assert value["next"] == 2
    assert record(ctx, "next/double").started_at < record(ctx, "slow/nap").ended_at


# -- names ------------------------------------------------------------------------------------


def test_tasks_are_named_after_their_node():
    flow = graph({"a": three, "b": Node(double >> double, needs=("a",))})
    assert [t.name for t in tasks(flow)] == ["a/three", "b/double", "b/double"]
    assert all(t.tags["node"] == t.name.split("/")[0] for t in tasks(flow))


def test_ray_task_names_are_job_node_step():
    value, ctx, events = run(graph({"a": three, "b": Node(double, needs=("a",))}),
                             job_id="job_graph_names")
    assert value == {"a": 3, "b": 6}
    names = sorted(t.name for t in job_tasks("job_graph_names", expect=2))
    assert names == ["job_graph_names/a/three", "job_graph_names/b/double"]
    assert [r.step for r in ctx.trace.records] == ["a/three", "b/double"]
    assert [e.step for e in events.of_type("step_succeeded")] == ["a/three", "b/double"]


def test_nested_graphs_prefix_both_node_names():
    inner = graph({"m": double})
    flow = graph({"a": three, "n": Node(inner, needs=("a",))})
    assert [t.name for t in tasks(flow)] == ["a/three", "n/m/double"]
    value, ctx, events = run(flow)
    assert value == {"a": 3, "n": {"m": 6}}
    assert [e.step for e in events.of_type("node_succeeded")] == ["a", "n/m", "n"]
    assert ctx.trace.attributes["n/m.node_state"] == "succeeded"


def test_node_events_frame_each_node():
    _, _, events = run(graph({"a": three, "b": Node(double, needs=("a",))}))
    node_events = [(e.event_type, e.step) for e in events.events
                   if e.event_type.startswith("node_")]
    assert node_events == [("node_started", "a"), ("node_succeeded", "a"),
                           ("node_started", "b"), ("node_succeeded", "b")]
    assert events.of_type("node_started")[1].data["needs"] == ["a"]


# -- validation -------------------------------------------------------------------------------


def test_a_cycle_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"cycle: a -> b -> a"):
        graph({"a": Node(double, needs=("b",)), "b": Node(double, needs=("a",))})


def test_a_longer_cycle_is_named_in_data_flow_order():
    with pytest.raises(GraphError, match=r"cycle: a -> b -> c -> a"):
        graph({"a": Node(double, needs=("c",)), "b": Node(double, needs=("a",)),
               "c": Node(double, needs=("b",))})


def test_an_unknown_need_is_refused_listing_the_nodes():
    with pytest.raises(ValueError, match=r"'b' needs 'nope', which is not a node.*nodes: a, b"):
        graph({"a": three, "b": Node(double, needs=("nope",))})


@pytest.mark.parametrize("name", ["", "a/b", " "])
def test_bad_node_names_are_refused(name):
    with pytest.raises(ValueError, match="node name"):
        graph({name: three})


def test_an_unknown_output_is_refused():
    with pytest.raises(ValueError, match="output 'z'"):
        graph({"a": three}, outputs="z")


# -- failures ---------------------------------------------------------------------------------


def test_a_failed_node_skips_its_dependents_and_lets_independent_nodes_finish(tmp_path):
    folder = str(tmp_path)
    flow = graph({
        "a": three,
        "bad": Node(boom, needs=("a",)),
        "after": Node(counted("after", folder), needs=("bad",)),
        "last": Node(counted("last", folder), needs=("after",)),
        "other": counted("other", folder, lambda *_: time.sleep(1.0) or 7),
    })
    events = EventLog()
    ctx = RunContext("job_graph_fail", observers=Observers([events]))
    with pytest.raises(PermanentError, match="boom: no such table"):
        Executor(default_retry=FAST, poll_s=0.05).run(flow, ctx)
    assert marks(tmp_path) == ["other"]  # the independent node ran to the end
    skipped = {r.step: r.reason for r in ctx.trace.records if r.state == "skipped"}
    assert skipped == {"after/after": "upstream node bad failed",
                       "last/last": "upstream node bad failed"}
    assert [e.step for e in events.of_type("node_failed")] == ["bad"]
    assert sorted(e.step for e in events.of_type("node_skipped")) == ["after", "last"]
    assert [e.step for e in events.of_type("node_succeeded")] == ["a", "other"]


def test_nodes_queued_behind_a_full_pool_never_start_after_a_failure(tmp_path):
    folder = str(tmp_path)

    @step
    def bad_first():
        raise PermanentError("boom: no such table")

    flow = graph({"bad": bad_first, "b": counted("b", folder), "c": counted("c", folder)})
    ctx = RunContext("job_graph_full_pool")
    with pytest.raises(PermanentError, match="boom"):
        Executor(default_retry=FAST, poll_s=0.05, max_parallel_branches=1).run(flow, ctx)
    assert marks(tmp_path) == []
    skipped = {r.step: r.reason for r in ctx.trace.records if r.state == "skipped"}
    assert skipped == {"b/b": "not started: node bad failed",
                       "c/c": "not started: node bad failed"}


def test_the_graph_raises_a_node_error_not_a_cancellation():
    flow = graph({"bad": boom, "ok": double})
    with pytest.raises(PermanentError) as info:
        run(flow, 1)
    assert not isinstance(info.value, Cancelled)


def test_cancelling_the_run_cancels_running_nodes():
    events = EventLog()
    ctx = RunContext("job_graph_cancel", observers=Observers([events]))

    class CancelOnStart:
        def on_event(self, event):
            if event.event_type == "step_started" and event.step == "slow/nap":
                ctx.cancel()

    ctx.observers.add(CancelOnStart())
    flow = graph({"slow": sleeper("nap", 30.0), "after": Node(double, needs=("slow",))})
    with pytest.raises(Cancelled):
        Executor(poll_s=0.05).run(flow, ctx)
    assert [(e.step, e.data["reason"]) for e in events.of_type("node_skipped")] == [
        ("after", "run cancelled")]


def test_nodes_finishing_together_commit_one_whole_manifest(tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    flow = graph({f"n{i}": double for i in range(8)})
    value, _, _ = run(flow, 1, checkpoints=store)
    assert value == {f"n{i}": 2 for i in range(8)}
    lines = (tmp_path / "ckpt" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 9 and "format_version" in lines[0]  # one header, one line per node
    assert sorted(CheckpointStore(store.url).manifest()["steps"]) == [
        f"n{i}/000-double" for i in range(8)]


# -- checkpoints ------------------------------------------------------------------------------


def test_graph_checkpoint_keys_are_per_node():
    flow = three >> graph({"a": double, "b": Node(double >> double, needs=("a",))})
    assert sorted(task_keys(flow).values()) == ["000-three", "a/000-double", "b/000-double",
                                                "b/001-double"]


def test_a_rerun_restores_finished_nodes_and_runs_only_the_rest(tmp_path):
    folder = str(tmp_path)
    store = str(tmp_path / "ckpt")
    (tmp_path / "reference").mkdir()
    expected = run(diamond(str(tmp_path / "reference")))[0]
    with pytest.raises(PermanentError):
        run(diamond(folder), job_id="job_graph_resume_1", checkpoints=CheckpointStore(store),
            faults=(Fault("d/add", "permanent"),))
    assert sorted(marks(tmp_path)) == ["double", "load", "square"]
    value, _, events = run(diamond(folder), job_id="job_graph_resume_2",
                           checkpoints=CheckpointStore(store))
    assert value == expected
    assert sorted(marks(tmp_path)) == ["add", "double", "load", "square"]  # d ran, once more
    assert sorted(e.step for e in events.of_type("step_restored")) == [
        "a/load", "b/double", "c/square"]
    restored = [e.step for e in events.of_type("node_succeeded") if e.data.get("restored")]
    assert sorted(restored) == ["a", "b", "c"]
    ran = [t.name for t in job_tasks("job_graph_resume_2", expect=4)
           if not t.name.endswith(".restore")]
    assert ran == ["job_graph_resume_2/d/add"]


# -- debug views ------------------------------------------------------------------------------


def test_mermaid_shows_a_subgraph_per_node_and_edges_for_needs(tmp_path):
    text = to_mermaid(diamond(str(tmp_path)))
    for name in "abcd":
        assert f'["node: {name}"]' in text
    assert text.count("subgraph ") == 4
    for src, dst in [("a_load", "b_double"), ("a_load", "c_square"), ("b_double", "d_add"),
                     ("c_square", "d_add")]:
        assert f"t_{src} --> t_{dst}" in text


def test_the_plan_graph_of_a_graph_points_edges_forward(tmp_path):
    g = plan_graph(diamond(str(tmp_path)))
    position = {n.id: i for i, n in enumerate(g.nodes)}
    assert all(position[e.src] < position[e.dst] for e in g.edges)
    assert {n.group for n in g.tasks} == {grp.id for grp in g.groups}


def failed_run():
    flow = graph({"a": three, "bad": Node(boom, needs=("a",)),
                  "after": Node(double, needs=("bad",)), "other": Node(double, needs=("a",))})
    ctx = RunContext("job_graph_views", observers=Observers([EventLog()]))
    with pytest.raises(PermanentError):
        Executor(default_retry=FAST, poll_s=0.05).run(flow, ctx)
    return flow, ctx.trace.to_dict()


def test_inspect_lists_nodes_their_states_and_why_nodes_were_skipped():
    _, trace = failed_run()
    text = inspect_text({"job_id": "job_graph_views", "state": "FAILED", "trace": trace})
    nodes = text.split("Nodes\n")[1].split("\n\n")[0].splitlines()
    states = {line.split()[0]: line.split()[1] for line in nodes[1:]}
    assert states == {"a": "succeeded", "bad": "failed", "after": "skipped",
                      "other": "succeeded"}
    assert "after/double: upstream node bad failed" in text


def test_the_timeline_keeps_the_rows_of_a_node_together():
    flow = graph({"x": sleeper("one", 0.5) >> double, "y": sleeper("two", 0.0)})
    _, ctx, _ = run(flow)
    fig = timeline_figure(ctx.trace)
    rows = list(fig.layout.yaxis.categoryarray)
    assert sorted(rows) == ["x/double", "x/one", "y/two"]
    assert abs(rows.index("x/one") - rows.index("x/double")) == 1


def test_the_dag_figure_labels_tasks_inside_their_node_box():
    flow, trace = failed_run()
    fig = dag_figure(flow, trace=trace)
    labels = [t for trace_ in fig.data if trace_.text for t in trace_.text]
    assert "three" in labels and "a/three" not in labels
    titles = {a.text for a in fig.layout.annotations}
    assert {"node: a", "node: bad", "node: after", "node: other"} <= titles
