"""Specification of the custom kernels (raysight.analyses.correlation, .outliers, .text).

References: pandas ``df.corr(method, min_periods=1)`` and ``scipy.stats.spearmanr`` for the
correlation matrix, numpy for outlier bounds, Python's ``re`` + ``Counter`` for word counts;
each on the whole table and across random partitionings (``combine`` of the partitions'
``partial`` states). Float data lie on a grid of quarters so that both sides round alike;
correlations agree to 1e-9 (absolute, as r is bounded by 1).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from pydantic import ValidationError
from scipy import stats
from strategies import frames, split

from raysight import registry
from raysight.analyses.correlation import CorrelationMatrix
from raysight.analyses.outliers import OutlierDetection
from raysight.analyses.text import ENGLISH_STOP_WORDS, TextFrequency
from raysight.errors import InputError
from raysight.job.spec import parse_spec
from raysight.plugins import Analysis, AnalysisResult

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

quarters = st.integers(-4000, 4000).map(lambda v: v / 4)


def distributed(kernel: Analysis[Any], parts: list[pl.DataFrame]) -> AnalysisResult:
    return kernel.combine([kernel.partial(p) for p in parts])


def frame(result: AnalysisResult) -> pl.DataFrame:
    out = pl.from_arrow(result.table)
    assert isinstance(out, pl.DataFrame)
    return out


# ---------------------------------------------------------------------------------------------
# correlation_matrix

CORR_SCHEMA = {"a": pl.Int64, "b": pl.Float64, "c": pl.Float64, "d": pl.Int32, "s": pl.String}
CORR_COLUMNS = {
    "a": st.one_of(st.none(), st.integers(-20, 20)),
    "b": st.one_of(st.none(), st.just(math.nan), quarters),
    "c": st.one_of(st.none(), st.sampled_from([-1.5, 0.0, 2.25, 1000.0]), quarters),
    "d": st.one_of(st.none(), st.just(7)),  # constant wherever present
    "s": st.one_of(st.none(), st.sampled_from(["1", "Zürich", "東京"])),
}
NUMERIC = ["a", "b", "c", "d"]


def corr(**options: Any) -> CorrelationMatrix:
    return CorrelationMatrix(CorrelationMatrix.Config(**options))


def matrix(result: AnalysisResult, columns: list[str]) -> np.ndarray:
    table = frame(result)
    assert table.get_column("column").to_list() == columns
    return table.select(columns).to_numpy().astype(np.float64)


def pandas_corr(df: pl.DataFrame, columns: list[str], method: str) -> np.ndarray:
    numeric = df.select(pl.col(columns).cast(pl.Float64).fill_nan(None)).to_pandas()
    return numeric.corr(method=method, min_periods=1).to_numpy()


@PROPERTY
@given(data=st.data(), df=frames(CORR_COLUMNS, CORR_SCHEMA),
       method=st.sampled_from(["pearson", "spearman"]))
def test_correlation_equals_pandas_pairwise_complete_across_partitions(data, df, method):
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    expected = pandas_corr(whole, NUMERIC, method)
    kernel = corr(method=method)
    np.testing.assert_allclose(matrix(kernel.run(whole), NUMERIC), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        matrix(distributed(kernel, parts), NUMERIC), expected, rtol=0, atol=1e-9
    )


@PROPERTY
@given(data=st.data(), df=frames(CORR_COLUMNS, CORR_SCHEMA))
def test_pearson_partials_merge_as_a_tree(data, df):
    kernel = corr(columns=["a", "b", "c"])
    partials = [kernel.partial(p) for p in data.draw(split(df))]
    cut = data.draw(st.integers(1, len(partials)))
    left, right = partials[:cut], partials[cut:]
    tree = [kernel.merge(left)] + ([kernel.merge(right)] if right else [])
    np.testing.assert_allclose(
        matrix(kernel.finalize(kernel.merge(tree)), ["a", "b", "c"]),
        matrix(kernel.combine(partials), ["a", "b", "c"]),
        rtol=0, atol=1e-12,
    )


@settings(max_examples=40, deadline=None)
@given(columns=st.lists(st.lists(quarters, min_size=8, max_size=8), min_size=3, max_size=4))
def test_spearman_equals_scipy_on_complete_data(columns):
    for values in columns:
        assume(len(set(values)) > 1)
    df = pl.DataFrame({f"x{i}": v for i, v in enumerate(columns)})
    expected = stats.spearmanr(df.to_numpy()).statistic
    names = list(df.columns)
    np.testing.assert_allclose(
        matrix(corr(method="spearman").run(df), names), expected, rtol=0, atol=1e-9
    )


def test_seed_example_perfect_positive_and_negative_correlation():
    x = [1.0, 2.0, 3.0, 5.0, 8.0]
    df = pl.DataFrame({"x": x, "twice": [2 * v for v in x], "neg": [-v for v in x]})
    m = matrix(corr().run(df), ["x", "twice", "neg"])
    assert m[0, 1] == pytest.approx(1.0, abs=1e-12)
    assert m[0, 2] == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_array_equal(np.diagonal(m), [1.0, 1.0, 1.0])


def test_constant_column_correlates_as_null_not_zero():
    # r is undefined (not 0) when a variance is 0. 0.1 does not average exactly,
    # so a tiny rounding variance must not produce a number either.
    df = pl.DataFrame({"x": [1.0, 2.0, 3.0], "k": [0.1, 0.1, 0.1]})
    result = corr().run(df)
    table = frame(result)
    assert table.get_column("k").to_list() == [None, None]
    assert table.get_column("x").to_list() == [1.0, None]
    assert result.summary["matrix"]["x"]["k"] is None


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_pairs_use_only_rows_where_both_columns_are_present(method):
    # misaligned nulls: aligning by position after dropping nulls would pair 1 with 10...
    df = pl.DataFrame({"x": [1.0, None, 2.0, 3.0, 4.0], "y": [10.0, 20.0, None, 30.0, 35.0]})
    result = corr(method=method).run(df)
    r = frame(result).get_column("y")[0]
    expected = pandas_corr(df, ["x", "y"], method)[0, 1]
    assert r == pytest.approx(expected, abs=1e-12)
    assert result.summary["observations"]["x"] == {"x": 4, "y": 3}


def test_spearman_reranks_a_complete_column_within_each_pair():
    # x has no nulls and ties; paired with y, x is ranked again over the rows y has
    df = pl.DataFrame({"x": [3.0, 1.0, 3.0, 2.0, 2.0, 5.0, 1.0],
                       "y": [None, 4.0, 1.0, None, 2.0, 2.0, 0.5]})
    expected = stats.spearmanr([1.0, 3.0, 2.0, 5.0, 1.0], [4.0, 1.0, 2.0, 2.0, 0.5]).statistic
    assert frame(corr(method="spearman").run(df)).get_column("y")[0] == pytest.approx(
        expected, abs=1e-12)


def test_nan_is_missing_like_null():
    with_nan = pl.DataFrame({"x": [1.0, math.nan, 2.0, 4.0], "y": [1.0, 5.0, 3.0, 2.0]})
    with_null = with_nan.with_columns(pl.col("x").fill_nan(None))
    assert_frame_equal(frame(corr().run(with_nan)), frame(corr().run(with_null)))


def test_default_columns_come_from_the_schema_not_the_first_row():
    df = pl.DataFrame(
        {"late": [None, 1.0, 2.0], "s": ["1", "2", "3"], "flag": [True, False, True],
         "n": [3, 1, 2]},
        schema={"late": pl.Float64, "s": pl.String, "flag": pl.Boolean, "n": pl.UInt16},
    )
    result = corr().run(df)
    assert frame(result).columns == ["column", "late", "n"]
    assert result.summary["columns"] == ["late", "n"]


def test_named_columns_keep_their_order():
    df = pl.DataFrame({"a": [1, 2, 4], "b": [3, 1, 2], "c": [0.5, 0.25, 1.0]})
    assert frame(corr(columns=["c", "a"]).run(df)).columns == ["column", "c", "a"]


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_empty_and_single_row_tables_give_null_matrices(method):
    for df in (pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Float64, "b": pl.Int64}),
               pl.DataFrame({"a": [1.5], "b": [2]})):
        result = corr(method=method).run(df)
        assert frame(result).select("a", "b").null_count().row(0) == (2, 2)
        assert result.summary["row_count"] == df.height


def test_table_without_numeric_columns_gives_an_empty_matrix():
    result = corr().run(pl.DataFrame({"s": ["a", "b"]}))
    assert frame(result).shape == (0, 1)
    assert result.summary["matrix"] == {}


def test_mergeable_is_declared_per_method():
    df = pl.DataFrame({"a": [1.0, 2.0], "b": [2.0, 1.0]})
    pearson, spearman = corr(), corr(method="spearman")
    assert pearson.mergeable is True and spearman.mergeable is False
    assert "moments" in pearson.partial(df) and "rows" not in pearson.partial(df)
    assert isinstance(spearman.partial(df)["rows"], pa.Table)


def test_correlation_column_errors_name_the_column():
    df = pl.DataFrame({"amount": [1.0, 2.0], "region": ["N", "S"]})
    with pytest.raises(InputError, match="'amnt' not found.*did you mean 'amount'"):
        corr(columns=["amnt"]).run(df)
    with pytest.raises(InputError, match="'region' is String, not a numeric column"):
        corr(columns=["amount", "region"]).run(df)


def test_a_variable_named_column_is_rejected():
    with pytest.raises(InputError, match="named 'column' clashes"):
        corr().run(pl.DataFrame({"column": [1.0, 2.0], "b": [2.0, 1.0]}))


def test_partitions_with_different_numeric_columns_are_rejected():
    kernel = corr()
    first = kernel.partial(pl.DataFrame({"a": [1.0], "b": [2.0]}))
    second = kernel.partial(pl.DataFrame({"a": [1.0], "b": ["x"]}))
    with pytest.raises(InputError, match="different numeric columns"):
        kernel.combine([first, second])


@pytest.mark.parametrize("options, message", [
    ({"columns": []}, "at least 1 item"),
    ({"columns": ["a", "a"]}, "'a' more than once"),
    ({"method": "kendall"}, "'pearson' or 'spearman'"),
    ({"colums": ["a"]}, "Extra inputs are not permitted"),
])
def test_correlation_config_is_strict(options, message):
    with pytest.raises(ValidationError, match=message):
        CorrelationMatrix.Config(**options)


# ---------------------------------------------------------------------------------------------
# outlier_detection

OUT_SCHEMA = {"x": pl.Int64, "y": pl.Float64, "s": pl.String}
OUT_COLUMNS = {
    "x": st.one_of(st.none(), st.integers(-30, 30), st.integers(-10**4, 10**4)),
    "y": st.one_of(st.none(), st.just(math.nan), quarters, st.just(1000.0)),
    "s": st.one_of(st.none(), st.sampled_from(["Zürich", "東京", ""])),
}


def outliers(**options: Any) -> OutlierDetection:
    return OutlierDetection(OutlierDetection.Config(**options))


def values_of(df: pl.DataFrame, column: str) -> np.ndarray:
    v = df.get_column(column).cast(pl.Float64).to_numpy()
    return v[~np.isnan(v)]


def expected_rows(df: pl.DataFrame, column: str, lower: float, upper: float) -> pl.DataFrame:
    v = pl.col(column).cast(pl.Float64).fill_nan(None)
    kind = pl.when(v < lower).then(pl.lit("low")).when(v > upper).then(pl.lit("high"))
    return (
        df.with_columns(kind.alias("outlier_type"))
        .with_row_index("row_index")
        .with_columns(pl.col("row_index").cast(pl.Int64))
        .filter(pl.col("outlier_type").is_not_null())
        .select(*df.columns, "outlier_type", "row_index")
    )


@PROPERTY
@given(data=st.data(), df=frames(OUT_COLUMNS, OUT_SCHEMA), column=st.sampled_from(["x", "y"]),
       k=st.sampled_from([0.0, 0.5, 1.5, 3.0]),
       quantile_method=st.sampled_from(["linear", "nearest_lower"]))
def test_iqr_outliers_equal_numpy_across_partitions(data, df, column, k, quantile_method):
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    kernel = outliers(column=column, k=k, quantile_method=quantile_method)
    v = values_of(whole, column)
    result = distributed(kernel, parts)
    assert_frame_equal(frame(result), frame(kernel.run(whole)))
    if v.size == 0:
        assert frame(result).height == 0 and result.summary["lower_bound"] is None
        return
    if quantile_method == "linear":
        q1, q3 = np.quantile(v, [0.25, 0.75])
    else:
        ordered = np.sort(v)
        q1, q3 = ordered[v.size // 4], ordered[3 * v.size // 4]
    lower, upper = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    assert (result.summary["q1"], result.summary["q3"]) == (q1, q3)
    assert (result.summary["lower_bound"], result.summary["upper_bound"]) == (lower, upper)
    assert_frame_equal(frame(result), expected_rows(whole, column, lower, upper))
    assert result.summary["value_count"] == v.size
    assert result.summary["count"] == frame(result).height


@PROPERTY
@given(data=st.data(), df=frames(OUT_COLUMNS, OUT_SCHEMA, max_rows=40),
       threshold=st.sampled_from([0.5, 1.0, 2.0, 3.0]))
def test_zscore_outliers_equal_numpy_across_partitions(data, df, threshold):
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    kernel = outliers(column="y", method="zscore", threshold=threshold)
    result = distributed(kernel, parts)
    assert_frame_equal(frame(result), frame(kernel.run(whole)))
    v = whole.get_column("y").fill_nan(None).to_numpy().astype(np.float64)
    present = ~np.isnan(v)
    if not present.any():
        assert frame(result).height == 0
        return
    mean, std = v[present].mean(), v[present].std(ddof=0)
    scale = float(np.abs(v[present]).max()) + 1.0
    assert result.summary["mean"] == pytest.approx(mean, rel=1e-9, abs=1e-12 * scale)
    assert result.summary["std"] == pytest.approx(std, rel=1e-9, abs=1e-12 * scale)
    # rounding decides values within a hair of a bound; every other value must agree
    margin = 1e-9 * scale
    lower, upper = mean - threshold * std, mean + threshold * std
    flagged = dict(zip(frame(result).get_column("row_index").to_list(),
                       frame(result).get_column("outlier_type").to_list(), strict=True))
    for i in np.flatnonzero(present):
        if v[i] < lower - margin:
            assert flagged.get(i) == "low"
        elif v[i] > upper + margin:
            assert flagged.get(i) == "high"
        elif lower + margin < v[i] < upper - margin:
            assert i not in flagged
    assert set(flagged) <= set(np.flatnonzero(present).tolist())


SEED = pl.DataFrame({"id": list("abcdefghij"), "value": [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]})


def test_seed_example_with_the_seed_quartiles():
    result = outliers(column="value", quantile_method="nearest_lower").run(SEED)
    s = result.summary
    assert (s["q1"], s["q3"], s["iqr"]) == (3.0, 8.0, 5.0)
    assert (s["lower_bound"], s["upper_bound"]) == (-4.5, 15.5)
    assert frame(result).to_dicts() == [
        {"id": "j", "value": 100, "outlier_type": "high", "row_index": 9}
    ]


def test_seed_example_with_linear_quartiles_the_default():
    result = outliers(column="value").run(SEED)
    s = result.summary
    assert (s["q1"], s["q3"], s["quantile_method"]) == (3.25, 7.75, "linear")
    assert (s["lower_bound"], s["upper_bound"]) == (-3.5, 14.5)
    assert frame(result).get_column("row_index").to_list() == [9]


def test_seed_threshold_selects_the_zscore_method_and_is_honoured():
    # threshold 3.0 alone means a z-score. With n = 10 no single value can
    # lie more than sqrt(n - 1) = 3 population standard deviations from the mean.
    config = OutlierDetection.Config.model_validate({"column": "value", "threshold": 3.0})
    assert config.method == "zscore"
    assert frame(OutlierDetection(config).run(SEED)).height == 0
    result = outliers(column="value", threshold=2.5).run(SEED)
    assert result.summary["mean"] == 14.5
    assert result.summary["std"] == pytest.approx(math.sqrt(818.25))
    assert frame(result).get_column("row_index").to_list() == [9]


def test_low_and_high_outliers_are_typed_and_counted():
    df = pl.DataFrame({"v": [-100, 1, 2, 3, 4, 5, 6, 7, 8, 100]})
    result = outliers(column="v").run(df)
    assert frame(result).select("outlier_type", "row_index").rows() == [("low", 0), ("high", 9)]
    assert (result.summary["low_count"], result.summary["high_count"]) == (1, 1)


def test_row_index_counts_every_row_of_earlier_partitions():
    parts = [
        pl.DataFrame({"v": [None, 1.0, 2.0]}),
        pl.DataFrame({"v": []}, schema={"v": pl.Float64}),
        pl.DataFrame({"v": [3.0, math.nan, 500.0, 2.0, 1.0]}),
    ]
    result = distributed(outliers(column="v"), parts)
    assert frame(result).get_column("row_index").to_list() == [5]
    assert (result.summary["row_count"], result.summary["value_count"]) == (8, 6)


def test_nulls_and_nan_are_never_outliers():
    df = pl.DataFrame({"v": [1.0, 2.0, None, math.nan, 3.0, 2.0]})
    result = outliers(column="v", k=0.0).run(df)
    assert frame(result).get_column("row_index").to_list() == [0, 4]


@pytest.mark.parametrize("method", ["iqr", "zscore"])
def test_constant_column_has_no_outliers(method):
    df = pl.DataFrame({"v": [0.1] * 7})
    assert frame(outliers(column="v", method=method).run(df)).height == 0


def test_include_rows_false_keeps_only_the_column():
    result = outliers(column="value", include_rows=False).run(SEED)
    assert frame(result).columns == ["value", "outlier_type", "row_index"]


@pytest.mark.parametrize("df", [
    pl.DataFrame({"v": [], "s": []}, schema={"v": pl.Int64, "s": pl.String}),
    pl.DataFrame({"v": [None, None], "s": ["a", "b"]}, schema={"v": pl.Float64, "s": pl.String}),
    pl.DataFrame({"v": [None], "s": ["a"]}, schema={"v": pl.Null, "s": pl.String}),
])
def test_no_values_give_an_empty_result_with_the_schema(df):
    result = outliers(column="v").run(df)
    assert frame(result).height == 0
    assert frame(result).columns == ["v", "s", "outlier_type", "row_index"]
    assert frame(result).schema["row_index"] == pl.Int64
    assert result.summary["count"] == 0 and result.summary["upper_bound"] is None


def test_single_row_is_not_an_outlier():
    assert frame(outliers(column="value").run(SEED.head(1))).height == 0


def test_outlier_column_errors_name_the_column():
    with pytest.raises(InputError, match="'valu' not found.*did you mean 'value'"):
        outliers(column="valu").run(SEED)
    with pytest.raises(InputError, match="'id' is String, not a numeric column"):
        outliers(column="id").run(SEED)
    with pytest.raises(InputError, match="already has a column 'row_index'"):
        outliers(column="value").run(SEED.with_columns(row_index=pl.lit(1)))


@pytest.mark.parametrize("options, message", [
    ({"column": "v", "method": "iqr", "threshold": 2.0}, "threshold is an option of method"),
    ({"column": "v", "method": "zscore", "k": 2.0}, "k is an option of method 'iqr'"),
    ({"column": "v", "threshold": 2.0, "quantile_method": "nearest_lower"}, "quantile_method is"),
    ({"column": "v", "k": -1.0}, "greater than or equal to 0"),
    ({"column": "v", "k": math.nan}, "finite number"),
    ({"column": "v", "method": "zscore", "threshold": 0.0}, "greater than 0"),
    ({"column": "v", "quantile_method": "midpoint"}, "'linear' or 'nearest_lower'"),
    ({"column": ""}, "at least 1 character"),
    ({}, "column\n  Field required"),
])
def test_outlier_config_is_strict(options, message):
    with pytest.raises(ValidationError, match=message):
        OutlierDetection.Config.model_validate(options)


@pytest.mark.parametrize("options", [{"column": "value"}, {"column": "value", "threshold": 2.0},
                                     {"column": "value", "include_rows": False}])
def test_outlier_detection_merges_as_a_tree(options):
    kernel = outliers(**options)
    parts = [SEED.head(3), SEED.slice(3, 0), SEED.slice(3, 4), SEED.tail(3)]
    partials = [kernel.partial(p) for p in parts]
    tree = [kernel.merge(partials[:2]), kernel.merge(partials[2:])]
    merged = kernel.finalize(kernel.merge(tree))
    whole = kernel.run(SEED)
    assert kernel.mergeable is False
    assert_frame_equal(frame(merged), frame(whole))
    assert merged.summary == whole.summary


def test_correlation_merges_as_a_tree():
    df = pl.DataFrame({"a": [1.0, 2.0, None, 4.0, 5.5, 6.0], "b": [2, 1, 4, 3, None, 7],
                       "c": [0.5, 0.5, 1.0, None, 2.0, 3.5]})
    for method in ("pearson", "spearman"):
        kernel = corr(method=method)
        partials = [kernel.partial(p) for p in (df.head(2), df.slice(2, 1), df.tail(3))]
        tree = [kernel.merge(partials[:1]), kernel.merge(partials[1:])]
        merged = kernel.finalize(kernel.merge(tree))
        assert_frame_equal(frame(merged), frame(kernel.run(df)), abs_tol=1e-12)
        assert merged.summary["observations"] == kernel.run(df).summary["observations"]


# ---------------------------------------------------------------------------------------------
# text_frequency

ALPHABET = list("abcaZüÜéß東京09 _-;,.!\n")
TEXT_COLUMNS = {"t": st.one_of(
    st.none(), st.text(alphabet=ALPHABET, max_size=20),
    st.sampled_from(["Zürich", "東京 Tokyo", "ZÜRICH zürich", "The cat"]),
)}
TEXT_SCHEMA = {"t": pl.String}
DEFAULT_PATTERN = r"[^\W_]+"


def words(**options: Any) -> TextFrequency:
    return TextFrequency(TextFrequency.Config(**options))


def word_counts(texts: list[str | None], *, lowercase: bool = True,
                stop: frozenset[str] = frozenset(),
                top_n: int | None = None) -> list[tuple[str, int]]:
    """Reference: Python's re over each text, counted, sorted by count desc then word."""
    counter: Counter[str] = Counter()
    for text in texts:
        if text is not None:
            tokens = re.findall(DEFAULT_PATTERN, text.lower() if lowercase else text)
            counter.update(t for t in tokens if t not in stop)
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:top_n] if top_n else ranked


