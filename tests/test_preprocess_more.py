"""Specification of the feature and reshaping operations (raysight.analyses.preprocess).

Every operation is checked twice against a reference run directly on the concatenated table
(Polars, DuckDB, numpy, scikit-learn or the Python standard library): once with ``apply`` on
the whole table, and once through the distributed protocol (``partial_stats`` per partition,
``merge_stats``, ``apply`` per partition) over random partitionings of 1-5 partitions, some
empty. ``split`` shuffles the rows, so the reference is the partitions concatenated in order.
Floating results agree to 1e-9 relative, or within rounding at the data's magnitude.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from compare import assert_same_schema_and_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler
from strategies import frames, split

from raysight.analyses.preprocess.binning import Binning, BinningConfig
from raysight.analyses.preprocess.cast import Cast, CastConfig
from raysight.analyses.preprocess.dates import DateExtraction, DateExtractionConfig
from raysight.analyses.preprocess.derive import Derive, DeriveConfig
from raysight.analyses.preprocess.encoding import Encode, EncodeConfig
from raysight.analyses.preprocess.missing import FillMissing, FillMissingConfig
from raysight.analyses.preprocess.rows import Deduplicate, DeduplicateConfig, Sample, SampleConfig
from raysight.analyses.preprocess.scaling import Normalize, NormalizeConfig
from raysight.analyses.preprocess.shape import Rename, RenameConfig
from raysight.analyses.preprocess.text import TextTokenization, TextTokenizationConfig
from raysight.errors import InputError
from raysight.plugins import Preprocessor

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNICODE = ["Zürich", "東京", "", "x", "Basel"]
SCHEMA = {"i": pl.Int64, "f": pl.Float64, "s": pl.String, "k": pl.Int64}
COLUMNS = {
    "i": st.one_of(st.none(), st.integers(-3, 3), st.integers(-(10**12), 10**12)),
    "f": st.one_of(
        st.none(), st.just(float("nan")), st.floats(-1e6, 1e6, allow_nan=False), st.just(0.5)
    ),
    "s": st.one_of(st.none(), st.sampled_from(UNICODE), st.text(max_size=3)),
    "k": st.one_of(st.none(), st.integers(0, 3)),  # few distinct values: repeated keys
}


def tables(max_rows: int = 25, nan: bool = True) -> st.SearchStrategy[pl.DataFrame]:
    strategy = frames(COLUMNS, SCHEMA, max_rows)
    return strategy if nan else strategy.map(lambda df: df.with_columns(pl.col("f").fill_nan(None)))


def distributed(op: Preprocessor[Any], parts: list[pl.DataFrame]) -> pl.DataFrame:
    """What the engine computes: statistics per partition, merged once, applied per partition."""
    stats = op.merge_stats([op.partial_stats(p) for p in parts]) if op.needs_stats else None
    return pl.concat([op.apply(p, stats, partition=i) for i, p in enumerate(parts)])


def assert_same(actual: pl.DataFrame, expected: pl.DataFrame, atol: float = 0.0) -> None:
    """Same columns, dtypes and nulls; floats to 1e-9 relative (NaN equal to NaN)."""
    assert_same_schema_and_values(actual, expected, atol)


def people() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "city": ["Zürich", "東京", None, "Basel", "東京"],
            "amount": [10, None, 3, -2, 3],
            "price": [1.5, float("nan"), None, 2.0, 3.0],
        }
    )


# ---------------------------------------------------------------------------------------------
# normalize


def normalize_reference(df: pl.DataFrame, column: str, method: str) -> pl.DataFrame:
    """Polars statistics of the whole column, with the documented constant and zero rules."""
    x = pl.col(column).cast(pl.Float64)
    low, high = x.min(), x.max()
    centre, scale = {
        "min_max": (low, high - low),
        "z_score": (x.mean(), x.std(ddof=0)),
        "robust": (x.median(), x.quantile(0.75, "linear") - x.quantile(0.25, "linear")),
    }[method]
    constant = low == high
    centre = pl.when(constant).then(low).otherwise(centre)
    scale = pl.when(constant | (scale == 0)).then(1.0).otherwise(scale)
    return df.with_columns(((x - centre) / scale).alias(column))


def normalize_tolerance(df: pl.DataFrame, column: str, method: str) -> float:
    """Rounding of the centre at the data's magnitude, magnified by 1 / scale."""
    x = df.get_column(column).cast(pl.Float64).fill_nan(None).drop_nulls()
    if x.len() == 0 or x.min() == x.max():
        return 0.0
    scale = {
        "min_max": x.max() - x.min(),  # type: ignore[operator]
        "z_score": x.std(ddof=0),
        "robust": x.quantile(0.75, "linear") - x.quantile(0.25, "linear"),  # type: ignore[operator]
    }[method]
    return 1e-9 * float(x.abs().max()) / (float(scale) or 1.0)  # type: ignore[arg-type]


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    method=st.sampled_from(["min_max", "z_score", "robust"]),
    column=st.sampled_from(["i", "f"]),
)
def test_normalize_across_partitions_equals_polars_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame, method: str, column: str
) -> None:
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    op = Normalize(NormalizeConfig(columns=[column], method=method))  # type: ignore[arg-type]
    atol = normalize_tolerance(whole, column, method)
    assert_same(distributed(op, parts), normalize_reference(whole, column, method), atol)


@PROPERTY
@given(df=tables(), method=st.sampled_from(["min_max", "z_score", "robust"]))
def test_normalize_of_a_whole_table_equals_polars(df: pl.DataFrame, method: str) -> None:
    op = Normalize(NormalizeConfig(columns=["i", "f"], method=method))  # type: ignore[arg-type]
    expected = normalize_reference(normalize_reference(df, "i", method), "f", method)
    atol = max(normalize_tolerance(df, c, method) for c in ("i", "f"))
    assert_same(op.apply(df), expected, atol)


@pytest.mark.parametrize(
    ("method", "scaler"),
    [("z_score", StandardScaler()), ("min_max", MinMaxScaler()), ("robust", RobustScaler())],
)
def test_normalize_agrees_with_scikit_learn_on_a_column_without_nulls(
    method: str, scaler: Any
) -> None:
    values = np.random.default_rng(7).normal(50.0, 12.0, size=101)
    df = pl.DataFrame({"x": values})
    parts = [df.slice(0, 30), df.slice(30, 0), df.slice(30, 71)]
    op = Normalize(NormalizeConfig(columns=["x"], method=method))  # type: ignore[arg-type]
    expected = scaler.fit_transform(values.reshape(-1, 1)).ravel()
    np.testing.assert_allclose(distributed(op, parts).get_column("x").to_numpy(), expected)


