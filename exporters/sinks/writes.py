"""A database sink's write per dialect, prepared in a transaction and committed by the job.

Rows are read from the staged Parquet file in batches and sent in bulk, never row by row
through Python: PostgreSQL by ``COPY ... FROM STDIN`` of CSV that Polars writes, MySQL and
MariaDB by ``LOAD DATA LOCAL INFILE`` of such a file, SQLite by ``executemany``. Measured on
1e5 rows of six types (ints, unicode text, decimals, floats, zoned timestamps, bytes) on
loopback servers: PostgreSQL COPY 0.17 s (ADBC's ``adbc_ingest`` 0.18 s), MariaDB LOAD DATA
0.31 s (pymysql ``executemany`` 1.29 s), SQLite ``executemany`` 0.22 s (ADBC 0.14 s); ADBC
is no faster for the servers and two more native packages, and the standard library's
sqlite3 is fast enough.

What each mode does, and where it is atomic:

- PostgreSQL and SQLite have transactional DDL: ``prepare`` runs ``CREATE TABLE`` (create),
  ``DROP TABLE`` + ``CREATE TABLE`` (replace) or nothing (append), loads the rows, and
  leaves the transaction open; ``commit`` commits it, ``rollback`` rolls it back. Readers see
  the table as it was until the commit, then the new one.
- MySQL/MariaDB commit DDL implicitly, so create and replace load a staging table
  (``_raysight_<hex>`` beside the target) in ``prepare``; ``commit`` renames it into place in
  one ``RENAME TABLE`` (replace: the old table is renamed away in the same statement, then
  dropped), ``rollback`` drops it. Append loads into the target in an open transaction
  (InnoDB; a non-transactional engine such as MyISAM cannot roll back). A crash between
  prepare and commit can leave a ``_raysight_`` staging table behind, never a half-written
  target.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from raysight.connectors.database.sql import quote_identifier, quote_table
from raysight.connectors.database.urls import Dialect
from raysight.errors import InputError
from raysight.plugins import PreparedWrite

log = logging.getLogger(__name__)

#: rows per batch read from the staged file and sent
BATCH_ROWS = 100_000


def batches(staged: str) -> Iterator[pa.Table]:
    """The staged rows, a batch at a time (bounded memory for a large result)."""
    parquet = pq.ParquetFile(staged)
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
        yield pa.Table.from_batches([batch])


def schema_of(staged: str) -> pa.Schema:
    return pq.read_schema(staged)


def text_columns(table: pa.Table, dialect: Dialect) -> pl.DataFrame:
    """The rows with each value as the dialect's bulk loader reads it: bytes as hex (``\\x``
    first for PostgreSQL), timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` (zoned ones with
    their offset for PostgreSQL, in UTC for the others), booleans as 0/1 for MySQL."""
    frame = pl.DataFrame(table)
    exprs = []
    for i, (name, dtype) in enumerate(frame.schema.items()):
        col = pl.nth(i)  # by position: a name such as "^a$" would be read as a regex
        if dtype == pl.Binary and dialect != "sqlite":  # sqlite3 binds bytes as BLOBs
            hexed = col.bin.encode("hex")
            col = pl.concat_str(pl.lit("\\x"), hexed) if dialect == "postgresql" else hexed
        elif isinstance(dtype, pl.Datetime):
            if dtype.time_zone and dialect != "postgresql":  # kept in UTC, as readers expect
                col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            zone = "%:z" if dtype.time_zone and dialect == "postgresql" else ""
            col = col.dt.to_string(f"%Y-%m-%d %H:%M:%S%.6f{zone}")
        elif isinstance(dtype, pl.Date):
            col = col.dt.to_string("%Y-%m-%d")
        elif isinstance(dtype, pl.Time):
            col = col.dt.to_string("%H:%M:%S%.6f")
        elif dtype == pl.Boolean and dialect == "mysql":
            col = col.cast(pl.Int8)
        elif isinstance(dtype, pl.Decimal) and dialect == "sqlite":
            col = col.cast(pl.String)
        elif dtype == pl.Null:
            col = col.cast(pl.String)
        exprs.append(col.alias(name))
    return frame.select(exprs)


def create_sql(table: str, schema: pa.Schema, dialect: Dialect, types: list[str]) -> str:
    columns = ", ".join(f"{quote_identifier(f.name, dialect)} {t}"
                        for f, t in zip(schema, types, strict=True))
    suffix = " CHARACTER SET utf8mb4" if dialect == "mysql" else ""
    return f"CREATE TABLE {quote_table(table, dialect)} ({columns}){suffix}"


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


# ---------------------------------------------------------------------------------------------
# PostgreSQL


class OpenTransaction(PreparedWrite):
    """Rows loaded in a transaction still open on ``conn`` (a psycopg COPY, a MySQL append
    into an InnoDB table), committed or rolled back with the job."""

    transactional = True

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def commit(self) -> None:
        try:
            self.conn.commit()
        finally:
            self.conn.close()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        finally:
            self.conn.close()


def postgres_columns(cur: Any, table: str) -> dict[str, str] | None:
    """The table's columns (name -> type), or None when there is no such table."""
    schema, name = _split(table)
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (quote_table(table, "postgresql"),))
    if not cur.fetchone()[0]:
        return None
    cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = COALESCE(%s, current_schema()) AND table_name = %s "
                "ORDER BY ordinal_position", (schema, name))
    return dict(cur.fetchall())


def postgres_load(cur: Any, table: str, staged: str) -> None:
    names = ", ".join(quote_identifier(n, "postgresql") for n in schema_of(staged).names)
    with cur.copy(f"COPY {quote_table(table, 'postgresql')} ({names}) FROM STDIN "
                  "(FORMAT csv)") as copy:
        for batch in batches(staged):
            copy.write(text_columns(batch, "postgresql").write_csv(
                include_header=False, quote_style="non_numeric", null_value=""))


# ---------------------------------------------------------------------------------------------
# MySQL / MariaDB


class MysqlRename(PreparedWrite):
    """A loaded staging table, renamed into place at commit (create, replace)."""

    transactional = True

    def __init__(self, conn: Any, stage: str, target: str, replace: bool) -> None:
        self.conn, self.stage, self.target, self.replace = conn, stage, target, replace

    def commit(self) -> None:
        stage, target = quote_table(self.stage, "mysql"), quote_table(self.target, "mysql")
        try:
            with self.conn.cursor() as cur:
                if self.replace and mysql_columns(cur, self.target) is not None:
                    old = quote_table(staging_name(self.target), "mysql")
                    cur.execute(f"RENAME TABLE {target} TO {old}, {stage} TO {target}")
                    try:  # the write is done: the old table left behind is only litter
                        cur.execute(f"DROP TABLE {old}")
                    except Exception as exc:  # noqa: BLE001
                        log.warning("replaced %s, but could not drop its old rows (%s): %s",
                                    self.target, old, exc)
                else:
                    cur.execute(f"RENAME TABLE {stage} TO {target}")
        finally:
            self.conn.close()

    def rollback(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {quote_table(self.stage, 'mysql')}")
        finally:
            self.conn.close()


def staging_name(table: str) -> str:
    """A fresh table name beside ``table`` (same schema) for staging or swapping."""
    schema, _ = _split(table)
    name = f"_raysight_{uuid.uuid4().hex[:12]}"
    return f"{schema}.{name}" if schema else name


def mysql_columns(cur: Any, table: str) -> dict[str, str] | None:
    schema, name = _split(table)
    cur.execute("SELECT column_name, column_type FROM information_schema.columns "
                "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s "
                "ORDER BY ordinal_position", (schema, name))
    rows = cur.fetchall()
    return {r[0]: r[1] for r in rows} if rows else None


def mysql_load(cur: Any, table: str, staged: str) -> None:
    """``LOAD DATA LOCAL INFILE`` of the staged rows as CSV (written beside the staged
    file); bytes travel as hex and are unhexed by the server."""
    schema = schema_of(staged)
    csv = staged + ".csv"
    try:
        with open(csv, "wb") as f:
            for batch in batches(staged):
                text_columns(batch, "mysql").write_csv(
                    f, include_header=False, quote_style="non_numeric", null_value="NULL")
        targets, sets = [], []
        for i, field in enumerate(schema):
            column = quote_identifier(field.name, "mysql")
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type) \
                    or pa.types.is_binary_view(field.type):
                targets.append(f"@c{i}")
                sets.append(f"{column} = UNHEX(@c{i})")
            else:
                targets.append(column)
        path = csv.replace("\\", "\\\\").replace("'", "\\'")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {quote_table(table, 'mysql')} "
                    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
                    "ESCAPED BY '' LINES TERMINATED BY '\\n' "
                    f"({', '.join(targets)})" + (f" SET {', '.join(sets)}" if sets else ""))
        # LOAD DATA LOCAL turns a value a column cannot take into a warning, even in strict
        # mode (the server cannot stop the client's upload), so they are read back
        warnings = [w for w in cur.connection.show_warnings() if w[0] != "Note"]
        if warnings:  # a value the column could not take exactly (strict mode off)
            raise InputError(f"the rows do not fit table {table}: {warnings[0][2]}"
                             + (f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""))
    finally:
        if os.path.exists(csv):
            os.remove(csv)


# ---------------------------------------------------------------------------------------------
# SQLite


#: the open write transaction of each SQLite file in this process: a file has one writer at
#: a time, so every sink of a job that writes to the file shares its transaction
_OPEN: dict[str, sqlite3.Connection] = {}


def sqlite_transaction(path: str, timeout_s: float) -> sqlite3.Connection:
    """The open write transaction on ``path`` (begun here, or by another sink of the job)."""
    conn = _OPEN.get(path)
    if conn is not None and conn.in_transaction:
        return conn
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    _OPEN[path] = conn
    return conn


def sqlite_end(path: str, conn: sqlite3.Connection, sql: str) -> None:
    """COMMIT or ROLLBACK the file's transaction, unless a sink sharing it already did."""
    try:
        if conn.in_transaction:
            conn.execute(sql)
    finally:
        conn.close()
        if _OPEN.get(path) is conn:
            del _OPEN[path]


class SqliteWrite(PreparedWrite):
    """Rows inserted in the open transaction (``BEGIN IMMEDIATE``) of a SQLite file; sinks
    to one file commit (or roll back) together."""

    transactional = True

    def __init__(self, path: str, conn: sqlite3.Connection) -> None:
        self.path, self.conn = path, conn

    def commit(self) -> None:
        sqlite_end(self.path, self.conn, "COMMIT")

    def rollback(self) -> None:
        sqlite_end(self.path, self.conn, "ROLLBACK")


def sqlite_columns(conn: sqlite3.Connection, table: str) -> dict[str, str] | None:
    schema, name = _split(table)
    pragma = f"PRAGMA {quote_identifier(schema, 'sqlite') + '.' if schema else ''}table_info(" \
        f"{quote_identifier(name, 'sqlite')})"
    rows = conn.execute(pragma).fetchall()
    return {r[1]: r[2] for r in rows} if rows else None


def sqlite_load(conn: sqlite3.Connection, table: str, staged: str) -> None:
    schema = schema_of(staged)
    names = ", ".join(quote_identifier(n, "sqlite") for n in schema.names)
    marks = ", ".join("?" for _ in schema.names)
    sql = f"INSERT INTO {quote_table(table, 'sqlite')} ({names}) VALUES ({marks})"
    for batch in batches(staged):
        conn.executemany(sql, text_columns(batch, "sqlite").iter_rows())
