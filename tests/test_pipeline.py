"""The analysis pipeline end to end on Ray: answers, events, retries, timeouts, Ray tasks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLES, job_tasks, state_address
from polars.testing import assert_frame_equal

from raysight.job.pipeline import AnalysisJob
from raysight.job.spec import load_spec, parse_spec

pytestmark = pytest.mark.usefixtures("ray_session")

SALES = EXAMPLES / "data" / "sales.csv"
SALES_PARTS = EXAMPLES / "data" / "sales_parts"
KEYS = ["product_category", "region"]
FAST_RETRY = {"initial_s": 0.01, "max_s": 0.05, "jitter": 0.0}


def job_spec(**changes):
    spec = {
        "source": {"type": "file", "path": str(SALES)},
        "analysis": {"type": "aggregation", "group_by": KEYS, "metrics": [
            {"function": "count", "alias": "sales_count"},
            {"column": "amount", "function": "count", "alias": "amount_count"},
            {"column": "amount", "function": "sum", "alias": "total_sales"},
            {"column": "amount", "function": "mean", "alias": "avg_sale"},
            {"column": "amount", "function": "min", "alias": "min_sale"},
            {"column": "amount", "function": "max", "alias": "max_sale"},
        ]},
        "exports": [{"format": "parquet", "path": "result.parquet"}],
        "execution": {"retry": FAST_RETRY},
    }
    spec.update(changes)
    return parse_spec(spec)


def run_job(tmp_path, spec, **kwargs):
    job = AnalysisJob(spec, run_dir=tmp_path, **kwargs)
    return job, job.run()


def events_of(result):
    lines = (tmp_path_of(result) / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def tmp_path_of(result):
    from pathlib import Path

    return Path(result.run_dir)


def read_result(result, name="result.parquet") -> pl.DataFrame:
    return pl.from_arrow(pq.read_table(tmp_path_of(result) / name))


def polars_answer(df: pl.DataFrame) -> pl.DataFrame:
    return (df.group_by(KEYS).agg(
        pl.len().cast(pl.Int64).alias("sales_count"),
        pl.col("amount").count().cast(pl.Int64).alias("amount_count"),
        pl.col("amount").sum().alias("total_sales"),
        pl.col("amount").mean().alias("avg_sale"),
        pl.col("amount").min().alias("min_sale"),
        pl.col("amount").max().alias("max_sale"),
    ).sort(KEYS, nulls_last=True))


def test_the_example_job_completes_with_every_output(tmp_path):
    spec = load_spec(EXAMPLES / "sales_by_category.yaml")
    job, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED", result.errors
    run_dir = tmp_path_of(result)
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["state"] == "COMPLETED" and on_disk["job_id"] == job.job_id
    for name in result.outputs:
        assert (run_dir / name).stat().st_size > 0
    assert not (run_dir / ".staging").exists()
    html = (run_dir / "report.html").read_text()
    assert "<script src=" not in html and "Plotly.newPlot" in html
    kinds = [e["event_type"] for e in events_of(result)]
    for kind in ("job_started", "data_loaded", "data_preprocessed", "analysis_completed",
                 "results_generated", "job_completed"):
        assert kind in kinds


def test_aggregation_equals_polars_and_pandas_including_all_null_groups(tmp_path):
    _, result = run_job(tmp_path, job_spec())
    ours = read_result(result)
    raw = pl.read_csv(SALES)
    all_null = raw.group_by(KEYS).agg(pl.col("amount").is_null().all().alias("n"))
    assert all_null["n"].any(), "the example data must contain an all-null group"
    assert_frame_equal(ours, polars_answer(raw), check_exact=False, rel_tol=1e-9)

    pdf = pd.read_csv(SALES)
    expected = (pdf.groupby(KEYS, dropna=False)
                .agg(sales_count=("amount", "size"), amount_count=("amount", "count"),
                     total_sales=("amount", "sum"), avg_sale=("amount", "mean"),
                     min_sale=("amount", "min"), max_sale=("amount", "max"))
                .reset_index().sort_values(KEYS, na_position="last").reset_index(drop=True))
    got = ours.to_pandas()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9)


def test_the_example_with_preprocessing_equals_polars(tmp_path):
    spec = load_spec(EXAMPLES / "sales_by_category.yaml")
    _, result = run_job(tmp_path, spec)
    ours = read_result(result, "sales_by_category.parquet")
    raw = pl.read_csv(SALES).drop_nulls(["product_category", "amount"]).filter(
        pl.col("amount") > 0)
    expected = raw.group_by(KEYS).agg(
        pl.len().cast(pl.Int64).alias("sales_count"),
        pl.col("amount").sum().alias("total_sales"),
        pl.col("amount").mean().alias("avg_sale"),
        pl.col("amount").quantile(0.95, interpolation="linear").alias("p95_sale"),
    ).sort(KEYS, nulls_last=True)
    assert_frame_equal(ours, expected, check_exact=False, rel_tol=1e-9)


def test_four_files_run_as_four_parallel_tasks_plus_a_combine_with_the_same_answer(tmp_path):
    spec = job_spec(source={"type": "file", "path": str(SALES_PARTS), "format": "csv"},
                    job_id="four-files",
                    preprocessing=[{"op": "filter_rows", "condition": "quantity >= 1"}])
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED", result.errors
    assert result.data_stats["source"]["partitions"] == 4
    names = sorted(t.name for t in job_tasks("four-files", expect=15))
    assert names.count("four-files/source/load") == 4
    assert names.count("four-files/data/preprocess") == 4
    assert names.count("four-files/analysis/analyze") == 4
    assert names.count("four-files/analysis/analyze.combine") == 1
    single = job_spec(preprocessing=[{"op": "filter_rows", "condition": "quantity >= 1"}],
                      job_id="one-file")
    _, one = run_job(tmp_path, single)
    assert_frame_equal(read_result(result), read_result(one), check_exact=False, rel_tol=1e-9)


def test_every_ray_task_of_a_job_is_named_job_slash_step(tmp_path):
    import time

    from ray.util.state import list_tasks

    spec = job_spec(job_id="named-job", preprocessing=[{"op": "drop_missing"}])
    started_ms = time.time() * 1000
    run_job(tmp_path, spec)
    ended_ms = time.time() * 1000
    job_tasks("named-job", expect=5)
    during = [t for t in list_tasks(address=state_address(), limit=10000, detail=True,
                                    raise_on_missing_output=False)
              if t.type == "NORMAL_TASK" and t.creation_time_ms
              and started_ms <= t.creation_time_ms <= ended_ms]
    assert during, "the job ran no Ray task"
    assert all(t.name.startswith("named-job/") for t in during), [t.name for t in during]
    steps = {t.name.split("/", 1)[1] for t in during}
    assert {"source/load.plan", "source/load", "data/preprocess", "analysis/analyze",
            "results"} <= steps


def test_a_transient_error_twice_then_success_completes_with_two_task_retry_events(tmp_path):
    spec = job_spec(execution={"retry": FAST_RETRY,
                               "faults": [{"step": "analyze", "error": "transient", "times": 2}]})
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED", result.errors
    retries = [e for e in events_of(result) if e["event_type"] == "task_retry"]
    assert [e["data"]["retry_count"] for e in retries] == [1, 2]
    assert {e["data"]["task"] for e in retries} == {"analysis/analyze"}
    assert retries[0]["data"]["max_retries"] == 2


def test_a_permanent_error_fails_at_once_with_job_failed(tmp_path):
    spec = job_spec(execution={"retry": FAST_RETRY,
                               "faults": [{"step": "analyze", "error": "permanent"}]})
    _, result = run_job(tmp_path, spec)
    assert result.state == "FAILED"
    kinds = [e["event_type"] for e in events_of(result)]
    assert "task_retry" not in kinds
    failed = [e for e in events_of(result) if e["event_type"] == "job_failed"]
    assert len(failed) == 1 and failed[0]["data"]["task"] == "analysis/analyze"
    assert result.errors[0]["category"] == "permanent"


def test_a_step_over_its_timeout_is_cancelled_and_the_job_fails_with_a_timeout(tmp_path):
    spec = job_spec(job_id="slow-job", execution={
        "retry": FAST_RETRY, "step_timeouts_s": {"analyze": 1.0},
        "faults": [{"step": "analyze", "error": "delay", "delay_s": 60}]})
    _, result = run_job(tmp_path, spec)
    assert result.state == "FAILED"
    assert result.errors[0]["category"] == "timeout"
    assert result.execution_time_s < 30
    analyze = [t for t in job_tasks("slow-job", expect=3) if t.name == "slow-job/analysis/analyze"]
    assert [t.state for t in analyze] == ["FAILED"]


def test_the_whole_job_timeout_applies(tmp_path):
    spec = job_spec(execution={"timeout_s": 1.5, "retry": FAST_RETRY,
                               "faults": [{"step": "results", "error": "delay", "delay_s": 60}]})
    _, result = run_job(tmp_path, spec)
    assert result.state == "FAILED" and result.errors[0]["category"] == "timeout"


def test_a_failed_job_leaves_no_export_files(tmp_path):
    spec = job_spec(exports=[{"format": "csv", "path": "a.csv"},
                             {"format": "json", "path": "b.json"}],
                    notifications=[{"channel": "webhook", "url": "http://127.0.0.1:9/x"}],
                    execution={"retry": FAST_RETRY,
                               "faults": [{"step": "notify", "error": "permanent"}]})
    _, result = run_job(tmp_path, spec)
    assert result.state == "FAILED"
    run_dir = tmp_path_of(result)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "audit.jsonl", "checkpoints", "events.jsonl", "result.json", "spec.json"]
    assert result.outputs == []


def test_a_missing_group_by_column_fails_as_an_input_error(tmp_path):
    spec = job_spec(analysis={"type": "aggregation", "group_by": ["regoin"],
                              "metrics": [{"function": "count"}]})
    _, result = run_job(tmp_path, spec)
    assert result.state == "FAILED" and result.input_error
    assert "regoin" in result.errors[0]["message"]


def test_a_chart_that_does_not_fit_the_result_is_a_warning_not_a_failure(tmp_path):
    # outlier rows keep the data's columns, so the chart can only be checked when it runs
    spec = job_spec(analysis={"type": "outlier_detection", "column": "amount"},
                    visualizations=[{"type": "bar", "x": "product_category", "y": "nope"}])
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED"
    assert "nope" in result.visualizations[0]["error"]
    assert any("nope" in w for w in result.warnings)


def test_descriptive_statistics_over_four_partitions_equal_one_partition(tmp_path):
    four = job_spec(analysis={"type": "descriptive"}, job_id="desc-four",
                    source={"type": "file", "path": str(SALES_PARTS), "format": "csv"})
    one = job_spec(analysis={"type": "descriptive"}, job_id="desc-one")
    _, a = run_job(tmp_path, four)
    _, b = run_job(tmp_path, one)
    assert a.state == b.state == "COMPLETED"
    assert_frame_equal(read_result(a), read_result(b), check_exact=False, rel_tol=1e-9)
    stats = read_result(b).filter(pl.col("column") == "amount").row(0, named=True)
    amount = pl.read_csv(SALES)["amount"]
    assert stats["count"] == amount.count() and stats["null_count"] == amount.null_count()
    assert stats["median"] == pytest.approx(amount.median(), rel=1e-12)


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_notification_carries_the_rendered_message(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        spec = job_spec(job_id="hooked", notifications=[
            {"channel": "webhook", "url": url,
             "message": "Job {job_id}: {metrics.row_count} rows, {result.groups} groups"}])
        _, result = run_job(tmp_path, spec)
    finally:
        server.shutdown()
    assert result.state == "COMPLETED"
    assert _Hook.received[-1]["text"] == f"Job hooked: 500 rows, {result.summary['groups']} groups"
    sent = [e for e in events_of(result) if e["event_type"] == "notifications_sent"]
    assert sent[0]["data"] == {"job_id": "hooked", "success_count": 1, "failure_count": 0}


def test_an_unreachable_webhook_is_counted_not_fatal(tmp_path):
    spec = job_spec(notifications=[{"channel": "webhook", "url": "http://127.0.0.1:9/x",
                                    "timeout_s": 1.0}])
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED"
    assert result.metrics["notifications_failed"] == 1


def test_an_export_that_cannot_be_written_is_an_error_entry_and_the_others_are_written(
        tmp_path):
    source = tmp_path / "nested.ndjson"
    source.write_text("".join(json.dumps({"k": k, "meta": {"x": i, "y": f"ü{i}"}, "v": i}) + "\n"
                              for i, k in enumerate("abab")))
    spec = job_spec(
        job_id="nested", source={"type": "file", "path": str(source)},
        analysis={"type": "aggregation", "group_by": ["k"], "metrics": [
            {"column": "meta", "function": "first", "alias": "m"},
            {"column": "v", "function": "sum", "alias": "total"}]},
        exports=[{"format": "parquet", "path": "out.parquet"},
                 {"format": "csv", "path": "out.csv"},
                 {"format": "json", "path": "out.json"}, {"format": "html", "path": "r.html"}],
        notifications=[{"channel": "webhook", "url": "http://127.0.0.1:9/x", "timeout_s": 1.0}])
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED_WITH_ERRORS" and not result.ok
    assert result.outputs == ["out.parquet", "out.json", "r.html"]
    (error,) = result.errors
    assert error["export"] == 1 and error["path"] == "out.csv" and error["format"] == "csv"
    assert "m (struct" in error["message"]
    run_dir = tmp_path_of(result)
    assert not (run_dir / "out.csv").exists() and not (run_dir / ".staging").exists()
    expected = pl.read_ndjson(source).group_by("k").agg(
        pl.col("meta").first().alias("m"), pl.col("v").sum().alias("total")).sort("k")
    assert_frame_equal(pl.read_parquet(run_dir / "out.parquet"), expected)
    (done,) = [e for e in events_of(result) if e["event_type"] == "job_completed"]
    assert done["data"]["state"] == "COMPLETED_WITH_ERRORS" and done["data"]["errors"] == 1


def test_an_unreachable_webhook_is_retried_by_the_notify_policy_with_the_specs_backoff(tmp_path):
    backoff = {"initial_s": 0.05, "multiplier": 3.0, "max_s": 1.0, "jitter": 0.0}
    spec = job_spec(
        job_id="hook-retried",
        notifications=[{"channel": "webhook", "url": "http://127.0.0.1:9/x", "timeout_s": 1.0}],
        execution={"retry": backoff},
    )
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED" and result.ok
    retries = [
        e for e in events_of(result) if e["event_type"] == "task_retry" and e["step"] == "notify"
    ]
    # the notify step's own policy: 3 retries, 0.05 s × 3^(n-1), no private loop inside it
    assert [e["data"]["retry_count"] for e in retries] == [1, 2, 3]
    assert [e["data"]["delay"] for e in retries] == pytest.approx([0.05, 0.15, 0.45])
    assert all("127.0.0.1:9" in e["data"]["error"]["message"] for e in retries)
    assert result.metrics["notifications_failed"] == 1
    assert result.metrics["notifications_sent"] == 0
    assert any(w.startswith("notification failed: webhook") for w in result.warnings)
    assert result.steps["notify"]["retry_count"] == 3


def test_a_failed_notification_spoils_no_other(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        spec = job_spec(
            job_id="two-hooks",
            notifications=[
                {"channel": "webhook", "url": "http://127.0.0.1:9/x", "timeout_s": 1.0},
                {"channel": "webhook", "url": url, "message": "second {job_id}"},
            ],
        )
        _, result = run_job(tmp_path, spec)
    finally:
        server.shutdown()
    assert result.state == "COMPLETED"
    assert _Hook.received[-1]["text"] == "second two-hooks"
    assert (result.metrics["notifications_sent"], result.metrics["notifications_failed"]) == (1, 1)


def test_a_job_over_64_partitions_combines_as_a_tree_with_the_answer_of_one_partition(tmp_path):
    df = pl.read_csv(SALES)
    parts = tmp_path / "parts"
    parts.mkdir()
    bounds = [i * df.height // 64 for i in range(65)]
    for i in range(64):
        df.slice(bounds[i], bounds[i + 1] - bounds[i]).write_csv(parts / f"part-{i:03d}.csv")
    assert len(list(parts.iterdir())) == 64
    many = job_spec(
        job_id="tree-64",
        source={"type": "file", "path": str(parts), "format": "csv"},
        execution={"retry": FAST_RETRY, "combine_fan_in": 8},
    )
    one = job_spec(job_id="tree-1")
    _, a = run_job(tmp_path, many)
    _, b = run_job(tmp_path, one)
    assert a.state == b.state == "COMPLETED" and a.data_stats["source"]["partitions"] == 64
    assert_frame_equal(read_result(a), read_result(b), check_exact=False, rel_tol=1e-9)
    # load.plan, 64 loads, 64 partial states, 8 merges, the combine and the results
    tasks = job_tasks("tree-64", expect=1 + 64 + 64 + 8 + 1 + 1)
    merges = [t for t in tasks if t.name == "tree-64/analysis/analyze.merge"]
    combines = [t for t in tasks if t.name == "tree-64/analysis/analyze.combine"]
    # 64 partial states -> 8 merge tasks of 8 -> one combine of 8: none receives more than 8
    assert len(merges) == 8 and len(combines) == 1
    inputs = [
        int(v) for k, v in a.trace["attributes"].items()
        if k.startswith("analysis/analyze.merge.inputs")
    ]
    assert inputs == [8] * 8


def test_a_descriptive_job_merged_as_a_tree_equals_pandas_on_the_whole_table(tmp_path):
    df = pl.read_csv(SALES)
    parts = tmp_path / "parts"
    parts.mkdir()
    bounds = [i * df.height // 12 for i in range(13)]
    for i in range(12):
        df.slice(bounds[i], bounds[i + 1] - bounds[i]).write_csv(parts / f"part-{i:03d}.csv")
    spec = job_spec(
        job_id="tree-descriptive",
        source={"type": "file", "path": str(parts), "format": "csv"},
        analysis={"type": "descriptive", "columns": ["amount", "quantity"]},
        execution={"retry": FAST_RETRY, "combine_fan_in": 4},
    )
    _, result = run_job(tmp_path, spec)
    assert result.state == "COMPLETED", result.errors
    # 12 -> 3 merges -> combine
    assert result.trace["attributes"]["analysis/analyze.merge.levels"] == "1"
    stats = read_result(result).to_pandas().set_index("column")
    reference = df.select("amount", "quantity").to_pandas()
    for column in ("amount", "quantity"):
        assert stats.loc[column, "count"] == reference[column].count()
        assert stats.loc[column, "mean"] == pytest.approx(reference[column].mean(), rel=1e-9)
        assert stats.loc[column, "std"] == pytest.approx(reference[column].std(), rel=1e-9)
        assert stats.loc[column, "min"] == reference[column].min()
        assert stats.loc[column, "max"] == reference[column].max()
