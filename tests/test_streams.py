"""Stream sources: Kafka through librdkafka's mock cluster (the Kafka protocol on loopback, in
this process, reached by the Ray workers over TCP) and Redis Streams on the local Redis
(skipped when absent, failing under CI=true). A job loads what was written, one Ray task per
Kafka partition; a read is bounded (start, max_messages); a malformed message fails the job,
is skipped with a warning or goes to a dead-letter topic/stream; consumer positions move only
after the job succeeded, so a failed job's messages are read again by the next run."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import job_tasks, require_service
from fixture_rows import COLUMNS, ROWS
from pydantic import ValidationError

from raysight.connectors.streams import (
    KafkaConnector,
    KafkaSourceConfig,
    RedisStreamConnector,
    RedisStreamSourceConfig,
)
from raysight.connectors.streams.decode import PayloadDecoder
from raysight.errors import InputError, TransientError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

SCHEMA = {"id": "int64", "n": "int64", "price": "decimal(12, 2)", "ratio": "float64",
          "name": "string", "flag": "bool", "day": "date32", "at": "timestamp[us, UTC]",
          "raw": "binary"}
AVRO_SCHEMA = {
    "type": "record", "name": "Row", "fields": [
        {"name": "id", "type": "long"},
        {"name": "n", "type": ["null", "long"]},
        {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal",
                                            "precision": 12, "scale": 2}]},
        {"name": "ratio", "type": ["null", "double"]},
        {"name": "name", "type": ["null", "string"]},
        {"name": "flag", "type": ["null", "boolean"]},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
        {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "raw", "type": ["null", "bytes"]},
    ]}


def as_json(row: dict[str, Any]) -> bytes:
    """A row as its JSON payload: decimals and ISO dates as text, binary as base64."""
    def value(v: Any) -> Any:
        if isinstance(v, decimal.Decimal):
            return str(v)
        if isinstance(v, (dt.date, dt.datetime)):
            return v.isoformat()
        if isinstance(v, bytes):
            return base64.b64encode(v).decode()
        return v
    return json.dumps({k: value(v) for k, v in row.items()}, ensure_ascii=False).encode()


def as_avro(row: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), row)
    return out.getvalue()


def assert_loaded(table: pa.Table, rows: list[dict[str, Any]]) -> None:
    """The table holds exactly ``rows`` (any order), with the declared types."""
    table = table.sort_by("id")
    assert table.column_names == COLUMNS
    expected = sorted(rows, key=lambda r: r["id"])
    for name in COLUMNS:
        assert table.column(name).to_pylist() == [r[name] for r in expected], name
    assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("price").type == pa.decimal128(12, 2)


def run_job(tmp_path: Path, source: dict[str, Any], job_id: str | None = None,
            columns: tuple[str, ...] = ("id",)):
    job_id = job_id or f"streams_{uuid.uuid4().hex[:8]}"
    spec = parse_graph_spec({
        "version": 2, "job_id": job_id,
        "sources": {"rows": source},
        "analyses": {"profile": {"from": "rows", "type": "descriptive", "columns": list(columns)}},
        "exports": [{"from": "rows", "format": "parquet", "path": "rows.parquet"}],
        "execution": {"timeout_s": 60},
    })
    return AnalysisJob(spec, run_dir=tmp_path / "runs").run()


def exported(result: Any) -> pa.Table:
    return pq.read_table(Path(result.run_dir) / "rows.parquet")


# ---------------------------------------------------------------------------------------------
# Kafka: librdkafka's mock cluster lives in this process as long as its producer


@pytest.fixture(scope="module")
def kafka() -> Iterator[tuple[Any, str]]:
    """A producer of a mock cluster of one broker, and the cluster's bootstrap address (a
    loopback port the Ray workers connect to). Topics are created on first use, with four
    partitions."""
    from confluent_kafka import Producer

    producer = Producer({"test.mock.num.brokers": 1,
                         "logger": logging.getLogger("tests.kafka_mock")})
    brokers = producer.list_topics(timeout=10).brokers
    yield producer, ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    producer.flush(5)


def topic_name() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def produce(producer: Any, topic: str, payloads: list[bytes], partitions: int = 3,
            timestamps: list[int] | None = None) -> None:
    """Payload i goes to partition i % partitions (with timestamp i when given)."""
    for i, payload in enumerate(payloads):
        extra = {} if timestamps is None else {"timestamp": timestamps[i]}
        producer.produce(topic, value=payload, partition=i % partitions, **extra)
    assert producer.flush(10) == 0


def kafka_source(bootstrap: str, topic: str, **options: Any) -> dict[str, Any]:
    return {"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic,
            "schema": SCHEMA, "timeout_s": 5, **options}


def read_directly(config: dict[str, Any]) -> tuple[list[Any], pa.Table]:
    """The connector's plan and the concatenated reads, in this process."""
    connector = KafkaConnector(KafkaSourceConfig(**config)) if config["type"] == "kafka" \
        else RedisStreamConnector(RedisStreamSourceConfig(**config))
    parts = connector.plan()
    return parts, pa.concat_tables([connector.read(p) for p in parts])


