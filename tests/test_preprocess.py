"""Specification of the preprocessing operations (raysight.analyses.preprocess).

References: pandas ``dropna`` for missing rows, Polars expressions on the whole table for fill
statistics, DuckDB ``WHERE`` for SQL conditions.
"""

from __future__ import annotations

import itertools

import duckdb
import polars as pl
import pytest
from compare import assert_same_schema_and_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from raysight.analyses.preprocess.missing import (
    DropMissing,
    DropMissingConfig,
    FillMissing,
    FillMissingConfig,
)
from raysight.analyses.preprocess.rows import FilterRows, FilterRowsConfig
from raysight.analyses.preprocess.shape import SelectColumns, SelectColumnsConfig
from raysight.errors import InputError

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = {"i": pl.Int64, "f": pl.Float64, "s": pl.String}
COLUMNS = {
    "i": st.one_of(st.none(), st.integers(-3, 3), st.integers(-(10**12), 10**12)),
    "f": st.one_of(
        st.none(), st.just(float("nan")), st.floats(-1e6, 1e6, allow_nan=False), st.just(0.5)
    ),
    "s": st.one_of(st.none(), st.sampled_from(["Zürich", "東京", "", "x"]), st.text(max_size=3)),
}


@st.composite
def tables(draw: st.DrawFn, max_rows: int = 30, nan: bool = True) -> pl.DataFrame:
    n = draw(st.integers(0, max_rows))
    data = {
        name: draw(st.lists(values, min_size=n, max_size=n)) for name, values in COLUMNS.items()
    }
    df = pl.DataFrame(data, schema=SCHEMA)
    return df if nan else df.with_columns(pl.col("f").fill_nan(None))


@st.composite
def split(draw: st.DrawFn, df: pl.DataFrame) -> list[pl.DataFrame]:
    """The rows of ``df`` in order, cut into 1-5 partitions, some possibly empty."""
    k = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(0, df.height), min_size=k - 1, max_size=k - 1)))
    bounds = [0, *cuts, df.height]
    return [df.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def people() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "city": ["Zürich", "東京", None, "Basel", "Test", "züri"],
            "amount": [10, None, 3, -2, 7, 0],
            "price": [1.5, float("nan"), None, 2.0, 3.0, 0.25],
        }
    )


# ---------------------------------------------------------------------------------------------
# drop_missing


@PROPERTY
@given(
    df=tables(),
    columns=st.lists(st.sampled_from(list(SCHEMA)), unique=True),
    how=st.sampled_from(["any", "all"]),
)
def test_drop_missing_keeps_the_rows_pandas_dropna_keeps(
    df: pl.DataFrame, columns: list[str], how: str
) -> None:
    op = DropMissing(DropMissingConfig(columns=columns, how=how))  # type: ignore[arg-type]
    # pandas treats NaN as missing too
    expected = df.with_row_index("row").to_pandas().dropna(subset=columns or list(SCHEMA), how=how)
    kept = op.apply(df)
    assert kept.equals(df[expected["row"].tolist()])


def test_drop_missing_without_columns_looks_at_every_column() -> None:
    df = pl.DataFrame({"a": [1, None, 3], "b": ["x", "y", None]})
    assert DropMissing(DropMissingConfig()).apply(df).rows() == [(1, "x")]


def test_drop_missing_treats_nan_as_missing_in_float_columns() -> None:
    kept = DropMissing(DropMissingConfig(columns=["price"])).apply(people())
    assert kept.get_column("city").to_list() == ["Zürich", "Basel", "Test", "züri"]


def test_drop_missing_all_drops_only_rows_missing_everywhere() -> None:
    df = pl.DataFrame({"a": [None, 1, None], "b": [None, None, 2.0]})
    kept = DropMissing(DropMissingConfig(how="all")).apply(df)
    assert kept.rows() == [(1, None), (None, 2.0)]


