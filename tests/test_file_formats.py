"""File sources beyond CSV, JSON and Parquet: Avro, Arrow IPC, ORC, Excel, and compressed
CSV/NDJSON. Each format's own writer writes the fixture rows (nulls, unicode, decimals,
time-zoned timestamps, dates, booleans and bytes where the format has them); a job loads them
and its table equals what was written. Large files split into the rows of one read, a folder
is one partition per file, and a damaged file is an error that names it."""

from __future__ import annotations

import bz2
import datetime as dt
import decimal
import gzip
import io
import json
import lzma
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import fastavro
import openpyxl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from conftest import job_tasks
from pydantic import ValidationError
from test_cli import cli, exports_under, write_spec

from raysight.cli import EXIT_INVALID

try:
    from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
except ImportError:
    from backports import zstd
from raysight.connectors.files import FileConnector, FileSourceConfig, Format
from raysight.errors import InputError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

TZ = dt.timezone(dt.timedelta(hours=2))

#: the fixture: ints, floats with nulls, unicode, decimals, time-zoned timestamps, dates,
#: booleans and bytes; the last row is null wherever a column may be
ROWS: list[dict[str, Any]] = [
    {"id": i,
     "x": [1.5, None, -0.25, 1e300, 0.0, None][i],
     "name": ["plain", "Grüße", "東京", "emoji 🎉", "", "naïve café"][i],
     "price": decimal.Decimal(["0.00", "-1.25", "99999999.99", "3.10", "0.01", "12.50"][i]),
     "at": dt.datetime(2024, 1, 1, 12, 30, tzinfo=TZ) + dt.timedelta(days=i, microseconds=i),
     "day": dt.date(2024, 2, 28) + dt.timedelta(days=i),
     "flag": i % 2 == 0,
     "raw": bytes([0, 255, i]) * (i + 1)}
    for i in range(6)
] + [{"id": 6, **dict.fromkeys(["x", "name", "price", "at", "day", "flag", "raw"])}]

SCHEMA = pa.schema([
    ("id", pa.int64()), ("x", pa.float64()), ("name", pa.string()),
    ("price", pa.decimal128(10, 2)), ("at", pa.timestamp("us", "+02:00")),
    ("day", pa.date32()), ("flag", pa.bool_()), ("raw", pa.binary()),
])

AVRO_SCHEMA = {
    "type": "record", "name": "row", "namespace": "raysight.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "x", "type": ["null", "double"]},
        {"name": "name", "type": ["null", "string"]},
        {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                                            "precision": 10, "scale": 2}]},
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
        {"name": "flag", "type": ["null", "boolean"]},
        {"name": "raw", "type": ["null", "bytes"]},
    ],
}


def fixture_table(rows: list[dict[str, Any]] = ROWS) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def write_avro(path: Path, rows: list[dict[str, Any]], **options: Any) -> None:
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(AVRO_SCHEMA), rows, **options)


def write_ipc(path: Path, rows: list[dict[str, Any]], **options: Any) -> None:
    feather.write_feather(fixture_table(rows), path, **options)


def write_orc(path: Path, rows: list[dict[str, Any]], **options: Any) -> None:
    orc.write_table(fixture_table(rows), path, **options)


EXCEL_COLUMNS = ["id", "x", "name", "at", "day", "flag"]


