"""New columns from row-wise SQL expressions, checked to be row-local."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import polars as pl
from pydantic import Field, field_validator

from raysight.analyses.columns import require_columns
from raysight.analyses.preprocess.checks import polars_message
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["Derive", "DeriveConfig"]


#: expression nodes and functions that look at other rows; a derived column must be row-local
_NOT_ROW_LOCAL = frozenset(
    {"Agg", "Over", "Len", "Window", "Slice", "Filter", "Gather", "Sort", "SortBy", "Explode",
     "Implode", "Range", "Shift", "Diff", "PctChange", "Rank", "Reverse", "Unique", "Mode",
     "Interpolate", "FillNullWithStrategy", "Head", "Tail", "Repeat", "ValueCounts"}
)
_ROW_COMBINING_PREFIXES = ("Cum", "Rolling", "Ewm", "Arg", "Forward", "Backward")


def _combines_rows(name: str) -> bool:
    return name in _NOT_ROW_LOCAL or name.startswith(_ROW_COMBINING_PREFIXES)


def _non_row_local_node(expr: pl.Expr) -> str | None:
    """The name of the first node of ``expr`` that combines rows (an aggregate, a window).

    Walks Polars' serialized expression tree. A function's descriptor is judged by its
    top-level name only, so functions inside a namespace (``StringExpr`` slice, ``ListExpr``
    unique) stay row-local; per-list evaluation (``array_reverse``) is row-local too.
    """
    pending: list[Any] = [json.loads(expr.meta.serialize(format="json"))]
    while pending:
        node = pending.pop()
        if isinstance(node, str) and _combines_rows(node):
            return node
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if _combines_rows(key):
                    return key
                if key == "function":  # a descriptor, e.g. "Shift" or {"StringExpr": "Slice"}
                    name = value if isinstance(value, str) else next(iter(value), "")
                    if _combines_rows(name):
                        return str(name)
                elif key == "Eval":
                    if value.get("variant") not in ("List", "Array"):
                        return "Eval"
                    pending.append(value.get("expr"))
                elif key not in ("Column", "Literal"):  # names and values are data, not nodes
                    pending.append(value)
    return None


class DeriveConfig(PluginConfig):
    """New columns from row-wise SQL expressions."""

    op: Literal["derive"] = "derive"
    #: new column name -> SQL expression (Polars SQL, never Python eval), applied in this
    #: order, so a later expression may use an earlier new column; an existing name is replaced
    columns: dict[str, str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _parses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, sql in value.items():
            if not name:
                raise ValueError("a derived column needs a non-empty name")
            try:
                expr = pl.sql_expr(sql)
            except pl.exceptions.PolarsError as exc:
                raise ValueError(f"invalid SQL expression {sql!r} for {name!r}: {exc}") from None
            assert isinstance(expr, pl.Expr)
            node = _non_row_local_node(expr)
            if node is not None:
                raise ValueError(
                    f"expression {sql!r} for {name!r} combines rows ({node}); derived columns "
                    "are computed per row (aggregates and window functions are not allowed)"
                )
        return value


class Derive(Preprocessor[DeriveConfig]):
    """The table with new columns computed per row from SQL expressions.

    Example: ``Derive(DeriveConfig(columns={"revenue": "price * quantity",
    "is_refund": "amount < 0"})).apply(df)``. The dtype is the expression's Polars dtype.
    """

    name: ClassVar[str] = "derive"
    Config = DeriveConfig

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        for name, sql in self.config.columns.items():
            expr = pl.sql_expr(sql)
            assert isinstance(expr, pl.Expr)
            require_columns(df.columns, expr.meta.root_names())
            try:
                df = df.with_columns(expr.alias(name))
            except pl.exceptions.PolarsError as exc:
                raise InputError(
                    f"cannot derive column {name!r} from {sql!r}: {polars_message(exc)}",
                    column=name,
                    expression=sql,
                ) from None
        return df
