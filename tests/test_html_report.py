"""HTML report: one self-contained page; every value escaped; plotly.js inlined once."""

from __future__ import annotations

import datetime as dt
import html as markup
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pytest
from plotly.offline import get_plotlyjs
from pydantic import ValidationError

from raysight.errors import SerializationError
from raysight.exporters.charts import BarChart, PieChart
from raysight.exporters.report import HtmlReportExporter, format_cell
from raysight.plugins import AnalysisResult, AnalysisSection, ReportContext
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


# ---------------------------------------------------------------------------------------------
# A job of several analyses: one section each


SECTION = re.compile(r'<section class="analysis" id="([^"]*)">(.*?)</section>', re.DOTALL)
PLOTLY_DIV = 'class="plotly-graph-div"'


def sections_of(html: str) -> list[tuple[str, str]]:
    """(id, inner HTML) of every analysis section, in document order."""
    return SECTION.findall(html)


def first(pattern: str, html: str) -> str:
    """The first group of the first match of ``pattern`` (failing the test when none)."""
    match = re.search(pattern, html, re.DOTALL)
    assert match is not None, f"no {pattern!r} in the report"
    return match.group(1)


def contents_of(html: str) -> str:
    return first(r'<ol class="contents">(.*?)</ol>', html)


def headings_of(html: str) -> list[str]:
    """The text of every section's h2 (name, then type), unescaped, in document order."""
    return [
        markup.unescape(re.sub(r"<[^>]+>", "", first(r"<h2>(.*?)</h2>", body)))
        for _, body in sections_of(html)
    ]


def without_div_ids(html: str) -> str:
    """The page with plotly's random div ids replaced, to compare two renderings."""
    return re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "ID", html)


@pytest.fixture
def regions() -> pa.Table:
    return pa.table({"region": ["north", "south"], "orders": [7, 3]})


@pytest.fixture
def months() -> pa.Table:
    return pa.table({"month": ["2024-01", "2024-02", "2024-03"], "revenue": [1.5, 2.25, 3.0]})


@pytest.fixture
def three(
    sales: pa.Table, regions: pa.Table, months: pa.Table, figures: list[tuple[str, object]]
) -> list[AnalysisSection]:
    """Three analyses of one dataset: two charts, none, one chart."""
    return [
        AnalysisSection(
            "sales_by_category",
            "aggregation",
            AnalysisResult("aggregation", sales, {"groups": 5}),
            figures,
            ["column note dropped"],
            source="orders",
        ),
        AnalysisSection(
            "orders_by_region",
            "descriptive",
            AnalysisResult("descriptive", regions, {"rows": 2}),
            [],
            [],
            source="orders",
        ),
        AnalysisSection(
            "monthly_revenue",
            "time_series",
            AnalysisResult("time_series", months, {"periods": 3}),
            figures[:1],
            [],
            source="clean_orders",
        ),
    ]


def several(sections: list[AnalysisSection], **kwargs: object) -> ReportContext:
    first = sections[0]
    defaults: dict = {
        "analysis_type": first.analysis_type,
        "result": first.result,
        "figures": first.figures,
        "analyses": sections,
    }
    return context(first.result.table, **{**defaults, **kwargs})


def test_report_of_several_analyses_has_one_section_each_in_order(
    three: list[AnalysisSection],
) -> None:
    html = render(several(three))

    assert headings_of(html) == [
        "sales_by_category aggregation",
        "orders_by_region descriptive",
        "monthly_revenue time_series",
    ]


def test_each_section_says_what_its_analysis_reads(three: list[AnalysisSection]) -> None:
    bodies = [body for _, body in sections_of(render(several(three)))]

    assert [re.findall(r'<p class="note">Reads (.*?)</p>', body) for body in bodies] == [
        ["orders"],
        ["orders"],
        ["clean_orders"],
    ]


def test_section_without_source_says_nothing_about_what_it_reads(
    three: list[AnalysisSection],
) -> None:
    unsourced = AnalysisSection("orders_by_region", "descriptive", three[1].result, [], [])

    (_, body), = sections_of(render(several([unsourced])))

    assert "Reads" not in body


def test_each_section_shows_its_own_figures(three: list[AnalysisSection]) -> None:
    bodies = [body for _, body in sections_of(render(several(three)))]

    assert [body.count(PLOTLY_DIV) for body in bodies] == [2, 0, 1]
    assert "<h4>Sales by category</h4>" in bodies[0]
    assert "<h4>Share</h4>" in bodies[0]
    assert "<h4>Sales by category</h4>" in bodies[2]


def test_plotly_js_is_inlined_once_for_figures_of_several_sections(
    three: list[AnalysisSection],
) -> None:
    html = render(several(three))

    assert html.count(get_plotlyjs()) == 1
    assert html.count(PLOTLY_DIV) == 3
    assert html.index(get_plotlyjs()) < html.index(PLOTLY_DIV)  # loaded before any figure


def test_plotly_js_is_inlined_with_a_later_section_when_the_first_has_no_figures(
    three: list[AnalysisSection],
) -> None:
    html = render(several([three[1], three[2], three[0]]))

    assert html.count(get_plotlyjs()) == 1
    assert html.index(get_plotlyjs()) < html.index(PLOTLY_DIV)


def test_several_analyses_without_figures_have_no_plotly_js(
    three: list[AnalysisSection],
) -> None:
    html = render(several([three[1], three[1]]))

    assert "plotly.js" not in html
    assert PLOTLY_DIV not in html


