"""The Kafka connector: fixes each partition's offset range in ``plan``, reads it in one Ray
task (assign and seek, never subscribe) and commits the consumer group's offsets only once
the job succeeded (:meth:`KafkaConnector.acknowledge`).

A range fixed in ``plan`` is what a retried task, and a resumed job (its plan restored from
the checkpoint), reads again: the same messages, whatever arrived since.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from raysight.connectors.database.urls import resolve
from raysight.connectors.streams.config import KafkaSourceConfig, OffsetStart, TimestampStart
from raysight.connectors.streams.decode import PayloadDecoder, Rejected, Undecodable
from raysight.connectors.streams.errors import (
    MalformedMessage,
    handle_malformed,
    translated_kafka_errors,
)
from raysight.connectors.streams.ranges import clamp, spread
from raysight.errors import InputError, TransientError
from raysight.plugins import Connector, PartitionSpec, with_warnings

log = logging.getLogger(__name__)

#: seconds between two looks at the topic's end while ``plan`` waits for messages
_WAIT_POLL_S = 0.2


class KafkaConnector(Connector[KafkaSourceConfig]):
    """Reads a bounded range of a Kafka topic, one Ray task per partition with messages.

    ``PartitionSpec.options`` holds ``partition``, ``start`` and ``end`` (offsets read:
    ``start <= offset < end``); a read with nothing to read has ``partition: None``.
    """

    name = "kafka"
    Config = KafkaSourceConfig

    # -- planning -------------------------------------------------------------------------

    def plan(self) -> list[PartitionSpec]:
        """One partition per Kafka partition that has messages in the bounded range."""
        config = self.config
        with self._client() as consumer, self._errors():
            partitions = self._partitions(consumer)
            marks = {p: self._watermarks(consumer, p) for p in partitions}
            starts = self._starts(consumer, marks)
            deadline = time.monotonic() + config.max_wait_s
            while True:
                counts = spread({p: marks[p][1] - starts[p] for p in partitions},
                                config.max_messages)
                if sum(counts.values()) >= config.max_messages or time.monotonic() >= deadline:
                    break
                time.sleep(_WAIT_POLL_S)
                marks = {p: self._watermarks(consumer, p) for p in partitions}
        specs = [self._partition(p, starts[p], starts[p] + n)
                 for p, n in counts.items() if n > 0]
        log.debug("planned %s: %s", self.where, [s.label for s in specs])
        if specs:
            return specs
        if self._decoder.arrow_schema is None:
            raise InputError(f"{self.where}: no messages to read from {self._start_text}; "
                             "declare the `schema` to load an empty table", source=self.where)
        return [PartitionSpec("no messages", self.where, 0, {"partition": None})]

    def _partition(self, partition: int, start: int, end: int) -> PartitionSpec:
        return PartitionSpec(f"{self.config.topic}[{partition}] offsets {start}-{end - 1}",
                             self.where, 0, {"partition": partition, "start": start, "end": end})

    def _partitions(self, consumer: Any) -> list[int]:
        topic = self.config.topic
        metadata = consumer.list_topics(topic, timeout=self.config.timeout_s)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            reason = f": {found.error.str()}" if found is not None and found.error else ""
            raise InputError(f"{self.where}: no such topic{reason}", source=self.where)
        return sorted(found.partitions)

    def _watermarks(self, consumer: Any, partition: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        low, high = consumer.get_watermark_offsets(
            TopicPartition(self.config.topic, partition), timeout=self.config.timeout_s)
        return int(low), int(high)

    def _starts(self, consumer: Any, marks: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Each partition's first offset to read (see :class:`KafkaSourceConfig`)."""
        from confluent_kafka import TopicPartition

        config, topic = self.config, self.config.topic
        start = config.start
        if isinstance(start, OffsetStart):
            return {p: clamp(start.offset, *marks[p]) for p in marks}
        if isinstance(start, TimestampStart):
            asked = [TopicPartition(topic, p, start.epoch_ms) for p in marks]
            found = consumer.offsets_for_times(asked, timeout=config.timeout_s)
            return {tp.partition: self._offset_at(consumer, tp.partition, start.epoch_ms,
                                                  tp.offset, *marks[tp.partition])
                    for tp in found}
        committed: dict[int, int] = {}
        if config.group_id is not None:
            tps = consumer.committed([TopicPartition(topic, p) for p in marks],
                                     timeout=config.timeout_s)
            committed = {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
        return {p: clamp(committed[p], *marks[p]) if p in committed
                else marks[p][0] if start == "earliest" else marks[p][1] for p in marks}

    def _offset_at(self, consumer: Any, partition: int, ms: int, found: int, low: int,
                   high: int) -> int:
        """The first offset at or after ``ms``: the broker's answer, unless it says "none"
        (-1) while the partition's last message is that late; a broker without a time index
        (librdkafka's mock cluster) answers so, and the offset is then searched for by
        message timestamps (which assumes they do not decrease, as with LogAppendTime)."""
        if found >= 0:
            return clamp(found, low, high)
        if high <= low or self._timestamp(consumer, partition, high - 1) < ms:
            return high
        lo, hi = low, high - 1  # the answer is in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            if self._timestamp(consumer, partition, mid) >= ms:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _timestamp(self, consumer: Any, partition: int, offset: int) -> int:
        from confluent_kafka import TopicPartition

        consumer.assign([TopicPartition(self.config.topic, partition, offset)])
        messages, _ = self._consume(consumer, 1, offset + 1)
        consumer.unassign()
        if not messages:
            raise TransientError(f"{self.where}: partition {partition} offset {offset} could "
                                 f"not be read within {self.config.timeout_s} s",
                                 source=self.where)
        return int(messages[0].timestamp()[1])

    # -- reading --------------------------------------------------------------------------

    def read(self, partition: PartitionSpec) -> pa.Table:
        """The partition's range of messages, decoded (malformed ones per ``on_malformed``)."""
        from confluent_kafka import TopicPartition

        opts = partition.options
        decoder = self._decoder
        if opts["partition"] is None:
            schema = decoder.arrow_schema
            assert schema is not None
            return schema.empty_table()
        number, start, end = opts["partition"], opts["start"], opts["end"]
        with self._client() as consumer, self._errors():
            consumer.assign([TopicPartition(self.config.topic, number, start)])
            messages, at_end = self._consume(consumer, end - start, end)
        reached = messages[-1].offset() + 1 if messages else start
        if reached < end and not at_end:
            raise TransientError(f"{self.where}: partition {number} gave {reached - start} of "
                                 f"offsets {start}-{end - 1} within {self.config.timeout_s} s",
                                 source=self.where)
        try:  # confluent-kafka hands out one message object each: the payloads are gathered
            decoded = decoder.decode([m.value() for m in messages])
        except Undecodable as err:
            raise MalformedMessage(f"{self.where}: partition {number} offsets {start}-{end - 1}:"
                                   f" {err}", source=self.where) from None
        warnings = handle_malformed(
            decoded.rejected, self.config.on_malformed, self.where,
            lambda i: f"partition {number} offset {messages[i].offset()}",
            lambda rejected: self._dead_letter(messages, rejected))
        return with_warnings(decoded.table, warnings)

    def _consume(self, consumer: Any, count: int, end: int) -> tuple[list[Any], bool]:
        """Messages up to offset ``end`` (exclusive), at most ``count``, and whether the
        partition's end came first (a compacted or transactional topic has offsets without a
        message); waits at most ``timeout_s`` without progress."""
        from confluent_kafka import KafkaError, KafkaException

        out: list[Any] = []
        quiet_until = time.monotonic() + self.config.timeout_s
        while len(out) < count and time.monotonic() < quiet_until:
            batch = consumer.consume(num_messages=min(count - len(out), 10_000), timeout=0.5)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return out, True
                    raise KafkaException(error)
                if message.offset() >= end:
                    return out, False
                out.append(message)
                if message.offset() == end - 1:
                    return out, False
            if batch:
                quiet_until = time.monotonic() + self.config.timeout_s
        return out, False

    def _dead_letter(self, messages: list[Any], rejected: list[Rejected]) -> str:
        """Writes the rejected messages (raw key, value and headers) to the dead-letter topic
        with headers saying where each came from and why; returns the target's name."""
        from confluent_kafka import Producer

        assert self.config.dead_letter is not None
        target = self.config.dead_letter.topic
        failures: list[str] = []

        def delivered(err: Any, _: Any) -> None:
            if err is not None:
                failures.append(err.str())

        with self._errors():
            producer = Producer(self._settings(producer=True))
            for item in rejected:
                message = messages[item.index]
                headers = list(message.headers() or []) + [
                    ("raysight.reason", item.reason.encode()),
                    ("raysight.source.topic", message.topic().encode()),
                    ("raysight.source.partition", str(message.partition()).encode()),
                    ("raysight.source.offset", str(message.offset()).encode()),
                    ("raysight.source.timestamp", str(message.timestamp()[1]).encode()),
                ]
                producer.produce(target, value=message.value(), key=message.key(),
                                 headers=headers, on_delivery=delivered)
            left = producer.flush(self.config.timeout_s)
        if left or failures:
            raise TransientError(f"{self.where}: {left + len(failures)} malformed messages not "
                                 f"written to dead-letter topic {target!r}: "
                                 f"{failures[0] if failures else 'timed out'}",
                                 source=self.where)
        return f"dead-letter topic {target!r}"

    # -- committing -------------------------------------------------------------------------

    def acknowledge(self, partitions: list[PartitionSpec]) -> None:
        """Commit the group's offsets past the ranges read (never moving one back)."""
        from confluent_kafka import TopicPartition

        if self.config.group_id is None:
            return
        ends = {p.options["partition"]: p.options["end"] for p in partitions
                if p.options.get("partition") is not None}
        if not ends:
            return
        topic = self.config.topic
        with self._client() as consumer, self._errors():
            current = consumer.committed([TopicPartition(topic, p) for p in ends],
                                         timeout=self.config.timeout_s)
            done = {tp.partition: tp.offset for tp in current}
            offsets = [TopicPartition(topic, p, end) for p, end in sorted(ends.items())
                       if end > done.get(p, -1)]
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
        log.info("%s: committed offsets %s for group %s", self.where,
                 {tp.partition: tp.offset for tp in offsets}, self.config.group_id)

    # -- what every step shares -----------------------------------------------------------

    @property
    def _decoder(self) -> PayloadDecoder:
        return PayloadDecoder(self.config.format, self.config.schema_,
                              self.config.confluent_wire_format)

    @property
    def where(self) -> str:
        """The source in messages: ``kafka topic 'events' at host:9092``."""
        return f"kafka topic {self.config.topic!r} at {self.config.bootstrap_servers}"

    @property
    def _start_text(self) -> str:
        start = self.config.start
        return start if isinstance(start, str) else str(start.model_dump(mode="json"))

    def _settings(self, producer: bool = False) -> dict[str, Any]:
        """librdkafka settings, ``${NAME}`` references resolved (here, in the worker)."""
        settings: dict[str, Any] = {}
        for key, value in self.config.config.items():
            try:
                settings[key] = resolve(value) if isinstance(value, str) else value
            except InputError as err:
                name = err.details.get("variable")
                raise InputError(f"{self.where}: config {key!r} refers to ${{{name}}}, which "
                                 "is not set in the environment of the Ray workers",
                                 source=self.where, variable=name) from None
        timeout_ms = int(self.config.timeout_s * 1000)
        settings.update({
            "bootstrap.servers": self.config.bootstrap_servers,
            "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
            "logger": log,
        })
        if producer:
            settings.setdefault("message.timeout.ms", max(1000, timeout_ms))
            return settings
        settings.update({
            # a group without one is still needed to consume; it commits nothing
            "group.id": self.config.group_id or f"raysight-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        })
        return settings

    def _secrets(self) -> list[str]:
        values = []
        for value in self.config.config.values():
            if isinstance(value, str) and "${" in value:
                try:
                    values.append(resolve(value))
                except InputError:
                    pass
        return [v for v in values if v]

    def _errors(self) -> Any:
        return translated_kafka_errors(self.where, self._secrets())

    @contextmanager
    def _client(self) -> Iterator[Any]:
        """A consumer, closed when the block ends (none joins the group: nothing subscribes)."""
        from confluent_kafka import Consumer

        with self._errors():
            consumer = Consumer(self._settings())
        try:
            yield consumer
        finally:
            consumer.close()
