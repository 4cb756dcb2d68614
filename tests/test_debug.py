"""Debug views: the plan as Mermaid and as a plotly DAG, the run as a timeline, inspect text.

One real run on Ray covers the acceptance case: a parallel fan-out, a mapped step, a retried
step and a skipped step.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from raysight.debug.dag import dag_figure
from raysight.debug.inspect import inspect_text, write_debug_views
from raysight.debug.plan import plan_graph, to_mermaid
from raysight.debug.summary import STATE_COLORS, summarize_steps
from raysight.debug.timeline import timeline_figure
from raysight.engine.context import Fault, RunContext
from raysight.engine.executor import Executor, fetch
from raysight.engine.retry import Fixed, RetryPolicy
from raysight.engine.trace import StepRecord, TraceInfo
from raysight.engine.workflow import Pass, branch, parallel, step, tasks
from raysight.errors import PermanentError
from raysight.job.result import JobResult

FAST = RetryPolicy(max_retries=2, backoff=Fixed(0.01))
MERMAID_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MERMAID_KEYWORDS = {"end", "subgraph", "graph", "flowchart", "class", "classDef", "style",
                    "click", "direction", "linkStyle"}


@step(mode="fanout")
def partitions():
    return [1, 2, 3]


@step(mode="map")
def square(x):
    return x * x


@step
def total(xs):
    return sum(xs)


@step
def count(xs):
    return len(xs)


@step
def combine(sum_of_squares, n):
    return sum_of_squares + n


@step
def publish(x):
    return -x


#: the acceptance plan: fan-out, map, parallel branches, a retried and a skipped step
PLAN = (partitions
        >> parallel(square >> total, count)
        >> combine.with_retry(FAST)
        >> publish.when(lambda ctx: False, "publishing enabled"))


def run(plan, job_id, faults=()):
    ctx = RunContext(job_id, faults=faults)
    try:
        return fetch(Executor(default_retry=FAST, poll_s=0.05).run(plan, ctx)), ctx
    except PermanentError:
        return None, ctx


def as_result(ctx, state="COMPLETED", errors=()):
    """The result.json dict a pipeline run would write for this context."""
    now = time.time()
    return JobResult(
        job_id=ctx.job_id, user_id="analyst", state=state, analysis_type="custom",
        priority=50, run_dir=f"runs/{ctx.job_id}", started_at="2024-05-06T07:08:09+00:00",
        finished_at="2024-05-06T07:08:12+00:00", execution_time_s=3.0,
        data_stats={"row_count": 3, "column_count": 1, "partitions": 3, "size_bytes": 24,
                    "columns": {"x": "int64"}},
        metrics={"analysis_time": 0.25, "size_bytes": 3 * 1024, "row_count": 3},
        outputs=["report.html"] if state == "COMPLETED" else [],
        warnings=["visualization 0 (bar): no column 'y'"], errors=list(errors),
        execution_path=list(ctx.trace.execution_path),
        steps={k: v.to_dict() for k, v in ctx.trace.stats.items()},
        trace={**ctx.trace.to_dict(), "ended_at": ctx.trace.ended_at or now},
    ).to_dict()


@pytest.fixture(scope="module")
def completed(ray_session):
    """The acceptance plan run on Ray; ``combine`` fails transiently once."""
    value, ctx = run(PLAN, "job_vis", faults=(Fault("combine", "transient", times=1),))
    assert value == 1 + 4 + 9 + 3  # the skipped publish passed its input through
    return ctx


def mermaid_nodes(text):
    """{id: label} of the node declarations in Mermaid flowchart text."""
    found = re.findall(r"^\s*(\w+)(?:\[\[|\[/|\[\\|\{\{|\(\(|\[|\{|\(|>)\"(.*?)\"", text,
                       re.M)
    return dict(found)


def mermaid_edges(text):
    return re.findall(r"^\s*(\S+) -->(?:\|\"(.*?)\"\|)? (\S+)$", text, re.M)


def figure_edges(fig):
    """(source id, target id) of each polyline of the DAG figure's edge trace."""
    at = {(x, y): node_id for trace in fig.data if trace.meta["kind"] != "edges"
          for x, y, node_id in zip(trace.x, trace.y, trace.customdata, strict=True)}
    (edges,) = [t for t in fig.data if t.meta["kind"] == "edges"]
    found: list[tuple[str, str]] = []
    path: list[tuple[float, float]] = []
    for x, y in zip(edges.x, edges.y, strict=True):
        if x is None:
            found.append((at[path[0]], at[path[-1]]))
            path = []
        else:
            path.append((x, y))
    return found


