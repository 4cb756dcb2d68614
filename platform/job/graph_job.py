"""A job graph (spec version 2) planned as one engine graph of named nodes.

:class:`GraphJob` plans each node as the flow of its kind: a source loads (``<node>/load``
...), a dataset preprocesses, a join plans and then broadcasts or shuffles, a union conforms
its inputs, an analysis analyzes. The nodes form one :class:`~raysight.engine.graph.Graph`:
a node starts when its inputs are done, independent nodes run concurrently, a node read by
several others runs once, and its Ray tasks are named ``<job_id>/<node>/<step>``. After the
graph, one results step renders every chart and writes every export (the HTML report covers
every analysis), then the notifications and the completion run as in a version 1 job.

Steps take the resources, retries and timeouts of their pipeline stage: sources ``load``,
datasets, joins and unions ``preprocess``, analyses ``analyze``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from raysight import registry
from raysight.analyses.columns import as_frame, require_columns
from raysight.analyses.relational.plan import plan_join
from raysight.analyses.relational.union import union_schema
from raysight.engine.context import Partitions, RunContext, StepOutcome
from raysight.engine.graph import Node, graph
from raysight.engine.workflow import Pass, Step, branch, parallel
from raysight.errors import InputError
from raysight.job import graph_steps as gs
from raysight.job import steps
from raysight.job.flows import (
    absolute_source,
    analyze_flow,
    load_flow,
    preprocess_flow,
    shard_count,
)
from raysight.job.graph_spec import GraphSpec
from raysight.job.pipeline import AnalysisJob
from raysight.job.record import RunRecord
from raysight.job.spec import export_path
from raysight.tables import to_arrow


class GraphRecord(RunRecord):
    """The record of a job graph: data statistics and result rows per node."""

    def on_node_loaded(self, node: str, ctx: RunContext, outcome: StepOutcome) -> None:
        stats = steps.loaded(Partitions(outcome.output.items, outcome.reports), node).stats
        with self.lock:  # the hooks of several nodes run in their threads
            self.data_stats[node] = stats
            for key in ("row_count", "size_bytes", "partitions"):
                self.metrics[key] = self.metrics.get(key, 0) + stats[key]
        self._add_time("data_load_time", outcome)
        ctx.emit("data_loaded", f"{node}/load", job_id=ctx.job_id, node=node,
                 row_count=stats["row_count"], column_count=stats["column_count"],
                 size_bytes=stats["size_bytes"], partitions=stats["partitions"])

    def on_node_analyzed(self, node: str, kind: str, ctx: RunContext,
                         outcome: StepOutcome) -> None:
        rows = outcome.reports[-1].rows
        with self.lock:
            self.metrics[f"result_rows.{node}"] = rows or 0
        self._add_time("analysis_time", outcome)
        ctx.emit("analysis_completed", f"{node}/analyze", job_id=ctx.job_id, node=node,
                 analysis_type=kind, result_type=kind, rows=rows)


class GraphJob(AnalysisJob):
    """A version 2 job spec planned as one graph of Ray tasks.

    >>> job = GraphJob(parse_graph_spec(read_yaml(open("job.yaml").read())))  # doctest: +SKIP
    >>> result = job.run()                                                     # doctest: +SKIP
    >>> result.analyses["by_region"]["rows"]                                   # doctest: +SKIP
    """

    def __init__(self, spec: GraphSpec, run_dir: str | Path = "runs",
                 job_id: str | None = None, resume: bool = False) -> None:
        self._locate(spec, run_dir, job_id, resume)
        self.connectors = {name: registry.connectors.build(absolute_source(config))
                           for name, config in spec.sources.items()}
        self.operations = {name: [registry.preprocessors.build(op) for op in d.preprocessing]
                           for name, d in spec.datasets.items()}
        self.kernels = {name: registry.analyses.build(config)
                        for name, config in spec.analyses.items()}
        only = next(iter(spec.analyses))
        self.graph_charts = [(registry.charts.build(c), c.from_ or only)
                             for c in spec.visualizations]
        # the HTML report covers every analysis: it reads no one node
        self.graph_exports = [(registry.exporters.build(e), export_path(e),
                               e.from_ or (None if e.format == "html" else only))
                              for e in spec.exports]
        self.notifiers = [registry.notifiers.build(n) for n in spec.notifications]
        self._record = self._new_record()

    @property
    def analysis_type(self) -> str:
        return ",".join(sorted({k.name for k in self.kernels.values()}))

    def spec_json(self) -> dict[str, Any]:
        return dict(self.spec.model_dump(mode="json", by_alias=True))

    def _new_record(self) -> GraphRecord:
        return GraphRecord(source=",".join(self.connectors), analysis_type=self.analysis_type,
                           operations=sum(len(o) for o in self.operations.values()),
                           notifies=bool(self.notifiers))

    def preflight(self) -> None:
        """Checks before anything runs or is written: every source exists; where schemas are
        known without reading data (Parquet footers), join keys exist on their sides with
        compatible types and analyses find their columns; the run directory is free."""
        for name, connector in self.connectors.items():
            try:
                connector.check()
            except InputError as err:
                raise InputError(f"source {name!r}: {err}", node=name,
                                 field=f"sources.{name}", **err.details) from None
        self.known_schemas()
        self._check_run_dir()

    def known_schemas(self) -> dict[str, pa.Schema | None]:
        """Each data node's schema where it follows from the sources' schemas known without
        reading data (None where a node needs its data); checks datasets' operations, joins
        and analyses against them on the way (InputError naming node and column)."""
        spec = self.spec
        assert isinstance(spec, GraphSpec)
        known: dict[str, pa.Schema | None] = {}
        sections = spec.nodes()

        def schema(name: str) -> pa.Schema | None:
            if name in known:
                return known[name]
            section = sections[name]
            inputs = [schema(n) for n in spec.inputs(name)]
            out: pa.Schema | None = None
            if section == "sources":
                out = self.connectors[name].schema()
            elif section == "datasets":
                out = None if inputs[0] is None else self._preprocessed(name, inputs[0])
            elif None in inputs:
                out = None
            elif section == "joins":
                try:
                    out = plan_join(spec.joins[name], inputs[0], inputs[1], name).schema
                except InputError as err:  # the field as the spec names it
                    field = err.details.get("field")
                    located = f"joins.{name}" + (f".{field}" if field else "")
                    raise InputError(str(err), **{**err.details, "node": name,
                                                  "field": located}) from None
            elif section == "unions":
                out = union_schema(dict(zip(spec.unions[name].inputs, inputs, strict=True)),
                                   name)
            known[name] = out
            return out

        for name, section in sections.items():
            if section != "analyses":
                schema(name)
                continue
            source = spec.analyses[name].from_
            columns = schema(source)
            if columns is None:
                continue
            try:
                require_columns(columns.names, self.kernels[name].required_columns())
            except InputError as err:
                raise InputError(f"analysis {name!r} (of {source!r}): {err}", node=name,
                                 field=f"analyses.{name}", **err.details) from None
        return known

    def _preprocessed(self, name: str, schema: pa.Schema) -> pa.Schema | None:
        """A dataset's schema: its operations applied to an empty table of its input's
        schema (None where an operation cannot tell without data). An operation naming a
        column its input lacks is an InputError naming the dataset and the operation."""
        frame = as_frame(schema.empty_table())
        for i, op in enumerate(self.operations[name]):
            try:
                frame = op.apply(frame)
            except InputError as err:
                if "missing" not in err.details:  # about the (empty) data, not the columns
                    return None
                raise InputError(f"dataset {name!r}, preprocessing[{i}] ({op.name}): {err}",
                                 node=name, field=f"datasets.{name}.preprocessing[{i}]",
                                 **err.details) from None
            except Exception:  # an operation that needs data to know its output
                return None
        return to_arrow(frame).schema

    # -- planning -------------------------------------------------------------------------

    def graph(self) -> Step:
        """The nodes of the job as one engine graph (without results and notifications)."""
        spec = self.spec
        assert isinstance(spec, GraphSpec)
        nodes: dict[str, Node] = {}
        for name, section in spec.nodes().items():
            # a self-join reads its one input once
            nodes[name] = Node(self._node_flow(name, section),
                               tuple(dict.fromkeys(spec.inputs(name))))
        return graph(nodes)

    def _node_flow(self, name: str, section: str) -> Step:
        spec = self.spec
        record = self._record
        assert isinstance(spec, GraphSpec) and isinstance(record, GraphRecord)
        if section == "sources":
            connector = self.connectors[name]
            return load_flow(self._task, connector, name,
                             on_loaded=partial(record.on_node_loaded, name))
        if section == "datasets":
            return preprocess_flow(self._task, self.operations[name])
        if section == "joins":
            return self._join_flow(name)
        if section == "unions":
            return self._union_flow(name)
        kernel = self.kernels[name]
        return analyze_flow(self._task, kernel, spec.execution.combine_fan_in,
                            on_analyzed=partial(record.on_node_analyzed, name, kernel.name))

    def _join_flow(self, name: str) -> Step:
        config = self.spec.joins[name]  # type: ignore[attr-defined]
        task = self._task
        planned = task("preprocess", "join.plan",
                       partial(gs.plan_join_step, config=config, node=name), mode="driver")
        broadcast = (
            parallel(Pass(), task("preprocess", "join.small", gs.gather_inputs, mode="driver")
                     >> task("preprocess", "join.gather", gs.gather))
            >> task("preprocess", "join.broadcast.inputs", gs.broadcast_inputs, mode="driver")
            >> task("preprocess", "join", gs.broadcast_join, mode="map")
        )
        shards = shard_count()
        sides = parallel(*(
            task("preprocess", f"join.{side}", partial(gs.shard_inputs, side=side),
                 mode="driver")
            >> task("preprocess", f"join.shard.{side}", partial(gs.shard_side, shards=shards),
                    mode="map").with_checkpoint(False).replace_shards(shards)
            for side in ("left", "right")
        ))
        shuffle = (
            parallel(Pass(), sides)
            >> task("preprocess", "join.pairs", gs.shard_pairs, mode="driver")
            >> task("preprocess", "join", gs.join_pair, mode="map")
        )
        return planned >> branch(gs.is_broadcast, broadcast, shuffle)

    def _union_flow(self, name: str) -> Step:
        config = self.spec.unions[name]  # type: ignore[attr-defined]
        task = self._task
        if config.distinct:
            return task("preprocess", "union.schema",
                        partial(gs.union_distinct_inputs, config=config, node=name),
                        mode="driver") >> task("preprocess", "union", gs.union_distinct,
                                               mode="map")
        return task("preprocess", "union.schema",
                    partial(gs.union_inputs, config=config, node=name), mode="driver") \
            >> task("preprocess", "union", gs.union_partition, mode="map")

    def workflow(self) -> Step:
        """The plan: the graph of nodes, then results, notifications and completion."""
        info = {"user_id": self.spec.user_id, "priority": self.spec.priority,
                "analysis_type": self.analysis_type,
                "analysis_types": {n: k.name for n, k in self.kernels.items()}}
        results = self._task(
            "results", "results.inputs", self._results_inputs, mode="driver"
        ) >> self._task(
            "results", "results",
            partial(gs.make_graph_results, charts=self.graph_charts,
                    exports=self.graph_exports, staging=str(self.staging), info=info),
            on_success=self._record.on_results,
        ).with_checkpoint(False)
        return self.graph() >> results >> self._notify_flow(info) >> self._complete_step()

    def _results_inputs(self, outputs: dict[str, Any]) -> tuple[Any, ...]:
        """Driver step: the analyses' results and the exported data nodes' partitions, with
        the layout that says which is which and the facts the report shows."""
        spec = self.spec
        assert isinstance(spec, GraphSpec)
        analyses = tuple(spec.analyses)
        exported = tuple(dict.fromkeys(n for _, _, n in self.graph_exports
                                       if n is not None and n not in spec.analyses))
        tables = [item for n in exported for item in outputs[n].items]
        layout = gs.ResultsLayout(
            analyses, tuple((n, len(outputs[n].items)) for n in exported),
            {n: spec.analyses[n].from_ for n in analyses})
        record = self._record
        facts = steps.RunFacts(dict(record.data_stats), dict(record.metrics))
        return Partitions([outputs[n] for n in analyses]), Partitions(tables), layout, facts


def parse_any_spec(data: Any, source: str = "spec") -> Any:
    """A version 2 spec dict as a GraphSpec, any older one as a version 1 JobSpec."""
    from raysight.job.graph_spec import GRAPH_VERSION, parse_graph_spec
    from raysight.job.spec import parse_spec

    if isinstance(data, dict) and data.get("version") == GRAPH_VERSION:
        return parse_graph_spec(data, source)
    return parse_spec(data, source)


def load_any_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """A spec file of any version, validated (see :func:`parse_any_spec`)."""
    from raysight.job.spec import read_spec_file

    return parse_any_spec(read_spec_file(path, overrides), str(path))


def job_for(spec: Any, run_dir: str | Path = "runs", job_id: str | None = None,
            resume: bool = False) -> AnalysisJob:
    """The job of a validated spec: a GraphJob for a graph, else an AnalysisJob."""
    kind = GraphJob if isinstance(spec, GraphSpec) else AnalysisJob
    return kind(spec, run_dir=run_dir, job_id=job_id, resume=resume)


__all__ = ["GraphJob", "job_for", "load_any_spec", "parse_any_spec"]
