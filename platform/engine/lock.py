"""Distributed locks with leases and fencing tokens.

:class:`LockManager` is the pure state machine (injectable clock, no Ray); one named, detached
Ray actor (:class:`LockActor`, ``"locks"`` in namespace ``"raysight"``) holds it for the whole
cluster. :func:`distributed_lock` is the client: it waits for the lock, renews the lease in a
background thread while the block runs, and releases it on exit.

>>> with distributed_lock("export:/data/out.parquet") as lease:   # doctest: +SKIP
...     lease.check()                    # raises LockLost if the lease was lost
...     write(path, fencing_token=lease.token)

A lease expires ``lease_s`` seconds after it was granted or last renewed; another owner can
then take the lock. Every acquisition gets a fencing token larger than every earlier token of
the key, so a storage that remembers the largest token it has seen can refuse writes from a
holder that lost its lease without knowing it. A lost lease is always reported: through
:meth:`Lease.check` during the block and as :class:`LockLost` when the block exits.

Semantics: the lock is not re-entrant
(an owner that asks again for a lock it holds waits like anyone else); the first renewal is
after ``lease_s / 3``, not at once; a renewal that fails because the lease was lost stops the
renewals and marks the lease lost; release errors are raised, never swallowed; waiting is by
polling, so it is not first-come first-served.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import ray

from raysight.errors import (
    InconsistentState,
    InputError,
    TransientError,
    WorkflowError,
    root_cause,
)

log = logging.getLogger(__name__)

#: Ray namespace and name of the cluster's lock actor
NAMESPACE = "raysight"
ACTOR_NAME = "locks"


class LockError(WorkflowError):
    """Base class of the lock errors."""


class LockTimeout(LockError, TransientError):
    """The lock was not free within the acquire timeout (``details``: key, holder)."""

    category = "lock_timeout"


class LockLost(LockError, InconsistentState):
    """A lease expired or was taken over while its owner still relied on it."""

    category = "lock_lost"


class NotOwner(LockError, InconsistentState):
    """Renew or release of a lock that another owner holds."""

    category = "lock_not_owner"


class NotLocked(LockError, InconsistentState):
    """Release of a key that nobody holds."""

    category = "lock_not_locked"


@dataclass
class Lease:
    """A granted lock: the key, its owner and the fencing token of this acquisition.

    ``expires_at`` is on the lock manager's clock. The client (:func:`distributed_lock`) also
    tracks the lease on this process's clock and marks it lost when a renewal fails.
    """

    key: str
    owner: str
    token: int
    lease_s: float
    expires_at: float
    #: why the lease was lost; None while it is held
    lost_reason: str | None = None
    #: ``time.monotonic()`` in the client after which the lease may have expired
    valid_until: float | None = None

    @property
    def lost(self) -> bool:
        """True once the lease was lost, or may have expired without a renewal."""
        if self.lost_reason is not None:
            return True
        return self.valid_until is not None and time.monotonic() >= self.valid_until

    def check(self) -> None:
        """Raise :class:`LockLost` if the lease was lost; call before irreversible work."""
        if self.lost_reason is not None:
            raise LockLost(f"lock {self.key!r} (token {self.token}) was lost: "
                           f"{self.lost_reason}", key=self.key, token=self.token)
        if self.lost:
            raise LockLost(f"lock {self.key!r} (token {self.token}) was not renewed within "
                           f"its lease of {self.lease_s:g} s and may have been taken over",
                           key=self.key, token=self.token)

    def mark_lost(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason


class LockManager:
    """Leases per key, with fencing tokens that only ever grow (not thread-safe: the actor
    serializes calls). ``clock`` returns seconds; pass a fake one in tests.

    ``first_token`` is the first fencing token handed out.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, first_token: int = 1) -> None:
        self.clock = clock
        self._held: dict[str, Lease] = {}
        # one counter for all keys: tokens then grow per key too, with no memory per key
        self._next_token = first_token

    def acquire(self, key: str, owner: str, lease_s: float = 30.0) -> Lease | None:
        """A new lease on ``key`` for ``owner``, or None while another live lease holds it."""
        if lease_s <= 0:
            raise InputError(f"lock lease_s must be positive, got {lease_s!r}", key=key)
        now = self.clock()
        if self._live(key, now) is not None:
            return None
        lease = Lease(key, owner, self._next_token, lease_s, now + lease_s)
        self._next_token += 1
        self._held[key] = lease
        return replace(lease)

    def renew(self, key: str, owner: str, token: int, lease_s: float = 30.0) -> Lease:
        """Extend a live lease by ``lease_s`` from now; :class:`LockLost` if it expired or was
        taken over, :class:`NotOwner` if ``owner`` never held this lease."""
        if lease_s <= 0:
            raise InputError(f"lock lease_s must be positive, got {lease_s!r}", key=key)
        now = self.clock()
        current = self._held.get(key)
        if current is not None and current.token == token and current.owner != owner:
            raise NotOwner(f"lock {key!r} (token {token}) is held by {current.owner!r}, "
                           f"not by {owner!r}", key=key, owner=owner, holder=current.owner)
        self._expired_or_lost(key, owner, token, now)
        assert current is not None
        current.expires_at = now + lease_s
        current.lease_s = lease_s
        return replace(current)

    def release(self, key: str, owner: str, token: int) -> None:
        """Give the lock up. :class:`NotLocked` if nobody holds it, :class:`NotOwner` if
        another owner does, :class:`LockLost` if this owner's lease expired or is an older one.
        """
        now = self.clock()
        current = self._held.get(key)
        if current is None:
            raise NotLocked(f"lock {key!r} is not held by anyone", key=key, owner=owner)
        expired = current.expires_at <= now
        if current.owner != owner and not expired:
            raise NotOwner(f"lock {key!r} is held by {current.owner!r} (token "
                           f"{current.token}), not by {owner!r}", key=key, owner=owner,
                           holder=current.owner)
        if expired and current.token != token:
            del self._held[key]
            raise NotLocked(f"lock {key!r} is not held by anyone (the last lease expired)",
                            key=key, owner=owner)
        self._expired_or_lost(key, owner, token, now)
        del self._held[key]

    def holder(self, key: str) -> Lease | None:
        """The live lease on ``key``, or None when it is free."""
        live = self._live(key, self.clock())
        return replace(live) if live is not None else None

    def held(self) -> dict[str, Lease]:
        """Every live lease, by key."""
        now = self.clock()
        return {key: replace(lease) for key in list(self._held)
                if (lease := self._live(key, now)) is not None}

    def _live(self, key: str, now: float) -> Lease | None:
        current = self._held.get(key)
        if current is not None and current.expires_at <= now:
            del self._held[key]
            return None
        return current

    def _expired_or_lost(self, key: str, owner: str, token: int, now: float) -> None:
        """Raise LockLost unless ``token`` is the live lease on ``key``."""
        current = self._held.get(key)
        if current is None:
            raise LockLost(f"lock {key!r} (token {token}) is no longer held by {owner!r}: "
                           "it was released or its lease expired", key=key, token=token)
        if current.token != token:
            raise LockLost(f"lock {key!r} (token {token}) was taken over by "
                           f"{current.owner!r} (token {current.token})", key=key, token=token,
                           holder=current.owner)
        if current.expires_at <= now:
            del self._held[key]
            raise LockLost(f"the lease on lock {key!r} (token {token}) expired "
                           f"{now - current.expires_at:.3g} s ago", key=key, token=token)


