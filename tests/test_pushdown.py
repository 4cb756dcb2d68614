"""A job reads only what it needs of a file source: the columns and rows its leading
``select_columns`` and ``filter_rows`` keep (Parquet column projection, row groups skipped by
their statistics, hive partition folders skipped by their values), with answers equal to
Polars reading everything; and hive-style partitioned folders read as typed columns."""

from __future__ import annotations

import io
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from polars.testing import assert_frame_equal

from raysight import registry
from raysight.connectors.files import FileConnector, FileSourceConfig
from raysight.errors import InputError
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob
from raysight.job.pushdown import leading_hints, read_hints
from raysight.plugins import ReadHints

ROWS = 100_000
GROUP = 10_000  # rows per row group: 10 groups, ids sorted


def wide_table(rows: int = ROWS) -> pa.Table:
    rng = np.random.default_rng(7)
    values = rng.random(rows)
    values[::97] = np.nan
    return pa.table({
        "id": np.arange(rows),
        "region": pa.array(np.array(["EU", "US", "日本", None], dtype=object)[np.arange(rows) % 4]),
        "amount": values,
        "day": pa.array(np.datetime64("2024-01-01") + np.arange(rows) // 300),
        **{f"pad{i}": rng.random(rows) for i in range(8)},
    })


def write_parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path, row_group_size=GROUP)
    return path


def ops(*items: dict) -> list:
    return [registry.preprocessors.build(_op_config(item)) for item in items]


def _op_config(item: dict):
    spec = parse_graph_spec({"version": 2, "job_id": "probe",
                             "sources": {"s": {"type": "file", "path": "x.csv"}},
                             "datasets": {"d": {"from": "s", "preprocessing": [item]}},
                             "analyses": {"a": {"from": "d", "type": "descriptive"}}})
    return spec.datasets["d"].preprocessing[0]


# -- what the job asks of a source ------------------------------------------------------------


def test_leading_filters_and_a_selection_name_the_columns_and_rows_a_dataset_keeps():
    hints = leading_hints(ops(
        {"op": "filter_rows", "condition": "id >= 100 AND region = 'EU'"},
        {"op": "select_columns", "columns": ["amount"]},
        {"op": "filter_rows", "condition": "amount > 0.5"},
        {"op": "fill_missing", "columns": ["amount"], "value": 0},
        {"op": "filter_rows", "condition": "amount < 0.9"},  # after another op: not pushed
    ))
    # the first filter reads id and region before the selection drops them
    assert hints.columns is not None and set(hints.columns) == {"amount", "id", "region"}
    assert hints.filters == (("id >= 100 AND region = 'EU'", "amount > 0.5"),)


def test_an_operation_before_any_filter_or_selection_needs_everything():
    assert leading_hints(ops({"op": "fill_missing", "columns": ["a"], "method": "mean"},
                             {"op": "select_columns", "columns": ["a"]})) == ReadHints()
    dropped = leading_hints(ops({"op": "select_columns", "columns": ["a"], "include": False}))
    assert dropped == ReadHints()


def graph(consumers: dict, exports: list | None = None) -> object:
    return parse_graph_spec({
        "version": 2, "job_id": "hints", "sources": {"s": {"type": "file", "path": "x.csv"}},
        "datasets": consumers,
        "analyses": {f"a_{n}": {"from": n, "type": "descriptive"} for n in consumers},
        "exports": exports or [],
    })


def dataset(*items: dict) -> dict:
    return {"from": "s", "preprocessing": list(items)}


def built(spec) -> dict:
    return {n: [registry.preprocessors.build(op) for op in d.preprocessing]
            for n, d in spec.datasets.items()}


def test_a_source_read_by_several_datasets_needs_what_any_of_them_needs():
    spec = graph({"eu": dataset({"op": "filter_rows", "condition": "region = 'EU'"},
                                {"op": "select_columns", "columns": ["amount"]}),
                  "big": dataset({"op": "select_columns", "columns": ["id"]},
                                 {"op": "filter_rows", "condition": "id > 5"})})
    hints = read_hints(spec, "s", built(spec))
    assert set(hints.columns or ()) == {"amount", "region", "id"}
    assert hints.filters == (("region = 'EU'",), ("id > 5",))


def test_a_source_analyzed_or_exported_as_it_is_needs_everything():
    spec = graph({"eu": dataset({"op": "filter_rows", "condition": "region = 'EU'"}),
                  "all": dataset({"op": "select_columns", "columns": ["id"]})})
    # the second dataset keeps every row: no filter may skip any
    assert read_hints(spec, "s", built(spec)) == ReadHints(columns=None, filters=None)
    spec = graph({"eu": dataset({"op": "filter_rows", "condition": "region = 'EU'"},
                                {"op": "select_columns", "columns": ["id"]})},
                 exports=[{"from": "s", "format": "parquet", "path": "all.parquet"}])
    assert read_hints(spec, "s", built(spec)) == ReadHints()


# -- Parquet: projection and row groups -------------------------------------------------------


