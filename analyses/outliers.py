"""Outlier detection: the rows whose value lies outside IQR or z-score bounds.

::

    OutlierDetection(OutlierDetection.Config(column="amount", k=3.0)).run(df).table

Across partitions it needs two facts in turn (the global quartiles or mean/std, then a filter
over the rows), so its partials keep the non-missing rows (all columns, or only the value
column with ``include_rows: false``) with their partition-local index; ``merge`` gathers
them, numbering the rows by the partitions' row counts, and ``finalize`` computes the bounds
exactly (a gather, not mergeable: all those rows meet in one task).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from raysight.analyses.columns import as_float, as_frame, require_columns, require_numeric, stack
from raysight.errors import InputError
from raysight.plugins import Analysis, AnalysisResult, PluginConfig
from raysight.tables import to_arrow

__all__ = ["OUTLIER_TYPE", "ROW_INDEX", "OutlierConfig", "OutlierDetection"]

#: prefix of internal columns
_P = "__rs_"

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

    Distributed, the non-missing rows are gathered by ``merge`` (not mergeable).
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
        require_numeric(schema, column, self.name)
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
        value = as_float(self.config.column)
        rows = (
            df.with_row_index(_P + "row")
            .filter(value.is_not_null())
            .select(pl.col(_P + "row").cast(pl.Int64), *kept)
        )
        return {"row_count": df.height, "rows": to_arrow(rows)}

    def merge(self, partials: list[dict[str, Any]]) -> dict[str, Any]:
        """One partial state holding the rows of ``partials`` (in partition order), their
        index counted from the first one's first row (associative over adjacent partials)."""
        if not partials:
            raise ValueError("combine needs the state of at least one partition")
        offsets = np.cumsum([0] + [p["row_count"] for p in partials[:-1]])
        rows = stack(
            [
                as_frame(p["rows"]).with_columns(pl.col(_P + "row") + int(offset))
                for p, offset in zip(partials, offsets, strict=True)
            ]
        ).rechunk()
        return {"row_count": int(sum(p["row_count"] for p in partials)), "rows": to_arrow(rows)}

    def finalize(self, state: dict[str, Any]) -> AnalysisResult:
        """Bounds from all values, then the rows outside them, in table order."""
        rows = as_frame(state["rows"])
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
            "row_count": int(state["row_count"]),
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
