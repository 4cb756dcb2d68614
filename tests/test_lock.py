"""Distributed lock: leases, renewal and fencing tokens under a fake clock, then through Ray."""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
import uuid

import pytest
import ray
from conftest import FakeClock

from raysight.engine.lock import (
    LockLost,
    LockManager,
    LockTimeout,
    NotLocked,
    NotOwner,
    default_owner,
    distributed_lock,
    lock_manager,
)
from raysight.errors import InconsistentState, TransientError


@pytest.fixture
def locks(clock: FakeClock) -> LockManager:
    return LockManager(clock=clock)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the state machine --------------------------------------------------------------------


def test_acquire_succeeds_when_the_key_is_free(locks, clock):
    lease = locks.acquire("k", "alice", lease_s=30)
    assert lease is not None
    assert (lease.key, lease.owner, lease.expires_at) == ("k", "alice", clock.now + 30)
    assert locks.holder("k") == lease


def test_a_held_key_is_refused_to_everyone_else(locks):
    locks.acquire("k", "alice")
    assert locks.acquire("k", "bob") is None
    assert locks.acquire("k", "alice") is None  # not re-entrant


def test_other_keys_are_independent(locks):
    locks.acquire("k", "alice")
    assert locks.acquire("other", "bob") is not None


def test_a_lease_expires_after_its_duration_unless_renewed(locks, clock):
    locks.acquire("k", "alice", lease_s=30)
    clock.advance(29.9)
    assert locks.acquire("k", "bob") is None
    clock.advance(0.1)
    assert locks.holder("k") is None
    assert locks.acquire("k", "bob") is not None


def test_renewal_extends_the_lease_from_now(locks, clock):
    lease = locks.acquire("k", "alice", lease_s=30)
    clock.advance(20)
    renewed = locks.renew("k", "alice", lease.token, lease_s=30)
    assert renewed.expires_at == clock.now + 30
    assert renewed.token == lease.token
    clock.advance(20)  # 40 s after acquiring: still held
    assert locks.acquire("k", "bob") is None


def test_renewing_an_expired_lease_raises_lock_lost(locks, clock):
    lease = locks.acquire("k", "alice", lease_s=30)
    clock.advance(31)
    with pytest.raises(LockLost, match="expired"):
        locks.renew("k", "alice", lease.token)


def test_renewing_a_lease_that_was_taken_over_raises_lock_lost(locks, clock):
    lease = locks.acquire("k", "alice", lease_s=30)
    clock.advance(31)
    locks.acquire("k", "bob")
    with pytest.raises(LockLost, match="taken over by 'bob'"):
        locks.renew("k", "alice", lease.token)


def test_fencing_tokens_increase_across_acquisitions_and_expiry(locks, clock):
    tokens = []
    for owner in ("a", "b", "c"):
        lease = locks.acquire("k", owner, lease_s=5)
        tokens.append(lease.token)
        if owner == "b":
            clock.advance(6)  # b's lease expires instead of being released
        else:
            locks.release("k", owner, lease.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_release_frees_the_key(locks):
    lease = locks.acquire("k", "alice")
    locks.release("k", "alice", lease.token)
    assert locks.holder("k") is None
    assert locks.acquire("k", "bob") is not None


def test_release_by_another_owner_raises_not_owner(locks):
    lease = locks.acquire("k", "alice")
    with pytest.raises(NotOwner, match="'alice'"):
        locks.release("k", "bob", lease.token)
    assert locks.holder("k").owner == "alice"


def test_release_of_an_unlocked_key_raises_not_locked(locks):
    with pytest.raises(NotLocked):
        locks.release("free", "alice", 1)


def test_release_of_an_expired_lease_raises_lock_lost(locks, clock):
    lease = locks.acquire("k", "alice", lease_s=1)
    clock.advance(2)
    with pytest.raises(LockLost, match="expired"):
        locks.release("k", "alice", lease.token)
    assert locks.holder("k") is None


def test_release_with_an_old_token_does_not_free_a_newer_lease(locks, clock):
    old = locks.acquire("k", "alice", lease_s=1)
    clock.advance(2)
    new = locks.acquire("k", "alice", lease_s=30)
    with pytest.raises(LockLost, match="taken over"):
        locks.release("k", "alice", old.token)
    assert locks.holder("k").token == new.token


def test_held_lists_only_live_leases(locks, clock):
    locks.acquire("short", "a", lease_s=1)
    locks.acquire("long", "b", lease_s=60)
    clock.advance(2)
    assert list(locks.held()) == ["long"]


def test_lock_errors_fit_the_taxonomy_and_pickle():
    assert issubclass(LockLost, InconsistentState)
    assert issubclass(LockTimeout, TransientError)
    err = LockTimeout("busy", key="k", holder="alice")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, LockTimeout) and back.details == {"key": "k", "holder": "alice"}


