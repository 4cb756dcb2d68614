"""What a database source says: where the database is, what to read, how to split it."""

from __future__ import annotations

import datetime as dt
import os
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from raysight.connections import Connection, lookup
from raysight.connectors.database.urls import parse_url
from raysight.plugins import PluginConfig

#: a partition bound as a spec holds it (a date in YAML, an ISO string in JSON)
Bound = int | float | dt.datetime | dt.date | str


class DatabaseLocation(PluginConfig):
    """Where a database is: a server ``url``, a SQLite ``path`` or a named ``connection``
    (exactly one), shared by database sources and sinks.

    ``${NAME}`` references in a URL are read from the environment only where a connection
    is made. A named connection is resolved while the spec is validated; the config keeps
    the name, and carries the connection's URL as written, never in a dump or a repr.
    """

    url: str | None = Field(default=None, min_length=1)
    path: str | None = Field(default=None, min_length=1)
    connection: str | None = Field(default=None, min_length=1,
                                   description="a named connection (the spec's `connections:` "
                                               "or a connections file) instead of url/path")
    #: seconds to wait for the server's TCP port (and, where the driver allows, the login)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    #: the named connection, resolved while the spec was validated (pickled to the workers
    #: with the config; not a field, so no dump, repr or spec.json shows it)
    _connection: Connection | None = PrivateAttr(default=None)

    @field_validator("connection")
    @classmethod
    def _known_connection(cls, name: str | None, info: ValidationInfo) -> str | None:
        if name is not None:
            lookup(name, info)  # a ValueError names the known connections
        return name

    @model_validator(mode="after")
    def _one_place(self, info: ValidationInfo) -> DatabaseLocation:
        if sum(v is not None for v in (self.url, self.path, self.connection)) != 1:
            raise ValueError("give exactly one of `url` (a server database), `path` "
                             "(a SQLite file) or `connection` (a named connection)")
        if self.url is not None:
            parse_url(self.url)  # a ValueError names what is wrong with it
        if self.connection is not None:
            self._resolve(lookup(self.connection, info))
        return self

    def _resolve(self, connection: Connection | None) -> None:
        if connection is None:  # validated without connections, or the connection is invalid
            return
        if connection.url is not None:
            try:
                parse_url(connection.url)
            except ValueError as err:
                raise ValueError(f"connections.{self.connection}.url (in {connection.origin})"
                                 f": {err}") from None
        elif connection.path is not None and not os.path.isabs(connection.path):
            connection = connection.model_copy(update={"path": os.path.abspath(connection.path)})
        self._connection = connection

    # -- where the database is, from the config or its connection ---------------------------

    @property
    def resolved(self) -> bool:
        """Whether the config says where its database is (a named connection is resolved
        when the spec is validated with its connections)."""
        return self.connection is None or self._connection is not None

    @property
    def database_url(self) -> str | None:
        """The server database's URL as written (``${NAME}`` references unresolved)."""
        return self._connection.url if self._connection is not None else self.url

    @property
    def database_path(self) -> str | None:
        """The SQLite file."""
        return self._connection.path if self._connection is not None else self.path

    @property
    def timeout_s(self) -> float:
        """``connect_timeout_s``: the config's own, else its connection's, else 5 s."""
        if (self._connection is not None and "connect_timeout_s" not in self.model_fields_set
                and self._connection.connect_timeout_s is not None):
            return self._connection.connect_timeout_s
        return self.connect_timeout_s


class DatabaseSourceConfig(DatabaseLocation):
    """A query or a table of SQLite, PostgreSQL or MySQL/MariaDB.

    ``url`` names a server database (``postgresql://user:${PG_PASSWORD}@host:5432/db``,
    ``mysql://`` or ``mariadb://``); ``${NAME}`` references are read from the environment
    only when a Ray worker connects, so a secret never enters the spec. ``path`` names a
    SQLite file instead (a relative path resolves on the driver). ``connection`` names a
    connection of the spec's ``connections:`` section or of the connections file instead
    (:mod:`raysight.connections`): the spec keeps the name, the config carries that
    connection's URL as written (references unresolved) to the workers, never in a dump or
    a repr.

    ``partition_column`` (numeric, date or timestamp) splits the read into ``partitions``
    ranges between ``bounds`` (by default the column's min and max, read in ``plan``); the
    first and last ranges are open-ended and one more partition holds the column's NULLs, so
    bounds only set the ranges' width and no row is lost.
    """

    type: Literal["database"] = "database"
    query: str | None = Field(default=None, min_length=1)
    #: a table name, quoted by the connector; ``schema.table`` names a table of a schema
    table: str | None = Field(default=None, min_length=1)
    partition_column: str | None = Field(default=None, min_length=1)
    partitions: int = Field(default=4, ge=1, le=10_000)
    bounds: list[Bound] | None = Field(default=None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _one_of_each(self) -> DatabaseSourceConfig:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of `query` or `table`")
        # the default, as a dump of the config (spec.json) holds it, is no setting of its own
        default = type(self).model_fields["partitions"].default
        if self.partition_column is None and (self.bounds is not None
                                              or self.partitions != default):
            raise ValueError("`partitions` and `bounds` need a `partition_column`")
        return self
