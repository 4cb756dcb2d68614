"""The plan graph as a plotly figure, its steps coloured by how they ended in a run."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from raysight.debug.plan import (
    CONTROL_COLOR,
    MODE_COLORS,
    GraphEdge,
    GraphNode,
    PlanGraph,
    plan_graph,
)
from raysight.debug.summary import STATE_COLORS, StepSummary, summarize_steps, summary_note
from raysight.engine.trace import TraceInfo
from raysight.engine.workflow import (
    Step,
)

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
        if trace is not None and key in MODE_COLORS:
            colors = [STATE_COLORS[summaries[n.name].state if n.name in summaries else "not run"]
                      for n in nodes]
        else:
            colors = [MODE_COLORS.get(key, CONTROL_COLOR)] * len(nodes)
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
    if node.kind == "task":  # a graph node's box carries the node name
        return node.label or node.name
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
        lines.append(html.escape(summary_note(summary)))
    return "<br>".join(lines)
