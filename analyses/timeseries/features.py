"""Per-series features on the bucketed series: rolling windows, transforms, anomaly flags.

For every aggregate column named in ``targets`` (default: all of them), each computed per
series in bucket order:

- ``rolling``: ``{column}_rolling_{function}`` over the last ``window`` rows (buckets present,
  so fill gaps first for regular spacing) or over a duration window ``(t - window, t]`` on
  ``bucket`` (Polars ``rolling_*`` / ``rolling_*_by``; ``min_periods`` defaults to the window
  for rows and 1 for durations; ``std`` is the sample std).
- ``transforms``: ``{column}_lag``, ``{column}_diff``, ``{column}_pct_change`` with ``periods``
  (Polars ``shift``/``diff``/``pct_change``).
- ``decompose``: see :mod:`raysight.analyses.timeseries.decompose`.
- ``anomalies``: ``{column}_anomaly`` (Boolean; null where the value or the statistics are
  missing). ``zscore``: ``|x - mean| > threshold * std`` (sample std; ``x != mean`` where the std
  is 0); ``iqr``: ``x`` outside ``[q1 - k·IQR, q3 + k·IQR]`` (linear quartiles). With ``window``
  the statistics come from the ``window`` buckets before the current one (all present), else
  from the whole series including the point.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from raysight.analyses.temporal import parse_duration, polars_duration
from raysight.analyses.timeseries.config import Anomalies, Rolling, TimeSeriesConfig
from raysight.analyses.timeseries.decompose import decompose

__all__ = ["add_features"]


def add_features(
    table: pl.DataFrame, config: TimeSeriesConfig, summary: dict[str, Any]
) -> pl.DataFrame:
    """The table with the rolling, transform, decomposition and anomaly columns added."""
    c, keys = config, config.series_keys
    targets = c.target_columns
    exprs: list[pl.Expr] = []
    if c.rolling is not None:
        name = f"rolling_{c.rolling.function}"
        exprs += [
            _rolling(pl.col(t), c.rolling).over(keys).alias(f"{t}_{name}") for t in targets
        ]
    for transform in c.transforms:
        for t in targets:
            col = pl.col(t)
            if transform == "lag":
                expr = col.shift(c.periods)
            elif transform == "diff":
                expr = col.diff(c.periods)
            else:
                expr = col.pct_change(c.periods)
            exprs.append(expr.over(keys).alias(f"{t}_{transform}"))
    table = table.with_columns(exprs)
    if c.decompose is not None:
        table = decompose(table, c.decompose, keys, targets, summary)
    if c.anomalies is not None:
        table = table.with_columns(
            _anomaly(pl.col(t), c.anomalies, keys).alias(f"{t}_anomaly") for t in targets
        )
        summary["anomalies"] = {t: int(table.get_column(f"{t}_anomaly").sum()) for t in targets}
    return table


def _rolling(col: pl.Expr, spec: Rolling) -> pl.Expr:
    fn = spec.function
    if isinstance(spec.window, int):
        return getattr(col, f"rolling_{fn}")(spec.window, min_samples=spec.min_periods)
    window = polars_duration(parse_duration(spec.window))
    return getattr(col, f"rolling_{fn}_by")("bucket", window, min_samples=spec.min_periods or 1)


def _anomaly(y: pl.Expr, spec: Anomalies, keys: list[str]) -> pl.Expr:
    """True where a value lies beyond the z-score threshold or the IQR fences."""
    w = spec.window
    x = y.cast(pl.Float64)
    history = x.shift(1)
    if spec.method == "zscore":
        if w is None:
            mean, std = x.mean(), x.std()
        else:
            mean = history.rolling_mean(w, min_samples=w)
            std = history.rolling_std(w, min_samples=w)
        mean, std = mean.over(keys), std.over(keys)
        beyond = (x - mean).abs() > spec.threshold * std
        flag = pl.when(std == 0).then(x != mean).otherwise(beyond)
        return pl.when(x.is_not_null() & std.is_not_null()).then(flag)
    if w is None:
        q1, q3 = x.quantile(0.25, "linear"), x.quantile(0.75, "linear")
    else:
        q1 = history.rolling_quantile(0.25, "linear", w, min_samples=w)
        q3 = history.rolling_quantile(0.75, "linear", w, min_samples=w)
    q1, q3 = q1.over(keys), q3.over(keys)
    fence = spec.k * (q3 - q1)
    return (x < q1 - fence) | (x > q3 + fence)