def test_z_score_uses_the_population_standard_deviation() -> None:
    df = pl.DataFrame({"x": [1.0, 3.0]})  # mean 2, population std 1 (sample std would be 1.41)
    out = Normalize(NormalizeConfig(columns=["x"], method="z_score")).apply(df)
    assert out.get_column("x").to_list() == [-1.0, 1.0]


@pytest.mark.parametrize("method", ["min_max", "z_score", "robust"])
def test_normalize_maps_a_constant_column_to_zero_and_keeps_nulls(method: str) -> None:
    df = pl.DataFrame({"x": [0.1, None, 0.1, 0.1]})
    op = Normalize(NormalizeConfig(columns=["x"], method=method))  # type: ignore[arg-type]
    assert distributed(op, [df.slice(0, 1), df.slice(1, 3)]).get_column("x").to_list() == [
        0.0,
        None,
        0.0,
        0.0,
    ]


def test_robust_with_zero_interquartile_range_subtracts_the_median() -> None:
    df = pl.DataFrame({"x": [1, 1, 1, 1, 5]})
    out = Normalize(NormalizeConfig(columns=["x"], method="robust")).apply(df)
    assert out.get_column("x").to_list() == [0.0, 0.0, 0.0, 0.0, 4.0]


def test_normalize_turns_an_integer_column_into_float64() -> None:
    out = Normalize(NormalizeConfig(columns=["amount"])).apply(people())
    assert out.schema["amount"] == pl.Float64
    assert out.get_column("amount").to_list() == pytest.approx([1.0, None, 5 / 12, 0.0, 5 / 12])


def test_normalize_min_max_skips_nan_for_the_range() -> None:
    out = Normalize(NormalizeConfig(columns=["price"])).apply(people())
    assert out.get_column("price").to_list()[2:] == [None, 1 / 3, 1.0]
    assert np.isnan(out.get_column("price")[1])


def test_normalize_of_a_column_without_values_stays_null() -> None:
    df = pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Int64)})
    out = Normalize(NormalizeConfig(columns=["x"], method="z_score")).apply(df)
    assert out.schema["x"] == pl.Float64
    assert out.get_column("x").to_list() == [None, None]


def test_normalize_of_an_empty_table_is_empty() -> None:
    df = pl.DataFrame({"x": pl.Series([], dtype=pl.Int64)})
    out = Normalize(NormalizeConfig(columns=["x"], method="robust")).apply(df)
    assert out.schema["x"] == pl.Float64 and out.height == 0


def test_normalize_of_a_string_column_raises_input_error() -> None:
    op = Normalize(NormalizeConfig(columns=["city"]))
    with pytest.raises(InputError, match="normalize needs a numeric column; column 'city' is"):
        op.partial_stats(people())


