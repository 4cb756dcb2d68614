"""The checks of connectors, charts and exporters: a source reads back, a figure renders, a
file is written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa

from raysight.errors import InputError
from raysight.plugins import (
    ReportContext,
)
from raysight.testing.compare import assert_tables_match
from raysight.testing.plugins import (
    ConfigArg,
    PluginArg,
    as_frame,
    build_plugin,
    config_and_data,
    config_dict,
    resolve_plugin,
    result_of,
    roundtrip,
    workdir,
)


def check_connector_reads(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None,
                          *, kind: str | None = None, tmp_path: Path | None = None) -> None:
    """``check`` passes, ``plan`` lists picklable partitions, and reading each one (in a
    copy shipped as to a Ray task) gives, in order, the rows of the example table (columns
    unified across partitions as the pipeline does); a schema known without reading
    (``schema()``) is the one read."""
    _, cls = resolve_plugin(plugin, kind)
    expected = as_frame(table, "the table the source holds")
    with workdir(tmp_path) as folder:
        settings, data = config_and_data(config, folder)
        connector = build_plugin(cls, settings)
        if data is not None:  # a source given in Python (a Ray Dataset)
            connector = connector.with_data(data)
        connector.check()
        specs = roundtrip(connector.plan())
        assert specs, "plan listed no partitions"
        tables = [roundtrip(roundtrip(connector).read(s)) for s in specs]
        known = connector.schema()
    for t, spec in zip(tables, specs, strict=True):
        assert isinstance(t, pa.Table), f"read({spec.label}) returned {type(t).__name__}"
    read = pl.concat([as_frame(t) for t in tables], how="vertical_relaxed")
    assert read.columns == expected.columns, f"columns {read.columns} != {expected.columns}"
    if known is not None:  # what checks before the run see is what the run reads
        assert known.names == read.columns, f"schema() names {known.names} != {read.columns}"
        known_types = as_frame(known.empty_table()).schema
        assert known_types == read.schema, f"schema() types {known_types} != {read.schema}"
    assert_tables_match(read.cast(expected.schema, strict=False), expected,
                        what=f"{len(specs)} partitions read")


def check_chart_renders(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None, *,
                        kind: str | None = None, tmp_path: Path | None = None) -> None:
    """An example result renders as a plotly figure with data that serializes to JSON; a
    one-row result does too, and an empty one gives a figure or an InputError."""
    import plotly.graph_objects as go

    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table, "an example result table")
    with workdir(tmp_path) as folder:
        chart = build_plugin(cls, config_dict(config, folder))
    for edge in (df, df.head(1), df.clear()):
        try:
            figure = chart.render(result_of(edge))
        except InputError:
            if edge.height:
                raise
            continue
        assert isinstance(figure, go.Figure), f"render returned {type(figure).__name__}"
        assert figure.data or not edge.height, f"no traces for a {edge.height}-row result"
        json.loads(figure.to_json())


def _report(table: pa.Table | pl.DataFrame) -> ReportContext:
    return ReportContext(job_id="conformance", user_id="tester", analysis_type="example",
                         result=result_of(table))


def check_exporter_writes(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None,
                          *, kind: str | None = None, tmp_path: Path | None = None) -> None:
    """The example result (and a one-row and an empty one) is written to exactly one
    non-empty file at the given path, which ``problem`` does not object to."""
    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table, "an example result table")
    with workdir(tmp_path) as folder:
        exporter = build_plugin(cls, config_dict(config, folder))
        problem = exporter.problem(df.to_arrow().schema)
        assert problem is None, f"the example result cannot be exported: {problem}"
        for edge in (df, df.head(1), df.clear()):
            out = folder / f"export-{edge.height}"
            out.mkdir()
            path = out / f"result{cls.extension}"
            exporter.export(_report(edge), str(path))
            written = sorted(p.name for p in out.rglob("*"))
            assert written == [path.name], f"export wrote {written}, not just {path.name}"
            assert path.stat().st_size > 0, f"{path.name} is empty"


#: results few formats can hold, to provoke ``problem``
_AWKWARD = {
    "nested": pa.table({"k": ["a"], "v": pa.array([{"x": [1, 2]}])}),
    "binary": pa.table({"k": ["a"], "v": pa.array([b"\x00\xff"])}),
}


def check_exporter_leaves_nothing_on_error(plugin: PluginArg, config: ConfigArg,
                                           table: pa.Table | None = None, *,
                                           kind: str | None = None,
                                           tmp_path: Path | None = None) -> None:
    """A result ``problem`` objects to (nested or binary columns) is refused by ``export``
    too, with an error and without a file left behind."""
    _, cls = resolve_plugin(plugin, kind)
    with workdir(tmp_path) as folder:
        exporter = build_plugin(cls, config_dict(config, folder))
        for label, awkward in _AWKWARD.items():
            if exporter.problem(awkward.schema) is None:
                continue
            out = folder / f"refused-{label}"
            out.mkdir()
            try:
                exporter.export(_report(awkward), str(out / f"result{cls.extension}"))
            except Exception:  # noqa: BLE001 - any error will do; what is left matters
                pass
            else:
                raise AssertionError(f"export wrote a {label} result that problem() refuses")
            left = sorted(p.name for p in out.rglob("*"))
            assert not left, f"a refused {label} export left {left} behind"
