"""Files on any fsspec filesystem (CSV, JSON, NDJSON, Parquet) read into Arrow tables.

A source is one file, a folder or a glob, on a local disk or behind any fsspec URL
(``file://``, ``memory://``, ``s3://`` ...). :meth:`FileConnector.plan` lists the files in path
order and makes one partition per file; a file larger than ``partition_bytes`` is split:

* CSV and NDJSON into byte ranges whose ends are line starts, so a partition holds whole lines
  (the lines that *start* inside its range). Partitions after the first of a CSV file with a
  header get the column names, read once in ``plan``, in ``PartitionSpec.options``.
  **Limitation:** this assumes no newline inside a quoted CSV field. For such files set
  ``csv: {newlines_in_values: true}``: they are then parsed accordingly and never split.
* Parquet into consecutive groups of row groups of about ``partition_bytes`` (compressed).

Compressed text files (``.csv.gz`` ...) and JSON documents that are an array of records are
never split. Each partition is parsed by pyarrow with its own type inference, so one partition
may see ``int64`` where another sees ``double``, and a column that is empty in a partition gets
type ``null``: combining partitions needs schema unification (by column name).

Example::

    >>> from raysight.connectors.files import FileConnector, FileSourceConfig
    >>> conn = FileConnector(FileSourceConfig(path="examples/data/sales_parts"))
    >>> conn.check()
    >>> [p.label for p in conn.plan()]
    ['part-000.csv', 'part-001.csv', 'part-002.csv', 'part-003.csv']
    >>> table = conn.read(conn.plan()[0])
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import logging
import math
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import has_magic, url_to_fs
from fsspec.utils import infer_compression
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from raysight.errors import InputError, PermissionDenied, TransientError
from raysight.plugins import Connector, PartitionSpec, PluginConfig

log = logging.getLogger(__name__)

MiB = 1 << 20

Format = Literal["csv", "json", "ndjson", "parquet"]

#: file name extension -> format, used when ``format`` is not given
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_DEFAULT_NULLS = ["", "NA", "N/A", "null", "NULL"]
_BOM = codecs.BOM_UTF8
_BLANK = "\ufeff \t\r\n"


class CsvOptions(BaseModel):
    """How CSV text is parsed (the defaults read what Polars and pandas write)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: one character; None means a tab for ``.tsv`` files, otherwise the one of ``,`` ``;``
    #: tab ``|`` that splits the first lines of the source's first file alike (else ``,``)
    delimiter: str | None = None
    #: the first line holds the column names; without it columns are named f0, f1, ...
    header: bool = True
    #: one character, or None when fields are never quoted
    quote_char: str | None = '"'
    #: field values read as null (also in string columns, and also when quoted)
    null_values: list[str] = Field(default_factory=lambda: list(_DEFAULT_NULLS))
    encoding: str = "utf-8"
    #: quoted fields may hold line breaks (slower to parse; such files are never split)
    newlines_in_values: bool = False

    @field_validator("delimiter", "quote_char")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be exactly one character, got {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value


class FileSourceConfig(PluginConfig):
    """A file, a folder or a glob of CSV, JSON, NDJSON or Parquet files.

    ``format`` None takes the format from the file extension (.csv/.tsv/.txt -> csv,
    .json -> json, .jsonl/.ndjson -> ndjson, .parquet/.pq -> parquet; a folder from the
    extensions of its files). A folder skips files whose name starts with ``.`` or ``_``
    (``_SUCCESS``, ``.crc``); with ``recursive`` it includes subfolders (a glob says so
    itself, with ``**``). A relative local path is resolved where ``check``/``plan`` run.
    """

    type: Literal["file"] = "file"
    path: str = Field(min_length=1)
    format: Format | None = None
    csv: CsvOptions | None = None
    #: target bytes per partition; a larger file is split (see ``split_files``)
    partition_bytes: int = Field(default=64 * MiB, gt=0)
    #: split files larger than ``partition_bytes``; turn off for CSV with newlines in quotes
    split_files: bool = True
    recursive: bool = False

    @model_validator(mode="after")
    def _csv_options_need_csv(self) -> FileSourceConfig:
        if self.csv is not None and self.format not in (None, "csv"):
            raise ValueError(f"`csv` options apply to format csv, not {self.format}")
        return self


@dataclass(frozen=True)
class _File:
    path: str  # as the filesystem names it (no protocol)
    size: int
    relpath: str  # relative to the source folder or glob root: the partition label
    format: Format


class FileConnector(Connector[FileSourceConfig]):
    """Reads CSV, JSON, NDJSON and Parquet files into Arrow tables, one per partition.

    ``PartitionSpec.location`` is the file's full URL (``file:///abs/path.csv``), so a Ray
    worker anywhere can open it. ``PartitionSpec.options`` holds:

    * ``format``: ``csv``, ``json``, ``ndjson`` or ``parquet`` (always);
    * ``start``, ``end``: the byte range of a split CSV or NDJSON file;
    * ``column_names``: the header of a split CSV file, on its partitions after the first;
    * ``delimiter``: the CSV delimiter of this file;
    * ``compression``: fsspec compression (``gzip``, ``bz2``...) of a compressed text file;
    * ``row_groups``: the row group indices of a split Parquet file.
    """

    name = "file"
    Config = FileSourceConfig

    # -- driver ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise InputError when the path matches no readable file of the format, or only
        files without data: zero bytes, or a CSV without a header line. (An empty file among
        others of a folder reads as an empty table.)"""
        fs, files = self._files()
        first = files[0]
        shown = _shown(fs, first.path)
        if all(f.size == 0 for f in files):
            where = shown if len(files) == 1 else f"every file of {self.config.path}"
            raise InputError(f"{where} is empty (0 bytes): there is nothing to read",
                             path=shown)
        text_file = len(files) == 1 and first.format in ("csv", "ndjson")
        with _translated_errors(shown, first.format):
            with fs.open(first.path, "rb", compression=infer_compression(first.path)) as f:
                head = f.read(SNIFF_BYTES if text_file else 1)
        if text_file and not head.decode(self._csv.encoding if first.format == "csv"
                                         else "utf-8", errors="replace").strip(_BLANK):
            needs = "its header line" if first.format == "csv" and self._csv.header \
                else "one record"
            raise InputError(f"{shown} holds only blank lines: the file needs at least {needs}",
                             path=shown)

    # -- planning -------------------------------------------------------------------------

    def plan(self) -> list[PartitionSpec]:
        """One partition per file (in path order); a file over ``partition_bytes`` is split."""
        fs, files = self._files()
        delimiter = self._source_delimiter(fs, files)
        partitions: list[PartitionSpec] = []
        for file in files:
            with _translated_errors(_shown(fs, file.path), file.format):
                partitions.extend(self._plan_file(fs, file, delimiter))
        log.debug("planned %d partitions for %s", len(partitions), self.config.path)
        return partitions

    def _plan_file(self, fs: AbstractFileSystem, file: _File,
                   delimiter: str | None) -> list[PartitionSpec]:
        location = fs.unstrip_protocol(file.path)
        options: dict[str, Any] = {"format": file.format}
        compression = infer_compression(file.path) if file.format != "parquet" else None
        if compression:
            options["compression"] = compression
        if file.format == "csv":
            options["delimiter"] = delimiter or self._delimiter(file.path)
        whole = [PartitionSpec(file.relpath, location, file.size, options)]
        if not self.config.split_files or compression or file.size <= self.config.partition_bytes:
            return whole

        if file.format == "parquet":
            groups = self._row_group_ranges(fs, file)
            return [
                PartitionSpec(
                    _part_label(file.relpath, i, len(groups)),
                    location,
                    nbytes,
                    {**options, "row_groups": row_groups},
                )
                for i, (row_groups, nbytes) in enumerate(groups)
            ]

        first_min = 1
        header: list[str] | None = None
        if file.format == "json":
            if not _starts_with_ndjson_record(fs, file.path):
                return whole  # an array of records (or pretty-printed objects): one piece
            options["format"] = "ndjson"
        elif file.format == "csv":
            if self._csv.newlines_in_values or not _ascii_compatible(self._csv.encoding):
                return whole  # a b"\n" may not end a row (in quotes; in UTF-16/32)
            if self._csv.header:
                header, header_end = self._read_header(fs, file.path, options["delimiter"])
                first_min = header_end + 1  # the first partition gets a data line, too
        ranges = _line_ranges(fs, file.path, file.size, self.config.partition_bytes, first_min)
        return [
            PartitionSpec(
                _part_label(file.relpath, i, len(ranges)),
                location,
                end - start,
                {**options, "start": start, "end": end}
                | ({"column_names": header} if header is not None and start > 0 else {}),
            )
            for i, (start, end) in enumerate(ranges)
        ]

    def _row_group_ranges(self, fs: AbstractFileSystem, file: _File) -> list[tuple[list[int], int]]:
        with fs.open(file.path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        groups: list[tuple[list[int], int]] = []
        current: list[int] = []
        nbytes = 0
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            size = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
            if current and nbytes + size > self.config.partition_bytes:
                groups.append((current, nbytes))
                current, nbytes = [], 0
            current.append(i)
            nbytes += size
        if current or not groups:
            groups.append((current, nbytes))
        return groups

    def _read_header(
        self, fs: AbstractFileSystem, path: str, delimiter: str
    ) -> tuple[list[str], int]:
        """Return the column names of a CSV file and the byte offset where its data starts."""
        header_end = _next_line_start(fs, path, 1)
        with fs.open(path, "rb") as f:
            first_line = f.read(header_end)
        table = pa_csv.read_csv(
            pa.BufferReader(first_line),
            read_options=pa_csv.ReadOptions(encoding=self._csv.encoding),
            parse_options=self._parse_options(delimiter),
        )
        return table.column_names, header_end

    # -- listing --------------------------------------------------------------------------

    def _files(self) -> tuple[AbstractFileSystem, list[_File]]:
        """List the source's files in path order, each with its format; raise if none."""
        user_path = self.config.path
        with _translated_errors(user_path, self.config.format or "file"):
            fs, root = url_to_fs(user_path)
            root = root.rstrip("/") or root
            if fs.isfile(root):
                infos = [fs.info(root)]
                base, is_folder = posixpath.dirname(root), False
            elif fs.isdir(root):
                depth = None if self.config.recursive else 1
                found = fs.find(root, maxdepth=depth, withdirs=False, detail=True)
                infos = [i for i in found.values() if not _hidden(_relative(i["name"], root))]
                base, is_folder = root, True
                if not infos:
                    raise InputError(f"source folder has no files: {user_path}", path=user_path)
            elif has_magic(root):
                found = fs.glob(root, detail=True)
                infos = [i for i in found.values() if i.get("type") == "file"]
                base, is_folder = _glob_base(root), False
                if not infos:
                    raise InputError(f"no files match {user_path}", path=user_path)
            else:
                raise InputError(f"source file not found: {user_path}", path=user_path)
        infos.sort(key=lambda i: i["name"])
        named = [(i["name"], int(i.get("size") or 0)) for i in infos]
        fmt = self._resolve_format([n for n, _ in named], is_folder)
        if is_folder:
            # a folder keeps the files named for the format, else those without an extension
            # (part-00000), when the format was given
            matching = [(n, s) for n, s in named if _format_of(n) == fmt]
            if not matching and self.config.format is not None:
                matching = [(n, s) for n, s in named if "." not in posixpath.basename(n)]
            if not matching:
                raise InputError(
                    f"source folder has no {fmt} files: {self.config.path}", path=self.config.path
                )
            named = matching
        files = [_File(n, s, _relative(n, base), fmt) for n, s in named]
        return fs, files

    def _resolve_format(self, names: list[str], is_folder: bool) -> Format:
        if self.config.format is not None:
            return self.config.format
        path = self.config.path
        hint = "set `format` (csv, json, ndjson or parquet)"
        formats = {_format_of(n) for n in names}
        if is_folder:
            formats.discard(None)
            if not formats:
                raise InputError(
                    f"source folder has no .csv, .json, .ndjson or .parquet files: {path}; {hint}",
                    path=path,
                )
        if None in formats:
            unknown = next(n for n in names if _format_of(n) is None)
            raise InputError(
                f"cannot tell the format of {posixpath.basename(unknown)} from its extension; "
                f"{hint}",
                path=path,
            )
        if len(formats) > 1:
            raise InputError(
                f"{path} mixes formats ({', '.join(sorted(f for f in formats if f))}); {hint}",
                path=path,
            )
        (fmt,) = formats
        assert fmt is not None
        return fmt

    # -- reading --------------------------------------------------------------------------

    def read(self, partition: PartitionSpec) -> pa.Table:
        """Parse one partition into an Arrow table (InputError for malformed input)."""
        opts = partition.options
        fmt: Format = opts["format"]
        fs, path = url_to_fs(partition.location)
        with _translated_errors(_shown(fs, path), fmt, partition.label, opts):
            if fmt == "parquet":
                with fs.open(path, "rb") as f:
                    pfile = pq.ParquetFile(f)
                    if "row_groups" in opts:
                        return pfile.read_row_groups(opts["row_groups"])
                    return pfile.read()
            if fmt == "json":
                return _read_json_document(_read_all(fs, path, opts))
            if fmt == "ndjson":
                return _parse_text(fs, path, opts, _parse_ndjson)
            return _parse_text(fs, path, opts, self._csv_parser(opts))

    def _csv_parser(self, opts: dict[str, Any]) -> _Parser:
        csv = self._csv
        names = opts.get("column_names")
        read_kwargs: dict[str, Any] = {"encoding": csv.encoding}
        if names is not None:
            read_kwargs["column_names"] = names
        elif not csv.header:
            read_kwargs["autogenerate_column_names"] = True
        parse_options = self._parse_options(opts.get("delimiter") or ",")
        convert_options = pa_csv.ConvertOptions(
            null_values=csv.null_values, strings_can_be_null=True
        )

        def parse(source: Any, block_size: int | None, use_threads: bool) -> pa.Table:
            read_options = pa_csv.ReadOptions(
                use_threads=use_threads, block_size=block_size, **read_kwargs
            )
            return pa_csv.read_csv(
                source,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )

        return parse

    def _parse_options(self, delimiter: str) -> pa_csv.ParseOptions:
        quote = self._csv.quote_char
        return pa_csv.ParseOptions(
            delimiter=delimiter,
            quote_char=quote if quote else False,
            newlines_in_values=self._csv.newlines_in_values,
        )

    def _delimiter(self, path: str) -> str:
        if self._csv.delimiter is not None:
            return self._csv.delimiter
        name = path[: -len(path.rsplit(".", 1)[-1]) - 1] if infer_compression(path) else path
        return "\t" if name.lower().endswith(".tsv") else ","

    def _source_delimiter(self, fs: AbstractFileSystem, files: list[_File]) -> str | None:
        """The delimiter of a CSV source whose spec gives none and whose files are not
        ``.tsv``: sniffed once, from the first lines of its first file, for all its files."""
        first = files[0]
        if first.format != "csv" or self._csv.delimiter is not None \
                or self._delimiter(first.path) != ",":
            return None
        with _translated_errors(_shown(fs, first.path), "csv"):
            with fs.open(first.path, "rb", compression=infer_compression(first.path)) as f:
                sample = f.read(SNIFF_BYTES)
        delimiter = sniff_delimiter(sample.decode(self._csv.encoding, errors="replace"),
                                    self._csv.quote_char, whole=len(sample) < SNIFF_BYTES)
        if delimiter != ",":
            log.info("%s: sniffed the CSV delimiter %r (set csv.delimiter to choose one)",
                     self.config.path, delimiter)
        return delimiter

    @property
    def _csv(self) -> CsvOptions:
        return self.config.csv or CsvOptions()


# ---------------------------------------------------------------------------------------------
# Helpers: the CSV delimiter

#: bytes of a CSV file read to tell its delimiter
SNIFF_BYTES = 64 * 1024
#: delimiters tried when a spec gives none, in order of preference on a tie
DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(sample: str, quote_char: str | None = '"', whole: bool = False) -> str:
    """The delimiter that splits the first lines of ``sample`` into the most fields, the same
    number on every line (a comma when none does better).

    Quoted fields are read as such, so a ``;`` inside quotes does not count. ``whole`` says the
    sample is the whole file; otherwise its last, possibly cut, line is left out.

    >>> sniff_delimiter("a;b;c\n1;2,5;3\n")
    ';'
    """
    lines = sample.lstrip("\ufeff").splitlines()
    if not whole and len(lines) > 1:
        lines = lines[:-1]
    lines = [line for line in lines if line.strip()][:50]
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        reader = csv.reader(lines, delimiter=delimiter, quotechar=quote_char or '"',
                            quoting=csv.QUOTE_MINIMAL if quote_char else csv.QUOTE_NONE)
        try:
            counts = {len(row) for row in reader}
        except csv.Error:
            continue
        if len(counts) == 1 and (fields := counts.pop()) > best_fields:
            best, best_fields = delimiter, fields
    return best


# ---------------------------------------------------------------------------------------------
# Helpers: names and errors


def _format_of(name: str) -> Format | None:
    """The format a file name's extension implies (a compression suffix is looked through)."""
    lower = posixpath.basename(name).lower()
    if infer_compression(lower):
        lower = lower.rsplit(".", 1)[0]
    _, ext = posixpath.splitext(lower)
    return EXTENSIONS.get(ext)


def _hidden(relpath: str) -> bool:
    return any(part.startswith((".", "_")) for part in relpath.split("/"))


def _relative(name: str, base: str) -> str:
    prefix = base.rstrip("/") + "/"
    return name[len(prefix) :] if name.startswith(prefix) else posixpath.basename(name)


def _glob_base(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: the root of partition labels."""
    return "/".join(itertools.takewhile(lambda part: not has_magic(part), pattern.split("/")))


def _part_label(relpath: str, index: int, count: int) -> str:
    return relpath if count == 1 else f"{relpath}[{index + 1}/{count}]"


def _shown(fs: AbstractFileSystem, path: str) -> str:
    """A path for messages: a local path as is, anything else as its URL."""
    url = fs.unstrip_protocol(path)
    return url.removeprefix("file://")


def _ascii_compatible(encoding: str) -> bool:
    return "\n,a".encode(encoding, errors="replace") == b"\n,a"


class _Malformed(ValueError):
    """Input that parsed but cannot be a table (a JSON array of numbers)."""


_FORMAT_NAMES = {"csv": "CSV", "json": "JSON", "ndjson": "NDJSON", "parquet": "Parquet"}


@contextmanager
def _translated_errors(
    shown: str, fmt: str, label: str | None = None, opts: dict[str, Any] | None = None
) -> Iterator[None]:
    """Turn filesystem and parser errors into raysight errors that name the file."""
    details: dict[str, Any] = {"path": shown}
    if label is not None:
        details["partition"] = label
    where = shown
    if opts and "start" in opts:
        details.update(start=opts["start"], end=opts["end"])
        where = f"{shown} (bytes {opts['start']}-{opts['end']})"
    what = _FORMAT_NAMES.get(fmt, fmt)
    try:
        yield
    except (InputError, PermissionDenied, TransientError):
        raise
    except FileNotFoundError as exc:
        raise InputError(f"source file not found: {shown}", **details) from exc
    except PermissionError as exc:
        raise PermissionDenied(f"permission denied: {shown}", **details) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise TransientError(f"cannot reach {shown}: {exc}", **details) from exc
    except IsADirectoryError as exc:
        raise InputError(f"expected a file, found a folder: {shown}", **details) from exc
    except (pa.ArrowException, UnicodeError, _Malformed) as exc:
        raise InputError(f"malformed {what} in {where}: {_clean(exc)}", **details) from exc
    except OSError as exc:
        if fmt != "parquet":
            raise
        # pyarrow reports a truncated footer as OSError ("Couldn't deserialize thrift")
        raise InputError(f"malformed {what} in {where}: {_clean(exc)}", **details) from exc


def _clean(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("CSV parse error: ", "JSON parse error: "):
        text = text.removeprefix(prefix)
    return text.replace("/rows/[]", "")


# ---------------------------------------------------------------------------------------------
# Helpers: bytes and line ranges


def _next_line_start(fs: AbstractFileSystem, path: str, position: int) -> int:
    """The first offset >= position where a line starts (the file size if there is none)."""
    with fs.open(path, "rb") as f:
        return _scan_line_start(f, position)


def _scan_line_start(f: BinaryIO, position: int) -> int:
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


def _line_ranges(
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
            cut = _scan_line_start(f, position)
            if cut >= size:
                break
            cuts.append(cut)
    cuts.append(size)
    return list(zip(cuts, cuts[1:], strict=False))


def _read_all(fs: AbstractFileSystem, path: str, opts: dict[str, Any]) -> bytes:
    """The partition's bytes: its byte range, or the whole (decompressed) file."""
    if "start" in opts:
        with fs.open(path, "rb") as f:
            f.seek(opts["start"])
            return f.read(opts["end"] - opts["start"])
    with fs.open(path, "rb", compression=opts.get("compression")) as f:
        return f.read()


@contextmanager
def _opened(fs: AbstractFileSystem, path: str, opts: dict[str, Any]) -> Iterator[Any]:
    """A stream of the partition for pyarrow: in memory for a range, else the open file."""
    if "start" in opts:
        yield pa.BufferReader(_read_all(fs, path, opts))
        return
    with fs.open(path, "rb", compression=opts.get("compression")) as f:
        yield f


def _starts_with_ndjson_record(fs: AbstractFileSystem, path: str) -> bool:
    """Whether a .json file is line-delimited: its first line is a whole JSON object."""
    end = _next_line_start(fs, path, 1)
    with fs.open(path, "rb") as f:
        first = f.read(min(end, 16 * MiB)).removeprefix(_BOM).strip()
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Helpers: parsing

_Parser = Callable[[Any, int | None, bool], pa.Table]
_EMPTY = ("Empty CSV file", "CSV parse error: Empty CSV file", "Empty JSON file")


def _parse_text(
    fs: AbstractFileSystem, path: str, opts: dict[str, Any], parse: _Parser
) -> pa.Table:
    """Parse CSV or NDJSON with pyarrow; on an error, parse again for a better one."""
    try:
        with _opened(fs, path, opts) as source:
            return parse(source, None, True)
    except pa.ArrowInvalid as exc:
        if str(exc).startswith(_EMPTY):  # a file with no lines, e.g. an empty part file
            return pa.table({})
        if "straddling" not in str(exc):
            # pyarrow names the row ("Row #12: ...") only when it parses on one thread
            with _opened(fs, path, opts) as source:
                return parse(source, None, False)
    # a record longer than pyarrow's block (1 MiB): parse the partition as one block
    data = _read_all(fs, path, opts)
    return parse(pa.BufferReader(data), len(data) + 1, True)


def _parse_ndjson(source: Any, block_size: int | None, use_threads: bool) -> pa.Table:
    return pa_json.read_json(
        source, read_options=pa_json.ReadOptions(use_threads=use_threads, block_size=block_size)
    )


def _read_json_document(data: bytes) -> pa.Table:
    """A JSON array of records as a table, else JSON objects one after another (NDJSON)."""
    data = data.removeprefix(_BOM)
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
        raise _Malformed(f"a JSON array must hold objects (records), not {items.type}")
    return pa.Table.from_struct_array(items)
