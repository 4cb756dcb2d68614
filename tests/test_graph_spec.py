"""Specification of spec version 2, a job as a graph of named nodes (raysight.job.graph_spec),
and of its Python form (raysight.job.builder)."""

from __future__ import annotations

import re

import jsonschema
import pytest
from conftest import EXAMPLES

from raysight.job.builder import Job
from raysight.job.graph_spec import as_graph, graph_json_schema, parse_graph_spec
from raysight.job.spec import SpecError, load_spec, read_yaml

SKETCH = """
version: 2
job_id: orders-report
sources:
  orders: {type: file, path: data/orders.parquet}
  customers: {type: file, path: data/customers.csv}
datasets:
  big_orders: {from: orders, preprocessing: [{op: filter_rows, condition: "amount > 10"}]}
joins:
  enriched: {left: big_orders, right: customers, on: [customer_id], how: left}
unions:
  both: {inputs: [orders, big_orders]}
analyses:
  by_region: {from: enriched, type: aggregation, group_by: [region],
              metrics: [{function: count, alias: n}]}
  profile: {from: big_orders, type: descriptive}
  words: {from: both, type: custom, name: text_frequency, params: {column: note}}
visualizations: [{from: by_region, type: bar, x: region, y: n}]
exports:
  - {from: by_region, format: parquet, path: by_region.parquet}
  - {from: big_orders, format: csv, path: big_orders.csv}
  - {format: html, path: report.html}
"""


def sketch() -> dict:
    return read_yaml(SKETCH)


def error_of(data: dict) -> str:
    with pytest.raises(SpecError) as err:
        parse_graph_spec(data, "job.yaml")
    return str(err.value)


# ---------------------------------------------------------------------------------------------
# The graph


def test_the_sketch_validates_into_named_nodes_with_their_inputs():
    spec = parse_graph_spec(sketch())
    assert spec.nodes() == {"orders": "sources", "customers": "sources",
                            "big_orders": "datasets", "enriched": "joins", "both": "unions",
                            "by_region": "analyses", "profile": "analyses", "words": "analyses"}
    assert spec.inputs("orders") == ()
    assert spec.inputs("big_orders") == ("orders",)
    assert spec.inputs("enriched") == ("big_orders", "customers")
    assert spec.inputs("both") == ("orders", "big_orders")
    assert spec.inputs("by_region") == ("enriched",)
    assert spec.joins["enriched"].on == ["customer_id"]


def test_a_yaml_on_key_is_the_join_keys_not_a_boolean():
    assert read_yaml("on: [id]\noff: 1\nyes: no\nflag: true") == \
        {"on": ["id"], "off": 1, "yes": "no", "flag": True}


def test_the_custom_form_of_an_analysis_node_becomes_its_kernel_and_keeps_from():
    words = parse_graph_spec(sketch()).analyses["words"]
    assert (words.type, words.column, words.from_) == ("text_frequency", "note", "both")


def test_a_chart_reads_its_analysis_and_a_job_with_one_analysis_needs_no_from():
    spec = parse_graph_spec(sketch())
    assert spec.analysis_of(spec.visualizations[0]).type == "aggregation"
    one = sketch()
    one["analyses"] = {"by_region": one["analyses"]["by_region"]}
    one["exports"] = [{"format": "json", "path": "a.json"}]
    del one["visualizations"][0]["from"]
    spec = parse_graph_spec(one)
    assert spec.visualizations[0].from_ is None
    assert spec.analysis_of(spec.exports[0]).group_by == ["region"]


def test_the_dumped_spec_validates_again_to_the_same_spec():
    spec = parse_graph_spec(sketch())
    again = parse_graph_spec(spec.model_dump(mode="json", by_alias=True))
    assert again == spec


def test_the_json_schema_accepts_the_sketch_and_rejects_an_unknown_key():
    schema = graph_json_schema()
    jsonschema.validate(sketch(), schema)
    bad = sketch()
    bad["datasets"]["big_orders"]["form"] = "orders"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


VERSION_1_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.yaml")
                            if read_yaml(p.read_text()).get("version", 1) == 1)


