"""Forecasts of each bucketed series, scored on a hold-out of its last buckets.

``seasonal_naive`` repeats the last ``season_length`` values (1 = naive); ``exp_smoothing`` is
simple exponential smoothing (level only, started at the first value, flat forecast) with
``alpha`` or, when unset, the alpha in 0.01…0.99 (step 0.01) with the least one-step-ahead
squared error on the fit data, chosen per series and column. Each model is fit on all but the
last ``holdout`` buckets of a series (default: ``horizon``) to report MAE, RMSE and MAPE
(percent, over non-zero actuals) on those buckets in ``summary["forecast"]["metrics"]`` (one
entry per series and target, with ``n`` scored buckets and, for exp_smoothing, the ``alpha``
used); it is then refit on the whole series (alpha chosen again) and ``horizon`` buckets after
the last one (calendar-aware, DST too) are appended as rows with ``kind = "forecast"`` (the
others have ``kind = "actual"``), holding the forecasts in the target columns (which become
Float64) and nulls elsewhere. Forecasts count rows as consecutive buckets: fill gaps first
when a series has holes.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from raysight.analyses.timeseries.config import PREFIX, SERIES, Forecast, TimeSeriesConfig
from raysight.analyses.timeseries.gaps import buckets_between

__all__ = ["ALPHA_GRID", "forecast"]

_P = PREFIX
#: exponential-smoothing alphas tried when none is given
ALPHA_GRID = tuple(round(0.01 * i, 2) for i in range(1, 100))


def forecast(
    table: pl.DataFrame, config: TimeSeriesConfig, summary: dict[str, Any]
) -> pl.DataFrame:
    """Score on the hold-out, then append ``horizon`` forecast rows per series."""
    spec = config.forecast
    assert spec is not None
    keys, holdout = config.series_keys, spec.holdout_buckets
    row, n = f"{_P}row", f"{_P}n"
    numbered = table.with_columns(
        pl.int_range(pl.len()).over(keys).alias(row),
        pl.len().over(keys).cast(pl.Int64).alias(n),
    )
    future = _future_buckets(table, spec.horizon, config)
    scores: list[pl.DataFrame] = []
    for t in config.target_columns:
        series = numbered.select(*keys, row, n, pl.col(t).cast(pl.Float64).alias("y"))
        if holdout > 0:
            cut = pl.col(n) - holdout
            fit = series.filter(pl.col(row) < cut)
            test = series.filter(pl.col(row) >= cut).with_columns(
                (pl.col(row) - cut).alias("step")
            )
            predicted, alphas = _predict(fit, test.select(*keys, "step"), spec, keys)
            scores.append(_scores(test, predicted, alphas, keys, t))
        predicted, _ = _predict(series, future.select(*keys, "step"), spec, keys)
        future = future.join(
            predicted.rename({"forecast": t}), on=[*keys, "step"], how="left", nulls_equal=True
        )
    info: dict[str, Any] = {"method": spec.method, "horizon": spec.horizon, "holdout": holdout}
    if spec.method == "seasonal_naive":
        info["season_length"] = spec.season_length
    else:
        info["alpha"] = spec.alpha
    if scores:
        metrics = pl.concat(scores, how="vertical_relaxed").drop(SERIES, strict=False)
        info["metrics"] = json.loads(metrics.write_json())
    summary["forecast"] = info
    rows = future.drop("step").with_columns(pl.lit("forecast").alias("kind"))
    actual = table.with_columns(pl.lit("actual").alias("kind"))
    return pl.concat([actual, rows], how="diagonal_relaxed").sort(
        [*keys, "bucket"], nulls_last=True
    )


def _future_buckets(table: pl.DataFrame, horizon: int, config: TimeSeriesConfig) -> pl.DataFrame:
    """The ``horizon`` buckets after the last one of each series (keys, bucket, step)."""
    keys = config.series_keys
    last = table.group_by(keys).agg(pl.col("bucket").max().alias("last"))
    reach = pl.duration(minutes=config.bucket_interval.longest * horizon)
    spans = last.select(
        *keys, pl.col("last").alias("start"), (pl.col("last") + reach).alias("end")
    )
    grid = buckets_between(spans, table.schema["bucket"], config)
    return (
        grid.join(last, on=keys, nulls_equal=True)
        .filter(pl.col("bucket") > pl.col("last"))
        .sort([*keys, "bucket"], nulls_last=True)
        .with_columns(pl.int_range(pl.len()).over(keys).alias("step"))
        .filter(pl.col("step") < horizon)
        .drop("last")
    )


def _predict(
    fit: pl.DataFrame, steps: pl.DataFrame, spec: Forecast, keys: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Forecasts (keys, step, forecast) from each series of ``fit`` (keys, row, n, y).

    ``step`` 0 is the first bucket after the fit data. Returns the alphas used by
    exponential smoothing too (None for seasonal naive).
    """
    row = f"{_P}row"
    fit = fit.sort([*keys, row], nulls_last=True)
    length = fit.group_by(keys).agg(pl.len().cast(pl.Int64).alias("length"))
    if spec.method == "seasonal_naive":
        m = spec.season_length
        source = (
            steps.join(length, on=keys, how="left", nulls_equal=True)
            .with_columns((pl.col("length") - m + pl.col("step") % m).alias(row))
            .join(fit.select(*keys, row, "y"), on=[*keys, row], how="left", nulls_equal=True)
        )
        return source.select(*keys, "step", pl.col("y").alias("forecast")), None
    alphas = _alphas(fit, spec, keys)
    levels = []
    for (alpha,), part in fit.join(alphas, on=keys, nulls_equal=True).group_by("alpha"):
        levels.append(
            part.sort([*keys, row], nulls_last=True)
            .group_by(keys)
            .agg(_ses_level(pl.col("y"), float(alpha)).last().alias("forecast"))  # type: ignore[arg-type]
        )
    level = (
        pl.concat(levels)
        if levels
        else pl.DataFrame(schema={**fit.select(keys).schema, "forecast": pl.Float64})
    )
    predicted = steps.join(level, on=keys, how="left", nulls_equal=True)
    return predicted.select(*keys, "step", "forecast"), alphas


