"""Specification of the aggregation kernel, part 2: first/last, top_k, corr/r2, count_distinct,
expressions over aggregates, having and order_by, and the shuffle path.

References: Polars on the whole table (for first/last: on the partitions concatenated in
order, since they follow row order) and DuckDB SQL. Integers and strings exact, floats to 1e-9
relative with the data-scaled absolute tolerances of ``test_aggregation`` where a merge
reorders float arithmetic. corr/r2 are checked on well-conditioned data (small integers and
quarter units), where rounding bounds them to 1e-9 absolute: they lie in [-1, 1], and near 0 a
relative bound would only measure rounding noise.
"""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from compare import assert_frames_match
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import frames, split
from test_aggregation import (
    HOLISTIC,
    KEYS,
    MERGEABLE,
    PROPERTY,
    reference_expr,
    result_frame,
    tables,
    tolerance,
)

from raysight.analyses.aggregation import Aggregation, AggregationConfig, Metric, parse_expression
from raysight.errors import InputError

CORR_ATOL = 1e-9
#: DuckDB queries cost more per example; the Polars properties cover the wider search
DUCKDB_PROPERTY = settings(PROPERTY, max_examples=30)


def duckdb_query(df: pl.DataFrame, sql: str) -> pl.DataFrame:
    """``sql`` over ``df`` registered as table ``t``."""
    con = duckdb.connect()
    try:
        con.register("t", df.to_arrow())
        return con.sql(sql).pl()
    finally:
        con.close()


def build(keys: list[str], *metrics: Metric, **options: object) -> Aggregation:
    return Aggregation(Aggregation.Config(group_by=keys, metrics=list(metrics), **options))


def m(function: str, column: str | None = None, **fields: object) -> Metric:
    return Metric(function=function, column=column, **fields)  # type: ignore[arg-type]


def frame(table: pa.Table) -> pl.DataFrame:
    return result_frame(table)


def shuffled(agg: Aggregation, parts: list[pl.DataFrame], n: int) -> pl.DataFrame:
    """The shuffle path: shard every partition, reduce each shard, finish."""
    shards = [agg.shard(p, n) for p in parts]
    reduced = [agg.reduce_shard([s[i] for s in shards]) for i in range(n)]
    return frame(agg.finish(reduced).table)


