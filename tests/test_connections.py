"""Named connections: a source says ``connection: <name>``; the name is looked up in the spec's
``connections:`` section and in a connections file (``--connections``, else
``$RAYSIGHT_CONNECTIONS``, else ``~/.config/raysight/connections.yaml``), the spec winning.
The spec and its copy keep the name, and no password, from the environment or written in
the file, appears in the run directory, the command's output or Ray's task records."""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from conftest import job_tasks, require_service

from raysight.cli import main
from raysight.connections import Connection, load_connections
from raysight.connectors.database import DatabaseConnector
from raysight.errors import InputError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.spec import SpecError

#: set at collection, before the session's ray.init, so the workers see it (as a user sets
#: a variable before `ray start`); each a unique random value, to search for afterwards
ENV_PASSWORD = f"env-secret-{uuid.uuid4().hex}"
FILE_PASSWORD = f"file-secret-{uuid.uuid4().hex}"
os.environ["RAYSIGHT_TEST_CONN_PW"] = ENV_PASSWORD


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER, amount REAL, region TEXT)")
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)",
                       [(1, 9.5, "north"), (2, 20.0, "south"), (3, 1.25, "north")])
    db.close()
    return path


@pytest.fixture
def other_db(tmp_path: Path) -> Path:
    """A second SQLite file with the same table and other rows."""
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER, amount REAL, region TEXT)")
        db.execute("INSERT INTO orders VALUES (99, 1.0, 'west')")
    db.close()
    return path


def write_connections(folder: Path, connections: dict[str, Any], name: str = "conns.yaml"
                      ) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"connections": connections}))
    return path


def job(source: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    spec = {"version": 2, "job_id": f"conn_{uuid.uuid4().hex[:8]}",
            "sources": {"orders": source or {"type": "database", "connection": "shop",
                                             "table": "orders"}},
            "analyses": {"profile": {"from": "orders", "type": "descriptive",
                                     "columns": ["id"]}},
            "exports": [{"from": "orders", "format": "parquet", "path": "orders.parquet"}],
            "execution": {"timeout_s": 120}}
    spec.update(changes)
    return spec


def write_job(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_holding(folder: Path, *texts: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file()
            for t in texts if t.encode() in p.read_bytes()]


# ---------------------------------------------------------------------------------------------
# Where connections come from


def test_a_source_names_a_connection_of_the_spec_section(sqlite_db):
    spec = parse_graph_spec(job(connections={"shop": {"path": str(sqlite_db)}}))
    source = spec.sources["orders"]
    assert source.connection == "shop" and source.database_path == str(sqlite_db)
    connector = DatabaseConnector(source)
    connector.check()
    assert connector.read(connector.plan()[0]).column("id").to_pylist() == [1, 2, 3]


def test_a_source_names_a_connection_of_a_connections_file(tmp_path, sqlite_db):
    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)}})
    source = parse_graph_spec(job(), connections=file).sources["orders"]
    assert source.database_path == str(sqlite_db)


def test_a_relative_sqlite_path_in_a_connections_file_is_relative_to_the_file(tmp_path,
                                                                             sqlite_db):
    file = write_connections(tmp_path, {"shop": {"path": sqlite_db.name}})
    assert load_connections(file)["shop"].path == str(sqlite_db)


def test_the_connections_file_is_found_through_the_environment_variable(
        tmp_path, sqlite_db, monkeypatch):
    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)}}, "elsewhere.yaml")
    monkeypatch.setenv("RAYSIGHT_CONNECTIONS", str(file))
    assert parse_graph_spec(job()).sources["orders"].database_path == str(sqlite_db)


