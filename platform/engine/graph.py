"""Workflows as graphs of named nodes: a node runs as soon as the nodes it needs are done.

>>> @step
... def load():
...     return 3
>>> @step
... def double(x):
...     return 2 * x
>>> @step
... def add(x, y):
...     return x + y
>>> flow = graph({"a": load, "b": Node(double, needs=("a",)), "c": Node(double, needs=("a",)),
...               "d": Node(add, needs=("b", "c"))})
>>> sorted(flow.nodes)
['a', 'b', 'c', 'd']

Semantics (run by :meth:`raysight.engine.executor.Executor.run`):

* Inputs: a node without needs gets the graph's input; a node with one need gets that node's
  output; a node with several needs gets a tuple of their outputs in ``needs`` order (a task
  receives them as positional arguments, as after a ``parallel``).
* Output: a dict ``{node name: output}`` of every node in declaration order; ``outputs="d"``
  makes the graph's output that one node's output, ``outputs=("b", "d")`` a dict of those.
* Scheduling: a node starts as soon as all its needs are done (one driver thread per running
  node), independent nodes run concurrently, and each node runs once however many nodes need
  it.
* Failure: the nodes that depend on a failed node (transitively) never start and are recorded
  as skipped (``upstream node X failed``); no other node starts either (fail-fast), but nodes
  already running finish, so their outputs are checkpointed; then the graph raises the first
  node error (a node's own error rather than a cancellation).
* Names: every task of node ``n`` is named ``n/<step>``, so its Ray task is
  ``<job_id>/n/<step>`` and the trace, the events and the checkpoint keys carry the node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raysight.engine.workflow import Composite, Step, Task, _map_tasks, children, tasks
from raysight.errors import PlanError

#: the tag that holds the path of the graph node a task belongs to ("outer/inner")
NODE_TAG = "node"


class GraphError(PlanError, ValueError):
    """A graph is wired wrongly: a bad node name, an unknown need, a cycle."""

    category = "invalid_plan"

    def __init__(self, message: str = "", **details: Any) -> None:
        PlanError.__init__(self, message, **details)


@dataclass(frozen=True)
class Node:
    """A step of a graph and the names of the nodes whose outputs are its input."""

    step: Step
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # a single name is a one-element tuple, not a string of one-letter names
        needs = (self.needs,) if isinstance(self.needs, str) else tuple(self.needs)
        object.__setattr__(self, "needs", needs)


@dataclass(frozen=True, eq=False)
class Graph(Composite):
    """Named nodes with dependencies by name (see the module docstring for the semantics).

    Build it with :func:`graph`, which also names each task after its node. ``order`` is a
    topological order of the nodes, stable: among ready nodes, declaration order wins.
    """

    nodes: dict[str, Node]
    outputs: str | tuple[str, ...] | None = None
    order: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        nodes = {name: n if isinstance(n, Node) else Node(n) for name, n in self.nodes.items()}
        object.__setattr__(self, "nodes", nodes)
        if isinstance(self.outputs, Iterable) and not isinstance(self.outputs, str):
            object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "order", _validate(nodes, self.outputs))

    @property
    def name(self) -> str:  # type: ignore[override]
        return "Graph(" + ",".join(self.nodes) + ")"

    def consumers(self, name: str) -> list[str]:
        """The nodes that need ``name`` directly, in declaration order."""
        return [n for n, node in self.nodes.items() if name in node.needs]

    def downstream(self, name: str) -> list[str]:
        """Every node that depends on ``name``, directly or through others, in ``order``."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            for consumer in self.consumers(frontier.pop()):
                if consumer not in found:
                    found.add(consumer)
                    frontier.append(consumer)
        return [n for n in self.order if n in found]

    def upstream(self, name: str) -> list[str]:
        """Every node that ``name`` depends on, directly or through others, in ``order``."""
        found: set[str] = set()
        frontier = list(self.nodes[name].needs)
        while frontier:
            need = frontier.pop()
            if need not in found:
                found.add(need)
                frontier.extend(self.nodes[need].needs)
        return [n for n in self.order if n in found]

    def result(self, outputs: Mapping[str, Any]) -> Any:
        """The graph's output from the outputs of its nodes."""
        if isinstance(self.outputs, str):
            return outputs[self.outputs]
        names = self.outputs if self.outputs is not None else tuple(self.nodes)
        return {n: outputs[n] for n in names}

    def parts(self) -> list[tuple[str, Step]]:
        return [(name, node.step) for name, node in self.nodes.items()]

    def map_parts(self, change: Callable[[Step], Step]) -> Graph:
        return dataclasses.replace(
            self, nodes={n: Node(change(node.step), node.needs) for n, node in self.nodes.items()}
        )