def committed(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "logger": logging.getLogger("tests.kafka_mock")})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=5)
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
    finally:
        consumer.close()


def test_a_kafka_job_loads_what_was_written_one_task_per_partition(kafka, tmp_path):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_json(r) for r in ROWS])
    job_id = f"kafka_{uuid.uuid4().hex[:8]}"
    result = run_job(tmp_path, kafka_source(bootstrap, topic), job_id)
    assert result.state == "COMPLETED", result.errors
    assert_loaded(exported(result), ROWS)
    # the fourth partition of the topic is empty: no task reads it
    loads = [t for t in job_tasks(job_id, expect=3) if t.name == f"{job_id}/rows/load"]
    assert len(loads) == 3


def test_avro_payloads_load_with_the_writer_schema(kafka, tmp_path):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_avro(r) for r in ROWS])
    result = run_job(tmp_path, kafka_source(bootstrap, topic, format="avro",
                                            schema=AVRO_SCHEMA))
    assert result.state == "COMPLETED", result.errors
    assert_loaded(exported(result), ROWS)


def test_avro_in_confluent_wire_format_loads_and_a_missing_header_is_malformed(kafka):
    producer, bootstrap = kafka
    topic = topic_name()
    header = b"\x00\x00\x00\x00\x07"
    produce(producer, topic, [header + as_avro(ROWS[0]), as_avro(ROWS[1])], partitions=1)
    config = kafka_source(bootstrap, topic, format="avro", schema=AVRO_SCHEMA,
                          confluent_wire_format=True, on_malformed="skip")
    _, table = read_directly(config)
    assert table.column("id").to_pylist() == [0]
    assert "no Confluent wire-format header" in json.loads(
        table.schema.metadata[b"raysight.warnings"])[0]


def test_a_read_starts_at_an_offset_of_every_partition(kafka):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_json(r) for r in ROWS])  # partitions hold 4, 4 and 3 rows
    parts, table = read_directly(kafka_source(bootstrap, topic, start={"offset": 2}))
    per_partition = [ROWS[i::3][2:] for i in range(3)]
    assert [p.options["start"] for p in parts] == [2, 2, 2]
    assert_loaded(table, [r for rows in per_partition for r in rows])


def test_a_read_starts_at_the_first_message_at_or_after_a_timestamp(kafka):
    producer, bootstrap = kafka
    topic = topic_name()
    base = 1_700_000_000_000
    stamps = [base + 1000 * i for i in range(len(ROWS))]
    produce(producer, topic, [as_json(r) for r in ROWS], timestamps=stamps)
    since = dt.datetime.fromtimestamp((base + 4500) / 1000, dt.UTC).isoformat()
    _, table = read_directly(kafka_source(bootstrap, topic, start={"timestamp": since}))
    assert_loaded(table, [r for r, ts in zip(ROWS, stamps, strict=True) if ts >= base + 4500])


def test_max_messages_bounds_the_read_spread_evenly_over_partitions(kafka):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_json(r) for r in ROWS])
    parts, table = read_directly(kafka_source(bootstrap, topic, max_messages=7))
    assert table.num_rows == 7
    assert sorted(p.options["end"] - p.options["start"] for p in parts) == [2, 2, 3]
    assert_loaded(table, [ROWS[i::3][j] for i, p in enumerate(parts)
                          for j in range(p.options["end"] - p.options["start"])])


def test_latest_reads_only_what_arrives_while_plan_waits(kafka):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_json(r) for r in ROWS[:3]])
    connector = KafkaConnector(KafkaSourceConfig(**kafka_source(
        bootstrap, topic, start="latest", max_messages=2, max_wait_s=20)))
    import threading
    later = threading.Timer(0.5, produce, (producer, topic, [as_json(r) for r in ROWS[3:5]]))
    later.start()
    parts = connector.plan()
    later.join()
    assert_loaded(pa.concat_tables([connector.read(p) for p in parts]), ROWS[3:5])


