"""Job graphs end to end: several analyses of one source in one job, and a join, each measured
against its peer in the same run.

1. ``three``: three analyses (a profile of v1..v3, sum of v1 by id1, mean of v3 by id3) of one
   Parquet source of ``--rows`` db-benchmark rows, as one job graph (the source loads once, the
   analyses run concurrently) against the same three as three version 1 jobs, one after the
   other (each loads the source).
2. ``join``: a ``--rows`` fact table joined with a ``--rows / 10`` dimension table on an integer
   key (inner), the joined rows summed by a dimension column, as one job graph against Polars
   reading both files and doing the same in this process. The fact table is written as
   ``--partitions`` files (raysight's partitions).

Checkpoints are off (a benchmark of the work, not of persisting it); each time is the best of
``--repeat`` runs, and every ratio is against the peer in the same run::

    python benchmarks/bench_graph.py --rows 10000000 --partitions 8

``--breakdown`` prints where the time of each job's last run went, step by step, from its
trace: the step's tasks, when the first started and the last ended (seconds after the job's
first task started), and the sum of its tasks' durations (more than the span where tasks ran
side by side)::

    python benchmarks/bench_graph.py --rows 10000000 --only three --breakdown
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbbench_data  # noqa: E402
from timing import best_of  # noqa: E402

from raysight.job.graph_spec import parse_graph_spec  # noqa: E402
from raysight.job.pipeline import AnalysisJob  # noqa: E402
from raysight.job.result import JobResult  # noqa: E402
from raysight.job.spec import parse_spec  # noqa: E402

EXECUTION = {"checkpoint": False, "timeout_s": 3600}
ANALYSES: dict[str, dict[str, Any]] = {
    "profile": {"type": "descriptive", "columns": ["v1", "v2", "v3"]},
    "by_id1": {"type": "aggregation", "group_by": ["id1"], "sort": False,
               "metrics": [{"column": "v1", "function": "sum", "alias": "v1"}]},
    "by_id3": {"type": "aggregation", "group_by": ["id3"], "sort": False,
               "metrics": [{"column": "v3", "function": "mean", "alias": "v3"}]},
}


def write_parts(df: pl.DataFrame, folder: Path, parts: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-df.height // parts)
    for i, part in enumerate(df.iter_slices(size)):
        part.write_parquet(folder / f"part-{i:03d}.parquet")
    return str(folder)


def run(job: AnalysisJob, label: str) -> None:
    result = job.run()
    assert result.state == "COMPLETED", result.errors
    LAST[label] = result


def records(trace: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step record of a trace and of its children (dynamic and nested steps)."""
    yield from trace["records"]
    for child in trace["children"]:
        yield from records(child)


def breakdown(label: str, result: JobResult) -> None:
    """Print the steps of one run: tasks, first start, last end, span, summed durations."""
    timed = [r for r in records(result.trace)
             if r["started_at"] is not None and r["state"] != "skipped"]
    start = min((r["started_at"] for r in timed), default=0.0)
    steps: dict[str, list[float]] = {}
    for r in timed:
        first, last, total, tasks = steps.setdefault(r["step"], [r["started_at"], 0.0, 0.0, 0])
        steps[r["step"]] = [min(first, r["started_at"]), max(last, r["ended_at"]),
                            total + (r["duration_s"] or 0.0), tasks + 1]
    print(f"  {label}: {result.execution_time_s:.2f} s (job), "
          f"{result.trace['duration_s']:.2f} s (workflow)")
    print(f"    {'step':<34} {'tasks':>5} {'start':>6} {'end':>6} {'span':>6} {'sum':>6}")
    for name, (first, last, total, tasks) in sorted(steps.items(), key=lambda kv: kv[1][0]):
        print(f"    {name:<34} {int(tasks):>5} {first - start:6.2f} {last - start:6.2f} "
              f"{last - first:6.2f} {total:6.2f}")


