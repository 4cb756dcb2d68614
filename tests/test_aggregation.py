"""Specification of the aggregation kernel (raysight.analyses.aggregation).

References: Polars ``group_by().agg()`` and DuckDB SQL on the same data. Floating results agree
to 1e-9 relative; where cancellation makes a result tiny compared with the data (a spread of
nearly equal values), the agreement is bounded instead by rounding at the data's magnitude,
hence the data-scaled absolute tolerances in ``assert_frames_match``.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from compare import assert_frames_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import frames, split

from raysight.analyses.aggregation import Aggregation, Metric
from raysight.errors import InputError

SCHEMA = {
    "city": pl.String,
    "code": pl.Int64,
    "flag": pl.Boolean,
    "i": pl.Int64,
    "f": pl.Float64,
    "s": pl.String,
}
KEYS = ["city", "code", "flag"]
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cities = st.one_of(st.none(), st.sampled_from(["Zürich", "東京", "", "a", "B", "zz"]))
codes = st.one_of(st.none(), st.integers(-2, 2))
flags = st.one_of(st.none(), st.booleans())
ints = st.one_of(st.none(), st.integers(-5, 5), st.integers(-(10**12), 10**12))
# -0.0 is mapped to 0.0: DuckDB and Polars may disagree on whether they are distinct values
floats = st.one_of(
    st.none(), st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: x + 0.0), st.sampled_from([0.5])
)
strings = st.one_of(st.none(), st.sampled_from(["Zürich", "東京", "", "x"]), st.text(max_size=3))
COLUMNS = {"city": cities, "code": codes, "flag": flags, "i": ints, "f": floats, "s": strings}


def tables(max_rows: int = 30) -> st.SearchStrategy[pl.DataFrame]:
    """Tables with null keys, all-null groups, unicode and empty strings; sometimes empty."""
    return frames(COLUMNS, SCHEMA, max_rows)


def metric(function: str, column: str | None = None, q: float | None = None) -> Metric:
    return Metric(function=function, column=column, q=q)  # type: ignore[arg-type]


MERGEABLE = (
    [metric("count")]
    + [
        metric(f, c)
        for c in ("i", "f")
        for f in ("count", "sum", "mean", "min", "max", "std", "var")
    ]
    + [metric(f, "s") for f in ("count", "min", "max")]
)
HOLISTIC = (
    [metric(f, c) for c in ("i", "f") for f in ("median", "n_unique")]
    + [metric("percentile", c, q) for c in ("i", "f") for q in (0.0, 0.1, 0.95, 1.0)]
    + [metric("n_unique", "s")]
)


@st.composite
def aggregations(draw: st.DrawFn, holistic: bool) -> Aggregation:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=2))
    pool = MERGEABLE + HOLISTIC if holistic else MERGEABLE
    metrics = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique_by=repr))
    if holistic and not any(m in HOLISTIC for m in metrics):
        metrics.append(draw(st.sampled_from(HOLISTIC)))
    return Aggregation(Aggregation.Config(group_by=keys, metrics=metrics))


# ---------------------------------------------------------------------------------------------
# references and comparison


def reference_expr(m: Metric) -> pl.Expr:
    if m.column is None:
        return pl.len()
    c = pl.col(m.column)
    match m.function:
        case "count":
            return c.count()
        case "percentile":
            return c.quantile(m.q or 0.0, interpolation="linear")
        case "n_unique":
            return c.drop_nulls().n_unique()
        case "std":
            return c.std(ddof=1)
        case "var":
            return c.var(ddof=1)
        case "sum":
            return c.sum()
        case "mean":
            return c.mean()
        case "median":
            return c.median()
        case "min":
            return c.min()
        case "max":
            return c.max()
    raise AssertionError(m.function)


def polars_reference(agg: Aggregation, df: pl.DataFrame) -> pl.DataFrame:
    """The same aggregation written directly with Polars."""
    exprs = [reference_expr(m).alias(m.output_name) for m in agg.config.metrics]
    keys = agg.config.group_by
    if not keys:
        return df.select(exprs)
    return df.group_by(keys).agg(exprs).sort(keys, nulls_last=True)


def duckdb_reference(agg: Aggregation, df: pl.DataFrame) -> pl.DataFrame:
    """The same aggregation in DuckDB SQL, sorted like the kernel's output."""
    select = []
    for m in agg.config.metrics:
        c = f'"{m.column}"'
        sql = {
            "count": "count(*)" if m.column is None else f"count({c})",
            # DuckDB's SUM over a group without values is NULL; Polars (and raysight) give 0
            "sum": f"coalesce(sum({c}), 0)",
            "mean": f"avg({c})",
            "min": f"min({c})",
            "max": f"max({c})",
            "median": f"quantile_cont({c}, 0.5)",
            "percentile": f"quantile_cont({c}, {m.q!r})",
            "n_unique": f"count(DISTINCT {c})",
            "std": f"stddev_samp({c})",
            "var": f"var_samp({c})",
        }[m.function]
        if m.function == "sum" and m.column == "i":
            sql = f"CAST({sql} AS BIGINT)"  # DuckDB sums BIGINT into HUGEINT
        select.append(f'{sql} AS "{m.output_name}"')
    keys = [f'"{k}"' for k in agg.config.group_by]
    query = f"SELECT {', '.join(keys + select)} FROM t"
    if keys:
        query += f" GROUP BY {', '.join(keys)}"
    con = duckdb.connect()
    con.register("t", df.to_arrow())
    out = con.sql(query).pl()
    con.close()
    if agg.config.group_by:
        out = out.sort(agg.config.group_by, nulls_last=True)
    return out


