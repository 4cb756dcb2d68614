"""What a stream source says: where the stream is, which bounded part of it to read, how its
payloads decode and what becomes of a message that does not."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysight.connectors.streams.schema import avro_arrow_schema, declared_schema
from raysight.plugins import PluginConfig
from raysight.secrets import check_references, check_settings

PayloadFormat = Literal["json", "avro"]
MalformedPolicy = Literal["fail", "skip", "dead_letter"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OffsetStart(_Options):
    """Start at this offset of every partition (clamped to what the partition still holds)."""

    offset: int = Field(ge=0)


class TimestampStart(_Options):
    """Start at the first message at or after this instant (ISO 8601 with a zone offset)."""

    timestamp: dt.datetime | str

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: dt.datetime | str) -> dt.datetime:
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
        if value.tzinfo is None:
            raise ValueError("the timestamp needs a zone offset (…Z or …+02:00)")
        return value

    @property
    def epoch_ms(self) -> int:
        assert isinstance(self.timestamp, dt.datetime)
        return int(self.timestamp.timestamp() * 1000)


class IdStart(_Options):
    """Start after this Redis stream entry id (``1700000000000-0``): exclusive, as XREADGROUP."""

    id: str = Field(pattern=r"^\d+(-\d+)?$")


Start = Literal["earliest", "latest"] | OffsetStart | TimestampStart


class _StreamSource(PluginConfig):
    """What both stream sources share: the bound, the payload format, the malformed policy."""

    #: at most this many messages in all (spread evenly over the partitions)
    max_messages: int = Field(default=100_000, ge=1, le=100_000_000)
    #: how long ``plan`` waits for messages when fewer than ``max_messages`` are there
    #: (``start: latest`` reads only what arrives in this time); 0 reads what is there
    max_wait_s: float = Field(default=0.0, ge=0, le=3600)
    #: seconds to wait on the server before the read is a TransientError
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    format: PayloadFormat = "json"
    #: JSON: column -> type (``int64``, ``string``, ``decimal(12, 2)``, ``timestamp[us, UTC]``,
    #: ``binary`` as base64 text ...), or None to infer; Avro: the writer's schema (a record)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    on_malformed: MalformedPolicy = "fail"

    @model_validator(mode="after")
    def _schema_fits_format(self) -> _StreamSource:
        if self.format == "avro":
            if self.schema_ is None:
                raise ValueError("`format: avro` needs the writer's `schema` (an Avro record)")
            avro_arrow_schema(self.schema_)
        elif self.schema_ is not None:
            declared_schema(self.schema_)
        return self


class KafkaDeadLetter(_Options):
    """Where a Kafka source writes malformed messages: a topic of the same cluster.

    A topic rather than a file of the run directory: the Ray task that reads the partition
    writes it, on whichever node it runs (a run directory may be the driver's local disk), and
    the raw bytes and their reason stay in the messaging system, where tools that replay a
    dead-letter queue look. Each dead letter has headers naming its source topic, partition,
    offset and timestamp and the reason; a retried read writes its dead letters again (at
    least once, like the read itself), and those headers tell the copies apart.
    """

    topic: str = Field(min_length=1)


class KafkaSourceConfig(_StreamSource):
    """A bounded read of a Kafka topic (confluent-kafka / librdkafka).

    ``plan`` fixes, per partition, the offsets read: from the consumer group's committed
    offset where ``group_id`` has one and ``start`` is ``earliest`` or ``latest`` (those only
    say where a group without one begins, as ``auto.offset.reset``); from ``start`` itself
    when it is an ``{offset: N}`` or a ``{timestamp: ISO}``. The group's offsets move only
    after the job succeeded. ``config`` passes librdkafka settings (``security.protocol``,
    ``sasl.password: ${KAFKA_PASSWORD}``); ``${NAME}`` references resolve in the workers.
    """

    type: Literal["kafka"] = "kafka"
    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(min_length=1)
    group_id: str | None = Field(default=None, min_length=1)
    start: Start = "earliest"
    #: Avro payloads in Confluent's wire format (magic byte 0, 4-byte schema id, then Avro)
    confluent_wire_format: bool = False
    dead_letter: KafkaDeadLetter | None = None
    config: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _references(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_settings(value)
        return value

    @model_validator(mode="after")
    def _dead_letter_target(self) -> KafkaSourceConfig:
        _check_dead_letter(self.on_malformed, self.dead_letter, "topic")
        if self.dead_letter is not None and self.dead_letter.topic == self.topic:
            raise ValueError("the dead-letter topic must not be the topic read")
        return self


class RedisDeadLetter(_Options):
    """Where a Redis stream source writes malformed entries: a stream of the same server."""

    stream: str = Field(min_length=1)


class RedisStreamSourceConfig(_StreamSource):
    """A bounded read of a Redis stream (redis-py).

    ``url`` (``redis://:${REDIS_PASSWORD}@host:6379/0``) resolves ``${NAME}`` in the workers.
    Entries are read from after the consumer ``group``'s last-delivered id when the group
    exists and ``start`` is ``earliest`` or ``latest`` (where a new group begins); from
    ``start`` itself when it is a ``{timestamp: ISO}`` or an ``{id: ...}`` (exclusive). The
    group's last-delivered id moves (the group is created) only after the job succeeded.
    ``field`` names the entry field holding the payload; ``fields_as_columns`` makes every
    field a column instead (values are text cast to the declared ``schema``, binary kept as
    bytes).
    """

    type: Literal["redis_stream"] = "redis_stream"
    url: str = Field(default="redis://127.0.0.1:6379/0", min_length=1)
    stream: str = Field(min_length=1)
    group: str | None = Field(default=None, min_length=1)
    start: Literal["earliest", "latest"] | TimestampStart | IdStart = "earliest"
    field: str = Field(default="data", min_length=1)
    fields_as_columns: bool = False
    dead_letter: RedisDeadLetter | None = None

    @field_validator("url")
    @classmethod
    def _references(cls, value: str) -> str:
        _check_references(value, "the URL")
        return value

    @model_validator(mode="after")
    def _dead_letter_target(self) -> RedisStreamSourceConfig:
        _check_dead_letter(self.on_malformed, self.dead_letter, "stream")
        if self.dead_letter is not None and self.dead_letter.stream == self.stream:
            raise ValueError("the dead-letter stream must not be the stream read")
        if self.fields_as_columns and self.format != "json":
            raise ValueError("`fields_as_columns` reads text fields: it needs `format: json`")
        return self


def _check_dead_letter(policy: str, target: Any, what: str) -> None:
    if policy == "dead_letter" and target is None:
        raise ValueError(f"`on_malformed: dead_letter` needs `dead_letter: {{{what}: NAME}}`")
    if policy != "dead_letter" and target is not None:
        raise ValueError("`dead_letter` is used only with `on_malformed: dead_letter`")


def _check_references(text: str, where: str) -> None:
    try:
        check_references(text)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
