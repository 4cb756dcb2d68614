"""The workflow engine on Ray: combinators, retries, timeouts, naming, trace."""

from __future__ import annotations

import dataclasses
import time

import pytest
import ray
from conftest import job_tasks

from raysight.engine.context import Fault, Partitions, RunContext
from raysight.engine.events import EventLog, Observers
from raysight.engine.executor import Executor, fetch
from raysight.engine.resources import node_resources
from raysight.engine.retry import Fixed, RetryPolicy
from raysight.engine.workflow import Pass, branch, parallel, step
from raysight.errors import (
    Cancelled,
    PermanentError,
    ResourceExhausted,
    StepTimeout,
    TransientError,
)

pytestmark = pytest.mark.usefixtures("ray_session")

FAST = RetryPolicy(max_retries=3, backoff=Fixed(0.01))


def run(flow, value=None, **ctx_kwargs):
    events = EventLog()
    ctx = RunContext(ctx_kwargs.pop("job_id", "job_test"), observers=Observers([events]),
                     **ctx_kwargs)
    executor = Executor(default_retry=FAST, poll_s=0.05)
    out = executor.run(flow, ctx) if value is None else executor.run(flow, ctx, value)
    return fetch(out), ctx, events


@step
def source():
    return 3


@step
def double(x):
    return 2 * x


@step
def plus_one(x):
    return x + 1


@step
def fail_permanently(x):
    raise PermanentError("no such table: sales")


@step(mode="fanout")
def four_parts():
    return [1, 2, 3, 4]


@step(mode="map")
def square(x):
    return x * x


@step
def total(xs):
    return sum(xs)


def test_then_passes_each_output_to_the_next_step():
    value, ctx, _ = run(source >> double >> plus_one)
    assert value == 7
    assert [r.step for r in ctx.trace.records] == ["source", "double", "plus_one"]


def test_outputs_travel_as_object_refs_not_through_the_driver():
    executor = Executor(default_retry=FAST)
    out = executor.run(source >> double, RunContext("job_refs"))
    assert isinstance(out, ray.ObjectRef)
    assert ray.get(out) == 6


def test_when_false_skips_the_step_and_passes_its_input_through():
    flow = source >> double.when(lambda ctx: False, "never") >> plus_one
    value, ctx, events = run(flow)
    assert value == 4
    assert [e.step for e in events.of_type("step_skipped")] == ["double"]
    assert ctx.trace.attributes["double.condition_result"] == "false"
    assert ctx.trace.stats["double"].skipped_count == 1


def test_a_false_when_records_its_condition_as_the_reason_for_the_skip():
    _, _, events = run(source >> double.when(lambda ctx: False, "publishing enabled"))
    (skipped,) = events.of_type("step_skipped")
    assert skipped.data["reason"] == "condition false: publishing enabled"


def test_when_true_runs_the_step():
    value, ctx, _ = run(source >> double.when(lambda ctx: True))
    assert value == 6
    assert ctx.trace.attributes["double.condition_result"] == "true"


def test_branch_takes_the_else_side_when_the_condition_is_false():
    value, _, _ = run(source >> branch(lambda ctx: False, double, plus_one))
    assert value == 4


def test_parallel_runs_branches_on_the_same_input_in_declaration_order():
    value, _, _ = run(source >> parallel(double, plus_one, Pass()))
    assert value == (6, 4, 3)


@step
def sleep_interval(x):
    start = time.time()
    time.sleep(3.0)  # longer than a new worker process takes to start
    return start, time.time()


def test_parallel_branches_run_concurrently():
    (a_start, a_end), (b_start, b_end) = run(source >> parallel(sleep_interval,
                                                                sleep_interval))[0]
    assert a_start < b_end and b_start < a_end  # the two intervals overlap


@step
def sleep_long(x):
    time.sleep(30)
    return x


def test_parallel_fails_fast_and_cancels_the_siblings():
    started = time.monotonic()
    with pytest.raises(PermanentError, match="no such table"):
        run(source >> parallel(sleep_long, fail_permanently))
    assert time.monotonic() - started < 20


def test_nested_workflow_gets_a_child_trace_linked_to_its_parent():
    value, ctx, _ = run(source >> (double >> plus_one).nested("recipe", {"k": 1}))
    assert value == 7
    (child,) = ctx.trace.children
    assert child.parent_workflow_instance_id == ctx.trace.workflow_instance_id
    assert child.trace_id.startswith(ctx.trace.trace_id + "-")


