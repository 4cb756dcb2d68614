"""A job's row filters (:class:`raysight.plugins.ReadHints`) applied where files are read:
which hive partition folders can hold a kept row, and the pyarrow expression that skips
Parquet row groups by their statistics.

Both only ever skip data where no row can meet the filters; the job's ``filter_rows`` still
runs on what is read, so an answer never depends on what was skipped.

* Partition folders are judged with Polars itself (the semantics of ``filter_rows``): each
  part of a condition's top-level ``AND`` that reads only partition columns is evaluated on
  the folder's values.
* Row groups are judged by pyarrow from the column statistics, on the conditions Polars can
  translate to a pyarrow expression (comparisons, ``IN``, ``IS NULL``, ``AND``/``OR``...;
  Polars leaves out what it cannot translate). A condition on a floating-point column is
  never used: Polars orders NaN above every number while Parquet statistics leave NaN out,
  so ``x > 1`` keeps a NaN row of a group whose statistics say max 0.5.
"""

from __future__ import annotations

import functools
import json
import operator
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from raysight.plugins import condition_columns


def folder_may_match(filters: tuple[tuple[str, ...], ...] | None, values: dict[str, Any],
                     columns: dict[str, pa.DataType]) -> bool:
    """Whether a file whose partition folders hold ``values`` can hold a row the filters
    keep: some alternative has no condition on partition columns alone that is false (or
    null) for these values."""
    if filters is None or not columns:
        return True
    row = pl.from_arrow(pa.table({k: pa.array([values[k]], t) for k, t in columns.items()}))
    assert isinstance(row, pl.DataFrame)
    return any(all(_holds(row, part) for c in conditions for part in _conjuncts(pl.sql_expr(c))
                   if set(part.meta.root_names()) <= set(columns))
               for conditions in filters)


def arrow_filter(filters: tuple[tuple[str, ...], ...] | None, schema: pa.Schema
                 ) -> pc.Expression | None:
    """The filters as one pyarrow expression over ``schema`` for skipping row groups; None
    when some alternative has no condition that translates (then no group can be skipped)."""
    if filters is None:
        return None
    floats = {f.name for f in schema if pa.types.is_floating(f.type)}
    alternatives = []
    for conditions in filters:
        usable = [c for c in conditions
                  if condition_columns(c) <= set(schema.names)
                  and not condition_columns(c) & floats]
        expr = _translated(usable, schema) if usable else None
        if expr is None:
            return None
        alternatives.append(expr)
    return functools.reduce(operator.or_, alternatives)


def partition_expression(values: dict[str, Any]) -> pc.Expression | None:
    """What every row of a partition folder satisfies (``year == 2024 and region == 'EU'``),
    for pyarrow to simplify a filter with."""
    parts = [pc.field(k).is_null() if v is None else pc.field(k) == v
             for k, v in values.items()]
    return functools.reduce(operator.and_, parts) if parts else None


class _Probe:
    """Stands in for a pyarrow dataset so Polars hands over the predicate it pushes down."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.filter: pc.Expression | None = None

    def to_batches(self, filter: pc.Expression | None = None, **_: Any) -> Any:
        self.filter = filter
        return iter(())


def _translated(conditions: list[str], schema: pa.Schema) -> pc.Expression | None:
    probe = _Probe(schema)
    frame = pl.scan_pyarrow_dataset(probe)  # type: ignore[arg-type]
    for condition in conditions:
        frame = frame.filter(pl.sql_expr(condition))
    try:
        frame.collect()
    except (pl.exceptions.PolarsError, pa.ArrowException):
        return None  # types the condition cannot compare: the job's filter will say so
    return probe.filter


def _holds(row: pl.DataFrame, condition: pl.Expr) -> bool:
    try:
        return row.filter(condition).height == 1
    except pl.exceptions.PolarsError:
        return True  # the job's filter reports the error on the rows


def _conjuncts(expr: Any) -> list[pl.Expr]:
    """The parts of ``a AND b AND c``, each of which every kept row meets; ``[expr]`` for
    anything else (Polars names an expression's operator only in its serialized form)."""
    try:
        node = json.loads(expr.meta.serialize(format="json"))
        binary = node.get("BinaryExpr") if isinstance(node, dict) else None
        is_and = isinstance(binary, dict) and binary.get("op") in ("And", "LogicalAnd")
    except (ValueError, pl.exceptions.PolarsError):
        is_and = False
    if not is_and:
        return [expr]
    return [part for side in expr.meta.pop() for part in _conjuncts(side)]
