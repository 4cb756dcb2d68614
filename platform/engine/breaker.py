"""Circuit breakers: stop calling a dependency that keeps failing, and probe it again later.

A breaker is *closed* (calls pass) until at least ``minimum_calls`` calls were recorded in the
last ``window_s`` seconds and at least ``failure_rate`` of them failed; then it is *open* and
refuses calls for ``cooldown_s``. The first call after the cooldown moves it to *half-open*,
where at most ``half_open_max_calls`` trial calls are admitted: any failure reopens it (with a
fresh cooldown), ``half_open_successes_to_close`` successes close it.

:class:`CircuitBreaker` is the pure state machine (injectable clock, no Ray). One named,
detached Ray actor per protected dependency (:func:`breaker`) holds it for the whole cluster,
so every worker and driver sees the same state:

>>> handle = breaker("postgres-main")                      # doctest: +SKIP
>>> rows = guard("postgres-main", lambda: query(sql))       # doctest: +SKIP
>>> breaker_states()["postgres-main"]["state"]              # doctest: +SKIP
'closed'

Semantics:

- The window slides (each outcome expires ``window_s`` after it was recorded; it is not a
  tumbling window), and the rate is compared unrounded: ``failures / calls >= failure_rate``.
  The rate is evaluated when a failure is recorded, so a success never trips the breaker.
- Half-open admits at most ``half_open_max_calls`` trials per half-open period; closing needs
  ``half_open_successes_to_close`` of them to succeed (default: all of them). A
  trial that never reports back is released after ``cooldown_s``, so half-open never gets stuck.
- Half-open outcomes are matched to the oldest unresolved trial; an outcome reported while no
  trial is unresolved (a call admitted before the breaker opened) is ignored, and so are
  outcomes reported while open.
- Which errors count: :func:`counts_as_failure` ignores bad input, unmet conditions,
  cancellations and refusals by another breaker, which say nothing about the dependency.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeVar

import ray

from raysight.errors import (
    Cancelled,
    ConditionNotMet,
    InputError,
    TransientError,
    root_cause,
)

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
T = TypeVar("T")

#: Ray namespace and actor-name prefix of the shared breakers
NAMESPACE = "raysight"
ACTOR_PREFIX = "circuit_breaker:"
#: transitions kept per breaker (older ones are dropped; the total is still counted)
MAX_TRANSITIONS = 1000


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """When a breaker opens and how it recovers."""

    #: fraction of failed calls in the window at which the breaker opens
    failure_rate: float = 0.5
    #: no decision before this many calls were recorded in the window
    minimum_calls: int = 5
    #: seconds an outcome counts towards the failure rate
    window_s: float = 60.0
    #: seconds the breaker stays open before a trial call is let through; also how long a
    #: half-open trial may stay unreported before its slot is released
    cooldown_s: float = 30.0
    #: trial calls admitted per half-open period
    half_open_max_calls: int = 10
    #: successful trials that close the breaker; None means all ``half_open_max_calls``
    half_open_successes_to_close: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("failure_rate", 0.0 < self.failure_rate <= 1.0, "a fraction in (0, 1]"),
            ("minimum_calls", self.minimum_calls >= 1, "at least 1"),
            ("window_s", self.window_s > 0, "positive"),
            ("cooldown_s", self.cooldown_s > 0, "positive"),
            ("half_open_max_calls", self.half_open_max_calls >= 1, "at least 1"),
        ]
        for field_name, ok, expected in checks:
            if not ok:
                raise InputError(f"circuit breaker {field_name} must be {expected}, "
                                 f"got {getattr(self, field_name)!r}", field=field_name)
        needed = self.half_open_successes_to_close
        if needed is not None and not 1 <= needed <= self.half_open_max_calls:
            raise InputError(
                f"circuit breaker half_open_successes_to_close must be between 1 and "
                f"half_open_max_calls ({self.half_open_max_calls}), got {needed!r}",
                field="half_open_successes_to_close")

    @property
    def successes_to_close(self) -> int:
        """Successful half-open trials needed to close the breaker."""
        needed = self.half_open_successes_to_close
        return self.half_open_max_calls if needed is None else needed


class Transition(NamedTuple):
    """A change of state: ``old`` -> ``new`` at clock time ``at``, and why."""

    old: str
    new: str
    at: float
    reason: str


class CircuitOpenError(TransientError):
    """A call was refused because the breaker of its dependency is open; it did not run.

    ``details["retry_after_s"]`` says how long until the breaker lets a trial call through.
    """

    category = "circuit_open"


class CircuitBreaker:
    """The breaker's state machine for one dependency (not thread-safe: the actor serializes).

    ``clock`` returns seconds; pass a fake one in tests. ``transitions`` lists the latest state
    changes so that an observer can turn them into events.
    """

    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        self.config = config or CircuitBreakerConfig()
        self.clock = clock
        self.name = name
        self._state: State = "closed"
        self._window: deque[tuple[float, bool]] = deque()  # (recorded at, failed)
        self._failures = 0
        self._opened_at: float | None = None
        self._trials: deque[float] = deque()  # admission times of unresolved half-open trials
        self._trial_successes = 0
        self._rejected = 0
        self._ignored = 0
        self._transitions: deque[Transition] = deque(maxlen=MAX_TRANSITIONS)
        self._transition_count = 0

    @property
    def state(self) -> State:
        """``"closed"``, ``"open"`` or ``"half_open"`` (open stays open until the next allow)."""
        return self._state

    @property
    def transitions(self) -> list[Transition]:
        """The latest state changes, oldest first."""
        return list(self._transitions)

    def transitions_since(self, seen: int) -> list[Transition]:
        """State changes after the first ``seen`` ones (``snapshot()["transitions"]`` counts
        them all), for an observer that polls."""
        new = max(0, self._transition_count - seen)
        return list(self._transitions)[-new:] if new else []

    def allow(self) -> bool:
        """True when a call may go ahead; in half-open this takes one trial slot.

        A refused call is not counted anywhere except in ``snapshot()["rejected"]``.
        """
        now = self.clock()
        if self._state == "open":
            assert self._opened_at is not None
            if now < self._opened_at + self.config.cooldown_s:
                self._rejected += 1
                return False
            self._move("half_open", now, "cooldown elapsed")
        if self._state == "half_open":
            self._release_stale_trials(now)
            if len(self._trials) + self._trial_successes >= self.config.half_open_max_calls:
                self._rejected += 1
                return False
            self._trials.append(now)
        return True

    def record(self, success: bool) -> None:
        """Count the outcome of a call that :meth:`allow` let through."""
        now = self.clock()
        if self._state == "closed":
            self._expire(now)
            self._window.append((now, not success))
            if success:
                return
            self._failures += 1
            calls = len(self._window)
            if calls >= self.config.minimum_calls and \
                    self._failures / calls >= self.config.failure_rate:
                self._move("open", now, f"{self._failures} of {calls} calls failed in the "
                                        f"last {self.config.window_s:g} s")
        elif self._state == "half_open":
            self._release_stale_trials(now)
            if not self._trials:  # a straggler admitted before the breaker opened
                self._ignored += 1
                return
            self._trials.popleft()
            if not success:
                self._move("open", now, "a half-open trial call failed")
                return
            self._trial_successes += 1
            if self._trial_successes >= self.config.successes_to_close:
                self._move("closed", now, f"{self._trial_successes} half-open trial calls "
                                          "succeeded")
        else:  # open: a straggler admitted before the breaker opened
            self._ignored += 1

    def reset(self, config: CircuitBreakerConfig | None = None) -> None:
        """Close the breaker and forget every count (optionally with a new config)."""
        if config is not None:
            self.config = config
        self._move("closed", self.clock(), "reset")
        self._clear()
        self._rejected = self._ignored = 0

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state: state, counts in the window, opened_at and next_attempt_at."""
        now = self.clock()
        if self._state == "closed":
            self._expire(now)
        elif self._state == "half_open":
            self._release_stale_trials(now)
        calls = len(self._window)
        last = self._transitions[-1] if self._transitions else None
        return {
            "name": self.name,
            "state": self._state,
            "calls": calls,
            "failures": self._failures,
            "failure_rate": self._failures / calls if calls else 0.0,
            "rejected": self._rejected,
            "ignored": self._ignored,
            "half_open_trials": len(self._trials),
            "half_open_successes": self._trial_successes,
            "opened_at": self._opened_at,
            "next_attempt_at": (self._opened_at + self.config.cooldown_s
                                if self._state == "open" and self._opened_at is not None
                                else None),
            "transitions": self._transition_count,
            "last_transition": last._asdict() if last else None,
            "now": now,
            "config": dataclasses.asdict(self.config),
        }

    def call(self, fn: Callable[[], T],
             is_failure: Callable[[BaseException], bool] | None = None) -> T:
        """Run ``fn()`` through this breaker; raises :class:`CircuitOpenError` when refused."""
        if not self.allow():
            raise open_error(self.name, self.snapshot())
        try:
            result = fn()
        except BaseException as exc:
            self.record(not (is_failure or counts_as_failure)(exc))
            raise
        self.record(True)
        return result

    # -- internals ------------------------------------------------------------------------

    def _move(self, new: State, now: float, reason: str) -> None:
        old = self._state
        if new == old:
            return
        self._state = new
        self._transitions.append(Transition(old, new, now, reason))
        self._transition_count += 1
        self._clear()
        if new == "open":
            self._opened_at = now
        log.info("circuit breaker %r: %s -> %s (%s)", self.name, old, new, reason)

    def _clear(self) -> None:
        self._window.clear()
        self._failures = 0
        self._trials.clear()
        self._trial_successes = 0
        if self._state == "closed":
            self._opened_at = None

    def _expire(self, now: float) -> None:
        horizon = now - self.config.window_s
        while self._window and self._window[0][0] <= horizon:
            _, failed = self._window.popleft()
            self._failures -= failed

    def _release_stale_trials(self, now: float) -> None:
        # a trial whose caller died or hung must not hold its slot forever
        while self._trials and now - self._trials[0] >= self.config.cooldown_s:
            self._trials.popleft()