@PROPERTY
@given(data=st.data(), df=frames(TEXT_COLUMNS, TEXT_SCHEMA),
       lowercase=st.booleans(), top_n=st.one_of(st.none(), st.integers(1, 4)),
       stop_words=st.sampled_from([None, "english", ["the", "Zürich", "a"]]))
def test_word_counts_equal_python_across_partitions(data, df, lowercase, top_n, stop_words):
    parts = data.draw(split(df))
    whole = pl.concat(parts)
    kernel = words(column="t", lowercase=lowercase, top_n=top_n, stop_words=stop_words)
    stop = (ENGLISH_STOP_WORDS if stop_words == "english" else frozenset(stop_words or ()))
    if lowercase:
        stop = frozenset(w.lower() for w in stop)
    expected = word_counts(whole.get_column("t").to_list(), lowercase=lowercase, stop=stop,
                           top_n=top_n)
    for result in (distributed(kernel, parts), kernel.run(whole)):
        assert frame(result).rows() == expected
        assert frame(result).schema == pl.Schema({"word": pl.String, "count": pl.Int64})
    every = word_counts(whole.get_column("t").to_list(), lowercase=lowercase, stop=stop)
    assert result.summary["total_tokens"] == sum(c for _, c in every)
    assert result.summary["unique_words"] == len(every)


