"""A connector another package installs is found through the ``raysight.connectors`` entry
point: listed with its options by ``raysight plugins``, validated in specs, its schema used
before the run, and read by a job, all without touching raysight."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

MODULE = '''
"""A connector of consecutive integers (a third-party package)."""
from typing import Literal

import pyarrow as pa
from pydantic import Field

from raysight.plugins import Connector, PartitionSpec, PluginConfig


class CounterConfig(PluginConfig):
    type: Literal["counter"] = "counter"
    rows: int = Field(ge=0, description="how many integers")
    partitions: int = Field(default=2, ge=1)


class CounterConnector(Connector[CounterConfig]):
    """Integers 0..rows-1 with their parity, in equal ranges."""

    name = "counter"
    Config = CounterConfig

    def plan(self):
        n, k = self.config.rows, self.config.partitions
        return [PartitionSpec(f"range {i}", "counter", 0, {"lo": n * i // k,
                                                           "hi": n * (i + 1) // k})
                for i in range(k)]

    def read(self, partition):
        lo, hi = partition.options["lo"], partition.options["hi"]
        values = pa.array(range(lo, hi), pa.int64())
        return pa.table({"n": values, "odd": pa.compute.bit_wise_and(values, 1)})

    def schema(self):
        return pa.schema([("n", pa.int64()), ("odd", pa.int64())])
'''


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """``raysight_counter`` installed as a distribution would be: a module and its
    dist-info with the entry point, on PYTHONPATH."""
    root = tmp_path_factory.mktemp("site")
    (root / "raysight_counter.py").write_text(MODULE)
    info = root / "raysight_counter-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: raysight-counter\n"
                                   "Version: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[raysight.connectors]\ncounter = raysight_counter:CounterConnector\n")
    return root


def raysight(package: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("raysight", path=os.path.dirname(sys.executable))
    assert exe is not None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(package), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=240)


def spec(tmp_path: Path, source: dict, column: str = "odd") -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({
        "version": 1, "job_id": "counter-job", "source": source,
        "analysis": {"type": "aggregation", "group_by": [column],
                     "metrics": [{"function": "count", "alias": "count"},
                                 {"column": "n", "function": "sum", "alias": "total"}]},
        "exports": [{"format": "parquet", "path": "by_parity.parquet"}]}))
    return path


def test_an_installed_connector_is_listed_with_its_options(package, tmp_path):
    out = raysight(package, "plugins", "connectors", "counter", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "counter  (raysight-counter 0.3): Integers 0..rows-1" in out.stdout
    assert "rows: int (required) - how many integers" in out.stdout
    assert "partitions: int (default 2)" in out.stdout
    listed = raysight(package, "plugins", cwd=tmp_path)
    assert "connectors: counter, database" in listed.stdout


def test_an_installed_connectors_options_are_validated(package, tmp_path):
    out = raysight(package, "validate", str(spec(tmp_path, {"type": "counter", "rows": -1})),
                   cwd=tmp_path)
    assert out.returncode == 2
    assert "source.rows: Input should be greater than or equal to 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_job_reads_an_installed_connector_and_checks_its_schema_first(package, tmp_path):
    out = raysight(package, "run", str(spec(tmp_path, {"type": "counter", "rows": 1001,
                                                       "partitions": 3})),
                   "--run-dir", "runs", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    got = pl.read_parquet(next((tmp_path / "runs").glob("counter-job*/by_parity.parquet")))
    expected = (pl.DataFrame({"n": range(1001)}).with_columns(odd=pl.col("n") % 2)
                .group_by("odd").agg(pl.len().alias("count"), pl.col("n").sum().alias("total"))
                .sort("odd"))
    assert got.rows() == expected.rows()
    # the connector's schema() lets the job refuse a missing column before anything runs
    missing = raysight(package, "run", str(spec(tmp_path / "runs", {"type": "counter",
                                                                    "rows": 10}, "parity")),
                       "--run-dir", "runs2", cwd=tmp_path)
    assert missing.returncode == 2
    assert "parity" in missing.stdout + missing.stderr
    assert not (tmp_path / "runs2").exists() or not any((tmp_path / "runs2").iterdir())



THREADED_PARSE = """
import threading
from raysight.job.graph_spec import parse_graph_spec
spec = {"version": 1, "source": {"type": "file", "path": "x.csv"},
        "analysis": {"type": "descriptive"}}
errors = []
def parse():
    try:
        parse_graph_spec(spec)
    except Exception as err:
        errors.append(repr(err))
threads = [threading.Thread(target=parse) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""


def test_specs_parsed_by_threads_of_a_fresh_process_all_see_every_plugin():
    # the first use loads the plugins' entry points; threads that arrive meanwhile wait
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", THREADED_PARSE], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