# -- Mermaid --------------------------------------------------------------------------------


def test_mermaid_has_a_node_for_every_task_with_its_name():
    labels = mermaid_nodes(to_mermaid(PLAN)).values()
    for task in tasks(PLAN):
        assert any(label.split("<br/>")[0] == task.name for label in labels), task.name


def test_mermaid_ids_are_valid_for_names_with_dots_spaces_and_keywords():
    plan = (total.options(name="load.plan") >> count.options(name="analyze.combine")
            >> total.options(name="end") >> count.options(name='odd "name" #1'))
    text = to_mermaid(plan)
    nodes = mermaid_nodes(text)
    assert [label.split("<br/>")[0] for label in nodes.values()] == [
        "start", "load.plan", "analyze.combine", "end", "odd #quot;name#quot; #35;1", "end"]
    for node_id in nodes:
        assert MERMAID_ID.fullmatch(node_id) and node_id not in MERMAID_KEYWORDS, node_id
    assert len(set(nodes)) == len(nodes)
    for src, _, dst in mermaid_edges(text):
        assert src in nodes and dst in nodes


def test_mermaid_when_is_a_decision_node_with_run_and_skip_edges():
    text = to_mermaid(PLAN)
    nodes = mermaid_nodes(text)
    (decision,) = [i for i in nodes if re.search(rf'^\s*{i}\{{"', text, re.M)]
    assert nodes[decision] == "when: publishing enabled"
    out = {(label, nodes[dst].split("<br/>")[0]) for src, label, dst in mermaid_edges(text)
           if src == decision}
    assert out == {("run", "publish"), ("skip", "end")}


def test_mermaid_parallel_forks_and_joins():
    text = to_mermaid(PLAN)
    nodes = mermaid_nodes(text)
    name = {i: label.split("<br/>")[0] for i, label in nodes.items()}
    edges = {(name[s], name[d]) for s, _, d in mermaid_edges(text)}
    assert {("partitions", "parallel ×2"), ("parallel ×2", "square"), ("parallel ×2", "count"),
            ("total", "join"), ("count", "join"), ("join", "combine")} <= edges


def test_mermaid_shows_map_tasks_as_stacks_and_modes_and_resources():
    plan = partitions >> square.options(num_gpus=1, memory="2GiB") >> total
    text = to_mermaid(plan)
    assert re.search(r'^\s*t_square\[\["square<br/>map ×N · 1 CPU · 1 GPU · 2 GiB"\]\]', text,
                     re.M)
    assert re.search(r'^\s*t_partitions\[/"partitions<br/>fan-out', text, re.M)


def enclosing_subgraphs(text):
    """{node id: titles of the subgraphs around its declaration, outermost first}."""
    stack: list[str] = []
    found = {}
    for line in text.splitlines():
        if m := re.match(r'\s*subgraph \w+\["(.*)"\]$', line):
            stack.append(m.group(1))
        elif line.strip() == "end":
            stack.pop()
        elif m := re.match(r"\s*(\w+)[\[({]", line):
            found[m.group(1)] = list(stack)
    assert not stack
    return found


def test_mermaid_shows_dynamic_and_actor_steps_and_engine_options():
    plan = (partitions.options(mode="dynamic")
            >> square.options(mode="actor").with_lock("warehouse").with_circuit_breaker("api")
            >> total.with_checkpoint(False))
    nodes = mermaid_nodes(to_mermaid(plan))
    assert nodes["t_partitions"] == "partitions<br/>dynamic (returns steps) · 1 CPU"
    assert nodes["t_square"] == "square<br/>actor ×1 · 1 CPU<br/>breaker api · lock warehouse"
    assert nodes["t_total"] == "total<br/>1 CPU<br/>no checkpoint"
    assert re.search(r'^\s*t_partitions\[\\".*"\\\]$', to_mermaid(plan), re.M)


def test_mermaid_nested_and_wrappers_are_annotated_subgraphs():
    inner = (count >> combine).nested("recipe", {"k": 1})
    plan = total >> inner.with_retry(RetryPolicy(max_retries=3)).with_timeout(5) >> publish
    around = enclosing_subgraphs(to_mermaid(plan))
    nested = ["timeout 5 s · retry ≤3", "nested: recipe · params: k"]
    assert around["t_count"] == around["t_combine"] == nested
    assert around["t_total"] == around["t_publish"] == []


