"""The file connector (raysight.connectors.files) and the example data generator."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import polars as pl
import polars.testing
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from raysight.connectors.files import CsvOptions, FileConnector, FileSourceConfig
from raysight.errors import InputError, PermissionDenied
from raysight.plugins import PartitionSpec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"
NULLS = ["", "NA", "N/A", "null", "NULL"]


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "generate_data", ROOT / "examples/generate_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_data"] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def connector(path: str | Path, **config) -> FileConnector:
    return FileConnector(FileSourceConfig(path=str(path), **config))


def read_all(conn: FileConnector) -> pa.Table:
    """All partitions of a source, concatenated in partition order (types unified by name)."""
    tables = [conn.read(p) for p in conn.plan()]
    return pa.concat_tables(tables, promote_options="permissive")


def csv_reference(path: Path, **read) -> pa.Table:
    """The whole file read by pyarrow directly, with the connector's null handling."""
    return pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(**read),
        convert_options=pa_csv.ConvertOptions(null_values=NULLS, strings_can_be_null=True),
    )


def csv_text(rows: int, newline: str = "\n", final_newline: bool = True) -> str:
    """A CSV with ints, floats, dates, timestamps, unicode, quoted commas and nulls."""
    names = ["Café & Bäckerei", "Books", "", '"Home, Garden"', "日本語", "NA"]
    lines = ["id,name,amount,day,ts"]
    for i in range(rows):
        amount = "" if i % 17 == 0 else f"{(i * 7.31) % 1000 - 100:.2f}"
        lines.append(
            f"{i},{names[i % len(names)]},{amount},2023-01-{i % 28 + 1:02d},"
            f"2023-02-01T{i % 24:02d}:{i % 60:02d}:00Z"
        )
    return newline.join(lines) + (newline if final_newline else "")


def ndjson_text(rows: int, newline: str = "\n", final_newline: bool = True) -> str:
    records = [
        {
            "id": i,
            "name": ["Café", "x", None][i % 3],
            "v": i * 0.5,
            "ts": f"2023-01-01T{i % 24:02d}:00:00",
        }
        for i in range(rows)
    ]
    return newline.join(json.dumps(r, ensure_ascii=False) for r in records) + (
        newline if final_newline else ""
    )


