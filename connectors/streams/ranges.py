"""The bounded range a stream read fixes in ``plan``: per partition, offsets [start, end).

Example::

    >>> spread({0: 100, 1: 2, 2: 100}, 10)
    {0: 4, 1: 2, 2: 4}
"""

from __future__ import annotations


def spread(available: dict[int, int], budget: int) -> dict[int, int]:
    """How many messages to read of each partition: at most ``available`` of each and
    ``budget`` in all, as evenly as the partitions allow (what a short partition leaves goes
    to the others; the remainder of an uneven split to the higher partition numbers)."""
    taken: dict[int, int] = {}
    left = budget
    pending = sorted(available, key=lambda p: (available[p], p))
    for i, partition in enumerate(pending):
        share = min(available[partition], left // (len(pending) - i))
        taken[partition] = share
        left -= share
    return {p: taken[p] for p in sorted(taken)}


def clamp(offset: int, low: int, high: int) -> int:
    """An offset within what a partition holds (a trimmed start moves to the oldest one)."""
    return max(low, min(offset, high))
