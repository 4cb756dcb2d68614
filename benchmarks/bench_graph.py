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
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbbench_data  # noqa: E402
from timing import best_of  # noqa: E402

from raysight.job.graph_spec import parse_graph_spec  # noqa: E402
from raysight.job.pipeline import AnalysisJob  # noqa: E402
from raysight.job.spec import parse_spec  # noqa: E402

EXECUTION = {"checkpoint": False, "timeout_s": 3600}
ANALYSES = {
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


def run(job: AnalysisJob) -> None:
    result = job.run()
    assert result.state == "COMPLETED", result.errors


def three(source: str, runs: Path) -> dict[str, float]:
    def graph() -> None:
        spec = parse_graph_spec({
            "version": 2, "execution": EXECUTION,
            "sources": {"data": {"type": "file", "path": source}},
            "analyses": {name: {"from": "data", **a} for name, a in ANALYSES.items()}})
        run(AnalysisJob(spec, run_dir=runs))

    def separate() -> None:
        for analysis in ANALYSES.values():
            spec = parse_spec({"source": {"type": "file", "path": source},
                               "analysis": analysis, "execution": EXECUTION})
            run(AnalysisJob(spec, run_dir=runs))

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
        run(AnalysisJob(spec, run_dir=runs))

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
    ARGS = parser.parse_args(argv)
    ray.init(logging_level="ERROR", log_to_driver=False)
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
    if ARGS.json:
        ARGS.json.write_text(json.dumps({"rows": ARGS.rows, "partitions": ARGS.partitions,
                                         "results": out}, indent=2))
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    raise SystemExit(main())