def counts_as_failure(exc: BaseException) -> bool:
    """Whether an error says the protected dependency is failing.

    Bad input, unmet conditions, cancellations and refusals by (another) open breaker do not.
    """
    cause = root_cause(exc)
    return not isinstance(cause, (InputError, ConditionNotMet, Cancelled, CircuitOpenError))


def open_error(name: str, snapshot: dict[str, Any]) -> CircuitOpenError:
    """The error for a call that the breaker ``name`` refused, from its snapshot."""
    next_at = snapshot.get("next_attempt_at")
    if next_at is not None:
        retry_after = max(0.0, next_at - snapshot["now"])
        why = f"it is open ({_reason(snapshot)}); next trial call in {retry_after:.1f} s"
    else:  # half-open with every trial slot taken
        retry_after = 0.0
        why = (f"it is half-open and all {snapshot['config']['half_open_max_calls']} trial "
               "calls are in flight")
    return CircuitOpenError(f"circuit breaker {name!r} refused the call: {why}",
                            breaker=name, state=snapshot["state"], retry_after_s=retry_after)


def _reason(snapshot: dict[str, Any]) -> str:
    last = snapshot.get("last_transition") or {}
    return str(last.get("reason") or "too many failures")


# ---------------------------------------------------------------------------------------------
# Shared across the cluster: one named, detached actor per dependency