def graph(nodes: Mapping[str, Node | Step],
          outputs: str | Iterable[str] | None = None) -> Graph:
    """A :class:`Graph` of ``nodes`` (a bare step is a node without needs), each task of node
    ``n`` renamed ``n/<task>``. Raises :class:`GraphError` (a ``ValueError``) for an empty
    name or one with ``/``, a need or an output that names no node, and a cycle."""
    normal = {name: n if isinstance(n, Node) else Node(n) for name, n in nodes.items()}
    for name in normal:
        _check_name(name)
    out = outputs if outputs is None or isinstance(outputs, str) else tuple(outputs)
    return Graph({name: Node(_map_tasks(n.step, lambda t, p=name: in_node(t, p)), n.needs)
                  for name, n in normal.items()}, out)


def in_node(task: Task, node: str) -> Task:
    """``task`` as part of node ``node``: named ``node/<name>`` and tagged with the node path
    (a node of a graph nested in node ``outer`` has the path ``outer/inner``)."""
    inner = task.tags.get(NODE_TAG)
    return dataclasses.replace(task, name=f"{node}/{task.name}",
                               tags={**task.tags, NODE_TAG: f"{node}/{inner}" if inner else node})


def task_keys(plan: Step, prefix: str = "") -> dict[int, str]:
    """Stable checkpoint keys of the tasks of ``plan``, by ``id(task)``.

    A task outside any graph is keyed by its position in :func:`tasks` and its name
    (``003-load``), as before graphs existed; a task of graph node ``n`` by ``n/``, its
    position inside the node and its name without the node prefix (``n/000-double``), nested
    graphs adding their node names (``n/m/000-double``). So a node's keys do not depend on
    the other nodes, and a resumed run finds the checkpoints of every finished node. Keys are
    by task object: a task object used twice shares its key (:func:`graph` gives every node
    its own, renamed, copies)."""
    keys: dict[int, str] = {}
    for i, task in enumerate(tasks(plan)):
        keys.setdefault(id(task), f"{prefix}{i:03d}-{task.name.removeprefix(prefix)}")
    for g in _outer_graphs(plan):
        for name, node in g.nodes.items():
            keys.update(task_keys(node.step, f"{prefix}{name}/"))
    return keys


def _outer_graphs(node: Step) -> list[Graph]:
    if isinstance(node, Graph):
        return [node]
    return [g for child in children(node) for g in _outer_graphs(child)]


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise GraphError(f"graph node names must be non-empty strings, not {name!r}", node=name)
    if "/" in name:
        raise GraphError(f"graph node name {name!r} contains '/', which separates a node from "
                         "its steps in task names", node=name)


def _validate(nodes: Mapping[str, Node], outputs: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """A topological order of ``nodes`` after checking names, needs, outputs and cycles."""
    if not nodes:
        raise GraphError("a graph needs at least one node")
    for name, node in nodes.items():
        _check_name(name)
        if not isinstance(node.step, Step):
            raise GraphError(f"node {name!r} is not a workflow step: {node.step!r}", node=name)
        for need in node.needs:
            if need not in nodes:
                raise GraphError(f"node {name!r} needs {need!r}, which is not a node of the "
                                 f"graph (nodes: {', '.join(nodes)})", node=name, need=need)
        if len(set(node.needs)) != len(node.needs):
            raise GraphError(f"node {name!r} lists a need twice: {', '.join(node.needs)}",
                             node=name)
    wanted = (outputs,) if isinstance(outputs, str) else outputs or ()
    for out in wanted:
        if out not in nodes:
            raise GraphError(f"output {out!r} is not a node of the graph (nodes: "
                             f"{', '.join(nodes)})", output=out)
    cycle = find_cycle({name: n.needs for name, n in nodes.items()})
    if cycle:
        raise GraphError(f"the graph has a cycle: {' -> '.join(cycle)}", cycle=cycle)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(nodes):
        for name, node in nodes.items():
            if name not in done and all(n in done for n in node.needs):
                order.append(name)
                done.add(name)
                break
    return tuple(order)


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle of ``needs`` (name -> the names it needs) as names in data-flow order, first
    name repeated last (``a -> b -> a``: ``b`` needs ``a`` and ``a`` needs ``b``); empty when
    there is none. Unknown names are not followed."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for need in needs[name]:
            if need not in needs:
                continue
            if state.get(need) == 1:  # path[i:] needs its way back to ``need``
                loop = path[path.index(need):] + [need]
                return loop[::-1]
            if need not in state and (found := visit(need)):
                return found
        path.pop()
        state[name] = 2
        return []

    for name in needs:
        if name not in state and (found := visit(name)):
            return found
    return []


__all__ = ["Graph", "GraphError", "Node", "find_cycle", "graph", "in_node", "task_keys"]
