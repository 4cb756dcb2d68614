"""File exporters: the result table as JSON, CSV or Parquet, written through fsspec.

``path`` in a config is relative to the job's run directory; the pipeline resolves it (and
stages the write) and passes ``export`` an absolute local path or any fsspec URL.

Example::

    CsvExporter(CsvExporter.Config(delimiter=";")).export(report, "/runs/job_1/result.csv")
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import math
import posixpath
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Annotated, Any, Literal

import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from polars.datatypes import DataTypeClass
from pydantic import Field, field_validator

from raysight.errors import (
    InputError,
    PermanentError,
    PermissionDenied,
    SerializationError,
    TransientError,
)
from raysight.plugins import Exporter, PluginConfig, ReportContext

log = logging.getLogger(__name__)

#: ``path`` of an export: relative to the run directory, resolved by the pipeline
OutputPath = Annotated[str, Field(min_length=1)] | None


class JsonConfig(PluginConfig):
    """``{format: json, path?, orient?, indent?}``."""

    format: Literal["json"] = "json"
    path: OutputPath = None
    orient: Literal["records", "columns"] = "records"
    indent: int | None = Field(default=2, ge=0)


class CsvConfig(PluginConfig):
    """``{format: csv, path?, delimiter?, header?}``."""

    format: Literal["csv"] = "csv"
    path: OutputPath = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = True

    @field_validator("delimiter")
    @classmethod
    def _usable_delimiter(cls, value: str) -> str:
        if value in {'"', "\r", "\n"}:
            raise ValueError(f"{value!r} cannot separate CSV fields; use e.g. ',', ';' or '\\t'")
        return value


class ParquetConfig(PluginConfig):
    """``{format: parquet, path?, compression?}``."""

    format: Literal["parquet"] = "parquet"
    path: OutputPath = None
    compression: Literal["snappy", "zstd", "gzip", "none"] = "zstd"


class JsonExporter(Exporter[JsonConfig]):
    """A JSON document: job id, analysis type, summary, column names and the rows.

    ``orient: records`` writes ``"rows": [{column: value}, ...]``; ``orient: columns`` writes
    ``"data": {column: [values]}``. Values are JSON-safe (see :func:`to_jsonable`).
    """

    name = "json"
    extension = ".json"
    Config = JsonConfig

    def export(self, report: ReportContext, path: str) -> None:
        table = report.result.table
        doc: dict[str, Any] = {
            "job_id": report.job_id,
            "analysis_type": report.analysis_type,
            "summary": jsonable_value(report.result.summary, "summary"),
            "columns": table.column_names,
        }
        if self.config.orient == "records":
            doc["rows"] = to_jsonable(table)
        else:
            frame = jsonable_frame(table)
            doc["data"] = {name: frame.get_column(name).to_list() for name in frame.columns}
        text = json.dumps(doc, indent=self.config.indent, ensure_ascii=False, allow_nan=False)
        with open_output(path) as f:
            f.write(text.encode("utf-8"))
        log.info("job %s: wrote JSON export (%d rows) to %s", report.job_id, table.num_rows, path)


class CsvExporter(Exporter[CsvConfig]):
    """RFC 4180 CSV in UTF-8: CRLF line ends; a field holding the delimiter, a quote or a
    line break is quoted, quotes doubled; nulls are empty fields (an empty string is ``""``).

    Nested and binary columns cannot be represented and raise InputError.
    """

    name = "csv"
    extension = ".csv"
    Config = CsvConfig

    def problem(self, schema: pa.Schema) -> str | None:
        unwritable = [f"{f.name} ({f.type})" for f in schema if _csv_cannot_hold(f.type)]
        if not unwritable:
            return None
        return (f"CSV cannot hold the column(s) {', '.join(unwritable)}; export them as JSON "
                "or Parquet, or drop them first")

    def export(self, report: ReportContext, path: str) -> None:
        problem = self.problem(report.result.table.schema)
        if problem:
            raise InputError(problem)
        frame = _iso_offsets(_to_polars(report.result.table))
        with open_output(path) as f:
            frame.write_csv(
                f,
                separator=self.config.delimiter,
                include_header=self.config.header,
                line_terminator="\r\n",
                quote_style="necessary",
            )
        log.info("job %s: wrote CSV export (%d rows) to %s", report.job_id, frame.height, path)


class ParquetExporter(Exporter[ParquetConfig]):
    """The result table as Parquet (its Arrow schema kept), with the chosen compression."""

    name = "parquet"
    extension = ".parquet"
    Config = ParquetConfig

    def export(self, report: ReportContext, path: str) -> None:
        table = report.result.table
        compression = None if self.config.compression == "none" else self.config.compression
        with open_output(path) as f:
            pq.write_table(table, f, compression=compression)
        log.info(
            "job %s: wrote Parquet export (%d rows) to %s", report.job_id, table.num_rows, path
        )


def _csv_cannot_hold(dtype: pa.DataType) -> bool:
    """Nested and binary values have no CSV text."""
    return (pa.types.is_nested(dtype) or pa.types.is_binary(dtype)
            or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype)
            or pa.types.is_binary_view(dtype))


def _iso_offsets(frame: pl.DataFrame) -> pl.DataFrame:
    """Zoned timestamps as ISO 8601 text with the colon in the offset (``-05:00``; Polars'
    CSV writer leaves it out)."""
    digits = {"ms": 3, "us": 6, "ns": 9}  # as many as Polars writes for naive timestamps
    zoned = {name: digits[dtype.time_unit] for name, dtype in frame.schema.items()
             if isinstance(dtype, pl.Datetime) and dtype.time_zone}
    if not zoned:
        return frame
    return frame.with_columns(
        pl.col(name).dt.to_string(f"%Y-%m-%dT%H:%M:%S%.{n}f%:z") for name, n in zoned.items())


# ---------------------------------------------------------------------------------------------
# JSON-safe values


def to_jsonable(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as dicts of JSON-ready values, columns in table order.

    NaN and ±inf become None, dates, times and timestamps ISO-8601 strings (``T`` separator,
    offset for zoned timestamps), durations ISO-8601 durations (``PT1.5S``), decimals floats,
    binary base64 strings; nested lists and structs are converted the same way inside.

    >>> to_jsonable(pa.table({"x": [1.5, float("nan")]}))
    [{'x': 1.5}, {'x': None}]
    """
    return jsonable_frame(table).to_dicts()


