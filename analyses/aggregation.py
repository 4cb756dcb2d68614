"""Group-by aggregation: metrics per group, equal to Polars on the whole table.

::

    agg = Aggregation(Aggregation.Config(
        group_by=["region"],
        metrics=[Metric(function="count"), Metric(column="amount", function="sum")],
    ))
    agg.run(df).table        # region, count, sum_amount; sorted by region, nulls last

Semantics (as Polars ``df.group_by(keys).agg(...)``): null keys form their own group; ``count``
without a column counts rows, with a column its non-null values; ``sum`` of a group without
values is 0, ``mean``/``min``/``max``/``median``/``std``/``var``/``percentile`` are null there;
``std``/``var`` are sample statistics (ddof=1, null below two values); ``percentile``
interpolates linearly; ``n_unique`` (alias ``count_distinct``) counts distinct non-null values;
``first``/``last`` are the values of the group's first/last row in row order (null when that
row's value is null, as Polars ``first()``); ``corr`` is Pearson's correlation of ``column`` and
``other`` over the rows where both are non-null, null when there are fewer than two such rows or
either column is constant over them (Polars and DuckDB give NaN there), and ``r2`` its square.
Float NaN is a value, not a missing one (as in Polars). Output dtypes: ``count`` and
``n_unique`` Int64; ``mean``, ``median``, ``percentile``, ``std``, ``var``, ``corr`` and ``r2``
Float64; ``sum`` the Polars sum dtype of the column; ``min``/``max``/``first``/``last``/``top_k``
the column dtype. Rows are sorted by the keys ascending, nulls last (or by ``order_by``, then
the keys); columns are the keys, then the metrics in declaration order. Without ``group_by`` the
result is one row, also for an empty table (count 0, sum 0, the others null).

``top_k`` (with ``k``) gives the k largest non-null values of each group, ONE ROW PER VALUE
(db-benchmark q8): the result has the keys and the value column, groups in key order and each
group's values in descending order; a group with fewer than k values has fewer rows, a group
without values none; ties are kept (``[5, 5, 3]`` with k=2 gives 5 and 5); NaN counts as the
largest float, as in Polars. Because its rows are values rather than groups, a ``top_k`` metric
must be the only metric of its aggregation.

Expressions over aggregates: ``Metric(expr="max(v1) - min(v2)", alias="range_v1_v2")``. The
aggregate calls ``fn(column)`` in the text (``sum``, ``mean``/``avg``, ``min``, ``max``,
``count`` and ``count(*)``, ``median``, ``std``/``stddev``, ``var``/``variance``, ``first``,
``last``, ``corr(x, y)``) are read by a tokenizer (never ``eval``), computed as hidden metrics
like any other (so they are distributed), and the rest of the text is evaluated as a Polars
SQL expression over them (``pl.sql_expr``); outside an aggregate call it may refer to group
keys only. ``having`` is a SQL condition over the output columns (keys and metric names), which
may also hold aggregate calls (``count(*) > 10``); rows where it is false or null are dropped.
Both are checked when the config is built.

Distributed, two ways:

* partial→combine. When every metric is mergeable (count, sum, mean, min, max, std, var, first,
  last, corr, r2, and expressions over those), ``partial`` aggregates each partition per group
  (row count, non-null count, sum, min, max, first, last, mean with M2 for std/var, and the
  co-moments n, mean_x, mean_y, C_xy, M2_x, M2_y with min/max of x and y for corr) and
  ``merge`` merges such tables into one of the same shape (Chan's parallel formula
  for M2 and C_xy), so partials can be reduced as a tree of adjacent partials in partition
  order (first and last depend on it); ``finalize`` turns a merged partial into the result.
  When any metric is holistic (median, percentile, n_unique, top_k), ``partial`` projects the
  needed columns (``top_k`` keeps only each group's k largest values) and the merge
  concatenates them: a gather, exact, but all those rows meet in one task.
* shuffle. ``shuffle_keys`` names the group keys when a metric is holistic and there are keys
  (None otherwise: partial→combine is cheaper). ``shard(df, n)`` projects the needed columns
  of one partition (for ``top_k``, each group's k largest values) and splits them into n Arrow
  tables by a stable hash of the keys: equal keys, null included, land in the same shard in
  every process, whatever the integer or float width or categorical encoding of the key, and
  rows keep their order. ``reduce_shard`` aggregates one shard's tables (given in partition
  order) exactly, expression inputs included; ``finish`` concatenates the shard answers,
  evaluates expressions, applies ``having`` and the order. The result equals ``run`` on the
  partitions concatenated in order. ``shard`` works for any aggregation with keys.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from raysight.analyses.columns import as_frame, is_numeric, listed_once, require_columns, stack
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = [
    "Aggregation",
    "AggregationConfig",
    "AggregateCall",
    "Function",
    "Metric",
    "ParsedExpression",
    "parse_expression",
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
_P = "__rs_"
#: seed of the shuffle hash; every process must use the same one
SHUFFLE_SEED = 0x5EED


# ---------------------------------------------------------------------------------------------
# Expressions over aggregates: a small tokenizer (no eval)

#: aggregate call names in expressions -> Metric.function
EXPRESSION_FUNCTIONS: Mapping[str, str] = {
    "sum": "sum",
    "mean": "mean",
    "avg": "mean",
    "min": "min",
    "max": "max",
    "count": "count",
    "median": "median",
    "std": "std",
    "stddev": "std",
    "stddev_samp": "std",
    "var": "var",
    "variance": "var",
    "var_samp": "var",
    "first": "first",
    "last": "last",
    "corr": "corr",
}

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")+")
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[^\W\d]\w*)
    | (?P<comment>--|/\*)
    | (?P<symbol><>|!=|<=|>=|\|\||::|[-+*/%(),<>=!|&^~:.\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class AggregateCall:
    """One aggregate call of an expression: ``function(column[, other])``."""

    function: str
    column: str | None
    other: str | None = None

    def __str__(self) -> str:
        args = "*" if self.column is None else self.column
        return f"{self.function}({args}{'' if self.other is None else ', ' + self.other})"

    def metric(self, alias: str) -> Metric:
        """The hidden metric computing this call."""
        return Metric(
            function=self.function,  # type: ignore[arg-type]
            column=self.column,
            other=self.other,
            alias=alias,
        )


@dataclass(frozen=True)
class ParsedExpression:
    """An expression split into SQL text and aggregate calls, in the order they appear."""

    pieces: tuple[str | AggregateCall, ...]

    @property
    def calls(self) -> list[AggregateCall]:
        """The distinct aggregate calls, in order of first appearance."""
        return list(dict.fromkeys(p for p in self.pieces if isinstance(p, AggregateCall)))

    def render(self, names: Mapping[AggregateCall, str]) -> str:
        """The SQL text with each call replaced by the quoted column that holds its value."""
        return "".join(
            _quote(names[p]) if isinstance(p, AggregateCall) else p for p in self.pieces
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) of every token, whitespace included."""
    out = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"unexpected character {text[pos]!r} at position {pos} of {text!r}")
        kind = match.lastgroup or ""
        if kind == "comment":
            raise ValueError(f"comments are not allowed in expressions ({text!r})")
        out.append((kind, match.group(), pos))
        pos = match.end()
    return out


