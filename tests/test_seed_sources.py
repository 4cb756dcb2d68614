"""The design's four seed sources (digest part3 §1.11, E2E-7) as real fixtures: a database
table, files, objects of a bucket and a stream, each with the seed's schema, loaded through
its real connector by a job; the loaded rows equal what was written and the data statistics
are those of the rows (the seed's were hard-coded)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

UTC = dt.UTC


def database_rows(n: int = 1500, seed: int = 1) -> pl.DataFrame:
    """id, name "Item {i}", value in [0, 1000), timestamp in 2023 (day 1-28), category A-E."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2023, 1, 1, tzinfo=UTC)
    return pl.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "name": [f"Item {i}" for i in range(n)],
        "value": rng.random(n) * 1000,
        "timestamp": [start + dt.timedelta(days=int(m) * 30 + int(d), seconds=int(s))
                      for m, d, s in zip(rng.integers(0, 12, n), rng.integers(0, 28, n),
                                         rng.integers(0, 86400, n), strict=True)],
        "category": rng.choice(list("ABCDE"), n),
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


def file_rows(n: int = 2000, seed: int = 2) -> pl.DataFrame:
    """id, product "Product {0-99}", price 0.0-99.9 (1 % missing), date 2023, customer
    "Customer {0-499}", region North/South/East/West/Central."""
    rng = np.random.default_rng(seed)
    price = np.round(rng.random(n) * 99.9, 1)
    return pl.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "product": [f"Product {i}" for i in rng.integers(0, 100, n)],
        "price": pl.Series(price).scatter(np.arange(0, n, 100), None),
        "date": [dt.date(2023, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 365, n)],
        "customer": [f"Customer {i}" for i in rng.integers(0, 500, n)],
        "region": rng.choice(["North", "South", "East", "West", "Central"], n),
    })