def test_fanout_then_map_runs_one_task_per_partition_then_combines():
    value, ctx, events = run(four_parts >> square >> total)
    assert value == 1 + 4 + 9 + 16
    mapped = [r for r in ctx.trace.records if r.step == "square"]
    assert sorted(r.partition for r in mapped) == [0, 1, 2, 3]


def test_map_output_is_partitioned():
    executor = Executor(default_retry=FAST)
    out = executor.run(four_parts >> square, RunContext("job_parts"))
    assert isinstance(out, Partitions) and len(out) == 4
    assert fetch(out) == [1, 4, 9, 16]


def test_transient_errors_are_retried_with_task_retry_events():
    value, ctx, events = run(source >> double, faults=(Fault("double", "transient", times=2),))
    assert value == 6
    retries = events.of_type("task_retry")
    assert [e.data["retry_count"] for e in retries] == [1, 2]
    assert all(e.data["task"] == "double" for e in retries)
    assert ctx.trace.stats["double"].retry_count == 2
    assert ctx.trace.stats["double"].success_count == 1


def test_retries_stop_at_the_policy_limit():
    flaky = double.with_retry(RetryPolicy(max_retries=1, backoff=Fixed(0.01)))
    with pytest.raises(TransientError, match="injected transient"):
        run(source >> flaky, faults=(Fault("double", "transient", times=5),))


def test_permanent_errors_fail_at_once():
    with pytest.raises(PermanentError):
        _, _, events = run(source >> fail_permanently)
    # no retry happened: a fresh run records exactly one failed attempt
    events = EventLog()
    ctx = RunContext("job_perm", observers=Observers([events]))
    with pytest.raises(PermanentError):
        Executor(default_retry=FAST).run(source >> fail_permanently, ctx)
    assert events.of_type("task_retry") == []
    assert [r.state for r in ctx.trace.records if r.step == "fail_permanently"] == ["failed"]


@step
def raise_value_error(x):
    raise ValueError("bad value 42")


def test_a_plain_exception_becomes_a_permanent_error_with_its_message():
    with pytest.raises(PermanentError, match="ValueError: bad value 42"):
        run(source >> raise_value_error)


def test_retry_backoff_delays_follow_the_policy():
    policy = RetryPolicy(max_retries=2, backoff=Fixed(0.3))
    started = time.monotonic()
    run(source >> double.with_retry(policy), faults=(Fault("double", "transient", times=2),))
    assert time.monotonic() - started >= 0.6


def test_step_timeout_cancels_the_running_task():
    with pytest.raises(StepTimeout) as info:
        run(source >> sleep_long.with_timeout(1.0), job_id="job_timeout")
    assert info.value.timeout_s == 1.0
    states = [t.state for t in job_tasks("job_timeout", expect=2) if t.name.endswith("sleep_long")]
    assert states == ["FAILED"]


def test_job_deadline_stops_the_run():
    with pytest.raises(StepTimeout, match="exceeded its timeout"):
        run(source >> sleep_long, deadline=time.monotonic() + 1.0)


def test_a_subworkflow_timeout_names_the_subworkflow():
    with pytest.raises(StepTimeout, match="exceeded its timeout of 1 s"):
        run(source >> (double >> sleep_long).with_timeout(1.0))


def test_cancelling_the_run_stops_it():
    ctx = RunContext("job_cancel")
    import threading

    threading.Timer(0.5, ctx.cancel).start()
    with pytest.raises(Cancelled):
        Executor(poll_s=0.05).run(source >> sleep_long, ctx)


def test_every_task_is_named_job_slash_step():
    run(four_parts >> square >> total, job_id="job_named")
    found = job_tasks("job_named", expect=6)
    names = sorted(t.name for t in found)
    assert names == ["job_named/four_parts"] + ["job_named/square"] * 4 + ["job_named/total"]


@step
def attribute_setter(x, ctx):
    ctx.set_attribute("input", x)
    return ctx.job_id


def test_steps_receive_a_context_and_report_attributes():
    value, ctx, _ = run(source >> attribute_setter, job_id="job_ctx")
    assert value == "job_ctx"
    assert ctx.trace.attributes["attribute_setter.input"] == "3"


