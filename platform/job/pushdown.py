"""What a job needs of each source: the columns and rows its consumers keep first.

A dataset whose preprocessing starts with ``filter_rows`` and ``select_columns`` (in any
order, before any other operation) tells its source which rows it keeps and which columns it
reads; a source read by several nodes needs what any of them needs, and a source that is
exported, joined, concatenated or analyzed as it is needs everything. The hints go to the
connector (:class:`raysight.plugins.ReadHints`), which may then skip columns, files and row
groups; the operations still run, so the hints never change an answer.
"""

from __future__ import annotations

from typing import Any

from raysight.plugins import Preprocessor, ReadHints, condition_columns

#: a consumer that reads every column and every row
EVERYTHING = ReadHints()


def read_hints(spec: Any, source: str, operations: dict[str, list[Preprocessor[Any]]]
               ) -> ReadHints:
    """The hints of source node ``source``: what its consumers need, together."""
    consumers = [name for name in spec.nodes() if source in spec.inputs(name)]
    wanted = [leading_hints(operations[name]) if name in operations else EVERYTHING
              for name in consumers]
    if not wanted or any(export.from_ == source for export in spec.exports):
        return EVERYTHING  # an export writes the source as it is
    columns = None if any(w.columns is None for w in wanted) else \
        tuple(dict.fromkeys(c for w in wanted for c in w.columns or ()))
    filters = None if any(w.filters is None for w in wanted) else \
        tuple(f for w in wanted for f in w.filters or ())
    return ReadHints(columns=columns, filters=filters)


def leading_hints(ops: list[Preprocessor[Any]]) -> ReadHints:
    """The columns and rows the first operations of a dataset keep (its leading
    ``filter_rows`` and ``select_columns``); everything when another operation comes first."""
    conditions: list[str] = []
    used: list[str] = []  # columns the filters read before a selection drops them
    columns: list[str] | None = None
    for op in ops:
        config = op.config
        if op.name == "filter_rows":
            conditions.append(config.condition)
            if columns is None:
                used.extend(sorted(condition_columns(config.condition)))
        elif op.name == "select_columns" and config.include and columns is None:
            columns = [*config.columns, *used]
        else:
            break
    return ReadHints(
        columns=None if columns is None else tuple(dict.fromkeys(columns)),
        filters=(tuple(conditions),) if conditions else None,
    )