class CountingMemoryFS(MemoryFileSystem):
    """An in-memory filesystem that counts the bytes read from its files."""

    protocol = "countmem"
    bytes_read = 0

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("countmem://"))

    def cat_file(self, path, start=None, end=None, **kwargs):
        data = super().cat_file(path, start=start, end=end, **kwargs)
        CountingMemoryFS.bytes_read += len(data)
        return data

    def _open(self, path, mode="rb", **kwargs):
        f = super()._open(path, mode, **kwargs)
        if "r" not in mode:
            return f
        inner = f.read

        def counted(n=-1):
            data = inner(n)
            CountingMemoryFS.bytes_read += len(data)
            return data

        f.read = counted
        return f


@pytest.fixture
def remote_parquet():
    fsspec.register_implementation("countmem", CountingMemoryFS, clobber=True)
    fs = CountingMemoryFS()
    table = wide_table()
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=GROUP)
    fs.pipe("/pushdown/data.parquet", buffer.getvalue())
    yield "countmem:///pushdown/data.parquet", table, len(buffer.getvalue())
    fs.rm("/pushdown", recursive=True)


def same(actual: pa.Table, expected: pa.Table) -> None:
    assert_frame_equal(pl.from_arrow(actual), pl.from_arrow(expected))  # NaN equals NaN


def read_with(url: str, hints: ReadHints) -> tuple[pa.Table, int]:
    connector = FileConnector(FileSourceConfig(path=url)).with_hints(hints)
    tables = []
    CountingMemoryFS.bytes_read = 0
    for partition in connector.plan():
        tables.append(connector.read(partition))
    return pa.concat_tables(tables), CountingMemoryFS.bytes_read


def test_unread_columns_and_row_groups_are_never_fetched(remote_parquet):
    url, table, size = remote_parquet
    everything, all_bytes = read_with(url, ReadHints())
    same(everything, table)
    assert all_bytes >= size
    # two of twelve columns: a sixth of the data, and the footer (read twice, 64 KiB each)
    projected, projected_bytes = read_with(url, ReadHints(columns=("id", "region")))
    same(projected, table.select(["id", "region"]))
    assert projected_bytes < size / 4
    # ids are sorted, so `id >= 95000` is in the last of 10 row groups only
    kept, kept_bytes = read_with(url, ReadHints(filters=((f"id >= {ROWS - GROUP // 2}",),)))
    same(kept, table.slice(9 * GROUP))
    assert kept_bytes < size / 5


def test_row_groups_skipped_by_statistics_never_lose_a_kept_row(remote_parquet):
    url, table, _ = remote_parquet
    frame = pl.from_arrow(table)
    for conditions, skips in [
            (("id BETWEEN 41000 AND 42000 OR id IN (15000, 3)",), True),
            (("day >= DATE '2024-09-01'", "region = 'EU'"), True),
            (("region IS NULL", "id < 9000"), True),
            (("NOT (id < 99990)",), True),
            # `id + 1` is not translated: only `region <> 'US'` is, which every group meets
            (("id + 1 > 95000 AND region <> 'US'",), False),
            (("amount > 0.999",), False)]:  # NaN rows are kept by Polars: never skipped
        kept, _ = read_with(url, ReadHints(filters=(conditions,)))
        expected = frame
        for condition in conditions:
            expected = expected.filter(pl.sql_expr(condition))
        got = pl.from_arrow(kept)
        for condition in conditions:
            got = got.filter(pl.sql_expr(condition))
        assert_frame_equal(got, expected)
        assert (kept.num_rows < table.num_rows) == skips, conditions


def test_a_filter_that_no_row_group_meets_reads_the_columns_without_rows(remote_parquet):
    url, table, _ = remote_parquet
    kept, _ = read_with(url, ReadHints(columns=("id", "amount"), filters=(("id < 0",),)))
    assert kept.num_rows == 0
    assert kept.schema.equals(table.select(["id", "amount"]).schema)


def test_a_selection_of_columns_the_file_lacks_reads_everything_for_the_job_to_report(
        remote_parquet):
    url, table, _ = remote_parquet
    kept, _ = read_with(url, ReadHints(columns=("no_such_column",)))
    same(kept, table)


# -- hive partitioned folders -----------------------------------------------------------------


def hive_folder(root: Path, fmt: str = "parquet") -> pl.DataFrame:
    """sales/year=Y/region=R/part-0.<fmt>, with a null (default) and a percent-encoded
    region; returns every row with its partition columns."""
    frames = []
    for year in (2023, 2024):
        for region, folder in [("EU", "EU"), ("Asia Pacific", "Asia%20Pacific"),
                               (None, "__HIVE_DEFAULT_PARTITION__")]:
            part = pl.DataFrame({"order_id": [year * 10 + i for i in range(3)],
                                 "amount": [1.5, None, 3.0],
                                 "name": ["a", "ü", "🎉"]})
            path = root / f"year={year}" / f"region={folder}" / f"part-0.{fmt}"
            path.parent.mkdir(parents=True)
            part.write_parquet(path) if fmt == "parquet" else part.write_csv(path)
            frames.append(part.with_columns(pl.lit(year, pl.Int64).alias("year"),
                                            pl.lit(region, pl.String).alias("region")))
    (root / "_SUCCESS").write_text("")
    return pl.concat(frames)