def test_drop_missing_unknown_column_raises_input_error() -> None:
    op = DropMissing(DropMissingConfig(columns=["amount", "cty"]))
    with pytest.raises(InputError, match="column 'cty' not found; available: city, amount, price"):
        op.apply(people())


# ---------------------------------------------------------------------------------------------
# fill_missing: statistics across partitions


def fill_reference(df: pl.DataFrame, column: str, method: str) -> pl.DataFrame:
    col = pl.col(column)
    stat = {
        "mean": col.mean(),
        "median": col.median(),
        "min": col.min(),
        "max": col.max(),
        "most_frequent": col.drop_nulls().mode().min(),  # ties -> smallest value
    }[method]
    return df.with_columns(col.fill_null(stat))


def fill_distributed(op: FillMissing, parts: list[pl.DataFrame]) -> pl.DataFrame:
    stats = op.merge_stats([op.partial_stats(p) for p in parts])
    return pl.concat([op.apply(p, stats) for p in parts])


def assert_same(actual: pl.DataFrame, expected: pl.DataFrame, atol: float = 0.0) -> None:
    """Same columns, dtypes and nulls; floats to 1e-9 relative (NaN equal to NaN)."""
    assert_same_schema_and_values(actual, expected, atol)


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    method=st.sampled_from(["mean", "median", "min", "max", "most_frequent"]),
)
def test_fill_with_a_statistic_equals_polars_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame, method: str
) -> None:
    numeric = method in ("mean", "median")
    column = data.draw(st.sampled_from(["i", "f"] if numeric else ["i", "f", "s"]))
    op = FillMissing(FillMissingConfig(columns=[column], method=method))  # type: ignore[arg-type]
    actual = fill_distributed(op, data.draw(split(df)))
    expected = fill_reference(df, column, method)
    if numeric:  # a float sum's rounding depends on the order: tolerance at the data's scale
        scale = float(df.get_column(column).cast(pl.Float64).fill_nan(None).abs().sum())
        assert_same(actual, expected, atol=1e-12 * scale)
    else:
        assert_same(actual, expected)


def test_fill_mean_turns_an_integer_column_into_float64() -> None:
    op = FillMissing(FillMissingConfig(columns=["amount"], method="mean"))
    out = op.apply(people())
    assert out.schema["amount"] == pl.Float64
    assert out.get_column("amount").to_list() == [10.0, 3.6, 3.0, -2.0, 7.0, 0.0]


def test_fill_min_keeps_the_integer_dtype() -> None:
    out = FillMissing(FillMissingConfig(columns=["amount"], method="min")).apply(people())
    assert out.schema["amount"] == pl.Int64
    assert out.get_column("amount").to_list()[1] == -2


def test_fill_most_frequent_breaks_ties_by_the_smallest_value() -> None:
    df = pl.DataFrame({"s": ["東京", "Zürich", "東京", "Zürich", None, "a"]})
    out = FillMissing(FillMissingConfig(columns=["s"], method="most_frequent")).apply(df)
    assert out.get_column("s").to_list()[4] == "Zürich"


def test_fill_median_interpolates_between_the_middle_values() -> None:
    df = pl.DataFrame({"v": [1, 2, None, 10, 20]})
    parts = [df.slice(0, 2), df.slice(2, 3)]
    out = fill_distributed(FillMissing(FillMissingConfig(columns=["v"], method="median")), parts)
    assert out.get_column("v").to_list() == [1.0, 2.0, 6.0, 10.0, 20.0]


def test_fill_statistic_of_a_column_without_values_leaves_nulls() -> None:
    df = pl.DataFrame({"v": pl.Series([None, None], dtype=pl.Float64)})
    out = FillMissing(FillMissingConfig(columns=["v"], method="mean")).apply(df)
    assert out.get_column("v").to_list() == [None, None]


def test_needs_stats_only_for_statistics() -> None:
    assert not FillMissing(FillMissingConfig(columns=["a"], value=0)).needs_stats
    assert FillMissing(FillMissingConfig(columns=["a"], method="median")).needs_stats