def object_rows(n: int = 3000, seed: int = 3) -> pl.DataFrame:
    """The eight transaction columns."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 3, 1, tzinfo=UTC)
    return pl.DataFrame({
        "transaction_id": [f"txn-{uuid.UUID(int=int(i))}" for i in rng.integers(0, 2**62, n)],
        "amount": np.round(rng.random(n) * 999.99, 2),
        "currency": rng.choice(["USD", "EUR", "GBP", "JPY", "CNY"], n),
        "timestamp": [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 10**6, n)],
        "customer_id": [f"cust-{i}" for i in rng.integers(0, 5000, n)],
        "merchant": [f"Merchant {i}" for i in rng.integers(0, 200, n)],
        "category": rng.choice(["Retail", "Food", "Travel", "Entertainment", "Services"], n),
        "status": rng.choice(["completed", "pending", "failed", "refunded"], n),
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


def run_source(tmp_path: Path, name: str, source: dict, distinct: str) -> tuple[object, Path]:
    spec = parse_graph_spec({
        "version": 2, "job_id": f"seed-{name}", "sources": {name: source},
        "analyses": {"profile": {"from": name, "type": "descriptive", "columns": [distinct]}},
        "exports": [{"from": name, "format": "parquet", "path": "loaded.parquet"},
                    {"from": "profile", "format": "parquet", "path": "profile.parquet"}],
    })
    result = AnalysisJob(spec, run_dir=tmp_path / "runs").run()
    assert result.state == "COMPLETED", result.errors
    return result, Path(result.run_dir)


def check_loaded(result, run_dir: Path, name: str, written: pl.DataFrame, distinct: str,
                 partitions: int) -> None:
    loaded = pl.read_parquet(run_dir / "loaded.parquet")
    assert_frame_equal(loaded.sort(written.columns[0]), written, check_dtypes=False)
    stats = result.data_stats[name]
    assert (stats["row_count"], stats["column_count"]) == written.shape
    assert stats["partitions"] == partitions
    for column, series in written.to_dict().items():
        got = stats["columns"][column]
        expected = [series.null_count(), series.min(), series.max()]
        expected[1:] = [v.isoformat() if isinstance(v, dt.date) else v for v in expected[1:]]
        assert [got["nulls"], got["min"], got["max"]] == expected, column
    profile = pl.read_parquet(run_dir / "profile.parquet")
    assert profile.filter(pl.col("column") == distinct).get_column("n_unique").item() == \
        written.get_column(distinct).n_unique() == 5


def test_the_database_seed_source_through_sqlite(tmp_path):
    rows = database_rows()
    path = tmp_path / "seed.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER, name TEXT, value REAL, "
                   "timestamp TIMESTAMP, category TEXT)")
        stamped = rows.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M:%S"))
        db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", stamped.rows())
    result, run_dir = run_source(tmp_path, "database", {
        "type": "database", "path": str(path), "table": "items", "partition_column": "id",
        "partitions": 3}, "category")
    # SQLite keeps no time zone: the timestamps read back as the UTC wall times written
    written = rows.with_columns(pl.col("timestamp").dt.replace_time_zone(None))
    check_loaded(result, run_dir, "database", written, "category", partitions=4)


def test_the_file_seed_source_as_csv_parquet_and_avro(tmp_path):
    import fastavro

    rows = file_rows()
    folder = tmp_path / "files"
    folder.mkdir()
    rows.write_csv(folder / "seed.csv")
    rows.write_parquet(folder / "seed.parquet")
    schema = {"type": "record", "name": "sale", "fields": [
        {"name": "id", "type": "long"}, {"name": "product", "type": "string"},
        {"name": "price", "type": ["null", "double"]},
        {"name": "date", "type": {"type": "int", "logicalType": "date"}},
        {"name": "customer", "type": "string"}, {"name": "region", "type": "string"}]}
    with open(folder / "seed.avro", "wb") as out:
        fastavro.writer(out, schema, rows.to_dicts())
    for fmt in ("csv", "parquet", "avro"):
        result, run_dir = run_source(tmp_path / fmt, "file",
                                     {"type": "file", "path": str(folder / f"seed.{fmt}")},
                                     "region")
        check_loaded(result, run_dir, "file", rows, "region", partitions=1)


def test_the_object_storage_seed_source_as_a_parquet_prefix(tmp_path):
    import s3fs
    from s3_server import s3_endpoint

    rows = object_rows()
    store = s3fs.S3FileSystem(endpoint_url=s3_endpoint(), key="seed", secret="unused",
                              skip_instance_cache=True)
    bucket = f"seed-{uuid.uuid4().hex[:12]}"
    store.mkdir(bucket, acl="public-read")
    for i, part in enumerate(rows.iter_slices(1000)):
        out = pa.BufferOutputStream()
        pq.write_table(part.to_arrow(), out)
        store.pipe(f"{bucket}/transactions/part-{i}.parquet", out.getvalue().to_pybytes(),
                   acl="public-read")
    result, run_dir = run_source(tmp_path, "transactions", {
        "type": "object_storage", "bucket": bucket, "prefix": "transactions/",
        "endpoint_url": s3_endpoint(), "anonymous": True}, "currency")
    written = rows.sort("transaction_id")
    check_loaded(result, run_dir, "transactions", written, "currency", partitions=3)


def stream_rows(n: int = 800, seed: int = 4) -> pl.DataFrame:
    """event_id, event_type, device_id, user_id, timestamp (the last hour) and data {page,
    duration, referrer}."""
    rng = np.random.default_rng(seed)
    now = dt.datetime(2025, 6, 1, 12, tzinfo=UTC)
    return pl.DataFrame({
        "event_id": [f"evt-{uuid.UUID(int=int(i))}" for i in rng.integers(0, 2**62, n)],
        "event_type": rng.choice(["click", "view", "purchase", "login", "logout"], n),
        "device_id": [f"dev-{i}" for i in rng.integers(0, 1000, n)],
        "user_id": [f"user-{i}" for i in rng.integers(0, 2000, n)],
        "timestamp": [now - dt.timedelta(seconds=int(s)) for s in rng.integers(0, 3600, n)],
        "data": [{"page": f"/page/{p}", "duration": int(d), "referrer": r} for p, d, r in
                 zip(rng.integers(0, 50, n), rng.integers(0, 300, n),
                     rng.choice(["direct", "search", "social", "email"], n), strict=True)],
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


STREAM_SCHEMA = {"event_id": "string", "event_type": "string", "device_id": "string",
                 "user_id": "string", "timestamp": "timestamp[us, UTC]"}


def stream_payloads(rows: pl.DataFrame) -> list[bytes]:
    import json

    return [json.dumps({**r, "timestamp": r["timestamp"].isoformat()}).encode()
            for r in rows.iter_rows(named=True)]


def check_stream(tmp_path: Path, name: str, source: dict, rows: pl.DataFrame,
                 partitions: int) -> None:
    result, run_dir = run_source(tmp_path, name, source, "event_type")
    # the declared columns come as declared; `data` is not declared: left out
    written = rows.drop("data").sort("event_id")
    check_loaded(result, run_dir, name, written, "event_type", partitions=partitions)


def test_the_stream_seed_source_through_kafka(tmp_path):
    import logging

    from confluent_kafka import Producer

    rows = stream_rows()
    producer = Producer({"test.mock.num.brokers": 1,
                         "logger": logging.getLogger("tests.kafka_mock")})
    bootstrap = ",".join(f"{b.host}:{b.port}"
                         for b in producer.list_topics(timeout=10).brokers.values())
    topic = f"seed_{uuid.uuid4().hex[:10]}"
    for i, payload in enumerate(stream_payloads(rows)):
        producer.produce(topic, value=payload, partition=i % 3)
    assert producer.flush(10) == 0
    check_stream(tmp_path, "events", {"type": "kafka", "bootstrap_servers": bootstrap,
                                      "topic": topic, "schema": STREAM_SCHEMA,
                                      "timeout_s": 5}, rows, partitions=3)


def test_the_stream_seed_source_through_redis_streams(tmp_path):
    import redis
    from conftest import require_service

    require_service("Redis", "127.0.0.1", 6379)
    rows = stream_rows(seed=5)
    stream = f"raysight_seed_{uuid.uuid4().hex[:10]}"
    with redis.Redis(host="127.0.0.1", port=6379) as client:
        for payload in stream_payloads(rows):
            client.xadd(stream, {"data": payload})
        try:
            check_stream(tmp_path, "events", {"type": "redis_stream", "stream": stream,
                                              "schema": STREAM_SCHEMA}, rows, partitions=1)
        finally:
            client.delete(stream)