def test_the_connections_file_defaults_to_the_users_config_folder(tmp_path, sqlite_db,
                                                                  monkeypatch):
    monkeypatch.delenv("RAYSIGHT_CONNECTIONS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".config" / "raysight"
    folder.mkdir(parents=True)
    write_connections(folder, {"shop": {"path": str(sqlite_db)}}, "connections.yaml")
    assert parse_graph_spec(job()).sources["orders"].database_path == str(sqlite_db)


def test_the_spec_section_wins_over_the_file_for_the_same_name(tmp_path, sqlite_db, other_db):
    file = write_connections(tmp_path, {"shop": {"path": str(other_db)},
                                        "spare": {"path": str(other_db)}})
    spec = parse_graph_spec(job(connections={"shop": {"path": str(sqlite_db)}}),
                            connections=file)
    assert spec.sources["orders"].database_path == str(sqlite_db)


def test_a_connection_sets_the_connect_timeout_unless_the_source_does():
    known = {"wh": Connection(url="postgresql://me@db/x", connect_timeout_s=2)}
    base = {"type": "database", "connection": "wh", "table": "t"}
    assert parse_graph_spec(job(base), connections=known).sources["orders"].timeout_s == 2
    own = parse_graph_spec(job({**base, "connect_timeout_s": 7}), connections=known)
    assert own.sources["orders"].timeout_s == 7


def test_a_spec_without_named_connections_never_reads_the_connections_file(tmp_path,
                                                                           sqlite_db,
                                                                           monkeypatch):
    broken = tmp_path / "broken.yaml"
    broken.write_text("connections: [not, a, mapping")
    monkeypatch.setenv("RAYSIGHT_CONNECTIONS", str(broken))
    parse_graph_spec(job({"type": "database", "path": str(sqlite_db), "table": "orders"}))


def test_a_version_1_spec_names_a_connection_too(sqlite_db):
    spec = parse_graph_spec({
        "source": {"type": "database", "connection": "shop", "table": "orders"},
        "connections": {"shop": {"path": str(sqlite_db)}},
        "analysis": {"type": "descriptive"}})
    assert spec.sources["source"].database_path == str(sqlite_db)
    with pytest.raises(SpecError, match=r"source\.connection: .*unknown connection 'shp'"):
        parse_graph_spec({"source": {"type": "database", "connection": "shp", "table": "t"},
                          "connections": {"shop": {"path": str(sqlite_db)}},
                          "analysis": {"type": "descriptive"}})


# ---------------------------------------------------------------------------------------------
# Errors


def test_an_unknown_connection_exits_two_naming_the_field_and_the_known_ones(
        tmp_path, sqlite_db, capsys):
    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)},
                                        "warehouse": {"path": str(sqlite_db)}})
    spec = write_job(tmp_path, job({"type": "database", "connection": "shpo",
                                    "table": "orders"}))
    code, _, err = run_cli(capsys, "validate", str(spec), "--connections", str(file))
    assert code == 2 and "Traceback" not in err
    assert "sources.orders.connection" in err
    assert "unknown connection 'shpo'; did you mean 'shop'? (known: shop, warehouse)" in err
    code, _, err = run_cli(capsys, "run", str(spec), "--connections", str(file),
                           "--run-dir", str(tmp_path / "runs"))
    assert code == 2 and "unknown connection 'shpo'" in err
    assert not (tmp_path / "runs").exists()


def test_a_bad_url_in_a_connection_is_a_spec_error_naming_the_connection_field(tmp_path):
    bad = {"type": "database", "connection": "wh", "table": "t"}
    with pytest.raises(SpecError, match=r"connections\.wh\.url \(in the job spec\): "
                                        r"unsupported database URL scheme 'oracle'"):
        parse_graph_spec(job(bad, connections={"wh": {"url": "oracle://me@db/x"}}))
    file = write_connections(tmp_path, {"wh": {"url": "postgresql://me@db:port/x"}})
    with pytest.raises(SpecError, match=rf"connections\.wh\.url \(in {file}\): the URL's port "
                                        "must be a number"):
        parse_graph_spec(job(bad), connections=file)
    with pytest.raises(SpecError, match=r"connections\.wh\.url: .*not an environment variable"):
        parse_graph_spec(job(bad, connections={"wh": {"url": "postgresql://${1X}@db/x"}}))


