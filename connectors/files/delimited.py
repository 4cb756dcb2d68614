"""The CSV dialect of a file: its delimiter (given, implied by ``.tsv`` or sniffed), its header
and the pyarrow options that parse it."""

from __future__ import annotations

import csv
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from fsspec import AbstractFileSystem
from fsspec.utils import infer_compression

from raysight.connectors.files.config import CsvOptions
from raysight.connectors.files.errors import translated_errors
from raysight.connectors.files.listing import SourceFile, shown
from raysight.connectors.files.parsing import Parser
from raysight.connectors.files.ranges import Source, has_hex_prefix, next_line_start

log = logging.getLogger(__name__)

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


def ascii_compatible(encoding: str) -> bool:
    """Whether ``b"\\n"`` ends a line in this encoding (not in UTF-16/32)."""
    return "\n,a".encode(encoding, errors="replace") == b"\n,a"


def delimiter_of(options: CsvOptions, path: str) -> str:
    """The delimiter the spec gives, else a tab for a ``.tsv`` file, else a comma."""
    if options.delimiter is not None:
        return options.delimiter
    name = path[: -len(path.rsplit(".", 1)[-1]) - 1] if infer_compression(path) else path
    return "\t" if name.lower().endswith(".tsv") else ","


def source_delimiter(
    options: CsvOptions, fs: AbstractFileSystem, files: list[SourceFile], source: str
) -> str | None:
    """The delimiter of a CSV source whose spec gives none and whose files are not
    ``.tsv``: sniffed once, from the first lines of its first file, for all its files."""
    first = files[0]
    if first.format != "csv" or options.delimiter is not None \
            or delimiter_of(options, first.path) != ",":
        return None
    with translated_errors(shown(fs, first.path), "csv"):
        with fs.open(first.path, "rb", compression=infer_compression(first.path)) as f:
            sample = f.read(SNIFF_BYTES)
    delimiter = sniff_delimiter(sample.decode(options.encoding, errors="replace"),
                                options.quote_char, whole=len(sample) < SNIFF_BYTES)
    if delimiter != ",":
        log.info("%s: sniffed the CSV delimiter %r (set csv.delimiter to choose one)",
                 source, delimiter)
    return delimiter


def parse_options(options: CsvOptions, delimiter: str) -> pa_csv.ParseOptions:
    quote = options.quote_char
    return pa_csv.ParseOptions(
        delimiter=delimiter,
        quote_char=quote if quote else False,
        newlines_in_values=options.newlines_in_values,
    )


def read_header(
    options: CsvOptions, fs: AbstractFileSystem, path: str, delimiter: str
) -> tuple[list[str], int]:
    """Return the column names of a CSV file and the byte offset where its data starts."""
    header_end = next_line_start(fs, path, 1)
    with fs.open(path, "rb") as f:
        first_line = f.read(header_end)
    table = pa_csv.read_csv(
        pa.BufferReader(first_line),
        read_options=pa_csv.ReadOptions(encoding=options.encoding),
        parse_options=parse_options(options, delimiter),
    )
    return table.column_names, header_end


def csv_parser(options: CsvOptions, partition_options: dict[str, Any]) -> Parser:
    """A parser of one partition's CSV bytes (its header given, or read, or generated)."""
    names = partition_options.get("column_names")
    read_kwargs: dict[str, Any] = {"encoding": options.encoding}
    if names is not None:
        read_kwargs["column_names"] = names
    elif not options.header:
        read_kwargs["autogenerate_column_names"] = True
    parsing = parse_options(options, partition_options.get("delimiter") or ",")
    convert_options = pa_csv.ConvertOptions(
        null_values=options.null_values, strings_can_be_null=True
    )

    def parse(source: Source, block_size: int | None, use_threads: bool) -> pa.Table:
        read_options = pa_csv.ReadOptions(
            use_threads=use_threads, block_size=block_size, **read_kwargs
        )
        stream = _HexScan(source.stream) if source.hex_prefix is None else source.stream
        table = pa_csv.read_csv(stream, read_options=read_options, parse_options=parsing,
                                convert_options=convert_options)
        hexed = stream.seen if isinstance(stream, _HexScan) else source.hex_prefix
        integers = [f.name for f in table.schema if pa.types.is_integer(f.type)]
        if not (hexed and integers):
            return table
        # pyarrow reads 0x... cells as integers, wrapping those over 2^63 to negatives:
        # such a column is text (as Polars and DuckDB read it)
        source.stream.seek(0)
        as_text = pa_csv.read_csv(source.stream, read_options=read_options,
                                  parse_options=parsing, convert_options=pa_csv.ConvertOptions(
                                      null_values=options.null_values, strings_can_be_null=True,
                                      column_types={c: pa.string() for c in integers}))
        for name in integers:
            text = as_text.column(name)
            if pc.any(pc.match_substring_regex(text, r"^\s*[+-]?0[xX]")).as_py():
                table = table.set_column(table.schema.get_field_index(name), name, text)
                log.debug("column %s holds hexadecimal text: read as strings", name)
        return table

    return parse


class _HexScan:
    """A stream that notes whether ``0x`` or ``0X`` passed through it (pyarrow reads it)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.seen = False
        self._last = b""

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if not self.seen and data:
            window = self._last + data[:1] if self._last else b""
            self.seen = window in (b"0x", b"0X") or has_hex_prefix(data)
            self._last = data[-1:]
        return data

    # what pyarrow asks of a Python stream besides read (never readinto: it would bypass read)
    closed = property(lambda self: self.source.closed)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return int(self.source.tell())

    def close(self) -> None:
        """Leave the source open: the caller closes it (and may read it again)."""
