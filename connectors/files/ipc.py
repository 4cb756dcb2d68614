"""Arrow IPC files (``.arrow``, ``.feather`` v2, ``.ipc``) and streams read into tables.

The random-access *file* format (it starts with ``ARROW1``) is split by record batches: a
file larger than ``partition_bytes`` becomes runs of consecutive batches, sized by count
(the footer pyarrow exposes has no batch sizes). The *stream* format can only be read from
its start, so a stream is one partition whatever its size. Local files are memory-mapped:
their batches are read without a copy (compressed buffers are still decompressed).

Example::

    >>> import fsspec, pyarrow as pa, pyarrow.feather as feather
    >>> fs = fsspec.filesystem("memory")
    >>> with fs.open("/doc/t.arrow", "wb") as f:
    ...     feather.write_feather(pa.table({"a": [1, 2]}), f)
    >>> read(fs, "/doc/t.arrow", {}, None).column("a").to_pylist()
    [1, 2]
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
from fsspec import AbstractFileSystem

from raysight.connectors.files.config import FileSourceConfig
from raysight.connectors.files.pieces import Piece, even_ranges, random_access, whole

_FILE_MAGIC = b"ARROW1"


def pieces(fs: AbstractFileSystem, path: str, size: int, target: int | None) -> list[Piece]:
    """Runs of consecutive record batches of about ``target`` bytes (a stream: one piece)."""
    if target is None or size <= target:
        return whole(size)
    with random_access(fs, path) as source:
        if not _is_file_format(source):
            return whole(size)
        count = ipc.open_file(source).num_record_batches
    runs = even_ranges(count, size, target)
    if len(runs) == 1:
        return whole(size)
    return [Piece({"batches": [lo, hi]}, size * (hi - lo) // count) for lo, hi in runs]


def read(
    fs: AbstractFileSystem, path: str, opts: dict[str, Any], config: FileSourceConfig | None
) -> pa.Table:
    """The partition's record batches (the whole file or stream without ``batches``)."""
    with random_access(fs, path) as source:
        if not _is_file_format(source):
            return ipc.open_stream(source).read_all()
        reader = ipc.open_file(source)
        if "batches" not in opts:
            return reader.read_all()
        lo, hi = opts["batches"]
        return pa.Table.from_batches([reader.get_batch(i) for i in range(lo, hi)],
                                     schema=reader.schema)


def schema(fs: AbstractFileSystem, path: str) -> pa.Schema:
    """The schema of an IPC file (from its footer) or stream (from its first message)."""
    with random_access(fs, path) as source:
        if _is_file_format(source):
            return ipc.open_file(source).schema
        return ipc.open_stream(source).schema


def _is_file_format(source: Any) -> bool:
    head = source.read(len(_FILE_MAGIC))
    source.seek(0)
    return bool(head == _FILE_MAGIC)
