"""Specification of the descriptive statistics kernel (raysight.analyses.descriptive).

Reference: Polars on the same data (and numpy for ``quantile_from_counts``). Floating results
agree to 1e-9 relative; where cancellation makes a result tiny compared with the data, the
agreement is bounded by rounding at the data's magnitude (data-scaled absolute tolerances).
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import frames, split

from raysight.analyses.descriptive import (
    Descriptive,
    DescriptiveConfig,
    merge_value_counts,
    quantile_from_counts,
    value_counts,
)
from raysight.errors import InputError

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = {"i": pl.Int64, "f": pl.Float64, "s": pl.String, "b": pl.Boolean, "u": pl.UInt8}
COLUMNS = {
    "i": st.one_of(st.none(), st.integers(-3, 3), st.integers(-(10**12), 10**12)),
    "f": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.just(0.25)),
    "s": st.one_of(st.none(), st.sampled_from(["Zürich", "東京", "", "x"]), st.text(max_size=3)),
    "b": st.one_of(st.none(), st.booleans()),
    "u": st.one_of(st.none(), st.integers(0, 255)),
}
NUMERIC = ("i", "f", "u")
FLOAT_STATS = ["mean", "std", "min", "q1", "median", "q3", "max"]


def tables(max_rows: int = 30) -> st.SearchStrategy[pl.DataFrame]:
    return frames(COLUMNS, SCHEMA, max_rows)


def describe() -> Descriptive:
    return Descriptive(DescriptiveConfig())


def polars_reference(df: pl.DataFrame) -> pl.DataFrame:
    """The expected result table, one Polars query per statistic over all columns."""

    def per_column(expr: pl.Expr, columns: list[str]) -> list[object]:
        row = df.select(expr).row(0, named=True) if columns else {}
        return [row.get(c) for c in df.columns]

    numeric = [c for c in df.columns if df.schema[c].is_integer() or df.schema[c].is_float()]
    x = pl.col(numeric).cast(pl.Float64)
    return pl.DataFrame(
        {
            "column": df.columns,
            "dtype": [str(t) for t in df.dtypes],
            "count": per_column(pl.all().count(), df.columns),
            "null_count": per_column(pl.all().null_count(), df.columns),
            "n_unique": per_column(pl.all().drop_nulls().n_unique(), df.columns),
            "mean": per_column(x.mean(), numeric),
            "std": per_column(x.std(), numeric),
            "min": per_column(x.min(), numeric),
            "q1": per_column(x.quantile(0.25, "linear"), numeric),
            "median": per_column(x.median(), numeric),
            "q3": per_column(x.quantile(0.75, "linear"), numeric),
            "max": per_column(x.max(), numeric),
        },
        schema_overrides={k: pl.Int64 for k in ("count", "null_count", "n_unique")}
        | dict.fromkeys(FLOAT_STATS, pl.Float64),
    )


def data_scale(df: pl.DataFrame) -> dict[str, tuple[float, float]]:
    """Per column: (sum |x|, sum x^2) of its numeric values."""
    out = {}
    for c in df.columns:
        if df.schema[c].is_integer() or df.schema[c].is_float():
            x = df.get_column(c).drop_nulls().cast(pl.Float64).to_numpy()
            out[c] = (float(np.abs(x).sum()), float((x**2).sum()))
        else:
            out[c] = (0.0, 0.0)
    return out


def assert_tables_match(actual: pl.DataFrame, expected: pl.DataFrame, df: pl.DataFrame) -> None:
    """Exact for text and integer stats; floats 1e-9 relative, or rounding at the data's scale."""
    assert actual.schema == expected.schema
    for name in ("column", "dtype", "count", "null_count", "n_unique"):
        assert actual.get_column(name).to_list() == expected.get_column(name).to_list(), name
    scale = data_scale(df)
    for stat in FLOAT_STATS:
        a, e = actual.get_column(stat).to_list(), expected.get_column(stat).to_list()
        for column, got, want in zip(actual.get_column("column"), a, e, strict=True):
            assert (got is None) == (want is None), (column, stat)
            if got is None:
                continue
            s1, s2 = scale[column]
            atol = 1e-6 * math.sqrt(s2) if stat == "std" else 1e-12 * s1
            assert got == pytest.approx(want, rel=1e-9, abs=atol), (column, stat)


def frame(result_table: object) -> pl.DataFrame:
    out = pl.from_arrow(result_table)  # type: ignore[arg-type]
    assert isinstance(out, pl.DataFrame)
    return out


# ---------------------------------------------------------------------------------------------
# equality with Polars


@PROPERTY
@given(df=tables())
def test_run_equals_polars_per_column(df: pl.DataFrame) -> None:
    assert_tables_match(frame(describe().run(df).table), polars_reference(df), df)