def test_normalize_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'amont' not found"):
        Normalize(NormalizeConfig(columns=["amont"])).apply(people())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"columns": []}, "at least 1 item"),
        ({"columns": ["a", "a"]}, "columns lists 'a' more than once"),
        ({"columns": ["a"], "method": "l2"}, "min_max"),
    ],
)
def test_normalize_config_rejects(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NormalizeConfig.model_validate(spec)


# ---------------------------------------------------------------------------------------------
# encode


@PROPERTY
@given(data=st.data(), df=tables(), column=st.sampled_from(["s", "k", "i"]))
def test_one_hot_without_the_source_equals_polars_to_dummies(
    data: st.DataObject, df: pl.DataFrame, column: str
) -> None:
    parts = data.draw(split(df))
    expected = pl.concat(parts).to_dummies(column, drop_nulls=True)
    op = Encode(EncodeConfig(column=column, drop_original=True))
    actual = distributed(op, parts)
    assert sorted(actual.columns) == sorted(expected.columns)
    assert_same(actual.select(expected.columns), expected)


@PROPERTY
@given(data=st.data(), df=tables(), column=st.sampled_from(["s", "k"]))
def test_one_hot_keeps_the_source_column_before_its_indicators(
    data: st.DataObject, df: pl.DataFrame, column: str
) -> None:
    parts = data.draw(split(df))
    actual = distributed(Encode(EncodeConfig(column=column)), parts)
    indicators = Encode(EncodeConfig(column=column, drop_original=True)).apply(pl.concat(parts))
    position = df.columns.index(column)
    assert actual.columns[position] == column
    assert actual.drop(column).equals(indicators)
    assert actual.get_column(column).equals(pl.concat(parts).get_column(column))


@PROPERTY
@given(data=st.data(), df=tables(), column=st.sampled_from(["s", "k", "i"]))
def test_label_encoding_equals_the_dense_rank_of_the_sorted_values(
    data: st.DataObject, df: pl.DataFrame, column: str
) -> None:
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    expected = whole.with_columns(pl.col(column).rank("dense").cast(pl.Int64) - 1)
    assert_same(distributed(Encode(EncodeConfig(column=column, method="label")), parts), expected)
    assert_same(Encode(EncodeConfig(column=column, method="label")).apply(whole), expected)


def test_one_hot_gives_every_partition_the_columns_of_all_values() -> None:
    df = pl.DataFrame({"city": ["東京", "Zürich", None, "Basel"]})
    op = Encode(EncodeConfig(column="city"))
    stats = op.merge_stats([op.partial_stats(df.slice(0, 1)), op.partial_stats(df.slice(1, 3))])
    first = op.apply(df.slice(0, 1), stats, partition=0)
    assert first.columns == ["city", "city_Basel", "city_Zürich", "city_東京"]
    assert first.row(0) == ("東京", 0, 0, 1)


def test_one_hot_columns_follow_the_sorted_values() -> None:
    df = pl.DataFrame({"n": [10, -3, 2, 10]})
    out = Encode(EncodeConfig(column="n", drop_original=True)).apply(df)
    assert out.columns == ["n_-3", "n_2", "n_10"]


def test_one_hot_row_with_a_null_is_zero_everywhere() -> None:
    out = Encode(EncodeConfig(column="city", drop_original=True)).apply(people())
    assert out.row(2)[: out.width - 2] == (0, 0, 0)


def test_one_hot_of_a_categorical_column_uses_its_strings() -> None:
    df = pl.DataFrame({"c": pl.Series(["b", "a", "b"], dtype=pl.Categorical)})
    out = Encode(EncodeConfig(column="c", drop_original=True)).apply(df)
    assert out.to_dict(as_series=False) == {"c_a": [0, 1, 0], "c_b": [1, 0, 1]}


def test_one_hot_of_an_empty_table_adds_no_columns() -> None:
    df = pl.DataFrame({"c": pl.Series([], dtype=pl.String), "v": pl.Series([], dtype=pl.Int64)})
    assert Encode(EncodeConfig(column="c")).apply(df).columns == ["c", "v"]


def test_one_hot_indicator_that_exists_raises_input_error() -> None:
    df = pl.DataFrame({"c": ["a", "b"], "c_a": [1, 2]})
    with pytest.raises(InputError, match="would add column 'c_a', which already exists"):
        Encode(EncodeConfig(column="c")).apply(df)


def test_encode_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'cty' not found.*did you mean 'city'"):
        Encode(EncodeConfig(column="cty")).partial_stats(people())


def test_drop_original_with_label_encoding_is_rejected() -> None:
    with pytest.raises(ValidationError, match="drop_original is only used with method 'one_hot'"):
        EncodeConfig(column="c", method="label", drop_original=True)


# ---------------------------------------------------------------------------------------------
# derive

DERIVED = [
    "i + 1",
    "f * 2.5 - i",
    "i < 0",
    "f >= 0.5 AND i <> 3",
    "CASE WHEN i > 0 THEN 'pos' WHEN i IS NULL THEN 'none' ELSE 'neg' END",
    "upper(s)",
    "s || '!'",
    "coalesce(k, -1) * 10",
]


@PROPERTY
@given(data=st.data(), df=tables(nan=False), sql=st.sampled_from(DERIVED))
def test_derive_equals_duckdb_select(data: st.DataObject, df: pl.DataFrame, sql: str) -> None:
    parts = data.draw(split(df.with_columns(pl.col("i").clip(-(10**6), 10**6))))
    whole = pl.concat(parts)
    con = duckdb.connect()
    con.register("t", whole.to_arrow())
    expected = pl.from_arrow(con.sql(f"SELECT {sql} AS new FROM t").to_arrow_table())
    con.close()
    assert isinstance(expected, pl.DataFrame)
    actual = distributed(Derive(DeriveConfig(columns={"new": sql})), parts).get_column("new")
    reference = expected.get_column("new")
    if reference.dtype.is_numeric():
        reference = reference.cast(actual.dtype)
    if sql == "upper(s)":  # Unicode's full case mapping, as Python's: 'ß' -> 'SS' (DuckDB: 'ẞ')
        reference = pl.Series([None if v is None else v.upper() for v in whole["s"]])
    assert actual.to_list() == reference.to_list()


def test_derive_adds_the_new_columns() -> None:
    df = pl.DataFrame({"price": [2.0, 1.5], "quantity": [3, 4], "amount": [6.0, -1.0]})
    op = Derive(DeriveConfig(columns={"revenue": "price * quantity", "is_refund": "amount < 0"}))
    out = op.apply(df)
    assert out.select("revenue", "is_refund").rows() == [(6.0, False), (6.0, True)]


def test_derive_later_expressions_see_earlier_new_columns() -> None:
    op = Derive(DeriveConfig(columns={"double": "amount * 2", "more": "double + 1"}))
    assert op.apply(people()).get_column("more").to_list() == [21, None, 7, -3, 7]


def test_derive_with_an_existing_name_replaces_the_column() -> None:
    out = Derive(DeriveConfig(columns={"amount": "amount * -1"})).apply(people())
    assert out.columns == people().columns
    assert out.get_column("amount").to_list() == [-10, None, -3, 2, -3]


@pytest.mark.parametrize(
    "sql",
    ["sum(price)", "price - median(price)", "count(*)", "row_number() OVER ()",
     "sum(x) OVER (PARTITION BY y)", "x - lag(x) OVER (ORDER BY y)", "rank() OVER (ORDER BY x)",
     "unnest(l)", "array_agg(x)"],
)
def test_derive_rejects_expressions_that_combine_rows(sql: str) -> None:
    with pytest.raises(ValidationError, match="combines rows"):
        DeriveConfig(columns={"x": sql})


def test_derive_accepts_row_local_functions_named_like_row_operations() -> None:
    # substr is a string slice and reverse a string reverse: per row, unlike a column slice
    op = Derive(DeriveConfig(columns={"head": "substr(city, 1, 2)", "back": "reverse(city)"}))
    out = op.apply(people())
    assert out.select("head", "back").row(0) == ("Zü", "hcirüZ")


@pytest.mark.parametrize("sql", ["__import__('os').system('true')", "price >", "SELECT 1"])
def test_derive_rejects_what_is_not_an_sql_expression(sql: str) -> None:
    with pytest.raises(ValidationError, match="invalid SQL expression"):
        DeriveConfig(columns={"x": sql})


def test_derive_needs_a_column() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        DeriveConfig(columns={})


def test_derive_unknown_column_raises_input_error_naming_it() -> None:
    op = Derive(DeriveConfig(columns={"revenue": "prise * amount"}))
    with pytest.raises(InputError, match="column 'prise' not found") as err:
        op.apply(people())
    assert err.value.details["column"] == "prise"


def test_derive_with_mismatched_types_raises_input_error() -> None:
    op = Derive(DeriveConfig(columns={"x": "city * 2"}))
    with pytest.raises(InputError, match="cannot derive column 'x' from 'city \\* 2'"):
        op.apply(people())


# ---------------------------------------------------------------------------------------------
# cast

NUMERIC_TARGETS = {"int64": pl.Int64, "int32": pl.Int32, "float64": pl.Float64,
                   "float32": pl.Float32, "string": pl.String, "bool": pl.Boolean}


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    column=st.sampled_from(["i", "f", "k"]),
    target=st.sampled_from(list(NUMERIC_TARGETS)),
)
def test_cast_of_numbers_without_strict_equals_polars_cast(
    data: st.DataObject, df: pl.DataFrame, column: str, target: str
) -> None:
    parts = data.draw(split(df))
    op = Cast(CastConfig(columns={column: target}, strict=False))  # type: ignore[dict-item]
    expected = pl.concat(parts).with_columns(
        pl.col(column).cast(NUMERIC_TARGETS[target], strict=False)
    )
    assert_same(distributed(op, parts), expected)


