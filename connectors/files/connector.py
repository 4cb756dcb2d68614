"""The file connector: checks a source, plans its partitions and reads each into a table."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.utils import infer_compression

from raysight.connectors.files.config import CsvOptions, FileSourceConfig, Format
from raysight.connectors.files.delimited import (
    SNIFF_BYTES,
    ascii_compatible,
    csv_parser,
    delimiter_of,
    read_header,
    source_delimiter,
)
from raysight.connectors.files.errors import translated_errors
from raysight.connectors.files.formats import FORMATS, SchemaReader
from raysight.connectors.files.hive import (
    ARROW_TYPES,
    TYPE_NAMES,
    constant_stats,
    partition_columns,
    typed_values,
    with_partition_columns,
)
from raysight.connectors.files.listing import SourceFile, list_files, shown
from raysight.connectors.files.parquet import read_parquet
from raysight.connectors.files.parsing import parse_ndjson, parse_text, read_json_document
from raysight.connectors.files.pushdown import folder_may_match
from raysight.connectors.files.ranges import (
    line_ranges,
    part_label,
    read_all,
    row_group_ranges,
    starts_with_ndjson_record,
)
from raysight.errors import InputError
from raysight.plugins import Connector, PartitionSpec
from raysight.tables import unify

log = logging.getLogger(__name__)

_BLANK = "\ufeff \t\r\n"


class FileConnector(Connector[FileSourceConfig]):
    """Reads CSV, JSON, NDJSON, Parquet, Avro, Arrow IPC, ORC and Excel files into Arrow
    tables, one per partition (the binary formats but Parquet through :data:`.formats.FORMATS`).

    ``PartitionSpec.location`` is the file's full URL (``file:///abs/path.csv``), so a Ray
    worker anywhere can open it. ``PartitionSpec.options`` holds:

    * ``format``: one of :data:`~.config.Format` (always);
    * ``start``, ``end``: the byte range of a split CSV or NDJSON file, or of an Avro file's
      run of data blocks;
    * ``column_names``: the header of a split CSV file, on its partitions after the first;
    * ``delimiter``: the CSV delimiter of this file;
    * ``compression``: fsspec compression (``gzip``, ``bz2``...) of a compressed text file;
    * ``row_groups``: the row group indices of a split Parquet file;
    * ``batches``, ``stripes``: ``[lo, hi)`` record batches of an IPC file, stripes of ORC.
    """

    name = "file"
    Config = FileSourceConfig

    # -- driver ---------------------------------------------------------------------------

    def check(self) -> None:
        """Raise InputError when the path matches no readable file of the format, or only
        files without data: zero bytes, or a CSV without a header line. (An empty file among
        others of a folder reads as an empty table.)"""
        fs, files = list_files(self.config, self.filesystem)
        first = files[0]
        where = shown(fs, first.path)
        if all(f.size == 0 for f in files):
            what = where if len(files) == 1 else f"every file of {self.config.path}"
            raise InputError(f"{what} is empty (0 bytes): there is nothing to read",
                             path=where)
        text_file = len(files) == 1 and first.format in ("csv", "ndjson")
        with translated_errors(where, first.format):
            with fs.open(first.path, "rb", compression=infer_compression(first.path)) as f:
                head = f.read(SNIFF_BYTES if text_file else 1)
        if text_file and not head.decode(self._csv.encoding if first.format == "csv"
                                         else "utf-8", errors="replace").strip(_BLANK):
            needs = "its header line" if first.format == "csv" and self._csv.header \
                else "one record"
            raise InputError(f"{where} holds only blank lines: the file needs at least {needs}",
                             path=where)

    def estimated_bytes(self) -> int | None:
        """The files' total size on storage (compressed files count as stored)."""
        _, files = list_files(self.config, self.filesystem)
        return sum(f.size for f in files)

    # -- planning -------------------------------------------------------------------------

    def plan(self) -> list[PartitionSpec]:
        """One partition per file (in path order); a file over ``partition_bytes`` is split."""
        fs, files = list_files(self.config, self.filesystem)
        if self.config.excel is not None and files[0].format != "excel":
            raise InputError(f"`excel` options apply to Excel files; {self.config.path} holds "
                             f"{files[0].format} files", path=self.config.path)
        delimiter = source_delimiter(self._csv, fs, files, self.config.path)
        hive = self._hive_columns(files)
        partitions: list[PartitionSpec] = []
        skipped = 0
        for file in files:
            values = typed_values(file.relpath, hive, self.config.path)
            if not folder_may_match(self.hints.filters, values, hive):
                skipped += 1
                continue
            with translated_errors(shown(fs, file.path), file.format):
                planned = self._plan_file(fs, file, delimiter)
            partitions.extend(_with_hive(p, values, hive) for p in planned)
        if not partitions:  # the job keeps no row: read the first file's columns only
            first = self._plan_file(fs, files[0], delimiter)[0]
            values = typed_values(files[0].relpath, hive, self.config.path)
            partitions = [_with_hive(first, values, hive, empty=True)]
        log.debug("planned %d partitions for %s (%d files skipped by the job's filters)",
                  len(partitions), self.config.path, skipped)
        return partitions

    def _hive_columns(self, files: list[SourceFile]) -> dict[str, pa.DataType]:
        return partition_columns([f.relpath for f in files], self.config.hive,
                                 self.config.hive_types, self.config.path)

    def _plan_file(self, fs: AbstractFileSystem, file: SourceFile,
                   delimiter: str | None) -> list[PartitionSpec]:
        location = fs.unstrip_protocol(file.path)
        options: dict[str, Any] = {"format": file.format}
        if file.format in FORMATS:
            return self._plan_binary(fs, file, location, options)
        compression = infer_compression(file.path) if file.format != "parquet" else None
        if compression:
            options["compression"] = compression
        if file.format == "csv":
            options["delimiter"] = delimiter or delimiter_of(self._csv, file.path)
        whole = [PartitionSpec(file.relpath, location, file.size, options)]
        if not self.config.split_files or compression or file.size <= self.config.partition_bytes:
            return whole

        if file.format == "parquet":
            groups = row_group_ranges(fs, file.path, self.config.partition_bytes)
            return [
                PartitionSpec(
                    part_label(file.relpath, i, len(groups)),
                    location,
                    nbytes,
                    {**options, "row_groups": row_groups},
                )
                for i, (row_groups, nbytes) in enumerate(groups)
            ]

        first_min = 1
        header: list[str] | None = None
        if file.format == "json":
            if not starts_with_ndjson_record(fs, file.path):
                return whole  # an array of records (or pretty-printed objects): one piece
            options["format"] = "ndjson"
        elif file.format == "csv":
            if self._csv.newlines_in_values or not ascii_compatible(self._csv.encoding):
                return whole  # a b"\n" may not end a row (in quotes; in UTF-16/32)
            if self._csv.header:
                header, header_end = read_header(self._csv, fs, file.path, options["delimiter"])
                first_min = header_end + 1  # the first partition gets a data line, too
        ranges = line_ranges(fs, file.path, file.size, self.config.partition_bytes, first_min)
        return [
            PartitionSpec(
                part_label(file.relpath, i, len(ranges)),
                location,
                end - start,
                {**options, "start": start, "end": end}
                | ({"column_names": header} if header is not None and start > 0 else {}),
            )
            for i, (start, end) in enumerate(ranges)
        ]

    def _plan_binary(self, fs: AbstractFileSystem, file: SourceFile, location: str,
                     options: dict[str, Any]) -> list[PartitionSpec]:
        """An Avro, IPC, ORC or Excel file's pieces (:data:`.formats.FORMATS`) as partitions."""
        if infer_compression(file.path):
            where = shown(fs, file.path)
            raise InputError(f"{where} is compressed as a whole: {file.format} files are read "
                             "uncompressed (decompress it first)", path=where)
        target = self.config.partition_bytes if self.config.split_files else None
        pieces = FORMATS[file.format].pieces(fs, file.path, file.size, target)
        return [
            PartitionSpec(part_label(file.relpath, i, len(pieces)), location, piece.nbytes,
                          {**options, **piece.options})
            for i, piece in enumerate(pieces)
        ]

    # -- reading --------------------------------------------------------------------------

    def read(self, partition: PartitionSpec) -> pa.Table:
        """Parse one partition into an Arrow table (InputError for malformed input)."""
        return self.read_stats(partition)[0]

    def read_stats(self, partition: PartitionSpec
                   ) -> tuple[pa.Table, dict[str, dict[str, Any]] | None]:
        """The partition, with its column statistics from a Parquet file's footer."""
        opts = partition.options
        fs, path = self.filesystem(partition.location)
        where = shown(fs, path)
        hive = {k: ARROW_TYPES[t] for k, t in opts.get("hive_types", {}).items()}
        with translated_errors(where, opts["format"], partition.label, opts):
            table, stats = self._read_format(fs, path, opts, hive)
        if opts.get("empty"):
            table, stats = table.slice(0, 0), None
        if hive and (self.hints.columns is None or set(hive) & set(self.hints.columns)):
            table = with_partition_columns(table, opts["hive"], hive, where)
            stats = None if stats is None else {**stats, **constant_stats(
                opts["hive"], hive, table.num_rows)}
        return table, stats

    def _read_format(self, fs: AbstractFileSystem, path: str, opts: dict[str, Any],
                     hive: dict[str, pa.DataType]
                     ) -> tuple[pa.Table, dict[str, dict[str, Any]] | None]:
        fmt: Format = opts["format"]
        if fmt == "parquet":
            return read_parquet(fs, path, opts, self.hints, hive)
        if fmt in FORMATS:
            return FORMATS[fmt].read(fs, path, opts, self.config), None
        if fmt == "json":
            return read_json_document(read_all(fs, path, opts)), None
        if fmt == "ndjson":
            return parse_text(fs, path, opts, parse_ndjson), None
        return parse_text(fs, path, opts, csv_parser(self._csv, opts)), None

    def schema(self) -> pa.Schema | None:
        """A Parquet, Avro, Arrow IPC or ORC source's schema from its files' headers or
        footers (their schemas unified); None for text formats and Excel, whose types are
        known only once parsed."""
        fs, files = list_files(self.config, self.filesystem)
        read_schema = _schema_reader(files[0].format)  # a source's files share one format
        if read_schema is None:
            return None
        schemas = []
        for file in files:
            with translated_errors(shown(fs, file.path), file.format):
                schemas.append(read_schema(fs, file.path))
        hive = self._hive_columns(files)
        return pa.schema([*unify(schemas), *(pa.field(k, t) for k, t in hive.items())])

    def filesystem(self, url: str) -> tuple[AbstractFileSystem, str]:
        """The filesystem and path of ``url``. A subclass adds credentials or an endpoint
        (object storage); it runs where the files are opened (the driver or a Ray worker)."""
        return url_to_fs(url)

    @property
    def _csv(self) -> CsvOptions:
        return self.config.csv or CsvOptions()


def _with_hive(partition: PartitionSpec, values: dict[str, Any],
               columns: dict[str, pa.DataType], empty: bool = False) -> PartitionSpec:
    """The partition with its hive folder values (and types) in its options; ``empty``
    marks the one partition read for its columns when the job's filters keep no file."""
    extra: dict[str, Any] = {"empty": True} if empty else {}
    if columns:
        extra.update(hive=values, hive_types={k: TYPE_NAMES[t] for k, t in columns.items()})
    if not extra:
        return partition
    if empty and partition.options.get("format") == "parquet":
        extra["row_groups"] = []
    return dataclasses.replace(partition, options={**partition.options, **extra})


def _parquet_schema(fs: AbstractFileSystem, path: str) -> pa.Schema:
    with fs.open(path, "rb") as f:
        return pq.read_schema(f)


def _schema_reader(fmt: Format) -> SchemaReader | None:
    """How a file's schema is read without its data; None when only parsing tells."""
    if fmt == "parquet":
        return _parquet_schema
    return FORMATS[fmt].schema if fmt in FORMATS else None