@ray.remote(num_cpus=0)
class CircuitBreakerActor:
    """Holds one :class:`CircuitBreaker`; Ray runs its methods one at a time, so a state check
    and the trial-slot it takes are atomic."""

    def __init__(self, name: str, config: CircuitBreakerConfig) -> None:
        # wall-clock time: snapshots are read by other processes and other machines
        self._breaker = CircuitBreaker(config, clock=time.time, name=name)

    def allow(self) -> bool:
        return self._breaker.allow()

    def record(self, success: bool) -> None:
        self._breaker.record(success)

    def snapshot(self) -> dict[str, Any]:
        return self._breaker.snapshot()

    def reset(self, config: CircuitBreakerConfig | None = None) -> None:
        self._breaker.reset(config)

    def config(self) -> CircuitBreakerConfig:
        return self._breaker.config

    def transitions_since(self, seen: int = 0) -> list[Transition]:
        return self._breaker.transitions_since(seen)


def breaker(name: str, config: CircuitBreakerConfig | None = None) -> Any:
    """The actor handle of the breaker ``name``, created on first use with ``config``.

    Every worker and driver connected to the cluster gets the same actor. The first creator's
    config wins; a different ``config`` for an existing breaker is logged (use
    ``handle.reset.remote(config)`` to change it).
    """
    if not name:
        raise InputError("a circuit breaker needs a non-empty name (the protected dependency)")
    handle = CircuitBreakerActor.options(  # type: ignore[attr-defined]
        name=ACTOR_PREFIX + name,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        max_restarts=-1,
    ).remote(name, config or CircuitBreakerConfig())
    if config is not None:
        current = ray.get(handle.config.remote())
        if current != config:
            log.warning("circuit breaker %r already exists with %s; ignoring %s", name,
                        current, config)
    return handle


