"""Co-moments of a corr/r2 pair as Polars expressions: per partition, merged, and r from them.

The co-moments of a pair over its complete rows are n, the means of x and y, the sums of
(co)deviations C_xy, M2_x and M2_y, and min/max of x and y (which tell a constant column
exactly). They merge with Chan's formula (:mod:`raysight.analyses.moments`).
"""

from __future__ import annotations

import polars as pl

from raysight.analyses.moments import merge_comoment, merge_moments

__all__ = ["comoments", "comoments_after", "correlation", "merge_comoments", "r_defined"]


def comoments(x: str, y: str, complete: bool) -> dict[str, tuple[pl.Expr, str]]:
    """Co-moments of a pair as bare aggregations: name -> (aggregate, merge rule). x and y
    are null exactly where the pair is incomplete (``complete``: nowhere). cxy, m2x and m2y
    are the population (co)variances here; ``comoments_after`` makes them sums. min/max tell
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


def comoments_after(prefix: str, p: int) -> list[pl.Expr]:
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


def correlation(
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
    defined = r_defined(n, minx, maxx, miny, maxy)
    return pl.when(defined).then(cxy / (m2x.sqrt() * m2y.sqrt()))


def r_defined(n: pl.Expr, minx: pl.Expr, maxx: pl.Expr, miny: pl.Expr, maxy: pl.Expr) -> pl.Expr:
    """Whether r exists: two complete pairs or more and neither column constant over them."""
    return (n > 1) & (minx < maxx) & (miny < maxy)


def merge_comoments(prefix: str, p: int) -> list[pl.Expr]:
    """Merged co-moments of a corr pair (the rows of each group are partial states)."""

    def column(name: str) -> pl.Expr:
        return pl.col(f"{prefix}{name}{p}")

    n, mx, my = column("n"), column("mx"), column("my")
    gx, m2x = merge_moments(n, mx, column("m2x"))
    gy, m2y = merge_moments(n, my, column("m2y"))
    return [
        n.sum().alias(f"{prefix}n{p}"),
        gx.alias(f"{prefix}mx{p}"),
        gy.alias(f"{prefix}my{p}"),
        merge_comoment(n, mx, my, column("cxy"), gx, gy).alias(f"{prefix}cxy{p}"),
        m2x.alias(f"{prefix}m2x{p}"),
        m2y.alias(f"{prefix}m2y{p}"),
    ]