def test_mermaid_annotates_a_retry_or_timeout_on_a_single_task_in_its_label():
    text = to_mermaid(total >> count.with_retry(RetryPolicy(max_retries=4)).with_timeout(30))
    assert re.search(r'^\s*t_count\["count<br/>1 CPU<br/>retry ≤4 · timeout 30 s"\]', text,
                     re.M)
    assert "subgraph" not in text


def test_mermaid_branch_without_else_skips():
    graph = plan_graph(total >> branch(lambda ctx: True, count))
    (decision,) = [n for n in graph.nodes if n.kind == "decision"]
    labels = {(e.label, graph.node(e.dst).name) for e in graph.edges if e.src == decision.id}
    assert labels == {("true", "count"), ("skip", "end")}


def test_mermaid_with_a_trace_colours_tasks_by_state(completed):
    text = to_mermaid(PLAN, trace=completed.trace)
    assert re.search(r"^\s*class .*\bt_publish\b.* skipped$", text, re.M)
    assert re.search(r"^\s*class .*\bt_combine\b.* succeeded$", text, re.M)
    assert "succeeded · 2 attempts" in mermaid_nodes(text)["t_combine"]


# -- plan graph and DAG figure --------------------------------------------------------------


def test_plan_graph_edges_follow_the_plan():
    graph = plan_graph(PLAN)
    names = {(graph.node(e.src).name, graph.node(e.dst).name, e.label) for e in graph.edges}
    assert names == {
        ("start", "partitions", ""), ("partitions", "parallel ×2", ""),
        ("parallel ×2", "square", ""), ("square", "total", ""), ("total", "join", ""),
        ("parallel ×2", "count", ""), ("count", "join", ""), ("join", "combine", ""),
        ("combine", "when: publishing enabled", ""),
        ("when: publishing enabled", "publish", "run"), ("publish", "end", ""),
        ("when: publishing enabled", "end", "skip"),
    }


def test_a_pass_branch_joins_the_fork_directly():
    graph = plan_graph(total >> parallel(Pass(), count))
    names = {(graph.node(e.src).kind, graph.node(e.dst).kind) for e in graph.edges}
    assert ("fork", "join") in names


def test_dag_figure_has_one_marker_per_task():
    fig = dag_figure(PLAN)
    graph = plan_graph(PLAN)
    task_kinds = {"apply", "map", "fanout", "driver", "dynamic", "actor"}
    shown = [node_id for t in fig.data if t.meta["kind"] in task_kinds for node_id in t.customdata]
    assert sorted(shown) == sorted(n.id for n in graph.tasks)
    assert Counter(graph.node(i).name for i in shown) == Counter(t.name for t in tasks(PLAN))
    names = [text for t in fig.data if t.meta["kind"] in task_kinds for text in t.text]
    assert sorted(names) == sorted(t.name for t in tasks(PLAN))


def test_dag_figure_draws_the_plan_edges_left_to_right():
    fig = dag_figure(PLAN)
    graph = plan_graph(PLAN)
    assert sorted(figure_edges(fig)) == sorted((e.src, e.dst) for e in graph.edges)
    x = {i: xs for t in fig.data if t.meta["kind"] != "edges"
         for i, xs in zip(t.customdata, t.x, strict=True)}
    assert all(x[e.src] < x[e.dst] for e in graph.edges)
    # longest-path layering: the join comes after the longer branch (square >> total)
    join = next(n.id for n in graph.nodes if n.kind == "join")
    assert x[join] == x["t_total"] + 1


def test_dag_figure_routes_long_edges_around_the_nodes_between():
    fig = dag_figure(total >> parallel(Pass(), count >> combine))
    at = {(px, py) for t in fig.data if t.meta["kind"] != "edges"
          for px, py in zip(t.x, t.y, strict=True)}
    (edges,) = [t for t in fig.data if t.meta["kind"] == "edges"]
    inner_points = []
    path: list[tuple[float, float]] = []
    for px, py in zip(edges.x, edges.y, strict=True):
        if px is None:
            inner_points += path[1:-1]
            path = []
        else:
            path.append((px, py))
    assert inner_points and not set(inner_points) & at


def test_dag_figure_with_a_trace_colours_tasks_by_state(completed):
    fig = dag_figure(PLAN, trace=completed.trace.to_dict())
    colour = {i: c for t in fig.data if t.meta["kind"] == "apply"
              for i, c in zip(t.customdata, t.marker.color, strict=True)}
    assert colour["t_publish"] == STATE_COLORS["skipped"]
    assert colour["t_combine"] == STATE_COLORS["succeeded"]


