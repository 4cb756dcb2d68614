"""Correlation matrix over pairwise-complete observations (Pearson or Spearman).

::

    CorrelationMatrix(CorrelationMatrix.Config(method="spearman")).run(df).table

Across partitions, Pearson is mergeable: per partition and per pair of columns it keeps the
co-moments of the rows where both are present (count, means, sums of squared deviations,
co-moment, min and max), merged with Chan's formula (:mod:`raysight.analyses.moments`).
Spearman needs ranks over the whole table, so its partials are the projected columns,
gathered by ``merge``. ``mergeable`` depends on the method: read it from an instance, not from
the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field

from raysight.analyses.columns import (
    Names,
    as_float,
    as_frame,
    is_numeric,
    require_columns,
    require_numeric,
    stack,
)
from raysight.analyses.moments import merge_comoment, merge_moments
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = ["CorrelationConfig", "CorrelationMatrix"]


def _finite(value: float | None) -> float | None:
    """A JSON-ready float: NaN and infinities become None."""
    return value if value is not None and math.isfinite(value) else None


class CorrelationConfig(PluginConfig):
    """``{type: correlation_matrix, columns?, method?}``."""

    type: Literal["correlation_matrix"] = "correlation_matrix"
    #: numeric columns to correlate, in this order; None means every integer and float column
    #: of the table's schema, in schema order
    columns: Names | None = Field(default=None, min_length=1)
    method: Literal["pearson", "spearman"] = "pearson"


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

    @classmethod
    def merged(cls, parts: list[_Moments]) -> _Moments:
        """The moments of all the parts' row sets together (:mod:`raysight.analyses.moments`)."""
        n = np.stack([p.n for p in parts])
        mean = np.stack([p.mean for p in parts])
        m2 = np.stack([p.m2 for p in parts])
        grand, spread = merge_moments(n, mean, m2)
        # entry [i, j] is column i over the pair's rows; [j, i] column j over the same rows
        c = merge_comoment(n, mean, mean.swapaxes(1, 2), np.stack([p.c for p in parts]),
                           grand, grand.T)
        return _Moments(
            n=n.sum(axis=0),
            mean=grand,
            m2=spread,
            c=c,
            low=np.min([p.low for p in parts], axis=0),
            high=np.max([p.high for p in parts], axis=0),
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
                require_numeric(schema, c, self.name)
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
        projected = df.select([as_float(c) for c in columns])
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
            merged["moments"] = _Moments.merged([p["moments"] for p in partials])
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
