"""Rescaling numeric columns with statistics of the whole column."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import Field

from raysight.analyses.columns import Names, require_columns, stack
from raysight.analyses.descriptive import merge_value_counts, quantile_from_counts, value_counts
from raysight.analyses.preprocess.checks import require_numeric
from raysight.plugins import PluginConfig, Preprocessor

__all__ = ["Normalize", "NormalizeConfig", "NormalizeMethod"]


NormalizeMethod = Literal["min_max", "z_score", "robust"]


class NormalizeConfig(PluginConfig):
    """Rescale numeric columns with statistics of the whole column."""

    op: Literal["normalize"] = "normalize"
    columns: Names = Field(min_length=1)
    #: min_max: (x - min) / (max - min); z_score: (x - mean) / std with population std
    #: (ddof=0, as scikit-learn StandardScaler); robust: (x - median) / (q3 - q1)
    method: NormalizeMethod = "min_max"


class Normalize(Preprocessor[NormalizeConfig]):
    """The table with the chosen numeric columns rescaled, as Float64, in place.

    The centre and scale come from the whole column across partitions (min/max; mean and
    population std merged with Chan's formula; quartiles by linear interpolation, exact from
    merged value counts). Nulls stay null; NaN behaves as in Polars: min and max skip it, a
    column with NaN has a NaN mean (z_score gives NaN), and quartiles sort NaN last.

    A constant column (min == max over its non-NaN values) becomes 0.0 at every non-null,
    non-NaN value, for every method. Otherwise a zero scale is replaced by 1, as scikit-learn
    does (robust scaling of a column with q3 == q1 gives x - median). A column without values
    stays all null.

    Example: ``Normalize(NormalizeConfig(columns=["amount"], method="z_score")).apply(df)``.
    """

    name: ClassVar[str] = "normalize"
    Config = NormalizeConfig
    needs_stats: ClassVar[bool] = True

    def _check(self, schema: pl.Schema) -> None:
        require_columns(list(schema.names()), self.config.columns)
        for c in self.config.columns:
            require_numeric("normalize", c, schema[c])

    def partial_stats(self, df: pl.DataFrame) -> dict[str, Any]:
        """Per column: non-null count, min, max (and Float64 sum and M2 about the partition's
        mean for z_score; value counts for robust)."""
        self._check(df.schema)
        exprs: list[pl.Expr] = []
        values: dict[str, pa.Table] = {}
        for i, c in enumerate(self.config.columns):
            x = pl.col(c).cast(pl.Float64)
            exprs += [
                x.count().cast(pl.Int64).alias(f"count{i}"),
                x.min().alias(f"min{i}"),
                x.max().alias(f"max{i}"),
            ]
            if self.config.method == "z_score":
                exprs += [x.sum().alias(f"sum{i}"), ((x - x.mean()) ** 2).sum().alias(f"m2{i}")]
            elif self.config.method == "robust":
                values[c] = value_counts(df.select(x), c).to_arrow()
        return {"summary": df.select(exprs).to_arrow(), "values": values}

    def merge_stats(self, partials: list[Any]) -> dict[str, tuple[float | None, float | None]]:
        """(centre, scale) of every column, from the states of all partitions."""
        if not partials:
            raise ValueError("merge_stats needs the state of at least one partition")
        rows = stack([p["summary"] for p in partials])
        merged: dict[str, tuple[float | None, float | None]] = {}
        for i, c in enumerate(self.config.columns):
            counts = rows.get_column(f"count{i}")
            low, high = rows.get_column(f"min{i}").min(), rows.get_column(f"max{i}").max()
            if int(counts.sum()) == 0:
                merged[c] = (None, None)
            elif low == high:  # constant: every value maps to exactly 0.0
                merged[c] = (float(low), 1.0)  # type: ignore[arg-type]
            else:
                centre, scale = self._centre_scale(c, i, rows, partials, low, high)
                merged[c] = (centre, 1.0 if scale == 0 else scale)
        return merged

    def _centre_scale(
        self, column: str, i: int, rows: pl.DataFrame, partials: list[Any], low: Any, high: Any
    ) -> tuple[float, float]:
        method = self.config.method
        if method == "min_max":
            return float(low), float(high) - float(low)
        if method == "z_score":
            live = rows.filter(pl.col(f"count{i}") > 0)
            n = live.get_column(f"count{i}").cast(pl.Float64).to_numpy()
            sums = live.get_column(f"sum{i}").to_numpy()
            m2 = live.get_column(f"m2{i}").to_numpy()
            mean = float(np.sum(sums) / np.sum(n))
            # Chan et al.: M2 = sum of the partitions' M2 + sum n_i (mean_i - mean)^2
            total_m2 = np.sum(m2) + np.sum(n * (sums / n - mean) ** 2)
            return mean, float(np.sqrt(total_m2 / np.sum(n)))
        counts = merge_value_counts([p["values"][column] for p in partials])
        q1, median, q3 = quantile_from_counts(
            counts.get_column("value").to_numpy(),
            counts.get_column("count").to_numpy(),
            [0.25, 0.5, 0.75],
        )
        return float(median), float(q3 - q1)

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        """Rescale; without ``stats`` the centre and scale come from ``df`` alone."""
        self._check(df.schema)
        if stats is None:
            stats = self.merge_stats([self.partial_stats(df)])
        exprs = []
        for c in self.config.columns:
            centre, scale = stats[c]
            x = pl.col(c).cast(pl.Float64)
            exprs.append(
                ((x - pl.lit(centre, dtype=pl.Float64)) / pl.lit(scale, dtype=pl.Float64)).alias(c)
            )
        return df.with_columns(exprs)
