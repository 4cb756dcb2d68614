"""The ten db-benchmark group-by questions as job specs, answered like DuckDB's SQL.

Each ``examples/dbbench/qNN.yaml`` is validated as a job spec; its aggregation kernel runs on
the committed G1 data (1e5 rows, K=100) and on the same size with 5 % nulls, three ways: ``run``
on the whole table, the shuffle path (shard → reduce per shard → finish) over 4 partitions, and
partial → combine over 4 partitions. Each answer must equal DuckDB's SQL answer on the same
data: same columns and rows (in any order: the questions have none), integers exact, floats to
1e-9 relative. Two documented differences are mapped in the SQL: DuckDB's ``sum`` of a group
without values is NULL where raysight's (and Polars') is 0, and ``corr`` is NaN in DuckDB where
raysight gives null (fewer than two complete pairs, or a constant column). ``r2`` also gets an
absolute tolerance of 1e-12: it lies in [0, 1], and where the exact value is 0 both systems
return rounding noise of that size.

Also the specification of the data generator ``benchmarks/dbbench_data.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from compare import assert_frames_match
from conftest import EXAMPLES, REPO_ROOT

from raysight.analyses.aggregation import Aggregation
from raysight.job.spec import load_spec
from raysight.registry import analyses

DATA = EXAMPLES / "data" / "dbbench_G1_1e5_1e2_0_0.parquet"
QUESTIONS = [f"q{i:02d}" for i in range(1, 11)]
PARTITIONS = 4
SHARDS = 3


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dbbench_data", REPO_ROOT / "benchmarks" / "dbbench_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dbbench_data"] = module
    spec.loader.exec_module(module)
    return module


dbbench_data = _generator()

# DuckDB's SUM over a group without values is NULL (raysight: 0), and it sums BIGINT into
# HUGEINT; corr is NaN where raysight gives null.
SQL = {
    "q01": "SELECT id1, CAST(coalesce(sum(v1), 0) AS BIGINT) AS v1 FROM x GROUP BY id1",
    "q02": "SELECT id1, id2, CAST(coalesce(sum(v1), 0) AS BIGINT) AS v1 FROM x GROUP BY id1, id2",
    "q03": "SELECT id3, CAST(coalesce(sum(v1), 0) AS BIGINT) AS v1, avg(v3) AS v3 FROM x "
    "GROUP BY id3",
    "q04": "SELECT id4, avg(v1) AS v1, avg(v2) AS v2, avg(v3) AS v3 FROM x GROUP BY id4",
    "q05": "SELECT id6, CAST(coalesce(sum(v1), 0) AS BIGINT) AS v1, "
    "CAST(coalesce(sum(v2), 0) AS BIGINT) AS v2, coalesce(sum(v3), 0) AS v3 FROM x GROUP BY id6",
    "q06": "SELECT id4, id5, median(v3) AS median_v3, stddev(v3) AS sd_v3 FROM x "
    "GROUP BY id4, id5",
    "q07": "SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM x GROUP BY id3",
    "q08": "SELECT id6, v3 AS largest2_v3 FROM (SELECT id6, v3, row_number() OVER "
    "(PARTITION BY id6 ORDER BY v3 DESC) AS rank FROM x WHERE v3 IS NOT NULL) WHERE rank <= 2",
    "q09": "SELECT id2, id4, CASE WHEN isnan(r2) THEN NULL ELSE r2 END AS r2 FROM "
    "(SELECT id2, id4, pow(corr(v1, v2), 2) AS r2 FROM x GROUP BY id2, id4)",
    "q10": "SELECT id1, id2, id3, id4, id5, id6, coalesce(sum(v3), 0) AS v3, count(*) AS count "
    "FROM x GROUP BY id1, id2, id3, id4, id5, id6",
}
ABSOLUTE = {"r2": 1e-12}


@functools.cache
def data(variant: str) -> pl.DataFrame:
    """``na0``: the committed example file; ``na5``: 5 % nulls, generated (seeded)."""
    if variant == "na0":
        return pl.read_parquet(DATA)
    frame = pl.from_arrow(dbbench_data.generate(10**5, 100, na=5, seed=5))
    assert isinstance(frame, pl.DataFrame)
    return frame


@functools.cache
def kernel(question: str) -> Aggregation:
    spec = load_spec(EXAMPLES / "dbbench" / f"{question}.yaml")
    built = analyses.build(spec.analysis)
    assert isinstance(built, Aggregation)
    return built


@functools.cache
def duckdb_answer(question: str, variant: str) -> pl.DataFrame:
    con = duckdb.connect()
    con.register("x", data(variant).to_arrow())
    answer = con.sql(SQL[question]).pl()
    con.close()
    return answer


def partitions(df: pl.DataFrame) -> list[pl.DataFrame]:
    size = -(-df.height // PARTITIONS)
    return [df.slice(i * size, size) for i in range(PARTITIONS)]


def answer(agg: Aggregation, df: pl.DataFrame, path: str) -> pa.Table:
    if path == "run":
        return agg.run(df).table
    parts = partitions(df)
    if path == "combine":
        return agg.combine([agg.partial(p) for p in parts]).table
    shards = [agg.shard(p, SHARDS) for p in parts]
    reduced = [agg.reduce_shard([s[i] for s in shards]) for i in range(SHARDS)]
    return agg.finish(reduced).table


def assert_same_rows(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Equal as sets of rows: integers and strings exact, floats to 1e-9 relative."""
    assert actual.columns == expected.columns
    order = actual.columns
    assert_frames_match(actual.sort(order, nulls_last=True),
                        expected.sort(order, nulls_last=True), ABSOLUTE)


