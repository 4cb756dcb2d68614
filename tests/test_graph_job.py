"""Specification of job graphs run end to end (raysight.job.pipeline): sources, datasets,
joins, unions and several analyses in one job, as one graph of Ray tasks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import job_tasks
from polars.testing import assert_frame_equal

from raysight.cli import main
from raysight.job.flows import shard_count
from raysight.job.graph_spec import parse_graph_spec
from raysight.job.pipeline import AnalysisJob

pytestmark = pytest.mark.usefixtures("ray_session")

ORDERS = pl.DataFrame({
    "order_id": list(range(40)),
    "customer_id": [None if i % 9 == 0 else i % 7 for i in range(40)],
    "amount": [float(i * 3 % 17) for i in range(40)],
    "name": [f"order {i}" for i in range(40)],
})
CUSTOMERS = pl.DataFrame({
    "id": [1, 2, 2, 3, 5, None, 8, 9],
    "region": ["north", "south", "süd", "east", None, "west", "ost", "東"],
    "name": [f"customer {i}" for i in range(8)],
})


def parts(folder: Path, df: pl.DataFrame, count: int = 4) -> str:
    """``df`` as ``count`` Parquet files (the first one empty) in ``folder``."""
    folder.mkdir(parents=True)
    bounds = [0, 0, *[(i * df.height) // (count - 1) for i in range(1, count)]]
    for i in range(count):
        df.slice(bounds[i], bounds[i + 1] - bounds[i]).write_parquet(folder / f"p{i}.parquet")
    return str(folder)


def run_graph(tmp_path: Path, data: dict) -> tuple[AnalysisJob, object]:
    job = AnalysisJob(parse_graph_spec(data), run_dir=tmp_path / "runs")
    return job, job.run()


def sources(tmp_path: Path) -> dict:
    return {"orders": {"type": "file", "path": parts(tmp_path / "orders", ORDERS)},
            "customers": {"type": "file", "path": parts(tmp_path / "customers", CUSTOMERS)}}


def exported(result, name: str) -> pl.DataFrame:
    return pl.read_parquet(Path(result.run_dir) / name)


def duckdb_join(how: str) -> pl.DataFrame:
    orders, customers = ORDERS.to_arrow(), CUSTOMERS.to_arrow()  # noqa: F841 (read by duckdb)
    if how in ("semi", "anti"):
        return duckdb.sql(f"SELECT o.* FROM orders o {how.upper()} JOIN customers c "
                          "ON o.customer_id = c.id").pl()
    kind = {"inner": "INNER", "left": "LEFT", "right": "RIGHT", "full": "FULL OUTER"}[how]
    # as Polars' default: one key, named as on the side whose rows all stay; both keys in a
    # full join
    key = {"full": "o.customer_id, c.id", "right": "c.id"}.get(how, "o.customer_id")
    return duckdb.sql(
        f"SELECT o.order_id, {key}, o.amount, o.name, c.region, "
        f"c.name AS name_right FROM orders o {kind} JOIN customers c "
        "ON o.customer_id = c.id").pl()


def polars_join(how: str) -> pl.DataFrame:
    return ORDERS.join(CUSTOMERS, left_on="customer_id", right_on="id", how=how,
                       suffix="_right")


def same_rows(actual: pl.DataFrame, expected: pl.DataFrame) -> None:
    expected = expected.select(actual.columns)
    key = [c for c in actual.columns]
    assert_frame_equal(actual.sort(key, nulls_last=True),
                       expected.cast(actual.schema).sort(key, nulls_last=True))


@pytest.mark.parametrize("how,strategy", [
    (how, strategy)
    for how in ("inner", "left", "right", "full", "semi", "anti")
    for strategy in ("broadcast", "shuffle")
    if not (how == "full" and strategy == "broadcast")
])
def test_a_join_of_two_partitioned_sources_equals_polars_and_duckdb(tmp_path, how, strategy):
    data = {
        "version": 2, "job_id": f"join-{how}-{strategy}", "sources": sources(tmp_path),
        "joins": {"enriched": {"left": "orders", "right": "customers",
                               "left_on": ["customer_id"], "right_on": ["id"], "how": how,
                               "strategy": strategy}},
        "analyses": {"count": {"from": "enriched", "type": "descriptive",
                               "columns": ["order_id"]}},
        "exports": [{"from": "enriched", "format": "parquet", "path": "enriched.parquet"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    actual = exported(result, "enriched.parquet")
    same_rows(actual, polars_join(how))
    same_rows(actual, duckdb_join(how))
    # 2 plans and 8 loads, then 1 gather and a join per CPU (2), or a shard split per CPU
    # and side (4) and a join per shard
    expect = 10 + (3 if strategy == "broadcast" else 6)
    names = [t.name for t in job_tasks(f"join-{how}-{strategy}", expect=expect)]
    prefix = f"join-{how}-{strategy}/enriched/"
    if strategy == "shuffle":
        # each side's 4 partitions are split by key in one task per CPU of the test
        # cluster; one join task per shard
        assert names.count(prefix + "join.shard.left") == 2
        assert names.count(prefix + "join.shard.right") == 2
        assert names.count(prefix + "join") >= 2
    else:
        # the small side is gathered once; the other side's 4 partitions join with it in
        # one task per CPU of the test cluster
        assert names.count(prefix + "join.gather") == 1
        assert names.count(prefix + "join") == 2
        assert prefix + "join.shard.left" not in names


def test_three_analyses_of_one_dataset_load_it_once_and_run_concurrently(tmp_path):
    data = {
        "version": 2, "job_id": "three",
        "sources": {"orders": sources(tmp_path)["orders"]},
        "datasets": {"paid": {"from": "orders",
                              "preprocessing": [{"op": "filter_rows",
                                                 "condition": "amount > 0"}]}},
        "analyses": {
            "profile": {"from": "paid", "type": "descriptive", "columns": ["amount"]},
            "by_customer": {"from": "paid", "type": "aggregation", "group_by": ["customer_id"],
                            "metrics": [{"column": "amount", "function": "sum",
                                         "alias": "total"}]},
            "words": {"from": "paid", "type": "text_frequency", "column": "name"},
        },
        "visualizations": [{"from": "by_customer", "type": "bar", "x": "customer_id",
                            "y": "total"}],
        "exports": [{"from": "profile", "format": "json", "path": "profile.json"},
                    {"from": "by_customer", "format": "parquet", "path": "by_customer.parquet"},
                    {"from": "words", "format": "csv", "path": "words.csv"},
                    {"format": "html", "path": "report.html"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    events = [json.loads(line) for line in
              (Path(result.run_dir) / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event_type"] == "data_loaded"] == ["orders/load"]
    assert [t.name for t in job_tasks("three", expect=5)].count("three/orders/load") == 4
    # every analysis started before any of them finished: their intervals overlap
    analyses = ("profile", "by_customer", "words")
    started = [i for i, e in enumerate(events)
               if e["event_type"] == "node_started" and e["step"] in analyses]
    finished = [i for i, e in enumerate(events)
                if e["event_type"] == "node_succeeded" and e["step"] in analyses]
    assert len(started) == len(finished) == 3 and max(started) < min(finished)
    assert set(result.analyses) == set(analyses)
    assert result.analyses["by_customer"]["outputs"] == ["by_customer.parquet"]
    expected = (ORDERS.filter(pl.col("amount") > 0).group_by("customer_id")
                .agg(pl.col("amount").sum().alias("total")))
    same_rows(exported(result, "by_customer.parquet"), expected)
    report = (Path(result.run_dir) / "report.html").read_text(encoding="utf-8")
    sections = re.findall(r'<section class="analysis" id="analysis-\d+-(\w+)">', report)
    assert sections == list(analyses)


def test_a_diamond_runs_each_node_once(tmp_path):
    data = {
        "version": 2, "job_id": "diamond", "sources": sources(tmp_path),
        "joins": {"enriched": {"left": "orders", "right": "customers",
                               "left_on": ["customer_id"], "right_on": ["id"]}},
        "analyses": {
            "joined": {"from": "enriched", "type": "descriptive", "columns": ["amount"]},
            "direct": {"from": "orders", "type": "descriptive", "columns": ["amount"]},
        },
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    names = [t.name for t in job_tasks("diamond", expect=10)]
    assert names.count("diamond/orders/load") == 4  # one task per partition, once
    assert names.count("diamond/orders/load.plan") == 1
    assert result.analyses["direct"]["summary"]["row_count"] == ORDERS.height


def test_a_union_unifies_its_inputs_by_column_name(tmp_path):
    other = pl.DataFrame({"order_id": [100, 101], "amount": [1, 2], "extra": ["x", "ÿ"]})
    data = {
        "version": 2, "job_id": "union",
        "sources": {"orders": sources(tmp_path)["orders"],
                    "more": {"type": "file", "path": parts(tmp_path / "more", other, 2)}},
        "unions": {"all": {"inputs": ["orders", "more"]}},
        "analyses": {"n": {"from": "all", "type": "descriptive", "columns": ["amount"]}},
        "exports": [{"from": "all", "format": "parquet", "path": "all.parquet"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    expected = pl.concat([ORDERS, other], how="diagonal_relaxed")
    same_rows(exported(result, "all.parquet"), expected)


# ---------------------------------------------------------------------------------------------
# Bad specs: exit 2, the node and the field named, nothing written


def write_spec(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(data))
    return str(path)


def bad_join(tmp_path: Path, **join: object) -> dict:
    return {"version": 2, "job_id": "bad", "sources": sources(tmp_path),
            "joins": {"enriched": {"left": "orders", "right": "customers", **join}},
            "analyses": {"a": {"from": "enriched", "type": "descriptive"}},
            "exports": [{"format": "html", "path": "report.html"}]}


@pytest.mark.parametrize("change,message", [
    (lambda d: d["analyses"]["a"].update({"from": "enrichd"}),
     "analyses.a.from: unknown node 'enrichd'; did you mean 'enriched'?"),
    (lambda d: d["joins"]["enriched"].update({"left": "enriched"}),
     "joins.enriched.left: the nodes form a cycle: enriched -> enriched"),
    (lambda d: d.setdefault("datasets", {}).update({"orders": {"from": "customers"}}),
     "datasets.orders: node name 'orders' is also used in sources"),
])
def test_a_bad_graph_is_refused_before_anything_runs(tmp_path, capsys, change, message):
    data = bad_join(tmp_path, left_on=["customer_id"], right_on=["id"])
    change(data)
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("join,message", [
    ({"left_on": ["customer"], "right_on": ["id"]},
     "join 'enriched': left_on column 'customer'"),
    ({"left_on": ["customer_id"], "right_on": ["region"]}, "region"),
])
def test_a_join_key_missing_or_of_another_type_is_refused_before_the_run_from_parquet_footers(
        tmp_path, capsys, join, message):
    path = write_spec(tmp_path, bad_join(tmp_path, **join))
    assert main(["run", path, "--run-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert message in err and "enriched" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_an_analysis_missing_its_column_is_refused_before_the_run(tmp_path, capsys):
    data = bad_join(tmp_path, left_on=["customer_id"], right_on=["id"])
    data["analyses"]["a"] = {"from": "enriched", "type": "aggregation", "group_by": ["regoin"],
                             "metrics": [{"function": "count", "alias": "n"}]}
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "analysis 'a' (of 'enriched'): column 'regoin' not found" in err
    assert "did you mean 'region'?" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_dataset_operation_naming_a_missing_column_is_refused_before_the_run(
        tmp_path, capsys):
    data = bad_join(tmp_path, left_on=["customer_id"], right_on=["id"])
    data["datasets"] = {"paid": {"from": "orders", "preprocessing": [
        {"op": "filter_rows", "condition": "amount > 0"},
        {"op": "drop_missing", "columns": ["amuont"]}]}}
    data["joins"]["enriched"]["left"] = "paid"
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "dataset 'paid', preprocessing[1] (drop_missing): column 'amuont' not found" in err
    assert not (tmp_path / "runs").exists()


def test_a_join_after_a_dataset_is_checked_through_its_operations(tmp_path, capsys):
    data = bad_join(tmp_path, left_on=["order"], right_on=["id"])
    data["datasets"] = {"paid": {"from": "orders", "preprocessing": [
        {"op": "filter_rows", "condition": "amount > 0"},
        {"op": "date_extraction", "column": "order_date", "strict": False}]}}
    data["joins"]["enriched"]["left"] = "paid"
    code = main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "order_date" in err  # the first problem on the way: a missing column
    data["datasets"]["paid"]["preprocessing"].pop()
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    assert "join 'enriched': left_on column 'order'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_join_key_missing_in_a_csv_source_fails_the_join_naming_node_and_column(
        tmp_path, capsys):
    ORDERS.write_csv(tmp_path / "orders.csv")
    CUSTOMERS.write_csv(tmp_path / "customers.csv")
    data = bad_join(tmp_path, left_on=["customer"], right_on=["id"])
    data["sources"] = {name: {"type": "file", "path": str(tmp_path / f"{name}.csv")}
                       for name in ("orders", "customers")}
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    out = capsys.readouterr()
    assert "join 'enriched': left_on column 'customer'" in out.out + out.err
    assert "Traceback" not in out.err
    run = next((tmp_path / "runs").iterdir())
    assert not (run / "report.html").exists()


def test_an_analysis_column_missing_in_a_csv_source_fails_naming_node_step_and_column(
        tmp_path, capsys):
    ORDERS.write_csv(tmp_path / "orders.csv")
    data = {"version": 2, "job_id": "bad-column",
            "sources": {"orders": {"type": "file", "path": str(tmp_path / "orders.csv")}},
            "analyses": {"by_region": {"from": "orders", "type": "aggregation",
                                       "group_by": ["region"],
                                       "metrics": [{"function": "count"}]}}}
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    out = capsys.readouterr()
    assert "in by_region/analyze: group-by column 'region' not found" in out.out
    assert "Traceback" not in out.err
    result = json.loads((tmp_path / "runs" / "bad-column" / "result.json").read_text())
    (error,) = result["errors"]
    assert (error["node"], error["step"], error["column"]) == \
        ("by_region", "by_region/analyze", "region")


# ---------------------------------------------------------------------------------------------
# Resume per node


def test_a_killed_driver_is_resumed_without_loading_the_sources_or_joining_again(
        tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = [sys.executable, "-m", "raysight"]
    runs = tmp_path / "runs"

    def spec(job_id: str, faults: list) -> str:
        data = {"version": 2, "job_id": job_id, "sources": sources(tmp_path / job_id),
                "joins": {"enriched": {"left": "orders", "right": "customers",
                                       "left_on": ["customer_id"], "right_on": ["id"],
                                       "strategy": "shuffle"}},
                "analyses": {"by_region": {
                    "from": "enriched", "type": "aggregation", "group_by": ["region"],
                    "metrics": [{"column": "amount", "function": "sum", "alias": "total"}]}},
                "exports": [{"from": "by_region", "format": "parquet", "path": "out.parquet"}],
                "execution": {"keep_checkpoints": True, "faults": faults}}
        return write_spec(tmp_path / job_id, data)

    expected = subprocess.run([*driver, "run", spec("expected", []), "--run-dir", str(runs),
                               "--quiet"], cwd=REPO_ROOT, env=env, timeout=300)
    assert expected.returncode == 0
    slow = [{"step": "by_region/analyze.combine", "error": "delay", "delay_s": 120}]
    proc = subprocess.Popen([*driver, "run", spec("killed", slow), "--run-dir", str(runs),
                             "--quiet"], cwd=REPO_ROOT, env=env, start_new_session=True)
    run_dir = runs / "killed"
    deadline = time.monotonic() + 120
    while not any(e["event_type"] == "step_started" and e["step"].startswith("by_region/")
                  for e in _events(run_dir)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = len(_events(run_dir))
    resumed = subprocess.run([*driver, "resume", "killed", "--run-dir", str(runs), "--quiet",
                              "--set", "execution.faults=[]"], cwd=REPO_ROOT, env=env,
                             timeout=300, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = _events(run_dir)[before:]
    started = {e["step"] for e in after if e["event_type"] == "step_started"}
    restored = {e["step"] for e in after if e["event_type"] == "step_restored"}
    assert {"orders/load", "customers/load", "enriched/join"} <= restored
    assert not {s for s in started if s.endswith("/load") or s.endswith("/load.plan")}
    assert not {s for s in started if s.startswith("enriched/")}  # no shuffle again
    nodes = {e["step"]: e["data"].get("restored") for e in after
             if e["event_type"] == "node_succeeded"}
    assert nodes == {"orders": True, "customers": True, "enriched": True, "by_region": None}
    assert pl.read_parquet(run_dir / "out.parquet").sort("region").equals(
        pl.read_parquet(runs / "expected" / "out.parquet").sort("region"))


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_job_built_in_python_runs_like_its_yaml_form(tmp_path):
    from raysight.job.builder import Job

    job = Job("built", settings={"execution": {"checkpoint": False}})
    paths = sources(tmp_path)
    orders = job.source("orders", paths["orders"])
    customers = job.source("customers", paths["customers"])
    enriched = orders.join("enriched", customers, left_on=["customer_id"], right_on=["id"])
    enriched.analyze("by_region", type="aggregation", group_by=["region"],
                     metrics=[{"function": "count", "alias": "n"}])
    job.export("by_region", format="parquet", path="by_region.parquet")
    result = AnalysisJob(job.spec(), run_dir=tmp_path / "runs").run()
    assert result.state == "COMPLETED", result.errors
    expected = polars_join("inner").group_by("region").agg(pl.len().alias("n"))
    same_rows(exported(result, "by_region.parquet"), expected)


def test_a_distinct_union_feeds_an_analysis_a_join_and_an_export(tmp_path):
    both = sources(tmp_path)
    data = {
        "version": 2, "job_id": "distinct",
        "sources": {"a": both["orders"],
                    # b repeats rows of a, and some of its own
                    "b": {"type": "file", "path": parts(
                        tmp_path / "b", pl.concat([ORDERS.head(10), ORDERS.head(3)]), 2)},
                    "customers": both["customers"]},
        "unions": {"u": {"inputs": ["a", "b"], "distinct": True}},
        "joins": {"j": {"left": "u", "right": "customers", "left_on": ["customer_id"],
                        "right_on": ["id"]}},
        "analyses": {"n": {"from": "u", "type": "descriptive", "columns": ["amount"]},
                     "by_region": {"from": "j", "type": "aggregation", "group_by": ["region"],
                                   "metrics": [{"function": "count", "alias": "n"}]}},
        "exports": [{"from": "u", "format": "parquet", "path": "u.parquet"},
                    {"from": "by_region", "format": "parquet", "path": "by_region.parquet"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    same_rows(exported(result, "u.parquet"), ORDERS)  # the rows of b are all in a
    # every input partition is hashed in its own task, then one task per shard drops the
    # duplicates (equal rows, null keys included, meet in one shard)
    names = [t.name for t in job_tasks("distinct", expect=5)]
    assert names.count("distinct/u/union.shard") == 4 + 2
    assert names.count("distinct/u/union") == shard_count()
    expected = polars_join("inner").group_by("region").agg(pl.len().alias("n"))
    same_rows(exported(result, "by_region.parquet"), expected)
    assert result.analyses["n"]["summary"]["row_count"] == ORDERS.height


def test_a_self_join_reads_its_node_once(tmp_path):
    data = {
        "version": 2, "job_id": "self-join", "sources": {"orders": sources(tmp_path)["orders"]},
        "joins": {"pairs": {"left": "orders", "right": "orders", "on": ["customer_id"],
                            "suffix": "_other"}},
        "analyses": {"n": {"from": "pairs", "type": "descriptive", "columns": ["amount"]}},
        "exports": [{"from": "pairs", "format": "parquet", "path": "pairs.parquet"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    expected = ORDERS.join(ORDERS, on="customer_id", suffix="_other")
    same_rows(exported(result, "pairs.parquet"), expected)
    names = [t.name for t in job_tasks("self-join", expect=5)]
    assert names.count("self-join/orders/load") == 4


def test_the_report_is_no_one_analysis_output(tmp_path):
    data = {
        "version": 2, "job_id": "report", "sources": {"orders": sources(tmp_path)["orders"]},
        "analyses": {"a": {"from": "orders", "type": "descriptive", "columns": ["amount"]},
                     "b": {"from": "orders", "type": "text_frequency", "column": "name"}},
        "exports": [{"format": "html", "path": "report.html"},
                    {"from": "b", "format": "csv", "path": "b.csv"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    assert result.outputs == ["report.html", "b.csv"]
    assert (result.analyses["a"]["outputs"], result.analyses["b"]["outputs"]) == ([], ["b.csv"])


def test_the_report_of_a_one_analysis_job_is_that_analysis_page(tmp_path):
    data = {
        "version": 2, "job_id": "one-report", "sources": {"orders": sources(tmp_path)["orders"]},
        "analyses": {"by_customer": {"from": "orders", "type": "aggregation",
                                     "group_by": ["customer_id"],
                                     "metrics": [{"function": "count", "alias": "n"}]}},
        "visualizations": [{"type": "bar", "x": "customer_id", "y": "n"}],
        "exports": [{"format": "html", "path": "report.html"}],
    }
    _, result = run_graph(tmp_path, data)
    assert result.state == "COMPLETED", result.errors
    html = (Path(result.run_dir) / "report.html").read_text(encoding="utf-8")
    assert "<title>Aggregation report</title>" in html and "Report of" not in html
    assert html.count("Plotly.newPlot") == 1  # its chart, on its page
    assert result.analyses["by_customer"]["outputs"] == ["report.html"]


def test_a_missing_source_is_named_by_its_node(tmp_path, capsys):
    data = bad_join(tmp_path, left_on=["customer_id"], right_on=["id"])
    data["sources"]["customers"]["path"] = str(tmp_path / "nowhere.parquet")
    assert main(["run", write_spec(tmp_path, data), "--run-dir", str(tmp_path / "runs")]) == 2
    assert "source 'customers': source file not found" in capsys.readouterr().err