def test_each_section_previews_its_own_result(
    three: list[AnalysisSection], sales: pa.Table, regions: pa.Table, months: pa.Table
) -> None:
    html = render(several(three))

    previews = [tables_of(body)["result"] for _, body in sections_of(html)]

    assert previews == [
        [table.column_names, *([format_cell(v) for v in row.values()] for row in table.to_pylist())]
        for table in (sales, regions, months)
    ]
    assert len(tables_of(html)["result"]) == sum(len(p) for p in previews)  # no table outside


def test_max_rows_limits_the_preview_of_every_section(three: list[AnalysisSection]) -> None:
    html = render(several(three), max_rows=2)

    bodies = [body for _, body in sections_of(html)]

    assert [len(tables_of(body)["result"]) for body in bodies] == [1 + 2, 1 + 2, 1 + 2]
    assert "Showing 2 of 5 rows" in bodies[0]
    assert "Showing 2 of 2 rows" in bodies[1]
    assert "Showing 2 of 3 rows" in bodies[2]


def test_each_section_shows_its_summary_and_warnings(three: list[AnalysisSection]) -> None:
    bodies = [body for _, body in sections_of(render(several(three)))]

    assert [tables_of(body)["kv"] for body in bodies] == [
        [["name", "value"], ["groups", "5"]],
        [["name", "value"], ["rows", "2"]],
        [["name", "value"], ["periods", "3"]],
    ]
    assert "<li>column note dropped</li>" in bodies[0]
    assert "Warnings" not in bodies[1] + bodies[2]


def test_job_warnings_data_stats_and_metrics_appear_once_before_the_sections(
    three: list[AnalysisSection],
) -> None:
    report = several(
        three,
        warnings=["2 partitions retried"],
        data_stats={"rows_loaded": 1000},
        metrics={"load_time_s": 0.25},
    )

    html = render(report)
    before_sections = html[: html.index('<section class="analysis"')]

    assert html.count("<li>2 partitions retried</li>") == 1
    assert "<li>2 partitions retried</li>" in before_sections
    assert html.count("<h2>Data</h2>") == html.count("<h2>Metrics</h2>") == 1
    assert ["rows_loaded", "1000"] in tables_of(before_sections)["kv"]
    assert ["load_time_s", "0.25"] in tables_of(before_sections)["kv"]


def test_contents_link_to_every_section_in_order(three: list[AnalysisSection]) -> None:
    html = render(several(three))

    contents = contents_of(html)
    links = re.findall(r'<a href="#([^"]+)">(.*?)</a>', contents)

    assert [name for _, name in links] == [s.name for s in three]
    assert [anchor for anchor, _ in links] == [anchor for anchor, _ in sections_of(html)]
    assert html.index('<ol class="contents">') < html.index('<section class="analysis"')


def test_section_anchors_are_unique_and_url_safe_for_any_name(
    three: list[AnalysisSection],
) -> None:
    result = three[1].result
    names = ["a b", "a-b", "東京", "東京", XSS, ""]
    sections = [AnalysisSection(name, "descriptive", result, [], []) for name in names]

    anchors = [anchor for anchor, _ in sections_of(render(several(sections)))]

    assert len(set(anchors)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", anchor) for anchor in anchors)


def test_names_types_sources_warnings_and_figure_titles_of_sections_are_escaped(
    three: list[AnalysisSection], figures: list[tuple[str, object]]
) -> None:
    hostile = AnalysisSection(
        f"{XSS}東京",
        XSS,
        AnalysisResult("descriptive", pa.table({XSS: [XSS]}), {XSS: XSS}),
        [(XSS, figures[0][1])],
        [XSS],
        source=XSS,
    )

    html = render(several([hostile, three[1]]))

    assert XSS not in html
    assert headings_of(html)[0] == f"{XSS}東京 {XSS}"  # escaped once, unicode kept as is
    contents = contents_of(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;東京" in contents


def test_report_of_several_analyses_counts_them_in_title_and_job_facts(
    three: list[AnalysisSection],
) -> None:
    html = render(several(three))

    assert "<h1>Report of 3 analyses</h1>" in html
    assert ["Analyses", "3"] in tables_of(html)["meta"]
    assert "Analysis" not in [row[0] for row in tables_of(html)["meta"]]


def test_configured_title_names_a_report_of_several_analyses(
    three: list[AnalysisSection],
) -> None:
    assert "<h1>Daily sales</h1>" in render(several(three), title="Daily sales")


def test_report_of_several_analyses_is_a_complete_offline_document(
    three: list[AnalysisSection],
) -> None:
    html = render(several(three))

    assert html.startswith("<!DOCTYPE html>")
    assert html.rstrip().endswith("</html>")
    page = html.replace(get_plotlyjs(), "")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"https?://|//cdn|@import", page, re.IGNORECASE)


def test_export_writes_the_whole_report_of_several_analyses(
    three: list[AnalysisSection], tmp_path: Path
) -> None:
    path = tmp_path / "reports" / "report.html"
    report = several(three)

    HtmlReportExporter(HtmlReportExporter.Config()).export(report, str(path))

    written = path.read_text(encoding="utf-8")
    assert without_div_ids(written) == without_div_ids(render(report))
    assert len(sections_of(written)) == 3


def test_a_figure_that_cannot_be_rendered_fails_the_export_before_any_file_is_written(
    three: list[AnalysisSection], tmp_path: Path
) -> None:
    path = tmp_path / "report.html"
    broken = AnalysisSection("broken", "descriptive", three[1].result, [("Bad", "no figure")], [])

    with pytest.raises(SerializationError, match="'Bad'"):
        HtmlReportExporter(HtmlReportExporter.Config()).export(
            several([three[0], broken]), str(path)
        )

    assert not path.exists()
