"""Broadcast against shuffle for a fact table joined with dimension tables of growing size.

A fact table of ``--rows`` rows (int64 key, float64 value) in ``--partitions`` partitions, each
``ray.put`` once, is left-joined with a dimension table (int64 key, int64 and string attributes)
of 1e3 .. 1e6 rows, three ways: a broadcast (one ``join_broadcast`` task per fact partition,
the dimension table a single object), a shuffle (``hash_shards`` tasks over every partition of
both sides into as many shards as fact partitions, then one ``join_shard`` task per shard), and
Polars in one process over the concatenated tables as the peer. Times are the best of
``--repeat``, from submitting the first task until every output is in the object store (no
result is fetched by the driver)::

    python benchmarks/bench_join.py --rows 10000000

Measured on one Ray node of a shared machine (other jobs running), 8 partitions, best of 2;
seconds, and shuffle / broadcast (above 1: broadcasting is faster)::

    python benchmarks/bench_join.py --rows 10000000 --dims 10000 100000 300000 1000000
    dim rows   dim MiB   polars   broadcast   shuffle   shuffle/broadcast
      10,000      0.42    0.528       0.565     1.645        2.91
     100,000      4.36    1.272       0.507     0.882        1.74
     300,000     13.33    1.264       0.497     0.655        1.32
   1,000,000     44.71    1.485       2.446     0.720        0.29

    python benchmarks/bench_join.py --rows 3000000
       1,000      0.03    0.059       0.357     0.355        0.99
      10,000      0.42    0.046       0.112     0.394        3.51
     100,000      4.36    0.064       0.150     0.365        2.44
     300,000     13.33    0.160       0.386     0.352        0.91
   1,000,000     44.71    0.316       0.658     0.412        0.63

A broadcast costs about (partitions x dimension size): every task builds the dimension's hash
table; a shuffle about (fact + dimension size) plus a fixed cost of its two rounds of tasks. So
the crossover grows with the fact table: between 4 and 13 MiB of dimension for 3e6 fact rows,
between 13 and 45 MiB for 1e7. ``BROADCAST_BYTES`` in
:mod:`raysight.analyses.relational.strategy` is 16 MiB: broadcasting up to there is at worst
about 10 % slower than shuffling at the small fact size and faster at the large one, and above
45 MiB it lost 3.4x. (Sizes are Arrow ``nbytes`` of the dimension table.)
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl
import pyarrow as pa
import ray
from timing import best_of

from raysight.analyses.relational import (
    JoinConfig,
    JoinPlan,
    hash_shards,
    join_broadcast,
    join_shard,
    plan_join,
)
from raysight.tables import register_arrow_serializer, to_arrow


@ray.remote
def broadcast_task(part: pa.Table, dim: pa.Table, plan: JoinPlan) -> pa.Table:
    register_arrow_serializer()
    return join_broadcast(part, [dim], plan, small_side="right")


@ray.remote
def shard_task(table: pa.Table, keys: list[str], shards: int) -> tuple[pa.Table, ...]:
    register_arrow_serializer()
    return tuple(hash_shards(table, keys, None, shards))


@ray.remote
def join_task(plan: JoinPlan, n_left: int, *tables: pa.Table) -> pa.Table:
    register_arrow_serializer()
    return join_shard(tables[:n_left], tables[n_left:], plan)


def fact_parts(rows: int, dim_rows: int, partitions: int, seed: int) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"k": rng.integers(0, dim_rows, rows), "v": rng.random(rows)})
    step = -(-rows // partitions)
    return [frame.slice(i * step, step).to_arrow() for i in range(partitions)]


def dim_table(rows: int) -> pa.Table:
    keys = np.arange(rows)
    return to_arrow(pl.DataFrame({"k": keys, "a": keys * 7}).with_columns(
        name=pl.format("customer {}", pl.col("k"))))


def wait(refs: list[ray.ObjectRef]) -> None:
    ray.wait(refs, num_returns=len(refs), fetch_local=False)


def run_broadcast(facts: list[ray.ObjectRef], dim: ray.ObjectRef, plan: JoinPlan) -> None:
    wait([broadcast_task.remote(part, dim, plan) for part in facts])


def run_shuffle(facts: list[ray.ObjectRef], dim: ray.ObjectRef, plan: JoinPlan,
                shards: int) -> None:
    left = [shard_task.options(num_returns=shards).remote(p, ["k"], shards) for p in facts]
    right = [shard_task.options(num_returns=shards).remote(dim, ["k"], shards)]
    wait([join_task.remote(plan, len(left), *[s[i] for s in left], *[s[i] for s in right])
          for i in range(shards)])


def measure(config: JoinConfig, rows: int, dim_rows: int, partitions: int,
            repeat: int) -> dict[str, float]:
    """Seconds of the three ways for one dimension size, and their ratios."""
    parts, dim = fact_parts(rows, dim_rows, partitions, 1), dim_table(dim_rows)
    plan = plan_join(config, parts[0].schema, dim.schema, "bench")
    fact_refs, dim_ref = [ray.put(p) for p in parts], ray.put(dim)
    whole = pl.concat([pl.from_arrow(p) for p in parts])  # type: ignore[misc]
    dim_frame = pl.from_arrow(dim)
    assert isinstance(dim_frame, pl.DataFrame)
    polars_s = best_of(lambda: whole.join(dim_frame, on="k", how="left"), repeat)
    broadcast_s = best_of(lambda: run_broadcast(fact_refs, dim_ref, plan), repeat)
    shuffle_s = best_of(lambda: run_shuffle(fact_refs, dim_ref, plan, partitions), repeat)
    return {"dim_rows": dim_rows, "dim_mib": round(dim.nbytes / 2**20, 2),
            "polars_s": round(polars_s, 3), "broadcast_s": round(broadcast_s, 3),
            "shuffle_s": round(shuffle_s, 3),
            "broadcast_vs_polars": round(broadcast_s / polars_s, 2),
            "shuffle_vs_polars": round(shuffle_s / polars_s, 2),
            "shuffle_vs_broadcast": round(shuffle_s / broadcast_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--dims", type=int, nargs="+",
                        default=[1_000, 10_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args()

    ray.init(num_cpus=args.num_cpus, logging_level="ERROR", log_to_driver=False)
    register_arrow_serializer()
    config = JoinConfig(left="facts", right="dim", on=["k"], how="left")
    rows = []
    warm = [ray.put(p) for p in fact_parts(10_000, 100, args.partitions, 0)]
    warm_plan = plan_join(config, ray.get(warm[0]).schema, dim_table(100).schema, "warm")
    run_broadcast(warm, ray.put(dim_table(100)), warm_plan)  # start the workers untimed
    run_shuffle(warm, ray.put(dim_table(100)), warm_plan, args.partitions)
    for dim_rows in args.dims:
        row = measure(config, args.rows, dim_rows, args.partitions, args.repeat)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"rows": args.rows, "partitions": args.partitions, "results": rows}))


if __name__ == "__main__":
    main()
