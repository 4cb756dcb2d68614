"""Classical seasonal decomposition of each bucketed series (statsmodels' ``seasonal_decompose``).

``{column}_trend`` is the centred moving average of ``period`` rows (a 2×period average for
an even period; null at the ends), ``{column}_seasonal`` the mean detrended value of each
position modulo ``period`` counted from the series' first bucket, centred to mean 0
(additive) or 1 (multiplicative), ``{column}_resid`` what is left. A series shorter than two
periods gets nulls (counted in the summary); the multiplicative model needs positive values.
Rows count as consecutive buckets: fill gaps first when a series has holes.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from raysight.analyses.timeseries.config import PREFIX, Decompose
from raysight.errors import InputError

__all__ = ["decompose"]

_P = PREFIX


def decompose(
    table: pl.DataFrame,
    spec: Decompose,
    keys: list[str],
    targets: list[str],
    summary: dict[str, Any],
) -> pl.DataFrame:
    """Trend, seasonal and residual columns of every target (statsmodels' classical way)."""
    p = spec.period
    multiplicative = spec.model == "multiplicative"
    # an even period takes a 2 x period moving average: half weights at both ends
    window, weights = (p, None) if p % 2 else (p + 1, [0.5, *([1.0] * (p - 1)), 0.5])
    row, pos, ok = f"{_P}row", f"{_P}pos", f"{_P}ok"
    table = table.with_columns(pl.int_range(pl.len()).over(keys).alias(row)).with_columns(
        (pl.col(row) % p).alias(pos), (pl.len().over(keys) >= 2 * p).alias(ok)
    )
    for t in targets:
        if multiplicative:
            bad = table.filter(pl.col(t) <= 0)
            if bad.height:
                raise InputError(
                    f"multiplicative decomposition needs positive values; {t!r} is "
                    f"{bad.get_column(t)[0]} at {bad.get_column('bucket')[0]} "
                    "(use model 'additive')",
                    column=t,
                    field="decompose.model",
                )
        y, trend, index = pl.col(t).cast(pl.Float64), pl.col(f"{t}_trend"), pl.col(f"{_P}index")
        table = table.with_columns(
            y.rolling_mean(window, weights, min_samples=window, center=True)
            .over(keys)
            .alias(f"{t}_trend")
        )
        detrended = y / trend if multiplicative else y - trend
        table = table.with_columns(detrended.mean().over([*keys, pos]).alias(f"{_P}index"))
        # centre the p seasonal indices (each position once) to mean 0 or 1
        level = pl.when(pl.col(row) < p).then(index).mean().over(keys)
        seasonal = index / level if multiplicative else index - level
        table = table.with_columns(seasonal.alias(f"{t}_seasonal"))
        seasonal = pl.col(f"{t}_seasonal")
        resid = y / (trend * seasonal) if multiplicative else y - trend - seasonal
        table = table.with_columns(resid.alias(f"{t}_resid")).with_columns(
            pl.when(ok).then(pl.col(f"{t}_{part}")).alias(f"{t}_{part}")
            for part in ("trend", "seasonal", "resid")
        )
    short = table.filter(~pl.col(ok))
    summary["decompose"] = {
        "period": p,
        "model": spec.model,
        "short_series": short.select(keys).n_unique() if short.height else 0,
    }
    return table.drop(row, pos, ok, f"{_P}index", strict=False)
