"""Every job spec in examples/ runs as written, from the repository root, and its answer equals
the same computation done with pandas or Polars on the example data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import EXAMPLES, REPO_ROOT
from polars.testing import assert_frame_equal

from raysight import registry
from raysight.job.graph_spec import load_graph_spec
from raysight.job.pipeline import AnalysisJob
from raysight.job.spec import read_spec_file

pytestmark = pytest.mark.usefixtures("ray_session")

SPECS = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
SALES = EXAMPLES / "data" / "sales.csv"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each example run once, as `raysight run examples/<name>` would from the repo root."""
    runs = tmp_path_factory.mktemp("examples")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO_ROOT)
        for name in SPECS:
            out[name] = AnalysisJob(load_graph_spec(Path("examples") / name),
                                    run_dir=runs).run()
    return out


def table_of(result, name: str) -> pl.DataFrame:
    return pl.read_parquet(Path(result.run_dir) / name) if name.endswith(".parquet") \
        else pl.read_csv(Path(result.run_dir) / name)


@pytest.mark.parametrize("name", SPECS)
def test_the_example_completes_with_every_output_and_no_warning(results, name):
    result = results[name]
    assert result.state == "COMPLETED", result.errors
    assert result.warnings == []
    spec = load_graph_spec(EXAMPLES / name)
    assert len(result.outputs) == len(spec.exports)
    for output in result.outputs:
        assert (Path(result.run_dir) / output).stat().st_size > 0


def analysis_types(name: str) -> set[str]:
    return {a.type for a in load_graph_spec(EXAMPLES / name).analyses.values()}


def test_every_kind_of_analysis_has_an_example():
    kinds = set().union(*(analysis_types(name) for name in SPECS))
    assert set(registry.analyses.names()) <= kinds


def test_the_job_graph_example_equals_polars(results):
    result = results["sales_graph.yaml"]
    sales = (pl.read_csv(SALES, try_parse_dates=True)
             .drop_nulls(["product_category", "amount"]).filter(pl.col("amount") > 0))
    regions = pl.read_csv(EXAMPLES / "data" / "regions.csv")
    joined = sales.join(regions, on="region", how="left")
    expected = joined.group_by("manager").agg(pl.len().alias("sales_count"),
                                              pl.col("amount").sum().alias("total_sales"))
    ours = table_of(result, "by_manager.csv")
    assert_frame_equal(ours.sort("manager", nulls_last=True),
                       expected.sort("manager", nulls_last=True), check_dtypes=False)
    written = table_of(result, "sales_with_managers.parquet")
    assert written.height == joined.height and set(written.columns) == set(joined.columns)
    assert result.analyses["amounts"]["summary"]["row_count"] == sales.height
    assert set(result.analyses) == {"by_manager", "amounts", "weekly"}


def test_the_weekly_trend_equals_polars(results):
    ours = table_of(results["sales_trend.yaml"], "weekly_sales.parquet")
    actual = ours.filter(pl.col("kind") == "actual", ~pl.col("filled"))
    expected = (pl.read_csv(SALES, try_parse_dates=True).filter(pl.col("amount") > 0)
                .group_by("region", pl.col("date").dt.truncate("1w").alias("week"))
                .agg(pl.col("amount").sum().alias("amount_sum"),
                     pl.col("amount").count().alias("amount_count"))
                .sort("region", "week"))
    assert actual.select("region", "amount_count").to_dicts() == \
        expected.select("region", "amount_count").to_dicts()
    assert actual["bucket"].dt.date().to_list() == expected["week"].to_list()
    np.testing.assert_allclose(actual["amount_sum"].to_numpy(),
                               expected["amount_sum"].to_numpy(), rtol=1e-9)
    forecast = ours.filter(pl.col("kind") == "forecast")
    assert forecast.group_by("region").len()["len"].to_list() == [4] * forecast[
        "region"].n_unique()


def test_the_correlation_matrix_equals_pandas(results):
    summary = results["sales_correlation.yaml"].summary
    columns = ["amount", "quantity", "customer_id", "order_id"]
    expected = pd.read_csv(SALES)[columns].corr(method="pearson", min_periods=1)
    for a in columns:
        for b in columns:
            assert summary["matrix"][a][b] == pytest.approx(expected.loc[a, b], rel=1e-9)


def test_the_outliers_are_the_rows_outside_the_iqr_fences(results):
    ours = table_of(results["sales_outliers.yaml"], "outliers.csv")
    sales = pd.read_csv(SALES)
    q1, q3 = sales["amount"].quantile([0.25, 0.75])
    low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    outside = sales[(sales["amount"] < low) | (sales["amount"] > high)]
    assert ours["row_index"].to_list() == outside.index.to_list()
    assert ours["order_id"].to_list() == outside["order_id"].to_list()
    assert ours["outlier_type"].to_list() == \
        ["low" if v < low else "high" for v in outside["amount"]]


def test_the_category_words_equal_polars(results):
    ours = table_of(results["category_words.yaml"], "words.csv")
    expected = (pl.read_csv(SALES).select(
        pl.col("product_category").str.to_lowercase().str.extract_all(r"[^\W_]+").alias("word"))
        .explode("word").drop_nulls().group_by("word").len(name="count")
        .sort(["count", "word"], descending=[True, False]).head(10))
    assert ours.to_dicts() == expected.to_dicts()


VERSION_1 = [name for name in SPECS if read_spec_file(EXAMPLES / name).get("version", 1) == 1]


@pytest.mark.parametrize("name", VERSION_1)
def test_a_version_1_example_runs_as_its_one_analysis_graph(results, name):
    data = read_spec_file(EXAMPLES / name)
    result = results[name]
    nodes = {"source": "load", "analysis": "analyze"}
    if data.get("preprocessing"):
        nodes["data"] = "preprocess"
    assert set(result.data_stats) == {"source"}
    assert set(result.analyses) == {"analysis"}
    assert result.summary == result.analyses["analysis"]["summary"]
    for node, step in nodes.items():
        assert f"{node}/{step}" in result.execution_path


def test_the_sqlite_example_equals_polars_on_the_same_sales(results):
    result = results["sales_sqlite.yaml"]
    sales = pl.read_csv(SALES).filter(pl.col("amount") > 0)
    expected = sales.group_by("region").agg(pl.len().alias("sales_count"),
                                            pl.col("amount").sum().alias("total_sales"))
    ours = table_of(result, "sales_by_region.csv")
    assert_frame_equal(ours.sort("region"), expected.sort("region"), check_dtypes=False)
    assert result.data_stats["source"]["partitions"] == 5  # four date ranges and NULL dates
