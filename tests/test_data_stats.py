"""Each source's data statistics (rows, columns, bytes, and per column its type, nulls, min
and max) are those of the loaded table, as Polars computes them, in result.json and the
HTML report."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raysight.connectors.files.parquet import footer_stats
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob
from raysight.tables import column_stats, merge_column_stats

UTC = dt.UTC


def fixture_table() -> pa.Table:
    return pa.table({
        "id": pa.array([3, None, 1, 2], pa.int64()),
        "amount": pa.array([1.5, float("nan"), None, -2.25]),
        "name": pa.array(["Åsa", "🎉", None, "日本"]),
        "price": pa.array([decimal.Decimal("1.10"), None, decimal.Decimal("-3.05"),
                           decimal.Decimal("12.00")], pa.decimal128(10, 2)),
        "at": pa.array([dt.datetime(2024, 1, 1, 12, tzinfo=UTC), None,
                        dt.datetime(2023, 5, 6, tzinfo=UTC), dt.datetime(2025, 2, 3, tzinfo=UTC)],
                       pa.timestamp("us", "UTC")),
        "day": pa.array([dt.date(2024, 1, 1), dt.date(2020, 2, 29), None, None]),
        "flag": pa.array([True, None, False, True]),
        "raw": pa.array([b"\x00", b"\xff", None, b"a"]),
        "empty": pa.nulls(4, pa.int32()),
    })


def polars_stats(table: pa.Table) -> dict:
    """The reference: Polars' null count, min and max (NaN left out) per column."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    out = {}
    for name in frame.columns:
        column = frame.get_column(name)
        orderable = column.dtype != pl.Binary
        values = column.fill_nan(None) if column.dtype.is_float() else column
        out[name] = {"nulls": column.null_count(),
                     "min": values.min() if orderable else None,
                     "max": values.max() if orderable else None}
    return out


def test_column_stats_equal_polars_with_nulls_nan_unicode_decimals_and_time_zones():
    table = fixture_table()
    stats = column_stats(table)
    expected = polars_stats(table)
    for name in table.column_names:
        assert stats[name]["type"] == str(table.schema.field(name).type)
        assert {k: stats[name][k] for k in ("nulls", "min", "max")} == expected[name], name


def test_partition_stats_merge_to_those_of_the_whole_table():
    table = fixture_table()
    pieces = [table.slice(0, 1), table.slice(1, 0), table.slice(1, 3)]
    # the last piece lacks a column: its rows are nulls of it
    pieces[2] = pieces[2].drop_columns(["flag"])
    merged = merge_column_stats([(p.num_rows, column_stats(p)) for p in pieces], table.schema)
    whole = column_stats(table.set_column(table.schema.get_field_index("flag"), "flag",
                                          pa.array([True, None, None, None])))
    for name in table.column_names:
        expected = dict(whole[name])
        for key in ("min", "max"):
            value = expected[key]
            expected[key] = value.isoformat() if isinstance(value, dt.date) else \
                str(value) if isinstance(value, decimal.Decimal) else value
        assert merged[name] == expected, name


def test_an_empty_table_has_types_and_no_extremes():
    table = fixture_table().slice(0, 0)
    stats = column_stats(table)
    assert all(s["nulls"] == 0 and s["min"] is None and s["max"] is None for s in stats.values())


@pytest.mark.usefixtures("ray_session")
def test_a_jobs_result_and_report_hold_each_sources_statistics(tmp_path):
    table = fixture_table()
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(table.slice(0, 2), folder / "a.parquet")
    pq.write_table(table.slice(2), folder / "b.parquet")
    spec = parse_graph_spec({
        "version": 2, "job_id": "data-stats",
        "sources": {"orders": {"type": "file", "path": str(folder)}},
        "analyses": {"summary": {"from": "orders", "type": "descriptive",
                                 "columns": ["id", "amount"]}},
        "exports": [{"format": "html", "path": "report.html"}],
    })
    result = AnalysisJob(spec, run_dir=tmp_path / "runs").run()
    assert result.state == "COMPLETED", result.errors
    saved = json.loads((Path(result.run_dir) / "result.json").read_text())
    stats = saved["data_stats"]["orders"]
    assert (stats["row_count"], stats["column_count"], stats["partitions"]) == (4, 9, 2)
    expected = polars_stats(table)
    for name, column in stats["columns"].items():
        want = {k: v.isoformat() if isinstance(v, dt.date) else
                str(v) if isinstance(v, decimal.Decimal) else v
                for k, v in expected[name].items()}
        assert {k: column[k] for k in ("nulls", "min", "max")} == want, name
    report = (Path(result.run_dir) / "report.html").read_text()
    assert "<h3>orders</h3>" in report
    assert "<td>🎉</td>" in report and "<td>decimal128(10, 2)</td>" in report


def test_parquet_footer_statistics_equal_those_computed_from_the_rows(tmp_path):
    table = fixture_table().append_column(
        "ns", pa.array([1, None, 3, 2], pa.timestamp("ns"))).append_column(
        "small", pa.array([1, -3, None, 7], pa.int8()))
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=2)
    metadata = pq.ParquetFile(tmp_path / "t.parquet").metadata
    for groups in ([0, 1], [1]):
        rows = table.slice(2) if groups == [1] else table
        assert footer_stats(metadata, groups, table.schema) == column_stats(rows), groups
    # an all-NaN row group has no min/max in its footer: the job computes them instead
    nan = pa.table({"x": [float("nan"), float("nan")]})
    pq.write_table(nan, tmp_path / "nan.parquet")
    assert footer_stats(pq.ParquetFile(tmp_path / "nan.parquet").metadata, [0],
                        nan.schema) is None
    nested = pa.table({"l": [[1, 2], None]})
    pq.write_table(nested, tmp_path / "nested.parquet")
    assert footer_stats(pq.ParquetFile(tmp_path / "nested.parquet").metadata, [0],
                        nested.schema) is None
