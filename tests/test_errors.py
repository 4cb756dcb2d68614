"""The error taxonomy survives pickling and Ray's exception wrapping."""

from __future__ import annotations

import pickle

import pytest
import ray

from raysight import errors
from raysight.engine.failures import classify

ALL = [errors.TransientError, errors.PermanentError, errors.InputError, errors.StepTimeout,
       errors.ResourceExhausted, errors.DependencyFailure, errors.ConditionNotMet,
       errors.PermissionDenied, errors.InconsistentState, errors.SerializationError,
       errors.Cancelled, errors.PlanError]


@pytest.mark.parametrize("cls", ALL)
def test_every_error_is_a_workflow_error_and_pickles_with_its_details(cls):
    err = cls("disk full on node-3", step="load", partition=2)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, errors.WorkflowError) and type(back) is cls
    assert str(back) == "disk full on node-3"
    assert back.details["step"] == "load" and back.details["partition"] == 2


def test_only_transient_errors_are_retryable():
    assert [cls for cls in ALL if cls.retryable] == [errors.TransientError]


def test_step_timeout_keeps_its_timeout_value_through_pickle():
    back = pickle.loads(pickle.dumps(errors.StepTimeout("too slow", timeout_s=2.5)))
    assert back.timeout_s == 2.5


def test_to_dict_names_category_class_and_message():
    d = errors.InputError("column 'x' not found", column="x").to_dict()
    assert d == {"category": "invalid_input", "error": "InputError",
                 "message": "column 'x' not found", "column": "x"}


@ray.remote
def _raise_transient():
    raise errors.TransientError("connection reset by peer", host="db")


def test_an_error_raised_in_a_ray_task_is_caught_by_its_own_class(ray_session):
    with pytest.raises(errors.TransientError) as info:
        ray.get(_raise_transient.remote())
    assert isinstance(classify(info.value, "load"), errors.TransientError)
    assert classify(info.value, "load").details == {"host": "db"}


def test_ray_worker_death_classifies_as_transient():
    from ray.exceptions import WorkerCrashedError

    assert isinstance(classify(WorkerCrashedError(), "load"), errors.TransientError)


def test_an_unknown_plugin_names_its_kind_lists_the_known_ones_and_suggests_one():
    from raysight.registry import UnknownPlugin, analyses, exporters

    with pytest.raises(UnknownPlugin) as err:
        analyses.get("aggregaton")
    message = str(err.value)
    assert message.startswith("unknown analysis 'aggregaton' (known: aggregation, ")
    assert message.endswith("did you mean 'aggregation'?")
    assert isinstance(err.value, errors.InputError)
    with pytest.raises(UnknownPlugin, match="unknown export format 'xlsx'"):
        exporters.get("xlsx")


def test_a_mapped_step_without_input_is_a_plan_error_not_the_users_input(ray_session):
    from raysight.engine.context import RunContext
    from raysight.engine.executor import Executor
    from raysight.engine.workflow import step

    @step(mode="map")
    def square(x):
        return x * x

    with pytest.raises(errors.PlanError, match="'square' maps over partitions") as err:
        Executor().run(square, RunContext("plan-error"))
    assert not isinstance(err.value, errors.InputError)
