"""Write seeded synthetic data: the main example's sales table and one table per kind of source.

Schemas:

* ``sales``: order_id, date, product_category, region, customer_id, quantity, amount. Amounts
  have two decimals; about 5 % are negative (refunds) and 3 % null, and every amount of the
  (Books, Central) group is null. About 2 % of the categories are null; one category is
  non-ASCII ("Café & Bäckerei"). Rows are in date order.
* ``database``: id, name, value, timestamp, category.
* ``file``: id, product, price, date, customer, region (about 1 % of prices null).
* ``object``: transaction_id, amount, currency, timestamp, customer_id, merchant, category,
  status.
* ``stream``: event_id, event_type, device_id, user_id, timestamp, and a nested
  ``data`` object flattened into data_page, data_duration, data_referrer; timestamps within the hour
  before 2023-06-30T12:00:00Z, in order.

Timestamps are written as ISO 8601 in UTC (``2023-03-14T09:26:53Z``), dates as ``2023-03-14``.
The same ``--seed`` and ``--rows`` always give the same rows, and ``--files K`` splits them, in
order, into K files ``<schema>_parts/part-000.<ext>`` ... whose concatenation is the one-file
output. Usage::

    python examples/generate_data.py --rows 500 --seed 7 --out examples/data
    python examples/generate_data.py --rows 500 --seed 7 --out examples/data --files 4
    python examples/generate_data.py --rows 1000000 --seed 1 --out /tmp/data --schema all \\
        --format parquet
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

SCHEMAS = ("sales", "database", "file", "object", "stream")
FORMATS = {"csv": "csv", "parquet": "parquet", "ndjson": "jsonl"}  # format -> file extension

CATEGORIES = ["Electronics", "Clothing", "Home & Garden", "Books", "Sports", "Café & Bäckerei"]
CATEGORY_WEIGHTS = [0.25, 0.2, 0.15, 0.15, 0.15, 0.1]
#: typical unit price per category (same order as CATEGORIES)
UNIT_PRICES = [350.0, 45.0, 80.0, 18.0, 60.0, 9.0]
REGIONS = ["North", "South", "East", "West", "Central"]
#: the (category, region) group whose amounts are all null
NULL_AMOUNT_GROUP = ("Books", "Central")

ISO_DATETIME = "%Y-%m-%dT%H:%M:%SZ"  # the timestamps are UTC
ISO_DATE = "%Y-%m-%d"
YEAR_START = np.datetime64("2023-01-01T00:00:00", "s")
STREAM_NOW = np.datetime64("2023-06-30T12:00:00", "s")


def sales(rows: int, rng: np.random.Generator) -> pa.Table:
    """Orders of one year: the main example's data."""
    date = np.sort(np.datetime64("2023-01-01", "D") + rng.integers(0, 365, rows))
    category = rng.choice(len(CATEGORIES), rows, p=CATEGORY_WEIGHTS)
    region = rng.integers(0, len(REGIONS), rows)
    quantity = rng.integers(1, 11, rows)
    unit_price = np.asarray(UNIT_PRICES)[category] * rng.uniform(0.5, 1.5, rows)
    amount = np.round(quantity * unit_price, 2)
    amount = np.where(rng.random(rows) < 0.05, -amount, amount)  # refunds
    null_group = (category == CATEGORIES.index(NULL_AMOUNT_GROUP[0])) & (
        region == REGIONS.index(NULL_AMOUNT_GROUP[1])
    )
    amount_null = (rng.random(rows) < 0.03) | null_group
    category_null = rng.random(rows) < 0.02
    return pa.table(
        {
            "order_id": pa.array(np.arange(1, rows + 1)),
            "date": pa.array(date, pa.date32()),
            "product_category": _pick(CATEGORIES, category, category_null),
            "region": _pick(REGIONS, region),
            "customer_id": pa.array(rng.integers(1, max(rows // 5, 10) + 1, rows)),
            "quantity": pa.array(quantity),
            "amount": pa.array(amount, mask=amount_null),
        }
    )


def database(rows: int, rng: np.random.Generator) -> pa.Table:
    """Database rows: items with a value, a 2023 timestamp and a category A-E."""
    ids = np.arange(1, rows + 1)
    return pa.table(
        {
            "id": pa.array(ids),
            "name": _format("Item {}", ids),
            "value": pa.array(np.round(rng.uniform(0, 1000, rows), 2)),
            "timestamp": _utc(_days_of_2023(rng, rows) + rng.integers(0, 86400, rows)),
            "category": _pick(list("ABCDE"), rng.integers(0, 5, rows)),
        }
    )


def file(rows: int, rng: np.random.Generator) -> pa.Table:
    """File rows: product sales with a price, a date, a customer and a region."""
    return pa.table(
        {
            "id": pa.array(np.arange(1, rows + 1)),
            "product": _format("Product {}", rng.integers(0, 100, rows)),
            "price": pa.array(rng.integers(0, 1000, rows) / 10, mask=rng.random(rows) < 0.01),
            "date": pa.array(_days_of_2023(rng, rows).astype("datetime64[D]"), pa.date32()),
            "customer": _format("Customer {}", rng.integers(0, 500, rows)),
            "region": _pick(REGIONS, rng.integers(0, len(REGIONS), rows)),
        }
    )


def object_storage(rows: int, rng: np.random.Generator) -> pa.Table:
    """Object-storage rows: payment transactions."""
    return pa.table(
        {
            "transaction_id": _uuids("txn-", rng, rows),
            "amount": pa.array(rng.integers(0, 100_000, rows) / 100),
            "currency": _pick(["USD", "EUR", "GBP", "JPY", "CNY"], rng.integers(0, 5, rows)),
            "timestamp": _utc(YEAR_START + rng.integers(0, 365 * 86400, rows)),
            "customer_id": _format("cust-{}", rng.integers(0, 5000, rows)),
            "merchant": _format("Merchant {}", rng.integers(0, 200, rows)),
            "category": _pick(
                ["Retail", "Food", "Travel", "Entertainment", "Services"],
                rng.integers(0, 5, rows),
            ),
            "status": _pick(
                ["completed", "pending", "failed", "refunded"], rng.integers(0, 4, rows)
            ),
        }
    )


def stream(rows: int, rng: np.random.Generator) -> pa.Table:
    """Stream events of the last hour, with the ``data`` object flattened."""
    seconds_ago = np.sort(rng.integers(0, 3600, rows))[::-1]
    return pa.table(
        {
            "event_id": _uuids("evt-", rng, rows),
            "event_type": _pick(
                ["click", "view", "purchase", "login", "logout"], rng.integers(0, 5, rows)
            ),
            "device_id": _format("dev-{}", rng.integers(0, 1000, rows)),
            "user_id": _format("user-{}", rng.integers(0, 2000, rows)),
            "timestamp": _utc(STREAM_NOW - seconds_ago),
            "data_page": _format("/page/{}", rng.integers(0, 100, rows)),
            "data_duration": pa.array(rng.integers(0, 300, rows)),
            "data_referrer": _pick(
                ["direct", "search", "social", "email"], rng.integers(0, 4, rows)
            ),
        }
    )


GENERATORS: dict[str, Callable[[int, np.random.Generator], pa.Table]] = {
    "sales": sales,
    "database": database,
    "file": file,
    "object": object_storage,
    "stream": stream,
}


def generate(schema: str, rows: int, seed: int) -> pa.Table:
    """The table of one schema; the same (schema, rows, seed) always gives the same table."""
    if schema not in GENERATORS:
        raise ValueError(f"unknown schema {schema!r}; known: {', '.join(SCHEMAS)}")
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    return GENERATORS[schema](rows, np.random.default_rng(seed))


def write(table: pa.Table, out: Path, name: str, fmt: str = "csv", files: int = 1) -> list[Path]:
    """Write a table as ``out/<name>.<ext>``, or split in order into ``out/<name>_parts/``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if files < 1:
        raise ValueError(f"files must be >= 1, got {files}")
    ext = FORMATS[fmt]
    if files == 1:
        targets = [out / f"{name}.{ext}"]
    else:
        targets = [out / f"{name}_parts" / f"part-{i:03d}.{ext}" for i in range(files)]
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for target, start, stop in zip(targets, bounds[:-1], bounds[1:], strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_one(pl.DataFrame(table.slice(start, stop - start)), target, fmt)
    return targets


def _write_one(df: pl.DataFrame, target: Path, fmt: str) -> None:
    if fmt == "parquet":
        df.write_parquet(target)
        return
    if fmt == "csv":
        df.write_csv(target, datetime_format=ISO_DATETIME, date_format=ISO_DATE)
        return
    # JSON has no date type: write the same ISO strings as the CSV files
    df = df.with_columns(
        pl.col(pl.Datetime).dt.strftime(ISO_DATETIME), pl.col(pl.Date).dt.strftime(ISO_DATE)
    )
    df.write_ndjson(target)


# ---------------------------------------------------------------------------------------------
# Column builders (vectorized: no Python loop over rows)


def _pick(values: Sequence[str], index: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    codes = pa.array(index.astype(np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(codes, pa.array(values, pa.string())).dictionary_decode()


def _format(template: str, numbers: np.ndarray) -> pa.Array:
    series = pl.Series(numbers)
    return pl.select(pl.format(template, series)).to_series().to_arrow().cast(pa.string())


def _days_of_2023(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Midnights of random 2023 days, the day of month 1-28."""
    month = np.datetime64("2023-01", "M") + rng.integers(0, 12, rows)
    day = month.astype("datetime64[D]") + rng.integers(0, 28, rows)
    return day.astype("datetime64[s]")


def _utc(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype("datetime64[s]"), pa.timestamp("s", tz="UTC"))


def _uuids(prefix: str, rng: np.random.Generator, rows: int) -> pa.Array:
    """Random (seeded) version-4 UUIDs, formatted as 8-4-4-4-12 hex digits after prefix."""
    raw = rng.integers(0, 256, (rows, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    binary = pa.Array.from_buffers(pa.binary(16), rows, [None, pa.py_buffer(raw.tobytes())])
    hexed = pl.Series(binary.cast(pa.binary())).bin.encode("hex")
    pieces = [hexed.str.slice(start, length) for start, length in _UUID_GROUPS]
    joined = pl.select(pl.concat_str([pl.lit(prefix), pl.concat_str(pieces, separator="-")]))
    return joined.to_series().to_arrow().cast(pa.string())


_UUID_GROUPS = [(0, 8), (8, 4), (12, 4), (16, 4), (20, 12)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, required=True, help="rows per schema")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--schema", choices=[*SCHEMAS, "all"], default="sales")
    parser.add_argument("--format", choices=list(FORMATS), default="csv")
    parser.add_argument("--files", type=int, default=1, help="split each table into K files")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    if args.files < 1:
        parser.error("--files must be >= 1")
    schemas = SCHEMAS if args.schema == "all" else (args.schema,)
    for schema in schemas:
        table = generate(schema, args.rows, args.seed)
        for path in write(table, args.out, schema, args.format, args.files):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
