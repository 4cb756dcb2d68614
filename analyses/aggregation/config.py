"""The aggregation config: group keys, metrics, having and order, and the plan they give.

``Metric(column="amount", function="sum")`` is one output column; ``plan_of(config)`` lists
what the kernel computes for a config: the function metrics and one hidden metric per aggregate
call of the expressions and of ``having``. Everything is checked when the config is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from raysight.analyses.aggregation.expressions import AggregateCall, parse_expression, sql_expr
from raysight.analyses.columns import listed_once
from raysight.plugins import PluginConfig

__all__ = [
    "INTERNAL",
    "MERGEABLE",
    "NUMERIC_ONLY",
    "PAIRED",
    "STREAMABLE",
    "AggregationConfig",
    "Function",
    "Metric",
    "Plan",
    "output_names",
    "plan_of",
]

Function = Literal[
    "count", "sum", "mean", "min", "max", "median", "percentile", "n_unique", "count_distinct",
    "std", "var", "first", "last", "top_k", "corr", "r2",
]
MERGEABLE: frozenset[str] = frozenset(
    {"count", "sum", "mean", "min", "max", "std", "var", "first", "last", "corr", "r2"}
)
NUMERIC_ONLY: frozenset[str] = frozenset(
    {"sum", "mean", "median", "percentile", "std", "var", "corr", "r2"}
)
PAIRED: frozenset[str] = frozenset({"corr", "r2"})
#: metrics whose value Polars' streaming engine computes exactly, whatever order its parallel
#: morsels merge in (sum and mean: over integer columns only)
STREAMABLE: frozenset[str] = frozenset(
    {"count", "n_unique", "count_distinct", "min", "max", "sum", "mean"}
)

#: prefix of internal columns (partial tables, hidden metrics); reserved in output names
INTERNAL = "__rs_"


class Metric(PluginConfig):
    """One output column: ``function`` applied to ``column`` within each group, or ``expr``."""

    #: the column to aggregate; required except for ``count`` (which then counts rows)
    column: str | None = Field(default=None, min_length=1)
    function: Function | None = None
    #: the quantile of ``percentile``, in [0, 1] (0.95 = 95th percentile); only for percentile
    q: float | None = None
    #: how many of the largest values ``top_k`` keeps per group; only for top_k
    k: int | None = Field(default=None, ge=1)
    #: the second column of ``corr``/``r2``; only for those
    other: str | None = Field(default=None, min_length=1)
    #: arithmetic over aggregate calls, e.g. ``max(v1) - min(v2)``; needs an alias
    expr: str | None = Field(default=None, min_length=1)
    #: the output column name; defaults to :attr:`output_name`'s rule
    alias: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Metric:
        if self.expr is not None:
            given = [f for f in ("column", "function", "q", "k", "other") if getattr(self, f)]
            if given:
                raise ValueError(f"a metric with expr may not also set {', '.join(given)}")
            if self.alias is None:
                raise ValueError(f"expr {self.expr!r} needs an alias (the output column name)")
            parsed = parse_expression(self.expr)
            if not parsed.calls:
                raise ValueError(
                    f"expr {self.expr!r} has no aggregate call such as sum(column) or max(column)"
                )
            return self
        if self.function is None:
            raise ValueError("a metric needs a function (or an expr)")
        if self.column is None and self.function != "count":
            raise ValueError(f"function {self.function!r} needs a column")
        if self.function == "percentile":
            if self.q is None:
                raise ValueError("function 'percentile' needs q, a quantile in [0, 1] (e.g. 0.95)")
            if not 0.0 <= self.q <= 1.0:
                raise ValueError(f"q must be in [0, 1], got {self.q}")
        elif self.q is not None:
            raise ValueError(f"q is only allowed for function 'percentile', not {self.function!r}")
        if self.function == "top_k" and self.k is None:
            raise ValueError("function 'top_k' needs k, how many values to keep per group")
        if self.function != "top_k" and self.k is not None:
            raise ValueError(f"k is only allowed for function 'top_k', not {self.function!r}")
        if self.function in PAIRED and self.other is None:
            raise ValueError(f"function {self.function!r} needs other, the second column")
        if self.function not in PAIRED and self.other is not None:
            raise ValueError(
                f"other is only allowed for functions 'corr' and 'r2', not {self.function!r}"
            )
        return self

    @property
    def output_name(self) -> str:
        """The alias, else ``count``, ``{function}_{column}``, ``p{100q}_{column}``,
        ``top{k}_{column}`` or ``{function}_{column}_{other}``."""
        if self.alias is not None:
            return self.alias
        if self.column is None:
            return "count"
        if self.function == "percentile":
            assert self.q is not None
            return f"p{round(self.q * 100):g}_{self.column}"
        if self.function == "top_k":
            return f"top{self.k}_{self.column}"
        if self.function in PAIRED:
            return f"{self.function}_{self.column}_{self.other}"
        return f"{self.function}_{self.column}"


class AggregationConfig(PluginConfig):
    """Group keys, the metrics to compute per group, and an optional filter and order."""

    type: Literal["aggregation"] = "aggregation"
    #: group keys; empty gives one row over the whole table
    group_by: list[str] = Field(default_factory=list)
    metrics: list[Metric] = Field(min_length=1)
    #: SQL condition over the output columns (and aggregate calls), e.g. ``count > 10``
    having: str | None = Field(default=None, min_length=1)
    #: output columns to sort by (nulls last), before the keys; default: the keys ascending
    order_by: list[str] | None = Field(default=None, min_length=1)
    #: descending order for all of ``order_by``, or one flag per column
    descending: bool | list[bool] = False
    #: False: leave rows in whatever order the group-by produced them (cheaper for many
    #: groups; the order is then unspecified, like SQL without ORDER BY)
    sort: bool = True

    @model_validator(mode="after")
    def _check(self) -> AggregationConfig:
        listed_once(self.group_by, "group_by")
        seen: set[str] = set(self.group_by)
        for metric in self.metrics:
            name = metric.output_name
            if name in seen:
                clash = "a group key" if name in self.group_by else "another metric"
                raise ValueError(
                    f"output column {name!r} of metric {metric.function or metric.expr!r} clashes "
                    f"with {clash}; give the metric a distinct alias"
                )
            seen.add(name)
        for name in seen:
            if name.startswith(INTERNAL):
                raise ValueError(
                    f"output column {name!r}: names starting with {INTERNAL!r} are reserved"
                )
        top_k = [m for m in self.metrics if m.function == "top_k"]
        if top_k and len(self.metrics) > 1:
            raise ValueError(
                "a top_k metric gives one row per value, so it must be the only metric; "
                "compute the other metrics in a separate aggregation"
            )
        if top_k and top_k[0].column in self.group_by:
            raise ValueError(
                f"top_k of {top_k[0].column!r}, a group key, would repeat the key; "
                "aggregate another column"
            )
        plan = plan_of(self)  # parses expr and having: raises ValueError naming the problem
        if top_k and plan.hidden:
            raise ValueError("having over a top_k result may only refer to its output columns")
        if self.order_by is not None:
            for name in self.order_by:
                if name not in seen:
                    raise ValueError(
                        f"order_by names {name!r}, which is not an output column; "
                        f"output columns: {', '.join(output_names(self))}"
                    )
            if isinstance(self.descending, list) and len(self.descending) != len(self.order_by):
                raise ValueError(
                    f"descending has {len(self.descending)} flags for {len(self.order_by)} "
                    "order_by columns; give one per column or a single true/false"
                )
        elif isinstance(self.descending, list) or self.descending:
            raise ValueError("descending needs order_by (the default order is the keys ascending)")
        if not self.sort and self.order_by is not None:
            raise ValueError("order_by asks for an order and sort: false for none; choose one")
        return self


def output_names(config: AggregationConfig) -> list[str]:
    return [*config.group_by, *(m.output_name for m in config.metrics)]


@dataclass(frozen=True)
class Plan:
    """What the kernel computes for a config.

    ``computed``: the metrics aggregated per group (the function metrics, then one hidden
    metric per distinct aggregate call of the expressions and of ``having``); ``exprs``: output
    name -> SQL text over the computed columns and keys; ``having``: SQL text likewise;
    ``labels``: computed column -> the user-facing metric it serves (for error messages).
    """

    computed: tuple[Metric, ...]
    exprs: tuple[tuple[str, str], ...]
    having: str | None
    hidden: tuple[str, ...]
    labels: Mapping[str, str]

    @property
    def value_columns(self) -> list[str]:
        """The columns the computed metrics read, in order of first use."""
        columns: list[str] = []
        for m in self.computed:
            columns += [c for c in (m.column, m.other) if c is not None]
        return list(dict.fromkeys(columns))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The distinct (column, other) pairs of corr/r2 metrics."""
        return list(
            dict.fromkeys(
                (m.column, m.other)
                for m in self.computed
                if m.function in PAIRED and m.column and m.other
            )
        )


