"""The database connector: SQLite always, PostgreSQL and MariaDB on loopback when they run
(skipped when absent, failing under CI=true). Each backend reads back what the test wrote,
range-split reads run one Ray task per range and return the rows of a single read, and bad
input gets an error naming the source, never its password."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import pickle
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from conftest import job_tasks, require_service
from fixture_rows import COLUMNS, ROWS
from pydantic import ValidationError

from raysight.connectors.database import DatabaseConnector, DatabaseSourceConfig
from raysight.connectors.database.readonly import read_only_query
from raysight.connectors.database.urls import parse_url, redact
from raysight.errors import InputError, TransientError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

#: Ray workers see the environment Ray started with, so the variables the URLs refer to are set
#: here, at collection, before the session's ray.init (as a user sets them before `ray start`)
WRONG_PASSWORD = f"wrong-{uuid.uuid4().hex}"
os.environ.update({"RAYSIGHT_TEST_PW": WRONG_PASSWORD, "RAYSIGHT_TEST_PG_USER": "postgres",
                   "RAYSIGHT_TEST_MYSQL_USER": "root"})

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
UTC = dt.UTC


def written(rows: list[dict[str, Any]], *, naive_utc: bool = False,
            bool_as_int: bool = False) -> dict[str, list[Any]]:
    """The rows as columns of the Python values a backend stores (MariaDB has no time zone
    and no boolean type: it keeps UTC wall times and 0/1)."""
    out: dict[str, list[Any]] = {c: [r[c] for r in rows] for c in COLUMNS}
    if naive_utc:
        out["at"] = [v and v.astimezone(UTC).replace(tzinfo=None) for v in out["at"]]
    if bool_as_int:
        out["flag"] = [None if v is None else int(v) for v in out["flag"]]
    return out


def assert_reads_back(table: pa.Table, expected: dict[str, list[Any]]) -> None:
    table = table.sort_by("id")
    assert table.column_names == COLUMNS
    for name, values in expected.items():
        assert table.column(name).to_pylist() == values, name


def assert_types(schema: pa.Schema, *, tz: bool, boolean: bool = True) -> None:
    t = {f.name: f.type for f in schema}
    assert pa.types.is_integer(t["id"]) and pa.types.is_integer(t["n"])
    assert pa.types.is_decimal(t["price"]) and t["price"].scale >= 2
    assert pa.types.is_float64(t["ratio"])
    assert pa.types.is_string(t["name"]) or pa.types.is_large_string(t["name"])
    assert pa.types.is_boolean(t["flag"]) if boolean else pa.types.is_integer(t["flag"])
    assert pa.types.is_date32(t["day"])
    assert pa.types.is_timestamp(t["at"]) and (t["at"].tz is not None) == tz
    assert pa.types.is_binary(t["raw"]) or pa.types.is_large_binary(t["raw"])


def read_all(config: dict[str, Any]) -> tuple[list[str], pa.Table]:
    """Every partition read as a job's load step would (each through a pickled connector)."""
    connector = DatabaseConnector(DatabaseSourceConfig(**config))
    connector.check()
    parts = connector.plan()
    tables = [connector.read(p) for p in parts]
    return [p.label for p in parts], pa.concat_tables(tables, promote_options="permissive")


def run_job(tmp_path: Path, source: dict[str, Any], job_id: str, **execution: Any):
    spec = parse_graph_spec({
        "version": 2, "job_id": job_id,
        "sources": {"rows": source},
        "analyses": {"profile": {"from": "rows", "type": "descriptive", "columns": ["id"]}},
        "exports": [{"from": "rows", "format": "parquet", "path": "rows.parquet"}],
        "execution": {"timeout_s": 120, **execution},
    })
    return AnalysisJob(spec, run_dir=tmp_path / "runs").run()