def parse_expression(text: str) -> ParsedExpression:
    """Split ``text`` into SQL pieces and aggregate calls; ValueError names what is wrong.

    ``parse_expression("max(v1) - min(v2)")`` has the calls ``max(v1)`` and ``min(v2)``;
    ``render({max(v1): "a", min(v2): "b"})`` gives ``"a" - "b"``.
    """
    tokens = _tokens(text)
    significant = [i for i, t in enumerate(tokens) if t[0] != "space"]
    pieces: list[str | AggregateCall] = []
    s = 0  # index into significant
    emitted = 0  # tokens[:emitted] are in pieces
    while s < len(significant):
        i = significant[s]
        kind, value, pos = tokens[i]
        is_call = (
            kind == "name"
            and value.lower() in EXPRESSION_FUNCTIONS
            and s + 1 < len(significant)
            and tokens[significant[s + 1]][1] == "("
        )
        if not is_call:
            s += 1
            continue
        call, s = _parse_call(tokens, significant, s, text)
        pieces.extend(t[1] for t in tokens[emitted:i])
        pieces.append(call)
        emitted = significant[s - 1] + 1
    pieces.extend(t[1] for t in tokens[emitted:])
    return ParsedExpression(tuple(pieces))


def _parse_call(
    tokens: list[tuple[str, str, int]], significant: list[int], s: int, text: str
) -> tuple[AggregateCall, int]:
    """The call starting at significant token ``s`` and the index just after its ``)``."""
    name, pos = tokens[significant[s]][1], tokens[significant[s]][2]
    function = EXPRESSION_FUNCTIONS[name.lower()]
    arity = 2 if function == "corr" else 1
    usage = f"{name}(x, y)" if arity == 2 else f"{name}(column)"
    problem = (
        f"{name}(...) at position {pos} of {text!r}: an aggregate's arguments must be column "
        f"names, as in {usage}" + (" or count(*)" if function == "count" else "")
    )
    args: list[str | None] = []
    s += 2  # past the name and "("
    while True:
        if s >= len(significant):
            raise ValueError(problem)
        kind, value, _ = tokens[significant[s]]
        if kind == "name":
            args.append(value)
        elif kind == "quoted":
            args.append(value[1:-1].replace('""', '"'))
        elif value == "*" and function == "count" and not args:
            args.append(None)
        else:
            raise ValueError(problem)
        if s + 1 >= len(significant):
            raise ValueError(problem)
        separator = tokens[significant[s + 1]][1]
        s += 2
        if separator == ")":
            break
        if separator != ",":
            raise ValueError(problem)
    if len(args) != arity:
        raise ValueError(problem)
    return AggregateCall(function, args[0], args[1] if arity == 2 else None), s