def write_excel(path: Path, rows: list[dict[str, Any]], **options: Any) -> None:
    """Excel has no time zones, decimals or bytes: the wall time in UTC, no price or raw."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "rows"
    sheet.append(EXCEL_COLUMNS)
    for row in rows:
        at = row["at"] and row["at"].astimezone(dt.UTC).replace(tzinfo=None)
        sheet.append([row["id"], row["x"], row["name"], at, row["day"], row["flag"]])
    book.create_sheet("notes").append(["a note"])
    book.create_sheet("empty")
    book.save(path)


WRITERS: dict[str, tuple[str, Callable[..., None]]] = {
    "avro": (".avro", write_avro),
    "ipc": (".arrow", write_ipc),
    "orc": (".orc", write_orc),
    "excel": (".xlsx", write_excel),
}


def expected(fmt: str, rows: list[dict[str, Any]] = ROWS) -> pa.Table:
    """The fixture as each format keeps it: Avro timestamps are UTC (the same instants), ORC
    keeps instants in nanoseconds; Excel keeps numbers as floats, times in milliseconds without
    a zone, and an empty text as an empty cell."""
    table = fixture_table(rows)
    if fmt == "avro":
        return table.cast(table.schema.set(4, pa.field("at", pa.timestamp("us", "UTC"))))
    if fmt == "orc":
        return table.cast(table.schema.set(4, pa.field("at", pa.timestamp("ns", "UTC"))))
    if fmt == "excel":
        excel_rows = [{**r, "id": float(r["id"]), "name": r["name"] or None,
                       "at": r["at"] and r["at"].astimezone(dt.UTC).replace(
                           tzinfo=None, microsecond=r["at"].microsecond // 1000 * 1000),
                       "day": r["day"] and dt.datetime.combine(r["day"], dt.time())}
                      for r in rows]
        return pa.Table.from_pylist(
            [{c: r[c] for c in EXCEL_COLUMNS} for r in excel_rows],
            schema=pa.schema([("id", pa.float64()), ("x", pa.float64()),
                              ("name", pa.string()), ("at", pa.timestamp("ms")),
                              ("day", pa.timestamp("ms")), ("flag", pa.bool_())]))
    return table


def assert_same(loaded: pa.Table, want: pa.Table) -> None:
    """Same column names, types and values (string and binary of any offset width)."""
    assert loaded.column_names == want.column_names
    assert [_classic(t) for t in loaded.schema.types] == list(want.schema.types)
    assert loaded.to_pylist() == want.to_pylist()


def _classic(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t


def connector(path: Path | str, **config: Any) -> FileConnector:
    return FileConnector(FileSourceConfig(path=str(path), **config))


def read_all(conn: FileConnector) -> pa.Table:
    """Every partition read in order, as a job's load step reads them."""
    conn.check()
    return pa.concat_tables([conn.read(p) for p in conn.plan()], promote_options="permissive")


def written(tmp_path: Path, fmt: str, rows: list[dict[str, Any]] = ROWS, name: str = "rows",
            **options: Any) -> Path:
    extension, write = WRITERS[fmt]
    path = tmp_path / f"{name}{extension}"
    write(path, rows, **options)
    return path


def run_job(tmp_path: Path, source: dict[str, Any], job_id: str):
    spec = parse_graph_spec({
        "version": 2, "job_id": job_id,
        "sources": {"rows": source},
        "analyses": {"profile": {"from": "rows", "type": "descriptive", "columns": ["id"]}},
        "exports": [{"from": "rows", "format": "parquet", "path": "rows.parquet"}],
        "execution": {"timeout_s": 120},
    })
    return AnalysisJob(spec, run_dir=tmp_path / "runs").run()


def job_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# A job loads what each format's writer wrote


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_job_loads_the_fixture_as_written(ray_session, tmp_path, fmt):
    path = written(tmp_path, fmt)
    result = run_job(tmp_path, {"type": "file", "path": str(path)}, job_id(f"fmt_{fmt}"))
    assert result.state == "COMPLETED", result.errors
    assert_same(pq.read_table(Path(result.run_dir) / "rows.parquet"), expected(fmt))


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_the_connector_reads_the_fixture_as_written(tmp_path, fmt):
    assert_same(read_all(connector(written(tmp_path, fmt))), expected(fmt))


@pytest.mark.parametrize("codec", ["deflate", "snappy", "zstandard", "bzip2", "xz"])
def test_a_compressed_avro_file_reads_as_written(tmp_path, codec):
    path = written(tmp_path, "avro", codec=codec)
    assert_same(read_all(connector(path)), expected("avro"))