def files_contain(folder: Path, text: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


# ---------------------------------------------------------------------------------------------
# SQLite


SQLITE_TYPES = {"id": "INTEGER", "n": "INTEGER", "price": "TEXT", "ratio": "REAL",
                "name": "TEXT", "flag": "BOOLEAN", "day": "DATE", "at": "TIMESTAMP",
                "raw": "BLOB"}


@pytest.fixture
def sqlite_file(tmp_path) -> Path:
    """A SQLite file with table ``t``: ROWS with numbers, text, dates and blobs (SQLite keeps
    dates and timestamps as ISO text, in UTC here, and decimals as text: connectorx refuses
    a DECIMAL column, whose numeric affinity stores REALs)."""
    path = tmp_path / "data.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE t ({', '.join(f'{c} {t}' for c, t in SQLITE_TYPES.items())})")
        db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(COLUMNS))})", [
            tuple(None if v is None else
                  v.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
                  if isinstance(v, dt.datetime) else
                  v.isoformat() if isinstance(v, dt.date) else
                  str(v) if isinstance(v, decimal.Decimal) else v
                  for v in row.values()) for row in ROWS])
    db.close()
    return path


def test_sqlite_reads_integers_floats_text_booleans_dates_timestamps_blobs_and_nulls(sqlite_file):
    _, table = read_all({"path": str(sqlite_file), "table": "t"})
    expected = written(ROWS, naive_utc=True)
    expected["price"] = [None if v is None else str(v) for v in expected["price"]]
    assert_reads_back(table, expected)
    t = {f.name: f.type for f in table.schema}
    assert pa.types.is_boolean(t["flag"]) and pa.types.is_date32(t["day"])
    assert pa.types.is_timestamp(t["at"]) and pa.types.is_large_binary(t["raw"])


def test_a_range_split_sqlite_read_returns_the_rows_of_a_single_read(sqlite_file):
    whole = read_all({"path": str(sqlite_file), "table": "t"})[1]
    for column in ("id", "n", "ratio", "day", "at"):
        labels, split = read_all({"path": str(sqlite_file), "table": "t",
                                  "partition_column": column, "partitions": 3})
        assert len(labels) == 4 and labels[-1] == f"{column} IS NULL", labels
        assert split.sort_by("id").equals(whole.sort_by("id")), column


def test_bounds_from_the_spec_set_the_ranges_and_lose_no_row_outside_them(sqlite_file):
    whole = read_all({"path": str(sqlite_file), "table": "t"})[1]
    labels, split = read_all({"path": str(sqlite_file), "table": "t", "partition_column": "id",
                              "partitions": 2, "bounds": [3, 5]})
    assert labels == ["id < 4", "4 <= id", "id IS NULL"]
    assert split.sort_by("id").equals(whole.sort_by("id"))


def test_a_query_with_a_trailing_comment_and_semicolon_is_read(sqlite_file):
    _, table = read_all({"path": str(sqlite_file), "query": "SELECT id, name FROM t "
                         "WHERE id < 3; -- the first three", "partition_column": "id",
                         "partitions": 2})
    assert sorted(table.column("id").to_pylist()) == [0, 1, 2]


def test_a_table_name_is_quoted(tmp_path):
    path = tmp_path / "odd.sqlite"
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE "my ""odd"" table; x" (v INTEGER)')
        db.execute('INSERT INTO "my ""odd"" table; x" VALUES (1), (2)')
    db.close()
    _, table = read_all({"path": str(path), "table": 'my "odd" table; x'})
    assert table.column("v").to_pylist() == [1, 2]


def test_a_partition_column_that_does_not_exist_is_an_input_error_naming_it(sqlite_file):
    connector = DatabaseConnector(DatabaseSourceConfig(path=str(sqlite_file), table="t",
                                                       partition_column="idd"))
    with pytest.raises(InputError, match=r"database sqlite .*data\.sqlite.*'idd' is not a "
                                         r"column.*did you mean 'id'"):
        connector.plan()


def test_a_text_partition_column_is_an_input_error(sqlite_file):
    connector = DatabaseConnector(DatabaseSourceConfig(path=str(sqlite_file), table="t",
                                                       partition_column="name"))
    with pytest.raises(InputError, match="'name' is string; it must be numeric"):
        connector.plan()


def test_an_unknown_table_is_an_input_error_naming_the_source(sqlite_file):
    connector = DatabaseConnector(DatabaseSourceConfig(path=str(sqlite_file), table="nope"))
    with pytest.raises(InputError, match=r"database sqlite .*data\.sqlite: the query failed: "
                                         r"no such table: nope"):
        connector.read(connector.plan()[0])


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path):
    path = tmp_path / "absent.sqlite"
    connector = DatabaseConnector(DatabaseSourceConfig(path=str(path), table="t"))
    with pytest.raises(InputError, match="no such SQLite file"):
        connector.check()
    with pytest.raises(InputError, match="no such SQLite file"):
        connector.read(connector.plan()[0])
    assert not path.exists()


