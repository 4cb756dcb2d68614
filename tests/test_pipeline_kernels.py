"""Every kernel and preprocessing operation through the distributed pipeline (four files, so
four partitions) equals the same work done in one process on the whole table."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import EXAMPLES
from polars.testing import assert_frame_equal

from raysight import registry
from raysight.connectors.files import FileConnector
from raysight.job.pipeline import AnalysisJob
from raysight.job.spec import parse_spec

pytestmark = pytest.mark.usefixtures("ray_session")

PARTS = EXAMPLES / "data" / "sales_parts"


def in_process(spec) -> pl.DataFrame:
    """Read all partitions, concatenate, apply each operation and the kernel to the whole."""
    connector = FileConnector(spec.source)
    tables = [connector.read(p) for p in connector.plan()]
    df = pl.from_arrow(pa.concat_tables(tables, promote_options="permissive"))
    for op_config in spec.preprocessing:
        df = registry.preprocessors.build(op_config).apply(df)
    return pl.from_arrow(registry.analyses.build(spec.analysis).run(df).table)


def distributed(spec, tmp_path: Path) -> pl.DataFrame:
    result = AnalysisJob(spec, run_dir=tmp_path).run()
    assert result.state == "COMPLETED", result.errors
    assert result.data_stats["source"]["partitions"] == 4
    return pl.read_parquet(Path(result.run_dir) / "out.parquet")


CASES = {
    "normalize_then_describe": (
        [{"op": "normalize", "columns": ["amount", "quantity"], "method": "z_score"}],
        {"type": "descriptive", "columns": ["amount", "quantity"]}),
    "fill_median_and_ffill": (
        [{"op": "fill_missing", "columns": ["amount"], "method": "median"},
         {"op": "fill_missing", "columns": ["product_category"], "method": "forward"}],
        {"type": "aggregation", "group_by": ["product_category"],
         "metrics": [{"column": "amount", "function": "sum"}]}),
    "encode_bin_dedupe": (
        [{"op": "encode", "column": "region", "method": "label"},
         {"op": "binning", "column": "amount", "bins": 4},
         {"op": "deduplicate", "columns": ["region", "amount_bin"]}],
        {"type": "aggregation", "group_by": ["region", "amount_bin"],
         "metrics": [{"function": "count"}]}),
    "derive_then_time_series": (
        [{"op": "derive", "columns": {"revenue": "amount * quantity"}}],
        {"type": "time_series", "time_column": "date", "value_columns": ["revenue"],
         "interval": "monthly", "operations": ["sum", "count"], "group_by": ["region"]}),
    "correlation": ([], {"type": "correlation_matrix", "columns": ["amount", "quantity",
                                                                     "customer_id"]}),
    "outliers": ([], {"type": "outlier_detection", "column": "amount"}),
    "text": ([{"op": "cast", "columns": {"region": "string"}}],
             {"type": "text_frequency", "column": "product_category"}),
    "median_by_shuffle": ([], {"type": "aggregation", "group_by": ["region", "product_category"],
                               "metrics": [{"column": "amount", "function": "median"},
                                           {"column": "amount", "function": "percentile",
                                            "q": 0.9},
                                           {"column": "customer_id", "function": "n_unique"},
                                           {"function": "count"}]}),
    "top_k_by_shuffle": ([], {"type": "aggregation", "group_by": ["region"],
                              "metrics": [{"column": "amount", "function": "top_k", "k": 3}]}),
    "custom_dispatch": ([], {"type": "custom", "name": "outlier_detection",
                             "params": {"column": "quantity", "method": "zscore",
                                        "threshold": 2.0}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_distributed_pipeline_equals_one_process(case, tmp_path):
    ops, analysis = CASES[case]
    spec = parse_spec({"source": {"type": "file", "path": str(PARTS), "format": "csv"},
                       "preprocessing": ops, "analysis": analysis,
                       "exports": [{"format": "parquet", "path": "out.parquet"}]})
    expected = in_process(spec)
    got = distributed(spec, tmp_path)
    assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_holistic_metrics_shuffle_rows_by_key_across_ray_tasks(tmp_path):
    from conftest import job_tasks

    spec = parse_spec({"job_id": "shuffled",
                       "source": {"type": "file", "path": str(PARTS), "format": "csv"},
                       "analysis": {"type": "aggregation", "group_by": ["region"],
                                    "metrics": [{"column": "amount", "function": "median"}]},
                       "exports": [{"format": "parquet", "path": "out.parquet"}]})
    distributed(spec, tmp_path)
    names = [t.name for t in job_tasks("shuffled", expect=11)]
    assert names.count("shuffled/analysis/analyze.shuffle") == 4  # one hash split per partition
    assert names.count("shuffled/analysis/analyze") == 2  # one exact reduce per shard (2 CPUs)
    assert names.count("shuffled/analysis/analyze.combine") == 1


def test_db_benchmark_questions_through_the_pipeline_equal_duckdb(tmp_path):
    import duckdb

    from raysight.job.spec import load_spec

    data = EXAMPLES / "data" / "dbbench_G1_1e5_1e2_0_0.parquet"
    x = pl.read_parquet(data)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, part in enumerate(x.iter_slices(n_rows=25_000)):
        part.write_parquet(folder / f"part-{i}.parquet")
    for question, sql in {
        "q06": "SELECT id4, id5, median(v3) AS median_v3, stddev(v3) AS sd_v3 FROM x "
               "GROUP BY id4, id5 ORDER BY id4, id5",
        "q07": "SELECT id3, max(v1) - min(v2) AS range_v1_v2 FROM x GROUP BY id3 ORDER BY id3",
    }.items():
        spec = load_spec(EXAMPLES / "dbbench" / f"{question}.yaml",
                         [f"source.path={folder}",
                          "exports=[{format: parquet, path: out.parquet}]"])
        got = distributed_any(spec, tmp_path)
        expected = pl.from_arrow(duckdb.sql(sql).arrow())
        assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-9, check_dtypes=False)


def distributed_any(spec, tmp_path: Path) -> pl.DataFrame:
    result = AnalysisJob(spec, run_dir=tmp_path).run()
    assert result.state == "COMPLETED", result.errors
    assert result.data_stats["source"]["partitions"] == 4
    return pl.read_parquet(Path(result.run_dir) / "out.parquet")