def tolerance(df: pl.DataFrame, function: str | None, column: str | None) -> float:
    """Absolute tolerance: rounding at the magnitude of the column's data (see module doc)."""
    if column is None or column not in ("i", "f"):
        return 0.0
    x = df.get_column(column).drop_nulls().cast(pl.Float64).to_numpy()
    s1, s2 = float(np.abs(x).sum()), float((x**2).sum())
    if function == "var":
        return 1e-12 * s2
    if function == "std":
        return 1e-6 * math.sqrt(s2)
    return 1e-12 * s1


def tolerances(agg: Aggregation, df: pl.DataFrame) -> dict[str, float]:
    return {m.output_name: tolerance(df, m.function, m.column) for m in agg.config.metrics}


def result_frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


# ---------------------------------------------------------------------------------------------
# equality with Polars and DuckDB


@PROPERTY
@given(data=st.data(), df=tables())
def test_run_equals_polars_group_by(data: st.DataObject, df: pl.DataFrame) -> None:
    agg = data.draw(aggregations(holistic=True))
    actual = result_frame(agg.run(df).table)
    assert_frames_match(actual, polars_reference(agg, df), tolerances(agg, df))


@PROPERTY
@given(data=st.data(), df=tables())
def test_run_equals_duckdb_sql(data: st.DataObject, df: pl.DataFrame) -> None:
    agg = data.draw(aggregations(holistic=True))
    actual = result_frame(agg.run(df).table)
    assert_frames_match(actual, duckdb_reference(agg, df), tolerances(agg, df))


@PROPERTY
@given(data=st.data(), df=tables(), holistic=st.booleans())
def test_partial_then_combine_equals_run_on_the_whole_table(
    data: st.DataObject, df: pl.DataFrame, holistic: bool
) -> None:
    agg = data.draw(aggregations(holistic=holistic))
    parts = data.draw(split(df))
    combined = agg.combine([agg.partial(p) for p in parts])
    whole = agg.run(df)
    assert combined.table.schema == whole.table.schema
    assert combined.summary == whole.summary
    assert_frames_match(
        result_frame(combined.table), result_frame(whole.table), tolerances(agg, df)
    )


@PROPERTY
@given(data=st.data(), df=tables(), holistic=st.booleans())
def test_tree_reduce_of_partials_equals_flat_combine(
    data: st.DataObject, df: pl.DataFrame, holistic: bool
) -> None:
    agg = data.draw(aggregations(holistic=holistic))
    partials = [agg.partial(p) for p in data.draw(split(df))]
    tree = partials
    while len(tree) > 1:  # pairwise rounds, as a tree reduce over Ray tasks would
        tree = [agg.merge(tree[i : i + 2]) for i in range(0, len(tree), 2)]
    assert tree[0].schema == partials[0].schema
    assert_frames_match(
        result_frame(agg.finalize(tree[0]).table),
        result_frame(agg.combine(partials).table),
        tolerances(agg, df),
    )


# ---------------------------------------------------------------------------------------------
# semantics by example


def sales() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "region": ["東京", "Zürich", None, "Zürich", "東京", "Zürich", "Basel"],
            "amount": [10, 20, 5, None, 30, 40, None],
            "price": [1.0, None, 2.0, 3.0, 5.0, 4.0, None],
        }
    )


def by_region(*metrics: Metric) -> Aggregation:
    return Aggregation(Aggregation.Config(group_by=["region"], metrics=list(metrics)))