def test_a_job_reads_a_range_split_sqlite_table_one_task_per_range(sqlite_file, tmp_path):
    source = {"type": "database", "path": str(sqlite_file), "table": "t",
              "partition_column": "id", "partitions": 3}
    job_id = f"db_sqlite_{uuid.uuid4().hex[:8]}"
    result = run_job(tmp_path, source, job_id)
    assert result.state == "COMPLETED", result.errors
    loads = [t for t in job_tasks(job_id, expect=4) if t.name == f"{job_id}/rows/load"]
    assert len(loads) == 4
    rows = pl.read_parquet(Path(result.run_dir) / "rows.parquet")
    assert sorted(rows["id"].to_list()) == [r["id"] for r in ROWS]


# ---------------------------------------------------------------------------------------------
# The read-only guard


@pytest.mark.parametrize("sql", [
    "DROP TABLE t",
    "DELETE FROM t",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET n = 1",
    "TRUNCATE t",
    "SELECT 1; DROP TABLE t",
    "SELECT 1; SELECT 2",
    "WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone",
    "SELECT * INTO copy FROM t",
    "select * from t for update",
    "/* a comment */ delete from t",
    "SELECT 1 --x\n; DROP TABLE t",
    "SELECT 'a' ; DROP TABLE t; -- 'quoted?",
    "SELECT E'\\'' ; DROP TABLE t; --'",
    "SELECT $$ ' $$; DROP TABLE t; -- '",
    "SELECT 1 /* /* */ ' */ ; DROP TABLE t; -- '",
    "SELECT 1 /*! ; DROP TABLE t */",
    "SELECT 'unterminated",
    "",
    "-- only a comment",
])
def test_anything_but_one_select_is_refused(sql):
    with pytest.raises(ValueError):
        read_only_query(sql, "postgresql")


@pytest.mark.parametrize("sql", [
    "SELECT 1 # comment\n; DROP TABLE t",
    "SELECT 1 # ' \n ; DROP TABLE t; SELECT '",
])
def test_mysql_hash_comments_hide_no_statement(sql):
    with pytest.raises(ValueError):
        read_only_query(sql, "mysql")


def test_sqlite_bracket_identifiers_hide_no_statement():
    with pytest.raises(ValueError):
        read_only_query("SELECT 1 AS [x'] ; DROP TABLE t; -- ']", "sqlite")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM t",
    "  select id from t where name = 'DROP TABLE t; DELETE'  ;  ",
    'SELECT "delete", "update" FROM t',
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a -- DELETE in a comment",
    "SELECT replace(name, 'a', 'b') FROM t /* drop */",
    "SELECT 'it''s' AS s",
])
def test_reading_queries_are_allowed(sql):
    assert read_only_query(sql, "postgresql").upper().lstrip().startswith(("SELECT", "WITH"))


def test_a_refused_query_is_an_input_error_naming_the_source_before_any_connection():
    connector = DatabaseConnector(DatabaseSourceConfig(
        url="postgresql://me:${RAYSIGHT_NO_SUCH_VAR}@127.0.0.1:1/test", query="DROP TABLE t"))
    with pytest.raises(InputError, match=r"database postgresql://me:\*\*\*@127\.0\.0\.1:1/test: "
                                         r"the query starts with DROP"):
        connector.check()


def test_a_refused_query_fails_the_job_before_it_runs(tmp_path, sqlite_file):
    source = {"type": "database", "path": str(sqlite_file), "query": "DELETE FROM t"}
    with pytest.raises(InputError, match="source 'rows'.*starts with DELETE"):
        run_job(tmp_path, source, "db_refused")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# URLs and secrets


def test_the_url_is_shown_with_its_password_masked():
    assert parse_url("postgresql://me:s3cret@db:5432/test").shown == \
        "postgresql://me:***@db:5432/test"
    assert redact("failed for mysql://root:p%40ss@h/x (p@ss)", ["p@ss", "p%40ss"]) == \
        "failed for mysql://root:***@h/x (***)"


