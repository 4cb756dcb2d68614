"""A self-contained HTML report of a finished job, rendered with Jinja2.

The page needs no network: CSS is inline, plotly.js is inlined once (with the first figure of
the page) and nothing is loaded from a URL. Autoescaping is on, so every value that comes from
the job or its data is escaped; only plotly's own figure markup is inserted as is.

A job of one analysis gets one page of that analysis (``report.result`` and ``report.figures``).
A job whose ``report.analyses`` lists its analyses gets a table of contents and one section
per analysis, in order, after the job's own warnings, data statistics and metrics.

Example::

    HtmlReportExporter(HtmlReportExporter.Config(title="Daily sales")).export(report, path)
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any, Literal

import jinja2
import plotly.io as pio
import pyarrow as pa
from markupsafe import Markup
from pydantic import Field

from raysight.errors import SerializationError
from raysight.exporters.files import OutputPath, jsonable_value, open_output, to_jsonable
from raysight.plugins import Exporter, PluginConfig, ReportContext

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"


class HtmlReportConfig(PluginConfig):
    """``{format: html, path?, title?, max_rows?}``; ``max_rows`` caps the result rows shown."""

    format: Literal["html"] = "html"
    path: OutputPath = None
    title: str | None = None
    max_rows: int = Field(default=1000, ge=0)


class HtmlReportExporter(Exporter[HtmlReportConfig]):
    """One HTML page: job facts, warnings, data stats, metrics, summary, charts, result rows."""

    name = "html"
    extension = ".html"
    Config = HtmlReportConfig

    def export(self, report: ReportContext, path: str) -> None:
        html = self.render(report)
        with open_output(path) as f:
            f.write(html.encode("utf-8"))
        log.info("job %s: wrote HTML report to %s", report.job_id, path)

    def render(self, report: ReportContext) -> str:
        """The report as an HTML document (a string)."""
        if report.analyses:
            return self._render_sections(report)
        return _page(
            report,
            title=self.config.title or f"{_label(report.analysis_type)} report",
            analysis_type=report.analysis_type,
            main={
                "summary": _displayable(report.result.summary, "summary"),
                "figures": _figures(report.figures),
                **self._preview(report.result.table),
            },
            sections=[],
        )

    def _render_sections(self, report: ReportContext) -> str:
        """The page of a job of several analyses: contents, job facts, one section each."""
        sections = []
        plotlyjs = True  # still to be inlined, with the first figure of the page
        for i, analysis in enumerate(report.analyses):
            figures = _figures(analysis.figures, plotlyjs=plotlyjs)
            plotlyjs = plotlyjs and not figures
            sections.append(
                {
                    "anchor": _anchor(i, analysis.name),
                    "name": analysis.name,
                    "analysis_type": analysis.analysis_type,
                    "source": analysis.source,
                    "warnings": analysis.warnings,
                    "summary": _displayable(
                        analysis.result.summary, f"summary of analysis {analysis.name!r}"
                    ),
                    "figures": figures,
                    **self._preview(analysis.result.table),
                }
            )
        count = len(report.analyses)
        title = self.config.title or f"Report of {count} analys{'is' if count == 1 else 'es'}"
        return _page(report, title=title, sections=sections)

    def _preview(self, table: pa.Table) -> dict[str, Any]:
        """The first ``max_rows`` rows of a result table, as the template shows them."""
        shown = table.slice(0, self.config.max_rows)
        return {
            "columns": table.column_names,
            "rows": to_jsonable(shown),
            "shown_rows": shown.num_rows,
            "total_rows": table.num_rows,
        }


def _label(analysis_type: str) -> str:
    """``time_series`` as ``Time series``."""
    return analysis_type.replace("_", " ").capitalize()


def _anchor(index: int, name: str) -> str:
    """A unique, URL-safe id for the section of the ``index``-th analysis (0-based)."""
    # the index keeps ids unique when two names slug alike ("a b", "a-b") or to nothing ("東京")
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower()
    return f"analysis-{index + 1}" + (f"-{slug}" if slug else "")


def _figures(figures: list[tuple[str, Any]], *, plotlyjs: bool = True) -> list[dict[str, Any]]:
    """Each figure as an HTML fragment; plotly.js is inlined with the first one only, and
    only when ``plotlyjs`` (a page that has not inlined it yet)."""
    rendered = []
    for i, (title, fig) in enumerate(figures):
        try:
            # plotly escapes "<", ">" and "/" in the figure JSON, so data cannot close the script
            fragment = pio.to_html(
                fig,
                full_html=False,
                include_plotlyjs=plotlyjs and i == 0,
                default_height="480px",
                config={"displaylogo": False},
            )
        except (ValueError, TypeError) as exc:
            raise SerializationError(f"figure {title!r} cannot be rendered: {exc}") from exc
        rendered.append({"title": title, "html": Markup(fragment)})
    return rendered


def _displayable(value: dict[str, Any], where: str) -> Any:
    return jsonable_value(value, where, default=str)


def format_cell(value: Any) -> str:
    """A JSON-ready value as table text: floats to at most 4 decimals, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == 0 or 1e-4 <= abs(value) < 1e15:
            return f"{value:.4f}".rstrip("0").rstrip(".")
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("raysight.exporters", "templates"),
        autoescape=True,  # the template is .html.j2, which select_autoescape would not match
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters["cell"] = format_cell
    return env


def _page(report: ReportContext, **parts: Any) -> str:
    """The report template rendered with the job's facts and the page's own ``parts``."""
    return _environment().get_template(TEMPLATE).render(
        job_id=report.job_id,
        user_id=report.user_id,
        generated_at=report.created_at.isoformat(timespec="seconds"),
        warnings=report.warnings,
        data_stats=_displayable(report.data_stats, "data_stats"),
        metrics=_displayable(report.metrics, "metrics"),
        **parts,
    )
