"""Debug views of workflows and runs: the plan as Mermaid text or a plotly DAG, the
recorded trace as a Gantt timeline, and the text that ``raysight inspect <job_id>`` prints.

The Ray dashboard shows tasks, not raysight's logical plan; these views fill that gap. They read
plans and JSON-ready dicts (``result.json``, ``TraceInfo.to_dict()``) and never touch Ray, so a
finished run's folder can be inspected on any machine.

>>> flow = plan >> parallel(clean, stats) >> publish.when(enabled)  # doctest: +SKIP
>>> print(to_mermaid(flow))                                          # doctest: +SKIP
flowchart LR
    wf_start(("start"))
    t_plan["plan<br/>1 CPU"]
    ...
>>> timeline_figure(result["trace"]).show()                          # doctest: +SKIP
>>> print(inspect_text(json.loads(Path("runs/job_1/result.json").read_text())))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import plotly.graph_objects as go
import plotly.io as pio

from raysight.engine.resources import Resources, format_bytes
from raysight.engine.retry import RetryPolicy
from raysight.engine.trace import TraceInfo
from raysight.engine.workflow import (
    Branch,
    Nested,
    Observed,
    Parallel,
    Pass,
    Retrying,
    Sequence,
    Step,
    Task,
    TimeLimited,
    When,
)

NodeKind = Literal["task", "decision", "fork", "join", "start", "end"]

#: bar and marker colours of attempt states (and of DAG nodes when a trace is given)
STATE_COLORS = {
    "succeeded": "#2e7d32",
    "retried": "#f9a825",
    "failed": "#c62828",
    "timed_out": "#6a1b9a",
    "cancelled": "#757575",
    "skipped": "#90a4ae",
    "restored": "#0277bd",  # output taken from a checkpoint, not recomputed
    "running": "#ef6c00",  # started, not ended: still running, or where an interrupted run stopped
    "not run": "#cfd8dc",
}
_MODE_COLORS = {"apply": "#1565c0", "map": "#00838f", "fanout": "#4527a0", "driver": "#5d4037",
                "dynamic": "#6a1b9a", "actor": "#ef6c00"}
_MODE_TEXT = {"apply": "", "map": "map ×N", "fanout": "fan-out", "driver": "driver",
              "dynamic": "dynamic (returns steps)", "actor": "actor"}
_CONTROL_COLOR = "#546e7a"
# how bad a final state is, when the partitions of one step ended differently
_SEVERITY = ("failed", "timed_out", "cancelled", "running", "retried", "succeeded", "restored",
             "skipped")


# ---------------------------------------------------------------------------------------------
# The plan as a graph


@dataclass
class GraphNode:
    """A node of a plan graph: a task, or a control node (condition, fork, join, start, end)."""

    id: str  # a valid Mermaid id, unique in the graph
    name: str  # the step name, or the control node's label
    kind: NodeKind
    details: list[str] = field(default_factory=list)  # label lines shown under the name
    task: Task | None = None
    group: str | None = None  # innermost subgraph (nested workflow or wrapper)


@dataclass(frozen=True)
class GraphEdge:
    src: str
    dst: str
    label: str = ""  # "run"/"skip" after a when, "true"/"false"/"skip" after a branch


@dataclass
class GraphGroup:
    """A boxed part of the plan: a nested workflow, or a retry/timeout/observer wrapper."""

    id: str
    title: str
    parent: str | None


@dataclass
class PlanGraph:
    """A plan as nodes and edges; every edge goes from an earlier node to a later one."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    groups: list[GraphGroup]

    @property
    def tasks(self) -> list[GraphNode]:
        return [n for n in self.nodes if n.kind == "task"]

    def node(self, node_id: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == node_id)