def test_an_invalid_connections_file_is_an_input_error_naming_the_file_and_field(tmp_path):
    file = write_connections(tmp_path, {"wh": {"url": "postgresql://me@db/x", "pat": "x"}})
    with pytest.raises(InputError, match=rf"{file}: invalid connections file\n"
                                         r"  connections\.wh\.pat: "):
        parse_graph_spec(job({"type": "database", "connection": "wh", "table": "t"}),
                         connections=file)
    with pytest.raises(InputError, match="connections file not found"):
        parse_graph_spec(job(), connections=tmp_path / "absent.yaml")


def test_a_literal_password_in_the_spec_section_is_refused_without_repeating_it(capsys,
                                                                                tmp_path):
    spec = write_job(tmp_path, job(connections={
        "shop": {"url": f"postgresql://me:{FILE_PASSWORD}@db/x"}}))
    code, out, err = run_cli(capsys, "validate", str(spec))
    assert code == 2
    assert "connections.shop.url" in err and "must be a ${NAME} reference" in err
    assert FILE_PASSWORD not in out + err


def test_a_source_gives_one_of_url_path_or_connection(sqlite_db):
    with pytest.raises(SpecError, match="exactly one of `url`"):
        parse_graph_spec(job({"type": "database", "connection": "shop", "path": "x.sqlite",
                              "table": "t"}, connections={"shop": {"path": str(sqlite_db)}}))


# ---------------------------------------------------------------------------------------------
# Jobs, and where secrets never go


def test_a_job_reads_a_named_connection_and_spec_json_keeps_the_name(tmp_path, sqlite_db,
                                                                     ray_session, capsys):
    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)}})
    spec = job()
    runs = tmp_path / "runs"
    code, _, err = run_cli(capsys, "run", str(write_job(tmp_path, spec)), "--connections",
                           str(file), "--run-dir", str(runs), "--quiet")
    assert code == 0, err
    run_dir = runs / spec["job_id"]
    assert pl.read_parquet(run_dir / "orders.parquet")["id"].to_list() == [1, 2, 3]
    kept = json.loads((run_dir / "spec.json").read_text())
    assert kept["sources"]["orders"]["connection"] == "shop"
    assert str(sqlite_db) not in (run_dir / "spec.json").read_text()


def secret_connections(tmp_path: Path, port: int) -> Path:
    return write_connections(tmp_path, {
        "from_env": {"url": f"postgresql://postgres:${{RAYSIGHT_TEST_CONN_PW}}@127.0.0.1:"
                            f"{port}/test", "connect_timeout_s": 2},
        "literal": {"url": f"postgresql://postgres:{FILE_PASSWORD}@127.0.0.1:{port}/test",
                    "connect_timeout_s": 2}})


def assert_no_secret_anywhere(job_id: str, run_dir: Path, output: str, tasks: int) -> None:
    assert files_holding(run_dir, ENV_PASSWORD, FILE_PASSWORD) == []
    assert ENV_PASSWORD not in output and FILE_PASSWORD not in output
    records = job_tasks(job_id, expect=tasks)
    assert records
    shown = " ".join(f"{t.name} {t.func_or_class_name}" for t in records)
    assert ENV_PASSWORD not in shown and FILE_PASSWORD not in shown


@pytest.mark.parametrize("connection", ["from_env", "literal"])
def test_no_password_leaves_the_driver_when_the_server_cannot_be_reached(
        connection, tmp_path, ray_session, capsys):
    file = secret_connections(tmp_path, port=9)
    spec = job({"type": "database", "connection": connection, "table": "t"},
               execution={"timeout_s": 120, "max_retries": 0})
    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "--log-level", "DEBUG", "run",
                             str(write_job(tmp_path, spec)), "--connections", str(file),
                             "--run-dir", str(runs), "--quiet")
    assert code == 1
    assert f"database '{connection}' (postgresql://postgres:***@127.0.0.1:9/test)" in out
    assert_no_secret_anywhere(spec["job_id"], runs / spec["job_id"], out + err, tasks=1)


