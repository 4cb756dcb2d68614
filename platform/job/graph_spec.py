"""Spec version 2: a job as a graph of named nodes.

::

    version: 2
    sources:
      orders: {type: file, path: data/orders.parquet}
      customers: {type: file, path: data/customers.csv}
    datasets:
      big_orders: {from: orders, preprocessing: [{op: filter_rows, condition: "amount > 10"}]}
    joins:
      enriched: {left: big_orders, right: customers, on: [customer_id], how: left}
    unions:
      all_orders: {inputs: [orders, archived_orders]}
    analyses:
      by_region: {from: enriched, type: aggregation, group_by: [region],
                  metrics: [{function: count, alias: n}]}
      profile: {from: big_orders, type: descriptive}
    visualizations: [{from: by_region, type: bar, x: region, y: n}]
    exports: [{from: by_region, format: parquet, path: by_region.parquet},
              {format: html, path: report.html}]

Every node has a name, unique across ``sources``, ``datasets``, ``joins``, ``unions`` and
``analyses`` (letters, digits, ``_``, ``-`` and ``.``, starting with a letter or ``_``; no
``/``, since Ray task names are ``<job_id>/<node>/<step>``). A source is a connector config;
a dataset reads one node (``from``) through its ``preprocessing``; a join reads ``left`` and
``right``; a union reads its ``inputs``; an analysis is a kernel config plus ``from``. Data
nodes (sources, datasets, joins, unions) may feed each other in any acyclic way; analyses
read data nodes and feed only charts and exports. A chart names the analysis it renders in
``from``, an export the analysis or data node it writes; both may leave it out when the job
has one analysis. The HTML report covers every analysis of the job.

Validation happens before anything runs: a duplicate name, a reference to an unknown node
(with the closest name), an analysis used as a data input, and a cycle (named
``a -> b -> a``) are errors located at the field that says it (``datasets.big.from``).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from raysight import registry
from raysight.analyses.aliases import CustomForm, resolve_custom
from raysight.analyses.relational.config import JoinConfig, UnionConfig
from raysight.connections import (
    Connection,
    connections_file,
    load_connections,
    uses_connections,
    validation_context,
)
from raysight.engine.graph import find_cycle
from raysight.job.spec import (
    MIGRATIONS,
    SPEC_VERSION,
    AcceptsCustomForm,
    JobCommon,
    SpecError,
    _loc,
    _Strict,
    check_chart_columns,
    format_errors,
    migrate,
    migration,
    parse_spec,
    read_spec_file,
    union_of,
)
from raysight.plugins import PluginConfig

GRAPH_VERSION = 2
#: the pattern of a node name
NODE_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
_NODE_NAME = re.compile(NODE_NAME)


def _node_name(name: str) -> str:
    if not _NODE_NAME.match(name):
        raise PydanticCustomError(
            "node_name", "{message}",
            {"message": f"bad node name {name!r}: use letters, digits, '_', '-' and '.', "
                        "starting with a letter or '_' (at most 64; no '/')"})
    return name


NodeName = Annotated[str, AfterValidator(_node_name)]
#: the sections that hold data nodes, in the order a reader meets them
DATA_SECTIONS = ("sources", "datasets", "joins", "unions")


class GraphSpecBase(JobCommon):
    """A version 2 job: named nodes; the node sections come from the registries."""

    version: Literal[2] = Field(description="spec version 2: a graph of named nodes")

    @model_validator(mode="after")
    def _check_graph(self) -> GraphSpecBase:
        problems = [*_name_problems(self), *_reference_problems(self)]
        if not problems:
            problems = _cycle_problems(self)
        if problems:
            raise ValidationError.from_exception_data("JobSpec", problems)
        check_chart_columns([(i, chart, self.analysis_of(chart))
                             for i, chart in enumerate(self.visualizations)])
        return self

    # -- the graph ------------------------------------------------------------------------

    def nodes(self) -> dict[str, str]:
        """Every node name -> its section (``sources``, ``datasets`` ... ``analyses``)."""
        out: dict[str, str] = {}
        for section in (*DATA_SECTIONS, "analyses"):
            for name in getattr(self, section):
                out.setdefault(name, section)
        return out

    def inputs(self, name: str) -> tuple[str, ...]:
        """The nodes ``name`` reads, in the order it reads them."""
        section = self.nodes()[name]
        node = getattr(self, section)[name]
        if section == "sources":
            return ()
        if section == "joins":
            return (node.left, node.right)
        if section == "unions":
            return tuple(node.inputs)
        return (node.from_,)

    def analysis_of(self, output: Any) -> Any:
        """The analysis config a chart or export renders (its ``from``, or the only one)."""
        name = output.from_ if output.from_ is not None else next(iter(self.analyses))
        return self.analyses.get(name)

    if TYPE_CHECKING:
        sources: dict[str, PluginConfig]
        datasets: dict[str, Any]
        joins: dict[str, JoinConfig]
        unions: dict[str, UnionConfig]
        analyses: dict[str, Any]
        visualizations: list[Any]
        exports: list[Any]
        notifications: list[PluginConfig]


#: the model :func:`graph_spec_model` builds, as type checkers see it
GraphSpec = GraphSpecBase


def _problem(loc: tuple[str | int, ...], kind: str, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, "{message}", {"message": message}),
                            loc=loc, input=value)


def _name_problems(spec: GraphSpecBase) -> Iterator[InitErrorDetails]:
    owner: dict[str, str] = {}
    for section in (*DATA_SECTIONS, "analyses"):
        for name in getattr(spec, section):
            if name in owner:
                yield _problem((section, name), "duplicate_node",
                               f"node name {name!r} is also used in {owner[name]}: names are "
                               "unique across sources, datasets, joins, unions and analyses",
                               name)
            else:
                owner[name] = section


def _references(spec: GraphSpecBase) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """(field location, the node named there, what it must be: ``data`` or ``analysis``
    or ``output``) for every reference of the spec."""
    for name, dataset in spec.datasets.items():
        yield ("datasets", name, "from"), dataset.from_, "data"
    for name, join in spec.joins.items():
        yield ("joins", name, "left"), join.left, "data"
        yield ("joins", name, "right"), join.right, "data"
    for name, union in spec.unions.items():
        for i, item in enumerate(union.inputs):
            yield ("unions", name, "inputs", i), item, "data"
    for name, analysis in spec.analyses.items():
        yield ("analyses", name, "from"), analysis.from_, "data"
    for i, chart in enumerate(spec.visualizations):
        yield ("visualizations", i, "from"), chart.from_, "analysis"
    for i, export in enumerate(spec.exports):
        yield ("exports", i, "from"), export.from_, "report" if export.format == "html" \
            else "output"


def _reference_problems(spec: GraphSpecBase) -> Iterator[InitErrorDetails]:
    nodes = spec.nodes()
    data = [n for n, section in nodes.items() if section != "analyses"]
    analyses = list(spec.analyses)
    for loc, name, must_be in _references(spec):
        if name is None:
            if must_be in ("analysis", "output") and len(analyses) > 1:
                yield _problem(loc, "missing", "name the analysis it renders: the job has "
                               f"{len(analyses)} ({', '.join(analyses)})", None)
            continue
        if must_be == "report":
            yield _problem(loc, "report_from", "the HTML report covers every analysis of the "
                           "job: leave `from` out", name)
            continue
        allowed = {"data": data, "analysis": analyses, "output": [*analyses, *data]}[must_be]
        if name in allowed:
            continue
        if name in nodes:
            what = "an analysis" if nodes[name] == "analyses" else f"a node of {nodes[name]}"
            wanted = {"data": "a source, dataset, join or union", "analysis": "an analysis",
                      "output": "an analysis or a data node"}[must_be]
            yield _problem(loc, "wrong_node", f"{name!r} is {what}; this must name {wanted}",
                           name)
            continue
        near = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        known = ", ".join(allowed) or "none"
        yield _problem(loc, "unknown_node", f"unknown node {name!r}{hint} (known: {known})",
                       name)


def _cycle_problems(spec: GraphSpecBase) -> list[InitErrorDetails]:
    """The first cycle among the data nodes, named ``a -> b -> a`` (each reading the next)
    at the field of ``a`` that starts it."""
    data = {n: spec.inputs(n) for n, s in spec.nodes().items() if s != "analyses"}
    cycle = find_cycle(data)[::-1]  # reading order: a reads b
    if not cycle:
        return []
    first, second = cycle[0], cycle[1]
    loc = next(loc for loc, target, _ in _references(spec)
               if loc[1] == first and target == second)
    return [_problem(loc, "cycle", "the nodes form a cycle: " + " -> ".join(cycle), second)]


# ---------------------------------------------------------------------------------------------
# The model


def _reading(config: type, required: bool) -> type:
    """``config`` with a ``from`` field: the node (or analysis) it reads."""
    default: Any = ... if required else None
    description = "the node it reads" if required else \
        "the analysis (or data node) it renders; may be left out when the job has one analysis"
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{config.__name__}Node",
        __base__=config,
        __doc__=config.__doc__,
        from_=(str if required else str | None, Field(default, alias="from",
                                                      description=description)),
    )


class _CustomNodeForm(CustomForm):
    """The custom form of an analysis node: ``{from, type: custom, name, params}``."""

    from_: str = Field(alias="from", description="the node it reads")


def _resolve_custom_node(value: Any) -> Any:
    """The custom form of an analysis node rewritten to the kernel's own config; ``from``
    stays."""
    if not (isinstance(value, dict) and value.get("type") == "custom"):
        return value
    rest = {k: v for k, v in value.items() if k != "from"}
    resolved = resolve_custom(rest)
    return {"from": value["from"], **resolved} if "from" in value else resolved


@functools.cache
def graph_spec_model() -> type[GraphSpec]:
    """The version 2 JobSpec model for the plugins installed now (built once per process)."""
    source = union_of(registry.connectors.configs(), "type")
    op = union_of(registry.preprocessors.configs(), "op")
    dataset = create_model(
        "DatasetSpec",
        __base__=_Strict,
        __doc__="A node read through preprocessing operations.",
        from_=(str, Field(alias="from", description="the node it reads")),
        preprocessing=(list[op], Field(default_factory=list)),  # type: ignore[valid-type]
    )
    analysis: Any = Annotated[
        union_of([_reading(c, True) for c in registry.analyses.configs()], "type"),
        BeforeValidator(_resolve_custom_node),
        AcceptsCustomForm(_CustomNodeForm),
    ]
    chart = union_of([_reading(c, False) for c in registry.charts.configs()], "type")
    export = union_of([_reading(c, False) for c in registry.exporters.configs()], "format")
    notify = union_of(registry.notifiers.configs(), "channel")
    return create_model(  # type: ignore[call-overload,no-any-return]
        "JobGraphSpec",
        __base__=GraphSpecBase,
        __doc__="A raysight analysis job: a graph of named nodes.",
        sources=(dict[NodeName, source], Field(min_length=1)),  # type: ignore[valid-type]
        datasets=(dict[NodeName, dataset], Field(default_factory=dict)),  # type: ignore[valid-type]
        joins=(dict[NodeName, JoinConfig], Field(default_factory=dict)),
        unions=(dict[NodeName, UnionConfig], Field(default_factory=dict)),
        analyses=(dict[NodeName, analysis], Field(min_length=1)),
        visualizations=(list[chart], Field(default_factory=list)),  # type: ignore[valid-type]
        exports=(list[export], Field(default_factory=list)),  # type: ignore[valid-type]
        notifications=(list[notify], Field(default_factory=list)),  # type: ignore[valid-type]
    )


def graph_json_schema() -> dict[str, Any]:
    """JSON Schema of a version 2 job spec."""
    return graph_spec_model().model_json_schema(by_alias=True)


def parse_graph_spec(data: Any, source: str = "spec",
                     connections: dict[str, Connection] | str | Path | None = None) -> GraphSpec:
    """Validate a job spec dict of any version into its graph: an older spec is first
    validated as what it is (its errors name its own fields: ``analysis.group_by``), then
    migrated to version 2. Raises SpecError naming every bad field.

    A source's ``connection: <name>`` is looked up in the spec's ``connections:`` section,
    then in ``connections``: the connections a file defines, or a connections file (by
    default the one :func:`raysight.connections.connections_file` finds, read only when a
    source names a connection). The resolved source carries the connection's URL as
    written; the spec (and its dump, ``spec.json``) keeps ``connection: <name>``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a job spec must be a mapping, got {type(data).__name__}")
    if uses_connections(data) and not isinstance(connections, dict):
        connections = load_connections(connections_file(connections))  # read once
    version = data.get("version", SPEC_VERSION)
    if isinstance(version, int) and version > GRAPH_VERSION:
        raise SpecError(f"{source}: spec version {version} is newer than this raysight "
                        f"understands (up to {GRAPH_VERSION}); upgrade raysight")
    if version != GRAPH_VERSION:
        data = migrate(data, source)
        parse_spec(data, source, connections)
        data = MIGRATIONS[SPEC_VERSION](data)
    try:
        spec = graph_spec_model().model_validate(data, context=validation_context(data,
                                                                                  connections))
    except ValidationError as err:
        raise SpecError(f"{source}: invalid job spec\n" + format_errors(err, data),
                        errors=[_loc(e["loc"], data) for e in err.errors()]) from None
    if isinstance(connections, dict):
        spec._file_connections = connections
    return spec