Frontier = list[tuple[str, str]]  # open edge ends: (source node id, edge label)


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[GraphNode] = []
        self.edges: list[GraphEdge] = []
        self.groups: list[GraphGroup] = []
        self._ids: set[str] = set()
        self._counts: dict[str, int] = defaultdict(int)
        self._stack: list[str] = []

    def _new_id(self, base: str) -> str:
        # ids like "end" or "graph" are Mermaid keywords; a prefix keeps every id safe
        slug = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "step"
        candidate, n = slug, 1
        while candidate in self._ids:
            n += 1
            candidate = f"{slug}_{n}"
        self._ids.add(candidate)
        return candidate

    def add(self, kind: NodeKind, name: str, details: list[str] | None = None,
            task: Task | None = None) -> str:
        if kind == "task":
            node_id = self._new_id(f"t_{name}")
        elif kind in ("start", "end"):
            node_id = self._new_id(f"wf_{kind}")
        else:
            self._counts[kind] += 1
            node_id = self._new_id(f"{kind}{self._counts[kind]}")
        group = self._stack[-1] if self._stack else None
        self.nodes.append(GraphNode(node_id, name, kind, details or [], task, group))
        return node_id

    def connect(self, frontier: Frontier, dst: str) -> None:
        for src, label in frontier:
            edge = GraphEdge(src, dst, label)
            if edge not in self.edges:
                self.edges.append(edge)

    def walk(self, node: Step, frontier: Frontier) -> Frontier:
        """Add ``node`` after the open ends in ``frontier``; returns its own open ends."""
        if isinstance(node, Task):
            return self._task(node, [], frontier)
        if isinstance(node, Sequence):
            for child in node.steps:
                frontier = self.walk(child, frontier)
            return frontier
        if isinstance(node, Pass):
            return frontier
        if isinstance(node, Parallel):
            fork = self.add("fork", f"parallel ×{len(node.branches)}", ["fail-fast"])
            self.connect(frontier, fork)
            ends = [end for b in node.branches for end in self.walk(b, [(fork, "")])]
            join = self.add("join", "join")
            self.connect(ends, join)
            return [(join, "")]
        if isinstance(node, When):
            cond = self.add("decision", _condition_label("when", node.description))
            self.connect(frontier, cond)
            return self.walk(node.inner, [(cond, "run")]) + [(cond, "skip")]
        if isinstance(node, Branch):
            cond = self.add("decision", _condition_label("if", node.description))
            self.connect(frontier, cond)
            ends = self.walk(node.if_true, [(cond, "true")])
            if node.if_false is None:
                return ends + [(cond, "skip")]
            return ends + self.walk(node.if_false, [(cond, "false")])
        if isinstance(node, Nested):
            params = f" · params: {', '.join(sorted(node.params))}" if node.params else ""
            return self._grouped(f"nested: {node.name}{params}", node.inner, frontier)
        if isinstance(node, (Retrying, TimeLimited, Observed)):
            notes: list[str] = []
            inner: Step = node
            while isinstance(inner, (Retrying, TimeLimited, Observed)):
                notes.append(_wrapper_note(inner))
                inner = inner.inner
            if isinstance(inner, Task):  # a wrapped single task: annotate the task itself
                return self._task(inner, notes, frontier)
            return self._grouped(" · ".join(notes), inner, frontier)
        raise TypeError(f"not a workflow step: {node!r}")

    def _task(self, task: Task, notes: list[str], frontier: Frontier) -> Frontier:
        node_id = self.add("task", task.name, _task_details(task, notes), task)
        self.connect(frontier, node_id)
        return [(node_id, "")]

    def _grouped(self, title: str, inner: Step, frontier: Frontier) -> Frontier:
        group = self._new_id(f"sg_{len(self.groups) + 1}")
        self.groups.append(GraphGroup(group, title, self._stack[-1] if self._stack else None))
        self._stack.append(group)
        try:
            return self.walk(inner, frontier)
        finally:
            self._stack.pop()


def plan_graph(plan: Step) -> PlanGraph:
    """The plan as a graph from a start node to an end node: one node per task occurrence,
    a decision node per ``when``/``branch``, a fork and a join node per ``parallel``."""
    builder = _Builder()
    start = builder.add("start", "start")
    ends = builder.walk(plan, [(start, "")])
    builder.connect(ends, builder.add("end", "end"))
    return PlanGraph(builder.nodes, builder.edges, builder.groups)


def _condition_label(keyword: str, description: str) -> str:
    return f"{keyword}: {description}" if description else f"{keyword} (condition)"


def _retry_note(policy: RetryPolicy) -> str:
    count = "∞" if math.isinf(policy.max_retries) else f"{int(policy.max_retries)}"
    return f"retry ≤{count}"


def _wrapper_note(node: Retrying | TimeLimited | Observed) -> str:
    if isinstance(node, Retrying):
        return _retry_note(node.policy)
    if isinstance(node, TimeLimited):
        return f"timeout {node.timeout_s:g} s"
    return f"observed by {type(node.observer).__name__}"


def _resources_text(res: Resources) -> str:
    parts = [f"{res.num_cpus:g} CPU"]
    if res.num_gpus:
        parts.append(f"{res.num_gpus:g} GPU")
    if res.memory:
        parts.append(format_bytes(res.memory))
    parts += [f"{k}:{v:g}" for k, v in sorted(res.resources.items())]
    return " · ".join(parts)


