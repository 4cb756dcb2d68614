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
from raysight.jobs import parse_spec
from raysight.pipeline import AnalysisJob

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
    assert result.data_stats["partitions"] == 4
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
