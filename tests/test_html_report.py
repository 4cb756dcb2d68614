"""HTML report: one self-contained page; every value escaped; plotly.js inlined once."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest
from plotly.offline import get_plotlyjs
from pydantic import ValidationError

from raysight.exporters.charts import BarChart, PieChart
from raysight.exporters.report import HtmlReportExporter, format_cell
from raysight.plugins import AnalysisResult, ReportContext
from raysight.registry import exporters

XSS = "<script>alert(1)</script>"
CREATED = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


class Tables(HTMLParser):
    """Text of every cell, per table class ('result', 'meta', 'kv'), rows in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._stack: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._stack.append(dict(attrs).get("class") or "")
        elif tag == "tr" and self._stack:
            self.tables.setdefault(self._stack[-1], []).append([])
        elif tag in ("td", "th") and self._stack:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._stack.pop()
        elif tag in ("td", "th") and self._cell is not None and self._stack:
            self.tables[self._stack[-1]][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: str) -> dict[str, list[list[str]]]:
    parser = Tables()
    parser.feed(html)
    return parser.tables


def context(table: pa.Table, **kwargs: object) -> ReportContext:
    defaults: dict = {
        "job_id": "daily_sales_2024-05-06",
        "user_id": "analyst_1",
        "analysis_type": "aggregation",
        "result": AnalysisResult("aggregation", table, {"groups": table.num_rows}),
        "created_at": CREATED,
    }
    return ReportContext(**{**defaults, **kwargs})


@pytest.fixture
def sales() -> pa.Table:
    return pa.table(
        {
            "category": ["toys", XSS, "Zürich", "東京", "food"],
            "total": [30.5, 12.0, None, 1.23456789, 99.0],
        }
    )


@pytest.fixture
def figures(sales: pa.Table) -> list[tuple[str, object]]:
    result = AnalysisResult("aggregation", sales)
    bar = BarChart(BarChart.Config(x="category", y="total")).render(result)
    pie = PieChart(PieChart.Config(names="category", values="total")).render(result)
    return [("Sales by category", bar), ("Share", pie)]


def render(report: ReportContext, **config: object) -> str:
    return HtmlReportExporter(HtmlReportExporter.Config(**config)).render(report)


def test_report_is_a_complete_utf8_html_document(sales: pa.Table) -> None:
    html = render(context(sales))

    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html
    assert html.rstrip().endswith("</html>")


def test_report_shows_title_job_user_analysis_and_generation_time(sales: pa.Table) -> None:
    html = render(context(sales), title="Daily sales")

    assert "<title>Daily sales</title>" in html
    assert "<h1>Daily sales</h1>" in html
    assert tables_of(html)["meta"] == [
        ["Job", "daily_sales_2024-05-06"],
        ["User", "analyst_1"],
        ["Analysis", "aggregation"],
        ["Generated", "2024-05-06T07:08:09+00:00"],
    ]


def test_default_title_names_the_analysis_type(sales: pa.Table) -> None:
    html = render(context(sales, analysis_type="time_series"))

    assert "<h1>Time series report</h1>" in html


def test_result_table_lists_columns_and_rows_in_order(sales: pa.Table) -> None:
    rows = tables_of(render(context(sales)))["result"]

    assert rows[0] == ["category", "total"]
    assert [row[0] for row in rows[1:]] == sales.column("category").to_pylist()


def test_result_cells_show_null_as_empty_and_floats_to_four_decimals(sales: pa.Table) -> None:
    rows = tables_of(render(context(sales)))["result"]

    assert [row[1] for row in rows[1:]] == ["30.5", "12", "", "1.2346", "99"]


def test_script_in_a_cell_is_escaped(sales: pa.Table) -> None:
    html = render(context(sales))

    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS in [row[0] for row in tables_of(html)["result"]]  # escaped once, not twice


def test_job_fields_warnings_and_stats_are_escaped(sales: pa.Table) -> None:
    report = context(
        sales,
        job_id=f"job{XSS}",
        user_id=XSS,
        warnings=[f"column {XSS} dropped"],
        data_stats={XSS: XSS},
        metrics={XSS: 1.0},
    )

    html = render(report, title=XSS)

    assert XSS not in html