@PROPERTY
@given(data=st.data(), df=tables())
def test_partial_then_combine_equals_run_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    op = describe()
    combined = op.combine([op.partial(p) for p in data.draw(split(df))])
    whole = op.run(df)
    assert_tables_match(frame(combined.table), frame(whole.table), df)
    for column, stats in whole.summary["columns"].items():
        merged = combined.summary["columns"][column]
        for key in ("dtype", "count", "null_count", "n_unique", "min", "max"):
            assert merged[key] == stats[key], (column, key)
    assert combined.summary["row_count"] == whole.summary["row_count"] == df.height


@PROPERTY
@given(data=st.data(), df=tables())
def test_merge_of_merged_states_equals_run_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    # the engine reduces partial states as a tree of merges, adjacent partials together
    op = describe()
    partials = [op.partial(p) for p in data.draw(split(df))]
    cut = data.draw(st.integers(1, len(partials)))
    tree = [op.merge(partials[:cut])] + ([op.merge(partials[cut:])] if partials[cut:] else [])
    merged = op.finalize(op.merge(tree))
    whole = op.run(df)
    assert_tables_match(frame(merged.table), frame(whole.table), df)
    assert merged.summary["row_count"] == df.height


def test_value_counts_of_a_column_in_several_chunks_with_nulls_equal_a_group_by() -> None:
    # several chunks with nulls, sorted: Polars 2.1's streaming engine panicked on its rle
    df = pl.DataFrame({"k": [None, None, 0, 2], "s": ["", "Ù", "Dî", None]})
    for cut in ([1, 2], [2, 3], [1, 2, 3]):
        bounds = [0, *cut, df.height]
        whole = pl.concat([df.slice(a, b - a)
                           for a, b in zip(bounds, bounds[1:], strict=False)], rechunk=False)
        for column in ("k", "s"):
            expected = (whole.drop_nulls(column).group_by(column).len(name="count")
                        .sort(column).rename({column: "value"})
                        .with_columns(pl.col("count").cast(pl.Int64)))
            got = value_counts(whole, column)
            assert got.to_dicts() == expected.to_dicts()
            assert merge_value_counts([got, got]).get_column("count").to_list() == \
                [2 * c for c in expected.get_column("count")]


def test_wide_table_of_200_columns_equals_polars() -> None:
    rng = np.random.default_rng(7)
    n = 500
    data: dict[str, object] = {}
    for j in range(200):
        kind = j % 4
        if kind == 0:
            data[f"int_{j}"] = pl.Series(rng.integers(-1000, 1000, n)).scatter([j % n], None)
        elif kind == 1:
            data[f"float_{j}"] = pl.Series(rng.normal(j, 10, n))
        elif kind == 2:
            data[f"text_{j}"] = pl.Series(rng.choice(["Zürich", "東京", "", "a"], n))
        else:
            data[f"few_{j}"] = pl.Series(rng.integers(0, 3, n), dtype=pl.Int16)
    df = pl.DataFrame(data)
    op = describe()
    result = op.run(df)
    assert result.table.num_rows == 200
    assert_tables_match(frame(result.table), polars_reference(df), df)
    parts = [df.slice(0, 100), df.slice(100, 0), df.slice(100, 400)]
    assert_tables_match(
        frame(op.combine([op.partial(p) for p in parts]).table), frame(result.table), df
    )


# ---------------------------------------------------------------------------------------------
# semantics by example


def mixed() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "amount": [10, None, 3, -2, 7],
            "price": [1.5, 2.5, None, None, None],
            "city": ["Zürich", "東京", None, "", "Zürich"],
            "ok": [True, False, None, True, True],
            "day": [dt.date(2024, 1, 3), None, dt.date(2023, 12, 31), None, None],
            "at": [dt.datetime(2024, 1, 1, 12, 30), None, None, None, None],
        }
    )


def test_rows_follow_the_schema_and_columns_are_fixed() -> None:
    table = describe().run(mixed()).table
    assert table.column("column").to_pylist() == ["amount", "price", "city", "ok", "day", "at"]
    assert table.column_names == [
        "column", "dtype", "count", "null_count", "n_unique",
        "mean", "std", "min", "q1", "median", "q3", "max",
    ]  # fmt: skip
    assert frame(table).schema["count"] == pl.Int64
    assert frame(table).schema["q1"] == pl.Float64


def test_numeric_column_statistics() -> None:
    row = frame(describe().run(mixed()).table).row(0, named=True)
    assert row == {
        "column": "amount",
        "dtype": "Int64",
        "count": 4,
        "null_count": 1,
        "n_unique": 4,
        "mean": 4.5,
        "std": pytest.approx(np.std([10, 3, -2, 7], ddof=1)),
        "min": -2.0,
        "q1": 1.75,
        "median": 5.0,
        "q3": 7.75,
        "max": 10.0,
    }


