"""ORC files read with pyarrow, split by stripes.

A file larger than ``partition_bytes`` becomes runs of consecutive stripes, sized by count
(pyarrow exposes no stripe sizes). ORC timestamps are instants without a zone name: pyarrow
reads them as ``timestamp[ns, tz=UTC]``.

Example::

    >>> import fsspec, pyarrow as pa, pyarrow.orc as orc
    >>> fs = fsspec.filesystem("memory")
    >>> with fs.open("/doc/t.orc", "wb") as f:
    ...     orc.write_table(pa.table({"a": [1, 2]}), f)
    >>> read(fs, "/doc/t.orc", {}, None).column("a").to_pylist()
    [1, 2]
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.orc as pa_orc
from fsspec import AbstractFileSystem

from raysight.connectors.files.config import FileSourceConfig
from raysight.connectors.files.pieces import Piece, even_ranges, random_access, whole


def pieces(fs: AbstractFileSystem, path: str, size: int, target: int | None) -> list[Piece]:
    """Runs of consecutive stripes of about ``target`` bytes (the whole file when small)."""
    if target is None or size <= target:
        return whole(size)
    with random_access(fs, path) as source:
        count = pa_orc.ORCFile(source).nstripes
    runs = even_ranges(count, size, target)
    if len(runs) == 1:
        return whole(size)
    return [Piece({"stripes": [lo, hi]}, size * (hi - lo) // count) for lo, hi in runs]


def read(
    fs: AbstractFileSystem, path: str, opts: dict[str, Any], config: FileSourceConfig | None
) -> pa.Table:
    """The partition's stripes (the whole file without ``stripes``)."""
    with random_access(fs, path) as source:
        reader = pa_orc.ORCFile(source)
        if "stripes" not in opts:
            return reader.read()
        lo, hi = opts["stripes"]
        return pa.Table.from_batches([reader.read_stripe(i) for i in range(lo, hi)],
                                     schema=reader.schema)


def schema(fs: AbstractFileSystem, path: str) -> pa.Schema:
    """The schema of an ORC file, from its footer."""
    with random_access(fs, path) as source:
        return pa_orc.ORCFile(source).schema