def test_rows_are_sorted_by_keys_with_the_null_group_last() -> None:
    table = by_region(metric("count")).run(sales()).table
    assert table.column("region").to_pylist() == ["Basel", "Zürich", "東京", None]
    assert table.column("count").to_pylist() == [1, 3, 2, 1]


def test_columns_are_keys_then_metrics_in_declaration_order() -> None:
    agg = by_region(metric("max", "price"), metric("count"), metric("sum", "amount"))
    assert agg.run(sales()).table.column_names == ["region", "max_price", "count", "sum_amount"]


def test_sum_of_a_group_without_values_is_zero_and_mean_is_null() -> None:
    table = by_region(metric("sum", "amount"), metric("mean", "amount")).run(sales()).table
    basel = table.to_pylist()[0]
    assert basel == {"region": "Basel", "sum_amount": 0, "mean_amount": None}


def test_count_with_a_column_counts_non_null_values() -> None:
    table = by_region(metric("count"), metric("count", "amount")).run(sales()).table
    assert table.column("count").to_pylist() == [1, 3, 2, 1]
    assert table.column("count_amount").to_pylist() == [0, 2, 2, 1]


def test_n_unique_does_not_count_null() -> None:
    df = pl.DataFrame({"k": [1, 1, 1, 2], "v": [7, 7, None, None]})
    agg = Aggregation(Aggregation.Config(group_by=["k"], metrics=[metric("n_unique", "v")]))
    assert agg.run(df).table.column("n_unique_v").to_pylist() == [1, 0]


def test_std_and_var_are_sample_statistics_and_null_below_two_values() -> None:
    df = pl.DataFrame({"k": ["a", "a", "a", "b"], "v": [1.0, 2.0, 3.0, 4.0]})
    agg = Aggregation(
        Aggregation.Config(group_by=["k"], metrics=[metric("std", "v"), metric("var", "v")])
    )
    rows = agg.run(df).table.to_pylist()
    assert rows == [
        {"k": "a", "std_v": 1.0, "var_v": 1.0},
        {"k": "b", "std_v": None, "var_v": None},
    ]


def test_percentile_interpolates_linearly() -> None:
    df = pl.DataFrame({"v": [1, 2, 3, 4]})
    agg = Aggregation(Aggregation.Config(metrics=[metric("percentile", "v", 0.9)]))
    assert agg.run(df).table.column("p90_v").to_pylist() == pytest.approx([3.7])


def test_without_group_by_an_empty_table_gives_one_row() -> None:
    agg = Aggregation(
        Aggregation.Config(
            metrics=[metric("count"), metric("sum", "amount"), metric("mean", "amount")]
        )
    )
    rows = agg.run(sales().clear()).table.to_pylist()
    assert rows == [{"count": 0, "sum_amount": 0, "mean_amount": None}]


def test_empty_table_with_group_by_gives_no_rows_with_typed_columns() -> None:
    agg = by_region(metric("count"), metric("sum", "amount"), metric("median", "price"))
    table = agg.run(sales().clear()).table
    assert table.num_rows == 0
    assert result_frame(table).schema == pl.Schema(
        {"region": pl.String, "count": pl.Int64, "sum_amount": pl.Int64, "median_price": pl.Float64}
    )


def test_output_dtypes_follow_the_documented_rules() -> None:
    df = pl.DataFrame(
        {"k": [1, 1], "small": pl.Series([1, 2], dtype=pl.Int8), "f": [0.5, 1.5], "s": ["a", "b"]}
    )
    metrics = [
        metric("count"),
        metric("sum", "small"),
        metric("mean", "small"),
        metric("min", "s"),
        metric("n_unique", "f"),
        metric("std", "small"),
    ]
    agg = Aggregation(Aggregation.Config(group_by=["k"], metrics=metrics))
    schema = result_frame(agg.run(df).table).schema
    assert list(schema.dtypes()) == [
        pl.Int64,
        pl.Int64,
        pl.Int64,
        pl.Float64,
        pl.String,
        pl.Int64,
        pl.Float64,
    ]


def test_summary_names_groups_keys_and_metrics() -> None:
    agg = by_region(Metric(function="count", alias="n"), metric("sum", "amount"))
    result = agg.run(sales())
    assert result.kind == "aggregation"
    assert result.summary == {"groups": 4, "group_by": ["region"], "metrics": ["n", "sum_amount"]}


def test_mergeable_partials_are_aggregates_not_rows() -> None:
    agg = by_region(metric("count"), metric("std", "price"))
    assert agg.mergeable
    partial = agg.partial(sales())
    assert partial.num_rows == 4  # one row per group of the partition