def test_non_numeric_columns_have_only_counts_in_the_table() -> None:
    rows = frame(describe().run(mixed()).table).filter(pl.col("column").is_in(["city", "ok"]))
    assert rows.select("count", "null_count", "n_unique").rows() == [(4, 1, 3), (4, 1, 2)]
    assert rows.select(FLOAT_STATS).null_count().row(0) == (2,) * len(FLOAT_STATS)


def test_std_is_null_below_two_values() -> None:
    df = pl.DataFrame({"one": [None, 4.0], "none": pl.Series([None, None], dtype=pl.Int64)})
    table = frame(describe().run(df).table)
    assert table.get_column("std").to_list() == [None, None]
    assert table.row(0, named=True)["median"] == 4.0
    assert table.row(1, named=True)["mean"] is None


def test_summary_is_json_with_min_max_in_the_column_type() -> None:
    summary = describe().run(mixed()).summary
    json.dumps(summary, allow_nan=False)  # raises on NaN or non-JSON values
    columns = summary["columns"]
    assert (columns["amount"]["min"], columns["amount"]["max"]) == (-2, 10)
    assert (columns["city"]["min"], columns["city"]["max"]) == ("", "東京")
    assert (columns["day"]["min"], columns["day"]["max"]) == ("2023-12-31", "2024-01-03")
    assert columns["at"]["max"] == "2024-01-01T12:30:00"
    assert columns["ok"]["min"] is None
    assert columns["price"]["std"] == pytest.approx(math.sqrt(0.5))
    assert summary["row_count"] == 5
    assert summary["column_count"] == 6


def test_summary_turns_nan_into_none() -> None:
    df = pl.DataFrame({"v": [1.0, float("nan"), 3.0]})
    stats = describe().run(df).summary["columns"]["v"]
    assert stats["mean"] is None
    assert stats["min"] == 1.0
    json.dumps(stats, allow_nan=False)


def test_integer_min_max_stay_exact_in_the_summary() -> None:
    big = 2**53 + 1
    stats = describe().run(pl.DataFrame({"v": [big, 1]})).summary["columns"]["v"]
    assert stats["max"] == big


def test_empty_table_has_zero_counts_and_null_statistics() -> None:
    result = describe().run(mixed().clear())
    table = frame(result.table)
    assert table.get_column("count").to_list() == [0] * 6
    assert table.select(FLOAT_STATS).null_count().row(0) == (6,) * len(FLOAT_STATS)
    assert result.summary["row_count"] == 0


def test_listed_columns_are_described_in_the_listed_order() -> None:
    op = Descriptive(DescriptiveConfig(columns=["city", "amount"]))
    assert op.run(mixed()).table.column("column").to_pylist() == ["city", "amount"]
    assert op.required_columns() == ["city", "amount"]


# ---------------------------------------------------------------------------------------------
# bad input


def test_unknown_column_raises_input_error_naming_it() -> None:
    op = Descriptive(DescriptiveConfig(columns=["amount", "cty"]))
    with pytest.raises(InputError, match="column 'cty' not found; available: amount, price") as err:
        op.partial(mixed())
    assert err.value.details["column"] == "cty"


def test_repeated_column_is_rejected() -> None:
    with pytest.raises(ValidationError, match="columns lists 'a' more than once"):
        DescriptiveConfig(columns=["a", "a"])


def test_partitions_with_different_columns_raise_input_error() -> None:
    op = describe()
    parts = [op.partial(mixed()), op.partial(mixed().drop("city"))]
    with pytest.raises(InputError, match="'city' is not in every partition"):
        op.combine(parts)


# ---------------------------------------------------------------------------------------------
# quantile_from_counts


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 5)),
        min_size=1,
        max_size=20,
        unique_by=lambda t: t[0],
    ),
    q=st.floats(0, 1),
)
def test_quantile_from_counts_equals_numpy_quantile_of_the_expanded_data(
    values: list[tuple[float, int]], q: float
) -> None:
    values.sort()
    distinct = np.array([v for v, _ in values])
    counts = np.array([c for _, c in values])
    expected = np.quantile(np.repeat(distinct, counts), q)
    scale = float(np.abs(distinct).max())
    assert quantile_from_counts(distinct, counts, q) == pytest.approx(
        expected, rel=1e-9, abs=1e-12 * scale
    )


def test_quantile_from_counts_is_vectorized_over_q() -> None:
    out = quantile_from_counts(np.array([1.0, 2.0, 10.0]), np.array([2, 1, 1]), [0, 0.5, 1])
    assert out.tolist() == [1.0, 1.5, 10.0]


def test_quantile_from_counts_of_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        quantile_from_counts(np.array([]), np.array([], dtype=np.int64), 0.5)
