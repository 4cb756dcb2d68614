"""Plotly figures from analysis results: bar, line, pie and scatter charts.

Each chart reads columns of ``AnalysisResult.table`` by name; the table is converted once to
Polars (only the columns the chart uses) and each trace receives whole columns, so rows keep
the result's order and no Python loop touches a row. A column that is not in the result raises
:class:`raysight.errors.InputError`, which the pipeline records as a non-fatal error entry.

Example::

    chart = BarChart(BarChart.Config(x="product_category", y="total_sales", title="Sales"))
    fig = chart.render(result)  # plotly.graph_objects.Figure
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import plotly.graph_objects as go
import polars as pl
from pydantic import Field

from raysight.errors import InputError
from raysight.plugins import AnalysisResult, Chart, PluginConfig

#: Above this many points, line and scatter traces use WebGL (as plotly.express does).
WEBGL_THRESHOLD = 1000

Columns = str | Annotated[list[str], Field(min_length=1)]


class BarConfig(PluginConfig):
    """``{type: bar, x, y, color?, title?, orientation?}``; ``x`` holds the categories, ``y``
    one or more value columns; ``orientation: h`` draws the bars horizontally."""

    type: Literal["bar"] = "bar"
    x: str
    y: Columns
    color: str | None = None
    title: str = ""
    orientation: Literal["v", "h"] = "v"


class LineConfig(PluginConfig):
    """``{type: line, x, y, color?, title?}``; one line per ``y`` column and ``color`` value."""

    type: Literal["line"] = "line"
    x: str
    y: Columns
    color: str | None = None
    title: str = ""


class PieConfig(PluginConfig):
    """``{type: pie, names, values, title?}``."""

    type: Literal["pie"] = "pie"
    names: str
    values: str
    title: str = ""


class ScatterConfig(PluginConfig):
    """``{type: scatter, x, y, color?, title?}``; a numeric ``color`` is a colour scale, any
    other ``color`` column gives one trace per value."""

    type: Literal["scatter"] = "scatter"
    x: str
    y: str
    color: str | None = None
    title: str = ""


class BarChart(Chart[BarConfig]):
    """Bars of one or more value columns per category (grouped when there are several)."""

    name = "bar"
    Config = BarConfig

    def columns(self) -> dict[str, str]:
        return _named(x=self.config.x, y=self.config.y, color=self.config.color)

    def render(self, result: AnalysisResult) -> go.Figure:
        cfg = self.config
        ys = _as_list(cfg.y)
        df = _frame(result, self.name, [cfg.x, *ys, cfg.color])
        continuous = cfg.color is not None and _is_continuous(df[cfg.color])
        traces = []
        for group, part in _groups(df, None if continuous else cfg.color):
            categories = part[cfg.x].to_numpy()
            for y in ys:
                values = part[y].to_numpy()
                xy = (categories, values) if cfg.orientation == "v" else (values, categories)
                trace = go.Bar(
                    x=xy[0], y=xy[1], orientation=cfg.orientation, name=_trace_name(y, group, ys)
                )
                if continuous:
                    trace.marker = _colour_scale(part[cfg.color], cfg.color)
                traces.append(trace)
        fig = go.Figure(traces)
        value_title = ys[0] if len(ys) == 1 else None
        x_title, y_title = (cfg.x, value_title) if cfg.orientation == "v" else (value_title, cfg.x)
        _layout(fig, cfg.title, x_title, y_title, legend=cfg.color, barmode="group")
        return fig


class LineChart(Chart[LineConfig]):
    """One line per value column (and per ``color`` value), points in the result's row order."""

    name = "line"
    Config = LineConfig

    def columns(self) -> dict[str, str]:
        return _named(x=self.config.x, y=self.config.y, color=self.config.color)

    def render(self, result: AnalysisResult) -> go.Figure:
        cfg = self.config
        ys = _as_list(cfg.y)
        df = _frame(result, self.name, [cfg.x, *ys, cfg.color])
        trace_type = _scatter_type(df.height)
        traces = [
            trace_type(
                x=part[cfg.x].to_numpy(),
                y=part[y].to_numpy(),
                mode="lines",
                name=_trace_name(y, group, ys),
            )
            for group, part in _groups(df, cfg.color)
            for y in ys
        ]
        fig = go.Figure(traces)
        _layout(fig, cfg.title, cfg.x, ys[0] if len(ys) == 1 else None, legend=cfg.color)
        return fig