def _sql(text: str, where: str) -> pl.Expr:
    """The Polars expression of SQL text; ValueError naming ``where`` when it does not parse."""
    try:
        return pl.sql_expr(text)
    except pl.exceptions.PolarsError as err:
        raise ValueError(f"{where}: {err}") from None


# ---------------------------------------------------------------------------------------------
# Config


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
            if name.startswith(_P):
                raise ValueError(f"output column {name!r}: names starting with {_P!r} are reserved")
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
        plan = _plan(self)  # parses expr and having: raises ValueError naming the problem
        if top_k and plan.hidden:
            raise ValueError("having over a top_k result may only refer to its output columns")
        if self.order_by is not None:
            for name in self.order_by:
                if name not in seen:
                    raise ValueError(
                        f"order_by names {name!r}, which is not an output column; "
                        f"output columns: {', '.join(_outputs(self))}"
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


def _outputs(config: AggregationConfig) -> list[str]:
    return [*config.group_by, *(m.output_name for m in config.metrics)]


@dataclass(frozen=True)
class _Plan:
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


def _plan(config: AggregationConfig) -> _Plan:
    computed = [m for m in config.metrics if m.expr is None]
    labels = {m.output_name: f"metric {m.output_name!r}" for m in computed}
    names: dict[AggregateCall, str] = {}

    def rewrite(text: str, owner: str, allowed: set[str], what: str) -> str:
        parsed = parse_expression(text)
        for call in parsed.calls:
            if call not in names:
                names[call] = f"{_P}a{len(names)}"
                computed.append(call.metric(names[call]))
                labels[names[call]] = f"{owner} ({call})"
        rendered = parsed.render(names)
        expr = _sql(rendered, f"{owner}: {text!r} is not a valid SQL expression")
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
        outputs = _outputs(config)
        what = f"an output column ({', '.join(outputs)}) or an aggregate call"
        having = rewrite(config.having, "having", set(outputs), what)
    return _Plan(tuple(computed), exprs, having, tuple(names.values()), labels)


# ---------------------------------------------------------------------------------------------
# Kernel


class Aggregation(Analysis[AggregationConfig]):
    """Metrics per group of ``group_by`` keys, sorted by the keys (nulls last)."""

    name: ClassVar[str] = "aggregation"
    Config = AggregationConfig

    def output_columns(self) -> list[str]:
        return _outputs(self.config)

    @property
    def keys(self) -> list[str]:
        return list(self.config.group_by)

    @functools.cached_property
    def plan(self) -> _Plan:
        """The metrics computed per group, expressions and having (from the config)."""
        return _plan(self.config)

    @property
    def _top_k(self) -> Metric | None:
        first = self.config.metrics[0]
        return first if first.function == "top_k" else None

    def _engine(self, schema: pl.Schema) -> Literal["in-memory", "streaming"]:
        """Polars' streaming engine where its answer is exact, its in-memory engine elsewhere.

        The streaming engine merges the partial results of parallel morsels in arrival order,
        so float sums, means, variances and correlations change in their last bits from run
        to run (measured; a resumed job then differs from an uninterrupted one); the in-memory
        engine gives the same bits every time. Streaming is faster where it may run (db-benchmark
        q2 at 1e7 rows: 0.09 s against 0.24 s).
        """
        for m in self.plan.computed:
            if m.function not in STREAMABLE:
                return "in-memory"
            if m.function in ("sum", "mean") and not (m.column and schema[m.column].is_integer()):
                return "in-memory"
        return "streaming"

    @property
    def mergeable(self) -> bool:
        """Whether partials are aggregates (True) or projected rows (holistic metrics)."""
        return all(m.function in MERGEABLE for m in self.plan.computed)

    def required_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.config.group_by, *self._value_columns()]))

    def _value_columns(self) -> list[str]:
        columns: list[str] = []
        for m in self.plan.computed:
            columns += [c for c in (m.column, m.other) if c is not None]
        return list(dict.fromkeys(columns))

    def _pairs(self) -> list[tuple[str, str]]:
        """The distinct (column, other) pairs of corr/r2 metrics."""
        return list(
            dict.fromkeys(
                (m.column, m.other)
                for m in self.plan.computed
                if m.function in PAIRED and m.column and m.other
            )
        )

    def _validate(self, schema: pl.Schema) -> None:
        names = list(schema.names())
        require_columns(names, self.config.group_by, what="group-by column")
        require_columns(names, self._value_columns())
        for m in self.plan.computed:
            label = self.plan.labels[m.output_name]
            for column in (m.column, m.other):
                if column is None:
                    continue
                dtype = schema[column]
                if m.function in NUMERIC_ONLY and not (is_numeric(dtype) or dtype == pl.Null):
                    raise InputError(
                        f"{label}: {m.function} needs a numeric column; "
                        f"column {column!r} is {dtype}",
                        column=column,
                        function=m.function,
                        dtype=str(dtype),
                    )
                if m.function == "top_k" and dtype.is_nested():
                    raise InputError(
                        f"{label}: top_k needs values that can be ordered; "
                        f"column {column!r} is {dtype}",
                        column=column,
                        function=m.function,
                        dtype=str(dtype),
                    )

    # -- single partition ---------------------------------------------------------------------

    def run(self, df: pl.DataFrame) -> AnalysisResult:
        """Aggregate a whole table in memory with one Polars query (no partial state)."""
        self._validate(df.schema)
        return self._result(self._aggregate(df))

    def _aggregate(self, df: pl.DataFrame) -> pl.DataFrame:
        """Keys and computed metric columns (top_k: one row per value), unordered."""
        top = self._top_k
        if top is not None:
            return self._largest(df, top.output_name)
        # bare aggregations inside agg(), the rest on the grouped rows (see _direct)
        masks: list[pl.Expr] = []
        exprs: list[pl.Expr] = []
        after: list[pl.Expr] = []
        for j, m in enumerate(self.plan.computed):
            if m.function in PAIRED:
                pre, aggs, final = _paired(m, df, f"{_P}{j}_")
                masks += pre
            else:
                aggs, final = _direct(m, f"{_P}{j}_", df)
            exprs += aggs
            after.append(final.alias(m.output_name))
        return (_grouped(df, self.keys, exprs, masks).select(*self.keys, *after)
                .collect(engine=self._engine(df.schema)))

    def _largest(self, df: pl.DataFrame, name: str) -> pl.DataFrame:
        """Keys and the k largest non-null values of each group, one row each, as ``name``."""
        top = self._top_k
        assert top is not None and top.column is not None and top.k is not None
        rows = (
            df.lazy()
            .select(*self.keys, pl.col(top.column).alias(name))
            .filter(pl.col(name).is_not_null())
        )
        if not self.keys:
            return rows.select(pl.col(name).top_k(top.k)).collect(engine="in-memory")
        return (rows.group_by(self.keys).agg(pl.col(name).top_k(top.k)).explode(name)
                .collect(engine="in-memory"))

    # -- distributed: partial -> combine ------------------------------------------------------

    def _partial_plan(self, df: pl.DataFrame | None = None) -> list[tuple[str, pl.Expr, str]]:
        """Columns of a mergeable partial table: (name, aggregate per partition, merge rule).

        The merge rule is ``sum``, ``min``, ``max``, ``first`` or ``last`` of the partial
        values, ``moments`` for the mean/M2 pairs that Chan's formula merges together, or
        ``comoments`` for the co-moments of a corr pair. The aggregates are bare (see _direct);
        ``_partial_after`` gives the columns their dtypes and M2 its value on the grouped rows.
        With the partition ``df`` given, a column without nulls counts its values by len().
        """
        plan = [(f"{_P}len", pl.len(), "sum")]
        for j, c in enumerate(self._value_columns()):
            functions = {
                m.function for m in self.plan.computed if m.column == c and m.function not in PAIRED
            }
            col = pl.col(c)
            if functions & {"count", "mean", "std", "var"}:
                plan.append((f"{_P}n{j}", _count(c, df), "sum"))
            if functions & {"sum", "mean"}:
                plan.append((f"{_P}sum{j}", col.sum(), "sum"))
            for rule in ("min", "max", "first", "last"):
                if rule in functions:
                    plan.append((f"{_P}{rule}{j}", getattr(col, rule)(), rule))
            if functions & {"std", "var"}:
                plan.append((f"{_P}mean{j}", col.mean(), "moments"))
                # the population variance here; times n in _partial_after (M2 = n var)
                plan.append((f"{_P}m2_{j}", col.var(ddof=0), "moments"))
        for p, (c, o) in enumerate(self._pairs()):
            complete = df is None or _complete(df, c, o)
            x, y = (c, o) if complete else (f"{_P}px{p}", f"{_P}py{p}")
            plan += [(f"{_P}c{name}{p}", e, rule)
                     for name, (e, rule) in _comoments(x, y, complete).items()]
        return plan

    def partial(self, df: pl.DataFrame) -> pa.Table:
        """Per-group partial aggregates (mergeable metrics) or the needed rows (holistic)."""
        self._validate(df.schema)
        if not self.mergeable:
            return to_arrow(self._rows(df))
        exprs = [expr.alias(name) for name, expr, _ in self._partial_plan(df)]
        masks = [e for p, (c, o) in enumerate(self._pairs())
                 for e in _pair_masks(df, c, o, f"{_P}p", p)]
        out = _grouped(df, self.keys, exprs, masks)
        return to_arrow(out.with_columns(self._partial_after(out.collect_schema().names()))
                        .collect(engine=self._engine(df.schema)))

    def _partial_after(self, columns: list[str]) -> list[pl.Expr]:
        """Dtypes of the partial columns (counts Int64, moments Float64) and M2 = n * var."""
        after = [pl.col(f"{_P}len").cast(pl.Int64)]
        for j in range(len(self._value_columns())):
            n = f"{_P}n{j}"
            if n in columns:
                after.append(pl.col(n).cast(pl.Int64))
            if f"{_P}m2_{j}" in columns:
                after.append(pl.col(f"{_P}mean{j}").cast(pl.Float64))
                after.append((pl.col(f"{_P}m2_{j}").cast(pl.Float64) * pl.col(n).cast(pl.Float64))
                             .fill_null(0.0).alias(f"{_P}m2_{j}"))
        for p in range(len(self._pairs())):
            after += _comoments_after(f"{_P}c", p)
        return after

    def _rows(self, df: pl.DataFrame) -> pl.DataFrame:
        """The needed columns; for top_k only each group's k largest values (as the column)."""
        top = self._top_k
        if top is not None:
            assert top.column is not None
            return self._largest(df, top.column)
        return df.select(self.required_columns())

    def merge(self, partials: list[pa.Table]) -> pa.Table:
        """One partial table of the same shape holding the merge of ``partials`` (associative;
        ``partials`` in partition order)."""
        if not partials:
            raise ValueError("merge needs at least one partial table")
        stacked = stack(partials)
        if not self.mergeable:
            return to_arrow(self._rows(stacked))
        plan = self._partial_plan()
        live = pl.col(f"{_P}len") > 0  # the partial row of an empty partition has no first/last
        exprs = []
        for name, _, rule in plan:
            if rule in ("first", "last"):
                exprs.append(getattr(pl.col(name).filter(live), rule)())
            elif rule in ("sum", "min", "max"):
                exprs.append(getattr(pl.col(name), rule)())
        for j in range(len(self._value_columns())):
            if f"{_P}m2_{j}" in stacked.columns:
                exprs += _merge_moments(f"{_P}n{j}", f"{_P}mean{j}", f"{_P}m2_{j}")
        for p in range(len(self._pairs())):
            exprs += _merge_comoments(f"{_P}c", p)
        out = _grouped(stacked, self.keys, exprs)
        return to_arrow(out.select(*self.keys, *(name for name, _, _ in plan))
                        .collect(engine="in-memory"))

    def finalize(self, partial: pa.Table) -> AnalysisResult:
        """The result from one (merged) partial table."""
        df = as_frame(partial)
        if not self.mergeable:
            return self.run(df)
        index = {c: j for j, c in enumerate(self._value_columns())}
        pairs = {pair: p for p, pair in enumerate(self._pairs())}
        exprs = []
        for m in self.plan.computed:
            if m.function in PAIRED:
                number = pairs[(m.column or "", m.other or "")]
            else:
                number = index.get(m.column or "", -1)
            exprs.append(_final(m, number).alias(m.output_name))
        return self._result(df.select(*self.keys, *exprs))

    def combine(self, partials: list[pa.Table]) -> AnalysisResult:
        """The result from the partial tables of all partitions (in partition order)."""
        return self.finalize(self.merge(partials))

    # -- distributed: shuffle -----------------------------------------------------------------

    def shuffle_keys(self) -> list[str] | None:
        """The group keys when a metric is holistic and there are keys; else None."""
        return self.keys if self.keys and not self.mergeable else None

    def shard(self, df: pl.DataFrame, n: int) -> list[pa.Table]:
        """The needed rows of one partition split into ``n`` tables by a hash of the keys.

        Rows with equal keys (null included) land in the same shard, whatever the partition,
        process or integer/float width of the key; row order is kept within each shard.
        """
        if n < 1:
            raise ValueError(f"shard needs n >= 1, got {n}")
        if not self.keys:
            raise ValueError("shard needs group keys to hash by (this aggregation has none)")
        self._validate(df.schema)
        rows = self._rows(df)
        if n == 1:
            return [to_arrow(rows)]
        column = f"{_P}shard"
        parts = rows.with_columns(_shard_of(rows.schema, self.keys, n).alias(column)).partition_by(
            column, as_dict=True, include_key=False, maintain_order=True
        )
        empty = rows.clear()
        return [to_arrow(parts.get((i,), empty)) for i in range(n)]

    def reduce_shard(self, tables: list[pa.Table]) -> pa.Table:
        """The keys and computed metrics of the groups of one shard (tables in partition order)."""
        if not tables:
            raise ValueError("reduce_shard needs the shard's table of at least one partition")
        df = stack(tables)
        self._validate(df.schema)
        return to_arrow(self._aggregate(df))

    def finish(self, shards: list[pa.Table]) -> AnalysisResult:
        """The result from the answers of all shards: concatenated, filtered and ordered."""
        if not shards:
            raise ValueError("finish needs the answer of at least one shard")
        return self._result(stack(shards))

    # -- result -------------------------------------------------------------------------------

    def _result(self, table: pl.DataFrame) -> AnalysisResult:
        """Expressions, having, order and column selection over the computed columns."""
        plan = self.plan
        for name, text in plan.exprs:
            try:
                table = table.with_columns(pl.sql_expr(text).alias(name))
            except pl.exceptions.PolarsError as err:
                raise InputError(
                    f"metric {name!r}: cannot evaluate its expr: {_first_line(err)}", metric=name
                ) from None
        if plan.having is not None:
            try:
                table = table.filter(pl.sql_expr(plan.having))
            except pl.exceptions.PolarsError as err:
                raise InputError(
                    f"having {self.config.having!r}: cannot evaluate it: {_first_line(err)}",
                    having=self.config.having,
                ) from None
        by, descending = self._order()
        if by and self.config.sort:
            table = table.sort(by, descending=descending, nulls_last=True)
        names = [m.output_name for m in self.config.metrics]
        groups = table.height
        if self._top_k is not None:  # rows are values: count the groups they belong to
            groups = table.n_unique(self.keys) if self.keys and groups else min(groups, 1)
        return AnalysisResult(
            kind="aggregation",
            table=to_arrow(table.select(*self.keys, *names)),
            summary={"groups": groups, "group_by": self.keys, "metrics": names},
        )

    def _order(self) -> tuple[list[str], list[bool]]:
        """Columns to sort by and their descending flags."""
        config = self.config
        by = list(config.order_by or [])
        flags = config.descending if isinstance(config.descending, list) else None
        descending = list(flags) if flags is not None else [bool(config.descending)] * len(by)
        for key in self.keys:
            if key not in by:
                by.append(key)
                descending.append(False)
        top = self._top_k
        if top is not None and top.output_name not in by:
            by.append(top.output_name)
            descending.append(True)
        return by, descending


