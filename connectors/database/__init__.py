"""Databases (SQLite, PostgreSQL, MySQL/MariaDB) read into Arrow tables through connectorx.

A source is a read-only query or a table; a ``partition_column`` splits it into ranges read
in parallel, one Ray task each. ``${NAME}`` references in the URL are resolved from the
environment only where a connection is made (the Ray workers; the driver for the columns
check of :meth:`~.connector.DatabaseConnector.schema`), and passwords are masked in every
message. A source may name a connection (``connection: warehouse``) of the spec's
``connections:`` section or of a connections file instead (:mod:`raysight.connections`).

The package's modules, one concept each: :mod:`.config` (the source's settings),
:mod:`.urls` (URLs, references, masking), :mod:`.readonly` (the read-only guard),
:mod:`.sql` (the queries sent, and the ranges), :mod:`.errors` (driver errors translated) and
:mod:`.connector` (the :class:`~raysight.plugins.Connector`).

Example::

    >>> from raysight.connectors.database import DatabaseConnector, DatabaseSourceConfig
    >>> conn = DatabaseConnector(DatabaseSourceConfig(
    ...     path="examples/data/sales.sqlite", table="sales",
    ...     partition_column="quantity", partitions=2))
    >>> conn.check()
    >>> [p.label for p in conn.plan()]
    ['quantity < 5', '5 <= quantity', 'quantity IS NULL']
    >>> table = conn.read(conn.plan()[0])
"""

from raysight.connectors.database.config import DatabaseSourceConfig
from raysight.connectors.database.connector import DatabaseConnector

__all__ = ["DatabaseConnector", "DatabaseSourceConfig"]