def test_holistic_partials_project_only_the_needed_columns() -> None:
    agg = by_region(metric("median", "price"))
    assert not agg.mergeable
    assert agg.partial(sales()).column_names == ["region", "price"]


def test_required_columns_are_keys_then_metric_columns_once_each() -> None:
    agg = by_region(metric("count"), metric("sum", "amount"), metric("max", "amount"))
    assert agg.required_columns() == ["region", "amount"]


# ---------------------------------------------------------------------------------------------
# config validation


def test_default_output_names() -> None:
    assert metric("count").output_name == "count"
    assert metric("count", "amount").output_name == "count_amount"
    assert metric("sum", "amount").output_name == "sum_amount"
    assert metric("percentile", "amount", 0.95).output_name == "p95_amount"
    assert metric("percentile", "amount", 0.5).output_name == "p50_amount"
    assert Metric(function="sum", column="amount", alias="total").output_name == "total"


def test_config_is_built_from_a_job_spec_mapping() -> None:
    spec = {
        "type": "aggregation",
        "group_by": ["product_category", "region"],
        "metrics": [
            {"function": "count", "alias": "sales_count"},
            {"column": "amount", "function": "sum", "alias": "total_sales"},
            {"column": "amount", "function": "percentile", "q": 0.95, "alias": "p95"},
        ],
    }
    config = Aggregation.Config.model_validate(spec)
    assert [m.output_name for m in config.metrics] == ["sales_count", "total_sales", "p95"]


def test_percentile_without_q_is_rejected() -> None:
    with pytest.raises(ValidationError, match="needs q"):
        Metric(function="percentile", column="amount")


@pytest.mark.parametrize("q", [-0.1, 1.5])
def test_percentile_q_outside_zero_one_is_rejected(q: float) -> None:
    with pytest.raises(ValidationError, match=r"q must be in \[0, 1\]"):
        Metric(function="percentile", column="amount", q=q)


def test_q_on_another_function_is_rejected() -> None:
    with pytest.raises(ValidationError, match="only allowed for function 'percentile'"):
        Metric(function="sum", column="amount", q=0.5)


@pytest.mark.parametrize("function", ["sum", "mean", "median", "n_unique", "std", "min"])
def test_functions_other_than_count_need_a_column(function: str) -> None:
    with pytest.raises(ValidationError, match=f"function '{function}' needs a column"):
        Metric(function=function)  # type: ignore[arg-type]


def test_unknown_function_is_rejected() -> None:
    with pytest.raises(ValidationError, match="function"):
        Metric.model_validate({"function": "avg", "column": "amount"})


def test_unknown_metric_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="colum"):
        Metric.model_validate({"function": "sum", "colum": "amount"})


def test_two_metrics_with_the_same_output_name_are_rejected() -> None:
    with pytest.raises(ValidationError, match="'count' .* clashes with another metric"):
        Aggregation.Config(metrics=[metric("count"), metric("count")])


def test_alias_equal_to_a_group_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="'region' .* clashes with a group key"):
        Aggregation.Config(group_by=["region"], metrics=[Metric(function="count", alias="region")])


def test_repeated_group_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="group_by lists 'region' more than once"):
        Aggregation.Config(group_by=["region", "region"], metrics=[metric("count")])


def test_config_needs_at_least_one_metric() -> None:
    with pytest.raises(ValidationError, match="metrics"):
        Aggregation.Config(metrics=[])


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_group_by_column_raises_input_error_at_partial_time() -> None:
    agg = Aggregation(Aggregation.Config(group_by=["regoin"], metrics=[metric("count")]))
    with pytest.raises(InputError, match="group-by column 'regoin' not found; available: ") as err:
        agg.partial(sales())
    assert err.value.details["column"] == "regoin"
    assert "did you mean 'region'" in str(err.value)


def test_missing_metric_column_raises_input_error_in_run() -> None:
    agg = by_region(metric("sum", "amout"))
    with pytest.raises(InputError, match="column 'amout' not found; available: region, amount"):
        agg.run(sales())


@pytest.mark.parametrize("function", ["sum", "mean", "std", "var", "median"])
def test_numeric_function_on_a_string_column_raises_input_error(function: str) -> None:
    agg = Aggregation(Aggregation.Config(metrics=[metric(function, "region")]))
    with pytest.raises(InputError, match=f"{function} needs a numeric column; column 'region'"):
        agg.partial(sales())


def test_merge_of_no_partials_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        by_region(metric("count")).combine([])
