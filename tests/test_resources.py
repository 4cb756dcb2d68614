"""Step resources: sizes people read, and requests that no node could ever satisfy."""

from __future__ import annotations

import json

import pytest
import ray
from test_cli import cli, write_spec

from raysight.engine.resources import Resources, format_bytes, parse_bytes
from raysight.errors import ResourceExhausted

GiB = 2**30
NODE = {"CPU": 2.0, "memory": 16 * GiB, "object_store_memory": 4 * GiB}


@pytest.mark.parametrize("size, shown", [
    ("500GiB", "500 GiB"), ("1.5KiB", "1.5 KiB"), ("3MiB", "3 MiB"), ("2TiB", "2 TiB"),
    (512, "512 B"), ("16.8GB", "15.6 GiB"),
])
def test_format_bytes_uses_binary_units_with_three_digits(size, shown):
    assert format_bytes(parse_bytes(size)) == shown


def test_a_memory_request_larger_than_any_node_names_both_sizes_in_binary_units():
    with pytest.raises(ResourceExhausted) as err:
        Resources(memory=parse_bytes("500GiB")).check_feasible([NODE], "analyze")
    assert str(err.value) == ("step 'analyze' needs memory=500 GiB per task, but the Ray "
                              "cluster's only node has 16 GiB")
    assert "e+" not in str(err.value)


def test_a_gpu_request_on_a_cpu_cluster_says_no_node_has_one():
    with pytest.raises(ResourceExhausted, match="needs GPU=1 per task, but no node of the Ray "
                                                "cluster has GPU"):
        Resources(num_gpus=1).check_feasible([NODE, NODE], "analyze")


def test_amounts_that_exist_only_on_different_nodes_are_infeasible_together():
    gpu_node = {"CPU": 1.0, "GPU": 1.0, "memory": 2 * GiB}
    wanted = Resources(num_cpus=2, num_gpus=1)
    with pytest.raises(ResourceExhausted, match="on one node"):
        wanted.check_feasible([NODE, gpu_node], "train")
    wanted.check_feasible([NODE, gpu_node, {**gpu_node, "CPU": 4.0}], "train")


def test_on_several_nodes_the_message_gives_the_largest(tmp_path):
    with pytest.raises(ResourceExhausted, match="the most any node has is 16 GiB"):
        Resources(memory=32 * GiB).check_feasible([NODE, {**NODE, "memory": 8 * GiB}], "x")


@pytest.mark.parametrize("resources, needle", [
    ({"analyze": {"memory": "500GiB"}}, "memory=500 GiB"),
    ({"load": {"num_gpus": 1}}, "GPU=1"),
    ({"analyze": {"resources": {"high_memory": 1}}}, "no node of the Ray cluster has high_memory"),
])
def test_an_infeasible_request_is_one_line_a_failed_result_and_exit_status_2(
        ray_session, tmp_path, capsys, resources, needle):
    if needle.startswith("GPU") and ray.cluster_resources().get("GPU"):
        pytest.skip("this cluster has a GPU")
    runs = tmp_path / "runs"
    code, out, err = cli(capsys, "run", str(write_spec(tmp_path, resources=resources)),
                         "--run-dir", str(runs), "--quiet")
    assert code == 2 and "Traceback" not in out + err
    (line,) = [x for x in out.splitlines() if x.startswith("error")]
    assert "[resource_exhausted]" in line and needle in line
    result = json.loads((runs / "cli-job" / "result.json").read_text())
    assert result["state"] == "FAILED"
    assert [e["category"] for e in result["errors"]] == ["resource_exhausted"]
    assert not (runs / "cli-job" / "out.csv").exists()