@PROPERTY
@given(df=tables(), target=st.sampled_from(["int32", "int64"]))
def test_strict_cast_fails_exactly_when_polars_loses_a_value(df: pl.DataFrame, target: str) -> None:
    expected = df.get_column("f").cast(NUMERIC_TARGETS[target], strict=False)
    lost = (df.get_column("f").is_not_null() & expected.is_null()).any()
    op = Cast(CastConfig(columns={"f": target}))  # type: ignore[dict-item]
    if lost:
        with pytest.raises(InputError, match="column 'f': value .* cannot be cast to int"):
            op.apply(df)
    else:
        assert op.apply(df).get_column("f").to_list() == expected.to_list()


@PROPERTY
@given(
    data=st.data(),
    values=st.lists(
        st.one_of(st.none(), st.integers(-(2**40), 2**40).map(str), st.sampled_from(UNICODE))
    ),
)
def test_cast_of_strings_to_int64_parses_like_python_int(
    data: st.DataObject, values: list[str | None]
) -> None:
    df = pl.DataFrame({"s": values}, schema={"s": pl.String})
    parts = data.draw(split(df))
    op = Cast(CastConfig(columns={"s": "int64"}, strict=False))
    expected = [
        int(v) if v is not None and v.lstrip("-").isdigit() else None
        for v in pl.concat(parts).get_column("s")
    ]
    assert distributed(op, parts).get_column("s").to_list() == expected


ISO_DATETIMES = st.tuples(
    st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1)),
    st.sampled_from(["T", " "]),
    st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds", "date"]),
    st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                     dt.timezone(-dt.timedelta(hours=8))]),
).map(
    lambda t: t[0].date().isoformat()
    if t[2] == "date"
    else t[0].replace(tzinfo=t[3]).isoformat(sep=t[1], timespec=t[2])
)


def python_iso(text: str | None) -> dt.datetime | None:
    """The reference parse: Python's fromisoformat, offsets converted to naive UTC."""
    if text is None:
        return None
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


@PROPERTY
@given(data=st.data(), values=st.lists(st.one_of(st.none(), ISO_DATETIMES), max_size=20))
def test_cast_of_iso_strings_to_datetime_equals_python_fromisoformat(
    data: st.DataObject, values: list[str | None]
) -> None:
    df = pl.DataFrame({"t": values}, schema={"t": pl.String})
    parts = data.draw(split(df))
    out = distributed(Cast(CastConfig(columns={"t": "datetime"})), parts)
    assert out.schema["t"] == pl.Datetime("us")
    assert out.get_column("t").to_list() == [
        python_iso(v) for v in pl.concat(parts).get_column("t")
    ]


def test_cast_z_suffix_is_utc() -> None:
    df = pl.DataFrame({"t": ["2021-01-04T10:11:12Z", "2021-01-04T10:11:12.25+02:00"]})
    out = Cast(CastConfig(columns={"t": "datetime"})).apply(df)
    assert out.get_column("t").to_list() == [
        dt.datetime(2021, 1, 4, 10, 11, 12),
        dt.datetime(2021, 1, 4, 8, 11, 12, 250000),
    ]


def test_cast_of_iso_date_strings_to_date() -> None:
    df = pl.DataFrame({"d": ["2021-01-04", None, "2024-02-29"]})
    out = Cast(CastConfig(columns={"d": "date"})).apply(df)
    assert out.get_column("d").to_list() == [dt.date(2021, 1, 4), None, dt.date(2024, 2, 29)]


def test_cast_of_strings_to_bool_accepts_true_false_one_zero_in_any_case() -> None:
    df = pl.DataFrame({"b": ["true", "FALSE", "1", "0", None, "True"]})
    out = Cast(CastConfig(columns={"b": "bool"})).apply(df)
    assert out.get_column("b").to_list() == [True, False, True, False, None, True]


@pytest.mark.parametrize(
    ("value", "target"),
    [("yes", "bool"), ("2021-02-30", "date"), ("04/01/2021", "datetime"), ("3.5", "int64"),
     ("東京", "float64"), ("2021-01-04T25:00", "datetime")],
)
def test_strict_cast_of_an_unconvertible_string_raises_input_error_naming_it(
    value: str, target: str
) -> None:
    df = pl.DataFrame({"v": [None, value]}, schema={"v": pl.String})
    op = Cast(CastConfig(columns={"v": target}))  # type: ignore[dict-item]
    with pytest.raises(InputError, match=f"column 'v': value '{re.escape(value)}' cannot be cast"):
        op.apply(df)


def test_cast_without_strict_turns_unconvertible_values_into_null() -> None:
    df = pl.DataFrame({"v": ["1", "x", None, "-4"]})
    out = Cast(CastConfig(columns={"v": "int32"}, strict=False)).apply(df)
    assert out.schema["v"] == pl.Int32
    assert out.get_column("v").to_list() == [1, None, None, -4]


def test_cast_of_an_integer_that_does_not_fit_int32_raises_input_error() -> None:
    df = pl.DataFrame({"n": [1, 2**40]})
    with pytest.raises(InputError, match=f"column 'n': value {2**40} cannot be cast to int32"):
        Cast(CastConfig(columns={"n": "int32"})).apply(df)


def test_cast_of_a_date_to_datetime_is_midnight() -> None:
    df = pl.DataFrame({"d": [dt.date(2021, 1, 4)]})
    out = Cast(CastConfig(columns={"d": "datetime"})).apply(df)
    assert out.get_column("d").to_list() == [dt.datetime(2021, 1, 4)]


def test_cast_of_an_unsupported_pair_raises_input_error() -> None:
    df = pl.DataFrame({"l": [[1, 2]]})
    with pytest.raises(InputError, match="cannot cast column 'l' \\(List\\(Int64\\)\\) to int64"):
        Cast(CastConfig(columns={"l": "int64"})).apply(df)


