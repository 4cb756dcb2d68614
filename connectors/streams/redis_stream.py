"""The Redis Streams connector: fixes the entry ids read in ``plan`` (after a start id, up to
the stream's last entry then, at most ``max_messages``), reads them with XRANGE in one Ray
task, and moves the consumer ``group``'s last-delivered id past them only once the job
succeeded (:meth:`RedisStreamConnector.acknowledge`).

Why XRANGE and XGROUP SETID rather than XREADGROUP and XACK: XREADGROUP moves the group's
last-delivered id when it reads, so a failed job would leave its entries delivered (pending,
to be claimed back); reading by id and setting the group's id after success leaves a failed
job's entries where the next run reads them, and needs no pending-entries bookkeeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from raysight.connectors.database.urls import redact, resolve
from raysight.connectors.streams.config import IdStart, RedisStreamSourceConfig, TimestampStart
from raysight.connectors.streams.decode import Decoded, PayloadDecoder, Rejected, Undecodable
from raysight.connectors.streams.errors import MalformedMessage, handle_malformed
from raysight.errors import InputError, TransientError, WorkflowError
from raysight.plugins import Connector, PartitionSpec, with_warnings

log = logging.getLogger(__name__)

_WAIT_POLL_S = 0.2
_PAGE = 1000


def entry_id(text: str | bytes) -> tuple[int, int]:
    """A stream entry id as a comparable pair (``"1700000000000-3"`` -> ``(1700000000000, 3)``)."""
    if isinstance(text, bytes):
        text = text.decode()
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisStreamConnector(Connector[RedisStreamSourceConfig]):
    """Reads a bounded range of a Redis stream in one Ray task.

    ``PartitionSpec.options``: ``after`` (exclusive) and ``last`` (inclusive) entry ids and
    ``count``, the most entries read.
    """

    name = "redis_stream"
    Config = RedisStreamSourceConfig

    # -- planning -------------------------------------------------------------------------

    def plan(self) -> list[PartitionSpec]:
        """The one range of entries to read (streams are not partitioned)."""
        config = self.config
        with self._client() as client:
            info = self._info(client)
            after = self._after(client, info)
            deadline = time.monotonic() + config.max_wait_s
            added = int(info.get("entries-added", 0) or 0)
            while (time.monotonic() < deadline
                   and int(info.get("entries-added", 0) or 0) - added < config.max_messages
                   and (config.start == "latest" or _last(info) <= entry_id(after))):
                time.sleep(_WAIT_POLL_S)
                info = self._info(client)
        last = info.get("last-generated-id") or b"0-0"
        if entry_id(last) <= entry_id(after):
            if self._decoder.arrow_schema is None and not config.fields_as_columns:
                raise InputError(f"{self.where}: no entries to read after {after}; declare "
                                 "the `schema` to load an empty table", source=self.where)
            return [PartitionSpec("no entries", self.where, 0, {"after": None})]
        text = last.decode() if isinstance(last, bytes) else str(last)
        return [PartitionSpec(f"{config.stream} after {after} to {text}", self.where, 0,
                              {"after": after, "last": text, "count": config.max_messages})]

    def _info(self, client: Any) -> dict[str, Any]:
        import redis

        try:
            info: dict[str, Any] = client.xinfo_stream(self.config.stream)
        except redis.ResponseError as err:
            if "no such key" in str(err).lower() and self.config.max_wait_s > 0:
                return {}
            raise InputError(f"{self.where}: no such stream ({err})",
                             source=self.where) from None
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in info.items()}

    def _after(self, client: Any, info: dict[str, Any]) -> str:
        """The id the read starts after (exclusive)."""
        start = self.config.start
        if isinstance(start, IdStart):
            return start.id
        if isinstance(start, TimestampStart):
            ms = start.epoch_ms
            return f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0-0"
        delivered = self._delivered(client)
        if delivered is not None:
            return delivered
        if start == "earliest":
            return "0-0"
        last = info.get("last-generated-id") or b"0-0"
        return last.decode() if isinstance(last, bytes) else str(last)

    def _delivered(self, client: Any) -> str | None:
        """The group's last-delivered id, None without a group (or before its first run)."""
        import redis

        if self.config.group is None:
            return None
        try:
            groups = client.xinfo_groups(self.config.stream)
        except redis.ResponseError:
            return None
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.config.group:
                last = group["last-delivered-id"]
                return last.decode() if isinstance(last, bytes) else str(last)
        return None

    # -- reading --------------------------------------------------------------------------

    def read(self, partition: PartitionSpec) -> pa.Table:
        """The range's entries, decoded (malformed ones per ``on_malformed``)."""
        opts = partition.options
        decoder = self._decoder
        if opts["after"] is None:
            schema = decoder.arrow_schema
            return pa.table({}) if schema is None else schema.empty_table()
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        with self._client() as client:
            low = "(" + opts["after"]
            while len(entries) < opts["count"]:
                page = client.xrange(self.config.stream, low, opts["last"],
                                     count=min(_PAGE, opts["count"] - len(entries)))
                if not page:
                    break
                entries += page
                low = "(" + page[-1][0].decode()
        field = self.config.field.encode()
        try:
            decoded: Decoded = (decoder.decode_fields([e for _, e in entries])
                                if self.config.fields_as_columns
                                else decoder.decode([e.get(field) for _, e in entries]))
        except Undecodable as err:
            raise MalformedMessage(f"{self.where}: entries after {opts['after']}: {err}",
                                   source=self.where) from None
        warnings = handle_malformed(
            decoded.rejected, self.config.on_malformed, self.where,
            lambda i: f"entry {entries[i][0].decode()}",
            lambda rejected: self._dead_letter(entries, rejected))
        return with_warnings(decoded.table, warnings)

    def _dead_letter(self, entries: list[tuple[bytes, dict[bytes, bytes]]],
                     rejected: list[Rejected]) -> str:
        """XADDs each rejected entry's fields, with where it came from and why."""
        assert self.config.dead_letter is not None
        target = self.config.dead_letter.stream
        with self._client() as client:
            pipe = client.pipeline(transaction=False)
            for item in rejected:
                ident, fields = entries[item.index]
                pipe.xadd(target, {**fields, b"raysight.reason": item.reason.encode(),
                                   b"raysight.source.stream": self.config.stream.encode(),
                                   b"raysight.source.id": ident})
            pipe.execute()
        return f"dead-letter stream {target!r}"

    # -- committing -------------------------------------------------------------------------

    def acknowledge(self, partitions: list[PartitionSpec]) -> None:
        """Set the group's last-delivered id to the last entry read (creating the group;
        never moving it back)."""
        import redis

        group = self.config.group
        lasts = [p.options["last"] for p in partitions if p.options.get("after") is not None]
        if group is None or not lasts:
            return
        last = max(lasts, key=entry_id)
        with self._client() as client:
            delivered = self._delivered(client)
            if delivered is None:
                try:
                    client.xgroup_create(self.config.stream, group, id=last)
                    return
                except redis.ResponseError as err:  # created meanwhile
                    if "BUSYGROUP" not in str(err):
                        raise
                delivered = self._delivered(client)
            if delivered is None or entry_id(last) > entry_id(delivered):
                client.xgroup_setid(self.config.stream, group, id=last)
        log.info("%s: group %s delivered up to %s", self.where, group, last)

    # -- what every step shares -----------------------------------------------------------

    @property
    def _decoder(self) -> PayloadDecoder:
        return PayloadDecoder(self.config.format, self.config.schema_,
                              missing=f"the entry has no field {self.config.field!r}")

    @property
    def where(self) -> str:
        """The source in messages: ``redis stream 'events' at redis://:***@host:6379/0``."""
        return f"redis stream {self.config.stream!r} at {redact(self.config.url, [])}"

    @contextmanager
    def _client(self) -> Iterator[Any]:
        """A client of the server (``${NAME}`` resolved here, in the worker), its errors
        translated: a server that cannot be reached is a TransientError."""
        import redis

        try:
            url = resolve(self.config.url)
        except InputError as err:
            raise InputError(f"{self.where}: the URL refers to ${{{err.details.get('variable')}}}"
                             ", which is not set in the environment of the Ray workers",
                             source=self.where) from None
        timeout = self.config.timeout_s
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                      socket_timeout=timeout + 1)
        try:
            yield client
        except WorkflowError:
            raise
        except redis.AuthenticationError as err:  # a ConnectionError too: caught first
            raise InputError(f"{self.where}: the server refused the login: {err}",
                             source=self.where) from None
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise TransientError(f"{self.where}: cannot reach the server: "
                                 f"{redact(str(err), [url])}", source=self.where) from None
        except redis.ResponseError as err:
            raise InputError(f"{self.where}: {redact(str(err), [url])}",
                             source=self.where) from None
        finally:
            client.close()


def _last(info: dict[str, Any]) -> tuple[int, int]:
    return entry_id(info.get("last-generated-id") or b"0-0")