def test_a_malformed_message_fails_the_job_naming_the_source_and_the_problem(kafka, tmp_path):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_json(ROWS[0]), b'{"id": "seven"}', as_json(ROWS[2])],
            partitions=1)
    result = run_job(tmp_path, kafka_source(bootstrap, topic))
    assert result.state == "FAILED"
    assert not result.input_error  # exit status 1: the data, not the spec
    error = result.errors[0]
    assert error["category"] == "malformed_message"
    assert f"kafka topic {topic!r}" in error["message"]
    assert "partition 0 offset 1" in error["message"] and "'id'" in error["message"]
    assert not (Path(result.run_dir) / "rows.parquet").exists()


def test_skipped_malformed_messages_are_counted_in_a_warning(kafka, tmp_path):
    producer, bootstrap = kafka
    topic = topic_name()
    produce(producer, topic, [as_json(ROWS[0]), b"not json", as_json(ROWS[2]), b"[1]"],
            partitions=1)
    result = run_job(tmp_path, kafka_source(bootstrap, topic, on_malformed="skip"))
    assert result.state == "COMPLETED", result.errors
    assert_loaded(exported(result), [ROWS[0], ROWS[2]])
    [warning] = [w for w in result.warnings if "malformed" in w]
    assert f"kafka topic {topic!r}" in warning and "skipped 2 malformed messages" in warning
    assert "partition 0 offset 1" in warning


def test_dead_lettered_messages_go_raw_to_the_dead_letter_topic_with_the_reason(kafka, tmp_path):
    from confluent_kafka import Consumer, TopicPartition

    producer, bootstrap = kafka
    topic, dead = topic_name(), topic_name()
    produce(producer, topic, [as_json(ROWS[0]), b'{"id": 1, "at": "2024-01-01T00:00:00"}'],
            partitions=1)
    result = run_job(tmp_path, kafka_source(bootstrap, topic, on_malformed="dead_letter",
                                            dead_letter={"topic": dead}))
    assert result.state == "COMPLETED", result.errors
    assert_loaded(exported(result), [ROWS[0]])
    assert any(f"dead-letter topic {dead!r}" in w for w in result.warnings)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-check",
                         "enable.partition.eof": True,
                         "logger": logging.getLogger("tests.kafka_mock")})
    consumer.assign([TopicPartition(dead, p, 0) for p in range(4)])
    found, ended = [], 0
    for _ in range(20):  # until every partition's end
        if ended == 4:
            break
        for m in consumer.consume(10, timeout=1):
            if m.error() is None:
                found.append(m)
            else:
                ended += 1
    consumer.close()
    [message] = found
    assert message.value() == b'{"id": 1, "at": "2024-01-01T00:00:00"}'
    headers = dict(message.headers())
    assert b"zone offset" in headers["raysight.reason"]
    assert headers["raysight.source.topic"] == topic.encode()
    assert headers["raysight.source.offset"] == b"1"


def test_a_failed_kafka_job_leaves_the_group_offsets_and_the_next_run_rereads(kafka, tmp_path):
    producer, bootstrap = kafka
    topic, group = topic_name(), f"g_{uuid.uuid4().hex[:8]}"
    produce(producer, topic, [as_json(r) for r in ROWS[:6]])
    source = kafka_source(bootstrap, topic, group_id=group)
    # the analysis names a column the stream does not have: found only once the data is read
    failed = run_job(tmp_path, source, columns=("no_such_column",))
    assert failed.state == "FAILED"
    assert committed(bootstrap, topic, group) == {}
    again = run_job(tmp_path, source)
    assert again.state == "COMPLETED", again.errors
    assert_loaded(exported(again), ROWS[:6])
    assert committed(bootstrap, topic, group) == {0: 2, 1: 2, 2: 2}
    # the group goes on from where the successful run ended
    produce(producer, topic, [as_json(r) for r in ROWS[6:]])
    assert_loaded(exported(run_job(tmp_path, source)), ROWS[6:])