class PieChart(Chart[PieConfig]):
    """A pie of ``values`` per ``names`` (plotly sums repeated names)."""

    name = "pie"
    Config = PieConfig

    def columns(self) -> dict[str, str]:
        return _named(names=self.config.names, values=self.config.values)

    def render(self, result: AnalysisResult) -> go.Figure:
        cfg = self.config
        df = _frame(result, self.name, [cfg.names, cfg.values])
        fig = go.Figure(go.Pie(labels=df[cfg.names].to_numpy(), values=df[cfg.values].to_numpy()))
        _layout(fig, cfg.title, None, None, legend=cfg.names)
        return fig


class ScatterChart(Chart[ScatterConfig]):
    """Points of ``y`` against ``x``, optionally coloured by a third column."""

    name = "scatter"
    Config = ScatterConfig

    def columns(self) -> dict[str, str]:
        return _named(x=self.config.x, y=self.config.y, color=self.config.color)

    def render(self, result: AnalysisResult) -> go.Figure:
        cfg = self.config
        df = _frame(result, self.name, [cfg.x, cfg.y, cfg.color])
        continuous = cfg.color is not None and _is_continuous(df[cfg.color])
        trace_type = _scatter_type(df.height)
        traces = []
        for group, part in _groups(df, None if continuous else cfg.color):
            trace = trace_type(
                x=part[cfg.x].to_numpy(),
                y=part[cfg.y].to_numpy(),
                mode="markers",
                name=_trace_name(cfg.y, group, [cfg.y]),
            )
            if continuous:
                trace.marker = _colour_scale(part[cfg.color], cfg.color)
            traces.append(trace)
        fig = go.Figure(traces)
        _layout(fig, cfg.title, cfg.x, cfg.y, legend=cfg.color)
        return fig


# ---------------------------------------------------------------------------------------------
# helpers


def _named(**fields: str | list[str] | None) -> dict[str, str]:
    """Column names by config field path; a list field gives ``y[0]``, ``y[1]``..."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if isinstance(value, list):
            out.update({f"{name}[{i}]": column for i, column in enumerate(value)})
        elif value is not None:
            out[name] = value
    return out


def _as_list(columns: str | list[str]) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns)


def _frame(result: AnalysisResult, chart: str, columns: list[str | None]) -> pl.DataFrame:
    """The used columns of the result as one Polars frame; InputError for a missing column."""
    wanted = list(dict.fromkeys(c for c in columns if c is not None))
    available = result.table.column_names
    for column in wanted:
        if column not in available:
            raise InputError(
                f"{chart} chart: column {column!r} is not in the {result.kind} result; "
                f"available columns: {', '.join(available) or '(none)'}",
                column=column,
                available=available,
                chart=chart,
            )
    df = pl.DataFrame(result.table.select(wanted))
    # plotly cannot serialize Decimal objects; floats are what a chart shows anyway
    decimals = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.Decimal)]
    return df.with_columns(pl.col(decimals).cast(pl.Float64)) if decimals else df


def _groups(df: pl.DataFrame, by: str | None) -> list[tuple[str | None, pl.DataFrame]]:
    """(label, rows) per distinct value of ``by`` in first-seen order; rows keep their order.

    Without ``by`` there is one unlabelled group holding every row.
    """
    if by is None:
        return [(None, df)]
    parts = df.partition_by(by, maintain_order=True, as_dict=True)
    return [("null" if key[0] is None else str(key[0]), part) for key, part in parts.items()]


def _trace_name(y: str, group: str | None, ys: list[str]) -> str:
    if group is None:
        return y
    return group if len(ys) == 1 else f"{y}, {group}"


def _is_continuous(series: pl.Series) -> bool:
    return series.dtype.is_numeric()


def _colour_scale(series: pl.Series, title: str) -> dict[str, Any]:
    return {"color": series.to_numpy(), "colorscale": "Viridis", "colorbar": {"title": title}}


def _scatter_type(n_points: int) -> type[go.Scatter] | type[go.Scattergl]:
    return go.Scattergl if n_points > WEBGL_THRESHOLD else go.Scatter


def _layout(
    fig: go.Figure,
    title: str,
    x_title: str | None,
    y_title: str | None,
    legend: str | None = None,
    **extra: Any,
) -> None:
    fig.update_layout(
        title_text=title or None,
        xaxis_title_text=x_title,
        yaxis_title_text=y_title,
        legend_title_text=legend,
        **extra,
    )