def test_seed_example_word_counts():
    df = pl.DataFrame({"t": ["The cat", "the dog; THE end"]})
    assert frame(words(column="t").run(df)).rows() == [
        ("the", 3), ("cat", 1), ("dog", 1), ("end", 1)
    ]


def test_unicode_words_are_whole_tokens():
    df = pl.DataFrame({"t": ["Zürich, 東京 & ZÜRICH", "zürich_東京"]})
    assert frame(words(column="t").run(df)).rows() == [("zürich", 3), ("東京", 2)]


def test_ties_are_ordered_by_word_and_top_n_cuts_after_ordering():
    df = pl.DataFrame({"t": ["b a c", "c b"]})
    assert frame(words(column="t").run(df)).rows() == [("b", 2), ("c", 2), ("a", 1)]
    assert frame(words(column="t", top_n=1).run(df)).rows() == [("b", 2)]


def test_english_stop_words_are_left_out():
    df = pl.DataFrame({"t": ["The cat and THE dog"]})
    result = words(column="t", stop_words="english").run(df)
    assert frame(result).rows() == [("cat", 1), ("dog", 1)]
    assert result.summary["total_tokens"] == 2


def test_stop_words_follow_lowercase():
    df = pl.DataFrame({"t": ["The the THE"]})
    assert frame(words(column="t", stop_words=["THE"]).run(df)).height == 0
    kept = words(column="t", stop_words=["the"], lowercase=False).run(df)
    assert frame(kept).rows() == [("THE", 1), ("The", 1)]