def test_default_owner_differs_between_threads():
    owners = [default_owner()]
    thread = threading.Thread(target=lambda: owners.append(default_owner()))
    thread.start()
    thread.join()
    assert owners[0] != owners[1]


# -- through Ray --------------------------------------------------------------------------


@ray.remote(num_cpus=0)
class _Gate:
    """Lets tasks wait until ``n`` of them are running, so that they really compete."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.arrived = 0

    def arrive(self) -> None:
        self.arrived += 1

    def open(self) -> bool:
        return self.arrived >= self.n


@ray.remote(num_cpus=1)
def _hold(key: str, hold_s: float, gate: ray.actor.ActorHandle) -> tuple[float, float, int, int]:
    ray.get(gate.arrive.remote())
    deadline = time.monotonic() + 60
    while not ray.get(gate.open.remote()) and time.monotonic() < deadline:
        time.sleep(0.01)
    with distributed_lock(key, timeout_s=60, poll_s=0.01) as lease:
        entered = time.time()
        time.sleep(hold_s)
        lease.check()
        left = time.time()
    return entered, left, lease.token, os.getpid()


def test_two_workers_never_hold_the_lock_at_the_same_time(ray_session):
    key = unique("contention")
    gate = _Gate.remote(2)
    results = sorted(ray.get([_hold.remote(key, 0.2, gate) for _ in range(6)]))
    assert len({pid for *_, pid in results}) >= 2
    for (_, left, token, _), (entered, _, next_token, _) in itertools.pairwise(results):
        assert left <= entered
        assert token < next_token
    assert ray.get(lock_manager().holder.remote(key)) is None


def test_renewal_keeps_the_lock_past_its_lease(ray_session):
    key = unique("renew")
    manager = lock_manager()
    with distributed_lock(key, lease_s=1.0) as lease:
        time.sleep(2.5)
        assert ray.get(manager.acquire.remote(key, "intruder", 1.0)) is None
        assert not lease.lost
        lease.check()
    assert ray.get(manager.holder.remote(key)) is None


def test_a_lost_lease_raises_on_exit(ray_session):
    key = unique("lost")
    manager = lock_manager()
    with pytest.raises(LockLost, match="intruder"):
        with distributed_lock(key, lease_s=0.3, renew=False) as lease:
            time.sleep(0.5)
            assert lease.lost
            with pytest.raises(LockLost):
                lease.check()
            assert ray.get(manager.acquire.remote(key, "intruder", 30.0)) is not None
    assert ray.get(manager.holder.remote(key)).owner == "intruder"


def test_the_lock_is_released_when_the_block_raises(ray_session):
    key = unique("raises")
    with pytest.raises(ZeroDivisionError):
        with distributed_lock(key):
            raise ZeroDivisionError("the step failed")
    assert ray.get(lock_manager().holder.remote(key)) is None


def test_the_block_error_wins_over_a_lost_lease(ray_session):
    key = unique("both")
    with pytest.raises(ZeroDivisionError):
        with distributed_lock(key, lease_s=0.2, renew=False):
            time.sleep(0.3)
            ray.get(lock_manager().acquire.remote(key, "intruder", 30.0))
            raise ZeroDivisionError("the step failed")


def test_timeout_raises_lock_timeout_naming_the_holder(ray_session):
    key = unique("timeout")
    ray.get(lock_manager().acquire.remote(key, "alice@host", 30.0))
    with pytest.raises(LockTimeout, match="alice@host") as info:
        with distributed_lock(key, owner="bob", timeout_s=0.3):
            pytest.fail("the block must not run without the lock")
    assert info.value.details["key"] == key
    assert info.value.details["holder"] == "alice@host"
