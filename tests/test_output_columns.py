"""Every analysis declares the columns its result will have, from its config alone, so that a
spec naming another column in a chart is refused when it is validated; the declaration is
checked here against the result of the kernel on real data."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import EXAMPLES
from test_cli import cli, write_spec

from raysight import registry
from raysight.job.spec import SpecError, parse_spec

SALES = pl.read_csv(EXAMPLES / "data" / "sales.csv", try_parse_dates=False)
SOURCE = {"type": "file", "path": str(EXAMPLES / "data" / "sales.csv")}

DECLARED = {
    "aggregation_keys_and_aliases": {
        "type": "aggregation", "group_by": ["region", "product_category"],
        "metrics": [{"function": "count"}, {"column": "amount", "function": "sum"},
                    {"column": "amount", "function": "percentile", "q": 0.9},
                    {"expr": "max(amount) - min(quantity)", "alias": "spread"}],
        "having": "count > 3"},
    "aggregation_without_keys": {"type": "aggregation", "metrics": [
        {"column": "amount", "function": "mean", "alias": "avg"}]},
    "aggregation_top_k": {"type": "aggregation", "group_by": ["region"], "metrics": [
        {"column": "amount", "function": "top_k", "k": 2}]},
    "descriptive": {"type": "descriptive", "columns": ["amount", "region"]},
    "time_series_plain": {"type": "time_series", "time_column": "date",
                          "value_columns": ["amount"], "interval": "weekly"},
    "time_series_with_every_feature": {
        "type": "time_series", "time_column": "date", "value_columns": ["amount", "quantity"],
        "operations": ["sum", "mean"], "interval": "daily", "group_by": ["region"],
        "fill_gaps": "zero", "rolling": {"window": 3}, "transforms": ["diff", "pct_change"],
        "decompose": {"period": 7}, "anomalies": {"method": "iqr"},
        "forecast": {"horizon": 3, "season_length": 7}},
    "correlation_named_columns": {"type": "correlation_matrix",
                                  "columns": ["quantity", "amount"]},
    "outliers_value_only": {"type": "outlier_detection", "column": "amount",
                            "include_rows": False},
    "text_frequency": {"type": "text_frequency", "column": "product_category"},
    "custom_dispatch": {"type": "custom", "name": "text_frequency",
                        "params": {"column": "region"}},
}

DATA_DEPENDENT = {
    "correlation_every_numeric_column": {"type": "correlation_matrix"},
    "outliers_with_rows": {"type": "outlier_detection", "column": "amount"},
}


def kernel(analysis: dict):
    spec = parse_spec({"source": SOURCE, "analysis": analysis})
    return registry.analyses.build(spec.analysis)


@pytest.mark.parametrize("case", sorted(DECLARED))
def test_declared_output_columns_are_the_result_columns(case):
    analysis = kernel(DECLARED[case])
    declared = analysis.output_columns()
    assert declared is not None
    assert analysis.run(SALES).table.column_names == declared


@pytest.mark.parametrize("case", sorted(DATA_DEPENDENT))
def test_analyses_whose_columns_depend_on_the_data_declare_none(case):
    assert kernel(DATA_DEPENDENT[case]).output_columns() is None


def test_a_chart_column_the_result_will_not_have_is_refused_at_validation():
    with pytest.raises(SpecError) as err:
        parse_spec({"source": SOURCE, "analysis": DECLARED["aggregation_without_keys"],
                    "visualizations": [{"type": "bar", "x": "avg", "y": ["avg", "totl"]},
                                       {"type": "pie", "names": "avg", "values": "avg"}]})
    message = str(err.value)
    assert "visualizations[0].y[1]: column 'totl' is not in the aggregation result, whose " \
           "columns will be: avg" in message
    assert "visualizations[1]" not in message


def test_every_chart_field_that_names_a_column_is_checked():
    analysis = DECLARED["text_frequency"]
    for chart, field in [({"type": "bar", "x": "word", "y": "count", "color": "nope"}, "color"),
                         ({"type": "line", "x": "nope", "y": "count"}, "x"),
                         ({"type": "pie", "names": "word", "values": "nope"}, "values"),
                         ({"type": "scatter", "x": "word", "y": "nope"}, "y")]:
        with pytest.raises(SpecError, match=rf"visualizations\[0\]\.{field}: column 'nope'"):
            parse_spec({"source": SOURCE, "analysis": analysis, "visualizations": [chart]})


def test_charts_over_data_dependent_results_are_checked_when_the_job_runs():
    spec = parse_spec({"source": SOURCE, "analysis": DATA_DEPENDENT["outliers_with_rows"],
                       "visualizations": [{"type": "bar", "x": "region", "y": "nope"}]})
    assert spec.visualizations[0].y == "nope"


def test_validate_names_the_missing_column_and_suggests_the_near_one(tmp_path, capsys):
    spec = write_spec(tmp_path, visualizations=[{"type": "bar", "x": "region", "y": "totl"}])
    code, out, err = cli(capsys, "validate", str(spec))
    assert code == 2 and "Traceback" not in err
    assert "visualizations[0].y: column 'totl' is not in the aggregation result, whose " \
           "columns will be: region, total; did you mean 'total'?" in err