def hidden_metric(call: AggregateCall, alias: str) -> Metric:
    """The hidden metric computing an aggregate call of an expression."""
    return Metric(
        function=call.function,  # type: ignore[arg-type]
        column=call.column,
        other=call.other,
        alias=alias,
    )


def plan_of(config: AggregationConfig) -> Plan:
    computed = [m for m in config.metrics if m.expr is None]
    labels = {m.output_name: f"metric {m.output_name!r}" for m in computed}
    names: dict[AggregateCall, str] = {}

    def rewrite(text: str, owner: str, allowed: set[str], what: str) -> str:
        parsed = parse_expression(text)
        for call in parsed.calls:
            if call not in names:
                names[call] = f"{INTERNAL}a{len(names)}"
                computed.append(hidden_metric(call, names[call]))
                labels[names[call]] = f"{owner} ({call})"
        rendered = parsed.render(names)
        expr = sql_expr(rendered, f"{owner}: {text!r} is not a valid SQL expression")
        for root in expr.meta.root_names():
            if root not in allowed and root not in names.values():
                raise ValueError(f"{owner}: {text!r} refers to {root!r}, which is not {what}")
        return rendered

    keys = set(config.group_by)
    outside = "a group key (columns may only appear inside aggregate calls such as max(v))"
    exprs = tuple(
        (m.output_name, rewrite(m.expr, f"metric {m.output_name!r}", keys, outside))
        for m in config.metrics
        if m.expr is not None
    )
    having = None
    if config.having is not None:
        outputs = output_names(config)
        what = f"an output column ({', '.join(outputs)}) or an aggregate call"
        having = rewrite(config.having, "having", set(outputs), what)
    return Plan(tuple(computed), exprs, having, tuple(names.values()), labels)