def test_trace_records_worker_pid_and_timing():
    _, ctx, _ = run(source >> double)
    record = ctx.trace.records[-1]
    assert record.worker_pid and record.duration_s is not None and record.duration_s >= 0
    assert ctx.trace.execution_path[-2:] == ["source", "double"]


def test_infeasible_resources_fail_fast_with_a_clear_error():
    big = double.options(num_gpus=64)
    with pytest.raises(ResourceExhausted, match="GPU=64"):
        big.resources.check_feasible(node_resources(), big.name)


# -- tree reduce, conditions on the input, recovered failures -------------------------------


@step(mode="fanout")
def twenty_parts():
    return list(range(20))


@step(mode="reduce", fan_in=3, name="merge")
def merge_lists(parts, ctx):
    ctx.set_attribute(f"inputs[{ctx.partition}]", len(parts))
    # a list holds the partition values it merged, in order
    return [v for p in parts for v in (p if isinstance(p, list) else [p])]


@step
def concat_all(parts):
    return [v for p in parts for v in (p if isinstance(p, list) else [p])]


def test_a_reduce_step_merges_as_a_tree_and_no_call_receives_more_than_its_fan_in():
    flow = twenty_parts >> merge_lists >> concat_all
    value, ctx, events = run(flow, job_id="job_tree")
    assert value == list(range(20))  # order kept across levels
    inputs = {k: int(v) for k, v in ctx.trace.attributes.items() if k.startswith("merge.inputs")}
    # 20 -> 7 calls (3,3,3,3,3,3,2) -> 3 calls (3,3,1) -> 3 partitions left for concat_all
    assert sorted(inputs.values()) == [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    assert ctx.trace.attributes["merge.levels"] == "2"
    merges = job_tasks("job_tree", expect=10)
    assert len([t for t in merges if t.name == "job_tree/merge"]) == 10


def test_a_reduce_step_over_no_more_partitions_than_its_fan_in_runs_no_task():
    flow = four_parts >> merge_lists.options(name="merge4") >> concat_all
    value, ctx, events = run(flow, job_id="job_tree_small")
    assert value == [1, 2, 3, 4]  # four partitions, fan-in 3: one level of two calls
    assert ctx.trace.attributes["merge4.levels"] == "1"
    flow = four_parts >> dataclasses.replace(merge_lists, name="merge8", fan_in=8) >> concat_all
    value, ctx, events = run(flow, job_id="job_tree_small")
    assert value == [1, 2, 3, 4]
    assert ctx.trace.attributes["merge8.levels"] == "0"
    assert not [k for k in ctx.trace.attributes if k.startswith("merge8.inputs")]


def test_a_condition_may_look_at_the_steps_input():
    flow = (
        four_parts
        >> branch(lambda ctx, parts: len(parts) == 4, Pass("four"), Pass("other"))
        >> concat_all
    )
    value, ctx, _ = run(flow)
    assert value == [1, 2, 3, 4]
    assert ctx.trace.attributes["Branch(four|other).condition_result"] == "true"
    # the input as the engine holds it: partitions or an ObjectRef, never fetched data
    skipped = source >> double.when(lambda ctx, x: isinstance(x, Partitions), "partitioned")
    value, ctx, events = run(skipped)
    assert value == 3
    assert events.of_type("step_skipped")[0].data["reason"] == "condition false: partitioned"


def test_a_recovered_step_yields_its_fallback_after_its_own_retries():
    flow = source >> fail_permanently.or_else(lambda err: f"fallback: {err.category}")
    value, ctx, events = run(flow)
    assert value == "fallback: permanent"
    assert [e.step for e in events.of_type("step_recovered")] == ["fail_permanently"]
    assert [r.state for r in ctx.trace.records if r.step == "fail_permanently"] == ["failed"]
    flaky = double.or_else(lambda err: -1)
    value, _, events = run(source >> flaky, faults=(Fault("double", "transient", times=9),))
    assert value == -1 and len(events.of_type("task_retry")) == FAST.max_retries


def test_a_recovered_step_lets_errors_it_does_not_accept_through():
    flow = source >> fail_permanently.or_else(lambda err: 0, accept=lambda err: False)
    with pytest.raises(PermanentError):
        run(flow)
