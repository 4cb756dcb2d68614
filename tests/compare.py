"""Comparing result frames in tests: nulls in place, integers and strings exact, floats close."""

from __future__ import annotations

import numpy as np
import polars as pl


def assert_frames_match(
    actual: pl.DataFrame, expected: pl.DataFrame, atol: dict[str, float] | None = None
) -> None:
    """Same columns and rows; nulls in the same places; ints and strings exact; floats close."""
    atol = atol or {}
    assert actual.columns == expected.columns
    assert actual.height == expected.height
    for name in actual.columns:
        a, e = actual.get_column(name), expected.get_column(name)
        assert a.is_null().to_list() == e.is_null().to_list(), name
        if a.dtype.is_float() or e.dtype.is_float():
            np.testing.assert_allclose(
                a.drop_nulls().cast(pl.Float64).to_numpy(),
                e.drop_nulls().cast(pl.Float64).to_numpy(),
                rtol=1e-9,
                atol=atol.get(name, 0.0),
                err_msg=name,
            )
        elif a.dtype.is_integer():
            assert a.cast(pl.Int64).to_list() == e.cast(pl.Int64).to_list(), name
        else:
            assert a.to_list() == e.to_list(), name


def assert_same_schema_and_values(actual: pl.DataFrame, expected: pl.DataFrame,
                                  atol: float = 0.0) -> None:
    """Same schema, nulls in the same places, floats to 1e-9 relative (NaN equal to NaN)."""
    assert actual.schema == expected.schema
    assert_frames_match(actual, expected, {name: atol for name in actual.columns})