def test_the_job_graph_example_validates():
    spec = parse_graph_spec(read_yaml((EXAMPLES / "sales_graph.yaml").read_text()))
    assert spec.inputs("with_managers") == ("clean_sales", "regions")


@pytest.mark.parametrize("path", VERSION_1_EXAMPLES)
def test_every_version_1_example_reads_as_a_one_analysis_graph(path):
    v1 = load_spec(EXAMPLES / path)
    graph = parse_graph_spec(read_yaml((EXAMPLES / path).read_text()))
    assert set(graph.analyses) == {"analysis"} and set(graph.sources) == {"source"}
    assert graph.sources["source"] == v1.source
    feeds = "data" if v1.preprocessing else "source"
    assert graph.inputs("analysis") == (feeds,)
    if v1.preprocessing:
        assert graph.datasets["data"].preprocessing == v1.preprocessing
    analysis = graph.analyses["analysis"]
    assert analysis.model_dump(exclude={"from_"}) == v1.analysis.model_dump()
    assert len(graph.exports) == len(v1.exports)
    assert graph.job_id == v1.job_id


def test_as_graph_names_the_nodes_of_a_version_1_spec():
    data = {"source": {"type": "file", "path": "x.csv"},
            "analysis": {"type": "descriptive"}}
    assert as_graph(data) == {"version": 2, "sources": {"source": data["source"]},
                              "analyses": {"analysis": {"from": "source",
                                                        "type": "descriptive"}}}


# ---------------------------------------------------------------------------------------------
# Errors, each naming the node and the field


def test_the_migration_of_version_1_is_registered_and_renames_its_faults_by_node():
    from raysight.job.spec import MIGRATIONS

    assert MIGRATIONS[1] is as_graph
    faults = [{"step": "load"}, {"step": "preprocess.stats"}, {"step": "analyze.combine"},
              {"step": "results"}, {"step": "notify", "times": 2}]
    data = {"source": {"type": "file", "path": "x.csv"}, "analysis": {"type": "descriptive"},
            "execution": {"timeout_s": 60, "faults": faults}}
    graph = as_graph(data)
    assert [f["step"] for f in graph["execution"]["faults"]] == [
        "source/load", "data/preprocess.stats", "analysis/analyze.combine", "results", "notify"]
    assert graph["execution"]["timeout_s"] == 60 and graph["execution"]["faults"][4]["times"] == 2
    assert data["execution"]["faults"][0] == {"step": "load"}  # the input is left as it was


def test_a_bad_version_1_spec_is_reported_in_its_own_fields():
    with pytest.raises(SpecError) as err:
        parse_graph_spec({"source": {"type": "file", "path": "x.csv"},
                          "analysis": {"type": "aggregation", "group_by": ["a"],
                                       "metricz": []}})
    assert "analysis.metricz: unknown key" in str(err.value)
    assert "analyses." not in str(err.value)


def test_a_version_0_spec_migrates_through_version_1_to_its_graph():
    spec = parse_graph_spec({"version": 0, "id": "seed-job",
                             "source": {"type": "file", "path": "x.csv"},
                             "analysis": {"type": "descriptive"},
                             "execution_settings": {"timeout": 90, "max_retries": 1}})
    assert (spec.version, spec.job_id, set(spec.analyses)) == (2, "seed-job", {"analysis"})
    assert (spec.execution.timeout_s, spec.execution.max_retries) == (90.0, 1)


def test_a_spec_version_newer_than_raysight_is_refused_with_the_newest_it_reads():
    with pytest.raises(SpecError, match="spec version 3 is newer than this raysight "
                                        r"understands \(up to 2\)"):
        parse_graph_spec({"version": 3, "sources": {}, "analyses": {}})


def test_an_unknown_node_is_named_with_the_closest_one():
    data = sketch()
    data["datasets"]["big_orders"]["from"] = "ordrs"
    message = error_of(data)
    assert "datasets.big_orders.from: unknown node 'ordrs'; did you mean 'orders'?" in message
    assert "(got" not in message


def test_a_name_used_in_two_sections_is_refused():
    data = sketch()
    data["datasets"]["orders"] = {"from": "customers"}
    assert "datasets.orders: node name 'orders' is also used in sources" in error_of(data)