# ---------------------------------------------------------------------------------------------
# the questions


@pytest.mark.parametrize("question", QUESTIONS)
def test_question_spec_validates_as_a_job_with_a_parquet_export(question: str) -> None:
    spec = load_spec(EXAMPLES / "dbbench" / f"{question}.yaml")
    assert spec.analysis.type == "aggregation"
    assert spec.source.path == "examples/data/dbbench_G1_1e5_1e2_0_0.parquet"
    assert [e.format for e in spec.exports] == ["parquet"]


@pytest.mark.parametrize("path", ["run", "shuffle", "combine"])
@pytest.mark.parametrize("variant", ["na0", "na5"])
@pytest.mark.parametrize("question", QUESTIONS)
def test_question_equals_duckdb_sql(question: str, variant: str, path: str) -> None:
    actual = pl.from_arrow(answer(kernel(question), data(variant), path))
    assert isinstance(actual, pl.DataFrame)
    assert_same_rows(actual, duckdb_answer(question, variant))


def test_holistic_questions_take_the_shuffle_path_and_the_others_partial_combine() -> None:
    shuffled = {q: kernel(q).shuffle_keys() for q in QUESTIONS}
    assert shuffled == {q: None for q in QUESTIONS} | {"q06": ["id4", "id5"], "q08": ["id6"]}


def test_q8_gives_one_row_per_value_two_per_group_largest_first() -> None:
    table = kernel("q08").run(data("na0")).table
    assert table.column_names == ["id6", "largest2_v3"]
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    assert frame.height == 2 * frame.get_column("id6").n_unique()
    firsts, seconds = frame.get_column("largest2_v3").to_numpy().reshape(-1, 2).T
    assert (firsts >= seconds).all()


def test_question_row_counts_at_1e5_rows_and_k_100() -> None:
    df = data("na0")
    rows = {q: kernel(q).run(df).table.num_rows for q in ("q01", "q03", "q04", "q08")}
    assert rows == {"q01": 100, "q03": 1000, "q04": 100, "q08": 2000}


# ---------------------------------------------------------------------------------------------
# the data generator


def test_committed_example_data_is_the_generator_output() -> None:
    expected = pl.from_arrow(dbbench_data.generate(10**5, 100, na=0, sort=False))
    assert isinstance(expected, pl.DataFrame)
    assert pl.read_parquet(DATA).equals(expected)


