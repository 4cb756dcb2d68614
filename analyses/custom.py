"""Custom kernels (correlation matrix, outliers, word counts) and ``custom``.

::

    CorrelationMatrix(CorrelationMatrix.Config(method="spearman")).run(df).table
    OutlierDetection(OutlierDetection.Config(column="amount", k=3.0)).run(df).table
    TextFrequency(TextFrequency.Config(column="review", stop_words="english", top_n=20)).run(df)
    Custom(Custom.Config(name="outlier_detection", params={"column": "amount"})).run(df)

How each one runs across partitions:

- ``correlation_matrix`` with Pearson is mergeable: per partition and per pair of columns it
  keeps the co-moments of the rows where both are present (count, means, sums of squared
  deviations, co-moment, min and max), merged with Chan's formula. Spearman needs ranks over the
  whole table, so its partials are the projected columns, gathered in ``combine``.
- ``outlier_detection`` needs two facts in turn (the global quartiles or mean/std, then a filter
  over the rows), so its partials keep the non-missing rows (all columns, or only the value
  column with ``include_rows: false``) with their partition-local index; ``combine`` gathers them,
  computes the bounds exactly and numbers the rows by the partitions' row counts.
- ``text_frequency`` is mergeable: token counts per partition, summed per word.

``custom`` is the ``{type: custom, name, params}`` form: it looks the kernel up in
:data:`raysight.registry.analyses` (built-in or registered by a user), validates ``params``
with that kernel's config and delegates to it.

Kernels whose partial state depends on their options declare ``mergeable`` as a property of
the instance (as :class:`raysight.analyses.aggregation.Aggregation` does); read it from an
instance, not from the class.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from raysight import registry
from raysight.analyses.columns import as_frame, is_numeric, listed_once, require_columns, stack
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = [
    "ENGLISH_STOP_WORDS",
    "CorrelationConfig",
    "CorrelationMatrix",
    "Custom",
    "CustomConfig",
    "OutlierConfig",
    "OutlierDetection",
    "SEED_NAMES",
    "TextFrequency",
    "TextFrequencyConfig",
]

#: prefix of internal columns
_P = "__rs_"

#: a small list of English function words for ``stop_words: english`` (lower case)
ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves
    """.split()
)


def _finite(value: float | None) -> float | None:
    """A JSON-ready float: NaN and infinities become None."""
    return value if value is not None and math.isfinite(value) else None


def _numeric_column(schema: pl.Schema, column: str, kernel: str) -> None:
    """Raise InputError unless ``column`` is an integer or float column (or all-null)."""
    dtype = schema[column]
    if not (is_numeric(dtype) or dtype == pl.Null):
        raise InputError(
            f"{kernel}: column {column!r} is {dtype}, not a numeric column",
            column=column,
            dtype=str(dtype),
        )


def _as_float(column: str) -> pl.Expr:
    """The column as Float64 with NaN as missing (as pandas, so NaN never becomes a value)."""
    return pl.col(column).cast(pl.Float64).fill_nan(None)


# ---------------------------------------------------------------------------------------------
# Correlation matrix


class CorrelationConfig(PluginConfig):
    """``{type: correlation_matrix, columns?, method?}``."""

    type: Literal["correlation_matrix"] = "correlation_matrix"
    #: numeric columns to correlate, in this order; None means every integer and float column
    #: of the table's schema, in schema order
    columns: list[str] | None = Field(default=None, min_length=1)
    method: Literal["pearson", "spearman"] = "pearson"

    @field_validator("columns")
    @classmethod
    def _no_duplicates(cls, value: list[str] | None) -> list[str] | None:
        return listed_once(value, "columns")