# ---------------------------------------------------------------------------------------------
# Polars expressions


def _grouped(
    df: pl.DataFrame, keys: list[str], exprs: list[pl.Expr], masks: list[pl.Expr] | None = None
) -> pl.LazyFrame:
    """``exprs`` aggregated per group of ``keys`` (or over all rows without keys), after adding
    the ``masks`` columns, as a lazy query: Polars plans it whole, and the caller picks the
    engine that collects it (Aggregation._engine)."""
    lf = df.lazy()
    if masks:
        lf = lf.with_columns(masks)
    return lf.group_by(keys).agg(exprs) if keys else lf.select(exprs)


def _direct(m: Metric, prefix: str, df: pl.DataFrame) -> tuple[list[pl.Expr], pl.Expr]:
    """A metric over whole groups: bare Polars aggregations (named with ``prefix``) and the
    expression that gives the metric from them after the group-by.

    Anything but a bare aggregation inside agg() takes Polars off its fast grouped path: at
    1e7 rows and 100 groups ``len()`` took 56 ms and ``len().cast(Int64)`` 142 ms. So casts
    to the metric's dtype happen on the grouped rows. ``count()`` is slow too (see _count).
    """
    name = f"{prefix}a"
    out = pl.col(name)
    if m.column is None:
        return [pl.len().alias(name)], out.cast(pl.Int64)
    col = pl.col(m.column)
    match m.function:
        case "count":
            return [_count(m.column, df).alias(name)], out.cast(pl.Int64)
        case "n_unique" | "count_distinct":
            # n_unique counts null as a value
            nulls = f"{prefix}nulls"
            return ([col.n_unique().alias(name), col.null_count().alias(nulls)],
                    (out.cast(pl.Int64) - (pl.col(nulls) > 0).cast(pl.Int64)))
        case "sum" | "min" | "max" | "first" | "last":
            return [getattr(col, m.function)().alias(name)], out
        case "mean" | "median":
            return [getattr(col, m.function)().alias(name)], out.cast(pl.Float64)
        case "percentile":
            assert m.q is not None
            return [col.quantile(m.q, "linear").alias(name)], out.cast(pl.Float64)
        case "std" | "var":
            return [getattr(col, m.function)(ddof=1).alias(name)], out.cast(pl.Float64)
    raise AssertionError(m.function)


