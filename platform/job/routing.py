"""Resource routing: a job's input size, analysis kinds and history as Ray scheduling options.

>>> node = {"NodeID": "ab" * 28, "Alive": True, "Resources": {"CPU": 8.0, "high_memory": 1.0}}
>>> plan = route(JobFacts(input_bytes=2 * 2**30, kinds=("aggregation",)), [node])
>>> plan.apply("load", Resources()).resources
{'high_memory': 0.001}

The design's rule-based router (seed §10.3 and §14) picks a node; here Ray places tasks, so a
rule yields a *directive* for some pipeline stages: a tiny request of a custom resource (only
nodes that have it qualify), or a scheduling strategy. Rules are pure functions of the job's
:class:`JobFacts` and the live nodes as ``ray.nodes()`` describes them, evaluated by priority:

* :func:`data_size_rule` (85): input over 1000 MiB asks for ``high_memory`` nodes, over
  100 MiB for ``medium_memory`` (load, preprocess and analyze steps);
* :func:`data_type_rule` (70): a machine-learning analysis asks for ``gpu`` nodes, a time
  series one for ``time_series``, any other kernel ``X`` (the seed's custom analyses) for
  ``custom_x`` (analyze steps);
* :func:`affinity_rule` (60): a live node that ran this job's loads before, as a soft node
  affinity that spills when the node is busy (load steps).

A rule asks only for what some live node offers (a request no node can satisfy would leave
the task pending forever); otherwise it does nothing and says so in a note. Directives
accumulate in priority order, a stage keeping what an earlier rule gave it, until a rule of
priority 80 or more (a *mandatory* rule) applies: then evaluation stops. When no rule
applies, Ray's DEFAULT scheduling (locality-aware, then load-based) places the tasks, or
SPREAD with ``execution.routing: spread``. What a spec asks for itself always wins.

The history of the affinity rule is ``<run root>/.routing/affinity.json`` (job name → the
nodes that ran its loads, most recent first), written after a job succeeded on a cluster of
more than one node.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysight.engine.context import RunContext
from raysight.engine.resources import NODE_PREFIX, Resources, format_bytes
from raysight.plugins import Connector

log = logging.getLogger(__name__)

#: the amount of a custom resource a routed task asks for: enough to need a node that has the
#: resource, too little to limit how many tasks fit there (Ray counts to 1/10000)
TOKEN = 0.001
#: a rule of this priority or more stops the evaluation when it applies (seed: "mandatory")
MANDATORY = 80
MiB = 2**20
#: the stages that hold a job's data (results, notifications and completion are small)
DATA_STAGES = ("load", "preprocess", "analyze")
#: node ids remembered per job name, most recent first
HISTORY_LENGTH = 8
#: the affinity history's file under the run root
AFFINITY_FILE = Path(".routing") / "affinity.json"

Node = Mapping[str, Any]


@dataclass(frozen=True)
class JobFacts:
    """What routing knows of a job before it runs: its name (the spec's ``job_id`` template,
    the same for every run), its input size (None: unknown), its analyses' kinds (kernel
    names) and the nodes that ran its loads before (most recent first)."""

    name: str | None = None
    input_bytes: int | None = None
    kinds: tuple[str, ...] = ()
    history: tuple[str, ...] = ()


@dataclass(frozen=True)
class Directive:
    """What one rule asks of Ray for some stages: custom resources and/or a strategy."""

    rule: str
    stages: tuple[str, ...]
    resources: dict[str, float] = field(default_factory=dict)
    scheduling: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "stages": list(self.stages), "resources": self.resources,
                "scheduling": self.scheduling}


@dataclass(frozen=True)
class Verdict:
    """A rule's answer: a directive (None: no opinion) and notes on what it did not do."""

    directive: Directive | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutingPlan:
    """The directives of the rules that applied, in priority order, and the notes;
    ``remember``: record where the job's loads ran once it succeeded (on a cluster of one
    node there is nowhere else to go, so nothing is written)."""

    directives: tuple[Directive, ...] = ()
    notes: tuple[str, ...] = ()
    remember: bool = False

    def apply(self, stage: str, resources: Resources) -> Resources:
        """``resources`` with every directive for ``stage`` added (the first one wins a
        scheduling strategy; the step's own request wins over all of them)."""
        for d in self.directives:
            if stage in d.stages:
                resources = resources.routed(d.resources, d.scheduling)
        return resources

    def to_dict(self) -> dict[str, Any]:
        """The plan as the ``job_routed`` event carries it."""
        return {"directives": [d.to_dict() for d in self.directives], "notes": list(self.notes),
                "remember": self.remember}