# -- timeline -------------------------------------------------------------------------------


def points(fig, kind, state):
    """(row, attempt) of every bar or marker of one state."""
    return [(y, c[0]) for t in fig.data if t.meta == {"kind": kind, "state": state}
            for y, c in zip(t.y, t.customdata, strict=True)]


def test_timeline_shows_each_attempt_of_a_retried_step_as_its_own_bar(completed):
    fig = timeline_figure(completed.trace.to_dict())
    assert ("combine", 1) in points(fig, "bars", "retried")
    assert ("combine", 2) in points(fig, "bars", "succeeded")
    (retried,) = [t for t in fig.data if t.meta == {"kind": "bars", "state": "retried"}]
    (ok,) = [t for t in fig.data if t.meta == {"kind": "bars", "state": "succeeded"}]
    first_end = retried.base[0] + retried.x[0]
    second_start = ok.base[list(ok.y).index("combine")]
    assert first_end <= second_start


def test_timeline_marks_the_skipped_step(completed):
    fig = timeline_figure(completed.trace.to_dict())
    assert [row for row, _ in points(fig, "markers", "skipped")] == ["publish"]
    assert all("publish" not in t.y for t in fig.data if t.meta["kind"] == "bars")


def test_timeline_has_one_row_and_bar_per_partition_of_a_mapped_step(completed):
    fig = timeline_figure(completed.trace.to_dict())
    bars = [y for y, _ in points(fig, "bars", "succeeded") if y.startswith("square")]
    assert sorted(bars) == ["square[0]", "square[1]", "square[2]"]
    rows = list(fig.layout.yaxis.categoryarray)
    assert rows[0] == "partitions"  # rows follow the order in which steps first ran
    first = rows.index("square[0]")
    assert rows[first:first + 3] == ["square[0]", "square[1]", "square[2]"]


def test_timeline_hover_names_the_attempt_worker_and_error(completed):
    fig = timeline_figure(completed.trace.to_dict())
    (retried,) = [t for t in fig.data if t.meta == {"kind": "bars", "state": "retried"}]
    attempt, _, duration, _, _, _, error, _ = retried.customdata[0]
    assert attempt == 1 and duration > 0 and "injected transient fault" in error
    (ok,) = [t for t in fig.data if t.meta == {"kind": "bars", "state": "succeeded"}]
    assert all(c[3] for c in ok.customdata)  # every successful attempt names its worker pid
    assert "attempt %{customdata[0]}" in ok.hovertemplate


def test_timeline_includes_nested_workflow_records():
    trace = TraceInfo()
    trace.started_at = 100.0
    trace.add(StepRecord("outer", "succeeded", started_at=100.0, ended_at=101.0))
    child = trace.child()
    child.add(StepRecord("inner", "succeeded", started_at=101.0, ended_at=101.5))
    fig = timeline_figure(trace)
    assert sorted(y for y, _ in points(fig, "bars", "succeeded")) == ["inner", "outer"]


# -- inspect --------------------------------------------------------------------------------


def step_table(text):
    """{step: cells} from the Steps section of inspect text."""
    lines = text.split("\nSteps\n")[1].split("\n\n")[0].splitlines()
    header = lines[0].split()
    assert header == ["STEP", "STATE", "ATTEMPTS", "RETRIES", "TASKS", "WALL_S", "TOTAL_S",
                      "ROWS"]
    return {cells[0]: dict(zip(header, cells, strict=True))
            for cells in (line.split() for line in lines[1:] if not line.startswith("  path:"))}


def test_inspect_lists_every_step_with_its_state_and_retries(completed):
    text = inspect_text(as_result(completed))
    table = step_table(text)
    assert set(table) == {t.name for t in tasks(PLAN)}
    assert table["combine"]["STATE"] == "succeeded"
    assert (table["combine"]["ATTEMPTS"], table["combine"]["RETRIES"]) == ("2", "1")
    assert table["square"]["TASKS"] == "3" and table["square"]["RETRIES"] == "0"
    assert table["publish"]["STATE"] == "skipped" and table["publish"]["ATTEMPTS"] == "0"


def test_inspect_shows_job_facts_data_outputs_warnings(completed):
    text = inspect_text(as_result(completed))
    assert text.startswith("Job job_vis: COMPLETED\n")
    assert "started:  2024-05-06T07:08:09+00:00" in text
    assert "3 rows · 1 columns · 3 partitions · 24 B" in text
    assert "\nOutputs\n  report.html\n" in text
    metrics = text.split("\nMetrics\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(None, 1) for line in metrics] == [
        ["analysis_time", "0.250 s"], ["row_count", "3"], ["size_bytes", "3 KiB"]]
    assert "  - visualization 0 (bar): no column 'y'" in text
    assert "combine attempt 1 (retried): TransientError: injected transient fault" in text


