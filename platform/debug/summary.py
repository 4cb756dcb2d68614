"""What a recorded trace says about each step: its final state, attempts, partitions, time and
error, from the JSON-ready trace of a run (``TraceInfo.to_dict()``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from raysight.engine.trace import TraceInfo

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

# how bad a final state is, when the partitions of one step ended differently
SEVERITY = ("failed", "timed_out", "cancelled", "running", "retried", "succeeded", "restored",
             "skipped")

# ---------------------------------------------------------------------------------------------
# The trace


def trace_records(trace: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every attempt record of a trace dict, nested workflows' (child traces') included."""
    yield from trace.get("records") or []
    for child in trace.get("children") or []:
        yield from trace_records(child)


def as_dict(trace: Mapping[str, Any] | TraceInfo | None) -> Mapping[str, Any]:
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
    for record in trace_records(as_dict(trace)):
        by_step.setdefault(record["step"], []).append(record)
    out = [summarize(step, records) for step, records in by_step.items()]
    for step, s in (stats or {}).items():
        if step not in by_step:
            out.append(_summarize_stats(step, s))
    return out


def summarize(step: str, records: list[dict[str, Any]]) -> StepSummary:
    ran = [r for r in records if r.get("state") not in ("skipped", "restored")]
    final: dict[Any, dict[str, Any]] = {}
    for r in records:  # records arrive in attempt order per partition
        if r.get("state") != "skipped":
            final[r.get("partition")] = r
    states = {r["state"] for r in final.values()} or {"skipped"}
    state = next(s for s in (*SEVERITY, *sorted(states)) if s in states)
    starts = [r["started_at"] for r in ran if r.get("started_at") is not None]
    ends = [r["ended_at"] for r in ran if r.get("ended_at") is not None]
    rows = [r["rows"] for r in final.values()
            if r["state"] == "succeeded" and r.get("rows") is not None]
    failures = [r for r in ran if r.get("error")]
    return StepSummary(
        step=step, state=state, attempts=len(ran),
        retries=sum(r["state"] == "retried" for r in ran), tasks=len(final),
        total_s=sum(attempt_duration(r) or 0.0 for r in ran),
        wall_s=max(ends) - min(starts) if starts and ends else None,
        rows=sum(rows) if rows else None,
        error=error_text(failures[-1]["error"]) if failures else None,
    )


def _summarize_stats(step: str, stats: Mapping[str, Any]) -> StepSummary:
    ok, failed = stats.get("success_count", 0), stats.get("failure_count", 0)
    state = "failed" if failed > stats.get("retry_count", 0) else (
        "succeeded" if ok else "skipped")
    return StepSummary(step, state, ok + failed, stats.get("retry_count", 0),
                       1 if ok + failed else 0, stats.get("total_execution_time_s", 0.0), None,
                       None)


def attempt_duration(record: Mapping[str, Any]) -> float | None:
    if record.get("started_at") is None or record.get("ended_at") is None:
        return None
    return float(record["ended_at"]) - float(record["started_at"])


def error_text(error: Mapping[str, Any] | None) -> str:
    if not error:
        return ""
    kind = error.get("error") or error.get("category") or "error"
    return f"{kind}: {error.get('message', '')}"


def summary_note(s: StepSummary) -> str:
    note = f"{s.state}"
    if s.attempts:
        note += f" · {s.attempts} attempt{'s' if s.attempts != 1 else ''}"
    if s.wall_s is not None:
        note += f" · {format_seconds(s.wall_s)} s"
    return note


def partition_key(record: Mapping[str, Any]) -> int:
    partition = record.get("partition")
    return -1 if partition is None else int(partition)


def row_label(record: Mapping[str, Any]) -> str:
    partition = record.get("partition")
    return record["step"] if partition is None else f"{record['step']}[{partition}]"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.3f}" if seconds < 100 else f"{seconds:.1f}"


# ---------------------------------------------------------------------------------------------
# Graph nodes

NODE_STATE = ".node_state"


@dataclass
class NodeSummary:
    """One node of a graph workflow: its state and the steps (tasks) it ran."""

    node: str  # its path: ``n``, or ``outer/n`` in a nested graph
    state: str  # succeeded | failed | skipped, from the trace attribute ``<node>.node_state``
    steps: list[str]
    wall_s: float | None  # first start to last end of its steps' attempts


def node_of(step: str, nodes: Iterable[str]) -> str | None:
    """The innermost graph node (of ``nodes``) that a step name belongs to: ``b/double`` to
    ``b``, ``n/m/double`` to ``n/m``."""
    owners = [n for n in nodes if step.startswith(f"{n}/")]
    return max(owners, key=len) if owners else None


def summarize_nodes(trace: Mapping[str, Any] | TraceInfo | None) -> list[NodeSummary]:
    """A summary per graph node of a run, in order of first appearance (none without a
    graph): the executor records each node's state as a trace attribute."""
    data = as_dict(trace)
    attributes = data.get("attributes") or {}
    nodes = [k[: -len(NODE_STATE)] for k in attributes if k.endswith(NODE_STATE)]
    for child in data.get("children") or []:
        nodes += [n.node for n in summarize_nodes(child)]
    if not nodes:
        return []
    by_node: dict[str, list[dict[str, Any]]] = {n: [] for n in nodes}
    for record in trace_records(data):
        owner = node_of(record["step"], nodes)
        if owner is not None:
            by_node[owner].append(record)
    out = []
    for node, records in sorted(by_node.items(), key=lambda kv: _first_start(kv[1])):
        ran = [r for r in records if r.get("state") not in ("skipped", "restored")]
        starts = [r["started_at"] for r in ran if r.get("started_at") is not None]
        ends = [r["ended_at"] for r in ran if r.get("ended_at") is not None]
        out.append(NodeSummary(
            node, _node_state(data, node), list(dict.fromkeys(r["step"] for r in records)),
            max(ends) - min(starts) if starts and ends else None))
    return out


def _node_state(trace: Mapping[str, Any], node: str) -> str:
    state = (trace.get("attributes") or {}).get(node + NODE_STATE)
    if state is not None:
        return str(state)
    for child in trace.get("children") or []:
        if (found := _node_state(child, node)) != "not run":
            return found
    return "not run"


def _first_start(records: list[dict[str, Any]]) -> float:
    starts = [r["started_at"] for r in records if r.get("started_at") is not None]
    return min(starts) if starts else float("inf")
