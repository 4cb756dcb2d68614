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
interpolates linearly; ``n_unique`` counts distinct non-null values. Float NaN is a value,
not a missing one (as in Polars). Output dtypes: ``count`` and ``n_unique`` Int64; ``mean``,
``median``, ``percentile``, ``std`` and ``var`` Float64; ``sum`` the Polars sum dtype of the
column; ``min``/``max`` the column dtype. Rows are sorted by the keys ascending, nulls last;
columns are the keys, then the metrics in declaration order. Without ``group_by`` the result is
one row, also for an empty table (count 0, sum 0, the others null).

Distributed: when every metric is mergeable (count, sum, mean, min, max, std, var),
``partial`` aggregates each partition per group (row count, non-null count, sum, min, max,
and mean with M2, the sum of squared deviations, for std/var) and ``merge_partials`` merges
such tables into one of the same shape (Chan's parallel formula for M2), so partials can be
reduced as a tree; ``finalize`` turns a merged partial into the result. When any metric is
holistic (median, percentile, n_unique), ``partial`` projects the needed columns and the merge
concatenates them (a gather; exact, but all those rows meet in one task).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import polars as pl
import pyarrow as pa
from pydantic import Field, model_validator

from raysight.analyses.descriptive import as_frame, is_numeric, require_columns, stack
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig

__all__ = ["Aggregation", "AggregationConfig", "Function", "Metric"]

Function = Literal[
    "count", "sum", "mean", "min", "max", "median", "percentile", "n_unique", "std", "var"
]
MERGEABLE: frozenset[str] = frozenset({"count", "sum", "mean", "min", "max", "std", "var"})
NUMERIC_ONLY: frozenset[str] = frozenset({"sum", "mean", "median", "percentile", "std", "var"})

#: prefix of the internal columns of a mergeable partial table
_P = "__rs_"


class Metric(PluginConfig):
    """One output column: ``function`` applied to ``column`` within each group."""

    #: the column to aggregate; required except for ``count`` (which then counts rows)
    column: str | None = Field(default=None, min_length=1)
    function: Function
    #: the quantile of ``percentile``, in [0, 1] (0.95 = 95th percentile); only for percentile
    q: float | None = None
    #: the output column name; defaults to :attr:`output_name`'s rule
    alias: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Metric:
        if self.column is None and self.function != "count":
            raise ValueError(f"function {self.function!r} needs a column")
        if self.function == "percentile":
            if self.q is None:
                raise ValueError("function 'percentile' needs q, a quantile in [0, 1] (e.g. 0.95)")
            if not 0.0 <= self.q <= 1.0:
                raise ValueError(f"q must be in [0, 1], got {self.q}")
        elif self.q is not None:
            raise ValueError(f"q is only allowed for function 'percentile', not {self.function!r}")
        return self

    @property
    def output_name(self) -> str:
        """The alias, else ``count``, ``{function}_{column}`` or ``p{100q}_{column}``."""
        if self.alias is not None:
            return self.alias
        if self.column is None:
            return "count"
        if self.function == "percentile":
            assert self.q is not None
            return f"p{round(self.q * 100):g}_{self.column}"
        return f"{self.function}_{self.column}"


class AggregationConfig(PluginConfig):
    """Group keys and the metrics to compute per group."""

    type: Literal["aggregation"] = "aggregation"
    #: group keys; empty gives one row over the whole table
    group_by: list[str] = Field(default_factory=list)
    metrics: list[Metric] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> AggregationConfig:
        seen: set[str] = set()
        for key in self.group_by:
            if key in seen:
                raise ValueError(f"group_by lists {key!r} more than once")
            seen.add(key)
        for metric in self.metrics:
            name = metric.output_name
            if name in seen:
                clash = "a group key" if name in self.group_by else "another metric"
                raise ValueError(
                    f"output column {name!r} of metric {metric.function!r} clashes with {clash}; "
                    "give the metric a distinct alias"
                )
            seen.add(name)
        return self


class Aggregation(Analysis[AggregationConfig]):
    """Metrics per group of ``group_by`` keys, sorted by the keys (nulls last)."""

    name: ClassVar[str] = "aggregation"
    Config = AggregationConfig

    @property
    def keys(self) -> list[str]:
        return list(self.config.group_by)

    @property
    def mergeable(self) -> bool:
        """Whether partials are aggregates (True) or projected rows (holistic metrics)."""
        return all(m.function in MERGEABLE for m in self.config.metrics)

    def required_columns(self) -> list[str]:
        columns = [*self.config.group_by, *(m.column for m in self.config.metrics if m.column)]
        return list(dict.fromkeys(columns))

    def _value_columns(self) -> list[str]:
        return list(dict.fromkeys(m.column for m in self.config.metrics if m.column))

    def _validate(self, schema: pl.Schema) -> None:
        names = list(schema.names())
        require_columns(names, self.config.group_by, what="group-by column")
        require_columns(names, self._value_columns())
        for m in self.config.metrics:
            if m.function in NUMERIC_ONLY and m.column is not None:
                dtype = schema[m.column]
                if not (is_numeric(dtype) or dtype == pl.Null):
                    raise InputError(
                        f"metric {m.output_name!r}: {m.function} needs a numeric column; "
                        f"column {m.column!r} is {dtype}",
                        column=m.column,
                        function=m.function,
                        dtype=str(dtype),
                    )

    # -- single partition ---------------------------------------------------------------------

    def run(self, df: pl.DataFrame) -> AnalysisResult:
        """Aggregate a whole table in memory with one Polars query (no partial state)."""
        self._validate(df.schema)
        return self._result(self._aggregate(df))

    def _aggregate(self, df: pl.DataFrame) -> pl.DataFrame:
        exprs = [_direct(m).alias(m.output_name) for m in self.config.metrics]
        if not self.keys:
            return df.select(exprs)
        return df.group_by(self.keys).agg(exprs)

    # -- distributed --------------------------------------------------------------------------

    def _partial_plan(self) -> list[tuple[str, pl.Expr, str]]:
        """Columns of a mergeable partial table: (name, aggregate per partition, merge rule).

        The merge rule is ``sum``, ``min`` or ``max`` of the partial values, or ``moments``
        for the mean/M2 pairs that Chan's formula merges together.
        """
        plan = [(f"{_P}len", pl.len().cast(pl.Int64), "sum")]
        for j, c in enumerate(self._value_columns()):
            functions = {m.function for m in self.config.metrics if m.column == c}
            col, x = pl.col(c), pl.col(c).cast(pl.Float64)
            if functions & {"count", "mean", "std", "var"}:
                plan.append((f"{_P}n{j}", col.count().cast(pl.Int64), "sum"))
            if functions & {"sum", "mean"}:
                plan.append((f"{_P}sum{j}", col.sum(), "sum"))
            if "min" in functions:
                plan.append((f"{_P}min{j}", col.min(), "min"))
            if "max" in functions:
                plan.append((f"{_P}max{j}", col.max(), "max"))
            if functions & {"std", "var"}:
                plan.append((f"{_P}mean{j}", x.mean(), "moments"))
                plan.append((f"{_P}m2_{j}", ((x - x.mean()) ** 2).sum(), "moments"))
        return plan

    def partial(self, df: pl.DataFrame) -> pa.Table:
        """Per-group partial aggregates (mergeable metrics) or the needed columns (holistic)."""
        self._validate(df.schema)
        if not self.mergeable:
            return df.select(self.required_columns()).to_arrow()
        exprs = [expr.alias(name) for name, expr, _ in self._partial_plan()]
        out = df.group_by(self.keys).agg(exprs) if self.keys else df.select(exprs)
        return out.to_arrow()

    def merge_partials(self, partials: list[pa.Table]) -> pa.Table:
        """One partial table of the same shape holding the merge of ``partials`` (associative)."""
        if not partials:
            raise ValueError("merge_partials needs at least one partial table")
        stacked = stack(partials)
        if not self.mergeable:
            return stacked.to_arrow()
        plan = self._partial_plan()
        exprs = [getattr(pl.col(name), rule)() for name, _, rule in plan if rule != "moments"]
        for j in range(len(self._value_columns())):
            if f"{_P}m2_{j}" in stacked.columns:
                exprs += _merge_moments(f"{_P}n{j}", f"{_P}mean{j}", f"{_P}m2_{j}")
        out = stacked.group_by(self.keys).agg(exprs) if self.keys else stacked.select(exprs)
        return out.select(*self.keys, *(name for name, _, _ in plan)).to_arrow()

    def finalize(self, partial: pa.Table) -> AnalysisResult:
        """The result from one (merged) partial table."""
        df = as_frame(partial)
        if not self.mergeable:
            return self.run(df)
        index = {c: j for j, c in enumerate(self._value_columns())}
        exprs = [
            _final(m, index.get(m.column or "", -1)).alias(m.output_name)
            for m in self.config.metrics
        ]
        return self._result(df.select(*self.keys, *exprs))

    def combine(self, partials: list[pa.Table]) -> AnalysisResult:
        """The result from the partial tables of all partitions."""
        return self.finalize(self.merge_partials(partials))

    def _result(self, table: pl.DataFrame) -> AnalysisResult:
        if self.keys:
            table = table.sort(self.keys, nulls_last=True)
        names = [m.output_name for m in self.config.metrics]
        return AnalysisResult(
            kind="aggregation",
            table=table.select(*self.keys, *names).to_arrow(),
            summary={"groups": table.height, "group_by": self.keys, "metrics": names},
        )


def _direct(m: Metric) -> pl.Expr:
    """The Polars aggregation of a metric over whole groups."""
    if m.column is None:
        return pl.len().cast(pl.Int64)
    col = pl.col(m.column)
    match m.function:
        case "count":
            return col.count().cast(pl.Int64)
        case "n_unique":
            return col.drop_nulls().n_unique().cast(pl.Int64)
        case "sum" | "min" | "max":
            return getattr(col, m.function)()
        case "mean" | "median":
            return getattr(col, m.function)().cast(pl.Float64)
        case "percentile":
            assert m.q is not None
            return col.quantile(m.q, "linear").cast(pl.Float64)
        case "std" | "var":
            return getattr(col, m.function)(ddof=1).cast(pl.Float64)
    raise AssertionError(m.function)


def _merge_moments(n: str, mean: str, m2: str) -> list[pl.Expr]:
    """Merged mean and M2 of several partial rows (Chan et al.'s parallel formula)."""
    count = pl.col(n).cast(pl.Float64)
    total = count.sum()
    # rows of partitions without values have a null mean; sums skip them
    grand = pl.when(total > 0).then((count * pl.col(mean)).sum() / total)
    spread = pl.col(m2).sum() + (count * (pl.col(mean) - grand) ** 2).sum()
    return [grand.alias(mean), spread.alias(m2)]


def _final(m: Metric, j: int) -> pl.Expr:
    """A metric from the columns of a merged partial table (value column number ``j``)."""
    if m.column is None:
        return pl.col(f"{_P}len")
    n = pl.col(f"{_P}n{j}")
    match m.function:
        case "count":
            return n
        case "sum":
            return pl.col(f"{_P}sum{j}")
        case "min" | "max":
            return pl.col(f"{_P}{m.function}{j}")
        case "mean":
            return pl.when(n > 0).then(pl.col(f"{_P}sum{j}").cast(pl.Float64) / n)
        case "std" | "var":
            var = pl.when(n > 1).then(pl.col(f"{_P}m2_{j}") / (n - 1))
            return var.sqrt() if m.function == "std" else var
    raise AssertionError(m.function)
