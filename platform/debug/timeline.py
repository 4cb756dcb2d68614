"""The recorded attempts of a run as a plotly Gantt timeline, one row per step and partition.

>>> timeline_figure(result["trace"]).show()                          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from raysight.debug.summary import (
    STATE_COLORS,
    as_dict,
    attempt_duration,
    error_text,
    node_of,
    partition_key,
    row_label,
    summarize_nodes,
    trace_records,
)
from raysight.engine.trace import TraceInfo


def timeline_figure(trace: Mapping[str, Any] | TraceInfo,
                    title: str = "Execution timeline") -> go.Figure:
    """A Gantt chart of the recorded attempts: one row per step (per partition for mapped
    steps), one bar per attempt from its start to its end, coloured by state, so retried
    attempts are separate bars; skipped steps and instantaneous events are markers. The rows
    of a graph node's steps (``node/step``) are kept together.

    x is seconds since the trace started. One trace per state (``meta={"kind": "bars" |
    "markers", "state": ...}``); each point's ``customdata`` is ``[attempt, partition,
    duration_s, worker_pid, node_id, rows, error, started_at ISO]``.
    """
    data = as_dict(trace)
    records = [r for r in trace_records(data) if r.get("started_at") is not None]
    origin = data.get("started_at") or min((r["started_at"] for r in records), default=0.0)
    # steps in order of first appearance, the partitions of a step in partition order; the
    # steps of a graph node stay together, in the order the nodes first appear
    first = {step: i for i, step in reversed(list(enumerate(r["step"] for r in records)))}
    nodes = [n.node for n in summarize_nodes(data)]
    group = {step: node_of(step, nodes) or step for step in first}
    group_first = {g: i for i, g in reversed(list(enumerate(group[r["step"]] for r in records)))}
    ordered = sorted(records, key=lambda r: (group_first[group[r["step"]]], first[r["step"]],
                                             partition_key(r)))
    rows = list(dict.fromkeys(row_label(r) for r in ordered))

    bars: dict[str, list[dict[str, Any]]] = defaultdict(list)
    marks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        d = attempt_duration(r)
        (bars if d and d > 0 and r["state"] != "skipped" else marks)[r["state"]].append(r)

    fig = go.Figure()
    hover = ("<b>%{y}</b> · STATE<br>attempt %{customdata[0]}"
             "<br>start +%{base:.3f} s (%{customdata[7]})<br>duration %{customdata[2]:.3f} s"
             "<br>worker pid %{customdata[3]} · node %{customdata[4]}"
             "<br>rows %{customdata[5]}<br>%{customdata[6]}<extra></extra>")
    for state, rs in bars.items():
        fig.add_trace(go.Bar(
            orientation="h", name=state, legendgroup=state, meta={"kind": "bars", "state": state},
            y=[row_label(r) for r in rs], base=[r["started_at"] - origin for r in rs],
            x=[attempt_duration(r) for r in rs], customdata=[_custom(r) for r in rs],
            marker={"color": STATE_COLORS.get(state, "#455a64"),
                    "line": {"width": 0}},
            hovertemplate=hover.replace("STATE", state),
        ))
    for state, rs in marks.items():
        fig.add_trace(go.Scatter(
            mode="markers", name=state, legendgroup=state,
            showlegend=state not in bars, meta={"kind": "markers", "state": state},
            y=[row_label(r) for r in rs], x=[r["started_at"] - origin for r in rs],
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
    return [r.get("attempt"), r.get("partition"), attempt_duration(r) or 0.0, r.get("worker_pid"),
            node[:12] if isinstance(node, str) else node,
            r.get("rows"), html.escape(error_text(r.get("error")))[:300], _iso(r["started_at"])]


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")