@pytest.mark.parametrize("connection", ["from_env", "literal"])
def test_a_job_on_a_named_postgresql_connection_shows_no_password_anywhere(
        connection, tmp_path, ray_session, capsys):
    require_service("PostgreSQL", "127.0.0.1", 5432)  # trust auth: any password logs in
    file = secret_connections(tmp_path, port=5432)
    spec = job({"type": "database", "connection": connection,
                "query": "SELECT 1 AS id UNION ALL SELECT 2"})
    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "--log-level", "DEBUG", "run",
                             str(write_job(tmp_path, spec)), "--connections", str(file),
                             "--run-dir", str(runs), "--json")
    assert code == 0, out + err
    run_dir = runs / spec["job_id"]
    assert sorted(pl.read_parquet(run_dir / "orders.parquet")["id"].to_list()) == [1, 2]
    assert_no_secret_anywhere(spec["job_id"], run_dir, out + err, tasks=2)


def test_the_config_shipped_to_ray_tasks_holds_the_reference_and_no_repr_shows_a_password(
        tmp_path):
    file = secret_connections(tmp_path, port=5432)
    spec = parse_graph_spec(job({"type": "database", "connection": "from_env", "table": "t"}),
                            connections=file)
    config = spec.sources["orders"]
    shipped = pickle.dumps(DatabaseConnector(config))
    assert b"${RAYSIGHT_TEST_CONN_PW}" in shipped and ENV_PASSWORD.encode() not in shipped
    literal = parse_graph_spec(job({"type": "database", "connection": "literal",
                                    "table": "t"}), connections=file).sources["orders"]
    connector = DatabaseConnector(literal)
    for text in (repr(literal), repr(connector), str(literal), connector.where,
                 repr(load_connections(file)), repr(connector.plan()),
                 json.dumps(spec.model_dump(mode="json"))):
        assert FILE_PASSWORD not in text and ENV_PASSWORD not in text


def test_resume_looks_the_connection_up_again(tmp_path, sqlite_db):
    from raysight.job.pipeline import AnalysisJob

    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)}})
    spec = job()
    run_dir = tmp_path / "runs" / spec["job_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    resumed = AnalysisJob.resume(spec["job_id"], tmp_path / "runs", connections=file)
    assert resumed.connectors["orders"].config.database_path == str(sqlite_db)


def test_a_connections_file_with_a_password_that_others_may_read_is_warned_about(tmp_path,
                                                                                 caplog):
    file = secret_connections(tmp_path, port=5432)
    file.chmod(0o644)
    load_connections(file)
    assert "others may read it" in caplog.text and FILE_PASSWORD not in caplog.text
    caplog.clear()
    file.chmod(0o600)
    load_connections(file)
    assert "others may read it" not in caplog.text


def test_a_version_1_job_keeps_the_connections_file_it_was_validated_with(tmp_path, sqlite_db):
    from raysight.job.pipeline import AnalysisJob
    from raysight.job.spec import parse_spec

    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)}})
    spec = parse_spec({"source": {"type": "database", "connection": "shop", "table": "orders"},
                       "analysis": {"type": "descriptive"}}, connections=file)
    job = AnalysisJob(spec, run_dir=tmp_path / "runs")
    assert job.connectors["source"].config.database_path == str(sqlite_db)


def test_a_spec_on_a_named_connection_reads_back_from_its_spec_json(tmp_path, sqlite_db):
    from raysight.job.pipeline import AnalysisJob

    file = write_connections(tmp_path, {"shop": {"path": str(sqlite_db)}})
    kept = AnalysisJob(parse_graph_spec(job(), connections=file),
                       run_dir=tmp_path / "runs").spec_json()
    again = parse_graph_spec(json.loads(json.dumps(kept)), connections=file)
    assert again.sources["orders"].database_path == str(sqlite_db)