def load_graph_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                    connections: dict[str, Connection] | str | Path | None = None) -> GraphSpec:
    """A YAML or JSON spec file of any version, validated into its graph (see
    :func:`parse_graph_spec`); ``overrides`` are ``key.path=value`` items, ``connections``
    a connections file (``--connections``) or the connections one defines."""
    return parse_graph_spec(read_spec_file(path, overrides), str(path), connections)


# ---------------------------------------------------------------------------------------------
# Version 1 as a graph

#: the node names a version 1 spec gets as a graph
V1_SOURCE, V1_DATASET, V1_ANALYSIS = "source", "data", "analysis"
#: the node that runs a version 1 step, by the step's stage (``analyze.shuffle`` is analyze's)
V1_STEP_NODES = {"load": V1_SOURCE, "preprocess": V1_DATASET, "analyze": V1_ANALYSIS}


@migration(SPEC_VERSION)
def as_graph(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 spec dict as its version 2 graph: the source becomes node ``source``, its
    preprocessing (if any) dataset ``data``, its analysis node ``analysis``; charts and
    exports keep reading the one analysis. Injected faults name their step as the graph
    does (``analyze`` becomes ``analysis/analyze``)."""
    out = {k: v for k, v in data.items()
           if k not in ("version", "source", "preprocessing", "analysis")}
    out["version"] = GRAPH_VERSION
    out["sources"] = {V1_SOURCE: data.get("source")}
    feeds = V1_SOURCE
    if data.get("preprocessing"):
        out["datasets"] = {V1_DATASET: {"from": V1_SOURCE,
                                        "preprocessing": data["preprocessing"]}}
        feeds = V1_DATASET
    analysis = data.get("analysis")
    out["analyses"] = {V1_ANALYSIS: {"from": feeds, **analysis}
                       if isinstance(analysis, dict) else analysis}
    execution = out.get("execution")
    if isinstance(execution, dict) and isinstance(execution.get("faults"), list):
        out["execution"] = {**execution, "faults": [_graph_fault(f)
                                                    for f in execution["faults"]]}
    return out


def _graph_fault(fault: Any) -> Any:
    step = fault.get("step") if isinstance(fault, dict) else None
    if not isinstance(step, str):
        return fault
    node = V1_STEP_NODES.get(step.split(".")[0])
    return fault if node is None else {**fault, "step": f"{node}/{step}"}


__all__ = [
    "GRAPH_VERSION",
    "GraphSpec",
    "as_graph",
    "graph_json_schema",
    "graph_spec_model",
    "load_graph_spec",
    "parse_graph_spec",
]
