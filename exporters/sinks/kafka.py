"""The Kafka sink: each row of a result or dataset produced as one JSON message to a topic,
when the job has succeeded.

Example (YAML)::

    exports:
      - {format: kafka, from: alerts, bootstrap_servers: "broker:9092", topic: alerts,
         key: customer_id, config: {security.protocol: SASL_SSL,
                                    sasl.username: app, sasl.password: "${KAFKA_PASSWORD}"}}

A message's value is the row as a JSON object (values as the JSON export writes them:
ISO dates and timestamps, decimals as numbers, bytes as base64); its key, when ``key`` names
a column, that column's value as text (so rows of one key land in one partition, in order).
The job's commit checks that the cluster answers, produces every message once every sink is
ready, and waits until each was delivered (``delivery_timeout_s``); a message the cluster
did not take fails the job, with the first delivery error. Messages delivered before a
failure stay in the topic (Kafka has no way to take them back outside a transaction).
"""

from __future__ import annotations

import difflib
import logging
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator

from raysight.errors import InputError, TransientError
from raysight.exporters.files import jsonable_frame
from raysight.plugins import PluginConfig, PreparedWrite, Sink
from raysight.secrets import check_references, check_settings, redact, resolve

log = logging.getLogger(__name__)

#: the characters and length Kafka allows in a topic name
_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"
#: librdkafka settings the sink sets itself
_OWN = {"bootstrap.servers", "on_delivery", "error_cb", "logger"}


class KafkaSinkConfig(PluginConfig):
    """``{format: kafka, from, bootstrap_servers, topic, key?, value_format?, config?}``."""

    format: Literal["kafka"] = "kafka"
    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...]")
    topic: str = Field(pattern=_TOPIC)
    key: str | None = Field(default=None, min_length=1,
                            description="the column whose value is each message's key")
    value_format: Literal["json"] = "json"
    #: more librdkafka producer settings; values may hold ${NAME} references
    config: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    delivery_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("config")
    @classmethod
    def _settings(cls, value: dict[str, str]) -> dict[str, str]:
        own = sorted(set(value) & _OWN)
        if own:
            raise ValueError(f"{', '.join(own)} is set by the sink (use bootstrap_servers)")
        check_settings(value)
        return value


class KafkaSink(Sink[KafkaSinkConfig]):
    """Produces the rows as JSON messages at commit."""

    name = "kafka"
    Config = KafkaSinkConfig

    def describe(self) -> str:
        return f"kafka topic {self.config.topic} at {self.config.bootstrap_servers}"

    def problem(self, schema: pa.Schema) -> str | None:
        key = self.config.key
        if key is not None and key not in schema.names:
            near = difflib.get_close_matches(key, schema.names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            return (f"key column {key!r} is not in the result (columns: "
                    f"{', '.join(schema.names)}){hint}")
        return None

    def prepare(self, staged: str) -> PreparedWrite:
        """A producer connected to the cluster (a TransientError within
        ``connect_timeout_s`` when it does not answer)."""
        from confluent_kafka import KafkaException, Producer

        settings = self._settings()
        try:
            producer = Producer(settings)
            producer.list_topics(timeout=self.config.connect_timeout_s)
        except KafkaException as err:
            raise TransientError(f"cannot reach the cluster: "
                                 f"{redact(str(err), self._secrets())}") from None
        return _Produce(self.config, producer, staged, self._secrets())

    def _settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            name: resolve(value, f"kafka config {name}")
            for name, value in self.config.config.items()}
        settings.setdefault("message.timeout.ms", int(self.config.delivery_timeout_s * 1000))
        settings.setdefault("enable.idempotence", True)  # no duplicates from its own retries
        settings["bootstrap.servers"] = self.config.bootstrap_servers
        settings["logger"] = log
        return settings

    def _secrets(self) -> list[str]:
        out = []
        for name, value in self.config.config.items():
            if check_references(value):
                try:
                    out.append(resolve(value, name))
                except InputError:
                    continue
        return out


def messages(table: pa.Table, key: str | None) -> tuple[list[str], list[str] | None]:
    """Each row as a JSON object, and its key column's value as text (None: no keys)."""
    frame = jsonable_frame(table)
    values = frame.select(pl.struct(pl.all()).struct.json_encode()).to_series().to_list()
    if key is None:
        return values, None
    keys = frame.select(pl.col(key).cast(pl.String)).to_series().to_list()
    return values, keys


class _Produce(PreparedWrite):
    def __init__(self, config: KafkaSinkConfig, producer: Any, staged: str,
                 secrets: list[str]) -> None:
        self.config, self.producer, self.staged, self.secrets = \
            config, producer, staged, secrets

    def commit(self) -> None:
        errors: list[str] = []

        def delivered(err: Any, _: Any) -> None:
            if err is not None:
                errors.append(str(err))

        topic, sent = self.config.topic, 0
        for batch in pq.ParquetFile(self.staged).iter_batches(batch_size=50_000):
            values, keys = messages(pa.Table.from_batches([batch]), self.config.key)
            for i, value in enumerate(values):  # librdkafka takes one message per call
                key = keys[i] if keys is not None else None
                while True:
                    try:
                        self.producer.produce(topic, value=value.encode(), key=None if key
                                              is None else key.encode(), on_delivery=delivered)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        self.producer.poll(0.1)
                sent += 1
            self.producer.poll(0)
        left = self.producer.flush(self.config.delivery_timeout_s)
        if errors:
            raise TransientError(f"{len(errors)} of {sent} messages were not delivered: "
                                 f"{redact(errors[0], self.secrets)}")
        if left:
            raise TransientError(f"{left} of {sent} messages were not delivered within "
                                 f"{self.config.delivery_timeout_s:g} s")
