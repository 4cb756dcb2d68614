"""Checks of a job graph against its sources' schemas, before anything runs.

Where a connector knows its schema without reading data (Parquet footers), every node's
schema follows from it: a dataset's is its operations applied to an empty table, a join's
is its plan's, a union's the unified one. On the way, a join key missing on one side or of
an incompatible type, an operation naming an unknown column and an analysis whose input
lacks its columns are InputErrors naming the node and the field. A node whose schema needs
its data (a CSV source, an operation that infers types) is checked when it runs instead.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from raysight.analyses.columns import as_frame, require_columns
from raysight.analyses.relational.plan import plan_join
from raysight.analyses.relational.union import union_schema
from raysight.errors import InputError
from raysight.job.graph_spec import GraphSpec
from raysight.plugins import Analysis, Connector, Preprocessor
from raysight.tables import to_arrow


def known_schemas(spec: GraphSpec, connectors: dict[str, Connector[Any]],
                  operations: dict[str, list[Preprocessor[Any]]],
                  kernels: dict[str, Analysis[Any]]) -> dict[str, pa.Schema | None]:
    """Each data node's schema where it is known without reading data (None where a node
    needs its data); raises InputError for the first node that cannot work."""
    known: dict[str, pa.Schema | None] = {}
    sections = spec.nodes()

    def schema(name: str) -> pa.Schema | None:
        if name in known:
            return known[name]
        section = sections[name]
        inputs = [schema(n) for n in spec.inputs(name)]
        out: pa.Schema | None = None
        if section == "sources":
            out = connectors[name].schema()
        elif section == "datasets":
            out = None if inputs[0] is None else preprocessed(name, operations[name], inputs[0])
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
            out = union_schema(dict(zip(spec.unions[name].inputs, inputs, strict=True)), name)
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
            require_columns(columns.names, kernels[name].required_columns())
        except InputError as err:
            raise InputError(f"analysis {name!r} (of {source!r}): {err}", node=name,
                             field=f"analyses.{name}", **err.details) from None
    return known


def preprocessed(name: str, ops: list[Preprocessor[Any]], schema: pa.Schema) -> pa.Schema | None:
    """A dataset's schema: its operations applied to an empty table of its input's schema
    (None where an operation cannot tell without data). An operation naming a column its
    input lacks is an InputError naming the dataset and the operation."""
    frame = as_frame(schema.empty_table())
    for i, op in enumerate(ops):
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


__all__ = ["known_schemas", "preprocessed"]
