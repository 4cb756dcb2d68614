"""Retry policies: pinned backoff sequences and retry decisions."""

from __future__ import annotations

import random

import pytest

from raysight.engine.retry import Exponential, Fixed, Linear, RetryPolicy
from raysight.errors import PermanentError, StepTimeout, TransientError


def test_exponential_without_jitter_doubles_from_one_second_up_to_the_cap():
    backoff = Exponential(initial_s=1, multiplier=2, max_s=60, jitter=0)
    assert [backoff(n, random.Random(0)) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_jitter_adds_between_zero_and_ten_percent():
    backoff = Exponential(jitter=0.1)
    rng = random.Random(7)
    for n in range(1, 10):
        base = min(2 ** (n - 1), 60)
        delay = backoff(n, rng)
        assert base <= delay <= base * 1.1


def test_seeded_delays_are_reproducible():
    assert RetryPolicy(max_retries=5).delays(seed=3) == RetryPolicy(max_retries=5).delays(seed=3)


def test_fixed_and_linear_backoffs():
    assert Fixed(0.5)(4, random.Random()) == 0.5
    assert [Linear(1, 2, max_s=6)(n, random.Random()) for n in (1, 2, 3, 4)] == [1, 3, 5, 6]


@pytest.mark.parametrize("error,expected", [
    (TransientError("reset"), True),
    (PermanentError("no such table"), False),
    (StepTimeout("slow"), False),
])
def test_only_transient_errors_are_retried_by_default(error, expected):
    assert RetryPolicy().should_retry(error, 0, 0.0) is expected


def test_no_retry_after_max_retries():
    policy = RetryPolicy(max_retries=2)
    assert policy.should_retry(TransientError("x"), 1, 0.0)
    assert not policy.should_retry(TransientError("x"), 2, 0.0)


def test_no_retry_after_the_deadline():
    policy = RetryPolicy(max_retries=10, deadline_s=30)
    assert not policy.should_retry(TransientError("x"), 1, 30.0)


def test_never_and_forever():
    assert not RetryPolicy.never().should_retry(TransientError("x"), 0, 0.0)
    assert RetryPolicy.forever().should_retry(PermanentError("x"), 10_000, 1e6)