def _count(column: str, df: pl.DataFrame | None) -> pl.Expr:
    """The non-null values of ``column`` per group: len() where ``df`` has no nulls in it
    (count() took 90 ms where len() took 23 ms, with three sums, 5e6 rows, 100 groups)."""
    if df is not None and df[column].null_count() == 0:
        return pl.len()
    return pl.col(column).count()


# |sum| below this is exact in float64, so a mean of equal integers is exactly that integer
_EXACT = 2**53


def _paired(
    m: Metric, df: pl.DataFrame, prefix: str
) -> tuple[list[pl.Expr], list[pl.Expr], pl.Expr]:
    """A corr/r2 metric over whole groups: columns to add before the group-by, aggregations
    (named with ``prefix``) and the expression that gives the metric after the group-by.

    r is null below two complete pairs or where a column is constant over them (as in
    _correlation). ``pl.corr`` stays a bare aggregation, Polars' fast grouped path (wrapping
    it in when/then or fill_nan inside the group-by made q9 of db-benchmark 1.7x slower).
    Over integers whose sums are exact in float64 each undefined r comes out NaN (the
    deviations from an exact mean are exactly 0), so NaN -> null is the whole check. Floats
    need min/max over the complete pairs: a constant float column's mean may be off by an
    ulp, giving a spurious r.
    """
    assert m.column is not None and m.other is not None
    x, y = m.column, m.other
    corr = pl.col(f"{prefix}r")
    aggs = [pl.corr(x, y).alias(f"{prefix}r")]
    masks: list[pl.Expr] = []
    if _integer_sums_exact(df, x) and _integer_sums_exact(df, y):
        final = corr.fill_nan(None)
    else:
        masks = _pair_masks(df, x, y, prefix)
        if masks:
            x, y = f"{prefix}x", f"{prefix}y"
        names = ("n", "minx", "maxx", "miny", "maxy")
        moments = _comoments(x, y, complete=not masks)
        aggs += [moments[name][0].alias(f"{prefix}{name}") for name in names]
        final = pl.when(_defined(*(pl.col(f"{prefix}{name}") for name in names))).then(corr)
    return masks, aggs, final if m.function == "corr" else final**2