def breaker_states() -> dict[str, dict[str, Any]]:
    """Snapshots of every circuit breaker of the cluster, by name."""
    names = [a["name"][len(ACTOR_PREFIX):] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == NAMESPACE and a["name"].startswith(ACTOR_PREFIX)]
    refs: dict[str, Any] = {}
    for name in names:
        try:
            refs[name] = ray.get_actor(ACTOR_PREFIX + name, namespace=NAMESPACE).snapshot.remote()
        except ValueError:  # removed since it was listed
            continue
    states: dict[str, dict[str, Any]] = {}
    for name, ref in refs.items():
        try:
            states[name] = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            log.warning("circuit breaker %r did not answer: %s", name, exc)
    return states


def admit(name: str, config: CircuitBreakerConfig | None = None) -> Any:
    """Take a call slot from the breaker ``name`` and return its handle, on which the caller
    must then call ``record.remote(success)``; raises :class:`CircuitOpenError` if refused."""
    handle = breaker(name, config)
    if not ray.get(handle.allow.remote()):
        raise open_error(name, ray.get(handle.snapshot.remote()))
    return handle


def guard(
    name: str,
    fn: Callable[[], T],
    config: CircuitBreakerConfig | None = None,
    is_failure: Callable[[BaseException], bool] = counts_as_failure,
) -> T:
    """Run ``fn()`` if the shared breaker ``name`` allows it and record the outcome.

    Raises :class:`CircuitOpenError` without calling ``fn`` when the breaker refuses.
    """
    handle = admit(name, config)
    try:
        result = fn()
    except BaseException as exc:
        _record(handle, name, not is_failure(exc))
        raise
    _record(handle, name, True)
    return result


def _record(handle: Any, name: str, success: bool) -> None:
    # the call itself already finished: a breaker that cannot be reached must not change its
    # outcome, so the problem is logged rather than raised
    try:
        ray.get(handle.record.remote(success))
    except ray.exceptions.RayError as exc:
        log.warning("circuit breaker %r could not record a %s: %s", name,
                    "success" if success else "failure", exc)


__all__ = [
    "CircuitBreaker", "CircuitBreakerActor", "CircuitBreakerConfig", "CircuitOpenError",
    "Transition", "admit", "breaker", "breaker_states", "counts_as_failure", "guard",
    "open_error",
]
