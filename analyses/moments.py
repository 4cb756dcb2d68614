"""Chan's parallel merge of moments, written once for Polars expressions and numpy arrays.

::

    # Polars: the partial rows of each group merge into one (inside group_by().agg())
    mean, m2 = merge_moments(pl.col("n"), pl.col("mean"), pl.col("m2"))
    # numpy: partial i is index i of axis 0
    mean, m2 = merge_moments(np.array([2, 3]), np.array([1.5, 4.0]), np.array([0.5, 2.0]))

A partial state of a set of values is its count ``n``, its ``mean`` and ``M2``, the sum of
squared deviations from the mean (the variance is ``M2 / (n - ddof)``); a pair of columns adds
the co-moment ``C``, the sum of products of the deviations of x and y. The states of disjoint
sets merge into the state of their union with Chan et al.'s formula, ``C = sum C_i +
sum n_i (mean_x_i - mean_x) (mean_y_i - mean_y)`` (``M2`` is ``C`` of a column with itself).
The merge is associative, so kernels reduce partial states as a tree. A partial without values
(n = 0) counts for nothing: its mean may be null (Polars) or any finite number (numpy), and the
merged mean of no values is null (Polars) or 0 (numpy).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import polars as pl

__all__ = ["merge_comoment", "merge_moments"]

T = TypeVar("T", pl.Expr, np.ndarray)


def merge_moments(n: T, mean: T, m2: T, *, axis: int = 0) -> tuple[T, T]:
    """The merged (mean, M2) of partial states; the merged count is the sum of ``n``.

    Polars expressions aggregate over the rows of a group (or of the frame); numpy arrays
    reduce over ``axis``.
    """
    total, ratio = _ops(n, axis)
    count = _float(n)
    grand = ratio(total(count * mean), total(count))
    return grand, merge_comoment(n, mean, mean, m2, grand, grand, axis=axis)


def merge_comoment(n: T, mx: T, my: T, cxy: T, gx: T, gy: T, *, axis: int = 0) -> T:
    """The merged co-moment C of partial states whose merged means are ``gx`` and ``gy``
    (from :func:`merge_moments` of each column); with x = y it is M2."""
    total, _ = _ops(n, axis)
    return total(cxy) + total(_float(n) * (mx - gx) * (my - gy))  # type: ignore[no-any-return]


def _float(n: Any) -> Any:
    return n.cast(pl.Float64) if isinstance(n, pl.Expr) else np.asarray(n, dtype=np.float64)


def _ops(example: Any, axis: int) -> tuple[Any, Any]:
    """(the sum over the partials, a / b left undefined where b is 0)."""
    if isinstance(example, pl.Expr):
        return (lambda e: e.sum()), (lambda a, b: pl.when(b > 0).then(a / b))

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(a), np.shape(b))
        return np.divide(a, b, out=np.zeros(shape), where=np.asarray(b) > 0)

    return (lambda a: np.sum(a, axis=axis)), ratio
