"""Circuit breaker: the state machine under a fake clock, and the shared Ray actor."""

from __future__ import annotations

import pickle
import uuid

import pytest
import ray
from conftest import FakeClock

from raysight.engine.breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    breaker,
    breaker_states,
    counts_as_failure,
    guard,
)
from raysight.errors import (
    Cancelled,
    InputError,
    PermanentError,
    StepTimeout,
    TransientError,
)


@pytest.fixture
def cb(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(CircuitBreakerConfig(), clock=clock, name="db")


def calls(cb: CircuitBreaker, outcomes: str) -> None:
    """Run calls through the breaker: S succeeds, F fails."""
    for outcome in outcomes:
        assert cb.allow()
        cb.record(outcome == "S")


def trip(cb: CircuitBreaker) -> None:
    calls(cb, "FFFFF")
    assert cb.state == "open"


def test_defaults_are_the_seeds():
    config = CircuitBreakerConfig()
    assert (config.failure_rate, config.minimum_calls, config.window_s, config.cooldown_s,
            config.half_open_max_calls) == (0.5, 5, 60.0, 30.0, 10)
    assert config.successes_to_close == 10


def test_starts_closed_and_allows_calls(cb):
    assert cb.state == "closed"
    assert cb.allow()


def test_four_failures_stay_closed_below_the_minimum_number_of_calls(cb):
    calls(cb, "FFFF")
    assert cb.state == "closed"


def test_the_fifth_failure_opens_the_breaker(cb):
    calls(cb, "FFFFF")
    assert cb.state == "open"
    assert not cb.allow()


def test_forty_percent_failures_stay_closed_and_fifty_percent_open(cb):
    calls(cb, "SSSFF")
    assert cb.state == "closed"
    calls(cb, "F")  # 3 of 6
    assert cb.state == "open"


def test_a_success_never_trips_the_breaker(cb):
    calls(cb, "FFFF")
    calls(cb, "S")  # 4 of 5 failed, but the rate is judged when a failure is recorded
    assert cb.state == "closed"


def test_open_refuses_until_the_cooldown_then_lets_a_trial_through(cb, clock):
    trip(cb)
    clock.advance(29.9)
    assert not cb.allow()
    assert cb.state == "open"
    clock.advance(0.1)
    assert cb.allow()
    assert cb.state == "half_open"


def test_half_open_admits_exactly_the_trial_limit_while_trials_are_unresolved(cb, clock):
    trip(cb)
    clock.advance(30)
    assert [cb.allow() for _ in range(10)] == [True] * 10
    assert not cb.allow()
    assert cb.snapshot()["half_open_trials"] == 10


def test_a_half_open_failure_reopens_with_a_fresh_cooldown(cb, clock):
    trip(cb)
    clock.advance(30)
    assert cb.allow()
    clock.advance(5)
    cb.record(False)
    assert cb.state == "open"
    assert cb.snapshot()["opened_at"] == clock.now
    clock.advance(29)
    assert not cb.allow()
    clock.advance(1)
    assert cb.allow()


def test_half_open_successes_close_the_breaker_and_reset_the_counts(cb, clock):
    trip(cb)
    clock.advance(30)
    calls(cb, "S" * 9)
    assert cb.state == "half_open"
    calls(cb, "S")
    assert cb.state == "closed"
    snap = cb.snapshot()
    assert (snap["calls"], snap["failures"], snap["opened_at"]) == (0, 0, None)
    calls(cb, "FFFF")  # a fresh window: four failures are not enough again
    assert cb.state == "closed"


def test_fewer_successes_can_close_when_configured(clock):
    config = CircuitBreakerConfig(half_open_max_calls=4, half_open_successes_to_close=2)
    cb = CircuitBreaker(config, clock=clock)
    trip(cb)
    clock.advance(30)
    calls(cb, "SS")
    assert cb.state == "closed"


def test_failures_older_than_the_window_do_not_count(cb, clock):
    calls(cb, "FFFF")
    clock.advance(61)
    calls(cb, "F")
    assert cb.state == "closed"
    assert cb.snapshot()["calls"] == 1


def test_the_window_slides_instead_of_resetting(cb, clock):
    calls(cb, "FF")
    clock.advance(40)
    calls(cb, "FF")
    clock.advance(30)  # the first two expired, the last two still count
    calls(cb, "FF")
    assert cb.state == "closed"
    calls(cb, "F")
    assert cb.state == "open"


def test_a_refused_call_does_not_count(cb, clock):
    trip(cb)
    for _ in range(5):
        assert not cb.allow()
    snap = cb.snapshot()
    assert snap["rejected"] == 5
    clock.advance(30)
    assert cb.allow()
    cb.record(True)
    assert cb.snapshot()["half_open_successes"] == 1


def test_call_raises_circuit_open_error_without_running_the_function(cb):
    trip(cb)
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        cb.call(lambda: ran.append(1))
    assert ran == []
    assert isinstance(info.value, TransientError)
    assert info.value.details["retry_after_s"] == pytest.approx(30.0)
    assert "'db'" in str(info.value)


def test_call_records_the_outcome_and_passes_errors_through(cb):
    assert cb.call(lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        cb.call(lambda: 1 / 0)
    snap = cb.snapshot()
    assert (snap["calls"], snap["failures"]) == (2, 1)


def test_half_open_never_gets_stuck_when_trials_do_not_report_back(cb, clock):
    trip(cb)
    clock.advance(30)
    for _ in range(10):
        assert cb.allow()  # ten trials whose callers die before reporting
    assert not cb.allow()
    clock.advance(30)
    assert cb.allow()  # their slots were released
    cb.record(True)
    calls(cb, "S" * 9)
    assert cb.state == "closed"


def test_half_open_never_gets_stuck_after_a_long_quiet_period(cb, clock):
    trip(cb)
    clock.advance(30)
    calls(cb, "SSSSS")
    clock.advance(3600)  # no window reset can strand the successes already counted
    calls(cb, "SSSSS")
    assert cb.state == "closed"


def test_every_transition_is_recorded_in_order(cb, clock):
    trip(cb)
    clock.advance(30)
    calls(cb, "F")
    clock.advance(30)
    calls(cb, "S" * 10)
    assert [(t.old, t.new) for t in cb.transitions] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"),
        ("open", "half_open"), ("half_open", "closed")]
    assert cb.transitions[1].at == 1030.0
    assert cb.transitions_since(3) == cb.transitions[3:]
    assert cb.transitions_since(5) == []


def test_snapshot_reports_state_counts_and_times(cb, clock):
    calls(cb, "SSSFF")
    snap = cb.snapshot()
    assert snap["state"] == "closed"
    assert (snap["calls"], snap["failures"], snap["failure_rate"]) == (5, 2, 0.4)
    assert snap["opened_at"] is None and snap["next_attempt_at"] is None
    calls(cb, "F")
    snap = cb.snapshot()
    assert snap["state"] == "open"
    assert snap["opened_at"] == 1000.0
    assert snap["next_attempt_at"] == 1030.0
    assert snap["transitions"] == 1
    assert snap["last_transition"]["reason"] == "3 of 6 calls failed in the last 60 s"


def test_reset_closes_and_forgets(cb):
    trip(cb)
    cb.reset()
    assert cb.state == "closed"
    assert cb.snapshot()["calls"] == 0
    assert cb.allow()


@pytest.mark.parametrize("field,value", [
    ("failure_rate", 0.0), ("minimum_calls", 0), ("cooldown_s", 0),
    ("half_open_successes_to_close", 11),
])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(InputError, match=field):
        CircuitBreakerConfig(**{field: value})


@pytest.mark.parametrize("error,counts", [
    (TransientError("connection reset"), True),
    (PermanentError("no such table"), True),
    (StepTimeout("slow"), True),
    (RuntimeError("boom"), True),
    (InputError("bad column"), False),
    (Cancelled("sibling failed"), False),
    (CircuitOpenError("other breaker"), False),
])
def test_which_errors_count_as_failures(error, counts):
    assert counts_as_failure(error) is counts


def test_circuit_open_error_pickles_with_its_details():
    err = CircuitOpenError("refused", breaker="db", retry_after_s=3.0)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, CircuitOpenError)
    assert back.details == {"breaker": "db", "retry_after_s": 3.0}