def tree(agg: Aggregation, parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Pairwise merges of adjacent partials, as a tree reduce over Ray tasks would."""
    level = [agg.partial(p) for p in parts]
    while len(level) > 1:
        level = [agg.merge(level[i : i + 2]) for i in range(0, len(level), 2)]
    return frame(agg.finalize(level[0]).table)


def by_keys(df: pl.DataFrame, keys: list[str], exprs: list[pl.Expr]) -> pl.DataFrame:
    if not keys:
        return df.select(exprs)
    return df.group_by(keys).agg(exprs).sort(keys, nulls_last=True)


# ---------------------------------------------------------------------------------------------
# strategies

key_sets = st.lists(st.sampled_from(KEYS), unique=True, max_size=2)
ORDERED = [m(f, c) for f in ("first", "last") for c in ("i", "f", "s", "flag")]
DISTINCT = [m("count_distinct", c) for c in ("i", "f", "s")]

# well-conditioned pairs: small integers and quarter units, constant and all-null groups likely
small_ints = st.one_of(st.none(), st.integers(-3, 3))
quarters = st.one_of(st.none(), st.integers(-400, 400).map(lambda v: v / 4))
PAIR_SCHEMA = {"city": pl.String, "code": pl.Int64, "x": pl.Int64, "y": pl.Float64,
               "z": pl.Float64, "w": pl.Int32}  # fmt: skip
PAIR_COLUMNS = {"city": st.sampled_from(["a", "b", None]), "code": st.one_of(st.none(),
                st.integers(0, 2)), "x": small_ints, "y": quarters, "z": quarters,
                "w": small_ints}  # fmt: skip
PAIRS = [m(f, c, other=o) for f in ("corr", "r2")
         for c, o in (("x", "y"), ("y", "z"), ("z", "x"), ("x", "w"))]


def pair_tables() -> st.SearchStrategy[pl.DataFrame]:
    return frames(PAIR_COLUMNS, PAIR_SCHEMA, 30)


def polars_expr(metric: Metric) -> pl.Expr:
    """The metric written directly with Polars."""
    match metric.function:
        case "first" | "last":
            return getattr(pl.col(metric.column), metric.function)()
        case "count_distinct":
            return pl.col(metric.column).drop_nulls().n_unique()
        case "corr" | "r2":
            x, y = pl.col(metric.column), pl.col(metric.other)
            both = x.is_not_null() & y.is_not_null()
            xs, ys = x.filter(both), y.filter(both)
            # null (Polars: NaN) below two complete pairs or for a constant column
            defined = (both.sum() > 1) & (xs.min() < xs.max()) & (ys.min() < ys.max())
            corr = pl.when(defined).then(pl.corr(x, y))
            return corr if metric.function == "corr" else corr**2
    return reference_expr(metric)


def polars_reference(agg: Aggregation, df: pl.DataFrame) -> pl.DataFrame:
    exprs = [polars_expr(x).alias(x.output_name) for x in agg.config.metrics]
    return by_keys(df, agg.config.group_by, exprs)


def tolerances(agg: Aggregation, df: pl.DataFrame) -> dict[str, float]:
    return {
        x.output_name: CORR_ATOL if x.function in ("corr", "r2") else
        tolerance(df, x.function, x.column) for x in agg.config.metrics
    }  # fmt: skip


@st.composite
def mixed(draw: st.DrawFn, pool: list[Metric], extra: list[Metric]) -> Aggregation:
    """Keys, some metrics of ``pool``, and at least one of the ``extra`` metrics."""
    keys = draw(key_sets)
    metrics = draw(st.lists(st.sampled_from(pool), max_size=3, unique_by=repr))
    metrics += draw(st.lists(st.sampled_from(extra), min_size=1, max_size=3, unique_by=repr))
    return build(keys, *list({repr(x): x for x in metrics}.values()))


# ---------------------------------------------------------------------------------------------
# first, last, count_distinct


@PROPERTY
@given(data=st.data(), df=tables())
def test_first_last_and_count_distinct_equal_polars(data: st.DataObject, df: pl.DataFrame) -> None:
    agg = data.draw(mixed(MERGEABLE + HOLISTIC, ORDERED + DISTINCT))
    assert_frames_match(frame(agg.run(df).table), polars_reference(agg, df), tolerances(agg, df))


@PROPERTY
@given(data=st.data(), df=tables())
def test_first_and_last_across_partitions_follow_partition_order(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    agg = data.draw(mixed(MERGEABLE + DISTINCT, ORDERED))
    parts = data.draw(split(df))
    whole = pl.concat(parts)  # the table as the partitions order it
    expected = polars_reference(agg, whole)
    atol = tolerances(agg, whole)
    assert_frames_match(frame(agg.combine([agg.partial(p) for p in parts]).table), expected, atol)
    assert_frames_match(tree(agg, parts), expected, atol)
    if agg.keys:
        n = data.draw(st.integers(1, 4))
        assert_frames_match(shuffled(agg, parts, n), expected, atol)


def test_first_and_last_are_the_values_of_the_first_and_last_rows_nulls_included() -> None:
    df = pl.DataFrame({"k": ["a", "a", "a", "b"], "v": [None, 2, 3, None]})
    rows = build(["k"], m("first", "v"), m("last", "v")).run(df).table.to_pylist()
    assert rows == [
        {"k": "a", "first_v": None, "last_v": 3},
        {"k": "b", "first_v": None, "last_v": None},
    ]


def test_first_of_an_empty_table_without_keys_is_null_also_after_a_merge() -> None:
    df = pl.DataFrame({"v": [1, 2]})
    agg = build([], m("first", "v"), m("last", "v"))
    assert agg.run(df.clear()).table.to_pylist() == [{"first_v": None, "last_v": None}]
    parts = [df.clear(), df, df.clear()]
    assert agg.combine([agg.partial(p) for p in parts]).table.to_pylist() == [
        {"first_v": 1, "last_v": 2}
    ]


def test_count_distinct_is_n_unique_under_its_own_name() -> None:
    df = pl.DataFrame({"k": [1, 1, 1, 2], "v": [7, 7, None, None]})
    table = build(["k"], m("count_distinct", "v"), m("n_unique", "v")).run(df).table
    assert table.column("count_distinct_v").to_pylist() == [1, 0]
    assert table.column("n_unique_v").to_pylist() == [1, 0]


# ---------------------------------------------------------------------------------------------
# corr and r2


@st.composite
def pair_aggregations(draw: st.DrawFn) -> Aggregation:
    keys = draw(st.lists(st.sampled_from(["city", "code"]), unique=True, max_size=2))
    metrics = draw(st.lists(st.sampled_from(PAIRS), min_size=1, max_size=3, unique_by=repr))
    extra = draw(st.lists(st.sampled_from([m("mean", "y"), m("std", "z"), m("count")]),
                          max_size=2, unique_by=repr))  # fmt: skip
    return build(keys, *metrics, *extra)


@PROPERTY
@given(data=st.data(), df=pair_tables())
def test_corr_and_r2_equal_polars_over_pairwise_complete_rows(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    agg = data.draw(pair_aggregations())
    expected = polars_reference(agg, df)
    atol = tolerances(agg, df)
    assert_frames_match(frame(agg.run(df).table), expected, atol)
    parts = data.draw(split(df))
    assert_frames_match(frame(agg.combine([agg.partial(p) for p in parts]).table), expected, atol)
    assert_frames_match(tree(agg, parts), expected, atol)


@DUCKDB_PROPERTY
@given(data=st.data(), df=pair_tables())
def test_corr_equals_duckdb_with_nan_as_null(data: st.DataObject, df: pl.DataFrame) -> None:
    keys = data.draw(st.lists(st.sampled_from(["city", "code"]), unique=True, max_size=2))
    agg = build(keys, m("corr", "x", other="y"), m("r2", "y", other="z"))
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    expected = duckdb_query(
        df,
        f"SELECT {''.join(k + ', ' for k in keys)}corr(x, y) AS corr_x_y, "
        f"pow(corr(y, z), 2) AS r2_y_z FROM t{group}",
    )
    expected = expected.with_columns(pl.col("corr_x_y", "r2_y_z").fill_nan(None))
    if keys:
        expected = expected.sort(keys, nulls_last=True)
    assert_frames_match(frame(agg.run(df).table), expected, tolerances(agg, df))


def test_corr_uses_rows_where_both_columns_have_values() -> None:
    df = pl.DataFrame({"x": [1.0, 2.0, 3.0, None, 5.0], "y": [1.0, None, 3.0, 4.0, 7.0]})
    table = build([], m("corr", "x", other="y"), m("r2", "x", other="y")).run(df).table
    expected = pl.DataFrame({"x": [1.0, 3.0, 5.0], "y": [1.0, 3.0, 7.0]}).select(pl.corr("x", "y"))
    assert table.column("corr_x_y").to_pylist() == pytest.approx([expected.item()], rel=1e-12)
    assert table.column("r2_x_y").to_pylist() == pytest.approx([expected.item() ** 2], rel=1e-12)


@pytest.mark.parametrize(
    ("x", "y"),
    [([1.0], [2.0]), ([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]), ([1.0, 2.0, None], [None, 5.0, 6.0]),
     ([None, None], [1.0, 2.0]), ([], [])],
    ids=["one pair", "constant column", "one complete pair", "no complete pair", "no rows"],
)  # fmt: skip
def test_corr_is_null_where_it_is_undefined(x: list[float | None], y: list[float | None]) -> None:
    df = pl.DataFrame({"x": x, "y": y}, schema={"x": pl.Float64, "y": pl.Float64})
    agg = build([], m("corr", "x", other="y"), m("r2", "x", other="y"))
    assert agg.run(df).table.to_pylist() == [{"corr_x_y": None, "r2_x_y": None}]
    parts = [df.slice(0, 1), df.slice(1)]
    assert agg.combine([agg.partial(p) for p in parts]).table.to_pylist() == [
        {"corr_x_y": None, "r2_x_y": None}
    ]


@pytest.mark.parametrize("dtype", [pl.Int8, pl.Int64, pl.UInt32])
@pytest.mark.parametrize(
    ("x", "y"),
    [([1], [2]), ([7, 7, 7], [1, 2, 3]), ([1, 2, None], [None, 5, 6]), ([None, None], [1, 2]),
     ([], [])],
    ids=["one pair", "constant column", "one complete pair", "no complete pair", "no rows"],
)  # fmt: skip
def test_corr_of_integers_is_null_where_it_is_undefined(
    x: list[int | None], y: list[int | None], dtype: pl.DataType
) -> None:
    df = pl.DataFrame({"x": x, "y": y}, schema={"x": dtype, "y": dtype})
    agg = build([], m("corr", "x", other="y"), m("r2", "x", other="y"))
    assert agg.run(df).table.to_pylist() == [{"corr_x_y": None, "r2_x_y": None}]


def test_corr_of_a_constant_column_of_huge_integers_is_null() -> None:
    # 2**60 + 1 is not a float64: sums of it are inexact, so the exact min/max check decides
    big = 2**60 + 1
    df = pl.DataFrame({"g": [1, 1, 1, 2, 2, 2], "x": [big] * 3 + [big, big // 2, big // 4],
                       "y": [1, 2, 3, 1, 2, 4]})  # fmt: skip
    out = build(["g"], m("corr", "x", other="y")).run(df).table.to_pylist()
    expected = np.corrcoef([float(big), float(big // 2), float(big // 4)], [1.0, 2.0, 4.0])
    assert out == [{"g": 1, "corr_x_y": None},
                   {"g": 2, "corr_x_y": pytest.approx(expected[0, 1], rel=1e-9)}]


def test_corr_of_a_string_column_raises_input_error() -> None:
    df = pl.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]})
    with pytest.raises(InputError, match="corr needs a numeric column; column 's'"):
        build([], m("corr", "x", other="s")).run(df)


# ---------------------------------------------------------------------------------------------
# top_k


def top_k_reference(df: pl.DataFrame, keys: list[str], column: str, k: int) -> pl.DataFrame:
    """The k largest non-null values per group, one row each (db-benchmark q8 in Polars)."""
    values = df.drop_nulls(column)
    if keys:
        out = values.group_by(keys).agg(pl.col(column).top_k(k)).explode(column)
    else:
        out = values.select(pl.col(column).top_k(k))
    return out.rename({column: f"top{k}_{column}"})


def in_result_order(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    value = df.columns[-1]
    return df.sort([*keys, value], descending=[False] * len(keys) + [True], nulls_last=True)


@PROPERTY
@given(data=st.data(), df=tables())
def test_top_k_equals_polars_one_row_per_value(data: st.DataObject, df: pl.DataFrame) -> None:
    keys = data.draw(key_sets)
    column = data.draw(st.sampled_from(["i", "f", "s"]))
    k = data.draw(st.integers(1, 4))
    agg = build(keys, m("top_k", column, k=k))
    expected = in_result_order(top_k_reference(df, keys, column, k), keys)
    assert_frames_match(frame(agg.run(df).table), expected)
    parts = data.draw(split(df))
    assert_frames_match(frame(agg.combine([agg.partial(p) for p in parts]).table), expected)
    assert_frames_match(tree(agg, parts), expected)
    if keys:
        assert_frames_match(shuffled(agg, parts, data.draw(st.integers(1, 4))), expected)


@DUCKDB_PROPERTY
@given(data=st.data(), df=tables())
def test_top_k_equals_duckdb_row_number_window(data: st.DataObject, df: pl.DataFrame) -> None:
    keys = data.draw(key_sets)
    column = data.draw(st.sampled_from(["i", "f", "s"]))
    k = data.draw(st.integers(1, 3))
    partition = f"PARTITION BY {', '.join(keys)} " if keys else ""
    expected = duckdb_query(
        df,
        f"SELECT {''.join(x + ', ' for x in keys)}{column} AS top{k}_{column} FROM "
        f"(SELECT *, row_number() OVER ({partition}ORDER BY {column} DESC) AS rank FROM t "
        f"WHERE {column} IS NOT NULL) WHERE rank <= {k}",
    )
    actual = frame(build(keys, m("top_k", column, k=k)).run(df).table)
    assert_frames_match(actual, in_result_order(expected, keys))


def test_top_k_rows_are_groups_in_key_order_values_descending_ties_kept() -> None:
    df = pl.DataFrame({"k": ["b", "a", "b", "a", "a", "c", None], "v": [1, 5, 3, 5, 2, None, 4]})
    result = build(["k"], m("top_k", "v", k=2)).run(df)
    assert result.table.to_pylist() == [
        {"k": "a", "top2_v": 5},
        {"k": "a", "top2_v": 5},
        {"k": "b", "top2_v": 3},
        {"k": "b", "top2_v": 1},
        {"k": None, "top2_v": 4},
    ]
    assert result.summary == {"groups": 3, "group_by": ["k"], "metrics": ["top2_v"]}


def test_top_k_of_an_empty_table_has_no_rows_and_typed_columns() -> None:
    df = pl.DataFrame({"k": ["a"], "v": [1.5]}).clear()
    result = build(["k"], m("top_k", "v", k=3)).run(df)
    assert frame(result.table).schema == pl.Schema({"k": pl.String, "top3_v": pl.Float64})
    assert result.table.num_rows == 0 and result.summary["groups"] == 0


def test_top_k_partials_keep_at_most_k_values_per_group() -> None:
    df = pl.DataFrame({"k": [1] * 10 + [2] * 10, "v": list(range(20))})
    agg = build(["k"], m("top_k", "v", k=2))
    assert not agg.mergeable
    assert frame(agg.partial(df)).sort("v").to_dict(as_series=False) == {
        "k": [1, 1, 2, 2],
        "v": [8, 9, 18, 19],
    }


def test_top_k_must_be_the_only_metric() -> None:
    with pytest.raises(ValidationError, match="top_k metric gives one row per value"):
        Aggregation.Config(group_by=["k"], metrics=[m("top_k", "v", k=2), m("count")])


def test_top_k_of_a_group_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="top_k of 'k', a group key"):
        Aggregation.Config(group_by=["k"], metrics=[m("top_k", "k", k=2)])


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"function": "top_k", "column": "v"}, "needs k"),
     ({"function": "top_k", "column": "v", "k": 0}, "greater than or equal to 1"),
     ({"function": "max", "column": "v", "k": 2}, "k is only allowed for function 'top_k'")],
)  # fmt: skip
def test_top_k_needs_a_positive_k_and_only_top_k_takes_k(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Metric.model_validate(fields)


# ---------------------------------------------------------------------------------------------
# expressions over aggregates

CALLS = [(fn, col) for fn in ("sum", "mean", "min", "max", "count", "median", "std", "var",
         "first", "last") for col in ("i", "f")] + [("count", None)]  # fmt: skip
SPELLING = {"mean": ["mean", "avg", "AVG"], "std": ["std", "stddev"], "var": ["var", "variance"]}


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, pl.Expr, float, str, str | None]:
    """(SQL text, Polars expression, coefficient, function, column) of one aggregate term."""
    function, column = draw(st.sampled_from(CALLS))
    spelled = draw(st.sampled_from(SPELLING.get(function, [function, function.upper()])))
    coefficient = draw(st.sampled_from([1, 2]))
    text = f"{spelled}({'*' if column is None else column})"
    expr = pl.len() if column is None else polars_expr(m(function, column))
    if function == "count":
        expr = expr.cast(pl.Int64)  # the kernel's count dtype (Polars: UInt32)
    if coefficient != 1:
        text, expr = f"{coefficient} * {text}", coefficient * expr
    return text, expr, coefficient, function, column


@PROPERTY
@given(data=st.data(), df=tables())
def test_expression_over_aggregates_equals_polars_arithmetic(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    keys = data.draw(key_sets)
    (t1, e1, c1, f1, col1), (t2, e2, c2, f2, col2) = data.draw(calls()), data.draw(calls())
    plus = data.draw(st.booleans())
    agg = build(keys, Metric(expr=f"{t1} {'+' if plus else '-'} {t2}", alias="e"), m("count"))
    parts = data.draw(split(df))
    whole = pl.concat(parts)  # first/last follow the partitions' order
    exprs = [(e1 + e2 if plus else e1 - e2).alias("e"), pl.len().alias("count")]
    expected = by_keys(whole, keys, exprs)
    assert_frames_match(frame(agg.run(whole).table), expected)
    atol = {"e": c1 * tolerance(df, f1, col1) + c2 * tolerance(df, f2, col2)}
    assert_frames_match(frame(agg.combine([agg.partial(p) for p in parts]).table), expected, atol)
    if keys:
        assert_frames_match(shuffled(agg, parts, data.draw(st.integers(1, 3))), expected, atol)


def test_db_benchmark_q7_range_is_max_minus_min_with_integer_dtype() -> None:
    df = pl.DataFrame({"id3": ["a", "a", "b", "c"], "v1": [1, 5, 3, None], "v2": [4, 2, 9, None]})
    agg = build(["id3"], Metric(expr="max(v1) - min(v2)", alias="range_v1_v2"))
    table = agg.run(df).table
    assert table.to_pylist() == [
        {"id3": "a", "range_v1_v2": 3},
        {"id3": "b", "range_v1_v2": -6},
        {"id3": "c", "range_v1_v2": None},
    ]
    assert table.schema.field("range_v1_v2").type == pa.int64()


def test_expression_may_use_sql_functions_keys_and_quoted_columns() -> None:
    df = pl.DataFrame({"k": [1, 1, 2], "my col": [3.0, 4.0, -5.0]})
    expr = 'abs(sum("my col")) * k + coalesce(max("my col"), 0) / count(*)'
    table = build(["k"], Metric(expr=expr, alias="x")).run(df).table
    assert table.column("x").to_pylist() == [7.0 + 2.0, 10.0 - 5.0]


def test_expressions_share_hidden_aggregates_and_hide_them() -> None:
    agg = build(
        ["k"],
        Metric(expr="max(v) - min(v)", alias="spread"),
        Metric(expr="MAX(v) + 1", alias="top"),
    )
    assert [(x.function, x.column) for x in agg.plan.computed] == [("max", "v"), ("min", "v")]
    df = pl.DataFrame({"k": [1, 1], "v": [2, 7]})
    assert agg.run(df).table.to_pylist() == [{"k": 1, "spread": 5, "top": 8}]


def test_tokenizer_reads_calls_outside_string_literals_only() -> None:
    parsed = parse_expression("CASE WHEN max(v) > 1 THEN 'max(w)' ELSE \"x\" END")
    assert [(c.function, c.column) for c in parsed.calls] == [("max", "v")]
    rendered = parsed.render({parsed.calls[0]: "h"})
    assert rendered == "CASE WHEN \"h\" > 1 THEN 'max(w)' ELSE \"x\" END"


@pytest.mark.parametrize(
    ("expr", "message"),
    [("max(v1 + 1)", "arguments must be column names"),
     ("sum(DISTINCT v)", "arguments must be column names"),
     ("corr(v)", r"corr\(x, y\)"),
     ("max(v) - w", "refers to 'w', which is not a group key"),
     ("max(v) +", "not a valid SQL expression"),
     ("foo(v) + max(v)", "not a valid SQL expression"),
     ("max(v) -- min(v)", "comments are not allowed"),
     ("v + 1", "has no aggregate call"),
     ("max(v) $ 2", "unexpected character '\\$'")],
)  # fmt: skip
def test_bad_expressions_are_rejected_when_the_config_is_built(expr: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Aggregation.Config(group_by=["k"], metrics=[Metric(expr=expr, alias="x")])


def test_expression_needs_an_alias_and_no_function_fields() -> None:
    with pytest.raises(ValidationError, match="needs an alias"):
        Metric(expr="max(v)")
    with pytest.raises(ValidationError, match="may not also set column, function"):
        Metric.model_validate({"expr": "max(v)", "alias": "x", "column": "v", "function": "max"})


def test_expression_that_cannot_be_evaluated_raises_input_error_naming_the_metric() -> None:
    df = pl.DataFrame({"s": ["a", "b"], "v": [1, 2]})
    agg = build([], Metric(expr="max(s) * min(v)", alias="odd"))
    with pytest.raises(InputError, match="metric 'odd': cannot evaluate its expr"):
        agg.run(df)


def test_numeric_aggregate_of_an_expression_on_strings_names_the_expression_metric() -> None:
    df = pl.DataFrame({"s": ["a", "b"]})
    with pytest.raises(InputError, match=r"metric 'x' \(sum\(s\)\): sum needs a numeric column"):
        build([], Metric(expr="sum(s) + 1", alias="x")).run(df)


# ---------------------------------------------------------------------------------------------
# having and order_by


HAVINGS = [
    ("count > {t}", lambda t: pl.col("count") > t),
    ("count(*) >= {t} AND max_i IS NOT NULL",
     lambda t: (pl.col("count") >= t) & pl.col("max_i").is_not_null()),
    ("sum(i) > {t} OR min(f) < 0", lambda t: (pl.col("sum_i") > t) | (pl.col("min_f") < 0)),
]  # fmt: skip


@PROPERTY
@given(data=st.data(), df=tables(), threshold=st.integers(-2, 4))
def test_having_equals_polars_filter_after_the_aggregation(
    data: st.DataObject, df: pl.DataFrame, threshold: int
) -> None:
    keys = data.draw(key_sets)
    having, condition = data.draw(st.sampled_from(HAVINGS))
    metrics = [m("count"), m("max", "i"), m("median", "f")]
    agg = build(keys, *metrics, having=having.format(t=threshold))
    exprs = [pl.len().alias("count"), pl.col("i").max().alias("max_i"),
             pl.col("f").median().alias("median_f"), pl.col("i").sum().alias("sum_i"),
             pl.col("f").min().alias("min_f")]  # fmt: skip
    expected = by_keys(df, keys, exprs).filter(condition(threshold))
    expected = expected.select(*keys, "count", "max_i", "median_f")
    assert_frames_match(frame(agg.run(df).table), expected)
    if keys:
        parts = data.draw(split(df))
        assert_frames_match(shuffled(agg, parts, data.draw(st.integers(1, 3))), expected)


def test_having_drops_rows_where_the_condition_is_null() -> None:
    df = pl.DataFrame({"k": [1, 2, 2], "v": [None, 3, 4]})
    agg = build(["k"], m("max", "v"), having="max_v > 0")
    assert agg.run(df).table.to_pylist() == [{"k": 2, "max_v": 4}]


@pytest.mark.parametrize(
    ("having", "message"),
    [("sum_w > 1", "refers to 'sum_w', which is not an output column"),
     ("count >", "not a valid SQL expression")],
)  # fmt: skip
def test_bad_having_is_rejected_when_the_config_is_built(having: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Aggregation.Config(group_by=["k"], metrics=[m("count")], having=having)


def test_having_on_top_k_filters_its_rows_but_may_not_add_aggregates() -> None:
    df = pl.DataFrame({"k": [1, 1, 2], "v": [5, 1, 3]})
    agg = build(["k"], m("top_k", "v", k=2), having="top2_v > 1")
    assert agg.run(df).table.to_pylist() == [{"k": 1, "top2_v": 5}, {"k": 2, "top2_v": 3}]
    with pytest.raises(ValidationError, match="having over a top_k result"):
        Aggregation.Config(group_by=["k"], metrics=[m("top_k", "v", k=2)], having="count(*) > 1")


def test_order_by_sorts_by_the_named_columns_then_the_keys() -> None:
    df = pl.DataFrame({"k": ["a", "b", "c", "d"], "v": [2, None, 2, 5]})
    agg = build(["k"], m("sum", "v", alias="total"), order_by=["total"], descending=True)
    assert agg.run(df).table.column("k").to_pylist() == ["d", "a", "c", "b"]
    agg = build(["k"], m("max", "v"), order_by=["max_v", "k"], descending=[False, True])
    assert agg.run(df).table.column("k").to_pylist() == ["c", "a", "d", "b"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"order_by": ["nope"]}, "order_by names 'nope', which is not an output column"),
     ({"descending": True}, "descending needs order_by"),
     ({"order_by": ["count"], "descending": [True, False]}, "2 flags for 1 order_by")],
)  # fmt: skip
def test_bad_order_is_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Aggregation.Config(group_by=["k"], metrics=[m("count")], **options)


# ---------------------------------------------------------------------------------------------
# config of the new functions


def test_default_output_names_of_the_new_functions() -> None:
    assert m("top_k", "v", k=2).output_name == "top2_v"
    assert m("corr", "x", other="y").output_name == "corr_x_y"
    assert m("r2", "x", other="y").output_name == "r2_x_y"
    assert m("count_distinct", "v").output_name == "count_distinct_v"
    assert m("first", "v").output_name == "first_v"


def test_corr_needs_other_and_only_corr_and_r2_take_it() -> None:
    with pytest.raises(ValidationError, match="'corr' needs other"):
        m("corr", "x")
    with pytest.raises(ValidationError, match="other is only allowed"):
        m("sum", "x", other="y")


def test_reserved_internal_prefix_is_rejected_as_an_alias() -> None:
    with pytest.raises(ValidationError, match="reserved"):
        Aggregation.Config(metrics=[Metric(function="count", alias="__rs_len")])


def test_required_columns_include_the_other_column_and_expression_columns() -> None:
    agg = build(["k"], m("corr", "x", other="y"), Metric(expr="max(w) - min(x)", alias="r"))
    assert agg.required_columns() == ["k", "x", "y", "w"]


# ---------------------------------------------------------------------------------------------
# choosing the distributed path


@pytest.mark.parametrize(
    ("metric", "mergeable"),
    [(m("first", "v"), True), (m("last", "v"), True), (m("corr", "v", other="w"), True),
     (m("r2", "v", other="w"), True), (Metric(expr="max(v) - min(w)", alias="e"), True),
     (Metric(expr="median(v) + 1", alias="e"), False), (m("count_distinct", "v"), False),
     (m("top_k", "v", k=1), False), (m("median", "v"), False)],
)  # fmt: skip
def test_holistic_metrics_shuffle_by_the_keys_and_mergeable_ones_do_not(
    metric: Metric, mergeable: bool
) -> None:
    agg = build(["k"], metric)
    assert agg.mergeable is mergeable
    assert agg.shuffle_keys() == (None if mergeable else ["k"])
    assert build([], metric).shuffle_keys() is None


EVERYTHING = MERGEABLE + HOLISTIC + ORDERED + DISTINCT


@PROPERTY
@given(data=st.data(), df=tables())
def test_shuffle_path_equals_run_on_the_partitions_in_order(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    keys = data.draw(st.lists(st.sampled_from(KEYS), unique=True, min_size=1, max_size=2))
    metrics = data.draw(st.lists(st.sampled_from(EVERYTHING), min_size=1, max_size=5,
                                 unique_by=repr))  # fmt: skip
    agg = build(keys, *metrics)
    parts = data.draw(split(df))
    whole = agg.run(pl.concat(parts))
    n = data.draw(st.integers(1, 5))
    shards = [agg.shard(p, n) for p in parts]
    result = agg.finish([agg.reduce_shard([s[i] for s in shards]) for i in range(n)])
    assert result.table.schema == whole.table.schema
    assert result.summary == whole.summary
    assert_frames_match(frame(result.table), frame(whole.table), tolerances(agg, df))


@PROPERTY
@given(data=st.data(), df=tables())
def test_shard_puts_each_group_in_one_shard_keeping_row_order(
    data: st.DataObject, df: pl.DataFrame
) -> None:
    keys = data.draw(st.lists(st.sampled_from(KEYS), unique=True, min_size=1, max_size=3))
    agg = build(keys, m("median", "f"))
    n = data.draw(st.integers(1, 6))
    indexed = df.with_row_index("row").with_columns(pl.col("row").cast(pl.Float64).alias("f"))
    shards = [frame(t) for t in agg.shard(indexed, n)]
    assert len(shards) == n
    assert all(s.columns == [*keys, "f"] for s in shards)
    assert sum(s.height for s in shards) == df.height
    homes = pl.concat([s.select(keys).unique() for s in shards])
    assert homes.is_duplicated().sum() == 0  # no group in two shards
    assert all(s.get_column("f").is_sorted() for s in shards)  # rows in partition order


def test_keys_of_different_widths_and_categories_land_in_the_same_shard() -> None:
    agg = build(["k", "c"], m("median", "v"))
    values = {"k": [1, 2, 3, None, 5, 6, 7, 8], "c": ["a", "b", None, "d", "e", "f", "g", "h"],
              "v": [1.0] * 8}  # fmt: skip
    wide = pl.DataFrame(values, schema={"k": pl.Int64, "c": pl.String, "v": pl.Float64})
    narrow = pl.DataFrame(values, schema={"k": pl.Int16, "c": pl.Categorical, "v": pl.Float32})
    placement = [[frame(t).get_column("k").to_list() for t in agg.shard(df, 4)]
                 for df in (wide, narrow)]  # fmt: skip
    assert placement[0] == placement[1]
    assert sum(1 for keys in placement[0] if keys) > 1  # the groups are spread over the shards


def test_shard_placement_is_the_same_in_another_process() -> None:
    code = (
        "import polars as pl\n"
        "from raysight.analyses.aggregation import Aggregation, Metric\n"
        "agg = Aggregation(Aggregation.Config(group_by=['k', 's'], "
        "metrics=[Metric(function='median', column='v')]))\n"
        "df = pl.DataFrame({'k': [1, 2, None, 4, 5], 's': ['x', None, 'z', 'w', 'v'], "
        "'v': [1.0, 2.0, 3.0, 4.0, 5.0]})\n"
        "print([t.column('v').to_pylist() for t in agg.shard(df, 3)])\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    here = build(["k", "s"], m("median", "v")).shard(
        pl.DataFrame({"k": [1, 2, None, 4, 5], "s": ["x", None, "z", "w", "v"],
                      "v": [1.0, 2.0, 3.0, 4.0, 5.0]}), 3)  # fmt: skip
    expected = str([t.column("v").to_pylist() for t in here])
    assert [r.stdout.strip() for r in runs] == [expected, expected]


def test_shuffle_api_misuse_raises_value_error() -> None:
    df = pl.DataFrame({"k": [1], "v": [1.0]})
    with pytest.raises(ValueError, match="n >= 1"):
        build(["k"], m("median", "v")).shard(df, 0)
    with pytest.raises(ValueError, match="group keys"):
        build([], m("median", "v")).shard(df, 2)
    with pytest.raises(ValueError, match="at least one"):
        build(["k"], m("median", "v")).reduce_shard([])
    with pytest.raises(ValueError, match="at least one"):
        build(["k"], m("median", "v")).finish([])


def test_sort_false_returns_the_same_rows_in_unspecified_order():
    df = pl.DataFrame({"k": ["b", "a", None, "b", "c"], "v": [1, 2, 3, 4, 5]})
    metrics = [{"column": "v", "function": "sum", "alias": "s"}]
    ordered = Aggregation(AggregationConfig(group_by=["k"], metrics=metrics)).run(df).table
    loose = Aggregation(AggregationConfig(group_by=["k"], metrics=metrics, sort=False)).run(df)
    assert sorted(pl.from_arrow(loose.table).rows(), key=str) == sorted(
        pl.from_arrow(ordered).rows(), key=str)


def test_sort_false_with_order_by_is_rejected():
    with pytest.raises(ValidationError, match="choose one"):
        AggregationConfig(group_by=["k"], metrics=[{"function": "count"}], sort=False,
                          order_by=["count"])


def test_float_aggregates_are_the_same_bits_on_every_run() -> None:
    # Polars' streaming engine merges parallel morsels in arrival order: its float sums vary
    # in the last bits from run to run; a resumed job must give the uninterrupted answer
    rng = np.random.default_rng(7)
    rows = 2_000_000
    df = pl.DataFrame({"g": rng.integers(0, 5, rows), "x": rng.random(rows) * 100,
                       "i": rng.integers(0, 10, rows), "j": rng.integers(0, 10, rows)})  # fmt: skip
    agg = build(["g"], m("sum", "x"), m("mean", "x"), m("std", "i"), m("corr", "i", other="j"),
                m("sum", "i"), m("count", "x"))  # fmt: skip
    first = agg.run(df).table
    for _ in range(4):
        assert agg.run(df).table.equals(first)


def test_exact_aggregates_stream_and_float_ones_run_in_memory() -> None:
    schema = pl.Schema({"g": pl.Int64, "x": pl.Float64, "i": pl.Int32})
    assert build(["g"], m("sum", "i"), m("mean", "i"), m("count", "x"), m("max", "x"),
                 m("count_distinct", "x"))._engine(schema) == "streaming"  # fmt: skip
    for metric in (m("sum", "x"), m("mean", "x"), m("std", "i"), m("median", "i"),
                   m("first", "i"), m("corr", "i", other="x")):  # fmt: skip
        assert build(["g"], metric)._engine(schema) == "in-memory", metric