NO_ROUTING = RoutingPlan()


# ---------------------------------------------------------------------------------------------
# Rules


def offering(nodes: Iterable[Node], resource: str) -> list[Node]:
    """The live nodes that have some of ``resource``."""
    return [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get(resource, 0) > 0]


def _capability(rule: str, stages: tuple[str, ...], resource: str, why: str,
                nodes: Sequence[Node]) -> Verdict:
    """A token request of ``resource`` when some live node has it, else a note."""
    if offering(nodes, resource):
        return Verdict(Directive(rule, stages, {resource: TOKEN}))
    return Verdict(notes=(f"{why} would go to nodes with {resource}, but no node of the Ray "
                          f"cluster has {resource}; Ray places its tasks as usual",))


def data_size_rule(facts: JobFacts, nodes: Sequence[Node]) -> Verdict:
    """Inputs over 1000 MiB to ``high_memory`` nodes, over 100 MiB to ``medium_memory``."""
    if facts.input_bytes is None:
        return Verdict()
    size_mb = facts.input_bytes / MiB
    if size_mb > 1000:
        resource = "high_memory"
    elif size_mb > 100:
        resource = "medium_memory"
    else:
        return Verdict()
    return _capability("data_size", DATA_STAGES, resource,
                       f"input of {format_bytes(facts.input_bytes)}", nodes)


#: the seed's analysis types that ask for a kind of node (the others ask for none)
KIND_RESOURCES = {"machine_learning": "gpu", "time_series": "time_series"}
#: the seed's analysis types that need no special node; any other kernel is "custom"
PLAIN_KINDS = ("descriptive", "aggregation")


def kind_resource(kind: str) -> str | None:
    """The custom resource that an analysis kind asks for: ``gpu`` for machine learning,
    ``time_series``, ``custom_<name>`` for any other kernel; None for plain ones."""
    if kind in PLAIN_KINDS:
        return None
    return KIND_RESOURCES.get(kind, f"custom_{kind.lower()}")


def data_type_rule(facts: JobFacts, nodes: Sequence[Node]) -> Verdict:
    """The analyze steps to nodes of the first kind (in the job's order) that asks for one:
    ``gpu`` for machine learning, ``time_series``, ``custom_x`` for a kernel ``x``."""
    notes: list[str] = []
    for kind in facts.kinds:
        resource = kind_resource(kind)
        if resource is None:
            continue
        if resource.startswith("custom_") and not offering(nodes, resource):
            continue  # the seed asks for custom nodes only "if any exist": nothing to note
        verdict = _capability("data_type", ("analyze",), resource, f"a {kind} analysis", nodes)
        if verdict.directive is not None:
            return Verdict(verdict.directive, tuple(notes))
        notes += verdict.notes
    return Verdict(notes=tuple(notes))


def affinity_rule(facts: JobFacts, nodes: Sequence[Node]) -> Verdict:
    """The load steps preferably on the live node that ran this job's loads most recently."""
    alive = {n.get("NodeID") for n in nodes if n.get("Alive")}
    for node_id in facts.history:
        if node_id in alive:
            return Verdict(Directive("affinity", ("load",), scheduling=NODE_PREFIX + node_id))
    return Verdict()


Rule = Callable[[JobFacts, Sequence[Node]], Verdict]
#: (priority, rule), evaluated by priority, highest first
RULES: tuple[tuple[int, Rule], ...] = (
    (85, data_size_rule),
    (70, data_type_rule),
    (60, affinity_rule),
)


# ---------------------------------------------------------------------------------------------
# The router


def route(facts: JobFacts, nodes: Sequence[Node], *, spread: bool = False,
          base: Mapping[str, Resources] | None = None,
          rules: Iterable[tuple[int, Rule]] = RULES) -> RoutingPlan:
    """The routing plan of a job on a cluster of ``nodes`` (``ray.nodes()``).

    ``base`` holds each stage's own request (the spec's ``resources``): a directive is
    dropped for a stage where no node could satisfy both, with a note. ``spread`` spreads the
    data stages when no rule applies.
    """
    base = base or {}
    capacities = [dict(n.get("Resources", {})) for n in nodes if n.get("Alive")]
    directives: list[Directive] = []
    notes: list[str] = []
    for priority, rule in sorted(rules, key=lambda r: -r[0]):
        verdict = rule(facts, nodes)
        notes += verdict.notes
        directive = verdict.directive
        if directive is None:
            continue
        stages = tuple(s for s in directive.stages
                       if base.get(s, Resources()).routed(directive.resources).feasible(
                           capacities))
        for s in directive.stages:
            if s not in stages:
                notes.append(f"{directive.rule}: no node has {_asked(directive)} together "
                             f"with what the {s} steps ask for; not routed")
        if not stages:
            continue
        directives.append(Directive(directive.rule, stages, directive.resources,
                                    directive.scheduling))
        if priority >= MANDATORY:
            break
    if not directives and spread:
        directives.append(Directive("spread", DATA_STAGES, scheduling="SPREAD"))
    return RoutingPlan(tuple(directives), tuple(notes), remember=len(capacities) > 1)


