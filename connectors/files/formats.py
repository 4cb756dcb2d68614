"""The binary formats besides Parquet (Avro, Arrow IPC, ORC, Excel): a dispatch table of how a
file of each is split into pieces, read and described, so the connector holds one hook per
step instead of a branch per format.

Example::

    >>> from raysight.connectors.files.formats import FORMATS
    >>> sorted(FORMATS)
    ['avro', 'excel', 'ipc', 'orc']
    >>> FORMATS["excel"].schema is None  # Excel cells have types only once read
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from fsspec import AbstractFileSystem

from raysight.connectors.files import avro, excel, ipc, orc
from raysight.connectors.files.config import FileSourceConfig, Format
from raysight.connectors.files.pieces import Piece

#: (fs, path, file size, target bytes per piece or None for one piece) -> the file's pieces
Planner = Callable[[AbstractFileSystem, str, int, int | None], list[Piece]]
#: (fs, path, the partition's options, the source's settings) -> the piece's table
Reader = Callable[[AbstractFileSystem, str, dict[str, Any], FileSourceConfig], pa.Table]
#: (fs, path) -> the file's schema, from its header or footer only
SchemaReader = Callable[[AbstractFileSystem, str], pa.Schema]


@dataclass(frozen=True)
class FileFormat:
    pieces: Planner
    read: Reader
    #: None when the types are known only once the data is parsed
    schema: SchemaReader | None


#: format -> how its files are planned, read and described
FORMATS: dict[Format, FileFormat] = {
    "avro": FileFormat(avro.pieces, avro.read, avro.schema),
    "ipc": FileFormat(ipc.pieces, ipc.read, ipc.schema),
    "orc": FileFormat(orc.pieces, orc.read, orc.schema),
    "excel": FileFormat(excel.pieces, excel.read, None),
}