def test_same_seed_gives_the_same_table_and_another_seed_another() -> None:
    a = dbbench_data.generate(1000, 10, na=5, seed=1)
    assert a.equals(dbbench_data.generate(1000, 10, na=5, seed=1))
    assert not a.equals(dbbench_data.generate(1000, 10, na=5, seed=2))


def test_columns_types_and_value_ranges_follow_the_description() -> None:
    df = pl.from_arrow(dbbench_data.generate(20_000, 10))
    assert isinstance(df, pl.DataFrame)
    assert dict(df.schema) == {
        **dict.fromkeys(["id1", "id2", "id3"], pl.String),
        **dict.fromkeys(["id4", "id5", "id6", "v1", "v2"], pl.Int64),
        "v3": pl.Float64,
    }
    stats = df.select(
        pl.col("id1", "id2", "id4", "id5", "id3", "id6").n_unique(),
        pl.col("id1").min().alias("id1_min"),
        pl.col("id1").max().alias("id1_max"),
        pl.col("id3").max().alias("id3_max"),
        pl.col("id6").max().alias("id6_max"),
        pl.col("v1").min().alias("v1_min"),
        pl.col("v1").max().alias("v1_max"),
        pl.col("v2").max().alias("v2_max"),
        (pl.col("v3") >= 0).all().alias("v3_low"),
        (pl.col("v3") < 100).all().alias("v3_high"),
        ((pl.col("v3") - pl.col("v3").round(6)).abs() < 1e-12).all().alias("v3_decimals"),
    ).row(0, named=True)
    assert stats == {
        "id1": 10, "id2": 10, "id4": 10, "id5": 10, "id3": 2000, "id6": 2000,
        "id1_min": "id001", "id1_max": "id010", "id3_max": "id0000002000", "id6_max": 2000,
        "v1_min": 1, "v1_max": 5, "v2_max": 15, "v3_low": True, "v3_high": True,
        "v3_decimals": True,
    }  # fmt: skip


def test_na_nulls_five_percent_of_each_id_value_set_and_of_each_value_column() -> None:
    df = pl.from_arrow(dbbench_data.generate(100_000, 100, na=5))
    assert isinstance(df, pl.DataFrame)
    distinct = df.select(pl.col("id1", "id4", "id3", "id6").drop_nulls().n_unique()).row(0)
    assert distinct == (95, 95, 950, 950)
    assert df.select(pl.col("v1", "v2", "v3").null_count()).row(0) == (5000, 5000, 5000)


def test_sorted_variant_is_ordered_by_the_ids_with_nulls_last() -> None:
    df = pl.from_arrow(dbbench_data.generate(5000, 20, na=5, sort=True))
    assert isinstance(df, pl.DataFrame)
    ids = ["id1", "id2", "id3", "id4", "id5", "id6"]
    assert df.equals(df.sort(ids, nulls_last=True, maintain_order=True))
    assert df.get_column("id1").is_null().any()


@pytest.mark.parametrize(
    ("n", "k", "na", "sort", "name"),
    [(10**7, 100, 0, False, "G1_1e7_1e2_0_0"), (10**5, 2, 5, True, "G1_1e5_2e0_5_1"),
     (150_000, 10, 0, False, "G1_1.5e5_1e1_0_0")],
)  # fmt: skip
def test_dataset_name_follows_the_benchmark(n: int, k: int, na: int, sort: bool, name: str) -> None:
    assert dbbench_data.dataset_name(n, k, na, sort) == name


def test_command_line_writes_the_named_file(tmp_path: Path, capsys) -> None:
    argv = ["--rows", "1e3", "--k", "10", "--na", "5", "--format", "csv", "--out", str(tmp_path),
            "--prefix", "dbbench_"]  # fmt: skip
    assert dbbench_data.main(argv) == 0
    path = tmp_path / "dbbench_G1_1e3_1e1_5_0.csv"
    assert capsys.readouterr().out.strip() == str(path)
    expected = pl.from_arrow(dbbench_data.generate(1000, 10, na=5))
    assert isinstance(expected, pl.DataFrame)
    assert pl.read_csv(path, schema=expected.schema).equals(expected)
