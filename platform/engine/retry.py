"""Retry policies: how often a failed step is tried again, and how long to wait in between.

One retry layer: the executor resubmits a step that raised a retryable error
after the policy's backoff; Ray's own ``max_retries`` only covers worker and node death.
Delays are pure functions of the retry number and an injectable random source, so tests pin
the sequences.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raysight.errors import TransientError

Backoff = Callable[[int, random.Random], float]


@dataclass(frozen=True)
class Exponential:
    """``min(initial * multiplier**(n-1), max) `` seconds before retry n, plus 0..jitter of it."""

    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.1

    def __call__(self, retry: int, rng: random.Random) -> float:
        base = min(self.initial_s * self.multiplier ** (retry - 1), self.max_s)
        return base + rng.uniform(0.0, self.jitter * base) if self.jitter else base


@dataclass(frozen=True)
class Fixed:
    """The same delay before every retry."""

    delay_s: float = 1.0

    def __call__(self, retry: int, rng: random.Random) -> float:
        return self.delay_s


@dataclass(frozen=True)
class Linear:
    """``initial + increment * (n-1)`` seconds before retry n, capped at ``max_s``."""

    initial_s: float = 1.0
    increment_s: float = 1.0
    max_s: float = 60.0

    def __call__(self, retry: int, rng: random.Random) -> float:
        return min(self.initial_s + self.increment_s * (retry - 1), self.max_s)


@dataclass(frozen=True)
class RetryPolicy:
    """How a step is retried.

    ``max_retries`` counts retries after the first attempt (3 means up to 4 runs). Only errors
    that are instances of ``retry_on`` are retried; ``deadline_s`` bounds the time from the
    first attempt after which no retry starts.

    >>> RetryPolicy(max_retries=2).delays(seed=0)  # doctest: +SKIP
    [1.08..., 2.03...]
    """

    max_retries: int = 3
    backoff: Backoff = field(default_factory=Exponential)
    retry_on: tuple[type[BaseException], ...] = (TransientError,)
    deadline_s: float | None = None

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt, no retry."""
        return cls(max_retries=0)

    @classmethod
    def forever(cls, backoff: Backoff | None = None) -> RetryPolicy:
        """Retry every error without limit (use with a job timeout)."""
        return cls(max_retries=math.inf, backoff=backoff or Exponential(), retry_on=(Exception,))  # type: ignore[arg-type]

    def should_retry(self, error: BaseException, retries_done: int, elapsed_s: float) -> bool:
        """True when the error is retryable and neither the count nor the deadline is spent."""
        if retries_done >= self.max_retries:
            return False
        if self.deadline_s is not None and elapsed_s >= self.deadline_s:
            return False
        return isinstance(error, self.retry_on)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return float(self.backoff(retry, rng or random.Random()))

    def delays(self, seed: int | None = None) -> list[float]:
        """The whole delay sequence for a seeded random source (for display and tests)."""
        rng = random.Random(seed)
        count = int(min(self.max_retries, 1000))
        return [self.delay(n, rng) for n in range(1, count + 1)]
