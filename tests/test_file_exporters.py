"""File exporters: what is written reads back as the result table (pyarrow, pandas, csv)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import math
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from raysight.errors import InputError, PermanentError, SerializationError
from raysight.exporters.files import (
    CsvExporter,
    JsonExporter,
    ParquetExporter,
    to_jsonable,
)
from raysight.plugins import AnalysisResult, AnalysisSection, Exporter, ReportContext
from raysight.registry import exporters


def report_of(table: pa.Table, summary: dict | None = None) -> ReportContext:
    return ReportContext(
        job_id="job_1",
        user_id="analyst_1",
        analysis_type="aggregation",
        result=AnalysisResult(kind="aggregation", table=table, summary=summary or {}),
    )


@pytest.fixture
def cities() -> pa.Table:
    """Unicode names and values, nulls in every column, columns not in sorted order."""
    return pa.table(
        {
            "城市": ["Zürich", "東京", None, "São Paulo"],
            "amount": [1.5, None, -2.25, 1e-7],
            "count": pa.array([3, 1, None, 7], pa.int64()),
            "active": [True, None, False, True],
        }
    )


@pytest.fixture
def awkward_text() -> pa.Table:
    return pa.table(
        {
            "text": ["a,b", 'say "hi"', "line1\nline2", "cr\r\nlf", "semi;colon", "Zürich"],
            "n": [1, 2, 3, 4, 5, 6],
        }
    )


# ---------------------------------------------------------------------------------------------
# Parquet


def test_parquet_reads_back_equal_to_the_table(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.parquet"

    ParquetExporter(ParquetExporter.Config()).export(report_of(cities), str(path))

    assert pq.read_table(path).equals(cities)
    pd.testing.assert_frame_equal(pd.read_parquet(path), cities.to_pandas())


def test_parquet_of_an_empty_table_keeps_the_schema(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    empty = cities.slice(0, 0)

    ParquetExporter(ParquetExporter.Config()).export(report_of(empty), str(path))

    back = pq.read_table(path)
    assert back.num_rows == 0
    assert back.schema.equals(cities.schema)


def test_parquet_of_one_row_reads_back_equal(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "one.parquet"
    one = cities.slice(1, 1)

    ParquetExporter(ParquetExporter.Config()).export(report_of(one), str(path))

    assert pq.read_table(path).equals(one)


@pytest.mark.parametrize(
    ("compression", "codec"),
    [("zstd", "ZSTD"), ("snappy", "SNAPPY"), ("gzip", "GZIP"), ("none", "UNCOMPRESSED")],
)
def test_parquet_uses_the_configured_compression(
    compression: str, codec: str, cities: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "result.parquet"

    ParquetExporter(ParquetExporter.Config(compression=compression)).export(
        report_of(cities), str(path)
    )

    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == codec


def test_parquet_default_compression_is_zstd() -> None:
    assert ParquetExporter.Config().compression == "zstd"


def test_export_writes_to_an_fsspec_url(cities: pa.Table) -> None:
    url = "memory://raysight-tests/job_1/result.parquet"

    ParquetExporter(ParquetExporter.Config()).export(report_of(cities), url)

    with fsspec.open(url, "rb") as f:
        assert pq.read_table(f).equals(cities)


def test_export_creates_missing_local_folders(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "result.parquet"

    ParquetExporter(ParquetExporter.Config()).export(report_of(cities), str(path))

    assert path.is_file()


def test_export_to_a_directory_raises_permanent_error(cities: pa.Table, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=str(tmp_path)):
        ParquetExporter(ParquetExporter.Config()).export(report_of(cities), str(tmp_path))


# ---------------------------------------------------------------------------------------------
# CSV


def test_csv_read_back_by_pandas_equals_the_table(awkward_text: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config()).export(report_of(awkward_text), str(path))

    pd.testing.assert_frame_equal(
        pd.read_csv(path, dtype={"text": "str"}), awkward_text.to_pandas()
    )


def test_csv_read_back_by_the_csv_module_gives_the_same_strings(
    awkward_text: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config()).export(report_of(awkward_text), str(path))

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "n"]
    assert [row[0] for row in rows[1:]] == awkward_text.column("text").to_pylist()


def test_csv_quotes_only_fields_that_need_it_and_doubles_quotes(
    awkward_text: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config()).export(report_of(awkward_text), str(path))

    text = path.read_bytes().decode("utf-8")
    assert '\r\n"a,b",1\r\n' in text
    assert '\r\n"say ""hi""",2\r\n' in text
    assert '\r\n"line1\nline2",3\r\n' in text
    assert "\r\nZürich,6\r\n" in text


