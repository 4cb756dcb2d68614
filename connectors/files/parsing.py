"""A partition's bytes parsed into an Arrow table: CSV and NDJSON with pyarrow's streaming
readers, JSON documents (an array of records, or objects one after another) whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json
from fsspec import AbstractFileSystem

from raysight.connectors.files.errors import Malformed
from raysight.connectors.files.ranges import BOM, Source, has_hex_prefix, opened, read_all

#: parses a source (a stream or buffer) with a block size (None: pyarrow's) and threads or not
Parser = Callable[[Source, int | None, bool], pa.Table]
_EMPTY = ("Empty CSV file", "CSV parse error: Empty CSV file", "Empty JSON file")


def parse_text(
    fs: AbstractFileSystem, path: str, opts: dict[str, Any], parse: Parser
) -> pa.Table:
    """Parse CSV or NDJSON with pyarrow; on an error, parse again for a better one."""
    try:
        with opened(fs, path, opts) as source:
            return parse(source, None, True)
    except pa.ArrowInvalid as exc:
        if str(exc).startswith(_EMPTY):  # a file with no lines, e.g. an empty part file
            return pa.table({})
        if "straddling" not in str(exc):
            # pyarrow names the row ("Row #12: ...") only when it parses on one thread
            with opened(fs, path, opts) as source:
                return parse(source, None, False)
    # a record longer than pyarrow's block (1 MiB): parse the partition as one block
    data = read_all(fs, path, opts)
    return parse(Source(pa.BufferReader(data), has_hex_prefix(data)), len(data) + 1, True)


def parse_ndjson(source: Source, block_size: int | None, use_threads: bool) -> pa.Table:
    options = pa_json.ReadOptions(use_threads=use_threads, block_size=block_size)
    return pa_json.read_json(source.stream, read_options=options)


def read_json_document(data: bytes) -> pa.Table:
    """A JSON array of records as a table, else JSON objects one after another (NDJSON)."""
    data = data.removeprefix(BOM)
    text = data.lstrip()
    if not text:
        return pa.table({})
    options = pa_json.ParseOptions(newlines_in_values=True)
    if not text.startswith(b"["):
        return pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(block_size=len(data) + 1),
            parse_options=options,
        )
    # pyarrow reads only objects: wrap the array as one, so inference is the NDJSON one
    wrapped = b'{"rows":' + text + b"}"
    table = pa_json.read_json(
        pa.BufferReader(wrapped),
        read_options=pa_json.ReadOptions(block_size=len(wrapped) + 1),
        parse_options=options,
    )
    rows = table.column("rows").combine_chunks()
    items = rows.flatten()
    if pa.types.is_null(items.type):  # []
        return pa.table({})
    if not pa.types.is_struct(items.type):
        raise Malformed(f"a JSON array must hold objects (records), not {items.type}")
    return pa.Table.from_struct_array(items)