# ---------------------------------------------------------------------------------------------
# Shared across the cluster


@ray.remote(num_cpus=0)
class LockActor:
    """Holds the cluster's :class:`LockManager`; Ray runs its methods one at a time."""

    def __init__(self) -> None:
        # wall-clock time, so that expiry times mean something to other processes; tokens
        # start from the clock so that a restarted actor never hands out a smaller token
        self._manager = LockManager(clock=time.time, first_token=time.time_ns() // 1000)

    def acquire(self, key: str, owner: str, lease_s: float = 30.0) -> Lease | None:
        return self._manager.acquire(key, owner, lease_s)

    def renew(self, key: str, owner: str, token: int, lease_s: float = 30.0) -> Lease:
        return self._manager.renew(key, owner, token, lease_s)

    def release(self, key: str, owner: str, token: int) -> None:
        self._manager.release(key, owner, token)

    def holder(self, key: str) -> Lease | None:
        return self._manager.holder(key)

    def held(self) -> dict[str, Lease]:
        return self._manager.held()


def lock_manager() -> Any:
    """The actor handle of the cluster's lock manager (created on first use)."""
    return LockActor.options(  # type: ignore[attr-defined]
        name=ACTOR_NAME,
        namespace=NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        max_restarts=-1,
    ).remote()


def default_owner() -> str:
    """An owner id unique to this host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def acquire(
    key: str,
    owner: str | None = None,
    lease_s: float = 30.0,
    timeout_s: float | None = 10.0,
    poll_s: float = 0.05,
    manager: Any = None,
) -> Lease:
    """Wait until the lock on ``key`` is free and take it (``timeout_s=None`` waits forever).

    Raises :class:`LockTimeout`, naming the holder, when the lock stays taken.
    """
    if lease_s <= 0 or poll_s <= 0 or (timeout_s is not None and timeout_s < 0):
        raise InputError(f"lock {key!r}: lease_s and poll_s must be positive and timeout_s "
                         f"zero or positive, got lease_s={lease_s!r}, poll_s={poll_s!r}, "
                         f"timeout_s={timeout_s!r}", key=key)
    manager = manager or lock_manager()
    owner = owner or default_owner()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        asked = time.monotonic()
        lease: Lease | None = ray.get(manager.acquire.remote(key, owner, lease_s))
        if lease is not None:
            lease.valid_until = asked + lease_s
            return lease
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            current: Lease | None = ray.get(manager.holder.remote(key))
            holder = "nobody (it was just released)" if current is None else (
                f"{current.owner!r} (token {current.token}"
                + (", which is this owner: the lock is not re-entrant)"
                   if current.owner == owner else ")"))
            raise LockTimeout(f"lock {key!r} was not free within {timeout_s:g} s; it is held "
                              f"by {holder}", key=key, owner=owner,
                              holder=None if current is None else current.owner,
                              timeout_s=timeout_s)
        time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - now)))


class _Renewer(threading.Thread):
    """Renews a lease every ``lease_s / 3`` until stopped or until the lease is lost."""

    def __init__(self, manager: Any, lease: Lease) -> None:
        super().__init__(name=f"raysight-lock-renew:{lease.key}", daemon=True)
        self.manager = manager
        self.lease = lease
        self.stopped = threading.Event()

    def run(self) -> None:
        lease = self.lease
        while not self.stopped.wait(lease.lease_s / 3):
            asked = time.monotonic()
            wait_s = max(0.001, (lease.valid_until or asked) - asked)
            try:
                renewed: Lease = ray.get(
                    self.manager.renew.remote(lease.key, lease.owner, lease.token, lease.lease_s),
                    timeout=wait_s)
            except LockError as exc:
                lease.mark_lost(str(root_cause(exc)))
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
                # the lease may still be renewed at the next tick; it is lost only once its
                # validity ran out without a confirmed renewal
                if time.monotonic() >= (lease.valid_until or 0.0):
                    lease.mark_lost(f"the lock manager did not confirm a renewal in time: {exc}")
                else:
                    log.warning("renewal of lock %r failed, retrying: %s", lease.key, exc)
                    continue
            else:
                lease.expires_at = renewed.expires_at
                lease.valid_until = asked + lease.lease_s
                continue
            log.error("lock %r (token %d, owner %s) was lost: %s", lease.key, lease.token,
                      lease.owner, lease.lost_reason)
            return

    def stop(self) -> None:
        self.stopped.set()
        self.join()


@contextmanager
def distributed_lock(
    key: str,
    owner: str | None = None,
    lease_s: float = 30.0,
    timeout_s: float | None = 10.0,
    renew: bool = True,
    poll_s: float = 0.05,
) -> Iterator[Lease]:
    """Hold the cluster-wide lock on ``key`` for the ``with`` block; yields the :class:`Lease`.

    Waits up to ``timeout_s`` (:class:`LockTimeout` after that), renews the lease every
    ``lease_s / 3`` while the block runs (unless ``renew=False``) and releases the lock on
    exit. If the lease was lost, exiting raises :class:`LockLost`, unless the block itself
    raised (then that error propagates and the loss is logged).
    """
    manager = lock_manager()
    lease = acquire(key, owner, lease_s, timeout_s, poll_s, manager)
    renewer = _Renewer(manager, lease) if renew else None
    if renewer is not None:
        renewer.start()
    try:
        yield lease
    except BaseException:
        _finish(manager, lease, renewer, block_failed=True)
        raise
    _finish(manager, lease, renewer, block_failed=False)


def _finish(manager: Any, lease: Lease, renewer: _Renewer | None, block_failed: bool) -> None:
    """Stop renewing, release the lock, and report a lost lease.

    The release is the authority: it succeeds only if this lease was live all along (a lease
    only moves forward, by its owner's renewals), so it clears a loss that was merely feared
    because renewals went unconfirmed; a refused release means the lease was lost.
    """
    if renewer is not None:
        renewer.stop()
    try:
        ray.get(manager.release.remote(lease.key, lease.owner, lease.token))
        return
    except LockError as exc:
        cause: BaseException = root_cause(exc)
    except ray.exceptions.RayError as exc:  # the lock manager died: its leases died with it
        cause = exc
    lease.mark_lost(str(cause))
    if block_failed:
        log.error("lock %r (token %d) was lost while its block failed: %s", lease.key,
                  lease.token, lease.lost_reason)
        return
    raise LockLost(f"lock {lease.key!r} (token {lease.token}) was lost before the block "
                   f"finished: {lease.lost_reason}", key=lease.key, token=lease.token,
                   owner=lease.owner) from cause


__all__ = [
    "Lease", "LockActor", "LockError", "LockLost", "LockManager", "LockTimeout", "NotLocked",
    "NotOwner", "acquire", "default_owner", "distributed_lock", "lock_manager",
]