def test_a_cycle_is_named_node_by_node():
    data = sketch()
    data["datasets"]["a"] = {"from": "c"}
    data["joins"]["b"] = {"left": "a", "right": "orders", "on": ["id"]}
    data["unions"]["c"] = {"inputs": ["orders", "b"]}
    message = error_of(data)
    assert re.search(r"datasets\.a\.from: the nodes form a cycle: a -> c -> b -> a", message)


def test_a_node_reading_itself_is_a_cycle():
    data = sketch()
    data["datasets"]["big_orders"]["from"] = "big_orders"
    assert "the nodes form a cycle: big_orders -> big_orders" in error_of(data)


def test_an_analysis_is_no_data_input():
    data = sketch()
    data["joins"]["enriched"]["right"] = "profile"
    assert ("joins.enriched.right: 'profile' is an analysis; this must name a source, "
            "dataset, join or union") in error_of(data)


def test_a_chart_must_name_its_analysis_when_the_job_has_several():
    data = sketch()
    del data["visualizations"][0]["from"]
    assert ("visualizations[0].from: name the analysis it renders: the job has 3 "
            "(by_region, profile, words)") in error_of(data)


def test_a_chart_naming_a_data_node_is_refused():
    data = sketch()
    data["visualizations"][0]["from"] = "enriched"
    assert "visualizations[0].from: 'enriched' is a node of joins" in error_of(data)


def test_a_chart_column_its_analysis_does_not_produce_is_refused():
    data = sketch()
    data["visualizations"][0]["y"] = "count"
    assert ("visualizations[0].y: column 'count' is not in the aggregation result, whose "
            "columns will be: region, n") in error_of(data)


def test_the_html_report_takes_no_from():
    data = sketch()
    data["exports"][2]["from"] = "by_region"
    assert "exports[2].from: the HTML report covers every analysis" in error_of(data)


def test_a_bad_node_name_is_refused_with_the_rule():
    data = sketch()
    data["sources"]["raw/orders"] = {"type": "file", "path": "x.csv"}
    assert "sources.raw/orders: bad node name 'raw/orders'" in error_of(data)


def test_a_bad_parameter_of_a_custom_analysis_node_names_its_field():
    data = sketch()
    data["analyses"]["words"]["params"]["column"] = 3
    assert "analyses.words.params.column: Input should be a valid string" in error_of(data)


def test_a_job_without_sources_or_analyses_is_refused():
    data = sketch()
    data["sources"] = {}
    data["analyses"] = {}
    message = error_of(data)
    assert "sources: Dictionary should have at least 1 item" in message
    assert "analyses: Dictionary should have at least 1 item" in message


# ---------------------------------------------------------------------------------------------
# The Python form


def test_the_python_form_gives_the_spec_the_yaml_form_gives():
    job = Job("orders-report")
    orders = job.source("orders", type="file", path="data/orders.parquet")
    customers = job.source("customers", {"type": "file", "path": "data/customers.csv"})
    big = orders.preprocess("big_orders", {"op": "filter_rows", "condition": "amount > 10"})
    enriched = big.join("enriched", customers, on=["customer_id"], how="left")
    both = orders.union("both", big)
    enriched.analyze("by_region", type="aggregation", group_by=["region"],
                     metrics=[{"function": "count", "alias": "n"}])
    big.analyze("profile", type="descriptive")
    both.analyze("words", type="custom", name="text_frequency", params={"column": "note"})
    job.chart("by_region", type="bar", x="region", y="n")
    job.export("by_region", format="parquet", path="by_region.parquet")
    job.export(big, format="csv", path="big_orders.csv")
    job.export(format="html", path="report.html")
    assert job.spec() == parse_graph_spec(sketch())


def test_the_python_form_refuses_a_name_twice_at_once():
    job = Job()
    job.source("orders", type="file", path="x.csv")
    with pytest.raises(ValueError, match="node 'orders' is already one of the job's sources"):
        job.source("orders", type="file", path="y.csv")


def test_the_python_form_reports_spec_errors_like_a_file():
    job = Job("bad")
    job.source("orders", type="file", path="x.csv")
    job.analysis("profile", "ordrs", type="descriptive")
    with pytest.raises(SpecError, match="analyses.profile.from: unknown node 'ordrs'"):
        job.spec()

