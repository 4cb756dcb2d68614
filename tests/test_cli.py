"""The raysight command line: exit codes, messages without tracebacks, no partial outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES, REPO_ROOT

from raysight.cli import main

SALES = EXAMPLES / "data" / "sales.csv"


def write_spec(tmp_path: Path, **changes) -> Path:
    spec = {
        "job_id": "cli-job",
        "source": {"type": "file", "path": str(SALES)},
        "analysis": {"type": "aggregation", "group_by": ["region"],
                     "metrics": [{"column": "amount", "function": "sum", "alias": "total"}]},
        "exports": [{"format": "csv", "path": "out.csv"}, {"format": "html", "path": "r.html"}],
        "execution": {"retry": {"initial_s": 0.01, "jitter": 0.0}},
    }
    spec.update(changes)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exports_under(run_root: Path) -> list[str]:
    if not run_root.exists():
        return []
    return sorted(p.name for p in run_root.rglob("*") if p.is_file()
                  and p.name not in ("result.json", "events.jsonl", "spec.json", "audit.jsonl")
                  and "checkpoints" not in p.parts)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def assert_invalid(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    first = err.strip().splitlines()[0]
    assert first.startswith("raysight: error:")
    for needle in needles:
        assert needle in err


def test_run_prints_a_summary_and_exits_zero(ray_session, tmp_path, runs, capsys):
    code, out, _ = cli(capsys, "run", str(write_spec(tmp_path)), "--run-dir", str(runs), "--quiet")
    assert code == 0
    assert "cli-job" in out and "COMPLETED" in out and "out.csv" in out
    result = json.loads((runs / "cli-job" / "result.json").read_text())
    assert result["state"] == "COMPLETED"
    assert exports_under(runs) == ["out.csv", "r.html"]


def test_run_json_prints_result_json(ray_session, tmp_path, runs, capsys):
    code, out, _ = cli(capsys, "run", str(write_spec(tmp_path)), "--run-dir", str(runs), "--json")
    assert code == 0 and json.loads(out)["job_id"] == "cli-job"


def test_set_overrides_a_field(ray_session, tmp_path, runs, capsys):
    code, _, _ = cli(capsys, "run", str(write_spec(tmp_path)), "--run-dir", str(runs), "--quiet",
                     "--set", "job_id=other-job")
    assert code == 0 and (runs / "other-job" / "result.json").exists()


def test_a_failed_job_exits_one(ray_session, tmp_path, runs, capsys):
    spec = write_spec(tmp_path, execution={"faults": [{"step": "analyze", "error": "permanent"}]})
    code, out, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert code == 1
    assert "FAILED" in out and "Traceback" not in out + err
    assert exports_under(runs) == []


def test_missing_source_file(tmp_path, runs, capsys):
    spec = write_spec(tmp_path, source={"type": "file", "path": str(tmp_path / "nope.csv")})
    code, _, err = cli(capsys, "run", str(spec), "--run-dir", str(runs))
    assert_invalid(code, err, "nope.csv")
    assert not runs.exists()


def test_malformed_csv(ray_session, tmp_path, runs, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("region,amount\nNorth,1.5\nSouth,2.5,extra\n")
    spec = write_spec(tmp_path, source={"type": "file", "path": str(bad)})
    code, out, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert code == 2
    assert "bad.csv" in out and "Traceback" not in out + err
    assert exports_under(runs) == []


def test_group_by_column_that_does_not_exist(ray_session, tmp_path, runs, capsys):
    spec = write_spec(tmp_path, analysis={"type": "aggregation", "group_by": ["regoin"],
                                          "metrics": [{"function": "count"}]})
    code, out, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert code == 2 and "regoin" in out and "Traceback" not in out + err
    assert exports_under(runs) == []


@pytest.mark.parametrize("changes,needle", [
    ({"analysis": {"type": "astrology"}}, "astrology"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"priority": 101}, "priority"),
    ({"exports": [{"format": "html", "path": "../x.html"}]}, "escapes the run directory"),
])
def test_invalid_specs_exit_two_and_write_nothing(tmp_path, runs, capsys, changes, needle):
    code, _, err = cli(capsys, "run", str(write_spec(tmp_path, **changes)), "--run-dir", str(runs))
    assert_invalid(code, err, needle)
    assert not runs.exists()


def test_missing_spec_file(tmp_path, capsys):
    code, _, err = cli(capsys, "run", str(tmp_path / "none.yaml"))
    assert_invalid(code, err, "none.yaml")


def test_bad_set_argument(tmp_path, capsys):
    code, _, err = cli(capsys, "run", str(write_spec(tmp_path)), "--set", "priority")
    assert_invalid(code, err, "KEY=VALUE")


def test_bad_command_line_exits_two(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    assert "raysight: error:" in capsys.readouterr().err


def test_an_existing_run_directory_is_not_overwritten(ray_session, tmp_path, runs, capsys):
    spec = str(write_spec(tmp_path))
    assert cli(capsys, "run", spec, "--run-dir", str(runs), "--quiet")[0] == 0
    code, _, err = cli(capsys, "run", spec, "--run-dir", str(runs), "--quiet")
    assert_invalid(code, err, "already exists")


def test_validate_checks_without_running(tmp_path, capsys):
    code, out, _ = cli(capsys, "validate", str(write_spec(tmp_path)))
    assert code == 0 and "valid" in out
    code, _, err = cli(capsys, "validate", str(write_spec(tmp_path, priority=-5)))
    assert_invalid(code, err, "priority")


def test_schema_prints_json_schema(capsys):
    code, out, _ = cli(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert "source" in schema["properties"] and "analysis" in schema["required"]


def test_schema_of_version_2_prints_the_job_graph_schema(capsys):
    code, out, _ = cli(capsys, "schema", "--spec-version", "2")
    assert code == 0
    schema = json.loads(out)
    assert {"sources", "analyses"} <= set(schema["required"])
    assert {"datasets", "joins", "unions"} <= set(schema["properties"])


def test_the_quick_start_command_runs_the_example_in_a_fresh_process(tmp_path):
    """The README's first command, minus the install: the console script starts its own
    embedded Ray, runs the example and writes result.json and an offline HTML report."""
    exe = shutil.which("raysight", path=os.path.dirname(sys.executable))
    assert exe, "the raysight console script is not installed next to this Python"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([exe, "run", "examples/sales_by_category.yaml", "--run-dir",
                           str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = list(tmp_path.iterdir())
    assert json.loads((run_dir / "result.json").read_text())["state"] == "COMPLETED"
    html = (run_dir / "report.html").read_text()
    assert "Plotly.newPlot" in html and "<script src=" not in html


def test_inspect_prints_state_steps_and_errors_and_writes_views(ray_session, tmp_path, runs,
                                                                 capsys):
    spec = write_spec(tmp_path, execution={"retry": {"initial_s": 0.01},
                                           "faults": [{"step": "analyze", "times": 1}]})
    assert cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")[0] == 0
    code, out, _ = cli(capsys, "inspect", "cli-job", "--run-dir", str(runs), "--views")
    assert code == 0
    assert "cli-job" in out and "COMPLETED" in out
    assert "analyze" in out and "load.plan" in out
    assert (runs / "cli-job" / "dag.mmd").read_text().startswith("flowchart")
    html = (runs / "cli-job" / "timeline.html").read_text()
    assert "<script src=" not in html


def test_inspect_of_an_unknown_job_exits_two(tmp_path, capsys):
    code, _, err = cli(capsys, "inspect", "nope", "--run-dir", str(tmp_path))
    assert_invalid(code, err, "nope")


def test_resume_of_an_unknown_job_exits_two(tmp_path, capsys):
    code, _, err = cli(capsys, "resume", "nope", "--run-dir", str(tmp_path))
    assert_invalid(code, err, "nope")


def test_a_job_with_an_unwritable_export_exits_three_and_names_it(ray_session, tmp_path, runs,
                                                                   capsys):
    source = tmp_path / "nested.ndjson"
    source.write_text('{"k": "a", "tags": ["x", "y"]}\n{"k": "b", "tags": []}\n')
    spec = write_spec(tmp_path, source={"type": "file", "path": str(source)},
                      analysis={"type": "aggregation", "group_by": ["k"], "metrics": [
                          {"column": "tags", "function": "first", "alias": "tags"}]})
    code, out, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert code == 3 and "Traceback" not in out + err
    assert "COMPLETED_WITH_ERRORS" in out
    (line,) = [x for x in out.splitlines() if x.startswith("error")]
    assert "out.csv" in line and "tags" in line
    assert exports_under(runs) == ["r.html"]


def test_a_zero_byte_source_exits_two_naming_the_file_and_writes_nothing(tmp_path, runs, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    spec = write_spec(tmp_path, source={"type": "file", "path": str(empty)})
    code, _, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert_invalid(code, err, "empty.csv", "0 bytes")
    assert not runs.exists()


def test_a_source_that_reads_as_no_columns_fails_as_an_input_error(ray_session, tmp_path, runs,
                                                                   capsys):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text("\n")
    (folder / "b.csv").write_text("\n\n")
    spec = write_spec(tmp_path, source={"type": "file", "path": str(folder)},
                      analysis={"type": "descriptive"})
    code, out, err = cli(capsys, "run", str(spec), "--run-dir", str(runs), "--quiet")
    assert code == 2 and "Traceback" not in out + err
    assert "has no columns" in out and str(folder) in out
    assert json.loads((runs / "cli-job" / "result.json").read_text())["state"] == "FAILED"


def test_the_run_dir_is_printed_normalised(ray_session, tmp_path, capsys):
    (tmp_path / "jobs").mkdir()
    code, out, _ = cli(capsys, "run", str(write_spec(tmp_path)), "--run-dir",
                       str(tmp_path / "jobs" / ".." / "runs"), "--quiet")
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("run dir")]
    assert line.split()[-1] == str(tmp_path / "runs" / "cli-job")