def read_source(config: dict, hints: ReadHints | None = None) -> tuple[pl.DataFrame, int]:
    connector = FileConnector(FileSourceConfig(**config)).with_hints(hints or ReadHints())
    partitions = connector.plan()
    tables = [pl.from_arrow(connector.read(p)) for p in partitions]
    return pl.concat(tables, how="diagonal_relaxed"), len(partitions)


def sort(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("order_id", "region", nulls_last=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_hive_folders_are_typed_columns_equal_to_polars_hive_reading(tmp_path, fmt):
    expected = hive_folder(tmp_path / "sales", fmt)
    got, count = read_source({"path": str(tmp_path / "sales")})
    assert count == 6
    assert got.columns == ["order_id", "amount", "name", "year", "region"]
    assert_frame_equal(sort(got), sort(expected))
    if fmt == "parquet":  # Polars' own hive reading agrees
        polars = pl.read_parquet(tmp_path / "sales" / "**" / "*.parquet",
                                 hive_partitioning=True)
        assert_frame_equal(sort(got), sort(polars))
        schema = FileConnector(FileSourceConfig(path=str(tmp_path / "sales"))).schema()
        assert schema is not None and schema.names == got.columns


def test_a_filter_on_partition_columns_skips_the_folders_it_rules_out(tmp_path):
    expected = hive_folder(tmp_path / "sales")
    condition = "year = 2024 AND region IN ('EU', 'Asia Pacific') AND amount > 1"
    got, count = read_source({"path": str(tmp_path / "sales")},
                             ReadHints(filters=((condition,),)))
    assert count == 2  # two of the six folders can hold such a row
    assert_frame_equal(sort(got.filter(pl.sql_expr(condition))),
                       sort(expected.filter(pl.sql_expr(condition))))
    none, count = read_source({"path": str(tmp_path / "sales")},
                              ReadHints(filters=(("year = 1999",),)))
    assert count == 1 and none.height == 0 and "year" in none.columns


def test_declared_partition_types_and_wrong_folders_are_checked(tmp_path):
    hive_folder(tmp_path / "sales")
    got, _ = read_source({"path": str(tmp_path / "sales"), "hive_types": {"year": "string"}})
    assert got.schema["year"] == pl.String
    with pytest.raises(InputError, match="partition folder region=.* is not a date"):
        read_source({"path": str(tmp_path / "sales"), "hive_types": {"region": "date"}})
    with pytest.raises(InputError, match="hive_types names month"):
        read_source({"path": str(tmp_path / "sales"), "hive_types": {"month": "int64"}})
    off, _ = read_source({"path": str(tmp_path / "sales"), "hive": False, "recursive": True})
    assert "year" not in off.columns
    flat = tmp_path / "flat"
    flat.mkdir()
    pl.DataFrame({"a": [1]}).write_parquet(flat / "x.parquet")
    with pytest.raises(InputError, match="needs every file in key=value folders"):
        read_source({"path": str(flat), "hive": True})
    assert read_source({"path": str(flat)})[0].columns == ["a"]  # auto: no partition folders


def test_partition_folders_with_different_keys_are_an_error(tmp_path):
    for rel in ("year=2024/a.parquet", "month=1/b.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"a": [1]}).write_parquet(tmp_path / rel)
    with pytest.raises(InputError, match="partition folders differ"):
        read_source({"path": str(tmp_path), "hive": True})


# -- a whole job ------------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_session")
def test_a_job_reads_less_and_answers_as_polars_reading_everything(tmp_path):
    table = wide_table()
    write_parquet(tmp_path / "data.parquet", table)
    condition = f"id >= {ROWS - 2 * GROUP + 1000} AND region <> 'US'"
    spec = parse_graph_spec({
        "version": 2, "job_id": "pushdown-job",
        "sources": {"s": {"type": "file", "path": str(tmp_path / "data.parquet")}},
        "datasets": {"d": dataset({"op": "filter_rows", "condition": condition},
                                  {"op": "select_columns", "columns": ["amount", "region"]})},
        "analyses": {"by_region": {"from": "d", "type": "aggregation",
                                   "group_by": ["region"],
                                   "metrics": [{"column": "amount", "function": "sum"},
                                               {"column": "amount", "function": "count"}]}},
        "exports": [{"from": "d", "format": "parquet", "path": "d.parquet"}],
    })
    result = AnalysisJob(spec, run_dir=tmp_path / "runs").run()
    assert result.state == "COMPLETED", result.errors
    expected = pl.from_arrow(table).filter(pl.sql_expr(condition)).select("amount", "region")
    assert_frame_equal(pl.read_parquet(Path(result.run_dir) / "d.parquet"), expected)
    # only the last two of ten row groups, and three of twelve columns, were loaded
    stats = result.data_stats["s"]
    assert stats["row_count"] == 2 * GROUP
    assert set(stats["columns"]) == {"id", "region", "amount"}
