"""Object storage sources against moto's S3 server on loopback (a real HTTP S3 API in a thread
of this process, tests/s3_server.py): objects read back as they were written, in every
format; a prefix runs one Ray task per object; a missing bucket, key or endpoint fails the job
naming the source and the problem, without outputs; and no secret reaches the spec copy,
results, errors, logs or Ray."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import os
import pickle
import socket
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import job_tasks
from pydantic import ValidationError
from s3_server import s3_endpoint

from raysight.cli import main
from raysight.connectors.files import FileConnector, FileSourceConfig
from raysight.connectors.object_storage import ObjectStorageConnector, ObjectStorageSourceConfig
from raysight.errors import InputError, PermissionDenied, TransientError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

#: Ray workers see the environment Ray started with, so the variables the sources refer to are
#: set here, at collection, before the session's ray.init (as a user sets them before
#: `ray start`); moto accepts any key, and the unique values let the run directory be grepped
KEY_ID = "raysight-test-key-id"
SECRET = f"secret-{uuid.uuid4().hex}"
TOKEN = f"token-{uuid.uuid4().hex}"
os.environ.update({"RAYSIGHT_TEST_S3_KEY": KEY_ID, "RAYSIGHT_TEST_S3_SECRET": SECRET,
                   "RAYSIGHT_TEST_S3_TOKEN": TOKEN})
CREDENTIALS = {"access_key_id": "${RAYSIGHT_TEST_S3_KEY}",
               "secret_access_key": "${RAYSIGHT_TEST_S3_SECRET}",
               "session_token": "${RAYSIGHT_TEST_S3_TOKEN}"}

TZ = "Europe/Berlin"
#: what is written: unicode, NULLs in every column (the last row), decimals, tz timestamps, bytes
TABLE = pa.table({
    "id": pa.array(range(12), pa.int64()),
    "name": ["plain", "Grüße", "東京", "naïve café", "", "emoji 🎉", "it's", 'a"b', "tab\tx",
             "Zürich", "z", None],
    "price": pa.array([decimal.Decimal(v) for v in ["0.00", "-1.25", "99999.99", "3.10",
                                                    "7.77", "0.01", "12.50", "1.00", "2.22",
                                                    "5.55", "6.66"]] + [None],
                      pa.decimal128(10, 2)),
    "ratio": [0.5, -1e300, 1e-300, 2.25, 0.0, 3.5, -0.125, 1.0, 9.75, 6.0, 1.5, None],
    "at": pa.array([dt.datetime(2024, 3, 31, 0, 30, tzinfo=dt.UTC) + dt.timedelta(hours=i,
                                                                                 microseconds=i)
                    for i in range(11)] + [None], pa.timestamp("us", tz=TZ)),
    "raw": [bytes([0, 255, i]) * (i + 1) for i in range(11)] + [None],
})


# ---------------------------------------------------------------------------------------------
# the S3 server and what is written to it


@pytest.fixture(scope="module")
def endpoint() -> str:
    return s3_endpoint()


@pytest.fixture
def store(endpoint):
    """An s3fs client of the server, signed in (its own instance: nothing shared with the
    connector's)."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint, key=KEY_ID, secret=SECRET,
                             skip_instance_cache=True, use_listings_cache=False)


@pytest.fixture
def bucket(store) -> str:
    name = f"raysight-{uuid.uuid4().hex[:12]}"
    store.mkdir(name)
    return name


def parquet_bytes(table: pa.Table, **options: Any) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, **options)
    return out.getvalue()


