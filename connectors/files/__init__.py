"""Files on any fsspec filesystem (CSV, JSON, NDJSON, Parquet, Avro, Arrow IPC, ORC, Excel)
read into Arrow tables.

A source is one file, a folder or a glob, on a local disk or behind any fsspec URL
(``file://``, ``memory://``, ``s3://`` ...). :meth:`FileConnector.plan` lists the files in path
order and makes one partition per file; a file larger than ``partition_bytes`` is split:

* CSV and NDJSON into byte ranges whose ends are line starts, so a partition holds whole lines
  (the lines that *start* inside its range). Partitions after the first of a CSV file with a
  header get the column names, read once in ``plan``, in ``PartitionSpec.options``.
  **Limitation:** this assumes no newline inside a quoted CSV field. For such files set
  ``csv: {newlines_in_values: true}``: they are then parsed accordingly and never split.
* Parquet into consecutive groups of row groups of about ``partition_bytes`` (compressed).
* Avro into runs of data blocks, Arrow IPC files into runs of record batches and ORC into
  runs of stripes (an IPC stream and an Excel workbook are never split).

Compressed text files (``.csv.gz``, ``.bz2``, ``.xz``, ``.zst``) and JSON documents that are
an array of records are never split. Each text partition is parsed by pyarrow with its own type
inference, so one partition may see ``int64`` where another sees ``double``, and a column that
is empty in a partition gets type ``null``: combining partitions needs schema unification (by
column name).

The package's modules, one concept each: :mod:`.config` (the source's settings),
:mod:`.listing` (which files, which format), :mod:`.ranges` (byte and row-group ranges),
:mod:`.delimited` (CSV dialect), :mod:`.parsing` (bytes to tables), :mod:`.errors` (errors that
name the file), :mod:`.formats` (the binary formats' dispatch table: :mod:`.avro`,
:mod:`.ipc`, :mod:`.orc`, :mod:`.excel`, and :mod:`.pieces` for their partitions) and
:mod:`.connector` (the :class:`~raysight.plugins.Connector`).

Example::

    >>> from raysight.connectors.files import FileConnector, FileSourceConfig
    >>> conn = FileConnector(FileSourceConfig(path="examples/data/sales_parts"))
    >>> conn.check()
    >>> [p.label for p in conn.plan()]
    ['part-000.csv', 'part-001.csv', 'part-002.csv', 'part-003.csv']
    >>> table = conn.read(conn.plan()[0])
"""

from raysight.connectors.files.config import CsvOptions, ExcelOptions, FileSourceConfig, Format
from raysight.connectors.files.connector import FileConnector
from raysight.connectors.files.delimited import sniff_delimiter

__all__ = ["CsvOptions", "ExcelOptions", "FileConnector", "FileSourceConfig", "Format",
           "sniff_delimiter"]
