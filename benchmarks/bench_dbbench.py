"""The ten db-benchmark group-by questions: raysight's kernels on data already in Ray's object
store against Polars on a DataFrame, in the same run (see shared/design/db-benchmark-groupby.md).

raysight runs each question's job spec (examples/dbbench/qNN.yaml) through the same plan as a
job's analyze step: Ray tasks over the partitions in the object store (one partition: the
single-task fast path; several: partial/combine, or a shuffle for holistic metrics), and each
run includes fetching the answer to the driver. Polars runs the idiomatic query on its
DataFrame eagerly (the peer: the same deterministic in-memory engine), and as a lazy query
for reference. Each question runs twice per system, the systems taking turns; the best run
counts, as in db-benchmark (``--repeat`` runs more)::

    python benchmarks/bench_dbbench.py --rows 10000000 --k 100 --partitions 1
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import ray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbbench_data  # noqa: E402
from timing import timed  # noqa: E402

from raysight.engine.context import Partitions, RunContext  # noqa: E402
from raysight.engine.executor import Executor  # noqa: E402
from raysight.engine.workflow import Step  # noqa: E402
from raysight.job.pipeline import AnalysisJob  # noqa: E402
from raysight.job.spec import load_spec  # noqa: E402
from raysight.tables import register_arrow_serializer  # noqa: E402

POLARS: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = {
    "q01": lambda x: x.group_by("id1").agg(pl.col("v1").sum()),
    "q02": lambda x: x.group_by("id1", "id2").agg(pl.col("v1").sum()),
    "q03": lambda x: x.group_by("id3").agg(pl.col("v1").sum(), pl.col("v3").mean()),
    "q04": lambda x: x.group_by("id4").agg(pl.col("v1", "v2", "v3").mean()),
    "q05": lambda x: x.group_by("id6").agg(pl.col("v1", "v2", "v3").sum()),
    "q06": lambda x: x.group_by("id4", "id5").agg(pl.col("v3").median().alias("median_v3"),
                                                  pl.col("v3").std().alias("sd_v3")),
    "q07": lambda x: x.group_by("id3").agg(
        (pl.col("v1").max() - pl.col("v2").min()).alias("range_v1_v2")),
    "q08": lambda x: x.drop_nulls("v3").group_by("id6").agg(
        pl.col("v3").top_k(2).alias("largest2_v3")).explode("largest2_v3"),
    "q09": lambda x: x.group_by("id2", "id4").agg(
        (pl.corr("v1", "v2") ** 2).alias("r2")),
    "q10": lambda x: x.group_by("id1", "id2", "id3", "id4", "id5", "id6").agg(
        pl.col("v3").sum().alias("v3"), pl.len().alias("count")),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--sorted-output", action="store_true",
                        help="keep the specs' default key ordering (db-benchmark has none)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each question per system; the best counts (db-benchmark: 2)")
    parser.add_argument("--fan-in", type=int, default=None,
                        help="execution.combine_fan_in: partial states per merge task "
                             "(default: the spec's, 8); at least --partitions means one combine")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    ray.init(logging_level="ERROR", log_to_driver=False)
    register_arrow_serializer()
    df = pl.from_arrow(dbbench_data.generate(args.rows, args.k))
    assert isinstance(df, pl.DataFrame)
    # partitions go into the object store in Polars' own Arrow layout (string views), so a
    # task reads them without converting
    size = -(-df.height // args.partitions)
    refs = [
        ray.put(part.to_arrow(compat_level=pl.CompatLevel.newest()))
        for part in df.iter_slices(size)
    ]
    data = Partitions(refs)
    executor = Executor()
    rows = []
    for question, polars_query in POLARS.items():
        overrides = [] if args.sorted_output else ["analysis.sort=false"]
        if args.fan_in is not None:
            overrides.append(f"execution.combine_fan_in={args.fan_in}")
        spec = load_spec(ROOT / "examples" / "dbbench" / f"{question}.yaml", overrides)
        # the analyze steps exactly as a job plans them (fast path, tree combine or shuffle)
        plan = AnalysisJob(spec).node_flow("analysis")

        def ours(plan: Step = plan, job: str = f"dbbench-{question}") -> object:
            return ray.get(executor.run(plan, RunContext(job), data)).table

        # take turns so that all three see the same spells of a noisy machine
        times: dict[str, list[float]] = {"eager": [], "lazy": [], "ours": []}
        for _ in range(args.repeat):
            took, answer = timed(ours)
            times["ours"].append(took)
            took, expected = timed(lambda q=polars_query: q(df))
            times["eager"].append(took)
            took, _ = timed(lambda q=polars_query: q(df.lazy()).collect())  # type: ignore[arg-type]
            times["lazy"].append(took)
        assert answer.num_rows == expected.height, (question, answer.num_rows, expected.height)
        rows.append({"question": question, "rows": expected.height,
                     **{name: min(values) for name, values in times.items()}})
    fan_in = args.fan_in if args.fan_in is not None else "spec default"
    total = {name: sum(row[name] for row in rows) for name in ("eager", "lazy", "ours")}
    print(f"db-benchmark group-by, {args.rows:,} rows, K={args.k}, {len(refs)} partition(s), "
          f"fan-in {fan_in}, best of {args.repeat}, "
          f"output {'sorted' if args.sorted_output else 'unordered'}")
    print("  ratio, delta: raysight against Polars' eager query (the same in-memory engine);")
    print("  vs lazy: against Polars' lazy query (streaming engine, whose float results vary")
    print("  in the last bits from run to run; raysight streams only exact aggregations)")
    print(f"  {'question':8s} {'rows':>9s} {'eager s':>8s} {'lazy s':>8s} {'raysight s':>10s} "
          f"{'ratio':>6s} {'delta ms':>8s} {'vs lazy':>7s}")
    for row in [*rows, {"question": "total", "rows": None, **total}]:
        count = "" if row["rows"] is None else f"{row['rows']:9d}"
        print(f"  {row['question']:8s} {count:>9s} {row['eager']:8.3f} {row['lazy']:8.3f} "
              f"{row['ours']:10.3f} {row['ours'] / row['eager']:6.2f} "
              f"{1000 * (row['ours'] - row['eager']):8.0f} {row['ours'] / row['lazy']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "k": args.k, "partitions": len(refs),
                                         "fan_in": args.fan_in, "repeat": args.repeat,
                                         "questions": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
