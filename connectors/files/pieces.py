"""Pieces of a binary file: which part of it one partition reads, and how to open it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem


@dataclass(frozen=True)
class Piece:
    """One partition of a file: the options that say which part, and its size in bytes."""

    options: dict[str, Any]
    nbytes: int


def whole(size: int) -> list[Piece]:
    return [Piece({}, size)]


def even_ranges(count: int, size: int, target: int | None) -> list[tuple[int, int]]:
    """``count`` units (record batches, stripes) of a ``size``-byte file as consecutive
    ``[lo, hi)`` runs of about ``target`` bytes, assuming units of about equal size (their
    sizes are not in the footers pyarrow exposes)."""
    if target is None or size <= target or count <= 1:
        return [(0, count)]
    parts = min(count, math.ceil(size / target))
    cuts = [i * count // parts for i in range(parts + 1)]
    return list(zip(cuts, cuts[1:], strict=False))


@contextmanager
def random_access(fs: AbstractFileSystem, path: str) -> Iterator[Any]:
    """A seekable source for pyarrow: a memory map for a local file (its record batches are
    then read without a copy), else the fsspec file. Closing it leaves the tables read from
    it intact (a memory map stays mapped while buffers point into it)."""
    source = pa.memory_map(path) if isinstance(fs, LocalFileSystem) else fs.open(path, "rb")
    try:
        yield source
    finally:
        source.close()
