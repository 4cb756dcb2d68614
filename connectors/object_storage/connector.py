"""The object storage connector: the file connector over a bucket, signed in where the objects
are opened."""

from __future__ import annotations

from typing import cast

import pyarrow as pa
from fsspec import AbstractFileSystem
from fsspec.core import has_magic

from raysight.connectors.files.connector import FileConnector
from raysight.connectors.files.errors import translated_errors
from raysight.connectors.object_storage.config import ObjectStorageSourceConfig
from raysight.connectors.object_storage.errors import named_errors
from raysight.connectors.object_storage.filesystem import s3_filesystem, secrets
from raysight.errors import InputError
from raysight.plugins import PartitionSpec


class ObjectStorageConnector(FileConnector):
    """Reads the objects of an S3 bucket (a key, a glob or a prefix) as the file connector reads
    files: one partition per object, large ones split, every file format.

    ``PartitionSpec.location`` is the object's ``s3://bucket/key``; the connector (pickled
    into each Ray task) holds the config with its ``${NAME}`` references unresolved, and
    :meth:`filesystem` resolves them in the worker, so no task argument holds a secret.
    """

    name = "object_storage"
    Config = ObjectStorageSourceConfig

    def check(self) -> None:
        """Nothing on the driver: credentials resolve in the Ray workers (the driver may not
        hold them), so a missing bucket or object is found by ``plan``, before any read."""

    def schema(self) -> pa.Schema | None:
        """None: footers are read in the workers, which hold the credentials."""
        return None

    def estimated_bytes(self) -> int | None:
        """None: listing the bucket needs the credentials that only the workers hold."""
        return None

    def plan(self) -> list[PartitionSpec]:
        """One partition per object (in key order); an object over ``partition_bytes`` is
        split. A missing bucket, key or prefix is an InputError saying which."""
        with named_errors(self.where, secrets(self.storage)):
            try:
                return super().plan()
            except InputError:
                fs, _ = self.filesystem(self.config.path)
                missing = self._what_is_missing(fs)
                if missing is None:
                    raise
                raise missing from None

    def read(self, partition: PartitionSpec) -> pa.Table:
        """Parse one object (or a range of it) into an Arrow table."""
        with named_errors(self.where, secrets(self.storage)):
            return super().read(partition)

    def filesystem(self, url: str) -> tuple[AbstractFileSystem, str]:
        """The source's S3 filesystem (credentials resolved here) and the path of ``url``."""
        fs = s3_filesystem(self.storage)
        return fs, fs._strip_protocol(url)

    def _what_is_missing(self, fs: AbstractFileSystem) -> InputError | None:
        """Why listing found no object, in a bucket's terms (None when objects are there and
        the listing failed for another reason: mixed formats...)."""
        cfg = self.storage
        bucket = cfg.bucket
        with translated_errors(f"s3://{bucket}", "file"):
            try:
                fs.call_s3("head_bucket", Bucket=bucket)
            except FileNotFoundError:
                return InputError(f"bucket {bucket!r} does not exist", bucket=bucket)
            path = self.config.path.removeprefix("s3://")
            if cfg.prefix is not None:
                if fs.find(path, maxdepth=None if cfg.recursive else 1):
                    return None
                return InputError(f"no objects under prefix {cfg.prefix!r} of bucket "
                                  f"{bucket!r}", bucket=bucket, prefix=cfg.prefix)
            if has_magic(path):
                if fs.glob(path):
                    return None
                return InputError(f"no object of bucket {bucket!r} matches key {cfg.key!r}",
                                  bucket=bucket, key=cfg.key)
            if fs.exists(path):
                return None
            return InputError(f"no object with key {cfg.key!r} in bucket {bucket!r}",
                              bucket=bucket, key=cfg.key)

    @property
    def storage(self) -> ObjectStorageSourceConfig:
        return cast(ObjectStorageSourceConfig, self.config)

    @property
    def where(self) -> str:
        """The source in messages: ``object_storage source s3://bucket/prefix/ (endpoint
        http://127.0.0.1:9000, region eu-west-1)``."""
        cfg = self.storage
        shown = f"s3://{cfg.bucket}/{cfg.key if cfg.key is not None else cfg.prefix}"
        about = [f"endpoint {cfg.endpoint_url}" if cfg.endpoint_url else "",
                 f"region {cfg.region}" if cfg.region else ""]
        context = ", ".join(a for a in about if a)
        return f"object_storage source {shown}" + (f" ({context})" if context else "")
