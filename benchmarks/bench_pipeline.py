"""The example job (sales by category and region) end to end, against Polars, DuckDB and pandas.

Each system reads the same CSV files, drops rows with a null category or amount, keeps
amount > 0, and computes count, sum, mean and the 95th percentile per (category, region).
raysight runs the whole job (load, preprocess, analyze, results with a Parquet export) on the
local Ray instance; the peers run the same query in this process. Times are the best of
``--repeat`` runs; the report gives each as a ratio to Polars in the same run::

    python benchmarks/bench_pipeline.py --rows 2000000 --files 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import ray
from timing import best_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import generate_data  # noqa: E402

from raysight.job.pipeline import AnalysisJob  # noqa: E402
from raysight.job.spec import parse_spec  # noqa: E402

KEYS = ["product_category", "region"]


def make_data(rows: int, files: int, out: Path) -> Path:
    table = generate_data.generate("sales", rows, seed=1)
    generate_data.write(table, out, "sales", "csv", files)
    return out / ("sales_parts" if files > 1 else "sales.csv")


def csv_glob(path: Path) -> str:
    return str(path / "*.csv") if path.is_dir() else str(path)


def polars_query(path: Path) -> pl.DataFrame:
    return (pl.scan_csv(csv_glob(path)).drop_nulls(["product_category", "amount"])
            .filter(pl.col("amount") > 0).group_by(KEYS).agg(
                pl.len().alias("sales_count"), pl.col("amount").sum().alias("total_sales"),
                pl.col("amount").mean().alias("avg_sale"),
                pl.col("amount").quantile(0.95, interpolation="linear").alias("p95_sale"))
            .sort(KEYS, nulls_last=True).collect())


def duckdb_query(path: Path) -> object:
    return duckdb.sql(f"""
        SELECT product_category, region, count(*) AS sales_count, sum(amount) AS total_sales,
               avg(amount) AS avg_sale, quantile_cont(amount, 0.95) AS p95_sale
        FROM read_csv_auto('{csv_glob(path)}')
        WHERE product_category IS NOT NULL AND amount IS NOT NULL AND amount > 0
        GROUP BY ALL ORDER BY ALL NULLS LAST""").arrow()


def pandas_query(path: Path) -> pd.DataFrame:
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    df = df.dropna(subset=["product_category", "amount"])
    df = df[df["amount"] > 0]
    return df.groupby(KEYS).agg(sales_count=("amount", "size"), total_sales=("amount", "sum"),
                                avg_sale=("amount", "mean"),
                                p95_sale=("amount", lambda s: s.quantile(0.95))).reset_index()


def raysight_job(path: Path, run_dir: Path) -> Callable[[], object]:
    spec = parse_spec({
        "source": {"type": "file", "path": str(path), "format": "csv"},
        "preprocessing": [{"op": "drop_missing", "columns": ["product_category", "amount"]},
                          {"op": "filter_rows", "condition": "amount > 0"}],
        "analysis": {"type": "aggregation", "group_by": KEYS, "metrics": [
            {"function": "count", "alias": "sales_count"},
            {"column": "amount", "function": "sum", "alias": "total_sales"},
            {"column": "amount", "function": "mean", "alias": "avg_sale"},
            {"column": "amount", "function": "percentile", "q": 0.95, "alias": "p95_sale"}]},
        "exports": [{"format": "parquet", "path": "result.parquet"}],
    })

    def run() -> object:
        result = AnalysisJob(spec, run_dir=run_dir).run()
        assert result.state == "COMPLETED", result.errors
        return result

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    ray.init(logging_level="ERROR", log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(args.rows, args.files, Path(tmp) / "data")
        peers: dict[str, Callable[[], object]] = {
            "polars": lambda: polars_query(data),
            "duckdb": lambda: duckdb_query(data),
            "pandas": lambda: pandas_query(data),
            "raysight": raysight_job(data, Path(tmp) / "runs"),
        }
        peers["raysight"]()  # warm the Ray workers once, as a long-running service would be
        times = {name: best_of(fn, args.repeat) for name, fn in peers.items()}
    base = times["polars"]
    print(f"sales by category, {args.rows:,} rows in {args.files} CSV file(s), "
          f"best of {args.repeat}")
    for name, seconds in times.items():
        print(f"  {name:9s} {seconds:8.3f} s   {seconds / base:5.2f}x polars")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "files": args.files,
                                         "seconds": times}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
