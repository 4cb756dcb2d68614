"""Specification of the custom form of an analysis (raysight.analyses.aliases).

``{type: custom, name: X, params: {...}}`` in a job spec is the kernel X with ``params`` as its
config; errors name the fields as written (``analysis.name``, ``analysis.params.<field>``).
"""

from __future__ import annotations

import pickle
import re
from typing import Any, ClassVar, Literal

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError
from test_custom_kernels import SEED, distributed, frame

from raysight import registry
from raysight.analyses.aliases import resolve_custom
from raysight.analyses.outliers import OutlierDetection
from raysight.analyses.text import TextFrequency
from raysight.job.spec import SpecError, json_schema, parse_spec
from raysight.plugins import Analysis, AnalysisResult, PluginConfig

SOURCE = {"type": "file", "path": "examples/data/sales.csv"}



class RowTotalConfig(PluginConfig):
    type: Literal["row_total"] = "row_total"
    column: str
    scale: float = 1.0


class RowTotal(Analysis[RowTotalConfig]):
    """A user kernel: the scaled sum of a column."""

    name: ClassVar[str] = "row_total"
    Config = RowTotalConfig

    def required_columns(self) -> list[str]:
        return [self.config.column]

    def partial(self, df: pl.DataFrame) -> float:
        return float(df.get_column(self.config.column).sum())

    def combine(self, partials: list[float]) -> AnalysisResult:
        total = sum(partials) * self.config.scale
        return AnalysisResult(kind=self.name, table=pa.table({"total": [total]}),
                              summary={"total": total})


@pytest.fixture
def user_kernel():
    registry.analyses.names()  # load the entry points first
    registry.analyses.register(RowTotal)
    yield RowTotal
    registry.analyses._plugins.pop(RowTotal.name)  # the registry has no public unregister


def custom(name: str, **params: Any) -> Analysis[Any]:
    """The kernel the custom form names, built from its resolved config."""
    config = resolve_custom({"type": "custom", "name": name, "params": params})
    model = registry.analyses.get(config["type"]).Config
    return registry.analyses.build(model.model_validate(config))


def problems(name: str, **form: Any) -> str:
    """The errors of resolving a custom form, as ``field.path: message; ...``."""
    with pytest.raises(ValidationError) as caught:
        resolve_custom({"type": "custom", "name": name, **form})
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                     for e in caught.value.errors())


@pytest.mark.parametrize("name, params", [
    ("correlation_matrix", {"method": "spearman"}),
    ("outlier_detection", {"column": "value", "k": 1.0}),
    ("text_frequency", {"column": "id", "top_n": 3}),
])
def test_custom_delegates_to_the_named_kernel(name, params):
    kernel = registry.analyses.get(name)(registry.analyses.get(name).Config(**params))
    wrapped = custom(name, **params)
    parts = [SEED.head(4), SEED.tail(6)]
    assert_frame_equal(frame(wrapped.run(SEED)), frame(kernel.run(SEED)))
    assert_frame_equal(frame(distributed(wrapped, parts)), frame(distributed(kernel, parts)))
    assert wrapped.mergeable == kernel.mergeable
    assert wrapped.required_columns() == kernel.required_columns()
    assert wrapped.shuffle_keys() is None


def test_custom_is_built_from_a_job_spec_through_the_registry():
    spec = parse_spec({
        "source": SOURCE,
        "analysis": {"type": "custom", "name": "outlier_detection",
                     "params": {"column": "value", "threshold": 2.5}},
    })
    kernel = registry.analyses.build(spec.analysis)
    assert spec.analysis.type == "outlier_detection" and isinstance(kernel, OutlierDetection)
    assert frame(kernel.run(SEED)).get_column("row_index").to_list() == [9]


def test_job_spec_errors_name_the_params_field():
    with pytest.raises(SpecError, match=r"params\.k: Input should be greater than or equal to 0"):
        parse_spec({
            "source": SOURCE,
            "analysis": {"type": "custom", "name": "outlier_detection",
                         "params": {"column": "value", "k": -2.0}},
        })


@pytest.mark.parametrize("params, message", [
    ({}, r"params\.column: Field required"),
    ({"column": "v", "kk": 1.0}, r"params\.kk: Extra inputs are not permitted"),
    ({"column": "v", "include_rows": "no"}, r"params\.include_rows: Input should be a valid bool"),
    ({"column": "v", "type": "text_frequency"}, r"params\.type: Input should be 'outlier_"),
])
def test_custom_params_errors_name_the_field(params, message):
    assert re.search(message, problems("outlier_detection", params=params))


def test_unknown_kernel_lists_the_known_ones():
    assert re.search("name: unknown analysis kernel 'outliers'; known: .*"
                     "correlation_matrix.*outlier_detection", problems("outliers"))
    with pytest.raises(SpecError, match=r"analysis\.name: unknown analysis kernel 'outliers'; "
                                        "known: .*correlation_matrix.*outlier_detection"):
        parse_spec({"source": SOURCE, "analysis": {"type": "custom", "name": "outliers"}})


def test_seed_kernel_name_text_frequency_analysis_is_accepted():
    wrapped = custom("text_frequency_analysis", column="t")
    df = pl.DataFrame({"t": ["The cat", "the dog; THE end"]})
    assert isinstance(wrapped, TextFrequency)
    assert frame(wrapped.run(df)).rows()[0] == ("the", 3)


def test_custom_cannot_wrap_itself():
    assert "'custom' cannot run itself" in problems("custom", params={"name": "text_frequency"})


def test_user_kernel_registered_at_run_time_works_directly_and_through_custom(user_kernel):
    df = pl.DataFrame({"v": [1, 2, 3, 4]})
    parts = [df.head(1), df.tail(3)]
    direct = registry.analyses.build(user_kernel.Config(column="v", scale=2.0))
    assert distributed(direct, parts).summary == {"total": 20.0}
    wrapped = custom("row_total", column="v", scale=2.0)
    assert distributed(wrapped, parts).summary == {"total": 20.0}
    assert wrapped.run(df).summary == {"total": 20.0}
    assert wrapped.required_columns() == ["v"]
    assert re.search(r"params\.scale: Input should be a valid number",
                     problems("row_total", params={"column": "v", "scale": "big"}))


def test_custom_survives_pickling_with_kernel_extras():
    wrapped = pickle.loads(pickle.dumps(custom("text_frequency", column="id")))
    partials = [wrapped.partial(SEED.head(3)), wrapped.partial(SEED.tail(7))]
    merged = wrapped.merge(partials)  # a kernel extra, reached through the wrapper
    assert frame(wrapped.finalize(merged)).height == 10


def test_custom_form_validates_again_from_the_spec_json_dump():
    # the pipeline persists the spec with every field and reloads it on resume
    spec = parse_spec({"source": SOURCE, "analysis": {
        "type": "custom", "name": "outlier_detection",
        "params": {"column": "v", "threshold": 2.0}}})
    assert parse_spec(spec.model_dump(mode="json")) == spec
    assert (spec.analysis.method, spec.analysis.threshold) == ("zscore", 2.0)


def test_the_custom_form_is_not_a_registered_kernel():
    assert "custom" not in registry.analyses.names()


def test_json_schema_accepts_the_custom_form():
    forms = json_schema()["properties"]["analysis"]["oneOf"]
    custom_form = [f for f in forms if f.get("properties", {}).get("type", {}).get("const")
                   == "custom"]
    assert len(custom_form) == 1
    assert custom_form[0]["required"] == ["name"]
    assert set(custom_form[0]["properties"]) == {"type", "name", "params"}