def test_avro_matches_fastavro_s_own_reading(tmp_path):
    path = written(tmp_path, "avro")
    with path.open("rb") as f:
        reference = list(fastavro.reader(f))
    assert read_all(connector(path)).to_pylist() == reference


def test_orc_matches_pyarrow_s_own_reading(tmp_path):
    path = written(tmp_path, "orc")
    assert read_all(connector(path)).equals(orc.read_table(path))


def test_an_arrow_ipc_stream_is_read_like_a_file_and_never_split(tmp_path):
    path = tmp_path / "rows.arrows"
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, SCHEMA) as writer:
        for row in ROWS:
            writer.write_table(fixture_table([row]))
    conn = connector(path, format="ipc", partition_bytes=64)
    assert len(conn.plan()) == 1
    assert_same(read_all(conn), expected("ipc"))


@pytest.mark.parametrize("extension", [".feather", ".ipc"])
def test_feather_and_ipc_extensions_are_arrow_ipc(tmp_path, extension):
    path = tmp_path / f"rows{extension}"
    write_ipc(path, ROWS)
    assert_same(read_all(connector(path)), expected("ipc"))


@pytest.mark.parametrize("fmt", ["avro", "ipc", "orc"])
def test_schema_comes_from_the_header_and_matches_what_is_read(tmp_path, fmt):
    path = written(tmp_path, fmt)
    schema = connector(path).schema()
    assert schema is not None
    assert list(schema.types) == list(expected(fmt).schema.types)
    assert schema.names == expected(fmt).column_names


def test_an_excel_source_has_no_schema_before_it_is_read(tmp_path):
    assert connector(written(tmp_path, "excel")).schema() is None


# ---------------------------------------------------------------------------------------------
# Avro types from the writer schema


def avro_file(tmp_path: Path, field_type: Any, values: list[Any]) -> Path:
    schema = {"type": "record", "name": "r", "fields": [{"name": "c", "type": field_type}]}
    path = tmp_path / "c.avro"
    with path.open("wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), [{"c": v} for v in values])
    return path


@pytest.mark.parametrize("field_type,values,arrow_type", [
    ({"type": "enum", "name": "E", "symbols": ["a", "b"]}, ["b", "a"], pa.string()),
    ({"type": "map", "values": "long"}, [{"k": 1}, {}],
     pa.map_(pa.string(), pa.field("value", pa.int64(), False))),
    ({"type": "array", "items": ["null", "string"]}, [["x", None], []],
     pa.list_(pa.field("item", pa.string()))),
    ({"type": "fixed", "name": "F", "size": 2}, [b"ab", b"\x00\xff"], pa.binary()),
    ({"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 18,
      "scale": 3}, [decimal.Decimal("1.234"), decimal.Decimal("-0.001")],
     pa.decimal128(18, 3)),
    ({"type": "record", "name": "In", "fields": [{"name": "a", "type": "int"},
                                                 {"name": "b", "type": ["null", "string"]}]},
     [{"a": 1, "b": "z"}, {"a": 2, "b": None}],
     pa.struct([pa.field("a", pa.int32(), False), pa.field("b", pa.string())])),
    ({"type": "int", "logicalType": "time-millis"}, [dt.time(1, 2, 3, 4000)], pa.time32("ms")),
    ({"type": "long", "logicalType": "time-micros"}, [dt.time(23, 59, 59, 999999)],
     pa.time64("us")),
    ({"type": "long", "logicalType": "timestamp-millis"},
     [dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC)], pa.timestamp("ms", "UTC")),
    ({"type": "long", "logicalType": "local-timestamp-micros"},
     [dt.datetime(2024, 1, 1, 1, 2, 3, 4)], pa.timestamp("us")),
    ({"type": "string", "logicalType": "uuid"}, [uuid.UUID(int=5)], pa.string()),
    (["null", "int", "double"], [1, 2.5, None], pa.float64()),
    ("float", [1.5], pa.float32()),
])
def test_avro_types_follow_the_writer_schema(tmp_path, field_type, values, arrow_type):
    path = avro_file(tmp_path, field_type, values)
    with path.open("rb") as f:
        reference = [r["c"] for r in fastavro.reader(f)]
    table = read_all(connector(path))
    assert table.schema.field("c").type == arrow_type
    got = table.column("c").to_pylist()
    if pa.types.is_map(arrow_type):
        got = [dict(pairs) for pairs in got]
    if arrow_type == pa.string() and isinstance(values[0], uuid.UUID):
        reference = [str(v) for v in reference]
    assert got == reference


