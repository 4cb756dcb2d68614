"""Metrics on Ray's Prometheus endpoint, OpenTelemetry spans and the audit log of a job."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
import ray
from conftest import EXAMPLES

from raysight.engine.observability import OtelObserver
from raysight.job.pipeline import AnalysisJob
from raysight.job.spec import parse_spec

pytestmark = pytest.mark.usefixtures("ray_session")


def spec(**changes):
    data = {"source": {"type": "file", "path": str(EXAMPLES / "data" / "sales.csv")},
            "user_id": "analyst_7",
            "analysis": {"type": "aggregation", "group_by": ["region"],
                         "metrics": [{"function": "count"}]},
            "execution": {"retry": {"initial_s": 0.01, "jitter": 0.0}}}
    data.update(changes)
    return parse_spec(data)


def test_one_trace_per_job_with_a_child_span_per_step(tmp_path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    job = AnalysisJob(spec(job_id="traced"), run_dir=tmp_path)
    result = job.run(observers=[OtelObserver(provider.get_tracer("test"))])
    assert result.state == "COMPLETED"
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "job traced"]
    children = [s for s in spans if s is not root]
    assert {s.name for s in children} >= {"source/load.plan", "source/load",
                                          "analysis/analyze", "results"}
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id
               for s in children)
    assert len({s.context.trace_id for s in spans}) == 1


def test_the_audit_log_records_who_did_what(tmp_path):
    job = AnalysisJob(spec(job_id="audited", execution={
        "retry": {"initial_s": 0.01}, "faults": [{"step": "analyze", "times": 1}]}),
        run_dir=tmp_path)
    assert job.run().state == "COMPLETED"
    lines = [json.loads(x) for x in (Path(tmp_path) / "audited" / "audit.jsonl")
             .read_text().splitlines()]
    assert [x["action"] for x in lines] == ["job_submitted", "step_retried", "job_completed"]
    assert {x["user_id"] for x in lines} == {"analyst_7"}
    assert lines[1]["details"]["step"] == "analysis/analyze"


def test_step_metrics_reach_rays_prometheus_endpoint(tmp_path):
    import uuid

    from raysight.job.graph_spec import parse_graph_spec

    node = f"metered_{uuid.uuid4().hex[:8]}"  # step names of this run's own
    AnalysisJob(parse_graph_spec({
        "version": 2,
        "sources": {"sales": {"type": "file", "path": str(EXAMPLES / "data" / "sales.csv")}},
        "analyses": {node: {"from": "sales", "type": "aggregation", "group_by": ["region"],
                            "metrics": [{"function": "count"}]}}}), run_dir=tmp_path).run()
    port = ray._private.worker.global_worker.node.metrics_export_port
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        if f'step="{node}/analyze"' in text:
            break
        time.sleep(1.0)
    # Ray prefixes application metrics with ray_ and suffixes counters with _total
    lines = [x for x in text.splitlines() if x.startswith("ray_raysight_steps_succeeded_total")
             and f'step="{node}/analyze"' in x]
    assert lines, "raysight step metrics did not appear on the metrics endpoint"
    assert float(lines[0].rsplit(" ", 1)[1]) == 1.0
    assert not any("job_id=" in x for x in text.splitlines()
                   if x.startswith("ray_raysight_steps"))  # bounded series: no job ids
