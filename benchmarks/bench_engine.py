"""Per-step overhead of the workflow engine against the same tasks written with ray.remote.

Two shapes, each N trivial steps: a chain (each step takes the previous output) and a fan-out
(N independent steps on the same input). Every raysight step is a Ray task with a report,
retries, timeouts and a trace; the raw version is plain ``ray.remote`` calls. Also measured:
the chain with checkpoints on (every output persisted). Times are the best of ``--repeat``::

    python benchmarks/bench_engine.py --steps 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import ray
from timing import best_of

from raysight.engine.checkpoint import CheckpointStore
from raysight.engine.context import RunContext
from raysight.engine.executor import Executor, fetch
from raysight.engine.workflow import Sequence, parallel, step


def noop(x=None):
    return x


@ray.remote
def raw_noop(x=None):
    return x


def raw_chain(n: int) -> None:
    ref = raw_noop.remote(0)
    for _ in range(n - 1):
        ref = raw_noop.remote(ref)
    ray.get(ref)


def raw_fanout(n: int) -> None:
    ray.get([raw_noop.remote(0) for _ in range(n)])


def ours_chain(n: int, checkpoints: str | None = None) -> Callable[[], None]:
    flow = Sequence(tuple(step(noop, name=f"s{i}") for i in range(n)))

    def run() -> None:
        store = CheckpointStore(tempfile.mkdtemp(dir=checkpoints)) if checkpoints else None
        fetch(Executor().run(flow, RunContext("bench_chain", checkpoints=store), 0))

    return run


def ours_fanout(n: int) -> Callable[[], None]:
    flow = parallel(*[step(noop, name=f"s{i}") for i in range(n)])

    def run() -> None:
        fetch(Executor().run(flow, RunContext("bench_fanout"), 0))

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    ray.init(logging_level="ERROR", log_to_driver=False)
    n = args.steps
    raw_fanout(n)  # warm the worker pool
    with tempfile.TemporaryDirectory() as tmp:
        times = {
            "raw chain": best_of(lambda: raw_chain(n), args.repeat),
            "raysight chain": best_of(ours_chain(n), args.repeat),
            "raysight chain + checkpoints": best_of(ours_chain(n, tmp), args.repeat),
            "raw fan-out": best_of(lambda: raw_fanout(n), args.repeat),
            "raysight fan-out": best_of(ours_fanout(n), args.repeat),
        }
    print(f"{n} trivial steps, best of {args.repeat}")
    for name, seconds in times.items():
        print(f"  {name:30s} {seconds:7.3f} s  {1000 * seconds / n:6.2f} ms/step")
    print(f"  chain overhead ratio      {times['raysight chain'] / times['raw chain']:.2f}x")
    print(f"  checkpoint cost ratio     "
          f"{times['raysight chain + checkpoints'] / times['raysight chain']:.2f}x")
    print(f"  fan-out overhead ratio    {times['raysight fan-out'] / times['raw fan-out']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"steps": n, "seconds": times}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