def test_cast_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'prise' not found"):
        Cast(CastConfig(columns={"prise": "string"})).apply(people())


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"columns": {"a": "integer"}}, "'int64'"), ({"columns": {}}, "at least 1 item"),
     ({"columns": {"a": "string"}, "strict": "no"}, "strict")],
)
def test_cast_config_rejects(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CastConfig.model_validate(spec)


# ---------------------------------------------------------------------------------------------
# rename


@PROPERTY
@given(data=st.data(), df=tables())
def test_rename_equals_polars_rename(data: st.DataObject, df: pl.DataFrame) -> None:
    parts = data.draw(split(df))
    mapping = {"i": "東京", "s": "k", "k": "s"}
    assert distributed(Rename(RenameConfig(columns=mapping)), parts).equals(
        pl.concat(parts).rename(mapping)
    )


def test_rename_keeps_the_column_order() -> None:
    out = Rename(RenameConfig(columns={"amount": "Betrag"})).apply(people())
    assert out.columns == ["city", "Betrag", "price"]


def test_rename_onto_an_existing_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="two columns the name 'price'"):
        Rename(RenameConfig(columns={"amount": "price"})).apply(people())


def test_rename_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'amout' not found"):
        Rename(RenameConfig(columns={"amout": "x"})).apply(people())


@pytest.mark.parametrize(
    ("columns", "message"),
    [({"a": "x", "b": "x"}, "the new names lists 'x' more than once"),
     ({"a": ""}, "must not be empty"), ({}, "at least 1 item")],
)
def test_rename_config_rejects(columns: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RenameConfig(columns=columns)


# ---------------------------------------------------------------------------------------------
# deduplicate

KEY_SETS = [[], ["k"], ["s"], ["f"], ["k", "s"], ["f", "k"]]


@PROPERTY
@given(
    data=st.data(),
    df=frames(
        {
            "k": st.one_of(st.none(), st.integers(0, 2)),
            "s": st.one_of(st.none(), st.sampled_from(["Zürich", "東京", ""])),
            "f": st.sampled_from([None, 0.0, -0.0, float("nan"), 1.5]),
        },
        {"k": pl.Int64, "s": pl.String, "f": pl.Float64},
    ),
    columns=st.sampled_from(KEY_SETS),
    keep=st.sampled_from(["first", "last"]),
)
def test_deduplicate_across_partitions_equals_polars_unique(
    data: st.DataObject, df: pl.DataFrame, columns: list[str], keep: str
) -> None:
    if columns:  # a row number tells which of the rows with one key was kept
        df = df.with_row_index("row")
    parts = data.draw(split(df))
    expected = pl.concat(parts).unique(
        subset=columns or None, keep=keep, maintain_order=True  # type: ignore[arg-type]
    )
    op = Deduplicate(DeduplicateConfig(columns=columns, keep=keep))  # type: ignore[arg-type]
    assert distributed(op, parts).equals(expected)


@PROPERTY
@given(df=tables(), keep=st.sampled_from(["first", "last"]))
def test_deduplicate_on_every_column_equals_polars_unique(df: pl.DataFrame, keep: str) -> None:
    op = Deduplicate(DeduplicateConfig(keep=keep))  # type: ignore[arg-type]
    assert op.apply(df).equals(df.unique(keep=keep, maintain_order=True))  # type: ignore[arg-type]


def test_deduplicate_keep_last_keeps_the_row_from_the_later_partition() -> None:
    parts = [pl.DataFrame({"k": [1, 2], "v": ["a", "b"]}), pl.DataFrame({"k": [1], "v": ["c"]})]
    op = Deduplicate(DeduplicateConfig(columns=["k"], keep="last"))
    assert distributed(op, parts).rows() == [(2, "b"), (1, "c")]


def test_deduplicate_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'cty' not found"):
        Deduplicate(DeduplicateConfig(columns=["cty"])).partial_stats(people())


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"columns": ["a", "a"]}, "columns lists 'a' more than once"), ({"keep": "any"}, "first")],
)
def test_deduplicate_config_rejects(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeduplicateConfig.model_validate(spec)


# ---------------------------------------------------------------------------------------------
# sample


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**32),
)
def test_sample_n_gives_min_n_rows_distinct_rows_in_order(
    data: st.DataObject, df: pl.DataFrame, n: int, seed: int
) -> None:
    parts = data.draw(split(df.with_row_index("row")))
    out = distributed(Sample(SampleConfig(n=n, seed=seed)), parts)
    positions = pl.concat(parts).with_row_index("position").join(out, on="row", how="semi")
    assert out.height == min(n, df.height)
    assert out.equals(positions.drop("position"))  # original rows, in partition order


@PROPERTY
@given(data=st.data(), df=tables(), n=st.integers(0, 40), seed=st.integers(0, 1000))
def test_sample_with_replacement_gives_n_rows_of_a_non_empty_table(
    data: st.DataObject, df: pl.DataFrame, n: int, seed: int
) -> None:
    parts = data.draw(split(df.with_row_index("row")))
    out = distributed(Sample(SampleConfig(n=n, seed=seed, with_replacement=True)), parts)
    positions = pl.concat(parts).with_row_index("position").join(out, on="row").get_column(
        "position"
    )
    assert out.height == (n if df.height else 0)
    assert positions.is_sorted()  # rows of the table, in partition order (repeats allowed)


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    fraction=st.floats(0.01, 1.0),
    seed=st.integers(0, 1000),
)
def test_sample_fraction_gives_as_many_rows_as_polars(
    data: st.DataObject, df: pl.DataFrame, fraction: float, seed: int
) -> None:
    parts = data.draw(split(df))
    out = distributed(Sample(SampleConfig(fraction=fraction, seed=seed)), parts)
    assert out.height == df.sample(fraction=fraction, seed=seed).height


@PROPERTY
@given(data=st.data(), df=tables(), seed=st.integers(0, 1000))
def test_sample_is_the_same_for_the_same_seed_and_partitioning(
    data: st.DataObject, df: pl.DataFrame, seed: int
) -> None:
    parts = data.draw(split(df))
    first = distributed(Sample(SampleConfig(n=7, seed=seed)), parts)
    assert first.equals(distributed(Sample(SampleConfig(n=7, seed=seed)), parts))


def test_sample_of_a_whole_table_equals_one_partition() -> None:
    df = pl.DataFrame({"v": range(50)})
    op = Sample(SampleConfig(fraction=0.2, seed=3))
    assert op.apply(df).equals(distributed(op, [df]))