def test_an_avro_column_null_in_every_row_keeps_its_type(tmp_path):
    path = avro_file(tmp_path, ["null", {"type": "long", "logicalType": "timestamp-micros"}],
                     [None, None])
    table = read_all(connector(path))
    assert table.schema.field("c").type == pa.timestamp("us", "UTC")
    assert table.column("c").null_count == 2


def test_an_avro_union_of_unrelated_types_is_refused_naming_the_column(tmp_path):
    path = avro_file(tmp_path, ["null", "long", "string"], [1, "a"])
    with pytest.raises(InputError, match="'c' is an Avro union"):
        read_all(connector(path))


# ---------------------------------------------------------------------------------------------
# Empty files, folders, splitting


@pytest.mark.parametrize("fmt", ["avro", "ipc", "orc"])
def test_an_empty_file_reads_as_no_rows_with_the_written_types(tmp_path, fmt):
    table = read_all(connector(written(tmp_path, fmt, rows=[])))
    assert table.num_rows == 0
    assert list(table.schema.types) == list(expected(fmt).schema.types)


def test_an_empty_excel_sheet_reads_as_an_empty_table(tmp_path):
    table = read_all(connector(written(tmp_path, "excel"), excel={"sheet": "empty"}))
    assert (table.num_rows, table.num_columns) == (0, 0)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_folder_is_one_partition_per_file_and_loads_every_row(ray_session, tmp_path, fmt):
    folder = tmp_path / "parts"
    folder.mkdir()
    chunks = [ROWS[:3], ROWS[3:5], ROWS[5:]]
    for i, chunk in enumerate(chunks):
        written(folder, fmt, rows=chunk, name=f"part-{i}")
    extension = WRITERS[fmt][0]
    conn = connector(folder)
    assert [p.label for p in conn.plan()] == [f"part-{i}{extension}" for i in range(3)]
    jid = job_id(f"folder_{fmt}")
    result = run_job(tmp_path, {"type": "file", "path": str(folder)}, jid)
    assert result.state == "COMPLETED", result.errors
    loads = [t for t in job_tasks(jid, expect=3) if t.name == f"{jid}/rows/load"]
    assert len(loads) == 3
    assert_same(pq.read_table(Path(result.run_dir) / "rows.parquet"), expected(fmt))


MANY = [{**ROWS[i % len(ROWS)], "id": i} for i in range(3000)]