def test_inspect_of_a_failed_job_shows_the_failed_step_and_the_error(ray_session):
    _, ctx = run(partitions.options(name="load.plan", mode="apply") >> count,
                 "job_vis_failed", faults=(Fault("count", "permanent"),))
    error = PermanentError("injected permanent fault in count", step="count").to_dict()
    text = inspect_text(as_result(ctx, state="FAILED", errors=[error]))
    assert text.startswith("Job job_vis_failed: FAILED\n")
    table = step_table(text)
    assert table["count"]["STATE"] == "failed" and table["load.plan"]["STATE"] == "succeeded"
    assert "[permanent] PermanentError: injected permanent fault in count (step count)" in text
    assert "\nOutputs\n  (none)\n" in text


def test_a_step_restored_from_a_checkpoint_is_a_marker_and_not_an_attempt():
    trace = TraceInfo()
    trace.started_at = 100.0
    trace.add(StepRecord("load", "restored", started_at=100.0, ended_at=100.0))
    trace.add(StepRecord("analyze", "succeeded", started_at=100.1, ended_at=101.0))
    fig = timeline_figure(trace)
    assert [row for row, _ in points(fig, "markers", "restored")] == ["load"]
    load = next(s for s in summarize_steps(trace) if s.step == "load")
    assert (load.state, load.attempts, load.tasks) == ("restored", 0, 1)


def test_step_summaries_fall_back_to_stats_without_records():
    stats = {"load": {"success_count": 1, "failure_count": 2, "retry_count": 2,
                      "skipped_count": 0, "total_execution_time_s": 1.5}}
    (summary,) = summarize_steps({}, stats)
    assert (summary.step, summary.state, summary.attempts, summary.retries) == (
        "load", "succeeded", 3, 2)


# -- files ----------------------------------------------------------------------------------


def test_write_debug_views_writes_self_contained_files(completed, tmp_path):
    written = write_debug_views(tmp_path / "job_vis", PLAN, as_result(completed))
    assert written == ["dag.mmd", "timeline.html"]
    mermaid = (tmp_path / "job_vis" / "dag.mmd").read_text(encoding="utf-8")
    assert mermaid.startswith("flowchart LR\n")
    page = (tmp_path / "job_vis" / "timeline.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", page)
    assert page.count("* plotly.js v") == 1  # the library is inlined once for both figures
    assert page.count("Plotly.newPlot(") == 2
    assert "Job job_vis: COMPLETED" in page


def test_write_debug_views_without_a_plan_writes_only_the_timeline(completed, tmp_path):
    assert write_debug_views(tmp_path, None, as_result(completed)) == ["timeline.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeline.html"]


def test_write_debug_views_escapes_the_job_id(tmp_path):
    result = {"job_id": "<script>alert(1)</script>", "state": "FAILED", "trace": {}}
    write_debug_views(tmp_path, None, result)
    page = (tmp_path / "timeline.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_the_pipeline_dag_labels_each_when_with_its_condition_to_run():
    from conftest import EXAMPLES

    from raysight.job.pipeline import AnalysisJob
    from raysight.job.spec import parse_spec

    spec = parse_spec({"source": {"type": "file", "path": str(EXAMPLES / "data" / "sales.csv")},
                       "analysis": {"type": "descriptive"}})
    text = to_mermaid(AnalysisJob(spec, job_id="dag").workflow())
    labels = {label for label in mermaid_nodes(text).values() if label.startswith("when")}
    assert labels == {"when: the partitions differ in schema",
                      "when: the spec has notifications"}



def test_inspect_of_a_job_graph_shows_the_data_of_each_source():
    stats = {"orders": {"row_count": 2000, "column_count": 4, "partitions": 4,
                        "size_bytes": 2048, "columns": {"amount": "double"}},
             "customers": {"row_count": 49, "column_count": 3, "partitions": 1,
                           "size_bytes": 1024}}
    text = inspect_text({"job_id": "g", "state": "COMPLETED", "data_stats": stats,
                         "trace": {}, "steps": {}})
    assert "  orders: 2,000 rows · 4 columns · 4 partitions · 2 KiB" in text
    assert "  customers: 49 rows · 3 columns · 1 partitions · 1 KiB" in text
    assert "columns: amount (double)" in text