def test_sample_differs_between_seeds() -> None:
    df = pl.DataFrame({"v": range(100)})
    first = Sample(SampleConfig(n=10, seed=0)).apply(df)
    second = Sample(SampleConfig(n=10, seed=1)).apply(df)
    assert first.get_column("v").to_list() != second.get_column("v").to_list()


def test_sample_fraction_one_keeps_every_row() -> None:
    df = pl.DataFrame({"v": range(9)})
    parts = [df.slice(0, 4), df.slice(4, 5)]
    assert distributed(Sample(SampleConfig(fraction=1.0)), parts).equals(df)


@pytest.mark.parametrize(
    ("spec", "message"),
    [({}, "exactly one of fraction or n"), ({"n": 1, "fraction": 0.5}, "exactly one"),
     ({"fraction": 0.0}, "greater than 0"), ({"fraction": 1.5}, "less than or equal to 1"),
     ({"n": -1}, "greater than or equal to 0"), ({"n": 1, "seed": -1}, "seed")],
)
def test_sample_config_rejects(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SampleConfig.model_validate(spec)


# ---------------------------------------------------------------------------------------------
# date_extraction

ALL_PARTS = ["year", "month", "day", "weekday", "hour", "minute", "quarter", "iso_week",
             "day_of_year"]


def parts_reference(df: pl.DataFrame, column: str, value: pl.Expr) -> pl.DataFrame:
    """The calendar parts with Polars ``dt`` on an already parsed datetime."""
    return df.with_columns(
        value.dt.year().alias(f"{column}_year"),
        value.dt.month().alias(f"{column}_month"),
        value.dt.day().alias(f"{column}_day"),
        value.dt.weekday().alias(f"{column}_weekday"),
        value.dt.hour().alias(f"{column}_hour"),
        value.dt.minute().alias(f"{column}_minute"),
        value.dt.quarter().alias(f"{column}_quarter"),
        value.dt.week().alias(f"{column}_iso_week"),
        value.dt.ordinal_day().alias(f"{column}_day_of_year"),
    )


@PROPERTY
@given(
    data=st.data(),
    values=st.lists(st.one_of(st.none(), st.datetimes(dt.datetime(1900, 1, 1))), max_size=20),
)
def test_date_extraction_of_datetimes_equals_polars_dt(
    data: st.DataObject, values: list[dt.datetime | None]
) -> None:
    df = pl.DataFrame({"t": values, "v": range(len(values))}, schema={"t": pl.Datetime("us"),
                                                                       "v": pl.Int64})
    parts = data.draw(split(df))
    op = DateExtraction(DateExtractionConfig(column="t", parts=ALL_PARTS))  # type: ignore[arg-type]
    assert_same(distributed(op, parts), parts_reference(pl.concat(parts), "t", pl.col("t")))


@PROPERTY
@given(data=st.data(), values=st.lists(st.one_of(st.none(), ISO_DATETIMES), max_size=20))
def test_date_extraction_of_iso_strings_equals_python_fromisoformat(
    data: st.DataObject, values: list[str | None]
) -> None:
    df = pl.DataFrame({"t": values}, schema={"t": pl.String})
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    parsed = pl.Series([python_iso(v) for v in whole.get_column("t")], dtype=pl.Datetime("us"))
    expected = parts_reference(whole, "t", pl.lit(parsed))
    op = DateExtraction(DateExtractionConfig(column="t", parts=ALL_PARTS))  # type: ignore[arg-type]
    assert_same(distributed(op, parts), expected)


def test_date_extraction_defaults_to_year_month_day() -> None:
    df = pl.DataFrame({"d": [dt.date(2024, 2, 29)]})
    out = DateExtraction(DateExtractionConfig(column="d")).apply(df)
    assert out.row(0, named=True) == {"d": dt.date(2024, 2, 29), "d_year": 2024, "d_month": 2,
                                      "d_day": 29}


def test_date_extraction_of_a_date_has_hour_and_minute_zero() -> None:
    df = pl.DataFrame({"d": [dt.date(2021, 1, 4), None]})
    op = DateExtraction(DateExtractionConfig(column="d", parts=["hour", "minute"]))
    assert op.apply(df).select("d_hour", "d_minute").rows() == [(0, 0), (None, None)]


def test_date_extraction_weeks_are_iso_weeks_starting_monday() -> None:
    df = pl.DataFrame({"d": ["2021-01-03", "2021-01-04"]})
    op = DateExtraction(DateExtractionConfig(column="d", parts=["weekday", "iso_week"]))
    assert op.apply(df).select("d_weekday", "d_iso_week").rows() == [(7, 53), (1, 1)]


def test_date_extraction_of_a_zoned_datetime_uses_its_wall_clock() -> None:
    df = pl.DataFrame({"t": [dt.datetime(2021, 3, 28, 1, 30)]}).with_columns(
        pl.col("t").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Zurich")
    )
    out = DateExtraction(DateExtractionConfig(column="t", parts=["hour"])).apply(df)
    assert out.get_column("t_hour").to_list() == [3]  # 01:30 UTC is 03:30 summer time


def test_date_extraction_of_an_unparseable_string_raises_input_error_naming_it() -> None:
    df = pl.DataFrame({"d": ["2021-01-04", "Zürich"]})
    with pytest.raises(InputError, match="column 'd': value 'Zürich' cannot be parsed") as err:
        DateExtraction(DateExtractionConfig(column="d")).apply(df)
    assert err.value.details["value"] == "Zürich"


def test_date_extraction_without_strict_gives_null_parts_for_unparseable_strings() -> None:
    df = pl.DataFrame({"d": ["2021-01-04", "東京"]})
    out = DateExtraction(DateExtractionConfig(column="d", parts=["day"], strict=False)).apply(df)
    assert out.get_column("d_day").to_list() == [4, None]


def test_date_extraction_of_a_number_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="needs a date, datetime or string column; column 'am"):
        DateExtraction(DateExtractionConfig(column="amount")).apply(people())


def test_date_extraction_onto_an_existing_column_raises_input_error() -> None:
    df = pl.DataFrame({"d": [dt.date(2021, 1, 4)], "d_year": [1]})
    with pytest.raises(InputError, match="would add column 'd_year'"):
        DateExtraction(DateExtractionConfig(column="d")).apply(df)


