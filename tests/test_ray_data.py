"""Ray Data interop: a ``ray.data.Dataset`` is a job's source, read block by block in Ray
tasks, and any node of a finished job is handed back as a Ray Dataset; answers equal Polars
on the same rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import job_tasks
from polars.testing import assert_frame_equal

from raysight.connectors.files import FileConnector, FileSourceConfig
from raysight.errors import InputError
from raysight.job.builder import Job
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

ROWS = [{"id": i, "kind": ["click", "view", "购买", None][i % 4],
         "amount": None if i % 7 == 0 else i * 1.5} for i in range(60)]


def dataset(blocks: int = 6):
    import ray

    return ray.data.from_items(ROWS, override_num_blocks=blocks)


def reference() -> pl.DataFrame:
    return pl.DataFrame(ROWS)


def by_kind(job: Job, source) -> None:
    clean = source.preprocess("clean", {"op": "filter_rows", "condition": "amount > 10"})
    clean.analyze("by_kind", type="aggregation", group_by=["kind"],
                  metrics=[{"function": "count", "alias": "n"},
                           {"column": "amount", "function": "sum", "alias": "total"}])


def expected_by_kind() -> pl.DataFrame:
    return (reference().filter(pl.col("amount") > 10).group_by("kind")
            .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("amount").sum().alias("total")))


def sort(df: pl.DataFrame, key: str) -> pl.DataFrame:
    return df.sort(key, nulls_last=True)


def test_a_ray_dataset_is_a_source_read_in_one_task_per_block(tmp_path):
    job = Job("ray-source")
    by_kind(job, job.source("events", dataset(blocks=6)))
    job.export("by_kind", format="parquet", path="by_kind.parquet")
    result = job.run(run_dir=str(tmp_path / "runs"))
    assert result.state == "COMPLETED", result.errors
    got = pl.read_parquet(Path(result.run_dir) / "by_kind.parquet")
    expected = expected_by_kind()
    assert_frame_equal(sort(got, "kind"), sort(expected.select(got.columns), "kind"),
                       check_dtypes=False)
    assert result.data_stats["events"]["row_count"] == len(ROWS)
    names = [t.name for t in job_tasks("ray-source", expect=8)]
    assert names.count("ray-source/events/load") == 6
    # the spec names only the source's type: the data never enters spec.json
    spec = (Path(result.run_dir) / "spec.json").read_text()
    assert '"type": "ray_dataset"' in spec and "购买" not in spec


def test_blocks_are_grouped_into_at_most_the_partitions_asked_for(tmp_path):
    job = Job("ray-grouped")
    by_kind(job, job.source("events", dataset(blocks=6), partitions=2))
    result = job.run(run_dir=str(tmp_path / "runs"))
    assert result.state == "COMPLETED", result.errors
    assert result.data_stats["events"]["partitions"] == 2
    assert result.data_stats["events"]["row_count"] == len(ROWS)


def test_kept_nodes_are_handed_back_as_ray_datasets(tmp_path):
    job = Job("ray-handout")
    by_kind(job, job.source("events", dataset(blocks=3)))
    result = job.run(run_dir=str(tmp_path / "runs"), keep=["clean", "by_kind"])
    assert result.state == "COMPLETED", result.errors
    clean = result.datasets["clean"]
    assert type(clean).__module__.startswith("ray.data")
    got = pl.from_pandas(clean.to_pandas())
    expected = reference().filter(pl.col("amount") > 10)
    assert_frame_equal(sort(got, "id"), sort(expected, "id"), check_dtypes=False)
    table = pl.from_pandas(result.datasets["by_kind"].to_pandas())
    expected = expected_by_kind()
    assert_frame_equal(sort(table, "kind"), sort(expected.select(table.columns), "kind"),
                       check_dtypes=False)
    assert "datasets" not in (Path(result.run_dir) / "result.json").read_text()


def test_a_ray_dataset_source_without_its_dataset_is_a_clear_error(tmp_path):
    spec = parse_graph_spec({
        "version": 2, "job_id": "ray-missing", "sources": {"events": {"type": "ray_dataset"}},
        "analyses": {"d": {"from": "events", "type": "descriptive"}}})
    with pytest.raises(InputError, match="source 'events': a ray_dataset source is given in "
                                         "Python"):
        AnalysisJob(spec, run_dir=tmp_path / "runs").run()
    assert not (tmp_path / "runs").exists()
    with pytest.raises(InputError, match="inputs names 'nope', which is not a source"):
        AnalysisJob(spec, run_dir=tmp_path / "runs", inputs={"nope": dataset()})
    with pytest.raises(InputError, match="keep names 'nope'"):
        AnalysisJob(spec, run_dir=tmp_path / "runs", keep=["nope"])
    with pytest.raises(InputError, match="reads a ray.data.Dataset, not list"):
        AnalysisJob(spec, run_dir=tmp_path / "runs", inputs={"events": ROWS})
    with pytest.raises(InputError, match="a file source reads what its config names"):
        FileConnector(FileSourceConfig(path="x.csv")).with_data(dataset())