def _task_details(task: Task, notes: list[str]) -> list[str]:
    mode = _MODE_TEXT.get(task.mode, task.mode)
    if task.mode == "actor":
        mode += f" ×{getattr(task, 'concurrency', 1)}"
    # driver steps run in the driver process and ask Ray for nothing
    what = [mode] if task.mode == "driver" else [mode, _resources_text(task.resources)]
    notes = list(notes)
    if task.retry is not None:
        notes.append(_retry_note(task.retry))
    if task.timeout_s is not None:
        notes.append(f"timeout {task.timeout_s:g} s")
    if task.priority != 50:
        notes.append(f"priority {task.priority}")
    # engine features that not every checkout's Task has yet: read them defensively
    if getattr(task, "circuit_breaker", None):
        notes.append(f"breaker {task.circuit_breaker}")
    lock = getattr(task, "lock", None)
    if lock is not None:
        notes.append(f"lock {getattr(lock, 'key', lock)}")
    if getattr(task, "compensate", None) is not None:
        notes.append("compensated")
    if getattr(task, "checkpoint", True) is False:
        notes.append("no checkpoint")
    lines = [" · ".join(p for p in what if p)]
    if notes:
        lines.append(" · ".join(notes))
    return [line for line in lines if line]


# ---------------------------------------------------------------------------------------------
# Mermaid