def _pair_masks(df: pl.DataFrame, x: str, y: str, prefix: str, p: int | str = "") -> list[pl.Expr]:
    """Copies of x and y (``{prefix}x{p}``, ``{prefix}y{p}``) that are null wherever either is:
    the pair's complete rows, made before the group-by so that the aggregations over them stay
    bare. None when neither column has nulls (x and y are their own complete rows)."""
    if _complete(df, x, y):
        return []
    both = pl.col(x).is_not_null() & pl.col(y).is_not_null()
    return [pl.when(both).then(pl.col(x)).alias(f"{prefix}x{p}"),
            pl.when(both).then(pl.col(y)).alias(f"{prefix}y{p}")]


def _complete(df: pl.DataFrame, x: str, y: str) -> bool:
    """Whether every row of ``df`` has both x and y."""
    return df[x].null_count() == 0 and df[y].null_count() == 0


def _integer_sums_exact(df: pl.DataFrame, column: str) -> bool:
    """Whether ``column`` is integer and any sum of its values is exact in float64."""
    if not df.schema[column].is_integer():
        return False
    if df.height == 0 or df[column].null_count() == df.height:
        return True
    col = pl.col(column)
    low, high = df.select(col.min().alias("low"), col.max().alias("high")).row(0)
    return max(abs(low), abs(high)) * df.height < _EXACT