def _alphas(fit: pl.DataFrame, spec: Forecast, keys: list[str]) -> pl.DataFrame:
    """The smoothing factor per series: ``spec.alpha``, else the least one-step SSE."""
    y = pl.col("y")
    if spec.alpha is not None:
        return fit.select(keys).unique().with_columns(pl.lit(spec.alpha).alias("alpha"))
    sse = {f"{alpha}": ((y - _ses_level(y, alpha).shift(1)) ** 2).sum() for alpha in ALPHA_GRID}
    scores = fit.group_by(keys).agg(expr.alias(name) for name, expr in sse.items())
    return (
        scores.unpivot(index=keys, variable_name="alpha", value_name="sse")
        .with_columns(pl.col("alpha").cast(pl.Float64))
        .sort([*keys, "sse", "alpha"], nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(pl.col("alpha").first())
    )


def _ses_level(y: pl.Expr, alpha: float) -> pl.Expr:
    """Simple exponential smoothing levels (started at the first value, carried over nulls)."""
    return y.ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True).forward_fill()


def _scores(
    test: pl.DataFrame,
    predicted: pl.DataFrame,
    alphas: pl.DataFrame | None,
    keys: list[str],
    column: str,
) -> pl.DataFrame:
    """MAE, RMSE and MAPE (percent, over non-zero actuals) per series on the hold-out."""
    both = test.join(predicted, on=[*keys, "step"], how="left", nulls_equal=True)
    error = pl.col("y") - pl.col("forecast")
    scored = error.is_not_null()
    ape = pl.when(scored & (pl.col("y") != 0)).then(error.abs() / pl.col("y").abs() * 100)
    out = both.group_by(keys).agg(
        pl.lit(column).alias("column"),
        scored.sum().cast(pl.Int64).alias("n"),
        error.abs().mean().alias("mae"),
        (error**2).mean().sqrt().alias("rmse"),
        ape.mean().alias("mape"),
    )
    if alphas is not None:
        out = out.join(alphas, on=keys, how="left", nulls_equal=True)
    return out.sort(keys, nulls_last=True)