_SHAPES: dict[str, tuple[str, str]] = {
    "apply": ('["', '"]'),
    "map": ('[["', '"]]'),  # a stacked (subroutine) box: one task per partition
    "fanout": ('[/"', '"/]'),
    "driver": ('("', '")'),
    "dynamic": ('[\\"', '"\\]'),
    "actor": ('>"', '"]'),
    "decision": ('{"', '"}'),
    "fork": ('{{"', '"}}'),
    "join": ('(("', '"))'),
    "start": ('(("', '"))'),
    "end": ('(("', '"))'),
}
_MERMAID_STATE_STYLE = {
    "succeeded": "fill:#e8f5e9,stroke:#2e7d32",
    "failed": "fill:#ffebee,stroke:#c62828",
    "timed_out": "fill:#f3e5f5,stroke:#6a1b9a",
    "cancelled": "fill:#eeeeee,stroke:#757575",
    "retried": "fill:#fff8e1,stroke:#f9a825",
    "skipped": "fill:#eceff1,stroke:#90a4ae,stroke-dasharray:4 3",
    "restored": "fill:#e1f5fe,stroke:#0277bd",
    "running": "fill:#fff3e0,stroke:#ef6c00,stroke-dasharray:2 2",
}


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (Mermaid's ``#name;`` entity codes)."""
    return (text.replace("#", "#35;").replace('"', "#quot;")
            .replace("<", "#lt;").replace(">", "#gt;"))


def to_mermaid(plan: Step, trace: Mapping[str, Any] | TraceInfo | None = None) -> str:
    """A Mermaid ``flowchart LR`` of the plan; with a trace, tasks are coloured by their state
    and labelled with attempts and time.

    Tasks show their mode and resources (map tasks as stacked boxes), ``when``/``branch`` are
    decision nodes with their condition, ``parallel`` forks and joins, nested workflows and
    retry/timeout wrappers around several steps are subgraphs titled with what they add.
    """
    graph = plan_graph(plan)
    summaries = {s.step: s for s in summarize_steps(trace)} if trace is not None else {}
    children: dict[str | None, list[GraphGroup]] = defaultdict(list)
    for g in graph.groups:
        children[g.parent].append(g)
    used = {n.group for n in graph.nodes}

    def non_empty(group: GraphGroup) -> bool:
        return group.id in used or any(non_empty(c) for c in children[group.id])

    def node_line(node: GraphNode) -> str:
        lines = [node.name, *node.details]
        summary = summaries.get(node.name) if node.kind == "task" else None
        if summary is not None:
            lines.append(_summary_note(summary))
        label = "<br/>".join(_mermaid_text(line) for line in lines)
        shape = node.task.mode if node.task is not None else node.kind
        opening, closing = _SHAPES.get(shape, _SHAPES["apply"])
        return f"{node.id}{opening}{label}{closing}"

    out = ["flowchart LR"]

    def emit(group: str | None, indent: str) -> None:
        out.extend(indent + node_line(n) for n in graph.nodes if n.group == group)
        for child in children[group]:
            if non_empty(child):
                out.append(f'{indent}subgraph {child.id}["{_mermaid_text(child.title)}"]')
                emit(child.id, indent + "    ")
                out.append(f"{indent}end")

    emit(None, "    ")
    for e in graph.edges:
        arrow = f'-->|"{_mermaid_text(e.label)}"|' if e.label else "-->"
        out.append(f"    {e.src} {arrow} {e.dst}")
    if summaries:
        by_state: dict[str, list[str]] = defaultdict(list)
        for n in graph.tasks:
            if n.name in summaries:
                by_state[summaries[n.name].state].append(n.id)
        for state, ids in by_state.items():
            if state in _MERMAID_STATE_STYLE:
                out.append(f"    classDef {state} {_MERMAID_STATE_STYLE[state]}")
                out.append(f"    class {','.join(ids)} {state}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The plan as a plotly figure


def _layout(graph: PlanGraph) -> tuple[dict[str, tuple[float, float]],
                                       dict[GraphEdge, list[tuple[float, float]]]]:
    """Node positions (x = longest-path layer, y = slot in the layer) and each edge's polyline.

    An edge that spans several layers gets one virtual point per layer it crosses (as in
    Sugiyama's method), so long edges such as a ``when``'s skip route around the nodes in
    between instead of through them; slots are ordered by the mean height of predecessors.
    """
    seq = {n.id: i for i, n in enumerate(graph.nodes)}
    preds: dict[str, list[str]] = defaultdict(list)
    for e in graph.edges:
        preds[e.dst].append(e.src)
    layer: dict[str, int] = {}
    for n in graph.nodes:  # creation order is a topological order (edges point forward)
        layer[n.id] = max((layer[p] + 1 for p in preds[n.id]), default=0)

    slots: dict[int, list[str]] = defaultdict(list)
    item_preds: dict[str, list[str]] = defaultdict(list)
    order_key: dict[str, float] = {}
    chains: dict[GraphEdge, list[str]] = {}
    for n in graph.nodes:
        slots[layer[n.id]].append(n.id)
        order_key[n.id] = seq[n.id]
    for k, e in enumerate(graph.edges):
        chain = [e.src]
        for depth in range(layer[e.src] + 1, layer[e.dst]):
            virtual = f"~{k}~{depth}"
            slots[depth].append(virtual)
            item_preds[virtual].append(chain[-1])
            order_key[virtual] = seq[e.dst] - 0.5
            chain.append(virtual)
        item_preds[e.dst].append(chain[-1])
        chain.append(e.dst)
        chains[e] = chain

    y: dict[str, float] = {}
    for depth in sorted(slots):
        items = slots[depth]

        def barycenter(item: str) -> float:
            ps = item_preds[item]
            return sum(y[p] for p in ps) / len(ps) if ps else 0.0

        items.sort(key=lambda it: (-barycenter(it), order_key[it]))
        for i, item in enumerate(items):
            y[item] = (len(items) - 1) / 2 - i
    x = {item: float(depth) for depth, items in slots.items() for item in items}
    pos = {n.id: (x[n.id], y[n.id]) for n in graph.nodes}
    paths = {e: [(x[i], y[i]) for i in chain] for e, chain in chains.items()}
    return pos, paths


_NODE_STYLE: dict[str, tuple[str, str, int]] = {  # legend name, marker symbol, size
    "apply": ("task", "square", 22),
    "map": ("map task (per partition)", "star-square", 24),
    "fanout": ("fan-out task", "triangle-right", 24),
    "driver": ("driver step", "circle", 22),
    "dynamic": ("dynamic task", "triangle-right-dot", 24),
    "actor": ("actor task", "pentagon", 24),
    "decision": ("condition", "diamond", 22),
    "fork": ("parallel fork", "triangle-right-open", 18),
    "join": ("parallel join", "triangle-left-open", 18),
    "start": ("start / end", "circle-open", 16),
    "end": ("start / end", "circle-open", 16),
}


def dag_figure(plan: Step, trace: Mapping[str, Any] | TraceInfo | None = None,
               title: str = "Workflow plan") -> go.Figure:
    """The plan's DAG laid out left to right; hover a node for its options. With a trace,
    task markers are coloured by state.

    Each node trace carries ``meta={"kind": ...}`` and the node ids of :func:`plan_graph` as
    ``customdata``; edges are the trace with ``meta={"kind": "edges"}`` (polylines separated
    by ``None``, from source to target).
    """
    graph = plan_graph(plan)
    pos, paths = _layout(graph)
    summaries = {s.step: s for s in summarize_steps(trace)} if trace is not None else {}
    fig = go.Figure()

    xs: list[float | None] = []
    ys: list[float | None] = []
    for path in paths.values():
        xs += [p[0] for p in path] + [None]
        ys += [p[1] for p in path] + [None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="edges", meta={"kind": "edges"},
                             line={"color": "#90a4ae", "width": 1.5}, hoverinfo="skip",
                             showlegend=False))
    for e, path in paths.items():
        (x0, y0), (x1, y1) = path[-2], path[-1]
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                           text="", showarrow=True, arrowhead=2, arrowsize=1.2, standoff=12,
                           arrowcolor="#90a4ae")
        if e.label:
            (a, b), (c, d) = path[0], path[1]
            fig.add_annotation(x=(a + c) / 2, y=(b + d) / 2, text=e.label, showarrow=False,
                               font={"size": 10, "color": "#455a64"}, bgcolor="white")

    groups: dict[str, list[GraphNode]] = defaultdict(list)
    for n in graph.nodes:
        groups[n.task.mode if n.task is not None else n.kind].append(n)
    shown_legend: set[str] = set()
    for key, nodes in groups.items():
        legend, symbol, size = _NODE_STYLE.get(key, _NODE_STYLE["apply"])
        if trace is not None and key in _MODE_COLORS:
            colors = [STATE_COLORS[summaries[n.name].state if n.name in summaries else "not run"]
                      for n in nodes]
        else:
            colors = [_MODE_COLORS.get(key, _CONTROL_COLOR)] * len(nodes)
        fig.add_trace(go.Scatter(
            x=[pos[n.id][0] for n in nodes], y=[pos[n.id][1] for n in nodes],
            mode="markers+text", name=legend, legendgroup=legend,
            showlegend=legend not in shown_legend, meta={"kind": key},
            marker={"symbol": symbol, "size": size, "color": colors,
                    "line": {"width": 1, "color": "#263238"}},
            text=[html.escape(_short_label(n)) for n in nodes], textposition="bottom center",
            customdata=[n.id for n in nodes],
            hovertext=[_node_hover(n, summaries.get(n.name)) for n in nodes],
            hoverinfo="text",
        ))
        shown_legend.add(legend)

    for g in graph.groups:
        members = [pos[n.id] for n in graph.nodes if _in_group(graph, n.group, g.id)]
        if not members:
            continue
        x0, x1 = min(p[0] for p in members) - 0.4, max(p[0] for p in members) + 0.4
        y0, y1 = min(p[1] for p in members) - 0.45, max(p[1] for p in members) + 0.4
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, layer="below",
                      line={"color": "#78909c", "dash": "dash", "width": 1},
                      fillcolor="rgba(236,239,241,0.35)")
        fig.add_annotation(x=x0, y=y1, text=html.escape(g.title), showarrow=False,
                           xanchor="left", yanchor="bottom", font={"size": 10})

    width = max((len(items) for items in _by_layer(pos).values()), default=1)
    fig.update_layout(
        title=title, template="plotly_white", hovermode="closest",
        height=max(320, 110 * width + 160),
        xaxis={"visible": False}, yaxis={"visible": False},
        legend={"orientation": "h", "y": -0.05},
        margin={"l": 20, "r": 20, "t": 60, "b": 40},
    )
    return fig