def _comoments(x: str, y: str, complete: bool) -> dict[str, tuple[pl.Expr, str]]:
    """Co-moments of a pair as bare aggregations: name -> (aggregate, merge rule). x and y
    are null exactly where the pair is incomplete (``complete``: nowhere). cxy, m2x and m2y
    are the population (co)variances here; ``_comoments_after`` makes them sums. min/max tell
    a constant column exactly (its M2 may not be exactly 0)."""
    cx, cy = pl.col(x), pl.col(y)
    return {
        "n": (pl.len() if complete else cx.count(), "comoments"),
        "mx": (cx.mean(), "comoments"),
        "my": (cy.mean(), "comoments"),
        "cxy": (pl.cov(x, y, ddof=0), "comoments"),
        "m2x": (cx.var(ddof=0), "comoments"),
        "m2y": (cy.var(ddof=0), "comoments"),
        "minx": (cx.min(), "min"),
        "maxx": (cx.max(), "max"),
        "miny": (cy.min(), "min"),
        "maxy": (cy.max(), "max"),
    }


def _comoments_after(prefix: str, p: int) -> list[pl.Expr]:
    """The partial co-moments of pair ``p`` from their bare aggregates: count Int64, the rest
    Float64, and the sums of (co)deviations as n times the population (co)variances."""
    def column(name: str) -> pl.Expr:
        return pl.col(f"{prefix}{name}{p}")

    count = column("n").cast(pl.Float64)
    after = [column("n").cast(pl.Int64)]
    after += [column(name).cast(pl.Float64)
              for name in ("mx", "my", "minx", "maxx", "miny", "maxy")]
    after += [(column(name).cast(pl.Float64) * count).fill_null(0.0).alias(f"{prefix}{name}{p}")
              for name in ("cxy", "m2x", "m2y")]
    return after


