"""The job manager's metrics reach Ray's Prometheus endpoint under the names the Grafana
dashboard charts, and every dashboard query names a metric raysight defines."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Callable

import pytest
import ray
from conftest import REPO_ROOT
from prometheus_client.parser import text_string_to_metric_families

from raysight.service.metrics import METRIC_NAMES, ManagerMetrics

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "raysight.json"

Sample = tuple[str, dict[str, str], float]
#: what Ray appends to each of METRIC_NAMES on export (gauges, counters, histograms)
EXPORTED_SUFFIXES = ("", "", "", "_total", "_total", "_total", "_count", "_count")


def scrape() -> list[Sample]:
    """Every sample on the Prometheus endpoints of the session's live nodes."""
    samples: list[Sample] = []
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            samples.extend((s.name, s.labels, s.value) for s in family.samples)
    return samples


def wait_for_samples(found: Callable[[list[Sample]], bool],
                     timeout_s: float = 60.0) -> list[Sample]:
    """Scrape until ``found`` holds (Ray exports metrics every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape()
        if found(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(1.0)


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    matching = [v for n, tags, v in samples
                if n == name and all(tags.get(k) == want for k, want in labels.items())]
    return sum(matching) if matching else None


@ray.remote(num_cpus=0)
class Recorder:
    """Stands in for the job manager: records through ManagerMetrics in its own process."""

    def __init__(self, name: str) -> None:
        self.metrics = ManagerMetrics(name)

    def record(self) -> None:
        self.metrics.submitted("vip_ana")
        self.metrics.submitted("vip_ana")
        self.metrics.submitted("bob")
        self.metrics.queue(pending=4, running=2, paused=1)
        self.metrics.started(wait_s=3.0)
        self.metrics.started(wait_s=40.0)
        self.metrics.finished("COMPLETED", run_s=1.5)
        self.metrics.finished("COMPLETED", run_s=20.0)
        self.metrics.finished("FAILED", run_s=0.2)
        self.metrics.preempted()


@pytest.mark.usefixtures("ray_session")
def test_manager_metrics_recorded_in_an_actor_reach_the_prometheus_endpoint():
    name = f"m-{uuid.uuid4().hex[:8]}"
    recorder = Recorder.remote(name)
    ray.get(recorder.record.remote())
    mine = {"manager": name}
    # Ray's metrics agent may show one metric an export before another: wait for them all
    samples = wait_for_samples(lambda s: all(
        value(s, f"ray_{metric}{suffix}", **mine) is not None
        for metric, suffix in zip(METRIC_NAMES, EXPORTED_SUFFIXES, strict=True)))
    assert value(samples, "ray_raysight_queue_length", **mine) == 4
    assert value(samples, "ray_raysight_running_jobs", **mine) == 2
    assert value(samples, "ray_raysight_paused_jobs", **mine) == 1
    assert value(samples, "ray_raysight_jobs_submitted_total", **mine, user="vip_ana") == 2
    assert value(samples, "ray_raysight_jobs_submitted_total", **mine, user="bob") == 1
    assert value(samples, "ray_raysight_jobs_finished_total", **mine, state="COMPLETED") == 2
    assert value(samples, "ray_raysight_jobs_finished_total", **mine, state="FAILED") == 1
    assert value(samples, "ray_raysight_jobs_preempted_total", **mine) == 1
    assert value(samples, "ray_raysight_job_wait_seconds_count", **mine) == 2
    assert value(samples, "ray_raysight_job_wait_seconds_bucket", **mine, le="5.0") == 1
    assert value(samples, "ray_raysight_job_wait_seconds_bucket", **mine, le="60.0") == 2
    assert value(samples, "ray_raysight_job_run_seconds_count", **mine) == 3
    assert value(samples, "ray_raysight_job_run_seconds_bucket", **mine, le="0.5") == 1
    ray.kill(recorder)


def test_the_job_managers_jobs_show_in_its_metrics(ray_session, tmp_path):
    from raysight.job.graph_spec import parse_graph_spec
    from raysight.job.pipeline import AnalysisJob
    from raysight.service import manager as mgr

    data = tmp_path / "t.csv"
    data.write_text("k,v\na,1\nb,2\n")
    name = f"metered-{uuid.uuid4().hex[:8]}"
    client = mgr.start_manager(str(tmp_path / "runs"), 2, name)
    try:
        spec = parse_graph_spec({"version": 1, "user_id": "vip_metered",
                                 "source": {"type": "file", "path": str(data)},
                                 "analysis": {"type": "descriptive"}})
        job_id = client.submit(AnalysisJob(spec, run_dir=tmp_path / "runs"))
        assert client.wait(job_id, timeout_s=60, poll_s=0.2)["state"] == "COMPLETED"
        mine = {"manager": name}
        expected = {("ray_raysight_jobs_submitted_total", "user", "vip_metered"): 1.0,
                    ("ray_raysight_jobs_finished_total", "state", "COMPLETED"): 1.0,
                    ("ray_raysight_job_wait_seconds_count", "", ""): 1.0,
                    ("ray_raysight_job_run_seconds_count", "", ""): 1.0}

        def seen(samples: list[Sample]) -> dict:
            return {key: value(samples, key[0], **mine, **({key[1]: key[2]} if key[1] else {}))
                    for key in expected}

        samples = wait_for_samples(lambda s: seen(s) == expected)
        assert seen(samples) == expected
        assert value(samples, "ray_raysight_queue_length", **mine) == 0
    finally:
        ray.kill(client.handle, no_restart=True)


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def _defined_metrics() -> set[str]:
    """What raysight defines, under the names Ray exports them by."""
    from raysight.engine import observability

    names = set(METRIC_NAMES) | set(re.findall(r'"(raysight_[a-z_]+)"',
                                               open(observability.__file__).read()))
    exported = set()
    for name in names:
        exported |= {f"ray_{name}", f"ray_{name}_total", f"ray_{name}_bucket",
                     f"ray_{name}_sum", f"ray_{name}_count"}
    return exported


def test_every_dashboard_query_names_a_metric_raysight_defines():
    exprs = _dashboard_exprs()
    assert exprs, f"{DASHBOARD} has no panel queries"
    defined = _defined_metrics()
    for title, expr in exprs:
        named = set(re.findall(r"\bray_raysight_[a-z_]+", expr))
        assert named, f"panel {title!r} queries no raysight metric: {expr}"
        assert named <= defined, f"panel {title!r} names undefined {named - defined}: {expr}"


def test_the_dashboard_charts_the_queue_outcomes_wait_times_and_steps():
    exprs = " ".join(expr for _, expr in _dashboard_exprs())
    for needed in ("ray_raysight_queue_length", "ray_raysight_running_jobs",
                   "ray_raysight_jobs_finished_total", "ray_raysight_job_wait_seconds_bucket",
                   "ray_raysight_job_run_seconds_bucket", "ray_raysight_steps_started_total"):
        assert needed in exprs, f"no panel charts {needed}"
    assert "histogram_quantile(0.5" in exprs and "histogram_quantile(0.95" in exprs


def test_the_dashboard_is_importable_grafana_json():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids repeat"
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource", "manager"}
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
