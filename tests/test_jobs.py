"""The job spec: strict validation with field paths, defaults, loading and overrides."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import EXAMPLES

from raysight.job.spec import (
    SpecError,
    apply_override,
    json_schema,
    load_spec,
    parse_spec,
    render_job_id,
)


def minimal(**changes):
    spec = {
        "source": {"type": "file", "path": "examples/data/sales.csv"},
        "analysis": {"type": "aggregation", "group_by": ["region"],
                     "metrics": [{"function": "count"}]},
    }
    spec.update(changes)
    return spec


def error_of(data) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return str(info.value)


def test_defaults_follow_the_seed():
    spec = parse_spec(minimal())
    assert spec.priority == 50
    assert spec.execution.timeout_s == 1800
    assert spec.version == 1 and spec.job_id is None


def test_default_job_id_is_job_uuid4():
    assert re.fullmatch(r"job_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}",
                        render_job_id(None))


def test_job_id_templates_render_date_and_reject_bad_placeholders():
    import datetime as dt

    now = dt.datetime(2026, 11, 27, 8, 30, tzinfo=dt.UTC)
    assert render_job_id("daily-sales-{date}", now) == "daily-sales-2026-11-27"
    assert "unknown or bad placeholder" in error_of(minimal(job_id="x-{region}"))


def test_job_id_may_not_contain_a_path_separator():
    assert "may only contain" in error_of(minimal(job_id="../evil"))


def test_unknown_key_is_rejected_with_its_path():
    message = error_of(minimal(analysis={"type": "aggregation", "group_by": ["region"],
                                         "metrics": [{"function": "count"}], "colour": "red"}))
    assert "analysis.colour: unknown key" in message


def test_priority_above_100_is_rejected():
    assert "priority" in error_of(minimal(priority=101))


def test_unknown_analysis_type_names_the_field_and_the_known_types():
    message = error_of(minimal(analysis={"type": "astrology"}))
    assert "analysis" in message and "'astrology'" in message and "aggregation" in message


def test_unknown_preprocessing_op_names_its_index():
    message = error_of(minimal(preprocessing=[{"op": "drop_missing"}, {"op": "shuffle"}]))
    assert "preprocessing[1]" in message


def test_nested_error_paths_skip_union_tags():
    message = error_of(minimal(analysis={"type": "aggregation", "group_by": ["region"],
                                         "metrics": [{"function": "median"}]}))
    assert "analysis.metrics[0]" in message


@pytest.mark.parametrize("path", ["../x.html", "a/../../x.html", "/tmp/x.html", "s3://b/x.html"])
def test_export_paths_may_not_escape_the_run_directory(path):
    message = error_of(minimal(exports=[{"format": "html", "path": path}]))
    assert "exports[0].path" in message


def test_export_paths_may_not_overwrite_raysights_own_files():
    assert "reserved" in error_of(minimal(exports=[{"format": "json", "path": "result.json"}]))


def test_two_exports_to_one_path_are_rejected():
    message = error_of(minimal(exports=[{"format": "csv", "path": "out.csv"},
                                        {"format": "csv", "path": "./out.csv"}]))
    assert "exports[1].path" in message


def test_strict_types_no_silent_coercion():
    assert "priority" in error_of(minimal(priority="70"))


def test_every_error_is_listed():
    message = error_of(minimal(priority=-1, user_id=5))
    assert "priority" in message and "user_id" in message


def test_load_yaml_and_json_give_the_same_spec(tmp_path):
    data = minimal(priority=70)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "job.json").write_text(json.dumps(data))
    assert load_spec(tmp_path / "job.yaml") == load_spec(tmp_path / "job.json")


def test_missing_spec_file_names_the_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found: .*nope.yaml"):
        load_spec(tmp_path / "nope.yaml")


def test_malformed_yaml_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("source: {type: file\n")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


def test_overrides_set_nested_fields_with_yaml_values(tmp_path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(minimal()))
    spec = load_spec(tmp_path / "job.yaml", ["priority=70", "analysis.group_by=[region, day]",
                                              "execution.timeout_s=60"])
    assert spec.priority == 70
    assert spec.analysis.group_by == ["region", "day"]
    assert spec.execution.timeout_s == 60


def test_override_into_a_list_item():
    data = minimal(preprocessing=[{"op": "filter_rows", "condition": "amount > 0"}])
    apply_override(data, "preprocessing[0].condition=amount > 10")
    assert data["preprocessing"][0]["condition"] == "amount > 10"


def test_override_without_equals_is_an_error():
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        apply_override({}, "priority")


def test_json_schema_describes_sources_analyses_and_exports():
    schema = json.dumps(json_schema())
    for name in ("aggregation", "descriptive", "drop_missing", "filter_rows", "parquet", "html",
                 "bar", "webhook"):
        assert f'"{name}"' in schema


@pytest.mark.parametrize("name", ["sales_by_category.yaml", "sales_parts.yaml",
                                  "sales_summary.yaml"])
def test_every_example_spec_is_valid(name):
    load_spec(EXAMPLES / name)
