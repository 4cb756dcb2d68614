"""Sinks: results and datasets written back by real jobs, to database tables (SQLite,
PostgreSQL, MariaDB), to S3 (moto's server) and to Kafka (librdkafka's mock cluster); a
target changes only when the whole job has succeeded, and every failure names its sink."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import require_service
from s3_server import s3_endpoint

from raysight.errors import InputError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MY_URL = "mysql://root@127.0.0.1:3306/test"
#: set before the session's ray.init, as a user sets them before `ray start`
SECRET = f"pw-{uuid.uuid4().hex}"
os.environ.update({"RAYSIGHT_TEST_SINK_PW": SECRET, "RAYSIGHT_TEST_SINK_S3_KEY": "key-id",
                   "RAYSIGHT_TEST_SINK_S3_SECRET": SECRET})

#: what the jobs read: unicode, NULLs in every column (the last row), decimals, tz timestamps,
#: dates, bytes, booleans
DATA = pa.table({
    "id": pa.array(range(10), pa.int64()),
    "name": ["plain", "Grüße", "東京", "naïve café", "", "emoji 🎉", "it's", 'a"b,c',
             "line\nbreak", None],
    "price": pa.array([decimal.Decimal(v) for v in ["0.00", "-1.25", "99999.99", "3.10",
                                                    "7.77", "0.01", "12.50", "1.00",
                                                    "2.22"]] + [None], pa.decimal128(10, 2)),
    "ratio": [0.5, -1e300, 1e-300, 2.25, 0.0, 3.5, -0.125, 1.0, 9.75, None],
    "flag": [True, False, True, True, False, False, True, False, True, None],
    "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=40 * i) for i in range(9)]
                    + [None], pa.date32()),
    "at": pa.array([dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC)
                    + dt.timedelta(hours=i, microseconds=i) for i in range(9)] + [None],
                   pa.timestamp("us", tz="Europe/Berlin")),
    "raw": [bytes([0, 255, i]) * (i + 1) for i in range(9)] + [None],
})
#: the rows the `kept` dataset keeps
KEEP = "ratio > 0"


# ---------------------------------------------------------------------------------------------
# databases: each a URL or a SQLite file, a way to read a table back and to drop it


class Database:
    def __init__(self, dialect: str, tmp_path: Path) -> None:
        self.dialect = dialect
        self.path = str(tmp_path / "sink.sqlite")
        self.tables: list[str] = []

    def location(self) -> dict[str, str]:
        if self.dialect == "sqlite":
            return {"path": self.path}
        return {"url": PG_URL if self.dialect == "postgresql" else MY_URL}

    def table(self) -> str:
        name = f"sink_{uuid.uuid4().hex[:10]}"
        self.tables.append(name)
        return name

    def connect(self) -> Any:
        if self.dialect == "sqlite":
            return sqlite3.connect(self.path)
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(PG_URL, autocommit=True)
        import pymysql

        return pymysql.connect(host="127.0.0.1", user="root", password="", database="test",
                               autocommit=True)

    def execute(self, sql: str) -> list[tuple]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall() if cur.description else []
            if self.dialect == "sqlite":
                conn.commit()
            return [tuple(r) for r in rows]
        finally:
            conn.close()

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.dialect == "mysql" else f'"{name}"'

    def rows(self, table: str, schema: pa.Schema) -> list[tuple]:
        """The table's rows in id order, each value as a Python value of the schema's type
        (SQLite's ISO text read back as dates, timestamps and decimals; zoned timestamps
        compared in UTC)."""
        names = ", ".join(self.quote(n) for n in schema.names)
        raw = self.execute(f"SELECT {names} FROM {self.quote(table)} ORDER BY id")
        return [tuple(canon(v, f.type) for v, f in zip(row, schema, strict=True))
                for row in raw]

    def exists(self, table: str) -> bool:
        if self.dialect == "sqlite":
            return bool(self.execute(f"SELECT 1 FROM sqlite_master WHERE name = '{table}'"))
        found = self.execute("SELECT 1 FROM information_schema.tables WHERE table_name = "
                             f"'{table}'")
        return bool(found)

    def drop_all(self) -> None:
        if self.dialect == "sqlite":
            return
        for name in self.tables:
            self.execute(f"DROP TABLE IF EXISTS {self.quote(name)}")
        leftovers = self.execute("SELECT table_name FROM information_schema.tables WHERE "
                                 "table_name LIKE '\\_raysight\\_%'")
        assert not leftovers, f"staging tables left behind: {leftovers}"


def canon(value: Any, dtype: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_decimal(dtype):
        return decimal.Decimal(str(value))
    if pa.types.is_boolean(dtype):
        return bool(value)
    if pa.types.is_date(dtype):
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_timestamp(dtype):
        value = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return bytes(value)
    if pa.types.is_floating(dtype):
        return float(value)
    return value


def expected_rows(table: pa.Table) -> list[tuple]:
    schema = table.schema
    return [tuple(canon(r[f.name], f.type) for f in schema)
            for r in table.sort_by("id").to_pylist()]


def needs(dialect: str) -> None:
    if dialect == "postgresql":
        require_service("PostgreSQL", "127.0.0.1", 5432)
    elif dialect == "mysql":
        require_service("MariaDB", "127.0.0.1", 3306)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db(request, tmp_path) -> Iterator[Database]:
    needs(request.param)
    database = Database(request.param, tmp_path)
    yield database
    database.drop_all()


# ---------------------------------------------------------------------------------------------
# jobs


@pytest.fixture
def data_file(tmp_path) -> str:
    path = tmp_path / "data.parquet"
    pq.write_table(DATA, path)
    return str(path)


def spec(data_file: str, exports: list[dict], **extra: Any) -> dict:
    """A job of the data, its `kept` rows and an aggregation of them, with ``exports``."""
    return {
        "version": 2,
        "sources": {"data": {"type": "file", "path": data_file}},
        "datasets": {"kept": {"from": "data", "preprocessing": [
            {"op": "filter_rows", "condition": KEEP}]}},
        "analyses": {"by_flag": {"from": "kept", "type": "aggregation", "group_by": ["flag"],
                                 "metrics": [{"function": "count", "alias": "n"},
                                             {"column": "ratio", "function": "sum",
                                              "alias": "total"}]}},
        "exports": exports,
        **extra,
    }


def run(tmp_path: Path, data: dict) -> Any:
    job = AnalysisJob(parse_graph_spec(data), run_dir=tmp_path / "runs",
                      job_id=f"job_{uuid.uuid4().hex[:8]}")
    return job.run()


FAIL_LATER = {"faults": [{"step": "complete", "error": "permanent"}]}


def kept() -> pa.Table:
    """What the `kept` dataset holds, as Polars computes it."""
    return pl.from_arrow(DATA).filter(pl.sql_expr(KEEP)).to_arrow().cast(DATA.schema)


def by_flag() -> pa.Table:
    frame = pl.from_arrow(kept()).group_by("flag").agg(pl.len().cast(pl.UInt32).alias("n"),
                                                       pl.col("ratio").sum().alias("total"))
    return frame.sort("flag", nulls_last=False).to_arrow()


def sink(db: Database, table: str, mode: str, node: str = "data") -> dict:
    return {"format": "database", "from": node, **db.location(), "table": table, "mode": mode}


def error_of(result: Any) -> str:
    assert result.state == "FAILED", result.errors
    return result.errors[-1]["message"]


# ---------------------------------------------------------------------------------------------
# database sinks: round trips


def test_create_writes_the_dataset_as_the_job_computed_it(tmp_path, data_file, db):
    table = db.table()
    result = run(tmp_path, spec(data_file, [sink(db, table, "create", "kept")]))
    assert result.state == "COMPLETED", result.errors
    assert db.rows(table, DATA.schema) == expected_rows(kept())
    # the result (and the CLI's summary) says where the rows went
    assert len(result.written) == 1 and result.written[0].startswith("exports[0] (database")
    assert result.written[0].endswith(f"table {table})")


def test_create_writes_an_analysis_result(tmp_path, data_file, db):
    table = db.table()
    result = run(tmp_path, spec(data_file, [sink(db, table, "create", "by_flag")]))
    assert result.state == "COMPLETED", result.errors
    want = by_flag()
    names = ", ".join(db.quote(n) for n in want.column_names)
    got = db.execute(f"SELECT {names} FROM {db.quote(table)}")
    assert sorted((canon(f, pa.bool_()), n, canon(t, want.schema.field("total").type))
                  for f, n, t in got) == sorted(
        (r["flag"], r["n"], r["total"]) for r in want.to_pylist())


def test_append_adds_the_rows_to_the_table(tmp_path, data_file, db):
    table = db.table()
    assert run(tmp_path, spec(data_file, [sink(db, table, "create")])).state == "COMPLETED"
    result = run(tmp_path, spec(data_file, [sink(db, table, "append", "kept")]))
    assert result.state == "COMPLETED", result.errors
    both = pa.concat_tables([DATA, kept()])
    assert sorted(db.rows(table, DATA.schema), key=repr) == sorted(expected_rows(both),
                                                                   key=repr)


def test_replace_swaps_the_table_for_the_result(tmp_path, data_file, db):
    table = db.table()
    assert run(tmp_path, spec(data_file, [sink(db, table, "create")])).state == "COMPLETED"
    result = run(tmp_path, spec(data_file, [sink(db, table, "replace", "kept")]))
    assert result.state == "COMPLETED", result.errors
    assert db.rows(table, DATA.schema) == expected_rows(kept())


def test_replace_creates_a_missing_table(tmp_path, data_file, db):
    table = db.table()
    result = run(tmp_path, spec(data_file, [sink(db, table, "replace")]))
    assert result.state == "COMPLETED", result.errors
    assert db.rows(table, DATA.schema) == expected_rows(DATA)


def test_a_database_source_reads_back_what_a_sink_wrote(tmp_path, data_file, db):
    from raysight.connectors.database import DatabaseConnector, DatabaseSourceConfig

    table = db.table()
    assert run(tmp_path, spec(data_file, [sink(db, table, "create")])).state == "COMPLETED"
    source = DatabaseConnector(DatabaseSourceConfig(**db.location(), table=table))
    read = pa.concat_tables(source.read(p) for p in source.plan())
    assert read.column_names == DATA.column_names
    rows = [tuple(canon(r[f.name], f.type) for f in DATA.schema)
            for r in read.sort_by("id").to_pylist()]
    assert rows == expected_rows(DATA)


# ---------------------------------------------------------------------------------------------
# database sinks: atomicity


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_a_job_failing_in_a_later_step_leaves_the_table_unchanged(tmp_path, data_file, db,
                                                                  mode):
    table = db.table()
    assert run(tmp_path, spec(data_file, [sink(db, table, "create", "kept")])).state \
        == "COMPLETED"
    before = db.rows(table, DATA.schema)
    result = run(tmp_path, spec(data_file, [sink(db, table, mode)], execution=FAIL_LATER))
    assert "injected permanent fault" in error_of(result)
    assert db.rows(table, DATA.schema) == before
    assert not any((Path(result.run_dir) / ".staging").rglob("*"))


def test_a_job_failing_in_a_later_step_creates_no_table(tmp_path, data_file, db):
    table = db.table()
    result = run(tmp_path, spec(data_file, [sink(db, table, "create")], execution=FAIL_LATER))
    assert result.state == "FAILED"
    assert not db.exists(table)


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_a_failing_sink_rolls_back_the_others(tmp_path, data_file, db, mode):
    table, missing = db.table(), db.table()
    assert run(tmp_path, spec(data_file, [sink(db, table, "create", "kept")])).state \
        == "COMPLETED"
    before = db.rows(table, DATA.schema)
    result = run(tmp_path, spec(data_file, [sink(db, table, mode),
                                            sink(db, missing, "append")]))
    message = error_of(result)
    assert message.startswith("exports[1] (") and f"table {missing} does not exist" in message
    assert db.rows(table, DATA.schema) == before
    assert not any(p.name.endswith((".parquet", ".csv"))
                   for p in Path(result.run_dir).rglob("*"))


# ---------------------------------------------------------------------------------------------
# database sinks: errors


def test_create_refuses_an_existing_table_naming_it(tmp_path, data_file, db):
    table = db.table()
    assert run(tmp_path, spec(data_file, [sink(db, table, "create", "kept")])).state \
        == "COMPLETED"
    before = db.rows(table, DATA.schema)
    message = error_of(run(tmp_path, spec(data_file, [sink(db, table, "create")])))
    assert message.startswith("exports[0] (database ") and f"table {table}" in message
    assert "already exists" in message and "append or replace" in message
    assert db.rows(table, DATA.schema) == before


def test_append_to_a_missing_table_fails_naming_it(tmp_path, data_file, db):
    table = db.table()
    message = error_of(run(tmp_path, spec(data_file, [sink(db, table, "append")])))
    assert f"table {table} does not exist" in message and "mode create" in message
    assert not db.exists(table)


def test_append_of_other_columns_fails_and_leaves_the_table(tmp_path, data_file, db):
    table = db.table()
    db.execute(f"CREATE TABLE {db.quote(table)} (id BIGINT, name TEXT, day DATE)")
    db.execute(f"INSERT INTO {db.quote(table)} VALUES (1, 'x', '2024-01-01')")
    message = error_of(run(tmp_path, spec(data_file, [sink(db, table, "append")])))
    assert f"table {table} has no column(s) price" in message
    assert db.execute(f"SELECT id, name FROM {db.quote(table)}") == [(1, "x")]


def test_append_of_mismatched_types_fails_naming_the_column(tmp_path, data_file, db):
    table = db.table()
    columns = {"id": "BIGINT", "name": "BIGINT", "price": "TEXT", "ratio": "TEXT",
               "flag": "TEXT", "day": "TEXT", "at": "TEXT",
               "raw": "BYTEA" if db.dialect == "postgresql" else "BLOB"}
    db.execute(f"CREATE TABLE {db.quote(table)} ("
               + ", ".join(f"{db.quote(k)} {v}" for k, v in columns.items()) + ")")
    message = error_of(run(tmp_path, spec(data_file, [sink(db, table, "append")])))
    assert "name is string in the result but" in message
    assert db.execute(f"SELECT COUNT(*) FROM {db.quote(table)}") == [(0,)]


def test_a_refused_write_fails_the_run_with_exit_status_1(tmp_path, data_file, capsys):
    from raysight.cli import main

    path = tmp_path / "t.sqlite"
    job = tmp_path / "job.json"
    job.write_text(json.dumps(spec(data_file, [
        {"format": "database", "from": "kept", "path": str(path), "table": "missing",
         "mode": "append"}], job_id="refused")))
    code = main(["run", str(job), "--run-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == 1
    result = json.loads((tmp_path / "runs" / "refused" / "result.json").read_text())
    assert result["errors"][-1]["message"].startswith(
        f"exports[0] (database sqlite {path}, table missing): table missing does not exist")


def test_a_bad_table_name_is_a_spec_error(data_file):
    with pytest.raises(InputError, match="bad table name 'sales; DROP TABLE x'"):
        parse_graph_spec(spec(data_file, [{"format": "database", "from": "data",
                                           "path": "x.sqlite",
                                           "table": "sales; DROP TABLE x"}]))


def test_an_unreachable_server_fails_fast_with_a_transient_error(tmp_path, data_file):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(tmp_path, spec(data_file, [
        {"format": "database", "from": "data", "table": "t", "connect_timeout_s": 1,
         "url": f"postgresql://postgres@127.0.0.1:{port}/test"}]))
    message = error_of(result)
    assert result.errors[-1]["category"] == "transient"
    assert message.startswith("exports[0] (database postgresql://postgres@127.0.0.1:")
    assert "cannot connect" in message


def test_a_refused_login_never_shows_the_password(tmp_path, data_file, caplog):
    needs("mysql")
    url = "mysql://root:${RAYSIGHT_TEST_SINK_PW}@127.0.0.1:3306/test"
    with caplog.at_level(logging.DEBUG):
        result = run(tmp_path, spec(data_file, [
            {"format": "database", "from": "data", "url": url, "table": "t_login"}]))
    message = error_of(result)
    assert "refused the login" in message and "root:***@" in message
    written = "".join(p.read_text(errors="replace") for p in Path(result.run_dir).rglob("*")
                      if p.is_file())
    assert SECRET not in written + caplog.text + json.dumps(result.to_dict())


def test_a_sink_may_name_a_connection(tmp_path, data_file):
    path = str(tmp_path / "named.sqlite")
    result = run(tmp_path, spec(data_file, [
        {"format": "database", "from": "kept", "connection": "warehouse", "table": "kept"}],
        connections={"warehouse": {"path": path}}))
    assert result.state == "COMPLETED", result.errors
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM kept").fetchone()[0] == kept().num_rows


# ---------------------------------------------------------------------------------------------
# object storage


@pytest.fixture
def bucket() -> Iterator[tuple[Any, str]]:
    import s3fs

    fs = s3fs.S3FileSystem(key="key-id", secret=SECRET,
                           client_kwargs={"endpoint_url": s3_endpoint()},
                           use_listings_cache=False)
    name = f"sinks-{uuid.uuid4().hex[:10]}"
    fs.mkdir(name)
    yield fs, name
    fs.rm(name, recursive=True)


def s3_sink(bucket: str, key: str, **extra: Any) -> dict:
    return {"format": "object_storage", "from": "kept", "bucket": bucket, "key": key,
            "endpoint_url": s3_endpoint(), "access_key_id": "${RAYSIGHT_TEST_SINK_S3_KEY}",
            "secret_access_key": "${RAYSIGHT_TEST_SINK_S3_SECRET}", **extra}


def test_object_storage_sinks_upload_the_result_in_its_format(tmp_path, data_file, bucket):
    fs, name = bucket
    result = run(tmp_path, spec(data_file, [
        s3_sink(name, "out/kept.parquet"),
        s3_sink(name, "out/kept.txt", file={"format": "csv", "delimiter": ";"},
                **{"from": "by_flag"})]))
    assert result.state == "COMPLETED", result.errors
    got = pq.read_table(io.BytesIO(fs.cat(f"{name}/out/kept.parquet")))
    assert got.equals(kept().cast(got.schema)) and got.schema.names == DATA.schema.names
    csv = pl.read_csv(io.BytesIO(fs.cat(f"{name}/out/kept.txt")), separator=";")
    assert csv.height == by_flag().num_rows and csv.columns == ["flag", "n", "total"]


def test_object_storage_sink_uploads_nothing_for_a_failed_job(tmp_path, data_file, bucket):
    fs, name = bucket
    result = run(tmp_path, spec(data_file, [s3_sink(name, "kept.json")],
                                execution=FAIL_LATER))
    assert result.state == "FAILED"
    assert fs.ls(name) == []


def test_a_missing_bucket_fails_the_job_before_any_table_changes(tmp_path, data_file):
    path = str(tmp_path / "t.sqlite")
    result = run(tmp_path, spec(data_file, [
        {"format": "database", "from": "kept", "path": path, "table": "t"},
        s3_sink(f"missing-{uuid.uuid4().hex[:8]}", "kept.parquet")]))
    message = error_of(result)
    assert message.startswith("exports[1] (object storage s3://missing-") and \
        "no such bucket" in message
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0


# ---------------------------------------------------------------------------------------------
# Kafka


@pytest.fixture(scope="module")
def kafka() -> Iterator[str]:
    """The bootstrap address of a mock cluster of one broker (it lives as long as this
    producer)."""
    from confluent_kafka import Producer

    producer = Producer({"test.mock.num.brokers": 1,
                         "logger": logging.getLogger("tests.kafka_mock")})
    brokers = producer.list_topics(timeout=10).brokers
    yield ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    producer.flush(5)


def consume(bootstrap: str, topic: str, expect: int) -> list[tuple[bytes | None, bytes]]:
    """Up to ``expect`` messages of the topic (waits at most a few seconds for them)."""
    import time

    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest",
                         "logger": logging.getLogger("tests.kafka_mock")})
    consumer.subscribe([topic])
    found: list[tuple[bytes | None, bytes]] = []
    deadline = time.monotonic() + (10 if expect else 3)
    try:
        while len(found) < expect or (not expect and time.monotonic() < deadline):
            if time.monotonic() > deadline:
                break
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                found.append((message.key(), message.value()))
    finally:
        consumer.close()
    return found


def test_kafka_sink_produces_each_row_as_a_json_message(tmp_path, data_file, kafka):
    from raysight.exporters.files import to_jsonable

    topic = f"sink_{uuid.uuid4().hex[:10]}"
    result = run(tmp_path, spec(data_file, [
        {"format": "kafka", "from": "kept", "bootstrap_servers": kafka, "topic": topic,
         "key": "name"}]))
    assert result.state == "COMPLETED", result.errors
    want = kept()
    got = consume(kafka, topic, want.num_rows)
    by_id = {json.loads(v)["id"]: (k, json.loads(v)) for k, v in got}
    expected = {r["id"]: r for r in to_jsonable(want)}
    assert {i: row for i, (_, row) in by_id.items()} == expected
    assert {i: k for i, (k, _) in by_id.items()} == {
        i: None if r["name"] is None else r["name"].encode() for i, r in expected.items()}


def test_kafka_sink_produces_nothing_for_a_failed_job(tmp_path, data_file, kafka):
    topic = f"sink_{uuid.uuid4().hex[:10]}"
    result = run(tmp_path, spec(data_file, [
        {"format": "kafka", "from": "kept", "bootstrap_servers": kafka, "topic": topic}],
        execution=FAIL_LATER))
    assert result.state == "FAILED"
    assert consume(kafka, topic, 0) == []


def test_kafka_sink_of_an_unreachable_cluster_fails_the_job(tmp_path, data_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(tmp_path, spec(data_file, [
        {"format": "kafka", "from": "kept", "bootstrap_servers": f"127.0.0.1:{port}",
         "topic": "t", "connect_timeout_s": 1}]))
    message = error_of(result)
    assert message.startswith(f"exports[0] (kafka topic t at 127.0.0.1:{port})")
    assert result.errors[-1]["category"] == "transient"




def test_a_kafka_key_that_is_not_a_column_fails_the_job_naming_it(tmp_path, data_file):
    result = run(tmp_path, spec(data_file, [
        {"format": "kafka", "from": "kept", "bootstrap_servers": "127.0.0.1:9", "topic": "t",
         "key": "nmae"}]))
    message = error_of(result)
    assert message.startswith("exports[0] (kafka topic t at 127.0.0.1:9): key column 'nmae' "
                              "is not in the result")
    assert "did you mean 'name'?" in message
