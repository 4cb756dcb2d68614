"""Objects of an S3 or S3-compatible bucket read as files (every format of a file source).

A source is a bucket with a ``key`` (one object or a glob) or a ``prefix`` (a folder of
objects), optionally a ``region`` and an ``endpoint_url`` (MinIO, Ceph, R2, moto), and
credentials as ``${NAME}`` references or ``anonymous: true``. The file connector does the
listing, splitting and parsing (:mod:`raysight.connectors.files`); this package only says how a
bucket becomes an fsspec filesystem, through s3fs, in the Ray worker that opens the objects.

The package's modules, one concept each: :mod:`.config` (the source's settings),
:mod:`.filesystem` (the s3fs options, credentials resolved), :mod:`.errors` (messages naming
the source) and :mod:`.connector` (the :class:`~raysight.plugins.Connector`).

Example::

    >>> from raysight.connectors.object_storage import (
    ...     ObjectStorageConnector, ObjectStorageSourceConfig)
    >>> conn = ObjectStorageConnector(ObjectStorageSourceConfig(
    ...     bucket="analytics", prefix="sales/2024/", endpoint_url="http://127.0.0.1:9000",
    ...     access_key_id="${AWS_ACCESS_KEY_ID}",
    ...     secret_access_key="${AWS_SECRET_ACCESS_KEY}"))
    >>> conn.where
    'object_storage source s3://analytics/sales/2024/ (endpoint http://127.0.0.1:9000)'
    >>> partitions = conn.plan()  # doctest: +SKIP
"""

from raysight.connectors.object_storage.config import ObjectStorageSourceConfig
from raysight.connectors.object_storage.connector import ObjectStorageConnector

__all__ = ["ObjectStorageConnector", "ObjectStorageSourceConfig"]
