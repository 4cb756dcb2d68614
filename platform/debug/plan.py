"""The logical plan of a workflow as a graph (steps, decisions, fork/join), and as Mermaid text.

The Ray dashboard shows tasks, not raysight's logical plan; these views fill that gap. They read
plans and JSON-ready dicts and never touch Ray.

>>> flow = plan >> parallel(clean, stats) >> publish.when(enabled)  # doctest: +SKIP
>>> print(to_mermaid(flow))                                          # doctest: +SKIP
flowchart LR
    wf_start(("start"))
    t_plan["plan<br/>1 CPU"]
    ...
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from raysight.debug.summary import summarize_steps, summary_note
from raysight.engine.graph import Graph
from raysight.engine.resources import Resources, format_bytes
from raysight.engine.retry import RetryPolicy
from raysight.engine.trace import TraceInfo
from raysight.engine.workflow import (
    Branch,
    Nested,
    Observed,
    Parallel,
    Pass,
    Recovered,
    Retrying,
    Sequence,
    Step,
    Task,
    TimeLimited,
    When,
)

NodeKind = Literal["task", "decision", "fork", "join", "start", "end"]

MODE_COLORS = {
    "apply": "#1565c0",
    "map": "#00838f",
    "fanout": "#4527a0",
    "driver": "#5d4037",
    "dynamic": "#6a1b9a",
    "actor": "#ef6c00",
    "reduce": "#00695c",
}
_MODE_TEXT = {
    "apply": "",
    "map": "map ×N",
    "fanout": "fan-out",
    "driver": "driver",
    "dynamic": "dynamic (returns steps)",
    "actor": "actor",
    "reduce": "tree reduce",
}
CONTROL_COLOR = "#546e7a"

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
    group: str | None = None  # innermost subgraph (nested workflow, wrapper or graph node)
    label: str | None = None  # shown instead of the name (a task without its node prefix)


@dataclass(frozen=True)
class GraphEdge:
    src: str
    dst: str
    label: str = ""  # "run"/"skip" after a when, "true"/"false"/"skip" after a branch


@dataclass
class GraphGroup:
    """A boxed part of the plan: a nested workflow, a retry/timeout/observer wrapper, or a
    node of a graph (``node`` is its name)."""

    id: str
    title: str
    parent: str | None
    node: str | None = None


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
        self._prefixes: list[str] = []  # names of the graph nodes being walked, outermost first

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
        prefix = "".join(f"{p}/" for p in self._prefixes)
        label = name.removeprefix(prefix) if kind == "task" and prefix else None
        self.nodes.append(GraphNode(node_id, name, kind, details or [], task, group, label))
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
        if isinstance(node, Graph):
            return self._graph(node, frontier)
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
        if isinstance(node, (Retrying, TimeLimited, Observed, Recovered)):
            notes: list[str] = []
            inner: Step = node
            while isinstance(inner, (Retrying, TimeLimited, Observed, Recovered)):
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

    def _graph(self, node: Graph, frontier: Frontier) -> Frontier:
        """One subgraph per node, in topological order (so edges point forward); a node's
        first steps follow the last steps of the nodes it needs (or the graph's input)."""
        ends: dict[str, Frontier] = {}
        for name in node.order:
            needs = node.nodes[name].needs
            start = [end for need in needs for end in ends[need]] if needs else frontier
            self._prefixes.append(name)
            try:
                ends[name] = self._grouped(f"node: {name}", node.nodes[name].step, start,
                                           node=name)
            finally:
                self._prefixes.pop()
        used = {need for n in node.nodes.values() for need in n.needs}
        last = [n for n in node.order if n not in used]
        return list(dict.fromkeys(end for n in last for end in ends[n]))

    def _grouped(self, title: str, inner: Step, frontier: Frontier,
                 node: str | None = None) -> Frontier:
        group = self._new_id(f"sg_{len(self.groups) + 1}")
        self.groups.append(GraphGroup(group, title, self._stack[-1] if self._stack else None,
                                      node))
        self._stack.append(group)
        try:
            return self.walk(inner, frontier)
        finally:
            self._stack.pop()


def plan_graph(plan: Step) -> PlanGraph:
    """The plan as a graph from a start node to an end node: one node per task occurrence,
    a decision node per ``when``/``branch``, a fork and a join node per ``parallel``, and a
    group per node of a :class:`~raysight.engine.graph.Graph` (edges between groups for its
    needs)."""
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


def _wrapper_note(node: Retrying | TimeLimited | Observed | Recovered) -> str:
    if isinstance(node, Recovered):
        return f"never fatal{': ' + node.description if node.description else ''}"
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
    retry/timeout wrappers around several steps are subgraphs titled with what they add,
    and each node of a graph is a subgraph ``node: <name>`` whose tasks are labelled without
    the node prefix, with edges from the nodes it needs.
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
        lines = [node.label or node.name, *node.details]
        summary = summaries.get(node.name) if node.kind == "task" else None
        if summary is not None:
            lines.append(summary_note(summary))
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