def test_fill_mean_of_a_string_column_raises_input_error() -> None:
    op = FillMissing(FillMissingConfig(columns=["city"], method="mean"))
    with pytest.raises(InputError, match="needs a numeric column; column 'city' is String"):
        op.partial_stats(people())


def test_fill_unknown_column_raises_input_error() -> None:
    op = FillMissing(FillMissingConfig(columns=["amont"], value=0))
    with pytest.raises(InputError, match="column 'amont' not found") as err:
        op.apply(people())
    assert err.value.details["column"] == "amont"


# ---------------------------------------------------------------------------------------------
# fill_missing: constants


def test_constant_fill_keeps_the_integer_dtype() -> None:
    out = FillMissing(FillMissingConfig(columns=["amount"], value=0)).apply(people())
    assert out.schema["amount"] == pl.Int64
    assert out.get_column("amount").to_list() == [10, 0, 3, -2, 7, 0]


def test_constant_fill_of_strings() -> None:
    out = FillMissing(FillMissingConfig(columns=["city"], value="unknown")).apply(people())
    assert out.get_column("city").to_list()[2] == "unknown"


def test_constant_fill_leaves_nan_alone() -> None:
    out = FillMissing(FillMissingConfig(columns=["price"], value=0.0)).apply(people())
    assert out.get_column("price").to_list()[1:3] == [pytest.approx(float("nan"), nan_ok=True), 0.0]


def test_constant_fraction_into_an_integer_column_makes_it_float64() -> None:
    out = FillMissing(FillMissingConfig(columns=["amount"], value=0.5)).apply(people())
    assert out.schema["amount"] == pl.Float64
    assert out.get_column("amount").to_list()[1] == 0.5


@pytest.mark.parametrize(
    ("column", "value", "dtype"),
    [("amount", "n/a", pl.Int64), ("small", 300, pl.UInt8), ("flag", 7, pl.Boolean)],
)
def test_constant_that_cannot_be_cast_raises_input_error(
    column: str, value: object, dtype: pl.DataType
) -> None:
    df = pl.DataFrame({column: pl.Series([None], dtype=dtype)})
    op = FillMissing(FillMissingConfig(columns=[column], value=value))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=f"cannot fill column '{column}' .* with value") as err:
        op.apply(df)
    assert err.value.details["column"] == column
    assert err.value.details["value"] == value


def test_constant_fill_without_value_is_rejected() -> None:
    with pytest.raises(ValidationError, match="method 'constant' needs a value"):
        FillMissingConfig(columns=["amount"])


def test_value_with_a_statistic_method_is_rejected() -> None:
    with pytest.raises(ValidationError, match="value is only used with method 'constant'"):
        FillMissingConfig(columns=["amount"], method="mean", value=0)


def test_fill_needs_at_least_one_column() -> None:
    with pytest.raises(ValidationError, match="columns"):
        FillMissingConfig(columns=[], value=0)


# ---------------------------------------------------------------------------------------------
# filter_rows

CONDITIONS = [
    "amount >= 3",
    "amount <= 3 AND city <> 'Test'",
    "amount != 10 OR city IS NULL",
    "NOT amount > 0",
    "city IN ('Zürich', '東京')",
    "city LIKE 'Z%'",
    "city LIKE '%ü%'",
    "city IS NULL",
    "city IS NOT NULL AND price < 2",
    "(amount > 0 OR price > 2) AND NOT city = 'Basel'",
    "city = ''",
]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_filter_keeps_the_rows_duckdb_where_keeps(condition: str) -> None:
    df = pl.DataFrame(
        {
            "city": ["Zürich", "東京", None, "Basel", "Test", "züri", ""],
            "amount": [10, None, 3, -2, 7, 0, 5],
            "price": [1.5, 4.0, None, 2.0, 3.0, 0.25, 1.0],
        }
    ).with_row_index("row")
    con = duckdb.connect()
    con.register("t", df.to_arrow())
    expected = [
        r[0] for r in con.sql(f"SELECT row FROM t WHERE {condition} ORDER BY row").fetchall()
    ]
    con.close()
    kept = FilterRows(FilterRowsConfig(condition=condition)).apply(df)
    assert kept.get_column("row").to_list() == expected


