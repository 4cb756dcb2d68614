"""The db-benchmark group-by data ``G1_{N}_{K}_{NA}_{sort}``, generated with seeded numpy.

Reimplemented from the description in ``shared/design/db-benchmark-groupby.md`` (not from the
benchmark's scripts). N rows drawn uniformly with replacement:

========  =================================  ======================  ======
column    values                             distinct                type
========  =================================  ======================  ======
id1, id2  ``id001`` … ``id{K:03}``           K                       string
id3       ``id0000000001`` … (10 digits)     N/K                     string
id4, id5  1 … K                              K                       int64
id6       1 … N/K                            N/K                     int64
v1        1 … 5                                                      int64
v2        1 … 15                                                     int64
v3        uniform in [0, 100), 6 decimals                            float64
========  =================================  ======================  ======

``na`` (a percentage, e.g. 5): for each id column, na % of its distinct values (rounded half up)
become null in all their rows; for v1..v3, na % of the N rows each become null.
``sort``: rows sorted by id1..id6 ascending, nulls last. The same arguments always give the
same table. N/K is rounded down (at least 1).

Python::

    from dbbench_data import generate, dataset_name, write
    table = generate(10**7, 100, na=0, sort=False, seed=108)     # a pyarrow.Table
    write(table, f"/tmp/{dataset_name(10**7, 100, 0, False)}.parquet")

Command line (prints the path it wrote)::

    python benchmarks/dbbench_data.py --rows 1e7 --k 100 --na 5 --sort 1 --out /tmp/g1
    python benchmarks/dbbench_data.py --rows 1e5 --k 100 --out examples/data --prefix dbbench_
    python benchmarks/dbbench_data.py --rows 1e6 --k 10 --format csv --out /tmp/g1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ID_COLUMNS = ("id1", "id2", "id3", "id4", "id5", "id6")
VALUE_COLUMNS = ("v1", "v2", "v3")
FORMATS = {"parquet": ".parquet", "csv": ".csv"}
DEFAULT_SEED = 108


def dataset_name(n: int, k: int, na: int = 0, sort: bool = False) -> str:
    """The benchmark's name of a dataset: ``G1_1e7_1e2_0_0`` for 1e7 rows, K=100, no NA."""
    return f"G1_{_scientific(n)}_{_scientific(k)}_{na}_{int(sort)}"


def _scientific(x: int) -> str:
    exponent = len(str(x)) - 1
    return f"{x / 10**exponent:g}e{exponent}"


def generate(n: int, k: int, na: int = 0, sort: bool = False, seed: int = DEFAULT_SEED) -> pa.Table:
    """The G1 table of ``n`` rows with ``k`` groups per low-cardinality id (see module doc)."""
    if n < 0 or k < 1:
        raise ValueError(f"need n >= 0 and k >= 1, got n={n}, k={k}")
    if not 0 <= na <= 100:
        raise ValueError(f"na is a percentage in [0, 100], got {na}")
    rng = np.random.default_rng(seed)
    nk = max(n // k, 1)
    draws = {
        "id1": (k, rng.integers(0, k, n, dtype=np.int64)),
        "id2": (k, rng.integers(0, k, n, dtype=np.int64)),
        "id3": (nk, rng.integers(0, nk, n, dtype=np.int64)),
        "id4": (k, rng.integers(0, k, n, dtype=np.int64)),
        "id5": (k, rng.integers(0, k, n, dtype=np.int64)),
        "id6": (nk, rng.integers(0, nk, n, dtype=np.int64)),
    }
    values = {
        "v1": rng.integers(1, 6, n, dtype=np.int64),
        "v2": rng.integers(1, 16, n, dtype=np.int64),
        "v3": np.round(rng.uniform(0, 100, n), 6),
    }
    columns: dict[str, pa.Array] = {}
    for name, (distinct, index) in draws.items():
        nulls = _percent(distinct, na)
        missing = None
        if nulls:
            is_null = np.zeros(distinct, dtype=bool)
            is_null[rng.choice(distinct, nulls, replace=False)] = True
            missing = is_null[index]  # every row of a chosen value
        if name in ("id1", "id2", "id3"):
            width = 10 if name == "id3" else 3
            labels = np.char.add("id", np.char.zfill(np.arange(1, distinct + 1).astype(str), width))
            columns[name] = pa.array(labels, pa.string()).take(pa.array(index, mask=missing))
        else:
            columns[name] = pa.array(index + 1, mask=missing)  # numpy int64 (typed: slow)
    for name, data in values.items():
        nulls = _percent(n, na)
        missing = None
        if nulls:
            missing = np.zeros(n, dtype=bool)
            missing[rng.choice(n, nulls, replace=False)] = True
        columns[name] = pa.array(data, mask=missing)
    table = pa.table(columns)
    if sort:
        table = table.sort_by([(c, "ascending", "at_end") for c in ID_COLUMNS])
    return table


def _percent(count: int, percent: int) -> int:
    """``percent`` % of ``count``, rounded half up (5 % of 10 is 1)."""
    return (count * percent * 2 + 100) // 200


def write(table: pa.Table, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``table`` as Parquet or CSV (``fmt`` defaults to the path's extension)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        pacsv.write_csv(table, path)
    return path


def _count(text: str) -> int:
    """``1e7`` or ``10000000`` as an int."""
    value = float(text)
    if value != int(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 1e7, got {text!r}")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=_count, default=10**7, help="N, e.g. 1e7 (default)")
    parser.add_argument("--k", type=_count, default=100, help="K, groups per id (default 100)")
    parser.add_argument("--na", type=int, default=0, help="percent of nulls, e.g. 5 (default 0)")
    parser.add_argument("--sort", type=int, choices=(0, 1), default=0, help="sort by id1..id6")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--format", choices=sorted(FORMATS), default="parquet")
    parser.add_argument("--out", type=Path, default=Path("."), help="output folder")
    parser.add_argument("--prefix", default="", help="file name prefix, e.g. dbbench_")
    args = parser.parse_args(argv)
    table = generate(args.rows, args.k, args.na, bool(args.sort), args.seed)
    name = args.prefix + dataset_name(args.rows, args.k, args.na, bool(args.sort))
    path = write(table, args.out / f"{name}{FORMATS[args.format]}", args.format)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