def test_the_driver_url_resolves_references_and_quotes_what_needs_it(monkeypatch):
    monkeypatch.setenv("RAYSIGHT_TEST_ODD_PW", "p@ss/w:rd")
    url = parse_url("postgresql://me:${RAYSIGHT_TEST_ODD_PW}@[::1]:5433/test")
    assert url.shown == "postgresql://me:***@[::1]:5433/test"
    assert url.driver_url(2) == "postgresql://me:p%40ss%2Fw%3Ard@[::1]:5433/test?connect_timeout=2"
    assert parse_url("mariadb://root@db/x").driver_url(1.5) == \
        "mysql://root@db:3306/x?tcp_connect_timeout_ms=1500"


@pytest.mark.parametrize("url,problem", [
    ("oracle://me@db/test", "unsupported database URL scheme 'oracle'"),
    ("sqlite:///tmp/x.db", "named by `path`"),
    ("postgresql://me@db:port/test", "port must be a number"),
    ("postgresql://me@db:5432/", "names no database"),
    ("postgresql://me:${1BAD}@db/test", "not an environment variable reference"),
])
def test_a_bad_url_is_refused_by_the_spec(url, problem):
    with pytest.raises(ValidationError, match=problem):
        DatabaseSourceConfig(url=url, table="t")


def test_a_source_needs_one_place_and_one_query_or_table():
    with pytest.raises(ValidationError, match="exactly one of `url`"):
        DatabaseSourceConfig(table="t")
    with pytest.raises(ValidationError, match="exactly one of `query` or `table`"):
        DatabaseSourceConfig(path="x.sqlite", table="t", query="SELECT 1")
    with pytest.raises(ValidationError, match="need a `partition_column`"):
        DatabaseSourceConfig(path="x.sqlite", table="t", partitions=3)


def test_a_missing_variable_is_an_input_error_naming_it(monkeypatch):
    monkeypatch.delenv("RAYSIGHT_NO_SUCH_VAR", raising=False)
    connector = DatabaseConnector(DatabaseSourceConfig(
        url="postgresql://me:${RAYSIGHT_NO_SUCH_VAR}@127.0.0.1:5432/test", table="t"))
    with pytest.raises(InputError, match="RAYSIGHT_NO_SUCH_VAR is not set") as err:
        connector.read(connector.plan()[0])
    assert err.value.details["variable"] == "RAYSIGHT_NO_SUCH_VAR"


def test_an_unreachable_database_fails_the_job_naming_the_source_and_host(tmp_path):
    source = {"type": "database", "url": "postgresql://me:${RAYSIGHT_TEST_PW}@127.0.0.1:9/test",
              "table": "t", "connect_timeout_s": 2}
    result = run_job(tmp_path, source, "db_unreachable", max_retries=0)
    assert result.state == "FAILED"
    message = " ".join(e["message"] for e in result.errors)
    assert "database postgresql://me:***@127.0.0.1:9/test" in message
    assert "cannot connect to 127.0.0.1:9" in message
    assert result.errors[0]["category"] == "transient" and result.errors[0]["node"] == "rows"
    assert files_contain(Path(result.run_dir), WRONG_PASSWORD) == []


def test_the_connector_error_for_no_connection_is_transient():
    connector = DatabaseConnector(DatabaseSourceConfig(url="mysql://root@127.0.0.1:9/test",
                                                       table="t", connect_timeout_s=1))
    with pytest.raises(TransientError, match="cannot connect to 127.0.0.1:9"):
        connector.plan()  # a table without partition_column plans without connecting
        connector.read(connector.plan()[0])


# ---------------------------------------------------------------------------------------------
# PostgreSQL and MariaDB