@pytest.mark.parametrize("fmt,options", [
    ("avro", {"sync_interval": 2000}),
    ("avro", {"sync_interval": 2000, "codec": "snappy"}),
    ("ipc", {"chunksize": 100, "compression": "uncompressed"}),
    ("orc", {"stripe_size": 4096, "batch_size": 64}),
])
def test_a_large_file_splits_into_the_rows_of_one_read(tmp_path, fmt, options):
    path = written(tmp_path, fmt, rows=MANY, **options)
    whole = read_all(connector(path))
    split = connector(path, partition_bytes=max(1, path.stat().st_size // 5))
    parts = split.plan()
    assert len(parts) > 2
    assert sum(p.estimated_bytes for p in parts) <= path.stat().st_size
    assert read_all(split).equals(whole)
    assert_same(whole, expected(fmt, MANY))


def test_split_files_off_keeps_a_large_file_whole(tmp_path):
    path = written(tmp_path, "avro", rows=MANY, sync_interval=2000)
    assert len(connector(path, partition_bytes=1000, split_files=False).plan()) == 1


def test_a_job_on_a_split_avro_file_runs_one_load_task_per_block_run(ray_session, tmp_path):
    path = written(tmp_path, "avro", rows=MANY, sync_interval=2000)
    source = {"type": "file", "path": str(path), "partition_bytes": path.stat().st_size // 3}
    count = len(FileConnector(FileSourceConfig(**source)).plan())
    assert count >= 3
    jid = job_id("avro_split")
    result = run_job(tmp_path, source, jid)
    assert result.state == "COMPLETED", result.errors
    loads = [t for t in job_tasks(jid, expect=count) if t.name == f"{jid}/rows/load"]
    assert len(loads) == count
    assert_same(pq.read_table(Path(result.run_dir) / "rows.parquet"), expected("avro", MANY))


# ---------------------------------------------------------------------------------------------
# Excel options


def test_an_excel_sheet_is_chosen_by_name_or_index(tmp_path):
    path = written(tmp_path, "excel")
    by_name = read_all(connector(path, excel={"sheet": "rows"}))
    assert_same(by_name, expected("excel"))
    assert read_all(connector(path, excel={"sheet": 1})).column_names == ["a note"]


def test_an_excel_sheet_without_a_header_gets_numbered_columns(tmp_path):
    table = read_all(connector(written(tmp_path, "excel"), excel={"header": False}))
    assert table.column_names == [f"f{i}" for i in range(len(EXCEL_COLUMNS))]
    assert table.num_rows == len(ROWS) + 1
    assert table.column("f0")[0].as_py() == "id"


def test_a_missing_excel_sheet_is_an_input_error_listing_the_sheets(tmp_path):
    path = written(tmp_path, "excel")
    sheets = "'rows', 'notes', 'empty'"
    with pytest.raises(InputError, match=f"no sheet 'totals'; its sheets are {sheets}"):
        read_all(connector(path, excel={"sheet": "totals"}))


def test_excel_options_are_refused_for_another_format():
    with pytest.raises(ValidationError, match="`excel` options apply to format excel"):
        FileSourceConfig(path="x.csv", format="csv", excel={"sheet": 0})


def test_excel_options_are_refused_for_files_of_another_format(tmp_path):
    path = written(tmp_path, "avro")
    with pytest.raises(InputError, match=f"`excel` options apply to Excel files; {path} holds"):
        connector(path, excel={"sheet": 0}).plan()


# ---------------------------------------------------------------------------------------------
# Compressed CSV and NDJSON


CSV = "id,name,amount\n" + "".join(
    f"{i},{['Grüße', '東京', 'emoji 🎉', ''][i % 4]},{'' if i % 5 == 0 else i * 0.5}\n"
    for i in range(50))
NDJSON = "".join(json.dumps({"id": i, "name": ["東京", None][i % 2], "v": i / 4},
                            ensure_ascii=False) + "\n" for i in range(50))
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": zstd.compress,
}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize("name,text", [("rows.csv", CSV), ("rows.ndjson", NDJSON)])
def test_a_compressed_text_file_reads_like_the_plain_one(tmp_path, suffix, name, text):
    plain = tmp_path / name
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / f"{name}{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](text.encode()))
    conn = connector(packed, partition_bytes=64)  # never split: a compressed file is whole
    assert len(conn.plan()) == 1
    assert read_all(conn).equals(read_all(connector(plain)))


def test_a_job_loads_a_zstd_csv(ray_session, tmp_path):
    path = tmp_path / "rows.csv.zst"
    path.write_bytes(COMPRESSORS[".zst"](CSV.encode()))
    result = run_job(tmp_path, {"type": "file", "path": str(path)}, job_id("zstd"))
    assert result.state == "COMPLETED", result.errors
    assert pq.read_table(Path(result.run_dir) / "rows.parquet").num_rows == 50


# ---------------------------------------------------------------------------------------------
# Damaged files and format hints


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("fmt,what", [
    ("avro", "Avro"), ("ipc", "Arrow IPC"), ("orc", "ORC"), ("excel", "Excel")])
def test_a_truncated_file_is_an_input_error_naming_it(tmp_path, fmt, what):
    path = truncated(written(tmp_path, fmt))
    with pytest.raises(InputError, match=f"malformed {what} in {path}"):
        read_all(connector(path))


@pytest.mark.parametrize("fmt", ["avro", "ipc", "orc", "excel"])
def test_a_file_that_is_not_of_its_format_is_an_input_error_naming_it(tmp_path, fmt):
    path = tmp_path / f"notes{WRITERS[fmt][0]}"
    path.write_text("just some text, not a binary file\n" * 20)
    with pytest.raises(InputError, match=str(path)):
        read_all(connector(path))


def test_a_damaged_avro_block_is_an_input_error_naming_the_file_and_bytes(tmp_path):
    path = written(tmp_path, "avro", rows=MANY, sync_interval=2000)
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=f"malformed Avro in {path}"):
        read_all(connector(path, partition_bytes=len(data) // 4))


def test_an_avro_file_damaged_after_its_header_fails_the_job_naming_it(ray_session, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    written(folder, "avro", name="good")
    bad = truncated(written(folder, "avro", rows=MANY, name="bad"))
    result = run_job(tmp_path, {"type": "file", "path": str(folder)}, job_id("bad_avro"))
    assert result.state == "FAILED"
    assert any(f"malformed Avro in {bad}" in e["message"] for e in result.errors), result.errors
    assert not (Path(result.run_dir) / "rows.parquet").exists()


def test_an_avro_file_with_a_damaged_header_stops_the_job_before_it_starts(tmp_path):
    bad = truncated(written(tmp_path, "avro"))  # the fixture's header is most of the file
    with pytest.raises(InputError, match=f"malformed Avro in {bad}"):
        run_job(tmp_path, {"type": "file", "path": str(bad)}, job_id("bad_header"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_the_cli_fails_a_corrupt_file_naming_it_and_writes_no_output(ray_session, tmp_path,
                                                                      capsys, fmt):
    if fmt == "parquet":
        path = tmp_path / "rows.parquet"
        pq.write_table(fixture_table(), path)
    else:
        path = written(tmp_path, fmt)
    truncated(path)
    runs = tmp_path / "runs"
    spec = write_spec(tmp_path, source={"type": "file", "path": str(path)},
                      analysis={"type": "descriptive"})
    code, out, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert code == EXIT_INVALID  # a bad file, like a malformed CSV (raysight.cli)
    assert str(path) in out + err and "Traceback" not in out + err
    assert exports_under(runs) == []


def test_a_gzipped_binary_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "rows.avro.gz"
    path.write_bytes(gzip.compress(written(tmp_path, "avro").read_bytes()))
    with pytest.raises(InputError, match=f"{path} is compressed as a whole"):
        connector(path).plan()


def test_an_unknown_extension_hint_names_every_format(tmp_path):
    path = tmp_path / "rows.dat"
    path.write_text("1\n")
    with pytest.raises(InputError) as info:
        connector(path).plan()
    assert all(name in str(info.value) for name in get_args(Format))


def test_a_folder_without_known_files_lists_every_extension(tmp_path):
    (tmp_path / "rows.dat").write_text("1\n")
    with pytest.raises(InputError, match=r"\.avro.*\.orc.*\.xlsx"):
        connector(tmp_path).plan()


def test_an_arrow_ipc_file_with_compressed_buffers_reads_like_an_uncompressed_one(tmp_path):
    plain, packed = tmp_path / "plain.arrow", tmp_path / "packed.arrow"
    write_ipc(plain, ROWS, compression="uncompressed")
    write_ipc(packed, ROWS, compression="lz4")
    assert read_all(connector(packed)).equals(read_all(connector(plain)))
    buf = io.BytesIO(packed.read_bytes())
    assert feather.read_table(buf).equals(read_all(connector(packed)))
