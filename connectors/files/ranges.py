"""Byte ranges of line-delimited files and row-group ranges of Parquet files: how a large
file becomes several partitions, and how a partition's bytes are read back."""

from __future__ import annotations

import codecs
import json
import math
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

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


@dataclass
class Source:
    """A partition's bytes for pyarrow, and whether they hold ``0x`` or ``0X`` (None when
    unknown: a stream read as it is parsed)."""

    stream: Any
    hex_prefix: bool | None = None


@contextmanager
def opened(fs: AbstractFileSystem, path: str, opts: dict[str, Any]) -> Iterator[Source]:
    """The partition for pyarrow: a local file's bytes memory-mapped (no copy), a range of
    another filesystem's file in memory, else the open (decompressing) stream."""
    compression = opts.get("compression")
    if isinstance(fs, LocalFileSystem) and not compression and os.path.getsize(path):
        mapped = pa.memory_map(path)  # pyarrow's map lives as long as a buffer of it does
        lo, hi = opts.get("start", 0), opts.get("end", mapped.size())
        mapped.seek(lo)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            hexed = any(mm.find(letter, lo, hi) != -1 and mm.find(prefix, lo, hi) != -1
                        for letter, prefix in _HEX_PREFIXES)
        yield Source(pa.BufferReader(mapped.read_buffer(hi - lo)), hexed)
        return
    if "start" in opts:
        data = read_all(fs, path, opts)
        yield Source(pa.BufferReader(data), has_hex_prefix(data))
        return
    with fs.open(path, "rb", compression=compression) as f:
        yield Source(f)


#: the letter of a hexadecimal prefix (found by memchr, which numeric text lacks), and it
_HEX_PREFIXES = ((b"x", b"0x"), (b"X", b"0X"))


def has_hex_prefix(data: bytes) -> bool:
    """Whether ``data`` holds ``0x`` or ``0X``: first a memchr for the letter (a few ms for
    64 MiB, where searching ``0x`` itself takes ten times that)."""
    return any(data.find(letter) != -1 and prefix in data for letter, prefix in _HEX_PREFIXES)


def starts_with_ndjson_record(fs: AbstractFileSystem, path: str) -> bool:
    """Whether a .json file is line-delimited: its first line is a whole JSON object."""
    end = next_line_start(fs, path, 1)
    with fs.open(path, "rb") as f:
        first = f.read(min(end, 16 * MiB)).removeprefix(BOM).strip()
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False