def test_figure_data_cannot_close_the_script_tag(
    sales: pa.Table, figures: list[tuple[str, object]]
) -> None:
    html = render(context(sales, figures=[(XSS, figures[0][1])]))

    assert XSS not in html
    assert "</script><script>" not in html


def test_max_rows_limits_the_rows_and_says_how_many_are_shown(sales: pa.Table) -> None:
    html = render(context(sales), max_rows=2)

    assert "Showing 2 of 5 rows" in html
    assert len(tables_of(html)["result"]) == 1 + 2


def test_all_rows_are_shown_below_max_rows(sales: pa.Table) -> None:
    html = render(context(sales))

    assert "Showing 5 of 5 rows" in html
    assert len(tables_of(html)["result"]) == 1 + 5


def test_warnings_are_listed(sales: pa.Table) -> None:
    html = render(context(sales, warnings=["3 rows dropped", "column x is constant"]))

    assert "<li>3 rows dropped</li>" in html
    assert "<li>column x is constant</li>" in html


def test_data_stats_metrics_and_summary_are_key_value_rows(sales: pa.Table) -> None:
    report = context(
        sales,
        data_stats={"rows_loaded": 1000, "partitions": 4},
        metrics={"load_time_s": 0.25},
    )

    rows = tables_of(render(report))["kv"]

    assert ["rows_loaded", "1000"] in rows
    assert ["partitions", "4"] in rows
    assert ["load_time_s", "0.25"] in rows
    assert ["groups", "5"] in rows  # the result summary


def test_nested_data_stats_render_as_nested_tables(sales: pa.Table) -> None:
    report = context(sales, data_stats={"columns": {"amount": {"null_count": 3}}})

    rows = tables_of(render(report))["kv"]

    assert ["null_count", "3"] in rows


def test_plotly_js_is_inlined_exactly_once_for_several_figures(
    sales: pa.Table, figures: list[tuple[str, object]]
) -> None:
    html = render(context(sales, figures=figures))

    assert html.count(get_plotlyjs()) == 1
    assert html.count('class="plotly-graph-div"') == 2
    assert "<h3>Sales by category</h3>" in html
    assert "<h3>Share</h3>" in html


def test_report_without_figures_has_no_plotly_js(sales: pa.Table) -> None:
    html = render(context(sales))

    assert "plotly.js" not in html
    assert "plotly-graph-div" not in html


def test_report_loads_nothing_from_the_network(
    sales: pa.Table, figures: list[tuple[str, object]]
) -> None:
    html = render(context(sales, figures=figures))

    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref\s*=", html, re.IGNORECASE)
    assert not re.search(r"<(img|iframe)[^>]*\bsrc\s*=", html, re.IGNORECASE)
    # outside the plotly.js bundle (whose source mentions URLs it never loads for these charts)
    page = html.replace(get_plotlyjs(), "")
    assert not re.search(r"https?://|//cdn|@import", page, re.IGNORECASE)


def test_export_writes_the_report_as_utf8(sales: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "reports" / "report.html"
    report = context(sales)

    HtmlReportExporter(HtmlReportExporter.Config()).export(report, str(path))

    assert path.read_text(encoding="utf-8") == render(report)
    assert "東京".encode() in path.read_bytes()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (0.0, "0"),
        (1234567.891, "1234567.891"),
        (1e-7, "1e-07"),
        (3, "3"),
        ({"a": [1, None]}, '{"a": [1, null]}'),
    ],
)
def test_format_cell(value: object, text: str) -> None:
    assert format_cell(value) == text


def test_config_rejects_negative_max_rows() -> None:
    with pytest.raises(ValidationError, match="max_rows"):
        HtmlReportExporter.Config(max_rows=-1)


def test_html_exporter_is_registered_with_its_extension() -> None:
    assert exporters.get("html") is HtmlReportExporter
    assert HtmlReportExporter.extension == ".html"
