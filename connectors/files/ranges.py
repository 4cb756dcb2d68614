"""Byte ranges of line-delimited files and row-group ranges of Parquet files: how a large
file becomes several partitions, and how a partition's bytes are read back."""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from raysight.connectors.files.config import MiB

BOM = codecs.BOM_UTF8


def part_label(relpath: str, index: int, count: int) -> str:
    return relpath if count == 1 else f"{relpath}[{index + 1}/{count}]"


def row_group_ranges(
    fs: AbstractFileSystem, path: str, target: int
) -> list[tuple[list[int], int]]:
    """Consecutive groups of a Parquet file's row groups of about ``target`` compressed bytes,
    each with its size."""
    with fs.open(path, "rb") as f:
        meta = pq.ParquetFile(f).metadata
    groups: list[tuple[list[int], int]] = []
    current: list[int] = []
    nbytes = 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
        if current and nbytes + size > target:
            groups.append((current, nbytes))
            current, nbytes = [], 0
        current.append(i)
        nbytes += size
    if current or not groups:
        groups.append((current, nbytes))
    return groups


def next_line_start(fs: AbstractFileSystem, path: str, position: int) -> int:
    """The first offset >= position where a line starts (the file size if there is none)."""
    with fs.open(path, "rb") as f:
        return scan_line_start(f, position)


def scan_line_start(f: BinaryIO, position: int) -> int:
    if position <= 0:
        return 0
    f.seek(position - 1)
    offset = position - 1
    chunk_size = 4096
    while True:
        chunk = f.read(chunk_size)
        if not chunk:
            return offset
        newline = chunk.find(b"\n")
        if newline >= 0:
            return offset + newline + 1
        offset += len(chunk)
        chunk_size = min(chunk_size * 2, MiB)


def line_ranges(
    fs: AbstractFileSystem, path: str, size: int, target: int, first_min: int
) -> list[tuple[int, int]]:
    """Split [0, size) into about size/target ranges that start and end at line starts."""
    count = math.ceil(size / target)
    cuts = [0]
    with fs.open(path, "rb") as f:
        for i in range(1, count):
            position = max(i * size // count, first_min)
            if position <= cuts[-1]:
                continue  # a long line already took us past this boundary
            cut = scan_line_start(f, position)
            if cut >= size:
                break
            cuts.append(cut)
    cuts.append(size)
    return list(zip(cuts, cuts[1:], strict=False))


def read_all(fs: AbstractFileSystem, path: str, opts: dict[str, Any]) -> bytes:
    """The partition's bytes: its byte range, or the whole (decompressed) file."""
    if "start" in opts:
        with fs.open(path, "rb") as f:
            f.seek(opts["start"])
            return f.read(opts["end"] - opts["start"])
    with fs.open(path, "rb", compression=opts.get("compression")) as f:
        return f.read()


@contextmanager
def opened(fs: AbstractFileSystem, path: str, opts: dict[str, Any]) -> Iterator[Any]:
    """A stream of the partition for pyarrow: in memory for a range, else the open file."""
    if "start" in opts:
        yield pa.BufferReader(read_all(fs, path, opts))
        return
    with fs.open(path, "rb", compression=opts.get("compression")) as f:
        yield f


def starts_with_ndjson_record(fs: AbstractFileSystem, path: str) -> bool:
    """Whether a .json file is line-delimited: its first line is a whole JSON object."""
    end = next_line_start(fs, path, 1)
    with fs.open(path, "rb") as f:
        first = f.read(min(end, 16 * MiB)).removeprefix(BOM).strip()
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False