def jsonable_frame(table: pa.Table) -> pl.DataFrame:
    """A Polars frame of the table whose values are all JSON-ready (see :func:`to_jsonable`)."""
    frame = _to_polars(table)
    # columns are picked by position: a name such as "^a.*$" would be read as a regex by pl.col
    return frame.select(
        _jsonable_expr(pl.nth(i), dtype).alias(name)
        for i, (name, dtype) in enumerate(frame.schema.items())
    )


def _jsonable_expr(expr: pl.Expr, dtype: pl.DataType | DataTypeClass) -> pl.Expr:
    if dtype.is_float():
        return pl.when(expr.is_finite()).then(expr)
    if isinstance(dtype, pl.Decimal):
        return expr.cast(pl.Float64)
    if isinstance(dtype, pl.Datetime):
        offset = "%:z" if dtype.time_zone else ""
        return expr.dt.to_string(f"%Y-%m-%dT%H:%M:%S%.f{offset}")
    if isinstance(dtype, (pl.Date, pl.Time)):
        return expr.dt.to_string()
    if isinstance(dtype, pl.Duration):
        return expr.dt.to_string("iso")
    if dtype == pl.Binary:
        return expr.bin.encode("base64")
    if isinstance(dtype, pl.Array):
        return _jsonable_expr(expr.cast(pl.List(dtype.inner)), pl.List(dtype.inner))
    if isinstance(dtype, pl.List):
        return expr.list.eval(_jsonable_expr(pl.element(), dtype.inner))
    if isinstance(dtype, pl.Struct):
        fields = [
            _jsonable_expr(expr.struct.field(f.name), f.dtype).alias(f.name) for f in dtype.fields
        ]
        return pl.when(expr.is_not_null()).then(pl.struct(fields))
    return expr


def jsonable_value(
    value: Any, where: str = "value", default: Callable[[Any], Any] | None = None
) -> Any:
    """A small Python value (a summary dict) made JSON-ready with the same rules as tables.

    A value of another type is passed to ``default`` when given, else raises
    SerializationError naming it by ``where``.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return jsonable_value(value.item(), where, default)
    if isinstance(value, decimal.Decimal):
        return jsonable_value(float(value), where, default)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): jsonable_value(v, f"{where}.{k}", default) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [jsonable_value(v, f"{where}[{i}]", default) for i, v in enumerate(value)]
    if isinstance(value, pa.Table):
        return to_jsonable(value)
    if isinstance(value, pa.Scalar):
        return jsonable_value(value.as_py(), where, default)
    if default is not None:
        return default(value)
    raise SerializationError(
        f"{where} of type {type(value).__name__} cannot be written as JSON", where=where
    )


def _to_polars(table: pa.Table) -> pl.DataFrame:
    try:
        return pl.DataFrame(table)
    except (pl.exceptions.PolarsError, pa.ArrowException, TypeError, ValueError) as exc:
        raise SerializationError(
            f"the result table (schema: {table.schema.to_string(show_schema_metadata=False)}) "
            f"cannot be exported: {exc}"
        ) from exc


# ---------------------------------------------------------------------------------------------
# output files


@contextmanager
def open_output(path: str) -> Iterator[IO[bytes]]:
    """Open ``path`` (a local path or fsspec URL) for writing bytes, creating local folders.

    OS errors become project errors: PermissionDenied, PermanentError for a path that cannot
    be a file, TransientError for anything else (a storage service that may come back).
    """
    try:
        fs, fs_path = fsspec.core.url_to_fs(path)
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(posixpath.dirname(fs_path) or ".", exist_ok=True)
        with fs.open(fs_path, "wb") as f:
            yield f
    except PermissionError as exc:
        raise PermissionDenied(f"cannot write {path}: {exc}", path=path) from exc
    except (IsADirectoryError, NotADirectoryError, FileNotFoundError) as exc:
        raise PermanentError(f"cannot write {path}: {exc}", path=path) from exc
    except OSError as exc:
        raise TransientError(f"cannot write {path}: {exc}", path=path) from exc
