"""The design's job mix through the job manager at concurrency 1, 5, 10 and 20, against the
same jobs run directly (threads of one driver, as many at once).

The mix is 4 source kinds (CSV, Parquet, SQLite, JSON lines; PostgreSQL instead of JSON lines
when it answers on 127.0.0.1:5432) × 5 kinds of analysis (descriptive, aggregation, time
series, correlation, outliers), each job writing a CSV export, over the example sales data
(``--rows`` generated rows). At each level the same ``--jobs`` jobs are submitted at once to a
manager capped at that level, and run directly by as many threads; the report gives
throughput (jobs/s), p50/p95 latency from submission to the end, errors, and the manager's
overhead per job (the difference of the two makespans, per job)::

    python benchmarks/bench_manager.py --jobs 40 --rows 20000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import ray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import generate_data  # noqa: E402

from raysight.job.graph_spec import parse_graph_spec  # noqa: E402
from raysight.job.pipeline import AnalysisJob  # noqa: E402
from raysight.service.manager import start_manager  # noqa: E402

ANALYSES: dict[str, dict[str, Any]] = {
    "descriptive": {"type": "descriptive", "columns": ["amount", "quantity"]},
    "aggregation": {"type": "aggregation", "group_by": ["region"],
                    "metrics": [{"function": "count", "alias": "n"},
                                {"column": "amount", "function": "sum", "alias": "total"}]},
    "time_series": {"type": "time_series", "time_column": "date", "value_columns": ["amount"],
                    "operations": ["sum"], "interval": "weekly"},
    "correlation": {"type": "correlation_matrix", "columns": ["amount", "quantity"]},
    "outliers": {"type": "outlier_detection", "column": "amount", "include_rows": False},
}


def make_sources(rows: int, out: Path) -> dict[str, dict[str, Any]]:
    table = generate_data.generate("sales", rows, seed=1)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(pl.col("date").cast(pl.Date))
    frame.write_csv(out / "sales.csv")
    frame.write_parquet(out / "sales.parquet")
    rows_of = frame.with_columns(pl.col("date").cast(pl.Utf8)).rows()
    columns = ", ".join(frame.columns)
    marks = ", ".join("?" * frame.width)
    with sqlite3.connect(out / "sales.sqlite") as db:
        db.execute(f"CREATE TABLE sales ({columns})")
        db.executemany(f"INSERT INTO sales VALUES ({marks})", rows_of)
    sources: dict[str, dict[str, Any]] = {
        "csv": {"type": "file", "path": str(out / "sales.csv")},
        "parquet": {"type": "file", "path": str(out / "sales.parquet")},
        "sqlite": {"type": "database", "path": str(out / "sales.sqlite"),
                   "query": "SELECT * FROM sales"},
    }
    if _listening(5432):
        url = "postgresql://postgres@127.0.0.1:5432/test"
        import psycopg

        with psycopg.connect(url) as db:
            db.execute("DROP TABLE IF EXISTS bench_manager_sales")
            db.execute("CREATE TABLE bench_manager_sales (order_id bigint, date date, "
                       "product_category text, region text, customer_id bigint, "
                       "quantity bigint, amount double precision)")
            with db.cursor().copy(f"COPY bench_manager_sales ({columns}) FROM STDIN") as copy:
                for row in frame.rows():
                    copy.write_row(row)
        sources["postgresql"] = {"type": "database", "url": url,
                                 "table": "bench_manager_sales"}
    else:
        frame.write_ndjson(out / "sales.jsonl")
        sources["jsonl"] = {"type": "file", "path": str(out / "sales.jsonl"),
                            "format": "json"}
    return sources


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def mix(sources: dict[str, dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
    kinds = [(s, a) for s in sources for a in ANALYSES]
    return [{"version": 1, "user_id": "bench", "source": sources[s],
             "analysis": ANALYSES[a], "exports": [{"format": "csv", "path": "out.csv"}]}
            for s, a in (kinds[i % len(kinds)] for i in range(jobs))]


def through_manager(specs: list[dict[str, Any]], level: int, runs: Path) -> dict[str, Any]:
    manager = start_manager(str(runs), level, name=f"bench-{level}-{os.getpid()}")
    try:
        began = time.time()
        ids = [manager.submit(AnalysisJob(parse_graph_spec(s), run_dir=runs)) for s in specs]
        records = [manager.wait(i) for i in ids]
        makespan = max(r["completed_at"] for r in records) - began
        latencies = [r["completed_at"] - r["created_at"] for r in records]
        errors = sum(r["state"] != "COMPLETED" for r in records)
    finally:
        ray.kill(manager.handle, no_restart=True)
    return summary(len(specs), makespan, latencies, errors)


def direct(specs: list[dict[str, Any]], level: int, runs: Path) -> dict[str, Any]:
    began = time.time()

    def one(spec: dict[str, Any]) -> tuple[float, bool]:
        result = AnalysisJob(parse_graph_spec(spec), run_dir=runs).run()
        return time.time() - began, result.state == "COMPLETED"

    with ThreadPoolExecutor(level) as pool:
        done = list(pool.map(one, specs))
    makespan = time.time() - began
    return summary(len(specs), makespan, [t for t, _ in done], sum(not ok for _, ok in done))


def summary(n: int, makespan: float, latencies: list[float], errors: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {"jobs": n, "makespan_s": round(makespan, 3),
            "throughput_jobs_per_s": round(n / makespan, 2),
            "p50_s": round(statistics.median(ordered), 3),
            "p95_s": round(ordered[min(n - 1, int(0.95 * n))], 3), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--levels", default="1,5,10,20")
    parser.add_argument("--address", default=None)
    args = parser.parse_args()
    ray.init(address=args.address or "local", logging_level="ERROR", log_to_driver=False)
    work = Path(tempfile.mkdtemp(prefix="bench-manager-"))
    try:
        sources = make_sources(args.rows, work)
        specs = mix(sources, args.jobs)
        warm = work / "warm"
        direct(specs[:len(ANALYSES) * len(sources)], 2, warm)  # workers and imports warm
        through_manager(specs[:4], 4, warm)
        report = {"sources": list(sources), "rows": args.rows, "cpus": os.cpu_count(),
                  "levels": {}}
        for level in (int(x) for x in args.levels.split(",")):
            managed = through_manager(specs, level, work / f"managed-{level}")
            plain = direct(specs, level, work / f"direct-{level}")
            overhead = (managed["makespan_s"] - plain["makespan_s"]) / args.jobs
            report["levels"][level] = {"manager": managed, "direct": plain,
                                       "overhead_per_job_s": round(overhead, 3)}
            print(f"concurrency {level:>2}: manager {managed['throughput_jobs_per_s']:6.2f} "
                  f"jobs/s p50 {managed['p50_s']:.2f} s p95 {managed['p95_s']:.2f} s "
                  f"errors {managed['errors']} | direct "
                  f"{plain['throughput_jobs_per_s']:6.2f} jobs/s p50 {plain['p50_s']:.2f} s "
                  f"p95 {plain['p95_s']:.2f} s errors {plain['errors']} | overhead "
                  f"{overhead * 1000:+.0f} ms/job", flush=True)
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
