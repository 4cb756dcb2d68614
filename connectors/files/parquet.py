"""A Parquet partition read with what the job needs: its columns, and the row groups whose
statistics allow a row the job keeps (see :mod:`.pushdown`).

The footer is read first; then only the chosen column chunks of the chosen row groups are
fetched: on a remote filesystem (object storage) through ``fsspec.parquet``, which requests
exactly those byte ranges, on a local disk through the open file.
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


def read_parquet(fs: AbstractFileSystem, path: str, opts: dict[str, Any], hints: ReadHints,
                 partition: dict[str, pa.DataType]) -> pa.Table:
    """The partition's row groups (``opts["row_groups"]``, else all) that may hold a kept
    row, with the columns the job reads (each file column when ``hints.columns`` is None).
    ``partition`` names the hive partition columns, whose values are in ``opts["hive"]``."""
    with fs.open(path, "rb") as f:
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
            return schema.empty_table() if columns is None else \
                schema.empty_table().select(columns)
        if isinstance(fs, LocalFileSystem):
            return pfile.read_row_groups(groups, columns=columns)
        # the footer and then some (fsspec 2026.9 misreads a sample of just the footer)
        footer = pfile.metadata.serialized_size + 64 * 1024
    # a remote file: fetch the needed column chunks in a few requests, not block by block
    with fsspec.parquet.open_parquet_file(path, fs=fs, columns=columns, row_groups=groups,
                                          engine="pyarrow", footer_sample_size=footer) as f:
        return pq.ParquetFile(f).read_row_groups(groups, columns=columns)
