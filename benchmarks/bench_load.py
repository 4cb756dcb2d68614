"""Loading sources: a raysight job's load step against the reader it is built on, in one run.

1. ``files``: a ``--rows`` CSV file and the same rows as a Parquet file, each loaded through a
   job's load step (the ``source`` node's steps, run by the engine until every partition is
   in Ray's object store) against ``pyarrow.csv.read_csv`` / ``pyarrow.parquet.read_table`` of
   the same file in this process, and against the same partitions read by pyarrow alone in
   plain Ray tasks (what Ray itself costs: a task per partition, its table written into the
   object store).
2. ``postgres``: a ``--db-rows`` PostgreSQL table (built on the server with
   ``generate_series``) loaded through the load step, in one range and in ``--partitions``
   ranges of its id, against connectorx's own fetch of the whole table and, for context,
   ``pandas.read_sql`` over psycopg. Skipped when no PostgreSQL answers on ``--pg-url``.

Each time is the best of ``--repeat`` runs; every ratio is against the peer in the same run::

    python benchmarks/bench_load.py --rows 10000000 --db-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of  # noqa: E402

from raysight.engine.context import RunContext  # noqa: E402
from raysight.engine.executor import Executor  # noqa: E402
from raysight.job.graph_spec import parse_graph_spec  # noqa: E402
from raysight.job.pipeline import AnalysisJob  # noqa: E402

TABLE = "raysight_bench_load"


def load_step(source: dict[str, Any]) -> float:
    """The best time of the source node's steps of a one-analysis job on ``source``."""
    spec = parse_graph_spec({"version": 1, "source": source,
                             "analysis": {"type": "descriptive"},
                             "execution": {"checkpoint": False}})
    job = AnalysisJob(spec, job_id="bench-load")
    plan = job.node_flow("source")
    executor = Executor()

    def once() -> None:
        partitions = executor.run(plan, RunContext("bench-load"))
        ray.wait(list(partitions.items), num_returns=len(partitions.items), fetch_local=False)

    return best_of(once, ARGS.repeat)


@ray.remote
def _raw_read(path: str, fmt: str, options: dict[str, Any]) -> pa.Table:
    """One partition read by pyarrow alone in a plain Ray task (the raw-Ray peer)."""
    if fmt == "parquet":
        pfile = pq.ParquetFile(path, memory_map=True)
        return pfile.read_row_groups(options.get("row_groups",
                                                 range(pfile.metadata.num_row_groups)))
    with pa.memory_map(path) as f:
        f.seek(options.get("start", 0))
        data = f.read_buffer(options.get("end", f.size()) - options.get("start", 0))
    names = options.get("column_names")
    return pa_csv.read_csv(pa.BufferReader(data),
                           read_options=pa_csv.ReadOptions(column_names=names))


def raw_ray(source: dict[str, Any]) -> float:
    """The best time of reading the partitions the load step plans, each in a plain Ray task
    with pyarrow and nothing else (no raysight engine, statistics or checks)."""
    from raysight.connectors.files import FileConnector, FileSourceConfig

    parts = FileConnector(FileSourceConfig(**source)).plan()

    def once() -> None:
        refs = [_raw_read.remote(source["path"], p.options["format"], p.options)
                for p in parts]
        ray.wait(refs, num_returns=len(refs), fetch_local=False)

    return best_of(once, ARGS.repeat)


def frame(rows: int) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({
        "id": np.arange(rows),
        "key": rng.integers(0, 1000, rows),
        "v1": rng.random(rows),
        "v2": rng.normal(size=rows),
        "name": pa.array(np.char.add("item-", (np.arange(rows) % 5000).astype(str))),
    })


def files(root: Path) -> dict[str, dict[str, float]]:
    table = frame(ARGS.rows)
    csv_path, parquet_path = root / "data.csv", root / "data.parquet"
    pa_csv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    csv_source = {"type": "file", "path": str(csv_path)}
    parquet_source = {"type": "file", "path": str(parquet_path)}
    return {
        "csv": {"raysight": load_step(csv_source),
                "pyarrow": best_of(lambda: pa_csv.read_csv(csv_path), ARGS.repeat),
                "raw_ray": raw_ray(csv_source)},
        "parquet": {"raysight": load_step(parquet_source),
                    "pyarrow": best_of(lambda: pq.read_table(parquet_path), ARGS.repeat),
                    "raw_ray": raw_ray(parquet_source)},
    }


def postgres() -> dict[str, float] | None:
    import connectorx as cx
    import pandas as pd
    import psycopg

    try:
        conn = psycopg.connect(ARGS.pg_url, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as err:
        print(f"postgres: skipped ({err})")
        return None
    with conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} AS SELECT g AS id, random() AS v, md5(g::text) AS s,"
                     f" now() - g * interval '1 second' AS ts"
                     f" FROM generate_series(1, {ARGS.db_rows}) g")
        source = {"type": "database", "url": ARGS.pg_url, "table": TABLE}
        try:
            out = {
                "raysight": load_step(source),
                "raysight_ranges": load_step({**source, "partition_column": "id",
                                              "partitions": ARGS.partitions}),
                "connectorx": best_of(lambda: cx.read_sql(ARGS.pg_url, f"SELECT * FROM {TABLE}",
                                                          return_type="arrow"), ARGS.repeat),
                "pandas": best_of(lambda: pd.read_sql(f"SELECT * FROM {TABLE}", conn),
                                  ARGS.repeat),
            }
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    return out


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--db-rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4,
                        help="ranges of the PostgreSQL read")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["files", "postgres"], default=None)
    parser.add_argument("--json", type=Path)
    ARGS = parser.parse_args(argv)
    ray.init(logging_level="ERROR", log_to_driver=False)
    out: dict[str, Any] = {}
    if ARGS.only in (None, "files"):
        with tempfile.TemporaryDirectory() as tmp:
            out["files"] = files(Path(tmp))
        for kind, t in out["files"].items():
            print(f"{kind} {ARGS.rows:,} rows: raysight load {t['raysight']:.2f} s, pyarrow "
                  f"{t['pyarrow']:.2f} s, ratio {t['raysight'] / t['pyarrow']:.2f}; the same "
                  f"partitions in plain Ray tasks {t['raw_ray']:.2f} s, ratio "
                  f"{t['raysight'] / t['raw_ray']:.2f}")
    if ARGS.only in (None, "postgres"):
        t = postgres()
        if t is not None:
            out["postgres"] = t
            print(f"postgres {ARGS.db_rows:,} rows: raysight load {t['raysight']:.2f} s "
                  f"({ARGS.partitions} ranges: {t['raysight_ranges']:.2f} s), connectorx "
                  f"{t['connectorx']:.2f} s, pandas.read_sql {t['pandas']:.2f} s; ratio vs "
                  f"connectorx {t['raysight'] / t['connectorx']:.2f} "
                  f"(ranges {t['raysight_ranges'] / t['connectorx']:.2f}), vs pandas "
                  f"{t['raysight'] / t['pandas']:.2f}")
    if ARGS.json:
        ARGS.json.write_text(json.dumps(out, indent=2))
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    raise SystemExit(main())
