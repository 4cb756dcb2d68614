"""Broadcast or shuffle: how a join is distributed over Ray tasks.

::

    choose_strategy(config, left_bytes=8_000_000_000, right_bytes=2_000_000)
    # ("broadcast", "right"): every left partition is joined with the whole right side

A broadcast sends the small side whole to one task per partition of the other side, which is
not moved; a shuffle hash-partitions both sides by key into the same number of shards and runs
one task per shard. Broadcasting a side is correct only when each row of the other side finds
all its matches in it and a row of the broadcast side needs no answer from outside its task:

* the right side: ``inner``, ``left``, ``semi``, ``anti``, ``asof``;
* the left side: ``inner``, ``right``;
* ``full``: neither (an unmatched row of the broadcast side could not be told apart), always
  shuffled.

``auto`` broadcasts the smaller broadcastable side when its Arrow size is at most
``BROADCAST_BYTES``, and shuffles otherwise; ``broadcast`` broadcasts the smaller broadcastable
side whatever its size; ``shuffle`` always shuffles.

``BROADCAST_BYTES`` (16 MiB of Arrow ``nbytes``) was measured with ``benchmarks/bench_join.py``
(1e7 fact rows in 8 partitions, one node): broadcasting a 13 MiB dimension was 1.3x faster than
shuffling, a 45 MiB one 3.4x slower; its docstring has the commands and all numbers.
"""

from __future__ import annotations

from typing import Literal

from raysight.analyses.relational.config import How, JoinConfig, Side

__all__ = ["BROADCAST_BYTES", "broadcast_sides", "choose_strategy"]

#: the largest side (Arrow bytes) that ``auto`` broadcasts; measured, see the module docstring
BROADCAST_BYTES = 16 * 2**20

_SIDES: dict[str, tuple[Side, ...]] = {
    "inner": ("right", "left"), "left": ("right",), "semi": ("right",), "anti": ("right",),
    "asof": ("right",), "right": ("left",), "full": (),
}


def broadcast_sides(how: How) -> tuple[Side, ...]:
    """The sides a join of kind ``how`` may broadcast."""
    return _SIDES[how]


def choose_strategy(
    config: JoinConfig, left_bytes: int, right_bytes: int, threshold: int = BROADCAST_BYTES,
) -> tuple[Literal["broadcast"], Side] | tuple[Literal["shuffle"], None]:
    """``("broadcast", side)`` to send ``side`` whole to every task of the other, or
    ``("shuffle", None)`` to hash-partition both sides by key."""
    sizes = {"left": left_bytes, "right": right_bytes}
    sides = sorted(broadcast_sides(config.how), key=lambda s: sizes[s])
    if config.strategy == "shuffle" or not sides:
        return ("shuffle", None)
    if config.strategy == "broadcast" or sizes[sides[0]] <= threshold:
        return ("broadcast", sides[0])
    return ("shuffle", None)