@dataclass
class _Moments:
    """Pairwise co-moments of k columns over the rows where both columns of a pair are present.

    Entry ``[i, j]`` of ``mean``, ``m2``, ``low`` and ``high`` describes column ``i`` over the
    rows where columns ``i`` and ``j`` are both present (so ``[j, i]`` is column ``j`` over the
    same rows); ``n`` (the number of those rows) and ``c`` (the co-moment, the sum of products
    of deviations) are symmetric. ``m2`` is the sum of squared deviations; ``low``/``high``
    are the minimum and maximum, which tell a constant column exactly (rounding can leave a
    tiny ``m2`` for a constant column, its minimum equals its maximum).
    """

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    c: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def empty(cls, k: int) -> _Moments:
        return cls(
            n=np.zeros((k, k), dtype=np.int64),
            mean=np.zeros((k, k)),
            m2=np.zeros((k, k)),
            c=np.zeros((k, k)),
            low=np.full((k, k), np.inf),
            high=np.full((k, k), -np.inf),
        )

    def merge(self, other: _Moments) -> _Moments:
        """The moments of both row sets together (Chan et al.'s parallel formula)."""
        n = self.n + other.n
        live = n > 0
        weight = np.divide(other.n, n, out=np.zeros(n.shape), where=live)
        factor = np.divide(
            self.n.astype(np.float64) * other.n, n, out=np.zeros(n.shape), where=live
        )
        delta = other.mean - self.mean
        return _Moments(
            n=n,
            mean=self.mean + delta * weight,
            m2=self.m2 + other.m2 + delta * delta * factor,
            c=self.c + other.c + delta * delta.T * factor,
            low=np.minimum(self.low, other.low),
            high=np.maximum(self.high, other.high),
        )

    def correlation(self) -> np.ndarray:
        """The correlation matrix; NaN where a pair has no rows or a column is constant."""
        varies = self.high > self.low  # column i varies over the rows of pair (i, j)
        defined = varies & varies.T
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.c / (np.sqrt(self.m2) * np.sqrt(self.m2.T))
        r = np.where(defined & np.isfinite(r), np.clip(r, -1.0, 1.0), np.nan)
        np.fill_diagonal(r, np.where(np.diagonal(defined), 1.0, np.nan))
        return r


def _moments(columns: list[np.ndarray], *, ranked: bool = False) -> _Moments:
    """Pairwise co-moments of equally long float columns (NaN = missing), two-pass per pair.

    With ``ranked`` each column is replaced by its average ranks over the rows of the pair
    (Spearman). Columns without missing values share their rows, so their pairs come from one
    matrix product; the other pairs are computed one by one (a loop over pairs of columns,
    never over rows).
    """
    k = len(columns)
    out = _Moments.empty(k)
    if k == 0 or columns[0].size == 0:
        return out
    valid = [~np.isnan(x) for x in columns]
    complete = [bool(v.all()) for v in valid]
    full = [i for i in range(k) if complete[i]]
    rankers = [_Ranker(x) for x in columns] if ranked else []

    def values(i: int, rows: np.ndarray | None) -> np.ndarray:
        """Column i (or its ranks) over ``rows`` (a mask; None = every row)."""
        if ranked:
            return rankers[i].ranks(rows)
        return columns[i] if rows is None else columns[i][rows]

    if full:
        block = np.empty((columns[0].size, len(full)), order="F")
        for a, i in enumerate(full):
            block[:, a] = values(i, None)
        grid = np.ix_(full, full)
        mean = block.mean(axis=0)
        out.n[grid] = columns[0].size
        out.mean[grid] = mean[:, None]
        out.low[grid] = block.min(axis=0)[:, None]
        out.high[grid] = block.max(axis=0)[:, None]
        block -= mean
        out.c[grid] = block.T @ block
        out.m2[grid] = np.diagonal(out.c[grid])[:, None]
    for i in range(k):
        for j in range(i, k):
            if complete[i] and complete[j]:
                continue
            rows = valid[i] & valid[j]
            n = int(np.count_nonzero(rows))
            if n == 0:
                continue
            xi, xj = values(i, rows), values(j, rows)
            mi, mj = xi.mean(), xj.mean()
            di, dj = xi - mi, xj - mj
            out.n[i, j] = out.n[j, i] = n
            out.c[i, j] = out.c[j, i] = float(di @ dj)
            out.mean[i, j], out.mean[j, i] = mi, mj
            out.m2[i, j], out.m2[j, i] = float(di @ di), float(dj @ dj)
            out.low[i, j], out.low[j, i] = xi.min(), xj.min()
            out.high[i, j], out.high[j, i] = xi.max(), xj.max()
    return out


