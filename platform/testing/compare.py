"""Comparing tables and analysis results (floats within a relative tolerance, nulls in place)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import pyarrow as pa

from raysight.plugins import (
    AnalysisResult,
)
from raysight.testing.plugins import as_frame

#: relative tolerance of float comparisons
RTOL = 1e-9


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values."""
    return value.tolist() if hasattr(value, "tolist") else value


def _values_match(a: Any, e: Any, rtol: float) -> bool:
    a, e = _plain(a), _plain(e)
    if isinstance(a, float) or isinstance(e, float):
        if a is None or e is None or isinstance(a, str) or isinstance(e, str):
            return False
        fa, fe = float(a), float(e)
        if fa != fa or fe != fe:  # NaN equals NaN here
            return fa != fa and fe != fe
        return fa == fe or abs(fa - fe) <= rtol * max(abs(fa), abs(fe))
    if isinstance(a, Mapping) and isinstance(e, Mapping):
        return list(a) == list(e) and all(_values_match(a[k], e[k], rtol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(e, (list, tuple)):
        return len(a) == len(e) and all(
            _values_match(x, y, rtol) for x, y in zip(a, e, strict=True))
    if isinstance(a, bool) is not isinstance(e, bool):
        return False
    return bool(a == e)


def assert_tables_match(actual: pa.Table | pl.DataFrame, expected: pa.Table | pl.DataFrame,
                        *, rtol: float = RTOL, what: str = "table") -> None:
    """Same column names, dtypes and rows in order; nulls in place; floats to ``rtol``
    relative (NaN equal to NaN); nested values compared element by element."""
    a, e = as_frame(actual), as_frame(expected)
    assert a.columns == e.columns, f"{what}: columns {a.columns} != {e.columns}"
    assert a.schema == e.schema, f"{what}: schema {dict(a.schema)} != {dict(e.schema)}"
    assert a.height == e.height, f"{what}: {a.height} rows != {e.height}"
    for name in a.columns:
        left, right = a.get_column(name).to_list(), e.get_column(name).to_list()
        for i, (x, y) in enumerate(zip(left, right, strict=True)):
            assert _values_match(x, y, rtol), f"{what}: column {name!r} row {i}: {x!r} != {y!r}"


def assert_results_match(actual: AnalysisResult, expected: AnalysisResult, *,
                         rtol: float = RTOL, what: str = "result") -> None:
    """Two analysis results agree: kind, table (see :func:`assert_tables_match`), summary."""
    assert actual.kind == expected.kind, f"{what}: kind {actual.kind!r} != {expected.kind!r}"
    assert_tables_match(actual.table, expected.table, rtol=rtol, what=f"{what} table")
    assert _values_match(actual.summary, expected.summary, rtol), (
        f"{what} summary: {actual.summary!r} != {expected.summary!r}")