def test_date_extraction_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'date' not found"):
        DateExtraction(DateExtractionConfig(column="date")).apply(people())


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"column": "d", "parts": ["week"]}, "iso_week"), ({"column": "d", "parts": []}, "at least"),
     ({"column": "d", "parts": ["day", "day"]}, "parts lists 'day' more than once"),
     ({"column": ""}, "at least 1 character")],
)
def test_date_extraction_config_rejects(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DateExtractionConfig.model_validate(spec)


# ---------------------------------------------------------------------------------------------
# text_tokenization

TEXT = st.text(alphabet="abcXYZüÜäé東京0123 _,.!-\t", max_size=15)


@PROPERTY
@given(
    data=st.data(),
    values=st.lists(st.one_of(st.none(), TEXT, st.sampled_from(UNICODE)), max_size=15),
    lowercase=st.booleans(),
    stop_words=st.lists(st.sampled_from(["a", "Zürich", "東京", "x", "abc"]), max_size=3),
)
def test_tokens_equal_python_findall_without_stop_words(
    data: st.DataObject, values: list[str | None], lowercase: bool, stop_words: list[str]
) -> None:
    df = pl.DataFrame({"t": values}, schema={"t": pl.String})
    parts = data.draw(split(df))
    op = TextTokenization(TextTokenizationConfig(column="t", lowercase=lowercase,
                                                 stop_words=stop_words))
    stop = {w.lower() if lowercase else w for w in stop_words}
    expected = [
        None if v is None
        else [w for w in re.findall(r"\w+", v.lower() if lowercase else v) if w not in stop]
        for v in pl.concat(parts).get_column("t")
    ]
    out = distributed(op, parts)
    assert out.get_column("t_tokens").to_list() == expected
    assert out.get_column("t_token_count").to_list() == [
        None if e is None else len(e) for e in expected
    ]


def test_tokenization_output_dtypes() -> None:
    out = TextTokenization(TextTokenizationConfig(column="city")).apply(people())
    assert out.schema["city_tokens"] == pl.List(pl.String)
    assert out.schema["city_token_count"] == pl.Int64


def test_tokenization_of_null_text_is_null_and_of_empty_text_is_empty() -> None:
    df = pl.DataFrame({"t": [None, ""]}, schema={"t": pl.String})
    out = TextTokenization(TextTokenizationConfig(column="t")).apply(df)
    assert out.select("t_tokens", "t_token_count").rows() == [(None, None), ([], 0)]


def test_tokenization_with_a_custom_pattern() -> None:
    df = pl.DataFrame({"t": ["Zürich, 東京 ,Basel"]})
    op = TextTokenization(TextTokenizationConfig(column="t", pattern=r"[^,\s][^,]*[^,\s]|[^,\s]"))
    assert op.apply(df).get_column("t_tokens").to_list() == [["zürich", "東京", "basel"]]


def test_tokenization_without_lowercase_keeps_case_and_compares_stop_words_exactly() -> None:
    df = pl.DataFrame({"t": ["The the THE"]})
    op = TextTokenization(TextTokenizationConfig(column="t", lowercase=False, stop_words=["the"]))
    assert op.apply(df).get_column("t_tokens").to_list() == [["The", "THE"]]


def test_tokenization_of_a_number_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="needs a string column; column 'amount' is Int64"):
        TextTokenization(TextTokenizationConfig(column="amount")).apply(people())


def test_tokenization_onto_an_existing_column_raises_input_error() -> None:
    df = pl.DataFrame({"t": ["a"], "t_token_count": [1]})
    with pytest.raises(InputError, match="would add column 't_token_count'"):
        TextTokenization(TextTokenizationConfig(column="t")).apply(df)


def test_tokenization_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'text' not found"):
        TextTokenization(TextTokenizationConfig(column="text")).apply(people())


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(", "invalid regular expression"), (r"\w*", "matches an empty token"), ("", "at least")],
)
def test_tokenization_config_rejects_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TextTokenizationConfig(column="t", pattern=pattern)


# ---------------------------------------------------------------------------------------------
# binning


def equal_width_reference(df: pl.DataFrame, column: str, bins: int) -> pl.DataFrame:
    x = pl.col(column).cast(pl.Float64).fill_nan(None)
    low, high = x.min(), x.max()
    seed = ((x - low) / ((high - low) / bins)).floor().clip(upper_bound=bins - 1)
    bin_ = pl.when(low == high).then(pl.when(x.is_not_null()).then(0)).otherwise(seed)
    return df.with_columns(bin_.cast(pl.Int64).alias(f"{column}_bin"))


@PROPERTY
@given(
    data=st.data(), df=tables(), column=st.sampled_from(["i", "f", "k"]), bins=st.integers(1, 6)
)
def test_equal_width_bins_across_partitions_equal_the_seed_formula_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame, column: str, bins: int
) -> None:
    parts = data.draw(split(df))
    op = Binning(BinningConfig(column=column, bins=bins))
    assert_same(distributed(op, parts), equal_width_reference(pl.concat(parts), column, bins))
    assert_same(op.apply(df), equal_width_reference(df, column, bins))


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    edges=st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=5, unique=True).map(sorted),
)
def test_explicit_edges_equal_numpy_digitize_with_the_last_edge_closed(
    data: st.DataObject, df: pl.DataFrame, edges: list[float]
) -> None:
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    out = distributed(Binning(BinningConfig(column="f", edges=edges)), parts)
    x = whole.get_column("f").to_numpy()
    expected: list[int | None] = []
    for v in x:
        if np.isnan(v) or v < edges[0] or v > edges[-1]:
            expected.append(None)
        else:
            expected.append(min(int(np.digitize(v, edges)) - 1, len(edges) - 2))
    assert out.get_column("f_bin").to_list() == expected


def test_binning_puts_the_maximum_into_the_last_bin() -> None:
    df = pl.DataFrame({"x": [0.0, 2.5, 5.0, 10.0]})
    out = Binning(BinningConfig(column="x", bins=4)).apply(df)
    assert out.get_column("x_bin").to_list() == [0, 1, 2, 3]


def test_binning_of_a_constant_column_is_bin_zero() -> None:
    df = pl.DataFrame({"x": [7, None, 7]})
    out = distributed(Binning(BinningConfig(column="x", bins=3)), [df.slice(0, 1), df.slice(1)])
    assert out.get_column("x_bin").to_list() == [0, None, 0]


