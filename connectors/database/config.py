"""What a database source says: where the database is, what to read, how to split it."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from raysight.connectors.database.urls import parse_url
from raysight.plugins import PluginConfig

#: a partition bound as a spec holds it (a date in YAML, an ISO string in JSON)
Bound = int | float | dt.datetime | dt.date | str


class DatabaseSourceConfig(PluginConfig):
    """A query or a table of SQLite, PostgreSQL or MySQL/MariaDB.

    ``url`` names a server database (``postgresql://user:${PG_PASSWORD}@host:5432/db``,
    ``mysql://`` or ``mariadb://``); ``${NAME}`` references are read from the environment
    only when a Ray worker connects, so a secret never enters the spec. ``path`` names a
    SQLite file instead (a relative path resolves on the driver).

    ``partition_column`` (numeric, date or timestamp) splits the read into ``partitions``
    ranges between ``bounds`` (by default the column's min and max, read in ``plan``); the
    first and last ranges are open-ended and one more partition holds the column's NULLs, so
    bounds only set the ranges' width and no row is lost.
    """

    type: Literal["database"] = "database"
    url: str | None = Field(default=None, min_length=1)
    path: str | None = Field(default=None, min_length=1)
    query: str | None = Field(default=None, min_length=1)
    #: a table name, quoted by the connector; ``schema.table`` names a table of a schema
    table: str | None = Field(default=None, min_length=1)
    partition_column: str | None = Field(default=None, min_length=1)
    partitions: int = Field(default=4, ge=1, le=10_000)
    bounds: list[Bound] | None = Field(default=None, min_length=2, max_length=2)
    #: seconds to wait for the server's TCP port (and, where the driver allows, the login)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _one_of_each(self) -> DatabaseSourceConfig:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` (a server database) or `path` "
                             "(a SQLite file)")
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of `query` or `table`")
        if self.partition_column is None and (self.bounds is not None
                                              or "partitions" in self.model_fields_set):
            raise ValueError("`partitions` and `bounds` need a `partition_column`")
        if self.url is not None:
            parse_url(self.url)  # a ValueError names what is wrong with it
        return self
