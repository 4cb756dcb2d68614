"""The database sink: a result or dataset written to a table of PostgreSQL, MySQL/MariaDB or
SQLite when the job has succeeded, in one transaction.

Example (YAML)::

    exports:
      - {format: database, from: by_region, connection: warehouse,
         table: sales_summary, mode: replace}
      - {format: database, from: cleaned, path: out/analytics.sqlite, table: orders,
         mode: append}

``mode``: ``create`` makes a new table (an error when it exists), ``append`` adds the rows
to an existing table whose columns take them, ``replace`` swaps the table for a new one of
the result's columns and rows. Column types follow the result's Arrow types
(:mod:`.sqltypes`); how each database keeps the write atomic is told in :mod:`.writes`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import sqlite3
from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator

from raysight.connectors.database.config import DatabaseLocation
from raysight.connectors.database.errors import translated_errors
from raysight.connectors.database.sql import quote_table
from raysight.connectors.database.urls import DatabaseUrl, Dialect, parse_url, resolve
from raysight.errors import InputError, TransientError
from raysight.exporters.sinks import sqltypes, writes
from raysight.plugins import PreparedWrite, Sink

#: a table name: ``name`` or ``schema.name``, each part an unquoted SQL identifier
#: seconds a write waits for a lock on its table (held by another session, or by another
#: sink of the job writing the same table) before it fails
LOCK_TIMEOUT_S = 30
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?")


class DatabaseSinkConfig(DatabaseLocation):
    """``{format: database, from, url | path | connection, table, mode}``.

    ``url`` (``postgresql://``, ``mysql://``, ``mariadb://``; ``${NAME}`` references resolved
    only where the job commits), ``path`` (a SQLite file, created when missing; a relative
    path resolves where the job runs) or ``connection`` (a named connection) says where the
    database is.
    """

    format: Literal["database"] = "database"
    table: str = Field(min_length=1, description="the table: name or schema.name")
    mode: Literal["create", "append", "replace"] = Field(
        default="create", description="create: a new table (error if it exists); append: add "
        "the rows to an existing table; replace: swap the table for the result")

    @field_validator("table")
    @classmethod
    def _a_table_name(cls, value: str) -> str:
        if not TABLE_NAME.fullmatch(value):
            raise ValueError(f"bad table name {value!r}: use letters, digits, '_' and '$', "
                             "starting with a letter or '_' (schema.table for a schema)")
        return value


class DatabaseSink(Sink[DatabaseSinkConfig]):
    """Writes the rows to a database table when the job commits (see :mod:`.writes`)."""

    name = "database"
    Config = DatabaseSinkConfig

    def describe(self) -> str:
        place = self._url.shown if self._url is not None else f"sqlite {self._path}"
        name = self.config.connection
        where = f"database {name!r}" if name is not None else f"database {place}"
        return f"{where}, table {self.config.table}"

    def problem(self, schema: pa.Schema) -> str | None:
        return sqltypes.schema_problem(schema, self.dialect)

    def prepare(self, staged: str) -> PreparedWrite:
        if not self.config.resolved:
            raise InputError(f"connection {self.config.connection!r} was not resolved "
                             "(validate the job spec with its connections)")
        url = self._url
        if url is None:
            return self._sqlite(staged)
        self._reach(url)
        with translated_errors(f"table {self.config.table}", url.secrets(), (Exception,),
                               action="the write"):
            return self._postgres(url, staged) if url.dialect == "postgresql" \
                else self._mysql(url, staged)

    # -- per dialect ------------------------------------------------------------------------

    def _postgres(self, url: DatabaseUrl, staged: str) -> PreparedWrite:
        import psycopg

        conn = psycopg.connect(url.driver_url(self.config.timeout_s))
        try:
            with conn.cursor() as cur:
                # a lock another session (or another sink of the job) holds fails the write
                # instead of waiting for ever
                cur.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
                table, schema = self.config.table, writes.schema_of(staged)
                self._check(schema, writes.postgres_columns(cur, table))
                if self.config.mode == "replace":
                    cur.execute(f"DROP TABLE IF EXISTS {quote_table(table, 'postgresql')}")
                if self.config.mode != "append":
                    cur.execute(writes.create_sql(table, schema, "postgresql",
                                                  self._types(schema)))
                writes.postgres_load(cur, table, staged)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                conn.rollback()
            conn.close()
            raise
        return writes.OpenTransaction(conn)

    def _mysql(self, url: DatabaseUrl, staged: str) -> PreparedWrite:
        import pymysql

        conn = pymysql.connect(
            host=resolve(url.host), port=url.port, user=resolve(url.user),
            password=resolve(url.password) if url.password is not None else "",
            database=resolve(url.database), charset="utf8mb4", local_infile=True,
            connect_timeout=max(1, round(self.config.timeout_s)), autocommit=False)
        stage = None
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
                cur.execute(f"SET SESSION lock_wait_timeout = {LOCK_TIMEOUT_S}")
                table, schema = self.config.table, writes.schema_of(staged)
                self._check(schema, writes.mysql_columns(cur, table))
                if self.config.mode == "append":
                    writes.mysql_load(cur, table, staged)
                    return writes.OpenTransaction(conn)
                stage = writes.staging_name(table)
                cur.execute(writes.create_sql(stage, schema, "mysql", self._types(schema)))
                writes.mysql_load(cur, stage, staged)
            return writes.MysqlRename(conn, stage, table, self.config.mode == "replace")
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                conn.rollback()
                if stage is not None:
                    with conn.cursor() as cur:
                        cur.execute(f"DROP TABLE IF EXISTS {quote_table(stage, 'mysql')}")
            with contextlib.suppress(Exception):
                conn.close()
            raise

    def _sqlite(self, staged: str) -> PreparedWrite:
        path = self._path
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            raise InputError(f"{self.describe()}: no such folder {folder}", path=path)
        with translated_errors(f"table {self.config.table}", [], (sqlite3.Error,),
                               action="the write"):
            conn = writes.sqlite_transaction(path, self.config.timeout_s)
            try:
                table, schema = self.config.table, writes.schema_of(staged)
                self._check(schema, writes.sqlite_columns(conn, table))
                if self.config.mode == "replace":
                    conn.execute(f"DROP TABLE IF EXISTS {quote_table(table, 'sqlite')}")
                if self.config.mode != "append":
                    conn.execute(writes.create_sql(table, schema, "sqlite",
                                                   self._types(schema)))
                writes.sqlite_load(conn, table, staged)
            except BaseException:
                writes.sqlite_end(path, conn, "ROLLBACK")
                raise
        return writes.SqliteWrite(path, conn)

    # -- shared -----------------------------------------------------------------------------

    def _check(self, schema: pa.Schema, columns: dict[str, str] | None) -> None:
        """InputError when the mode does not fit the table as it is now."""
        table, mode = self.config.table, self.config.mode
        if mode == "create" and columns is not None:
            raise InputError(f"table {table} already exists (mode create makes a new table; "
                             "use mode append or replace)", table=table)
        if mode == "append":
            if columns is None:
                raise InputError(f"table {table} does not exist (mode append adds to an "
                                 "existing table; use mode create)", table=table)
            problem = sqltypes.append_problem(schema, table, columns)
            if problem:
                raise InputError(problem, table=table)

    def _types(self, schema: pa.Schema) -> list[str]:
        types = [sqltypes.column_type(f.type, self.dialect) for f in schema]
        problem = sqltypes.schema_problem(schema, self.dialect)
        if problem:
            raise InputError(problem)
        return [t for t in types if t is not None]

    def _reach(self, url: DatabaseUrl) -> None:
        """TransientError, within ``connect_timeout_s``, for a server that does not answer."""
        host = resolve(url.host)
        try:
            with socket.create_connection((host, url.port), timeout=self.config.timeout_s):
                pass
        except OSError as err:
            raise TransientError(f"cannot connect to {host}:{url.port}: "
                                 f"{err.strerror or err}", host=host, port=url.port) from None

    @functools.cached_property
    def _url(self) -> DatabaseUrl | None:
        url = self.config.database_url
        return None if url is None else parse_url(url)

    @property
    def _path(self) -> str:
        return os.path.abspath(self.config.database_path or "")

    @property
    def dialect(self) -> Dialect:
        url = self._url
        return "sqlite" if url is None else url.dialect
