"""Charts: plotly figures whose traces hold the result's columns, in the result's row order."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from raysight.errors import InputError
from raysight.exporters.charts import (
    WEBGL_THRESHOLD,
    BarChart,
    LineChart,
    PieChart,
    ScatterChart,
)
from raysight.plugins import AnalysisResult
from raysight.registry import charts


def result(**columns: list) -> AnalysisResult:
    return AnalysisResult(kind="aggregation", table=pa.table(columns))


@pytest.fixture
def sales() -> AnalysisResult:
    # categories deliberately not sorted: charts must keep the result's row order
    return result(
        category=["toys", "books", "garden", "food"],
        total=[30.5, 12.0, 7.25, 99.0],
        count=[3, 1, 2, 9],
        region=["north", "south", "north", "south"],
    )


def test_bar_trace_holds_x_and_y_columns_in_row_order(sales: AnalysisResult) -> None:
    fig = BarChart(BarChart.Config(x="category", y="total")).render(sales)

    assert len(fig.data) == 1
    assert list(fig.data[0].x) == ["toys", "books", "garden", "food"]
    assert list(fig.data[0].y) == [30.5, 12.0, 7.25, 99.0]


def test_bar_with_several_y_columns_draws_one_named_trace_per_column(
    sales: AnalysisResult,
) -> None:
    fig = BarChart(BarChart.Config(x="category", y=["total", "count"])).render(sales)

    assert [trace.name for trace in fig.data] == ["total", "count"]
    assert list(fig.data[1].y) == [3, 1, 2, 9]
    assert fig.layout.barmode == "group"


def test_horizontal_bar_puts_categories_on_the_y_axis(sales: AnalysisResult) -> None:
    fig = BarChart(BarChart.Config(x="category", y="total", orientation="h")).render(sales)

    assert fig.data[0].orientation == "h"
    assert list(fig.data[0].y) == ["toys", "books", "garden", "food"]
    assert list(fig.data[0].x) == [30.5, 12.0, 7.25, 99.0]


def test_bar_string_colour_column_gives_one_trace_per_value_in_first_seen_order(
    sales: AnalysisResult,
) -> None:
    fig = BarChart(BarChart.Config(x="category", y="total", color="region")).render(sales)

    assert [trace.name for trace in fig.data] == ["north", "south"]
    assert list(fig.data[0].x) == ["toys", "garden"]
    assert list(fig.data[1].y) == [12.0, 99.0]
    assert fig.layout.legend.title.text == "region"


def test_colour_groups_name_null_values_null() -> None:
    data = result(x=["a", "b"], y=[1, 2], g=["k", None])

    fig = BarChart(BarChart.Config(x="x", y="y", color="g")).render(data)

    assert [trace.name for trace in fig.data] == ["k", "null"]


def test_line_trace_keeps_the_result_row_order() -> None:
    data = result(step=[3, 1, 2], value=[0.3, 0.1, 0.2])

    fig = LineChart(LineChart.Config(x="step", y="value")).render(data)

    assert fig.data[0].mode == "lines"
    assert list(fig.data[0].x) == [3, 1, 2]
    assert list(fig.data[0].y) == [0.3, 0.1, 0.2]


def test_line_with_colour_draws_one_line_per_group(sales: AnalysisResult) -> None:
    fig = LineChart(LineChart.Config(x="category", y="count", color="region")).render(sales)

    assert {trace.name: list(trace.y) for trace in fig.data} == {"north": [3, 2], "south": [1, 9]}


def test_line_x_may_be_a_timestamp_column() -> None:
    days = [dt.datetime(2024, 1, d) for d in (1, 2, 3)]
    data = result(day=days, value=[1.0, 2.0, 3.0])

    fig = LineChart(LineChart.Config(x="day", y="value")).render(data)

    assert list(fig.data[0].x) == list(np.array(days, dtype="datetime64[us]"))
    json.loads(fig.to_json())  # serializable for the HTML report


def test_pie_labels_and_values_are_the_columns(sales: AnalysisResult) -> None:
    fig = PieChart(PieChart.Config(names="category", values="count")).render(sales)

    assert fig.data[0].type == "pie"
    assert list(fig.data[0].labels) == ["toys", "books", "garden", "food"]
    assert list(fig.data[0].values) == [3, 1, 2, 9]


def test_scatter_trace_holds_x_and_y_columns(sales: AnalysisResult) -> None:
    fig = ScatterChart(ScatterChart.Config(x="count", y="total")).render(sales)

    assert fig.data[0].mode == "markers"
    assert list(fig.data[0].x) == [3, 1, 2, 9]
    assert list(fig.data[0].y) == [30.5, 12.0, 7.25, 99.0]


def test_scatter_numeric_colour_is_a_colour_scale_on_one_trace(sales: AnalysisResult) -> None:
    fig = ScatterChart(ScatterChart.Config(x="count", y="total", color="count")).render(sales)

    assert len(fig.data) == 1
    assert list(fig.data[0].marker.color) == [3, 1, 2, 9]
    assert fig.data[0].marker.colorbar.title.text == "count"


def test_scatter_with_many_points_uses_webgl() -> None:
    n = WEBGL_THRESHOLD + 1
    data = result(x=list(range(n)), y=list(range(n)))

    fig = ScatterChart(ScatterChart.Config(x="x", y="y")).render(data)

    assert fig.data[0].type == "scattergl"


def test_null_values_stay_missing_points() -> None:
    data = result(x=["a", "b"], y=[1.0, None])

    fig = BarChart(BarChart.Config(x="x", y="y")).render(data)

    assert fig.data[0].y[0] == 1.0
    assert np.isnan(fig.data[0].y[1])


def test_decimal_column_is_plotted_as_float() -> None:
    amounts = pa.array([decimal.Decimal("1.25"), decimal.Decimal("2.50")], pa.decimal128(6, 2))
    data = AnalysisResult("aggregation", pa.table({"x": ["a", "b"], "amount": amounts}))

    fig = BarChart(BarChart.Config(x="x", y="amount")).render(data)

    assert list(fig.data[0].y) == [1.25, 2.5]
    json.loads(fig.to_json())


def test_title_and_axis_titles_are_set(sales: AnalysisResult) -> None:
    fig = BarChart(BarChart.Config(x="category", y="total", title="Sales")).render(sales)

    assert fig.layout.title.text == "Sales"
    assert fig.layout.xaxis.title.text == "category"
    assert fig.layout.yaxis.title.text == "total"


@pytest.mark.parametrize(
    "chart",
    [
        BarChart(BarChart.Config(x="category", y="missing")),
        LineChart(LineChart.Config(x="missing", y="total")),
        PieChart(PieChart.Config(names="category", values="missing")),
        ScatterChart(ScatterChart.Config(x="count", y="total", color="missing")),
    ],
    ids=["bar", "line", "pie", "scatter"],
)
def test_unknown_column_raises_input_error_naming_it_and_the_available_columns(
    chart: BarChart, sales: AnalysisResult
) -> None:
    with pytest.raises(InputError, match="'missing'") as raised:
        chart.render(sales)

    assert "category, total, count, region" in str(raised.value)
    assert raised.value.details["available"] == ["category", "total", "count", "region"]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="colour"):
        BarChart.Config.model_validate({"type": "bar", "x": "a", "y": "b", "colour": "c"})


def test_config_rejects_an_empty_y_list() -> None:
    with pytest.raises(ValidationError):
        LineChart.Config(x="a", y=[])


@pytest.mark.parametrize(
    ("name", "plugin"),
    [("bar", BarChart), ("line", LineChart), ("pie", PieChart), ("scatter", ScatterChart)],
)
def test_chart_is_registered_under_its_name(name: str, plugin: type) -> None:
    assert charts.get(name) is plugin
    assert plugin.name == name