class _Ranker:
    """Average ranks of one column over any subset of its rows, from one sort.

    Ties share the mean of their ranks (as pandas and scipy ``rankdata(method="average")``).
    The column is sorted once; the ranks over a subset are cumulative counts of the subset's
    rows in sorted order, averaged per group of equal values, so each pair costs O(n).
    """

    def __init__(self, x: np.ndarray) -> None:
        self.order = np.argsort(x, kind="stable")  # NaN sorts last; callers mask it out
        ordered = x[self.order]
        starts = np.empty(ordered.size, dtype=bool)
        starts[:1] = True
        starts[1:] = ordered[1:] != ordered[:-1]
        self.group = np.cumsum(starts) - 1  # tie group of each sorted position

    def ranks(self, rows: np.ndarray | None) -> np.ndarray:
        """Ranks (1-based, ties averaged) of the masked rows, in row order."""
        weights = None if rows is None else rows[self.order].astype(np.float64)
        counts = np.bincount(self.group, weights=weights)
        average = np.cumsum(counts) - (counts - 1) / 2
        ranks = np.empty(self.order.size)
        ranks[self.order] = average[self.group]
        return ranks if rows is None else ranks[rows]


class CorrelationMatrix(Analysis[CorrelationConfig]):
    """A square correlation matrix over pairwise-complete observations.

    For each pair of columns only the rows where both are present count (null and NaN are
    missing), as pandas ``df.corr(method, min_periods=1)``. Spearman is the Pearson
    correlation of average ranks, ranked within each pair's rows. ``r`` is null where a pair
    has no common rows or a column is constant over them (not 0, which would
    claim "uncorrelated" for an undefined value). The diagonal is 1, or null for a constant
    or empty column.

    Result table: ``column`` (String, the row's variable) then one Float64 column per
    variable, in the order of ``columns``. Summary: ``method``, ``columns``, ``row_count``,
    ``matrix`` (``{row: {column: r}}``) and ``observations`` (``{row: {column: n}}``).
    """

    name: ClassVar[str] = "correlation_matrix"
    Config = CorrelationConfig

    def output_columns(self) -> list[str] | None:
        columns = self.config.columns
        return None if columns is None else ["column", *columns]

    @property
    def mergeable(self) -> bool:
        """Pearson partials are co-moments (mergeable); Spearman partials are projected rows."""
        return self.config.method == "pearson"

    def required_columns(self) -> list[str]:
        return list(self.config.columns or [])

    def _columns(self, schema: pl.Schema) -> list[str]:
        if self.config.columns is None:
            columns = [c for c, dtype in schema.items() if is_numeric(dtype)]
        else:
            columns = list(self.config.columns)
            require_columns(list(schema.names()), columns)
            for c in columns:
                _numeric_column(schema, c, self.name)
        if "column" in columns:
            raise InputError(
                f"{self.name}: a variable named 'column' clashes with the result's row-label "
                "column; rename it first",
                column="column",
            )
        return columns

    def partial(self, df: pl.DataFrame) -> dict[str, Any]:
        """Co-moments of the partition (Pearson) or its projected columns (Spearman)."""
        columns = self._columns(df.schema)
        projected = df.select([_as_float(c) for c in columns])
        state: dict[str, Any] = {"columns": columns, "row_count": df.height}
        if self.mergeable:
            state["moments"] = _moments(_arrays(projected, columns))
        else:
            state["rows"] = to_arrow(projected)
        return state

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state holding the merge of ``partials`` (associative)."""
        columns = _same_columns(partials)
        merged: dict[str, Any] = {
            "columns": columns,
            "row_count": sum(p["row_count"] for p in partials),
        }
        if self.mergeable:
            merged["moments"] = functools.reduce(_Moments.merge, [p["moments"] for p in partials])
        else:
            merged["rows"] = to_arrow(stack([p["rows"] for p in partials]))
        return merged

    def finalize(self, state: dict[str, Any]) -> AnalysisResult:
        """The result from one (merged) partial state."""
        columns = state["columns"]
        if self.mergeable:
            moments = state["moments"]
        else:
            moments = _moments(_arrays(as_frame(state["rows"]), columns), ranked=True)
        return self._result(columns, moments, state["row_count"])

    def combine(self, partials: list[dict[str, Any]]) -> AnalysisResult:
        """The matrix from the partial states of all partitions."""
        return self.finalize(self.merge(partials))

    def _result(self, columns: list[str], moments: _Moments, row_count: int) -> AnalysisResult:
        r = moments.correlation()
        table = pl.DataFrame(
            {"column": columns, **{c: r[:, j] for j, c in enumerate(columns)}},
            schema={"column": pl.String, **dict.fromkeys(columns, pl.Float64)},
        ).with_columns(pl.col(columns).fill_nan(None))
        summary = {
            "method": self.config.method,
            "columns": columns,
            "row_count": row_count,
            "matrix": {
                a: {b: _finite(float(r[i, j])) for j, b in enumerate(columns)}
                for i, a in enumerate(columns)
            },
            "observations": {
                a: {b: int(moments.n[i, j]) for j, b in enumerate(columns)}
                for i, a in enumerate(columns)
            },
        }
        return AnalysisResult(kind=self.name, table=to_arrow(table), summary=summary)


def _arrays(df: pl.DataFrame, columns: list[str]) -> list[np.ndarray]:
    """The columns as float arrays with NaN for missing values."""
    return [df.get_column(c).cast(pl.Float64).to_numpy() for c in columns]


def _same_columns(partials: list[dict[str, Any]]) -> list[str]:
    if not partials:
        raise ValueError("combine needs the state of at least one partition")
    columns = partials[0]["columns"]
    for p in partials[1:]:
        if p["columns"] != columns:
            raise InputError(
                "partitions have different numeric columns: "
                f"{columns} in one, {p['columns']} in another; name the columns to correlate",
                columns=columns,
            )
    return list(columns)


# ---------------------------------------------------------------------------------------------
# Outlier detection


_DEFAULT_K = 1.5
_DEFAULT_THRESHOLD = 3.0


class OutlierConfig(PluginConfig):
    """``{type: outlier_detection, column, method?, k?, threshold?, quantile_method?,
    include_rows?}``.

    ``method: iqr`` flags values below ``q1 - k·IQR`` or above ``q3 + k·IQR``; ``method:
    zscore`` flags values more than ``threshold`` population standard deviations (ddof=0) from
    the mean. ``method`` defaults to ``iqr``, or to ``zscore`` when only ``threshold`` is
    given (``threshold: 3.0`` alone means a z-score). A value other
    than the default for an option of the other method is rejected rather than ignored.
    """

    type: Literal["outlier_detection"] = "outlier_detection"
    column: str = Field(min_length=1)
    method: Literal["iqr", "zscore"] = "iqr"
    #: IQR multiplier (method iqr)
    k: float = Field(default=_DEFAULT_K, ge=0, allow_inf_nan=False)
    #: z-score cut-off (method zscore)
    threshold: float = Field(default=_DEFAULT_THRESHOLD, gt=0, allow_inf_nan=False)
    #: ``linear`` interpolates (numpy/Polars default); ``nearest_lower`` takes
    #: ``sorted[n // 4]`` and ``sorted[3n // 4]``
    quantile_method: Literal["linear", "nearest_lower"] = "linear"
    #: True: outlier rows with every column; False: only ``column``
    include_rows: bool = True

    @model_validator(mode="before")
    @classmethod
    def _method_from_options(cls, data: Any) -> Any:
        if isinstance(data, dict) and "threshold" in data and "method" not in data:
            return {**data, "method": "zscore"}
        return data

    @model_validator(mode="after")
    def _options_match_method(self) -> OutlierConfig:
        # compared with the defaults, not with model_fields_set, so that a dumped config (which
        # holds every field) validates again
        if self.method == "iqr" and self.threshold != _DEFAULT_THRESHOLD:
            raise ValueError("threshold is an option of method 'zscore', not of 'iqr' (use k)")
        if self.method == "zscore" and self.k != _DEFAULT_K:
            raise ValueError("k is an option of method 'iqr', not of 'zscore' (use threshold)")
        if self.method == "zscore" and self.quantile_method != "linear":
            raise ValueError("quantile_method is an option of method 'iqr', not of 'zscore'")
        return self


OUTLIER_TYPE = "outlier_type"
ROW_INDEX = "row_index"


class OutlierDetection(Analysis[OutlierConfig]):
    """The rows whose value of ``column`` lies outside the bounds, in table order.

    Null and NaN values are never outliers and do not count for the statistics. The bounds
    are strict: a value equal to a bound is not an outlier. A constant column has no outliers.

    Result table: the input columns (only ``column`` with ``include_rows: false``), then
    ``outlier_type`` (``"low"``/``"high"``) and ``row_index`` (Int64, the row's position in
    the whole table, partitions in order), sorted by ``row_index``. Summary: ``column``,
    ``method``, ``count`` (outliers), ``low_count``, ``high_count``, ``value_count`` (values
    considered), ``row_count``, ``lower_bound``, ``upper_bound``, and ``q1``/``q3``/``iqr``/
    ``k``/``quantile_method`` (iqr) or ``mean``/``std``/``threshold`` (zscore).

    Distributed, the non-missing rows are gathered in ``combine`` (not mergeable).
    """

    name: ClassVar[str] = "outlier_detection"
    Config = OutlierConfig

    def output_columns(self) -> list[str] | None:
        if self.config.include_rows:
            return None  # every column of the data
        return [self.config.column, OUTLIER_TYPE, ROW_INDEX]
    mergeable: ClassVar[bool] = False

    def required_columns(self) -> list[str]:
        return [self.config.column]

    def _kept(self, schema: pl.Schema) -> list[str]:
        column = self.config.column
        require_columns(list(schema.names()), [column])
        _numeric_column(schema, column, self.name)
        kept = list(schema.names()) if self.config.include_rows else [column]
        for name in (OUTLIER_TYPE, ROW_INDEX):
            if name in kept:
                raise InputError(
                    f"{self.name}: the table already has a column {name!r}, which the result "
                    "adds; rename it or set include_rows: false",
                    column=name,
                )
        return kept

    def partial(self, df: pl.DataFrame) -> dict[str, Any]:
        """The partition's rows with a value (projected), with their partition-local index."""
        kept = self._kept(df.schema)
        value = _as_float(self.config.column)
        rows = (
            df.with_row_index(_P + "row")
            .filter(value.is_not_null())
            .select(pl.col(_P + "row").cast(pl.Int64), *kept)
        )
        return {"row_count": df.height, "rows": to_arrow(rows)}

    def combine(self, partials: list[dict[str, Any]]) -> AnalysisResult:
        """Bounds from all values, then the rows outside them, numbered across partitions."""
        if not partials:
            raise ValueError("combine needs the state of at least one partition")
        offsets = np.cumsum([0] + [p["row_count"] for p in partials[:-1]])
        rows = stack(
            [
                as_frame(p["rows"]).with_columns(pl.col(_P + "row") + int(offset))
                for p, offset in zip(partials, offsets, strict=True)
            ]
        ).rechunk()
        values = rows.get_column(self.config.column).cast(pl.Float64)
        summary = self._bounds(values)
        lower, upper = summary["lower_bound"], summary["upper_bound"]
        x = pl.col(self.config.column).cast(pl.Float64)
        kind = pl.lit(None, dtype=pl.String)
        if lower is not None and upper is not None:
            kind = pl.when(x < lower).then(pl.lit("low")).when(x > upper).then(pl.lit("high"))
        flagged = (
            rows.with_columns(kind.alias(OUTLIER_TYPE))
            .filter(pl.col(OUTLIER_TYPE).is_not_null())
            .sort(_P + "row")
            .rename({_P + "row": ROW_INDEX})
        )
        kept = [c for c in rows.columns if c != _P + "row"]
        flagged = flagged.select(*kept, OUTLIER_TYPE, ROW_INDEX)
        types = flagged.get_column(OUTLIER_TYPE)
        summary |= {
            "count": flagged.height,
            "low_count": int((types == "low").sum()),
            "high_count": int((types == "high").sum()),
            "value_count": values.len(),
            "row_count": int(sum(p["row_count"] for p in partials)),
        }
        return AnalysisResult(kind=self.name, table=to_arrow(flagged), summary=summary)

    def _bounds(self, values: pl.Series) -> dict[str, Any]:
        """The statistics and the bounds of the values (bounds None when there are none)."""
        c = self.config
        n = values.len()
        out: dict[str, Any] = {"column": c.column, "method": c.method}
        if c.method == "zscore":
            mean = std = lower = upper = None
            if n:
                low, high = _float(values.min()), _float(values.max())
                # a constant column is exactly constant (its mean may round off the value)
                mean = low if low == high else _float(values.mean())
                std = 0.0 if low == high else _float(values.std(ddof=0))
                lower, upper = mean - c.threshold * std, mean + c.threshold * std
            return out | {"mean": mean, "std": std, "threshold": c.threshold,
                          "lower_bound": lower, "upper_bound": upper}
        q1 = q3 = iqr = None
        if n and c.quantile_method == "linear":
            q1 = _float(values.quantile(0.25, "linear"))
            q3 = _float(values.quantile(0.75, "linear"))
        elif n:
            ordered = values.sort()
            q1, q3 = _float(ordered[n // 4]), _float(ordered[3 * n // 4])
        lower = upper = None
        if q1 is not None and q3 is not None:
            iqr = q3 - q1
            lower, upper = q1 - c.k * iqr, q3 + c.k * iqr
        return out | {"q1": q1, "q3": q3, "iqr": iqr, "k": c.k,
                      "quantile_method": c.quantile_method,
                      "lower_bound": lower, "upper_bound": upper}


def _float(value: Any) -> float:
    """A Polars scalar (typed as any literal) as a Python float."""
    return float(value)


# ---------------------------------------------------------------------------------------------
# Text frequency


class TextFrequencyConfig(PluginConfig):
    """``{type: text_frequency, column, top_n?, lowercase?, pattern?, stop_words?}``."""

    type: Literal["text_frequency"] = "text_frequency"
    column: str = Field(min_length=1)
    #: keep only the N most frequent words; None keeps all
    top_n: int | None = Field(default=None, ge=1)
    lowercase: bool = True
    #: a token is a match of this regular expression (Rust ``regex`` syntax); the default is a
    #: run of Unicode letters and digits, so "Zürich" and "東京" are single tokens
    pattern: str = Field(default=r"[^\W_]+", min_length=1)
    #: words to leave out: a list, or ``english`` for :data:`ENGLISH_STOP_WORDS`; compared after
    #: lower-casing when ``lowercase`` is set
    stop_words: list[str] | Literal["english"] | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            pl.Series([""], dtype=pl.String).str.extract_all(value)
        except pl.exceptions.PolarsError as err:
            first = str(err).strip().splitlines()
            raise ValueError(f"not a valid regular expression: {' '.join(first[:4])}") from None
        return value


class TextFrequency(Analysis[TextFrequencyConfig]):
    """How often each word occurs in a text column.

    Tokens are the matches of ``pattern`` in each value (lower-cased first when ``lowercase``);
    empty matches and stop words are dropped. Result table: ``word`` (String) and ``count``
    (Int64), sorted by count descending then word ascending, at most ``top_n`` rows. Summary:
    ``column``, ``total_tokens`` and ``unique_words`` (after stop words, before ``top_n``),
    ``documents`` (non-null values) and ``row_count``.

    Distributed: per-partition word counts, summed per word (mergeable).
    """

    name: ClassVar[str] = "text_frequency"
    Config = TextFrequencyConfig

    def output_columns(self) -> list[str]:
        return ["word", "count"]

    def required_columns(self) -> list[str]:
        return [self.config.column]

    def _stop_words(self) -> list[str]:
        words = self.config.stop_words
        if words is None:
            return []
        listed = sorted(ENGLISH_STOP_WORDS) if words == "english" else list(words)
        return [w.lower() for w in listed] if self.config.lowercase else listed

    def partial(self, df: pl.DataFrame) -> dict[str, Any]:
        """Word counts of the partition (columns ``word``, ``count``)."""
        column = self.config.column
        require_columns(list(df.schema.names()), [column])
        dtype = df.schema[column]
        if not isinstance(dtype, (pl.String, pl.Categorical, pl.Enum, pl.Null)):
            raise InputError(
                f"{self.name}: column {column!r} is {dtype}, not a text column",
                column=column,
                dtype=str(dtype),
            )
        text = pl.col(column).cast(pl.String)
        if self.config.lowercase:
            text = text.str.to_lowercase()
        word = pl.col("word")
        keep = word.is_not_null() & (word != "")
        stop = self._stop_words()
        if stop:
            keep &= ~word.is_in(pl.Series(stop, dtype=pl.String).implode())
        counts = (
            df.lazy()
            .select(text.str.extract_all(self.config.pattern).explode().alias("word"))
            .filter(keep)
            .group_by("word")
            .agg(pl.len().cast(pl.Int64).alias("count"))
            .collect()
        )
        documents = df.get_column(column).count()
        return {"row_count": df.height, "documents": documents, "counts": counts.to_arrow()}

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state holding the merge of ``partials`` (associative)."""
        if not partials:
            raise ValueError("combine needs the state of at least one partition")
        counts = (
            stack([p["counts"] for p in partials])
            .group_by("word")
            .agg(pl.col("count").sum())
        )
        return {
            "row_count": sum(p["row_count"] for p in partials),
            "documents": sum(p["documents"] for p in partials),
            "counts": counts.to_arrow(),
        }

    def finalize(self, state: dict[str, Any]) -> AnalysisResult:
        """The result from one (merged) partial state."""
        counts = (
            as_frame(state["counts"])
            .select(pl.col("word").cast(pl.String), pl.col("count").cast(pl.Int64))
            .sort(["count", "word"], descending=[True, False])
        )
        top = counts.head(self.config.top_n) if self.config.top_n else counts
        summary = {
            "column": self.config.column,
            "total_tokens": int(counts.get_column("count").sum()),
            "unique_words": counts.height,
            "documents": int(state["documents"]),
            "row_count": int(state["row_count"]),
        }
        return AnalysisResult(kind=self.name, table=to_arrow(top), summary=summary)

    def combine(self, partials: list[dict[str, Any]]) -> AnalysisResult:
        """The word counts of all partitions."""
        return self.finalize(self.merge(partials))


# ---------------------------------------------------------------------------------------------
# Custom: any registered kernel by name


#: other names of kernels that raysight registers under another name
SEED_NAMES = {"text_frequency_analysis": "text_frequency"}


def _kernel_class(name: str) -> type[Analysis[Any]]:
    """The registered analysis class called ``name`` (ValueError listing the known ones)."""
    known = [n for n in registry.analyses.names() if n != Custom.name]
    if name == Custom.name:
        raise ValueError(f"'custom' cannot run itself; name one of: {', '.join(known)}")
    name = name if name in known else SEED_NAMES.get(name, name)
    if name not in known:
        raise ValueError(f"unknown analysis kernel {name!r}; known: {', '.join(known)}")
    return registry.analyses.get(name)


def _kernel_config(name: str, params: dict[str, Any]) -> BaseModel:
    """``params`` validated with the kernel's config; errors name ``params.<field>``."""
    kernel = _kernel_class(name)
    config_model: type[BaseModel] = kernel.Config
    data = dict(params)
    if "type" in config_model.model_fields and "type" not in data:
        data["type"] = getattr(kernel, "name", name)
    try:
        return config_model.model_validate(data)
    except ValidationError as err:
        problems = [
            f"{'.'.join(['params', *map(str, e['loc'])])}: {e['msg']}" for e in err.errors()
        ]
        raise ValueError(f"kernel {name!r}: " + "; ".join(problems)) from None


class CustomConfig(PluginConfig):
    """``{type: custom, name: <kernel>, params: {...}}``; ``params`` is the kernel's config.

    ``name`` is any registered analysis, or another name listed in :data:`SEED_NAMES`.
    """

    type: Literal["custom"] = "custom"
    #: a kernel registered under the ``raysight.analyses`` entry-point group or at run time
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            _kernel_class(value)
        except ValueError as err:
            raise PydanticCustomError("unknown_kernel", str(err)) from None
        return value

    @model_validator(mode="after")
    def _params_fit_the_kernel(self) -> CustomConfig:
        try:
            _kernel_config(self.name, self.params)
        except ValueError as err:
            raise PydanticCustomError("invalid_params", str(err)) from None
        return self


class Custom(Analysis[CustomConfig]):
    """Runs the registered kernel ``name`` with ``params`` as its config.

    Every method of the analysis protocol is the kernel's; the result is the kernel's own (its
    ``kind`` is the kernel's name). The kernel is looked up when the instance is built, so a
    kernel registered after the job spec model was built still works here.
    """

    name: ClassVar[str] = "custom"
    Config = CustomConfig

    def __init__(self, config: CustomConfig) -> None:
        super().__init__(config)
        try:
            kernel_config = _kernel_config(config.name, config.params)
        except ValueError as err:
            raise InputError(f"custom analysis: {err}", kernel=config.name) from None
        self.kernel: Analysis[Any] = _kernel_class(config.name)(kernel_config)

    @property
    def mergeable(self) -> bool:
        return bool(self.kernel.mergeable)

    def required_columns(self) -> list[str]:
        return self.kernel.required_columns()

    def output_columns(self) -> list[str] | None:
        return self.kernel.output_columns()

    def partial(self, df: pl.DataFrame) -> Any:
        return self.kernel.partial(df)

    def combine(self, partials: list[Any]) -> AnalysisResult:
        return self.kernel.combine(partials)

    def run(self, df: pl.DataFrame) -> AnalysisResult:
        return self.kernel.run(df)

    def shuffle_keys(self) -> list[str] | None:
        return self.kernel.shuffle_keys()

    def merge(self, partials: list[Any]) -> Any:
        return self.kernel.merge(partials)

    def finalize(self, state: Any) -> AnalysisResult:
        return self.kernel.finalize(state)

    def shard(self, df: pl.DataFrame, n: int) -> list[pa.Table]:
        return self.kernel.shard(df, n)

    def reduce_shard(self, tables: list[pa.Table]) -> pa.Table:
        return self.kernel.reduce_shard(tables)

    def finish(self, shards: list[pa.Table]) -> AnalysisResult:
        return self.kernel.finish(shards)

    def __getattr__(self, attr: str) -> Any:
        # kernel extras such as merge/finalize; never during unpickling (no kernel yet)
        if attr.startswith("_") or "kernel" not in self.__dict__:
            raise AttributeError(attr)
        return getattr(self.kernel, attr)