def _correlation(
    n: pl.Expr,
    mx: pl.Expr,
    my: pl.Expr,
    cxy: pl.Expr,
    m2x: pl.Expr,
    m2y: pl.Expr,
    minx: pl.Expr,
    maxx: pl.Expr,
    miny: pl.Expr,
    maxy: pl.Expr,
) -> pl.Expr:
    """Pearson's r from co-moments; null below two pairs or for a constant column."""
    defined = _defined(n, minx, maxx, miny, maxy)
    return pl.when(defined).then(cxy / (m2x.sqrt() * m2y.sqrt()))


def _defined(n: pl.Expr, minx: pl.Expr, maxx: pl.Expr, miny: pl.Expr, maxy: pl.Expr) -> pl.Expr:
    """Whether r exists: two complete pairs or more and neither column constant over them."""
    return (n > 1) & (minx < maxx) & (miny < maxy)


def _merge_moments(n: str, mean: str, m2: str) -> list[pl.Expr]:
    """Merged mean and M2 of several partial rows (Chan et al.'s parallel formula)."""
    count = pl.col(n).cast(pl.Float64)
    total = count.sum()
    # rows of partitions without values have a null mean; sums skip them
    grand = pl.when(total > 0).then((count * pl.col(mean)).sum() / total)
    spread = pl.col(m2).sum() + (count * (pl.col(mean) - grand) ** 2).sum()
    return [grand.alias(mean), spread.alias(m2)]


def _merge_comoments(prefix: str, p: int) -> list[pl.Expr]:
    """Merged co-moments of a corr pair: C_xy = sum C_i + sum n_i (mx_i - mx)(my_i - my)."""
    n, mx, my = (pl.col(f"{prefix}{name}{p}") for name in ("n", "mx", "my"))
    count = n.cast(pl.Float64)
    total = count.sum()
    gx = pl.when(total > 0).then((count * mx).sum() / total)
    gy = pl.when(total > 0).then((count * my).sum() / total)

    def column(name: str) -> pl.Expr:
        return pl.col(f"{prefix}{name}{p}")

    return [
        n.sum().alias(f"{prefix}n{p}"),
        gx.alias(f"{prefix}mx{p}"),
        gy.alias(f"{prefix}my{p}"),
        (column("cxy").sum() + (count * (mx - gx) * (my - gy)).sum()).alias(f"{prefix}cxy{p}"),
        (column("m2x").sum() + (count * (mx - gx) ** 2).sum()).alias(f"{prefix}m2x{p}"),
        (column("m2y").sum() + (count * (my - gy) ** 2).sum()).alias(f"{prefix}m2y{p}"),
    ]


def _final(m: Metric, j: int) -> pl.Expr:
    """A metric from the columns of a merged partial table (value column or pair ``j``)."""
    if m.column is None:
        return pl.col(f"{_P}len")
    n = pl.col(f"{_P}n{j}")
    match m.function:
        case "count":
            return n
        case "sum":
            return pl.col(f"{_P}sum{j}")
        case "min" | "max" | "first" | "last":
            return pl.col(f"{_P}{m.function}{j}")
        case "mean":
            return pl.when(n > 0).then(pl.col(f"{_P}sum{j}").cast(pl.Float64) / n)
        case "std" | "var":
            var = pl.when(n > 1).then(pl.col(f"{_P}m2_{j}") / (n - 1))
            return var.sqrt() if m.function == "std" else var
        case "corr" | "r2":
            names = ("n", "mx", "my", "cxy", "m2x", "m2y", "minx", "maxx", "miny", "maxy")
            corr = _correlation(**{name: pl.col(f"{_P}c{name}{j}") for name in names})
            return corr if m.function == "corr" else corr**2
    raise AssertionError(m.function)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _shard_of(schema: pl.Schema, keys: list[str], n: int) -> pl.Expr:
    """The shard number (0..n-1) of each row: a hash of the keys, the same in every process.

    Each key is hashed on its own after widening (categories as strings, floats as Float64;
    integer widths and the null of any dtype already hash alike), then the key hashes are
    hashed together, so partitions whose key dtypes differ in width still agree.
    """
    hashes = []
    for i, key in enumerate(keys):
        col, dtype = pl.col(key), schema[key]
        if isinstance(dtype, (pl.Categorical, pl.Enum)):
            col = col.cast(pl.String)
        elif dtype.is_float():
            col = col.cast(pl.Float64)
        hashes.append(col.hash(SHUFFLE_SEED).alias(f"h{i}"))
    combined = hashes[0] if len(hashes) == 1 else pl.struct(hashes).hash(SHUFFLE_SEED)
    return combined % n