def three(source: str, runs: Path) -> dict[str, float]:
    def graph() -> None:
        spec = parse_graph_spec({
            "version": 2, "execution": EXECUTION,
            "sources": {"data": {"type": "file", "path": source}},
            "analyses": {name: {"from": "data", **a} for name, a in ANALYSES.items()}})
        run(AnalysisJob(spec, run_dir=runs), "three: one graph")

    def separate() -> None:
        for name, analysis in ANALYSES.items():
            spec = parse_spec({"source": {"type": "file", "path": source},
                               "analysis": analysis, "execution": EXECUTION})
            run(AnalysisJob(spec, run_dir=runs), f"three: job {name}")

    return {"graph": best_of(graph, ARGS.repeat), "separate": best_of(separate, ARGS.repeat)}


def join(fact: str, dim: str, runs: Path) -> dict[str, float]:
    def ours() -> None:
        spec = parse_graph_spec({
            "version": 2, "execution": EXECUTION,
            "sources": {"fact": {"type": "file", "path": fact},
                        "dim": {"type": "file", "path": dim}},
            "joins": {"joined": {"left": "fact", "right": "dim", "on": ["key"],
                                 "strategy": ARGS.strategy}},
            "analyses": {"by_group": {"from": "joined", "type": "aggregation",
                                      "group_by": ["group"], "sort": False,
                                      "metrics": [{"column": "v1", "function": "sum",
                                                   "alias": "v1"}]}}})
        run(AnalysisJob(spec, run_dir=runs), "join: one graph")

    def polars() -> None:
        facts = pl.read_parquet(f"{fact}/*.parquet")
        dims = pl.read_parquet(f"{dim}/*.parquet")
        facts.join(dims, on="key").group_by("group").agg(pl.col("v1").sum())

    return {"raysight": best_of(ours, ARGS.repeat), "polars": best_of(polars, ARGS.repeat)}


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", choices=["three", "join"], default=None)
    parser.add_argument("--strategy", choices=["auto", "broadcast", "shuffle"], default="auto",
                        help="the join's strategy (auto broadcasts a side under 16 MiB)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--breakdown", action="store_true",
                        help="print each job's steps (tasks, start, end, span, summed time)")
    ARGS = parser.parse_args(argv)
    ray.init(logging_level=logging.ERROR, log_to_driver=False)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        df = pl.from_arrow(dbbench_data.generate(ARGS.rows, 100))
        assert isinstance(df, pl.DataFrame)
        if ARGS.only in (None, "three"):
            source = write_parts(df, root / "g1", ARGS.partitions)
            out["three"] = three(source, root / "runs")
            t = out["three"]
            print(f"three analyses of {ARGS.rows:,} rows, {ARGS.partitions} partitions: "
                  f"one graph {t['graph']:.2f} s, three jobs {t['separate']:.2f} s, "
                  f"ratio {t['graph'] / t['separate']:.2f}")
        if ARGS.only in (None, "join"):
            dim_rows = max(ARGS.rows // 10, 1)
            rng = np.random.default_rng(7)
            facts = df.select(pl.Series("key", rng.integers(0, dim_rows, df.height)), "v1")
            dims = pl.DataFrame({"key": np.arange(dim_rows),
                                 "group": rng.integers(0, 100, dim_rows)})
            fact = write_parts(facts, root / "fact", ARGS.partitions)
            dim = write_parts(dims, root / "dim", 1)
            out["join"] = join(fact, dim, root / "runs")
            t = out["join"]
            print(f"join {ARGS.rows:,} x {dim_rows:,} rows, {ARGS.partitions} partitions, "
                  f"strategy {ARGS.strategy}: "
                  f"raysight {t['raysight']:.2f} s, Polars {t['polars']:.2f} s, "
                  f"ratio {t['raysight'] / t['polars']:.2f}")
    if ARGS.breakdown:
        print("steps of the last run of each job:")
        for label, result in LAST.items():
            breakdown(label, result)
    if ARGS.json:
        ARGS.json.write_text(json.dumps({"rows": ARGS.rows, "partitions": ARGS.partitions,
                                         "results": out}, indent=2))
    return 0


ARGS: argparse.Namespace
#: the last result of each job, by label (for --breakdown)
LAST: dict[str, JobResult] = {}

if __name__ == "__main__":
    raise SystemExit(main())
