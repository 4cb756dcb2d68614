"""The database connector: checks a source, plans its ranges and reads each into a table."""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import functools
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

from raysight.connectors.database.config import DatabaseSourceConfig
from raysight.connectors.database.errors import translated_errors
from raysight.connectors.database.readonly import read_only_query
from raysight.connectors.database.sql import (
    bounds_query,
    columns_query,
    quote_table,
    range_query,
    split,
)
from raysight.connectors.database.urls import DatabaseUrl, Dialect, parse_url
from raysight.errors import InputError, TransientError, WorkflowError
from raysight.plugins import Connector, PartitionSpec

log = logging.getLogger(__name__)

#: statements that make the session read-only, run before each query where the server has one
_READ_ONLY_SESSION: dict[Dialect, str] = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
}
#: the longest the driver waits for a source's columns before the run (a server that is
#: slower, or a login that connectorx retries for 30 s, leaves the schema unknown)
SCHEMA_TIMEOUT_S = 5.0


class DatabaseConnector(Connector[DatabaseSourceConfig]):
    """Reads a SQLite, PostgreSQL or MySQL/MariaDB query into Arrow tables through connectorx.

    ``PartitionSpec.location`` is the URL with its password masked (or the SQLite file);
    ``PartitionSpec.options["query"]`` the partition's SQL. Neither holds a secret: ``${NAME}``
    references in the URL are resolved in ``plan`` and ``read``, in the Ray worker (and in
    ``schema``, on the driver, only to ask for the columns).
    """

    name = "database"
    Config = DatabaseSourceConfig

    # -- driver ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise InputError for a query that is not read-only, a SQLite file that does not
        exist or a named connection that was not resolved (the URL was parsed with the
        config); connects to nothing."""
        self._require_resolved()
        self.source_query()
        path = self.config.database_path
        if path is not None and not Path(path).is_file():
            raise InputError(f"{self.where}: no such SQLite file", path=path)

    def schema(self) -> pa.Schema | None:
        """The columns a read returns (names and Arrow types), from a zero-row query
        (``LIMIT 0``) sent from the driver; None (unknown: the run finds out) when the URL
        refers to a variable the driver's environment lacks, or the database does not
        answer within ``connect_timeout_s`` (at most :data:`SCHEMA_TIMEOUT_S`), refuses the
        login or the query. So validation never waits long on a server, and never fails
        where the run would retry or report it with its own error."""
        if not self.config.resolved:
            return None
        url = self._url
        if url is not None:
            try:
                url.driver_url(self.config.timeout_s)
            except InputError:  # a ${NAME} set only where the workers run
                return None
        found: dict[str, Any] = {}

        def fetch() -> None:
            try:
                found["schema"] = self._fetch(columns_query(self.source_query())).schema
            except WorkflowError as err:  # its message names the source, masks the password
                found["error"] = err

        # a daemon thread: a login connectorx keeps retrying outlives the wait, not the process
        worker = threading.Thread(target=fetch, name="raysight-db-schema", daemon=True)
        worker.start()
        worker.join(min(self.config.timeout_s, SCHEMA_TIMEOUT_S))
        if "schema" in found:
            schema: pa.Schema = found["schema"]
            return schema
        log.info("the columns of %s are not known before the run: %s", self.where,
                 found.get("error", "no answer in time"))
        return None

    # -- planning -------------------------------------------------------------------------

    def plan(self) -> list[PartitionSpec]:
        """One partition for the whole query, or one per range of ``partition_column`` and
        one for its NULLs."""
        query = self.source_query()
        column = self.config.partition_column
        if column is None:
            return [self._partition("all rows", query)]
        types = self._fetch(columns_query(query)).schema
        if column not in types.names:
            near = difflib.get_close_matches(column, types.names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise InputError(f"{self.where}: partition_column {column!r} is not a column of "
                             f"the source (columns: {', '.join(types.names)}){hint}",
                             column=column, known=types.names)
        kind = types.field(column).type
        if not _splittable(kind):
            raise InputError(f"{self.where}: partition_column {column!r} is {kind}; it must "
                             "be numeric, a date or a timestamp", column=column)
        if self.config.bounds is not None:
            low, high = (_bound(v, kind) for v in self.config.bounds)
        else:
            row = self._fetch(bounds_query(query, column, self.dialect)).to_pylist()[0]
            low, high = (_bound(v, kind) for v in (row["lo"], row["hi"]))
        ranges = split(low, high, self.config.partitions)
        if not ranges:
            return [self._partition("all rows", query)]
        log.debug("planned %d ranges of %s for %s", len(ranges), column, self.where)
        return [self._partition(r.label(column), range_query(query, column, r, self.dialect))
                for r in ranges]

    def _partition(self, label: str, sql: str) -> PartitionSpec:
        return PartitionSpec(label, self.where, 0, {"query": sql})

    # -- reading --------------------------------------------------------------------------

    def read(self, partition: PartitionSpec) -> pa.Table:
        """The partition's rows as an Arrow table."""
        return self._fetch(partition.options["query"])

    def _fetch(self, sql: str) -> pa.Table:
        import connectorx as cx  # heavy (a Rust extension): load it in the workers only

        self._require_resolved()
        url = self._url
        if url is None:
            driver_url, pre = self._sqlite_url(), []
        else:
            try:
                driver_url = url.driver_url(self.config.timeout_s)
            except InputError as err:
                raise InputError(f"{self.where}: {err}", **err.details) from None
            # connectorx's pool retries a refused connection for 30 s: a port that does not
            # answer is found within connect_timeout_s instead
            self._reach(url)
            pre = [_READ_ONLY_SESSION[url.dialect]]
        with translated_errors(self.where, url.secrets() if url is not None else []):
            table: pa.Table = cx.read_sql(driver_url, sql, return_type="arrow",
                                          pre_execution_query=pre or None)
        return table

    def _reach(self, url: DatabaseUrl) -> None:
        try:
            with socket.create_connection((url.host, url.port),
                                          timeout=self.config.timeout_s):
                pass
        except OSError as err:
            raise TransientError(f"{self.where}: cannot connect to {url.host}:{url.port}: "
                                 f"{err.strerror or err}", source=self.where,
                                 host=url.host, port=url.port) from None

    def _sqlite_url(self) -> str:
        path = os.path.abspath(self.config.database_path or "")
        if not os.path.isfile(path):  # connectorx would create an empty database
            raise InputError(f"{self.where}: no such SQLite file", path=path)
        return f"sqlite://{path}"

    def _require_resolved(self) -> None:
        if not self.config.resolved:
            raise InputError(f"database source: connection {self.config.connection!r} was not "
                             "resolved (validate the job spec with its connections: "
                             "parse_graph_spec(data, connections=...))",
                             connection=self.config.connection)

    # -- what every step shares -----------------------------------------------------------

    def source_query(self) -> str:
        """The source's query (checked read-only) or a SELECT of its table."""
        if self.config.table is not None:
            return f"SELECT * FROM {quote_table(self.config.table, self.dialect)}"
        try:
            return read_only_query(self.config.query or "", self.dialect)
        except ValueError as err:
            raise InputError(f"{self.where}: {err}") from None

    @functools.cached_property
    def _url(self) -> DatabaseUrl | None:
        # parsed once (its ${...} references unresolved: pickling it ships no value of the
        # environment; a literal password of a connections file travels only pickled)
        url = self.config.database_url
        return None if url is None else parse_url(url)

    @property
    def dialect(self) -> Dialect:
        url = self._url
        return "sqlite" if url is None else url.dialect

    @property
    def where(self) -> str:
        """The source in messages: ``database postgresql://me:***@host:5432/db`` (and the
        connection's name: ``database 'warehouse' (postgresql://...)``)."""
        url = self._url
        place = url.shown if url is not None else f"sqlite {self.config.database_path}"
        name = self.config.connection
        return f"database {place}" if name is None else f"database {name!r} ({place})"


def _splittable(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind) or pa.types.is_date(kind)
            or pa.types.is_timestamp(kind))


def _bound(value: Any, kind: pa.DataType) -> Any:
    """A bound as a value of the column's type (SQLite's min/max of a date is its text; a
    spec's integer bound of a float column is a float)."""
    if value is None:
        return None
    try:
        if pa.types.is_date(kind):
            if isinstance(value, dt.datetime):
                return value.date()
            return dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
        if pa.types.is_timestamp(kind):
            return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if pa.types.is_integer(kind):
            return int(value)
        if pa.types.is_decimal(kind):
            return decimal.Decimal(str(value))
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"bound {value!r} is not a value of the partition column's type "
                         f"{kind}") from None