def _asked(directive: Directive) -> str:
    return ", ".join(directive.resources) or str(directive.scheduling)


def job_facts(name: str | None, connectors: Iterable[Connector[Any]], kinds: Iterable[str],
              run_root: Path) -> JobFacts:
    """A job's facts from its sources (sizes their connectors know without reading, all or
    nothing), its analyses' kinds and the history under its run root."""
    sizes = [_estimate(c) for c in connectors]
    known = None if not sizes or any(s is None for s in sizes) else sum(
        s for s in sizes if s is not None)
    return JobFacts(name, known, tuple(dict.fromkeys(kinds)), load_history(run_root, name))


def _estimate(connector: Connector[Any]) -> int | None:
    try:
        return connector.estimated_bytes()
    except Exception as err:  # an estimate is a preference; reading the source reports it
        log.warning("source %s: size not estimated for routing: %s", connector.name, err)
        return None


# ---------------------------------------------------------------------------------------------
# Affinity history


def load_history(run_root: Path, name: str | None) -> tuple[str, ...]:
    """The nodes that ran the loads of job ``name`` under ``run_root``, most recent first
    (none for a job without a name, or an unreadable history)."""
    if name is None:
        return ()
    path = run_root / AFFINITY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as err:  # a broken history only loses a preference
        log.warning("routing history %s not read: %s", path, err)
        return ()
    nodes = data.get(name, []) if isinstance(data, dict) else []
    return tuple(n for n in nodes if isinstance(n, str))


def record_history(run_root: Path, name: str | None, node_ids: Iterable[str]) -> None:
    """Remember that ``node_ids`` ran the loads of job ``name`` (written atomically; a
    concurrent job's entry may be lost, which only loses a preference)."""
    fresh = list(dict.fromkeys(n for n in node_ids if n))
    if name is None or not fresh:
        return
    path = run_root / AFFINITY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[name] = list(dict.fromkeys([*fresh, *data.get(name, [])]))[:HISTORY_LENGTH]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".affinity.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


Hook = Callable[[Any, Any], None]


def remembering(run_root: Path, name: str | None, hook: Hook | None) -> Hook:
    """A success hook of the job's last step: ``hook``, then the nodes that ran the job's
    loads recorded for its name (a history that cannot be written is logged, never fatal)."""

    def remember(ctx: RunContext, outcome: Any) -> None:
        if hook is not None:
            hook(ctx, outcome)
        try:
            record_history(run_root, name, load_nodes(ctx.trace.to_dict()))
        except OSError as err:
            log.warning("job %s: routing history not written under %s: %s", ctx.job_id,
                        run_root, err)

    return remember


def load_nodes(trace: Mapping[str, Any]) -> list[str]:
    """The nodes on which load steps succeeded, from a trace (``TraceInfo.to_dict``),
    most frequent first."""
    counts: dict[str, int] = {}

    def walk(t: Mapping[str, Any]) -> None:
        for r in t.get("records", []):
            step = r.get("step", "")
            if r.get("state") == "succeeded" and r.get("node_id") and (
                    step.split("/")[-1].split(".")[0] == "load"):
                counts[r["node_id"]] = counts.get(r["node_id"], 0) + 1
        for child in t.get("children", []):
            walk(child)

    walk(trace)
    return sorted(counts, key=lambda n: -counts[n])


__all__ = [
    "MANDATORY",
    "NO_ROUTING",
    "RULES",
    "TOKEN",
    "Directive",
    "JobFacts",
    "RoutingPlan",
    "Verdict",
    "affinity_rule",
    "data_size_rule",
    "data_type_rule",
    "job_facts",
    "kind_resource",
    "load_history",
    "load_nodes",
    "offering",
    "record_history",
    "remembering",
    "route",
]