def put_parts(store, bucket: str, prefix: str, table: pa.Table, parts: int) -> None:
    """``table`` as ``parts`` Parquet objects of consecutive rows."""
    step = -(-table.num_rows // parts)
    for i in range(parts):
        store.pipe(f"{bucket}/{prefix}part-{i:03d}.parquet",
                   parquet_bytes(table.slice(i * step, step)))


def source(endpoint: str, bucket: str, **fields: Any) -> dict[str, Any]:
    return {"type": "object_storage", "bucket": bucket, "endpoint_url": endpoint,
            "region": "us-east-1", "connect_timeout_s": 1, **CREDENTIALS, **fields}


def connector(endpoint: str, bucket: str, **fields: Any) -> ObjectStorageConnector:
    config = {k: v for k, v in source(endpoint, bucket, **fields).items() if k != "type"}
    return ObjectStorageConnector(ObjectStorageSourceConfig(**config))


def read_all(conn: FileConnector) -> tuple[list[str], pa.Table]:
    """Every partition read as a job's load step would (each through a pickled connector)."""
    conn.check()
    parts = conn.plan()
    tables = [pickle.loads(pickle.dumps(conn)).read(p) for p in parts]
    return [p.label for p in parts], pa.concat_tables(tables, promote_options="permissive")


def run_job(tmp_path: Path, src: dict[str, Any], job_id: str, **execution: Any):
    spec = parse_graph_spec({
        "version": 2, "job_id": job_id,
        "sources": {"rows": src},
        "analyses": {"profile": {"from": "rows", "type": "descriptive", "columns": ["id"]}},
        "exports": [{"from": "rows", "format": "parquet", "path": "rows.parquet"}],
        "execution": {"timeout_s": 120, **execution},
    })
    return AnalysisJob(spec, run_dir=tmp_path / "runs").run()


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return pl.from_arrow(table).sort("id").to_dicts()  # type: ignore[union-attr]


def files_contain(folder: Path, text: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# reading


def test_a_parquet_prefix_job_runs_one_load_task_per_object_and_returns_the_rows_of_one_read(
        endpoint, store, bucket, tmp_path):
    put_parts(store, bucket, "sales/", TABLE, parts=3)
    store.pipe(f"{bucket}/whole/all.parquet", parquet_bytes(TABLE))
    job_id = f"s3_prefix_{uuid.uuid4().hex[:8]}"
    result = run_job(tmp_path, source(endpoint, bucket, prefix="sales/"), job_id)
    assert result.state == "COMPLETED", result.errors
    loads = [t for t in job_tasks(job_id, expect=3) if t.name == f"{job_id}/rows/load"]
    assert len(loads) == 3
    single = read_all(connector(endpoint, bucket, key="whole/all.parquet"))[1]
    exported = pq.read_table(Path(result.run_dir) / "rows.parquet")
    assert rows_of(exported) == rows_of(single) == rows_of(TABLE)


def test_parquet_objects_read_back_every_type_they_were_written_with(endpoint, store, bucket):
    put_parts(store, bucket, "t/", TABLE, parts=2)
    labels, table = read_all(connector(endpoint, bucket, prefix="t"))
    assert labels == ["part-000.parquet", "part-001.parquet"]
    assert table.schema.equals(TABLE.schema)
    assert table.to_pylist() == TABLE.to_pylist()


def test_a_large_parquet_object_is_split_by_row_groups(endpoint, store, bucket):
    store.pipe(f"{bucket}/big.parquet", parquet_bytes(TABLE, row_group_size=3))
    labels, table = read_all(connector(endpoint, bucket, key="big.parquet", partition_bytes=1))
    assert len(labels) == 4
    assert table.to_pylist() == TABLE.to_pylist()


def text_of(fmt: str) -> bytes:
    frame = pl.from_arrow(TABLE.drop_columns(["raw"]))
    out = io.BytesIO()
    if fmt == "csv":
        frame.write_csv(out)  # type: ignore[union-attr]
    else:
        frame.write_ndjson(out)  # type: ignore[union-attr]
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
@pytest.mark.parametrize("partition_bytes", [64 << 20, 200])
def test_a_text_object_reads_as_the_same_bytes_read_from_a_local_file(
        endpoint, store, bucket, tmp_path, fmt, partition_bytes):
    data = text_of(fmt)
    store.pipe(f"{bucket}/data/rows.{fmt}", data)
    local = tmp_path / f"rows.{fmt}"
    local.write_bytes(data)
    labels, table = read_all(connector(endpoint, bucket, key=f"data/rows.{fmt}",
                                       partition_bytes=partition_bytes))
    expected = read_all(FileConnector(FileSourceConfig(path=str(local),
                                                       partition_bytes=partition_bytes)))
    assert labels == expected[0] and (len(labels) > 1) == (partition_bytes < len(data))
    assert table.to_pylist() == expected[1].to_pylist()
    names = TABLE.column("name").to_pylist()
    if fmt == "csv":  # "" is one of CSV's default null_values
        names = [None if n == "" else n for n in names]
    assert table.column("name").to_pylist() == names


def test_a_key_glob_reads_the_objects_it_matches_in_key_order(endpoint, store, bucket):
    for name, rows in [("b.csv", "2\n"), ("a.csv", "1\n"), ("c.ndjson", ""), ("sub/d.csv", "4\n")]:
        store.pipe(f"{bucket}/in/{name}", f"n\n{rows}".encode())
    labels, table = read_all(connector(endpoint, bucket, key="in/*.csv"))
    assert labels == ["a.csv", "b.csv"]
    assert table.column("n").to_pylist() == [1, 2]
    labels, _ = read_all(connector(endpoint, bucket, key="in/**/*.csv"))
    assert labels == ["a.csv", "b.csv", "sub/d.csv"]


def test_a_prefix_is_a_folder_and_recursive_includes_sub_prefixes(endpoint, store, bucket):
    for name in ["x/1.csv", "x/_SUCCESS", "x/deeper/2.csv", "xy/3.csv"]:
        store.pipe(f"{bucket}/{name}", b"n\n1\n")
    assert [p.label for p in connector(endpoint, bucket, prefix="x/").plan()] == ["1.csv"]
    assert [p.label for p in connector(endpoint, bucket, prefix="x",
                                       recursive=True).plan()] == ["1.csv", "deeper/2.csv"]
    assert [p.label for p in connector(endpoint, bucket, prefix="", recursive=True).plan()] \
        == ["x/1.csv", "x/deeper/2.csv", "xy/3.csv"]


def test_a_new_plan_lists_the_bucket_as_it_is_now(endpoint, store, bucket):
    conn = connector(endpoint, bucket, prefix="grow/")
    store.pipe(f"{bucket}/grow/1.csv", b"n\n1\n")
    assert [p.label for p in conn.plan()] == ["1.csv"]
    store.pipe(f"{bucket}/grow/2.csv", b"n\n2\n")
    assert [p.label for p in conn.plan()] == ["1.csv", "2.csv"]


def test_anonymous_access_reads_a_public_bucket(endpoint, store):
    public = f"raysight-public-{uuid.uuid4().hex[:8]}"
    store.mkdir(public, acl="public-read")
    store.pipe(f"{public}/t.parquet", parquet_bytes(TABLE))
    store.chmod(f"{public}/t.parquet", acl="public-read")
    conn = ObjectStorageConnector(ObjectStorageSourceConfig(
        bucket=public, key="t.parquet", endpoint_url=endpoint, anonymous=True))
    assert read_all(conn)[1].to_pylist() == TABLE.to_pylist()


def test_anonymous_access_to_a_private_object_is_permission_denied(endpoint, store, bucket):
    store.pipe(f"{bucket}/t.parquet", parquet_bytes(TABLE))
    conn = ObjectStorageConnector(ObjectStorageSourceConfig(
        bucket=bucket, key="t.parquet", endpoint_url=endpoint, anonymous=True))
    with pytest.raises(PermissionDenied, match=f"permission denied: s3://{bucket}"):
        read_all(conn)


def test_a_file_source_reads_s3_and_memory_urls(endpoint, store, bucket, monkeypatch):
    store.pipe(f"{bucket}/f/t.parquet", parquet_bytes(TABLE))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = FileConnector(FileSourceConfig(path=f"s3://{bucket}/f/t.parquet"))
    assert read_all(s3)[1].to_pylist() == TABLE.to_pylist()
    folder = FileConnector(FileSourceConfig(path=f"s3://{bucket}/f"))
    assert [p.label for p in folder.plan()] == ["t.parquet"]
    store.pipe(f"{bucket}/f/u.parquet", parquet_bytes(TABLE))  # s3fs caches listings
    assert [p.label for p in folder.plan()] == ["t.parquet", "u.parquet"]

    import fsspec

    memory = f"memory://raysight-{uuid.uuid4().hex[:8]}/t.parquet"
    with fsspec.open(memory, "wb") as f:
        f.write(parquet_bytes(TABLE))
    assert read_all(FileConnector(FileSourceConfig(path=memory)))[1].equals(TABLE)


# ---------------------------------------------------------------------------------------------
# what is missing or unreachable


def test_a_missing_bucket_fails_the_job_naming_the_bucket_without_outputs(endpoint, tmp_path):
    result = run_job(tmp_path, source(endpoint, "raysight-no-such-bucket", prefix="sales/"),
                     f"s3_nobucket_{uuid.uuid4().hex[:8]}")
    assert result.state == "FAILED" and result.input_error, result.errors
    error = result.errors[0]
    assert error["node"] == "rows"
    assert (f"object_storage source s3://raysight-no-such-bucket/sales/ (endpoint {endpoint}, "
            "region us-east-1): bucket 'raysight-no-such-bucket' does not exist"
            in error["message"])
    assert not (Path(result.run_dir) / "rows.parquet").exists()


@pytest.mark.parametrize(("fields", "problem"), [
    ({"key": "nope.csv"}, "no object with key 'nope.csv' in bucket"),
    ({"key": "in/*.parquet"}, "no object of bucket '{bucket}' matches key 'in/\\*.parquet'"),
    ({"prefix": "empty/"}, "no objects under prefix 'empty/' of bucket '{bucket}'"),
])
def test_a_key_or_prefix_without_objects_is_an_input_error_naming_it(
        endpoint, store, bucket, fields, problem):
    store.pipe(f"{bucket}/in/a.csv", b"n\n1\n")
    with pytest.raises(InputError, match=problem.format(bucket=bucket)) as err:
        connector(endpoint, bucket, **fields).plan()
    assert err.value.details["source"].startswith(f"object_storage source s3://{bucket}/")


def test_objects_of_mixed_formats_keep_the_file_connectors_message(endpoint, store, bucket):
    store.pipe(f"{bucket}/mixed/a.csv", b"n\n1\n")
    store.pipe(f"{bucket}/mixed/b.ndjson", b'{"n": 1}\n')
    with pytest.raises(InputError, match="mixes formats"):
        connector(endpoint, bucket, key="mixed/*").plan()


def test_an_unreachable_endpoint_is_a_transient_error_naming_it(bucket):
    dead = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(TransientError, match=f"endpoint {dead}.*cannot reach"):
        connector(dead, bucket, prefix="sales/").plan()


def test_an_unreachable_endpoint_fails_the_job_as_transient(tmp_path):
    dead = f"http://127.0.0.1:{unused_port()}"
    result = run_job(tmp_path, source(dead, "b", prefix="p/"), f"s3_dead_{uuid.uuid4().hex[:8]}",
                     max_retries=0)
    assert result.state == "FAILED" and not result.input_error
    assert result.errors[0]["category"] == "transient" and result.errors[0]["node"] == "rows"
    assert f"endpoint {dead}" in result.errors[0]["message"]


def test_no_credentials_anywhere_is_an_input_error_saying_how_to_give_them(
        endpoint, bucket, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    conn = ObjectStorageConnector(ObjectStorageSourceConfig(
        bucket=bucket, prefix="p/", endpoint_url=endpoint))
    with pytest.raises(InputError, match="no AWS credentials where the objects are opened"):
        conn.plan()


def test_a_variable_that_is_not_set_is_an_input_error_naming_it(endpoint, bucket, monkeypatch):
    monkeypatch.delenv("RAYSIGHT_NO_SUCH_S3_VAR", raising=False)
    conn = connector(endpoint, bucket, prefix="p/",
                     secret_access_key="${RAYSIGHT_NO_SUCH_S3_VAR}")
    with pytest.raises(InputError, match="RAYSIGHT_NO_SUCH_S3_VAR is not set") as err:
        conn.plan()
    assert err.value.details["variable"] == "RAYSIGHT_NO_SUCH_S3_VAR"


# ---------------------------------------------------------------------------------------------
# secrets


def ray_logs() -> Path | None:
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    return Path(node.get_logs_dir_path()) if node is not None else None


def test_no_secret_reaches_the_run_directory_errors_logs_or_ray_tasks(
        endpoint, store, bucket, tmp_path):
    put_parts(store, bucket, "ok/", TABLE, parts=2)
    job_id = f"s3_secret_{uuid.uuid4().hex[:8]}"
    good = run_job(tmp_path / "good", source(endpoint, bucket, prefix="ok/"), job_id)
    assert good.state == "COMPLETED", good.errors
    bad = run_job(tmp_path / "bad", source(endpoint, bucket, key="missing.parquet"),
                  f"{job_id}_bad")
    assert bad.state == "FAILED"
    for run in (good, bad):
        run_dir = Path(run.run_dir)
        assert "${RAYSIGHT_TEST_S3_SECRET}" in (run_dir / "spec.json").read_text()
        for secret in (SECRET, TOKEN):
            assert files_contain(run_dir, secret) == []
            assert secret not in str(run.errors)
    tasks = job_tasks(job_id, expect=4)
    assert tasks and not [t.name for t in tasks if SECRET in t.name or TOKEN in t.name]
    logs = ray_logs()
    if logs is not None:
        for secret in (SECRET, TOKEN):
            assert files_contain(logs, secret) == []


def test_what_ray_tasks_receive_holds_no_secret(endpoint, store, bucket):
    store.pipe(f"{bucket}/p/a.csv", b"n\n1\n")
    conn = connector(endpoint, bucket, prefix="p/")
    shipped = pickle.dumps((conn, conn.plan()))
    assert SECRET.encode() not in shipped and TOKEN.encode() not in shipped
    assert b"${RAYSIGHT_TEST_S3_SECRET}" in shipped


@pytest.mark.parametrize("field", ["secret_access_key", "session_token"])
def test_a_secret_written_into_the_spec_is_refused_without_echoing_it(endpoint, field):
    literal = f"literal-{uuid.uuid4().hex}"
    with pytest.raises(InputError, match=f"`{field}` must name an environment variable") as err:
        parse_graph_spec({
            "version": 2, "job_id": "s3_literal",
            "sources": {"rows": source(endpoint, "b", prefix="p/", **{field: literal})},
            "analyses": {"profile": {"from": "rows", "type": "descriptive"}},
        })
    assert literal not in str(err.value)


# ---------------------------------------------------------------------------------------------
# the spec


@pytest.mark.parametrize(("fields", "problem"), [
    ({}, "exactly one of `key`"),
    ({"key": "a.csv", "prefix": "p/"}, "exactly one of `key`"),
    ({"key": "a.csv", "path": "s3://b/a.csv"}, "not `path`"),
    ({"key": "/a.csv"}, "no leading /"),
    ({"key": "a.csv", "bucket": "s3://b"}, "a bucket is a name"),
    ({"key": "a.csv", "anonymous": True, "access_key_id": "${K}",
      "secret_access_key": "${S}"}, "anonymous: true` reads unsigned"),
    ({"key": "a.csv", "access_key_id": "${K}"}, "together"),
    ({"key": "a.csv", "access_key_id": "${K}", "secret_access_key": "${bad name}"},
     "not an environment variable reference"),
    ({"key": "a.csv", "endpoint_url": "127.0.0.1:9000"}, "endpoint_url"),
])
def test_a_wrong_source_is_refused_by_the_spec(fields, problem):
    with pytest.raises(ValidationError, match=problem):
        ObjectStorageSourceConfig(**{"bucket": "b", **fields})


def test_the_spec_copy_reparses_to_the_same_source(endpoint):
    config = ObjectStorageSourceConfig(**{k: v for k, v in source(endpoint, "b", key="a.csv")
                                          .items() if k != "type"})
    dumped = config.model_dump(mode="json")
    assert "path" not in dumped and config.path == "s3://b/a.csv"
    assert ObjectStorageSourceConfig(**dumped) == config


# ---------------------------------------------------------------------------------------------
# the command line


def cli_spec(tmp_path: Path, src: dict[str, Any]) -> str:
    spec = {"version": 2, "job_id": f"s3_cli_{uuid.uuid4().hex[:8]}", "sources": {"rows": src},
            "analyses": {"profile": {"from": "rows", "type": "descriptive", "columns": ["id"]}},
            "exports": [{"from": "profile", "format": "csv", "path": "profile.csv"}],
            "execution": {"max_retries": 0, "timeout_s": 120}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return str(path)


def test_the_cli_runs_an_object_storage_job_and_exits_zero(endpoint, store, bucket, tmp_path,
                                                           capsys):
    put_parts(store, bucket, "p/", TABLE, parts=2)
    runs = tmp_path / "runs"
    code = main(["run", cli_spec(tmp_path, source(endpoint, bucket, prefix="p/")),
                 "--run-dir", str(runs), "--quiet"])
    assert code == 0, capsys.readouterr()
    assert len(list(runs.rglob("profile.csv"))) == 1


def test_the_cli_exits_two_for_a_missing_bucket_and_writes_no_output(endpoint, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["run", cli_spec(tmp_path, source(endpoint, "raysight-none", prefix="p/")),
                 "--run-dir", str(runs), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "bucket 'raysight-none' does not exist" in out + err and "Traceback" not in out + err
    assert list(runs.rglob("profile.csv")) == []


def test_the_cli_exits_one_for_an_unreachable_endpoint(tmp_path, capsys):
    dead = f"http://127.0.0.1:{unused_port()}"
    code = main(["run", cli_spec(tmp_path, source(dead, "b", prefix="p/")),
                 "--run-dir", str(tmp_path / "runs"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"endpoint {dead}" in out + err and SECRET not in out + err