def test_filter_drops_rows_where_the_condition_is_null() -> None:
    kept = FilterRows(FilterRowsConfig(condition="amount > 0")).apply(people())
    assert kept.get_column("city").to_list() == ["Zürich", None, "Test"]


def test_bad_sql_condition_fails_config_validation() -> None:
    with pytest.raises(ValidationError, match="invalid SQL condition 'amount >'"):
        FilterRowsConfig(condition="amount >")


@pytest.mark.parametrize(
    "condition", ["__import__('os').system('true')", "amount > 0; DROP TABLE t", "SELECT 1"]
)
def test_python_or_statements_are_not_accepted_as_conditions(condition: str) -> None:
    with pytest.raises(ValidationError, match="invalid SQL condition"):
        FilterRowsConfig(condition=condition)


def test_filter_unknown_column_raises_input_error_naming_it() -> None:
    op = FilterRows(FilterRowsConfig(condition="amount > 0 AND regoin = 'x'"))
    with pytest.raises(InputError, match="column 'regoin' not found") as err:
        op.apply(people())
    assert err.value.details["column"] == "regoin"


def test_non_boolean_condition_raises_input_error() -> None:
    op = FilterRows(FilterRowsConfig(condition="amount + 1"))
    with pytest.raises(InputError, match="cannot filter rows with condition 'amount \\+ 1'"):
        op.apply(people())


def test_filter_with_quoted_unicode_column_name() -> None:
    df = pl.DataFrame({"東京": [1, 2, 3]})
    kept = FilterRows(FilterRowsConfig(condition='"東京" >= 2')).apply(df)
    assert kept.get_column("東京").to_list() == [2, 3]


# ---------------------------------------------------------------------------------------------
# select_columns


def test_select_keeps_columns_in_the_listed_order() -> None:
    out = SelectColumns(SelectColumnsConfig(columns=["price", "city"])).apply(people())
    assert out.columns == ["price", "city"]


def test_select_with_include_false_drops_the_columns() -> None:
    out = SelectColumns(SelectColumnsConfig(columns=["price"], include=False)).apply(people())
    assert out.columns == ["city", "amount"]


@pytest.mark.parametrize("include", [True, False])
def test_select_unknown_column_raises_input_error(include: bool) -> None:
    op = SelectColumns(SelectColumnsConfig(columns=["city", "prise"], include=include))
    with pytest.raises(InputError, match="column 'prise' not found.*did you mean 'price'"):
        op.apply(people())


def test_select_repeated_column_is_rejected() -> None:
    with pytest.raises(ValidationError, match="columns lists 'city' more than once"):
        SelectColumnsConfig(columns=["city", "city"])


# ---------------------------------------------------------------------------------------------
# configs as they come from a job spec


@pytest.mark.parametrize(
    "spec",
    [
        {"op": "drop_missing", "columns": ["product_category", "amount"]},
        {"op": "fill_missing", "columns": ["amount"], "method": "median"},
        {"op": "filter_rows", "condition": "amount > 0 AND region <> 'Test'"},
        {"op": "select_columns", "columns": ["amount"], "include": False},
    ],
)
def test_configs_validate_job_spec_entries(spec: dict[str, object]) -> None:
    model = {
        "drop_missing": DropMissing,
        "fill_missing": FillMissing,
        "filter_rows": FilterRows,
        "select_columns": SelectColumns,
    }[str(spec["op"])]
    assert model.name == spec["op"]
    assert model.Config.model_validate(spec).model_dump(include=set(spec)) == spec


def test_unknown_config_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="colums"):
        DropMissingConfig.model_validate({"op": "drop_missing", "colums": ["a"]})