def test_pattern_defines_the_tokens():
    df = pl.DataFrame({"t": ["snake_case and kebab-case"]})
    result = words(column="t", pattern=r"\w+").run(df)
    assert frame(result).get_column("word").to_list() == ["and", "case", "kebab", "snake_case"]


def test_categorical_text_is_counted():
    df = pl.DataFrame({"t": ["a b", "a"]}, schema={"t": pl.Categorical})
    assert frame(words(column="t").run(df)).rows() == [("a", 2), ("b", 1)]


def test_empty_table_gives_no_words():
    result = words(column="t").run(pl.DataFrame({"t": []}, schema={"t": pl.String}))
    assert frame(result).schema == pl.Schema({"word": pl.String, "count": pl.Int64})
    assert frame(result).height == 0 and result.summary["documents"] == 0


def test_text_column_errors_name_the_column():
    with pytest.raises(InputError, match="'txt' not found"):
        words(column="txt").run(pl.DataFrame({"t": ["a"]}))
    with pytest.raises(InputError, match="'n' is Int64, not a text column"):
        words(column="n").run(pl.DataFrame({"n": [1]}))


@pytest.mark.parametrize("options, message", [
    ({"column": "t", "pattern": "[a-z"}, "not a valid regular expression"),
    ({"column": "t", "top_n": 0}, "greater than or equal to 1"),
    ({"column": "t", "stop_words": "french"}, "stop_words"),
    ({"column": "t", "lowercase": "yes"}, "valid boolean"),
])
def test_text_config_is_strict(options, message):
    with pytest.raises(ValidationError, match=message):
        TextFrequency.Config.model_validate(options)


