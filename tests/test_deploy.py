"""The deployment files in deploy/: a KubeRay RayCluster and RayJob, checked against the
fields of KubeRay's CRD schemas (deploy/schemas/, cut from KubeRay 1.1's CRDs by
deploy/schemas/prune_crd.py), and a Ray cluster-launcher config, checked against the schema
Ray itself ships; each with the design's autoscaling (2..10 workers, 5 idle minutes) and the
Ray version raysight is tested with."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from raysight.job.graph_spec import load_graph_spec

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
RAY_VERSION = ray.__version__


def manifest(name: str) -> dict:
    return yaml.safe_load((DEPLOY / f"{name}.yaml").read_text())


def crd_errors(name: str, document: dict) -> list[str]:
    schema = json.loads((DEPLOY / "schemas" / f"{name}.schema.json").read_text())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(document)]


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_the_kuberay_manifests_meet_the_crd_schema(name):
    assert crd_errors(name, manifest(name)) == []


@pytest.mark.parametrize("name,path,bad", [
    ("raycluster", ["spec", "workerGroupSpecs", 0], {"maxReplica": 10}),  # a typo
    ("raycluster", ["spec", "workerGroupSpecs", 0], {"maxReplicas": "ten"}),
    ("raycluster", ["spec", "authOptions"], {"mode": "password"}),
    ("rayjob", ["spec"], {"shutdownAfterJobFinished": True}),
])
def test_the_crd_schema_catches_a_wrong_field(name, path, bad):
    document = copy.deepcopy(manifest(name))
    node = document
    for key in path:
        node = node[key]
    node.update(bad)
    assert crd_errors(name, document) != []


def clusters() -> list[dict]:
    return [manifest("raycluster")["spec"], manifest("rayjob")["spec"]["rayClusterSpec"]]


@pytest.mark.parametrize("spec", clusters(), ids=["raycluster", "rayjob"])
def test_clusters_autoscale_from_2_to_10_workers_idle_5_minutes(spec):
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == 300
    (workers,) = spec["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (2, 10)
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["rayVersion"] == RAY_VERSION


def test_the_cluster_uses_token_authentication():
    assert manifest("raycluster")["spec"]["authOptions"]["mode"] == "token"


def test_the_rayjob_runs_a_valid_spec_of_this_repository():
    entrypoint = shlex.split(manifest("rayjob")["spec"]["entrypoint"])
    assert entrypoint[:2] == ["raysight", "run"]
    load_graph_spec(REPO / entrypoint[2])  # raises SpecError when it is not a valid spec
    assert entrypoint[entrypoint.index("--run-dir") + 1].startswith("s3://")


def test_the_cluster_launcher_config_meets_rays_own_schema():
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = manifest("cluster")
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    workers = config["available_node_types"]["workers"]
    assert (workers["min_workers"], workers["max_workers"]) == (2, 10)
    assert config["idle_timeout_minutes"] == 5
    assert f"ray[default]=={RAY_VERSION}" in " ".join(config["setup_commands"])
    # Redis may hold 6379 where raysight runs: the head listens elsewhere
    assert "--port=6380" in " ".join(config["head_start_ray_commands"])


def test_the_image_is_built_on_the_tested_ray_version():
    first = (DEPLOY / "Dockerfile").read_text().split("FROM ", 1)[1].split()[0]
    assert first.startswith(f"rayproject/ray:{RAY_VERSION}-py311")