def test_a_group_with_nothing_new_reads_an_empty_table_of_the_declared_schema(kafka):
    producer, bootstrap = kafka
    topic, group = topic_name(), f"g_{uuid.uuid4().hex[:8]}"
    produce(producer, topic, [as_json(r) for r in ROWS[:4]])
    connector = KafkaConnector(KafkaSourceConfig(**kafka_source(bootstrap, topic,
                                                                group_id=group)))
    connector.acknowledge(connector.plan())
    [nothing] = connector.plan()
    table = connector.read(nothing)
    assert table.num_rows == 0 and table.column_names == COLUMNS
    # without a declared schema there is no table to load: the error says so
    inferred = KafkaConnector(KafkaSourceConfig(**{**kafka_source(bootstrap, topic,
                                                                  group_id=group),
                                                   "schema": None}))
    with pytest.raises(InputError, match="no messages to read from earliest"):
        inferred.plan()


def test_an_unreachable_broker_is_a_transient_error_within_the_timeout():
    connector = KafkaConnector(KafkaSourceConfig(
        type="kafka", bootstrap_servers="127.0.0.1:1", topic="t", timeout_s=1))
    with pytest.raises(TransientError, match="kafka topic 't' at 127.0.0.1:1"):
        connector.plan()


def test_librdkafka_settings_resolve_references_in_the_worker_and_never_show_them(
        monkeypatch):
    monkeypatch.setenv("RAYSIGHT_TEST_KAFKA_PW", "s3cr3t-value")
    config = KafkaSourceConfig(type="kafka", bootstrap_servers="127.0.0.1:1", topic="t",
                               config={"sasl.password": "${RAYSIGHT_TEST_KAFKA_PW}"})
    connector = KafkaConnector(config)
    assert connector._settings()["sasl.password"] == "s3cr3t-value"
    assert "s3cr3t" not in repr(connector) + connector.where
    monkeypatch.delenv("RAYSIGHT_TEST_KAFKA_PW")
    with pytest.raises(Exception, match=r"\$\{RAYSIGHT_TEST_KAFKA_PW\}, which is not set"):
        connector._settings()


def test_the_spec_refuses_a_dead_letter_policy_without_a_target_and_avro_without_schema():
    with pytest.raises(ValidationError, match="dead_letter: {topic: NAME}"):
        KafkaSourceConfig(type="kafka", bootstrap_servers="h:1", topic="t",
                          on_malformed="dead_letter")
    with pytest.raises(ValidationError, match="writer's `schema`"):
        KafkaSourceConfig(type="kafka", bootstrap_servers="h:1", topic="t", format="avro")
    with pytest.raises(ValidationError, match="column 'x': unknown column type"):
        KafkaSourceConfig(type="kafka", bootstrap_servers="h:1", topic="t",
                          schema={"x": "int65"})


def test_the_spec_refuses_a_literal_kafka_password_without_repeating_it():
    # the spec is copied into every run directory: secrets must be ${NAME} references
    with pytest.raises(ValidationError, match=r"config.sasl.password must be a \$\{NAME\}") \
            as err:
        KafkaSourceConfig(type="kafka", bootstrap_servers="h:1", topic="t",
                          config={"sasl.password": "hunter2-literal"})
    assert "hunter2-literal" not in str(err.value).split("input_value")[0]
    with pytest.raises(ValidationError, match="config.sasl.username: `\\$\\{bad name\\}`"):
        KafkaSourceConfig(type="kafka", bootstrap_servers="h:1", topic="t",
                          config={"sasl.username": "${bad name}"})


def test_an_inferred_json_schema_reads_the_payloads_types():
    decoded = PayloadDecoder("json").decode([b'{"a": 1, "b": "x"}', b'{"a": 2, "c": true}'])
    assert decoded.table.to_pylist() == [{"a": 1, "b": "x", "c": None},
                                         {"a": 2, "b": None, "c": True}]


# ---------------------------------------------------------------------------------------------
# Redis Streams


@pytest.fixture
def redis_stream() -> Iterator[tuple[Any, str]]:
    """A client of the local Redis and a fresh stream name (its keys deleted afterwards)."""
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    name = f"raysight_test_{uuid.uuid4().hex[:10]}"
    yield client, name
    client.delete(name, f"{name}_dead")
    client.close()


def redis_source(stream: str, **options: Any) -> dict[str, Any]:
    return {"type": "redis_stream", "url": "redis://127.0.0.1:6379/0", "stream": stream,
            "schema": SCHEMA, "timeout_s": 5, **options}


