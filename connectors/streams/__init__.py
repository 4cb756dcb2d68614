"""Streams (Kafka, Redis Streams) read as bounded tables: at most ``max_messages``, from a
start position, payloads (JSON or Avro) decoded into Arrow with a declared or inferred schema.

``plan`` fixes the range read (per Kafka partition, offsets ``[start, end)``; for a Redis
stream, entry ids up to the last one present), so a retried read and a resumed job read the
same messages. Consumer positions (Kafka group offsets, a Redis group's last-delivered id)
move only once the job succeeded, through :meth:`~raysight.plugins.Connector.acknowledge`:
a job that fails reads the same messages next time. A malformed message fails the read
(``on_malformed: fail``), is skipped and reported as a job warning (``skip``), or is written
raw, with its reason, to a dead-letter topic or stream (``dead_letter``).

The package's modules, one concept each: :mod:`.config` (the sources' settings),
:mod:`.schema` (declared and Avro schemas as Arrow), :mod:`.decode` (payloads to a table),
:mod:`.ranges` (the bounded range), :mod:`.errors` (the malformed policy, client errors),
:mod:`.kafka` and :mod:`.redis_stream` (the connectors).

Example::

    >>> from raysight.connectors.streams import KafkaConnector, KafkaSourceConfig
    >>> conn = KafkaConnector(KafkaSourceConfig(                             # doctest: +SKIP
    ...     bootstrap_servers="127.0.0.1:9092", topic="events", group_id="analytics",
    ...     max_messages=1000, schema={"id": "int64", "at": "timestamp[us, UTC]"}))
    >>> [p.label for p in conn.plan()]                                       # doctest: +SKIP
    ['events[0] offsets 0-499', 'events[1] offsets 0-499']
"""

from raysight.connectors.streams.config import KafkaSourceConfig, RedisStreamSourceConfig
from raysight.connectors.streams.kafka import KafkaConnector
from raysight.connectors.streams.redis_stream import RedisStreamConnector

__all__ = ["KafkaConnector", "KafkaSourceConfig", "RedisStreamConnector",
           "RedisStreamSourceConfig"]