@pytest.fixture
def memory_root():
    """A fresh folder on fsspec's in-memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/raysight-test-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


# ---------------------------------------------------------------------------------------------
# Config


def test_config_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="bogus"):
        FileSourceConfig.model_validate({"type": "file", "path": "x.csv", "bogus": 1})


def test_config_rejects_non_positive_partition_bytes():
    with pytest.raises(ValidationError, match="partition_bytes"):
        FileSourceConfig(path="x.csv", partition_bytes=0)


def test_config_rejects_csv_options_for_parquet():
    with pytest.raises(ValidationError, match="csv"):
        FileSourceConfig(path="x.parquet", format="parquet", csv=CsvOptions())


def test_csv_options_reject_multi_character_delimiter():
    with pytest.raises(ValidationError, match="one character"):
        CsvOptions(delimiter="||")


def test_csv_options_reject_unknown_encoding():
    with pytest.raises(ValidationError, match="encoding"):
        CsvOptions(encoding="no-such-codec")


def test_file_connector_is_registered_under_file():
    from raysight.registry import connectors

    assert connectors.get("file") is FileConnector
    assert connectors.build(FileSourceConfig(path="x.csv")).config.path == "x.csv"


# ---------------------------------------------------------------------------------------------
# check()


def test_check_missing_file_names_the_path():
    conn = connector("examples/data/nope.csv")
    with pytest.raises(InputError) as info:
        conn.check()
    assert str(info.value) == "source file not found: examples/data/nope.csv"
    assert info.value.details["path"] == "examples/data/nope.csv"


def test_check_empty_folder_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no files"):
        connector(tmp_path).check()


def test_check_folder_without_files_of_the_format_raises_input_error(tmp_path):
    (tmp_path / "README.md").write_text("not data")
    with pytest.raises(InputError, match="no csv files"):
        connector(tmp_path, format="csv").check()


def test_check_glob_without_match_raises_input_error(tmp_path):
    (tmp_path / "a.csv").write_text("a\n1\n")
    pattern = str(tmp_path / "*.parquet")
    with pytest.raises(InputError, match="no files match") as info:
        connector(pattern).check()
    assert info.value.details["path"] == pattern


def test_check_folder_with_mixed_formats_asks_for_format(tmp_path):
    (tmp_path / "a.csv").write_text("a\n1\n")
    pq.write_table(pa.table({"a": [1]}), tmp_path / "b.parquet")
    with pytest.raises(InputError, match="set `format`"):
        connector(tmp_path).check()


def test_check_unknown_extension_asks_for_format(tmp_path):
    (tmp_path / "data.dat").write_text("a\n1\n")
    with pytest.raises(InputError, match="set `format`"):
        connector(tmp_path / "data.dat").check()


class _DeniedFileSystem(MemoryFileSystem):
    """A filesystem that lists files but refuses to open them."""

    protocol = "raysight-denied"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("raysight-denied://"))

    def _open(self, path, mode="rb", **kwargs):
        raise PermissionError(13, "Permission denied", path)


def test_check_unreadable_file_raises_permission_denied(memory_root):
    fs, root = memory_root
    fsspec.register_implementation("raysight-denied", _DeniedFileSystem, clobber=True)
    fs.pipe(f"{root}/a.csv", b"a\n1\n")
    with pytest.raises(PermissionDenied) as info:
        connector(f"raysight-denied://{root}/a.csv").check()
    assert "a.csv" in str(info.value)


# ---------------------------------------------------------------------------------------------
# plan()


def test_plan_folder_of_four_files_gives_four_partitions_in_path_order():
    parts = connector(EXAMPLES / "sales_parts").plan()
    assert [p.label for p in parts] == [f"part-00{i}.csv" for i in range(4)]
    assert [p.location for p in parts] == [
        (EXAMPLES / "sales_parts" / f"part-00{i}.csv").as_uri() for i in range(4)
    ]
    assert [p.estimated_bytes for p in parts] == [
        (EXAMPLES / "sales_parts" / f"part-00{i}.csv").stat().st_size for i in range(4)
    ]


def test_plan_small_file_is_one_partition_without_byte_range():
    (part,) = connector(EXAMPLES / "sales.csv").plan()
    assert part.label == "sales.csv"
    assert "start" not in part.options


def test_plan_folder_skips_hidden_and_underscore_files(tmp_path):
    for name in ("b.csv", "a.csv", ".a.csv.crc", "_SUCCESS", "_tmp.csv"):
        (tmp_path / name).write_text("x\n1\n")
    assert [p.label for p in connector(tmp_path).plan()] == ["a.csv", "b.csv"]


def test_plan_folder_includes_subfolders_only_when_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "sub" / "b.csv").write_text("x\n2\n")
    assert [p.label for p in connector(tmp_path).plan()] == ["a.csv"]
    assert [p.label for p in connector(tmp_path, recursive=True).plan()] == ["a.csv", "sub/b.csv"]


def test_plan_glob_lists_matches_in_path_order(tmp_path):
    for name in ("2.csv", "1.csv", "3.txt"):
        (tmp_path / name).write_text("x\n1\n")
    assert [p.label for p in connector(tmp_path / "*.csv").plan()] == ["1.csv", "2.csv"]


def test_plan_splits_large_csv_at_line_starts(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(csv_text(2000), encoding="utf-8")
    data = path.read_bytes()
    parts = connector(path, partition_bytes=4096).plan()
    assert len(parts) >= len(data) // 4096
    starts = [p.options["start"] for p in parts]
    ends = [p.options["end"] for p in parts]
    assert starts[0] == 0 and ends[-1] == len(data)
    assert starts[1:] == ends[:-1]
    assert all(data[s - 1 : s] == b"\n" for s in starts[1:])


def test_plan_never_makes_an_empty_partition(tmp_path):
    path = tmp_path / "long-lines.csv"
    path.write_text("a,b\n" + "".join(f"{i},{'x' * (i % 7) * 300}\n" for i in range(60)))
    parts = connector(path, partition_bytes=100).plan()
    assert len(parts) > 10
    assert all(p.estimated_bytes > 0 for p in parts)


def test_first_csv_partition_holds_a_data_row_even_when_smaller_than_the_header(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"column_{i}" for i in range(20)) + "\n" + ("1," * 19 + "1\n") * 50)
    conn = connector(path, partition_bytes=16)
    first = conn.plan()[0]
    assert conn.read(first).num_rows == 1


def test_plan_labels_and_sizes_of_split_csv(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text(csv_text(1000))
    parts = connector(path, partition_bytes=8192).plan()
    n = len(parts)
    assert [p.label for p in parts] == [f"sales.csv[{i}/{n}]" for i in range(1, n + 1)]
    assert [p.estimated_bytes for p in parts] == [
        p.options["end"] - p.options["start"] for p in parts
    ]


def test_plan_gives_csv_header_to_partitions_after_the_first(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(csv_text(1000))
    parts = connector(path, partition_bytes=4096).plan()
    assert "column_names" not in parts[0].options
    assert all(
        p.options["column_names"] == ["id", "name", "amount", "day", "ts"] for p in parts[1:]
    )


def test_plan_without_split_files_keeps_a_large_file_whole(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(csv_text(1000))
    (part,) = connector(path, partition_bytes=1024, split_files=False).plan()
    assert part.label == "big.csv" and part.estimated_bytes == path.stat().st_size


def test_csv_with_newlines_in_quoted_fields_is_read_whole_when_declared(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("id,note\n" + "".join(f'{i},"line one\nline {i}"\n' for i in range(300)))
    conn = connector(path, partition_bytes=512, csv=CsvOptions(newlines_in_values=True))
    (part,) = conn.plan()
    expected = pa_csv.read_csv(path, parse_options=pa_csv.ParseOptions(newlines_in_values=True))
    assert conn.read(part).equals(expected)


def test_plan_keeps_compressed_csv_whole_and_reads_it(tmp_path):
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(csv_text(1000).encode()))
    conn = connector(path, partition_bytes=1024)
    (part,) = conn.plan()
    assert part.options["compression"] == "gzip"
    plain = tmp_path / "plain.csv"
    plain.write_text(csv_text(1000))
    assert conn.read(part).equals(csv_reference(plain))


def test_plan_keeps_utf16_csv_whole(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(csv_text(300), encoding="utf-16")
    conn = connector(path, partition_bytes=1024, csv=CsvOptions(encoding="utf-16"))
    (part,) = conn.plan()
    assert conn.read(part).equals(csv_reference(path, encoding="utf-16"))


# ---------------------------------------------------------------------------------------------
# read(): a split file reads as the whole file


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("final_newline", [True, False], ids=["final-newline", "no-final-newline"])
def test_split_csv_union_equals_whole_file(tmp_path, newline, final_newline):
    path = tmp_path / "big.csv"
    path.write_bytes(csv_text(2000, newline, final_newline).encode())
    conn = connector(path, partition_bytes=5000)
    assert len(conn.plan()) > 5
    assert read_all(conn).equals(csv_reference(path))


def test_split_csv_partitions_share_column_names(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(csv_text(2000))
    conn = connector(path, partition_bytes=5000)
    names = {tuple(conn.read(p).column_names) for p in conn.plan()}
    assert names == {("id", "name", "amount", "day", "ts")}


def test_split_csv_without_header_names_columns_f0_f1(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(csv_text(2000).split("\n", 1)[1])
    conn = connector(path, partition_bytes=5000, csv=CsvOptions(header=False))
    tables = [conn.read(p) for p in conn.plan()]
    assert {tuple(t.column_names) for t in tables} == {("f0", "f1", "f2", "f3", "f4")}
    expected = csv_reference(path, autogenerate_column_names=True)
    assert pa.concat_tables(tables, promote_options="permissive").equals(expected)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    partition_bytes=st.integers(min_value=1, max_value=3000),
    crlf=st.booleans(),
    final_newline=st.booleans(),
)
def test_split_csv_union_equals_whole_file_for_any_partition_size(
    memory_root, partition_bytes, crlf, final_newline
):
    fs, root = memory_root
    url = f"memory://{root}/prop.csv"
    fs.pipe(url, csv_text(120, "\r\n" if crlf else "\n", final_newline).encode())
    conn = connector(url, partition_bytes=partition_bytes)
    expected = pa_csv.read_csv(
        io.BytesIO(fs.cat(url)),
        convert_options=pa_csv.ConvertOptions(null_values=NULLS, strings_can_be_null=True),
    )
    assert read_all(conn).equals(expected)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("final_newline", [True, False], ids=["final-newline", "no-final-newline"])
def test_split_ndjson_union_equals_whole_file(tmp_path, newline, final_newline):
    path = tmp_path / "events.ndjson"
    path.write_bytes(ndjson_text(1500, newline, final_newline).encode())
    conn = connector(path, partition_bytes=4000)
    assert len(conn.plan()) > 5
    assert read_all(conn).equals(pa_json.read_json(path))


def test_json_file_of_ndjson_lines_is_split_as_ndjson(tmp_path):
    path = tmp_path / "events.json"
    path.write_text(ndjson_text(1500))
    conn = connector(path, partition_bytes=4000)
    parts = conn.plan()
    assert len(parts) > 5 and {p.options["format"] for p in parts} == {"ndjson"}
    assert read_all(conn).equals(pa_json.read_json(path))


def test_split_parquet_by_row_groups_equals_whole_file(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"id": range(10_000), "s": [f"v{i % 97}" for i in range(10_000)]})
    pq.write_table(table, path, row_group_size=1000)
    conn = connector(path, partition_bytes=path.stat().st_size // 4)
    parts = conn.plan()
    assert 3 <= len(parts) <= 6
    groups = [g for p in parts for g in p.options["row_groups"]]
    assert groups == list(range(10))
    assert parts[0].label == f"t.parquet[1/{len(parts)}]"
    assert read_all(conn).equals(pq.read_table(path))


def test_example_sales_file_and_its_four_parts_read_the_same():
    whole = read_all(connector(EXAMPLES / "sales.csv"))
    parts = read_all(connector(EXAMPLES / "sales_parts"))
    assert whole.num_rows == 500
    assert parts.equals(whole)


# ---------------------------------------------------------------------------------------------
# read(): types and values


def test_csv_types_are_int64_float64_string_date_and_timestamp(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(csv_text(50))
    schema = read_all(connector(path)).schema
    assert schema.field("id").type == pa.int64()
    assert schema.field("amount").type == pa.float64()
    assert schema.field("name").type == pa.string()
    assert schema.field("day").type == pa.date32()
    assert schema.field("ts").type == pa.timestamp("s", tz="UTC")


def test_csv_values_equal_polars_read_csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(csv_text(300))
    ours = pl.from_arrow(read_all(connector(path)))
    theirs = pl.read_csv(path, null_values=NULLS, try_parse_dates=True)
    assert ours.to_dicts() == theirs.to_dicts()


def test_csv_empty_fields_and_null_values_are_null_in_string_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('k,s\n1,\n2,""\n3,NA\n4,null\n5,x\n')
    ours = read_all(connector(path)).column("s").to_pylist()
    assert ours == pl.read_csv(path, null_values=NULLS)["s"].to_list() == [None] * 4 + ["x"]


def test_csv_column_empty_in_one_partition_has_null_type(tmp_path):
    path = tmp_path / "t.csv"
    empty_v = "".join(f"{i},\n" for i in range(200))
    path.write_text("k,v\n" + empty_v + "".join(f"{i},{i}\n" for i in range(200)))
    conn = connector(path, partition_bytes=600)
    types = [conn.read(p).schema.field("v").type for p in conn.plan()]
    assert types[0] == pa.null() and types[-1] == pa.int64()


def test_tsv_file_is_read_with_tab_delimiter(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\n1\tx, y\n")
    assert read_all(connector(path)).to_pydict() == pd.read_csv(path, sep="\t").to_dict("list")


def test_empty_file_in_a_folder_reads_as_empty_table(tmp_path):
    (tmp_path / "a.csv").write_text("")
    (tmp_path / "b.csv").write_text("x\n1\n")
    conn = connector(tmp_path)
    assert [conn.read(p).num_rows for p in conn.plan()] == [0, 1]


def test_json_array_of_records_equals_polars_read_json(tmp_path):
    records = [{"id": i, "name": f"n{i}" if i % 4 else None, "v": i / 3} for i in range(100)]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records, indent=2))
    ours = pl.from_arrow(read_all(connector(path)))
    assert ours.to_dicts() == pl.read_json(path).to_dicts() == records


def test_json_array_is_typed_like_the_same_records_as_ndjson(tmp_path):
    text = ndjson_text(50)
    (tmp_path / "a.json").write_text("[" + ",\n".join(text.splitlines()) + "]")
    (tmp_path / "b.ndjson").write_text(text)
    as_ndjson = read_all(connector(tmp_path / "b.ndjson"))
    assert read_all(connector(tmp_path / "a.json")).equals(as_ndjson)


def test_json_document_that_is_not_an_array_reads_as_objects(tmp_path):
    path = tmp_path / "objects.json"
    path.write_text('{\n  "a": 1\n}\n{\n  "a": 2\n}\n')
    assert read_all(connector(path)).to_pydict() == {"a": [1, 2]}


def test_memory_url_folder_is_listed_and_read(memory_root):
    fs, root = memory_root
    fs.pipe(f"{root}/d/b.csv", b"x\n2\n")
    fs.pipe(f"{root}/d/a.csv", b"x\n1\n")
    conn = connector(f"memory://{root}/d")
    conn.check()
    assert [p.location for p in conn.plan()] == [
        f"memory://{root}/d/a.csv",
        f"memory://{root}/d/b.csv",
    ]
    assert read_all(conn).to_pydict() == {"x": [1, 2]}


def test_partition_and_connector_survive_pickling(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(csv_text(500))
    conn = connector(path, partition_bytes=4096)
    part = conn.plan()[2]
    restored: PartitionSpec = pickle.loads(pickle.dumps(part))
    assert pickle.loads(pickle.dumps(conn)).read(restored).equals(conn.read(part))


# ---------------------------------------------------------------------------------------------
# read(): malformed input


def test_malformed_csv_raises_input_error_naming_file_and_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n1,2,3,4\n")
    conn = connector(path)
    with pytest.raises(InputError) as info:
        conn.read(conn.plan()[0])
    assert str(info.value) == f"malformed CSV in {path}: Row #3: Expected 3 columns, got 4: 1,2,3,4"
    assert info.value.details["path"] == str(path)


def test_malformed_csv_in_a_byte_range_names_the_range(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(csv_text(500) + "1,2\n")
    conn = connector(path, partition_bytes=4096)
    last = conn.plan()[-1]
    pattern = rf"malformed CSV in {path} \(bytes \d+-\d+\): .*Expected 5 columns, got 2"
    with pytest.raises(InputError, match=pattern):
        conn.read(last)


def test_malformed_ndjson_raises_input_error_naming_file_and_row(tmp_path):
    path = tmp_path / "bad.ndjson"
    path.write_text('{"a": 1}\n{"a": \n')
    conn = connector(path)
    with pytest.raises(InputError, match=rf"malformed NDJSON in {path}: .*row 1"):
        conn.read(conn.plan()[0])


def test_malformed_json_array_raises_input_error_naming_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"a": 1}, {"a": ')
    conn = connector(path)
    with pytest.raises(InputError, match=f"malformed JSON in {path}"):
        conn.read(conn.plan()[0])


def test_json_array_of_numbers_raises_input_error(tmp_path):
    path = tmp_path / "numbers.json"
    path.write_text("[1, 2, 3]")
    conn = connector(path)
    with pytest.raises(InputError, match="must hold objects"):
        conn.read(conn.plan()[0])


def test_not_a_parquet_file_raises_input_error_naming_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("a,b\n1,2\n")
    conn = connector(path)
    with pytest.raises(InputError, match=f"malformed Parquet in {path}: .*magic bytes"):
        conn.read(conn.plan()[0])


def test_truncated_parquet_file_raises_input_error(tmp_path):
    good = io.BytesIO()
    pq.write_table(pa.table({"a": list(range(1000))}), good)
    data = good.getvalue()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[:-24] + b"\0" * 20 + data[-4:])
    conn = connector(path)
    with pytest.raises(InputError, match=f"malformed Parquet in {path}"):
        conn.read(conn.plan()[0])


def test_file_removed_after_planning_raises_input_error(tmp_path):
    path = tmp_path / "gone.csv"
    path.write_text("a\n1\n")
    conn = connector(path)
    (part,) = conn.plan()
    path.unlink()
    with pytest.raises(InputError, match="source file not found"):
        conn.read(part)


# ---------------------------------------------------------------------------------------------
# The example data generator


def test_generator_is_deterministic_for_a_seed():
    for schema in gen.SCHEMAS:
        assert gen.generate(schema, 300, 5).equals(gen.generate(schema, 300, 5)), schema


def test_generator_gives_other_rows_for_another_seed():
    assert not gen.generate("sales", 300, 5).equals(gen.generate("sales", 300, 6))


def test_generator_schemas_have_the_seed_columns():
    columns = {s: " ".join(gen.generate(s, 10, 1).column_names) for s in gen.SCHEMAS}
    assert columns == {
        "sales": "order_id date product_category region customer_id quantity amount",
        "database": "id name value timestamp category",
        "file": "id product price date customer region",
        "object": "transaction_id amount currency timestamp customer_id merchant category status",
        "stream": "event_id event_type device_id user_id timestamp data_page data_duration "
        "data_referrer",
    }


def test_sales_amounts_include_refunds_and_nulls_with_two_decimals():
    amount = pl.from_arrow(gen.generate("sales", 2000, 3))["amount"]
    assert (amount < 0).sum() > 0
    assert amount.null_count() > 0
    cents = amount.drop_nulls() * 100
    assert (cents - cents.round()).abs().max() < 1e-6


def test_sales_categories_include_nulls_and_a_unicode_name():
    category = pl.from_arrow(gen.generate("sales", 2000, 3))["product_category"]
    assert category.null_count() > 0
    assert "Café & Bäckerei" in category.to_list()


def test_sales_has_one_category_region_group_with_only_null_amounts():
    df = pl.from_arrow(gen.generate("sales", 2000, 3))
    groups = df.group_by("product_category", "region").agg(
        rows=pl.len(), non_null=pl.col("amount").count()
    )
    all_null = groups.filter(pl.col("non_null") == 0, pl.col("product_category").is_not_null())
    assert all_null.select("product_category", "region").rows() == [gen.NULL_AMOUNT_GROUP]
    assert all_null["rows"][0] > 1


def test_stream_ids_are_prefixed_version4_uuids():
    ids = gen.generate("stream", 100, 1).column("event_id").to_pylist()
    assert all(uuid.UUID(i.removeprefix("evt-")).version == 4 for i in ids)
    assert len(set(ids)) == 100


def test_generator_cli_files_split_rows_in_order(tmp_path):
    gen.main(f"--rows 101 --seed 9 --out {tmp_path}".split())
    gen.main(f"--rows 101 --seed 9 --out {tmp_path} --files 3".split())
    parts = sorted((tmp_path / "sales_parts").glob("part-*.csv"))
    assert [p.name for p in parts] == ["part-000.csv", "part-001.csv", "part-002.csv"]
    whole = pl.read_csv(tmp_path / "sales.csv")
    assert pl.concat([pl.read_csv(p) for p in parts]).equals(whole)


def test_generator_parquet_output_reads_back_as_generated(tmp_path):
    gen.main(f"--rows 50 --seed 2 --out {tmp_path} --schema object --format parquet".split())
    expected = pl.from_arrow(gen.generate("object", 50, 2))
    assert pl.from_arrow(read_all(connector(tmp_path / "object.parquet"))).equals(expected)


def test_generator_ndjson_output_reads_back_with_timestamps(tmp_path):
    gen.main(f"--rows 50 --seed 2 --out {tmp_path} --schema database --format ndjson".split())
    table = read_all(connector(tmp_path / "database.jsonl"))
    expected = gen.generate("database", 50, 2)
    assert table.column("id").equals(expected.column("id"))
    utc = table.column("timestamp").cast(pa.timestamp("s", tz="UTC"))
    assert utc.equals(expected.column("timestamp"))


def test_committed_example_data_is_the_generator_output(tmp_path):
    script = ROOT / "examples/generate_data.py"
    args = f"--rows 500 --seed 42 --out {tmp_path} --files 4".split()
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    gen.main(f"--rows 500 --seed 42 --out {tmp_path}".split())
    assert (tmp_path / "sales.csv").read_bytes() == (EXAMPLES / "sales.csv").read_bytes()
    for part in (EXAMPLES / "sales_parts").iterdir():
        assert (tmp_path / "sales_parts" / part.name).read_bytes() == part.read_bytes()


# -- the delimiter of a CSV source without one ------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_a_csv_without_a_delimiter_in_the_spec_is_sniffed_and_equals_pandas(tmp_path, delimiter):
    path = tmp_path / "data.csv"
    rows = [["id", "name", "price"], ["1", "Zürich", "2,5"], ["2", '"a; b | c"', "3"],
            ["3", "", "4"]]
    path.write_text("".join(delimiter.join(r) + "\n" for r in rows), encoding="utf-8")
    ours = read_all(connector(path)).to_pandas()
    expected = pd.read_csv(path, sep=delimiter, keep_default_na=False, na_values=[""])
    assert list(ours.columns) == ["id", "name", "price"]
    assert ours.astype(str).to_dict("list") == expected.astype(str).to_dict("list")


def test_a_semicolon_inside_quotes_does_not_make_a_comma_file_semicolon_separated(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('a,b\n"x;y;z",1\n"p;q",2\n')
    assert read_all(connector(path)).to_pydict() == {"a": ["x;y;z", "p;q"], "b": [1, 2]}


def test_a_given_delimiter_is_never_second_guessed(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a;b,c\n1;2,3\n")
    table = read_all(connector(path, csv={"delimiter": ","}))
    assert table.column_names == ["a;b", "c"]


def test_the_first_file_of_a_folder_decides_the_delimiter_for_all(tmp_path):
    (tmp_path / "a.csv").write_text("k;v\nx;1\n")
    (tmp_path / "b.csv").write_text("k;v\ny;2\n")
    assert read_all(connector(tmp_path)).to_pydict() == {"k": ["x", "y"], "v": [1, 2]}


def test_a_large_semicolon_file_split_into_ranges_keeps_its_columns(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("k;v\n" + "".join(f"{i};{i * 2}\n" for i in range(20000)))
    conn = connector(path, partition_bytes=20000)
    assert len(conn.plan()) > 3
    assert read_all(conn).to_pydict() == {"k": list(range(20000)),
                                          "v": [i * 2 for i in range(20000)]}


# -- files without data -----------------------------------------------------------------------


def test_a_zero_byte_file_is_an_input_error_naming_it(tmp_path):
    for name in ("empty.csv", "empty.parquet", "empty.ndjson"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputError, match=rf"{name} is empty \(0 bytes\)"):
            connector(tmp_path / name).check()


def test_a_csv_of_blank_lines_has_no_header_line(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n \r\n\n")
    with pytest.raises(InputError, match="blank.csv holds only blank lines.*header line"):
        connector(path).check()


def test_a_header_only_csv_is_a_table_of_zero_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("a,b\n")
    conn = connector(path)
    conn.check()
    table = read_all(conn)
    assert table.num_rows == 0 and table.column_names == ["a", "b"]
    assert table.column_names == list(pd.read_csv(path).columns)


def test_a_folder_of_empty_files_is_an_input_error(tmp_path):
    (tmp_path / "a.csv").write_text("")
    (tmp_path / "b.csv").write_text("")
    with pytest.raises(InputError, match="every file of .* is empty"):
        connector(tmp_path).check()


@pytest.mark.parametrize("split", [False, True])
def test_a_csv_column_of_hexadecimal_cells_is_text_as_polars_reads_it(tmp_path, split):
    # pyarrow parses 0x... as integers and wraps those past 2**63 to negative numbers
    rows = [f"0x{(i * 0x9E3779B97F4A7C15) % 2**64:016x},{i},box0x{i}\n" for i in range(2000)]
    path = tmp_path / "hashes.csv"
    path.write_text("hash,n,label\n" + "".join(rows))
    config = FileSourceConfig(path=str(path), partition_bytes=4096 if split else 64 << 20)
    connector = FileConnector(config)
    partitions = connector.plan()
    assert (len(partitions) > 1) == split
    got = pl.concat([pl.from_arrow(connector.read(p)) for p in partitions])
    expected = pl.read_csv(path)
    assert expected.schema["hash"] == pl.String and expected.schema["n"] == pl.Int64
    polars.testing.assert_frame_equal(got, expected)
