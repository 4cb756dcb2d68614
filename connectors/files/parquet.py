"""A Parquet partition read with what the job needs: its columns, and the row groups whose
statistics allow a row the job keeps (see :mod:`.pushdown`).

The footer is read first; then only the chosen column chunks of the chosen row groups are
fetched: on a remote filesystem (object storage) through ``fsspec.parquet``, which requests
exactly those byte ranges, on a local disk from the file's memory map.
"""

from __future__ import annotations

from typing import Any

import fsspec.parquet
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from raysight.connectors.files.pushdown import arrow_filter, partition_expression
from raysight.plugins import ReadHints
from raysight.tables import orderable

Stats = dict[str, dict[str, Any]]


def read_parquet(fs: AbstractFileSystem, path: str, opts: dict[str, Any], hints: ReadHints,
                 partition: dict[str, pa.DataType]) -> tuple[pa.Table, Stats | None]:
    """The partition's row groups (``opts["row_groups"]``, else all) that may hold a kept
    row, with the columns the job reads (each file column when ``hints.columns`` is None),
    and their column statistics from the footer (None where it lacks some).
    ``partition`` names the hive partition columns, whose values are in ``opts["hive"]``."""
    local = isinstance(fs, LocalFileSystem)
    # a local file memory-mapped: pyarrow reads its pages without a copy
    with pa.memory_map(path) if local else fs.open(path, "rb") as f:
        pfile = pq.ParquetFile(f)
        schema = pfile.schema_arrow
        planned = opts.get("row_groups")
        groups = list(range(pfile.metadata.num_row_groups)) if planned is None else planned
        columns = None if hints.columns is None else \
            [c for c in schema.names if c in hints.columns]
        if columns == [] and not set(partition) & set(hints.columns or ()):
            columns = None  # the job names no column of the file: its error to report
        full = pa.schema([*schema, *(pa.field(k, t) for k, t in partition.items())])
        predicate = arrow_filter(hints.filters, full)
        if predicate is not None and groups:
            fragment = ds.ParquetFileFormat().make_fragment(
                f, partition_expression=partition_expression(opts.get("hive", {})),
                row_groups=groups)
            groups = sorted(g.id for g in fragment.subset(filter=predicate,
                                                          schema=full).row_groups)
        if not groups:
            empty = schema.empty_table()
            return (empty if columns is None else empty.select(columns)), None
        metadata = pfile.metadata
        if local:
            table = pfile.read_row_groups(groups, columns=columns)
            return table, footer_stats(metadata, groups, table.schema)
        # the footer and then some (fsspec 2026.9 misreads a sample of just the footer)
        footer = metadata.serialized_size + 64 * 1024
    # a remote file: fetch the needed column chunks in a few requests, not block by block
    with fsspec.parquet.open_parquet_file(path, fs=fs, columns=columns, row_groups=groups,
                                          engine="pyarrow", footer_sample_size=footer) as f:
        table = pq.ParquetFile(f).read_row_groups(groups, columns=columns)
    return table, footer_stats(metadata, groups, table.schema)


def footer_stats(metadata: pq.FileMetaData, groups: list[int], schema: pa.Schema
                 ) -> Stats | None:
    """The column statistics (as :func:`raysight.tables.column_stats` gives them) of row
    groups ``groups`` from the footer's statistics, which a writer computed from every value
    (NaN left out); None when a column has none, or is nested."""
    leaves = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    out: Stats = {}
    for field_ in schema:
        index = leaves.get(field_.name)
        if index is None:
            return None  # a nested column: its leaves are named a.b, a.list.element
        nulls, low, high = 0, None, None
        for g in groups:
            group = metadata.row_group(g)
            stats = group.column(index).statistics
            if stats is None or not stats.has_null_count:
                return None
            nulls += stats.null_count
            if not orderable(field_.type) or stats.null_count == group.num_rows:
                continue
            if not stats.has_min_max:
                return None  # e.g. a row group of NaN only, or an old writer's strings
            low = stats.min if low is None else min(low, stats.min)
            high = stats.max if high is None else max(high, stats.max)
        out[field_.name] = {"type": str(field_.type), "nulls": nulls,
                            "min": _as_column_value(low, field_.type),
                            "max": _as_column_value(high, field_.type)}
    return out


def _as_column_value(value: Any, dtype: pa.DataType) -> Any:
    """A footer's min or max as the column's own values read back (``Scalar.as_py``)."""
    if value is None:
        return None
    try:
        return pa.scalar(value, type=dtype).as_py()
    except (pa.ArrowException, TypeError, ValueError):
        return value