def test_csv_lines_end_with_crlf(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config()).export(report_of(cities), str(path))

    data = path.read_bytes()
    assert data.count(b"\r\n") == cities.num_rows + 1
    assert data.count(b"\n") == data.count(b"\r\n")


def test_csv_null_is_an_empty_field_and_empty_string_is_quoted(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    table = pa.table({"a": ["", None], "b": [1, None]})

    CsvExporter(CsvExporter.Config()).export(report_of(table), str(path))

    assert path.read_bytes() == b'a,b\r\n"",1\r\n,\r\n'


def test_csv_with_nulls_and_unicode_reads_back_equal(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config()).export(report_of(cities), str(path))

    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    expected = cities.to_pandas(types_mapper=nullable.get)
    back = pd.read_csv(path, dtype={"城市": "str", "count": "Int64", "active": "boolean"})
    pd.testing.assert_frame_equal(back, expected)
    assert list(back.columns) == cities.column_names


def test_csv_uses_the_configured_delimiter(awkward_text: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config(delimiter=";")).export(report_of(awkward_text), str(path))

    text = path.read_bytes().decode("utf-8")
    assert text.startswith("text;n\r\n")
    assert '\r\n"semi;colon";5\r\n' in text
    assert "\r\na,b;1\r\n" in text
    pd.testing.assert_frame_equal(pd.read_csv(path, sep=";"), awkward_text.to_pandas())


def test_csv_without_header_starts_with_the_first_row(
    awkward_text: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "result.csv"

    CsvExporter(CsvExporter.Config(header=False)).export(report_of(awkward_text), str(path))

    assert path.read_bytes().startswith(b'"a,b",1\r\n')


def test_csv_writes_timestamps_as_iso_8601(tmp_path: Path) -> None:
    path = tmp_path / "result.csv"
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    table = pa.table({"day": [dt.date(2024, 1, 2)], "at": [when]})

    CsvExporter(CsvExporter.Config()).export(report_of(table), str(path))

    day, at = path.read_text(encoding="utf-8").splitlines()[1].split(",")
    assert dt.date.fromisoformat(day) == dt.date(2024, 1, 2)
    assert dt.datetime.fromisoformat(at) == when


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_csv_writes_zoned_timestamps_with_an_iso_8601_offset(tmp_path: Path, unit: str) -> None:
    path = tmp_path / "result.csv"
    zone = dt.timezone(dt.timedelta(hours=-5))
    when = dt.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=zone)
    table = pa.table({"at": pa.array([when, None], pa.timestamp(unit, "America/New_York"))})

    CsvExporter(CsvExporter.Config()).export(report_of(table), str(path))

    first, second = path.read_text(encoding="utf-8").splitlines()[1:]
    assert first.endswith("-05:00")
    assert dt.datetime.fromisoformat(first) == when
    assert second == ""
    assert pd.read_csv(path)["at"][0] == first  # the same text pandas' own reader keeps


def test_csv_names_a_nested_or_binary_column_from_the_schema_alone() -> None:
    schema = pa.schema({"ok": pa.int64(), "tags": pa.list_(pa.string()), "raw": pa.binary(),
                        "at": pa.timestamp("us", "UTC")})
    problem = CsvExporter(CsvExporter.Config()).problem(schema)
    assert problem is not None and "tags" in problem and "raw" in problem
    assert "ok" not in problem and "at" not in problem
    assert CsvExporter(CsvExporter.Config()).problem(pa.schema({"ok": pa.int64()})) is None


def test_csv_of_a_nested_column_raises_input_error_naming_it(tmp_path: Path) -> None:
    table = pa.table({"ok": [1], "tags": [["a", "b"]]})

    with pytest.raises(InputError, match="tags"):
        CsvExporter(CsvExporter.Config()).export(report_of(table), str(tmp_path / "x.csv"))


@pytest.mark.parametrize("delimiter", ["", ",,", '"', "\n"])
def test_csv_config_rejects_an_unusable_delimiter(delimiter: str) -> None:
    with pytest.raises(ValidationError, match="delimiter"):
        CsvExporter.Config(delimiter=delimiter)


# ---------------------------------------------------------------------------------------------
# JSON


def read_json(path: Path) -> dict:
    def no_constants(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)


def test_json_document_holds_job_summary_columns_and_records(
    cities: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "result.json"

    JsonExporter(JsonExporter.Config()).export(report_of(cities, summary={"groups": 4}), str(path))

    assert read_json(path) == {
        "job_id": "job_1",
        "analysis_type": "aggregation",
        "summary": {"groups": 4},
        "columns": ["城市", "amount", "count", "active"],
        "rows": cities.to_pylist(),
    }


def test_data_exporters_write_the_result_the_export_names_not_every_analysis(
    cities: pa.Table, tmp_path: Path
) -> None:
    other = AnalysisResult(kind="descriptive", table=pa.table({"x": [1, 2]}), summary={"n": 2})
    report = report_of(cities, summary={"groups": 4})
    report.analyses = [
        AnalysisSection("by_city", "aggregation", report.result, [], []),
        AnalysisSection("profile", "descriptive", other, [], []),
    ]

    JsonExporter(JsonExporter.Config()).export(report, str(tmp_path / "result.json"))
    ParquetExporter(ParquetExporter.Config()).export(report, str(tmp_path / "result.parquet"))
    CsvExporter(CsvExporter.Config()).export(report, str(tmp_path / "result.csv"))

    assert read_json(tmp_path / "result.json")["rows"] == cities.to_pylist()
    assert pq.read_table(tmp_path / "result.parquet").equals(cities)
    assert next(csv.reader(io.StringIO((tmp_path / "result.csv").read_text("utf-8")))) == [
        "城市", "amount", "count", "active"
    ]


def test_json_writes_nan_and_infinities_as_null(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    table = pa.table({"x": [1.5, math.nan, math.inf, -math.inf, None]})

    JsonExporter(JsonExporter.Config()).export(report_of(table), str(path))

    assert read_json(path)["rows"] == [
        {"x": 1.5},
        {"x": None},
        {"x": None},
        {"x": None},
        {"x": None},
    ]


def test_json_summary_nan_and_dates_are_json_safe(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    summary = {"mean": math.nan, "since": dt.date(2024, 1, 2), "parts": (1, 2)}

    JsonExporter(JsonExporter.Config()).export(report_of(pa.table({"x": [1]}), summary), str(path))

    assert read_json(path)["summary"] == {"mean": None, "since": "2024-01-02", "parts": [1, 2]}


def test_json_keeps_column_order_in_every_record(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    table = pa.table({"z": [1], "a": [2], "m": [3]})

    JsonExporter(JsonExporter.Config()).export(report_of(table), str(path))

    assert list(read_json(path)["rows"][0]) == ["z", "a", "m"]


def test_json_columns_orient_writes_one_list_per_column(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.json"

    JsonExporter(JsonExporter.Config(orient="columns")).export(report_of(cities), str(path))

    doc = read_json(path)
    assert "rows" not in doc
    assert doc["data"] == cities.to_pydict()


def test_json_of_an_empty_table_has_columns_and_no_rows(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.json"

    JsonExporter(JsonExporter.Config()).export(report_of(cities.slice(0, 0)), str(path))

    doc = read_json(path)
    assert doc["columns"] == cities.column_names
    assert doc["rows"] == []


def test_json_is_utf8_without_escapes(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.json"

    JsonExporter(JsonExporter.Config()).export(report_of(cities), str(path))

    assert "東京".encode() in path.read_bytes()


def test_json_indent_none_writes_one_line(cities: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "result.json"

    JsonExporter(JsonExporter.Config(indent=None)).export(report_of(cities), str(path))

    assert b"\n" not in path.read_bytes()


def test_to_jsonable_writes_dates_and_timestamps_as_iso_8601() -> None:
    table = pa.table(
        {
            "day": [dt.date(2024, 1, 2)],
            "naive": [dt.datetime(2024, 1, 2, 3, 4, 5)],
            "micro": [dt.datetime(2024, 1, 2, 3, 4, 5, 120)],
            "zoned": pa.array(
                [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")
            ),
            "clock": [dt.time(13, 14, 15)],
        }
    )

    assert to_jsonable(table) == [
        {
            "day": "2024-01-02",
            "naive": "2024-01-02T03:04:05",
            "micro": "2024-01-02T03:04:05.000120",
            "zoned": "2024-01-02T03:04:05+00:00",
            "clock": "13:14:15",
        }
    ]


def test_to_jsonable_timestamps_parse_back_with_fromisoformat() -> None:
    zoned = dt.datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    table = pa.table({"at": pa.array([zoned], pa.timestamp("us", tz="+02:00"))})

    assert dt.datetime.fromisoformat(to_jsonable(table)[0]["at"]) == zoned


def test_to_jsonable_writes_decimals_as_floats_and_bytes_as_base64() -> None:
    table = pa.table(
        {
            "price": pa.array([decimal.Decimal("12.34")], pa.decimal128(6, 2)),
            "blob": [b"\x00\xffraw"],
        }
    )

    row = to_jsonable(table)[0]

    assert row["price"] == 12.34
    assert base64.b64decode(row["blob"]) == b"\x00\xffraw"


def test_to_jsonable_cleans_values_inside_lists_and_structs() -> None:
    table = pa.table(
        {
            "values": [[1.0, math.nan], None],
            "point": [{"x": math.inf, "day": dt.date(2024, 1, 2)}, None],
        }
    )

    assert to_jsonable(table) == [
        {"values": [1.0, None], "point": {"x": None, "day": "2024-01-02"}},
        {"values": None, "point": None},
    ]


def test_to_jsonable_reads_column_names_literally() -> None:
    assert to_jsonable(pa.table({"^a.*$": [1], "a": [2]})) == [{"^a.*$": 1, "a": 2}]


def test_duplicate_column_names_raise_serialization_error() -> None:
    table = pa.table([[1], [2]], names=["a", "a"])

    with pytest.raises(SerializationError, match="more than once"):
        to_jsonable(table)


# ---------------------------------------------------------------------------------------------
# all exporters


@pytest.mark.parametrize(
    ("name", "plugin", "extension"),
    [
        ("json", JsonExporter, ".json"),
        ("csv", CsvExporter, ".csv"),
        ("parquet", ParquetExporter, ".parquet"),
    ],
)
def test_exporter_is_registered_with_its_extension(name: str, plugin: type, extension: str) -> None:
    assert exporters.get(name) is plugin
    assert plugin.extension == extension


@pytest.mark.parametrize("plugin", [JsonExporter, CsvExporter, ParquetExporter])
def test_config_path_is_optional_and_kept(plugin: type[Exporter[Any]]) -> None:
    assert plugin.Config().path is None
    assert plugin.Config(path="out/result").path == "out/result"


@pytest.mark.parametrize("plugin", [JsonExporter, CsvExporter, ParquetExporter])
def test_config_rejects_unknown_keys(plugin: type[Exporter[Any]]) -> None:
    with pytest.raises(ValidationError, match="filepath"):
        plugin.Config.model_validate({"format": plugin.name, "filepath": "x"})


def test_csv_output_is_parsed_by_pandas_from_memory(awkward_text: pa.Table) -> None:
    url = "memory://raysight-tests/job_1/result.csv"

    CsvExporter(CsvExporter.Config()).export(report_of(awkward_text), url)

    with fsspec.open(url, "rb") as f:
        back = pd.read_csv(io.BytesIO(f.read()))
    pd.testing.assert_frame_equal(back, awkward_text.to_pandas())