def test_a_redis_stream_job_loads_what_was_written(redis_stream, tmp_path):
    client, stream = redis_stream
    for row in ROWS:
        client.xadd(stream, {"data": as_json(row)})
    result = run_job(tmp_path, redis_source(stream))
    assert result.state == "COMPLETED", result.errors
    assert_loaded(exported(result), ROWS)


def test_redis_entry_fields_can_be_the_columns(redis_stream):
    client, stream = redis_stream
    for row in ROWS:
        client.xadd(stream, {k: v if isinstance(v, bytes) else str(v).encode()
                             if not isinstance(v, dt.datetime) else v.isoformat().encode()
                             for k, v in row.items() if v is not None})
    _, table = read_directly(redis_source(stream, fields_as_columns=True,
                                          schema={**SCHEMA, "flag": "string"}))
    expected = [{**r, "flag": None if r["flag"] is None else str(r["flag"])} for r in ROWS]
    assert_loaded(table, expected)


def test_a_redis_read_is_bounded_by_a_start_id_and_max_messages(redis_stream):
    client, stream = redis_stream
    ids = [client.xadd(stream, {"data": as_json(r)}).decode() for r in ROWS]
    _, table = read_directly(redis_source(stream, start={"id": ids[2]}, max_messages=4))
    assert_loaded(table, ROWS[3:7])


def test_a_failed_redis_job_leaves_the_group_and_the_next_run_rereads(redis_stream, tmp_path):
    client, stream = redis_stream
    ids = [client.xadd(stream, {"data": as_json(r)}).decode() for r in ROWS[:6]]
    source = redis_source(stream, group="analytics")
    assert run_job(tmp_path, source, columns=("no_such_column",)).state == "FAILED"
    assert client.xinfo_groups(stream) == []
    again = run_job(tmp_path, source)
    assert again.state == "COMPLETED", again.errors
    assert_loaded(exported(again), ROWS[:6])
    [group] = client.xinfo_groups(stream)
    assert group["last-delivered-id"].decode() == ids[-1]
    for row in ROWS[6:]:
        client.xadd(stream, {"data": as_json(row)})
    assert_loaded(exported(run_job(tmp_path, source)), ROWS[6:])


def test_malformed_redis_entries_go_to_the_dead_letter_stream(redis_stream, tmp_path):
    client, stream = redis_stream
    client.xadd(stream, {"data": as_json(ROWS[0])})
    bad = client.xadd(stream, {"data": b"{oops"}).decode()
    client.xadd(stream, {"other": b"no payload field"})
    result = run_job(tmp_path, redis_source(stream, on_malformed="dead_letter",
                                            dead_letter={"stream": f"{stream}_dead"}))
    assert result.state == "COMPLETED", result.errors
    assert_loaded(exported(result), [ROWS[0]])
    assert any("wrote 2 malformed messages" in w for w in result.warnings)
    letters = [fields for _, fields in client.xrange(f"{stream}_dead")]
    assert [f.get(b"data") for f in letters] == [b"{oops", None]
    assert letters[0][b"raysight.source.id"].decode() == bad
    assert b"no field 'data'" in letters[1][b"raysight.reason"]


def test_an_unreachable_redis_is_a_transient_error():
    connector = RedisStreamConnector(RedisStreamSourceConfig(
        type="redis_stream", url="redis://127.0.0.1:1/0", stream="s", timeout_s=1))
    with pytest.raises(TransientError, match="redis stream 's' at redis://127.0.0.1:1/0"):
        connector.plan()


def test_a_resumed_kafka_job_reads_the_range_its_first_run_planned(kafka, tmp_path):
    producer, bootstrap = kafka
    topic, group = topic_name(), f"g_{uuid.uuid4().hex[:8]}"
    produce(producer, topic, [as_json(r) for r in ROWS[:6]])
    job_id = f"kafka_resume_{uuid.uuid4().hex[:8]}"
    source = kafka_source(bootstrap, topic, group_id=group)
    assert run_job(tmp_path, source, job_id, columns=("no_such_column",)).state == "FAILED"
    produce(producer, topic, [as_json(r) for r in ROWS[6:]])  # arrives after the plan
    resumed = AnalysisJob.resume(job_id, run_dir=tmp_path / "runs",
                                 overrides=["analyses.profile.columns=[id]"]).run()
    assert resumed.state == "COMPLETED", resumed.errors
    assert_loaded(exported(resumed), ROWS[:6])
    assert committed(bootstrap, topic, group) == {0: 2, 1: 2, 2: 2}