# -- the shared actor ---------------------------------------------------------------------


@ray.remote(num_cpus=0)
def _record_through_actor(name: str, success: bool) -> str:
    handle = breaker(name)
    assert ray.get(handle.allow.remote())
    ray.get(handle.record.remote(success))
    return str(ray.get(handle.snapshot.remote())["state"])


@ray.remote(num_cpus=0)
def _guarded_call(name: str) -> str:
    return guard(name, lambda: "ran")


def test_tasks_share_one_breaker_per_name(ray_session):
    name = f"test-shared-{uuid.uuid4().hex[:8]}"
    config = CircuitBreakerConfig(minimum_calls=2, cooldown_s=600)
    handle = breaker(name, config)
    states = ray.get([_record_through_actor.remote(name, False) for _ in range(2)])
    assert "open" in states  # the second task saw the first one's failure
    snap = ray.get(handle.snapshot.remote())
    assert snap["state"] == "open"
    assert snap["config"]["minimum_calls"] == 2
    with pytest.raises(CircuitOpenError) as info:
        ray.get(_guarded_call.remote(name))
    assert info.value.details["breaker"] == name


def test_guard_runs_the_call_and_records_it(ray_session):
    name = f"test-guard-{uuid.uuid4().hex[:8]}"
    assert guard(name, lambda: 7) == 7
    with pytest.raises(ValueError):
        guard(name, lambda: int("x"))
    snap = ray.get(breaker(name).snapshot.remote())
    assert (snap["calls"], snap["failures"]) == (2, 1)


def test_breaker_states_lists_every_breaker(ray_session):
    name = f"test-list-{uuid.uuid4().hex[:8]}"
    handle = breaker(name)
    ray.get(handle.reset.remote())
    states = breaker_states()
    assert states[name]["state"] == "closed"
    assert states[name]["name"] == name