def test_text_frequency_merges_as_a_tree():
    kernel = words(column="t")
    partials = [kernel.partial(pl.DataFrame({"t": [t]})) for t in ["a b", "b c", "c c"]]
    tree = [kernel.merge(partials[:1]), kernel.merge(partials[1:])]
    assert kernel.mergeable is True
    assert frame(kernel.finalize(kernel.merge(tree))).rows() == [
        ("c", 3), ("b", 2), ("a", 1)
    ]


# ---------------------------------------------------------------------------------------------
# configs as the job spec sees them


@pytest.mark.parametrize("config", [
    {"type": "correlation_matrix", "columns": ["a", "b"], "method": "spearman"},
    {"type": "outlier_detection", "column": "v", "threshold": 2.0},
    {"type": "outlier_detection", "column": "v", "k": 3.0, "quantile_method": "nearest_lower"},
    {"type": "text_frequency", "column": "t", "stop_words": "english", "top_n": 5},
    {"type": "text_frequency", "column": "t", "stop_words": ["a", "b"]},
])
def test_configs_validate_again_from_their_json_dump(config):
    # the pipeline persists the spec with every field and reloads it on resume
    model = registry.analyses.get(config["type"]).Config
    parsed = model.model_validate(config)
    assert model.model_validate(parsed.model_dump(mode="json")) == parsed


def test_seed_outlier_example_as_a_job_spec_is_a_zscore_of_3():
    spec = parse_spec({
        "source": {"type": "file", "path": "examples/data/sales.csv"},
        "analysis": {"type": "outlier_detection", "column": "login_count", "threshold": 3.0},
    })
    assert (spec.analysis.method, spec.analysis.threshold) == ("zscore", 3.0)