def _by_layer(pos: Mapping[str, tuple[float, float]]) -> dict[float, list[str]]:
    layers: dict[float, list[str]] = defaultdict(list)
    for node_id, (x, _) in pos.items():
        layers[x].append(node_id)
    return layers


def _in_group(graph: PlanGraph, group: str | None, target: str) -> bool:
    parents = {g.id: g.parent for g in graph.groups}
    while group is not None:
        if group == target:
            return True
        group = parents.get(group)
    return False


def _short_label(node: GraphNode) -> str:
    if node.kind == "task":
        return node.name
    if node.kind == "decision":
        return node.name.split(":")[0].split(" ")[0]
    return node.name if node.kind in ("start", "end") else ""


def _node_hover(node: GraphNode, summary: StepSummary | None) -> str:
    lines = [f"<b>{html.escape(node.name)}</b>", *map(html.escape, node.details)]
    if node.task is not None:
        t = node.task
        lines.append(f"mode: {t.mode} · priority {t.priority} · version {html.escape(t.version)}")
        if t.description:
            lines.append(html.escape(t.description))
    if summary is not None:
        lines.append(html.escape(_summary_note(summary)))
    return "<br>".join(lines)


# ---------------------------------------------------------------------------------------------
# The trace


def _records(trace: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every attempt record of a trace dict, nested workflows' (child traces') included."""
    yield from trace.get("records") or []
    for child in trace.get("children") or []:
        yield from _records(child)


def _as_dict(trace: Mapping[str, Any] | TraceInfo | None) -> Mapping[str, Any]:
    if trace is None:
        return {}
    return trace.to_dict() if isinstance(trace, TraceInfo) else trace


@dataclass
class StepSummary:
    """One step of a run, summed over its attempts and partitions."""

    step: str
    state: str  # final state: the worst final state of its partitions
    attempts: int  # attempts that ran (skips excluded)
    retries: int
    tasks: int  # distinct partitions (1 for an unmapped step, 0 when skipped)
    total_s: float  # sum of attempt durations
    wall_s: float | None  # first start to last end
    rows: int | None  # rows of the successful attempts, where reported
    error: str | None = None  # message of the last failed attempt


def summarize_steps(trace: Mapping[str, Any] | TraceInfo | None,
                    stats: Mapping[str, Any] | None = None) -> list[StepSummary]:
    """A summary per step name in order of first appearance, from the trace records; steps
    that only appear in ``stats`` (``result["steps"]``) are summarised from their counts."""
    by_step: dict[str, list[dict[str, Any]]] = {}
    for record in _records(_as_dict(trace)):
        by_step.setdefault(record["step"], []).append(record)
    out = [_summarize(step, records) for step, records in by_step.items()]
    for step, s in (stats or {}).items():
        if step not in by_step:
            out.append(_summarize_stats(step, s))
    return out


def _summarize(step: str, records: list[dict[str, Any]]) -> StepSummary:
    ran = [r for r in records if r.get("state") not in ("skipped", "restored")]
    final: dict[Any, dict[str, Any]] = {}
    for r in records:  # records arrive in attempt order per partition
        if r.get("state") != "skipped":
            final[r.get("partition")] = r
    states = {r["state"] for r in final.values()} or {"skipped"}
    state = next(s for s in (*_SEVERITY, *sorted(states)) if s in states)
    starts = [r["started_at"] for r in ran if r.get("started_at") is not None]
    ends = [r["ended_at"] for r in ran if r.get("ended_at") is not None]
    rows = [r["rows"] for r in final.values()
            if r["state"] == "succeeded" and r.get("rows") is not None]
    failures = [r for r in ran if r.get("error")]
    return StepSummary(
        step=step, state=state, attempts=len(ran),
        retries=sum(r["state"] == "retried" for r in ran), tasks=len(final),
        total_s=sum(_duration(r) or 0.0 for r in ran),
        wall_s=max(ends) - min(starts) if starts and ends else None,
        rows=sum(rows) if rows else None,
        error=_error_text(failures[-1]["error"]) if failures else None,
    )


def _summarize_stats(step: str, stats: Mapping[str, Any]) -> StepSummary:
    ok, failed = stats.get("success_count", 0), stats.get("failure_count", 0)
    state = "failed" if failed > stats.get("retry_count", 0) else (
        "succeeded" if ok else "skipped")
    return StepSummary(step, state, ok + failed, stats.get("retry_count", 0),
                       1 if ok + failed else 0, stats.get("total_execution_time_s", 0.0), None,
                       None)


def _duration(record: Mapping[str, Any]) -> float | None:
    if record.get("started_at") is None or record.get("ended_at") is None:
        return None
    return float(record["ended_at"]) - float(record["started_at"])


def _error_text(error: Mapping[str, Any] | None) -> str:
    if not error:
        return ""
    kind = error.get("error") or error.get("category") or "error"
    return f"{kind}: {error.get('message', '')}"


def _summary_note(s: StepSummary) -> str:
    note = f"{s.state}"
    if s.attempts:
        note += f" · {s.attempts} attempt{'s' if s.attempts != 1 else ''}"
    if s.wall_s is not None:
        note += f" · {_fmt_s(s.wall_s)} s"
    return note


def _partition_key(record: Mapping[str, Any]) -> int:
    partition = record.get("partition")
    return -1 if partition is None else int(partition)


def _row_label(record: Mapping[str, Any]) -> str:
    partition = record.get("partition")
    return record["step"] if partition is None else f"{record['step']}[{partition}]"


def timeline_figure(trace: Mapping[str, Any] | TraceInfo,
                    title: str = "Execution timeline") -> go.Figure:
    """A Gantt chart of the recorded attempts: one row per step (per partition for mapped
    steps), one bar per attempt from its start to its end, coloured by state, so retried
    attempts are separate bars; skipped steps and instantaneous events are markers.

    x is seconds since the trace started. One trace per state (``meta={"kind": "bars" |
    "markers", "state": ...}``); each point's ``customdata`` is ``[attempt, partition,
    duration_s, worker_pid, node_id, rows, error, started_at ISO]``.
    """
    data = _as_dict(trace)
    records = [r for r in _records(data) if r.get("started_at") is not None]
    origin = data.get("started_at") or min((r["started_at"] for r in records), default=0.0)
    # steps in order of first appearance, the partitions of a step in partition order
    first = {step: i for i, step in reversed(list(enumerate(r["step"] for r in records)))}
    ordered = sorted(records, key=lambda r: (first[r["step"]], _partition_key(r)))
    rows = list(dict.fromkeys(_row_label(r) for r in ordered))

    bars: dict[str, list[dict[str, Any]]] = defaultdict(list)
    marks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        d = _duration(r)
        (bars if d and d > 0 and r["state"] != "skipped" else marks)[r["state"]].append(r)

    fig = go.Figure()
    hover = ("<b>%{y}</b> · STATE<br>attempt %{customdata[0]}"
             "<br>start +%{base:.3f} s (%{customdata[7]})<br>duration %{customdata[2]:.3f} s"
             "<br>worker pid %{customdata[3]} · node %{customdata[4]}"
             "<br>rows %{customdata[5]}<br>%{customdata[6]}<extra></extra>")
    for state, rs in bars.items():
        fig.add_trace(go.Bar(
            orientation="h", name=state, legendgroup=state, meta={"kind": "bars", "state": state},
            y=[_row_label(r) for r in rs], base=[r["started_at"] - origin for r in rs],
            x=[_duration(r) for r in rs], customdata=[_custom(r) for r in rs],
            marker={"color": STATE_COLORS.get(state, "#455a64"),
                    "line": {"width": 0}},
            hovertemplate=hover.replace("STATE", state),
        ))
    for state, rs in marks.items():
        fig.add_trace(go.Scatter(
            mode="markers", name=state, legendgroup=state,
            showlegend=state not in bars, meta={"kind": "markers", "state": state},
            y=[_row_label(r) for r in rs], x=[r["started_at"] - origin for r in rs],
            customdata=[_custom(r) for r in rs],
            marker={"symbol": _MARKER_SYMBOLS.get(state, "x"), "size": 12,
                    "line": {"width": 2}, "color": STATE_COLORS.get(state, "#455a64")},
            hovertemplate=(f"<b>%{{y}}</b> · {state}<br>at +%{{x:.3f}} s (%{{customdata[7]}})"
                           "<extra></extra>") if state in _MARKER_SYMBOLS else
            hover.replace("STATE", state).replace("%{base:.3f}", "%{x:.3f}"),
        ))
    started = _iso(origin) if records else "no attempts recorded"
    fig.update_layout(
        title=f"{title} (from {started})", template="plotly_white", barmode="overlay",
        height=max(300, 28 * len(rows) + 160), bargap=0.25,
        xaxis={"title": "seconds since start", "rangemode": "tozero"},
        yaxis={"categoryorder": "array", "categoryarray": rows, "autorange": "reversed",
               "title": None},
        legend={"title": "state"}, margin={"l": 20, "r": 20, "t": 60, "b": 40},
    )
    return fig


_MARKER_SYMBOLS = {"skipped": "circle-open", "restored": "square-open"}


def _custom(r: Mapping[str, Any]) -> list[Any]:
    node = r.get("node_id")
    return [r.get("attempt"), r.get("partition"), _duration(r) or 0.0, r.get("worker_pid"),
            node[:12] if isinstance(node, str) else node,
            r.get("rows"), html.escape(_error_text(r.get("error")))[:300], _iso(r["started_at"])]


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------
# raysight inspect


def inspect_text(result: Mapping[str, Any]) -> str:
    """What ``raysight inspect <job_id>`` prints for a ``result.json`` dict: the job's state and
    times, data stats, a table of steps, outputs, warnings and errors (plain aligned text)."""
    trace = result.get("trace") or {}
    out = [f"Job {result.get('job_id', '?')}: {result.get('state', '?')}"]
    facts = [("user", result.get("user_id")), ("analysis", result.get("analysis_type")),
             ("priority", result.get("priority"))]
    if any(v is not None for _, v in facts):
        out.append("  " + "   ".join(f"{k}: {v}" for k, v in facts if v is not None))
    out.append(f"  started:  {result.get('started_at', '-')}")
    out.append(f"  finished: {result.get('finished_at', '-')}")
    if result.get("execution_time_s") is not None:
        out.append(f"  elapsed:  {_fmt_s(result['execution_time_s'])} s")
    if result.get("run_dir"):
        out.append(f"  run dir:  {result['run_dir']}")

    stats = result.get("data_stats") or {}
    if stats:
        out += ["", "Data"]
        parts = []
        if "row_count" in stats:
            parts.append(f"{stats['row_count']:,} rows")
        if "column_count" in stats:
            parts.append(f"{stats['column_count']} columns")
        if "partitions" in stats:
            parts.append(f"{stats['partitions']} partitions")
        if "size_bytes" in stats:
            parts.append(format_bytes(stats["size_bytes"]))
        out.append("  " + " · ".join(parts))
        columns = stats.get("columns") or {}
        if columns:
            text = ", ".join(f"{k} ({v})" for k, v in columns.items())
            out += textwrap.wrap(text, 96, initial_indent="  columns: ",
                                 subsequent_indent=" " * 11)

    summaries = summarize_steps(trace, result.get("steps"))
    out += ["", "Steps"]
    if summaries:
        table = [["STEP", "STATE", "ATTEMPTS", "RETRIES", "TASKS", "WALL_S", "TOTAL_S", "ROWS"]]
        table += [[s.step, s.state, str(s.attempts), str(s.retries), str(s.tasks),
                   _fmt_s(s.wall_s), _fmt_s(s.total_s if s.attempts else None),
                   "-" if s.rows is None else f"{s.rows:,}"] for s in summaries]
        out += ["  " + line for line in _align(table, numeric_from=2)]
    else:
        out.append("  (no steps recorded)")
    path = trace.get("execution_path") or result.get("execution_path") or []
    if path:
        out += textwrap.wrap(" → ".join(path), 96, initial_indent="  path: ",
                             subsequent_indent=" " * 8)

    if result.get("running_steps"):
        verb = "running" if result.get("state") == "RUNNING" else "stopped in"
        out.append(f"  {verb}: {', '.join(result['running_steps'])}")
    if result.get("checkpointed_steps") is not None and result.get("finished_at") is None:
        done = ", ".join(result["checkpointed_steps"]) or "(none)"
        out += textwrap.wrap(done, 96, initial_indent="  checkpointed: ",
                             subsequent_indent=" " * 16)
    driver = result.get("driver") or {}
    if result.get("state") in ("INTERRUPTED", "CANCELED"):
        run_root = os.path.dirname(str(result.get("run_dir", "")).rstrip("/")) or "runs"
        out.append(f"  to finish it: raysight resume {result.get('job_id')} --run-dir {run_root}")
    elif result.get("state") == "RUNNING" and driver:
        out.append(f"  driver: pid {driver.get('pid')} on {driver.get('host')}")

    failed = [r for r in _records(trace) if r.get("error")]
    if failed:
        out += ["", "Failed attempts"]
        for r in failed:
            where = _row_label(r)
            out.append(f"  {where} attempt {r.get('attempt')} ({r['state']}): "
                       f"{_error_text(r['error'])}")

    metrics = result.get("metrics") or {}
    if metrics:
        out += ["", "Metrics"]
        width = max(len(k) for k in metrics)
        out += [f"  {k.ljust(width)}  {_fmt_value(v)}" for k, v in sorted(metrics.items())]
    outputs = result.get("outputs") or []
    out += ["", "Outputs"] + ([f"  {o}" for o in outputs] or ["  (none)"])
    warnings = result.get("warnings") or []
    if warnings:
        out += ["", "Warnings"] + [f"  - {w}" for w in warnings]
    errors = result.get("errors") or []
    if errors:
        out += ["", "Errors"]
        for e in errors:
            step = f" (step {e['step']})" if e.get("step") else ""
            out.append(f"  - [{e.get('category', 'error')}] {_error_text(e)}{step}")
            tb = (e.get("traceback") or "").rstrip().splitlines()
            out += [f"      {line}" for line in tb[-12:]]
    return "\n".join(out) + "\n"


def _align(table: list[list[str]], numeric_from: int) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [c.rjust(w) if (i >= numeric_from and n) else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 100 else f"{seconds:.1f}"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Files in the run directory


def write_debug_views(run_dir: str | Path, plan: Step | None,
                      result: Mapping[str, Any]) -> list[str]:
    """Write ``dag.mmd`` (when the plan is known) and ``timeline.html`` into the run directory;
    returns the names written.

    ``timeline.html`` is one self-contained page: the timeline, the DAG (when the plan is
    known) and the ``inspect`` text, with plotly.js inlined once and nothing loaded from a URL.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trace = result.get("trace") or {}
    written = []
    if plan is not None:
        _write_atomic(run_dir / "dag.mmd", to_mermaid(plan, trace=trace or None))
        written.append("dag.mmd")
    job = str(result.get("job_id", ""))
    # plotly reads a few HTML tags in titles; a job id is shown as text
    figures = [("Execution timeline",
                timeline_figure(trace, title=f"Execution timeline {html.escape(job)}"))]
    if plan is not None:
        figures.append(("Workflow plan", dag_figure(plan, trace=trace or None,
                                                    title=f"Workflow plan {html.escape(job)}")))
    sections = []
    for i, (heading, fig) in enumerate(figures):
        fragment = pio.to_html(fig, full_html=False, include_plotlyjs=i == 0,
                               config={"displaylogo": False})
        sections.append(f"<h2>{html.escape(heading)}</h2>\n{fragment}")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>raysight debug views: {html.escape(job)}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1.5rem}"
        "pre{background:#f5f5f5;padding:1rem;overflow-x:auto}</style></head><body>\n"
        f"<h1>Job {html.escape(job)}: {html.escape(str(result.get('state', '')))}</h1>\n"
        + "\n".join(sections)
        + f"\n<h2>Inspect</h2>\n<pre>{html.escape(inspect_text(result))}</pre>\n</body></html>\n"
    )
    _write_atomic(run_dir / "timeline.html", page)
    written.append("timeline.html")
    return written


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


__all__ = [
    "STATE_COLORS", "GraphEdge", "GraphGroup", "GraphNode", "PlanGraph", "StepSummary",
    "dag_figure", "inspect_text", "plan_graph", "summarize_steps", "timeline_figure",
    "to_mermaid", "write_debug_views",
]