def table_name() -> str:
    return f"raysight_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_table() -> Iterator[str]:
    """A PostgreSQL table holding ROWS in its natural types, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = table_name()
    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres",
                         autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id bigint, n integer, price numeric(10,2), "
                   "ratio double precision, name text, flag boolean, day date, "
                   "at timestamptz, raw bytea)")
        with db.cursor() as cur:
            cur.executemany(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                            [tuple(r.values()) for r in ROWS])
        try:
            yield name
        finally:
            db.execute(f"DROP TABLE {name}")


@pytest.fixture
def mysql_table() -> Iterator[str]:
    """A MariaDB table holding ROWS (timestamps as UTC DATETIME: no time zone type)."""
    require_service("MariaDB", "127.0.0.1", 3306)
    import pymysql

    name = table_name()
    db = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database="test",
                         autocommit=True, charset="utf8mb4")
    try:
        with db.cursor() as cur:
            cur.execute(f"CREATE TABLE {name} (id bigint, n int, price decimal(10,2), "
                        "ratio double, name text, flag boolean, day date, at datetime(6), "
                        "raw blob) CHARACTER SET utf8mb4")
            rows = written(ROWS, naive_utc=True)
            cur.executemany(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                            list(zip(*rows.values(), strict=True)))
        yield name
    finally:
        with db.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        db.close()


def test_postgresql_reads_back_every_type_it_was_written(pg_table):
    _, table = read_all({"url": PG_URL, "table": pg_table})
    assert_types(table.schema, tz=True)
    assert_reads_back(table, written(ROWS))


def test_mariadb_reads_back_every_type_it_was_written(mysql_table):
    _, table = read_all({"url": MYSQL_URL, "table": mysql_table})
    assert_types(table.schema, tz=False, boolean=False)  # BOOLEAN is TINYINT(1) there
    assert_reads_back(table, written(ROWS, naive_utc=True, bool_as_int=True))


@pytest.mark.parametrize("column", ["n", "price", "day", "at"])
def test_a_postgresql_range_split_returns_the_rows_of_a_single_read(pg_table, column):
    whole = read_all({"url": PG_URL, "table": pg_table})[1]
    labels, split = read_all({"url": PG_URL, "table": pg_table, "partition_column": column,
                              "partitions": 3})
    assert len(labels) == 4
    assert split.sort_by("id").equals(whole.sort_by("id"))


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_range_split_job_runs_one_load_task_per_range_and_reads_every_row(
        backend, request, tmp_path):
    name = request.getfixturevalue("pg_table" if backend == "postgresql" else "mysql_table")
    url = ("postgresql://${RAYSIGHT_TEST_PG_USER}@127.0.0.1:5432/test" if backend == "postgresql"
           else "mysql://${RAYSIGHT_TEST_MYSQL_USER}@127.0.0.1:3306/test")
    job_id = f"db_{backend}_{uuid.uuid4().hex[:8]}"
    source = {"type": "database", "url": url, "query": f"SELECT * FROM {name}",
              "partition_column": "day", "partitions": 3}
    result = run_job(tmp_path, source, job_id)
    assert result.state == "COMPLETED", result.errors
    loads = [t for t in job_tasks(job_id, expect=4) if t.name == f"{job_id}/rows/load"]
    assert len(loads) == 4  # three ranges and the NULLs
    single = read_all({"url": url, "table": name})[1]
    rows = pl.read_parquet(Path(result.run_dir) / "rows.parquet").sort("id")
    assert rows.to_dicts() == pl.from_arrow(single).sort("id").to_dicts()


def test_a_wrong_password_is_an_input_error_that_never_shows_it(mysql_table, tmp_path):
    secret = WRONG_PASSWORD
    source = {"type": "database", "url": "mysql://root:${RAYSIGHT_TEST_PW}@127.0.0.1:3306/test",
              "table": mysql_table}
    result = run_job(tmp_path, source, f"db_wrong_pw_{uuid.uuid4().hex[:8]}", max_retries=0)
    assert result.state == "FAILED" and result.input_error, result.errors
    message = result.errors[0]["message"]
    assert "database mysql://root:***@127.0.0.1:3306/test" in message
    assert "refused the login" in message and secret not in message
    assert result.errors[0]["node"] == "rows"
    run_dir = Path(result.run_dir)
    assert "${RAYSIGHT_TEST_PW}" in (run_dir / "spec.json").read_text()
    assert files_contain(run_dir, secret) == []


def test_what_ray_tasks_receive_holds_no_secret():
    connector = DatabaseConnector(DatabaseSourceConfig(
        url="mysql://root:${RAYSIGHT_TEST_PW}@127.0.0.1:3306/test", table="t"))
    shipped = pickle.dumps((connector, connector.plan()))
    assert WRONG_PASSWORD.encode() not in shipped and b"${RAYSIGHT_TEST_PW}" in shipped


def test_postgresql_sessions_are_read_only(pg_table):
    _, table = read_all({"url": PG_URL,
                         "query": "SELECT current_setting('transaction_read_only') AS ro"})
    assert table.column("ro").to_pylist() == ["on"]


# ---------------------------------------------------------------------------------------------
# The schema before the run


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_the_schema_before_the_run_is_the_one_a_read_returns(backend, request):
    if backend == "sqlite":
        source = {"path": str(request.getfixturevalue("sqlite_file")), "table": "t"}
    else:
        name = request.getfixturevalue("pg_table" if backend == "postgresql" else "mysql_table")
        source = {"url": PG_URL if backend == "postgresql" else MYSQL_URL, "table": name}
    known = DatabaseConnector(DatabaseSourceConfig(**source)).schema()
    _, table = read_all(source)
    assert known is not None and known.names == COLUMNS
    assert known == table.schema
    split = read_all({**source, "partition_column": "id", "partitions": 2})[1]
    assert known == split.schema


def test_the_schema_of_a_query_is_the_one_its_read_returns(sqlite_file):
    source = {"path": str(sqlite_file), "query": "SELECT id, n * 2 AS twice, name FROM t"}
    known = DatabaseConnector(DatabaseSourceConfig(**source)).schema()
    assert known is not None and known == read_all(source)[1].schema


def test_the_schema_is_unknown_when_the_server_does_not_answer():
    connector = DatabaseConnector(DatabaseSourceConfig(
        url="postgresql://me:${RAYSIGHT_TEST_PW}@127.0.0.1:9/test", table="t",
        connect_timeout_s=1))
    assert connector.schema() is None  # the run retries it and reports it


def test_the_schema_is_unknown_when_the_driver_lacks_a_variable_of_the_url(monkeypatch):
    monkeypatch.delenv("RAYSIGHT_NO_SUCH_VAR", raising=False)
    connector = DatabaseConnector(DatabaseSourceConfig(
        url="postgresql://postgres:${RAYSIGHT_NO_SUCH_VAR}@127.0.0.1:5432/test", table="t"))
    assert connector.schema() is None  # it may be set where the workers run


def test_the_schema_is_unknown_for_a_table_that_does_not_exist(sqlite_file):
    connector = DatabaseConnector(DatabaseSourceConfig(path=str(sqlite_file), table="nope"))
    assert connector.schema() is None  # the run's load step reports it, with its node


def job_spec(source: dict[str, Any], **nodes: Any) -> dict[str, Any]:
    return {"version": 2, "job_id": f"db_check_{uuid.uuid4().hex[:8]}",
            "sources": {"rows": source},
            "analyses": {"profile": {"from": "rows", "type": "descriptive",
                                     "columns": ["id"]}}, **nodes}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_analysis_naming_a_column_the_table_lacks_is_refused_before_the_run(
        backend, request, tmp_path):
    if backend == "sqlite":
        source = {"type": "database", "path": str(request.getfixturevalue("sqlite_file")),
                  "table": "t"}
    else:
        source = {"type": "database", "url": PG_URL, "table": request.getfixturevalue("pg_table")}
    spec = job_spec(source, analyses={"by_day": {
        "from": "rows", "type": "aggregation", "group_by": ["dya"],
        "metrics": [{"column": "ratio", "function": "sum", "alias": "total"}]}})
    with pytest.raises(InputError, match=r"analysis 'by_day' \(of 'rows'\).*'dya'.*did you "
                                         r"mean 'day'") as err:
        AnalysisJob(parse_graph_spec(spec), run_dir=tmp_path / "runs").run()
    assert err.value.details["field"] == "analyses.by_day"
    assert not (tmp_path / "runs").exists()


def test_a_dataset_operation_naming_a_missing_column_of_a_table_exits_two(sqlite_file, tmp_path,
                                                                          capsys):
    from raysight.cli import main

    spec = job_spec({"type": "database", "path": str(sqlite_file), "table": "t"},
                    datasets={"clean": {"from": "rows", "preprocessing": [
                        {"op": "drop_missing", "columns": ["nmae"]}]}},
                    analyses={"profile": {"from": "clean", "type": "descriptive"}})
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    assert main(["run", str(path), "--run-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'clean', preprocessing[0] (drop_missing): column 'nmae' not found" in err
    assert not (tmp_path / "runs").exists()


def test_a_database_spec_reads_back_from_its_spec_json(sqlite_file, tmp_path):
    spec = parse_graph_spec(job_spec({"type": "database", "path": str(sqlite_file),
                                      "table": "t"}))
    kept = AnalysisJob(spec, run_dir=tmp_path / "runs").spec_json()
    assert parse_graph_spec(json.loads(json.dumps(kept))).sources["rows"] == spec.sources["rows"]