def test_binning_uses_the_global_min_and_max() -> None:
    parts = [pl.DataFrame({"x": [0.0, 1.0]}), pl.DataFrame({"x": [9.0, 10.0]})]
    out = distributed(Binning(BinningConfig(column="x", bins=2)), parts)
    assert out.get_column("x_bin").to_list() == [0, 0, 1, 1]


def test_binning_of_a_string_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="binning needs a numeric column; column 'city'"):
        Binning(BinningConfig(column="city", bins=2)).apply(people())


def test_binning_onto_an_existing_column_raises_input_error() -> None:
    df = pl.DataFrame({"x": [1], "x_bin": [0]})
    with pytest.raises(InputError, match="would add column 'x_bin'"):
        Binning(BinningConfig(column="x", edges=[0, 1])).apply(df)


def test_binning_unknown_column_raises_input_error() -> None:
    with pytest.raises(InputError, match="column 'prise' not found"):
        Binning(BinningConfig(column="prise", bins=2)).partial_stats(people())


def test_binning_needs_statistics_only_for_equal_width_bins() -> None:
    assert Binning(BinningConfig(column="x", bins=3)).needs_stats
    assert not Binning(BinningConfig(column="x", edges=[0, 1])).needs_stats


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"column": "x"}, "exactly one of bins or edges"),
     ({"column": "x", "bins": 2, "edges": [0, 1]}, "exactly one of bins or edges"),
     ({"column": "x", "bins": 0}, "greater than or equal to 1"),
     ({"column": "x", "edges": [1.0]}, "at least 2"),
     ({"column": "x", "edges": [0, 2, 1]}, "strictly increasing"),
     ({"column": "x", "edges": [0, 1, 1]}, "strictly increasing"),
     ({"column": "x", "edges": [0, float("inf")]}, "finite")],
)
def test_binning_config_rejects(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BinningConfig.model_validate(spec)


# ---------------------------------------------------------------------------------------------
# fill_missing: forward and backward across partitions


@PROPERTY
@given(
    data=st.data(),
    df=tables(),
    column=st.sampled_from(["i", "f", "s"]),
    method=st.sampled_from(["forward", "backward"]),
)
def test_directional_fill_across_partitions_equals_polars_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame, column: str, method: str
) -> None:
    parts = data.draw(split(df))
    op = FillMissing(FillMissingConfig(columns=[column, "k"], method=method))  # type: ignore[arg-type]
    expected = pl.concat(parts).with_columns(
        pl.col(column, "k").fill_null(strategy=method)  # type: ignore[arg-type]
    )
    assert_same(distributed(op, parts), expected)


@PROPERTY
@given(df=tables(), method=st.sampled_from(["forward", "backward"]))
def test_directional_fill_of_a_whole_table_equals_polars(df: pl.DataFrame, method: str) -> None:
    op = FillMissing(FillMissingConfig(columns=["i", "s"], method=method))  # type: ignore[arg-type]
    expected = df.with_columns(pl.col("i", "s").fill_null(strategy=method))  # type: ignore[arg-type]
    assert_same(op.apply(df), expected)


def test_forward_fill_carries_over_an_all_null_partition() -> None:
    parts = [
        pl.DataFrame({"v": ["東京", None]}),
        pl.DataFrame({"v": [None]}, schema={"v": pl.String}),
        pl.DataFrame({"v": [None, "Zürich"]}),
    ]
    out = distributed(FillMissing(FillMissingConfig(columns=["v"], method="forward")), parts)
    assert out.get_column("v").to_list() == ["東京", "東京", "東京", "東京", "Zürich"]


def test_forward_fill_leaves_leading_nulls() -> None:
    df = pl.DataFrame({"v": [None, 1, None]})
    out = FillMissing(FillMissingConfig(columns=["v"], method="forward")).apply(df)
    assert out.get_column("v").to_list() == [None, 1, 1]


def test_backward_fill_keeps_the_dtype() -> None:
    df = pl.DataFrame({"v": pl.Series([None, 3], dtype=pl.Int16)})
    out = FillMissing(FillMissingConfig(columns=["v"], method="backward")).apply(df)
    assert out.schema["v"] == pl.Int16 and out.get_column("v").to_list() == [3, 3]


def test_directional_fill_with_a_value_is_rejected() -> None:
    with pytest.raises(ValidationError, match="value is only used with method 'constant'"):
        FillMissingConfig(columns=["v"], method="forward", value=0)


# ---------------------------------------------------------------------------------------------
# configs as they come from a job spec

SPECS: list[tuple[type[Any], dict[str, Any]]] = [
    (Normalize, {"op": "normalize", "columns": ["amount"], "method": "robust"}),
    (Encode, {"op": "encode", "column": "city", "method": "one_hot", "drop_original": True}),
    (Derive, {"op": "derive", "columns": {"revenue": "price * quantity"}}),
    (Cast, {"op": "cast", "columns": {"amount": "float64", "day": "date"}, "strict": False}),
    (Rename, {"op": "rename", "columns": {"amount": "Betrag"}}),
    (Deduplicate, {"op": "deduplicate", "columns": ["city"], "keep": "last"}),
    (Sample, {"op": "sample", "fraction": 0.1, "seed": 42}),
    (DateExtraction, {"op": "date_extraction", "column": "day", "parts": ["year", "iso_week"]}),
    (TextTokenization, {"op": "text_tokenization", "column": "note", "stop_words": ["the"]}),
    (Binning, {"op": "binning", "column": "amount", "bins": 5}),
]


@pytest.mark.parametrize(("plugin", "spec"), SPECS, ids=[s["op"] for _, s in SPECS])
def test_configs_validate_job_spec_entries(plugin: type[Any], spec: dict[str, Any]) -> None:
    assert plugin.name == spec["op"]
    assert plugin.Config.model_validate(spec).model_dump(include=set(spec)) == spec


@pytest.mark.parametrize(("plugin", "spec"), SPECS, ids=[s["op"] for _, s in SPECS])
def test_configs_reject_unknown_keys(plugin: type[Any], spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="colour"):
        plugin.Config.model_validate({**spec, "colour": "red"})


@pytest.mark.parametrize(("plugin", "spec"), SPECS, ids=[s["op"] for _, s in SPECS])
def test_configs_reject_another_op(plugin: type[Any], spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="op"):
        plugin.Config.model_validate({**spec, "op": "filter_rows"})
