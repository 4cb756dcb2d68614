"""The object storage sink: a result or dataset written to one S3 object (S3-compatible
stores too) as Parquet, CSV or JSON, uploaded only when the job has succeeded.

Example (YAML)::

    exports:
      - {format: object_storage, from: by_region, bucket: analytics,
         key: "reports/by_region.csv", file: {format: csv, delimiter: ";"},
         endpoint_url: "http://127.0.0.1:9000",
         access_key_id: "${AWS_ACCESS_KEY_ID}", secret_access_key: "${AWS_SECRET_ACCESS_KEY}"}

``file`` is the config of a file export (``json``, ``csv``, ``parquet``, with their options;
by default the format the key's suffix names). The results step writes the file into the
run's staging folder with that exporter; the job's commit checks that the bucket can be
reached, and uploads the file once every sink is ready (an object appears whole or not at
all). Credentials are ``${NAME}`` references, resolved where the job commits, and built into
the same s3fs filesystem as an object storage source's
(:func:`raysight.connectors.object_storage.filesystem.s3_filesystem`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from raysight.connectors.object_storage.config import S3Location
from raysight.connectors.object_storage.filesystem import s3_filesystem, secrets
from raysight.errors import (
    InputError,
    PermanentError,
    PermissionDenied,
    TransientError,
    WorkflowError,
)
from raysight.exporters.files import (
    CsvConfig,
    CsvExporter,
    JsonConfig,
    JsonExporter,
    ParquetConfig,
    ParquetExporter,
)
from raysight.plugins import Exporter, PreparedWrite, ReportContext, Sink
from raysight.secrets import redact

FileConfig = Annotated[JsonConfig | CsvConfig | ParquetConfig, Field(discriminator="format")]
_EXPORTERS: dict[str, type[Exporter[Any]]] = {
    "json": JsonExporter, "csv": CsvExporter, "parquet": ParquetExporter}
_SUFFIXES = {".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class ObjectStorageSinkConfig(S3Location):
    """``{format: object_storage, from, bucket, key, file?, endpoint_url?, region?,
    access_key_id?, secret_access_key?, session_token?}``."""

    format: Literal["object_storage"] = "object_storage"
    key: str = Field(min_length=1, description="the object written, e.g. reports/x.parquet")
    file: FileConfig | None = Field(default=None, description="the file format and its "
                                    "options (default: the one the key's suffix names)")

    @field_validator("key")
    @classmethod
    def _an_object(cls, value: str) -> str:
        if value.startswith("/") or value.endswith("/"):
            raise ValueError(f"a key names one object, relative to the bucket (no leading or "
                             f"trailing /), got {value!r}")
        return value

    @model_validator(mode="after")
    def _a_format(self) -> ObjectStorageSinkConfig:
        if self.file is None and posixpath.splitext(self.key)[1].lower() not in _SUFFIXES:
            raise ValueError(f"say the file format: `file: {{format: parquet}}` (json, csv or "
                             f"parquet); the key {self.key!r} does not end in one")
        if self.file is not None and self.file.path is not None:
            raise ValueError("`file.path` is not used: the object is named by `key`")
        return self

    @property
    def file_format(self) -> str:
        if self.file is not None:
            return self.file.format
        return _SUFFIXES[posixpath.splitext(self.key)[1].lower()]


class ObjectStorageSink(Sink[ObjectStorageSinkConfig]):
    """Uploads the result, written as its file format, to ``s3://bucket/key`` at commit."""

    name = "object_storage"
    Config = ObjectStorageSinkConfig

    def describe(self) -> str:
        return f"object storage s3://{self.config.bucket}/{self.config.key}"

    @property
    def _file(self) -> Exporter[Any]:
        exporter = _EXPORTERS[self.config.file_format]
        config = self.config.file or exporter.Config()
        return exporter(config)

    def problem(self, schema: pa.Schema) -> str | None:
        return self._file.problem(schema)

    def export(self, report: ReportContext, path: str) -> None:
        self._file.export(report, path)

    def prepare(self, staged: str) -> PreparedWrite:
        """The upload, once the bucket was found (so a missing bucket or a store that does not
        answer fails the job before any sink commits)."""
        with _s3_errors(self.config):
            fs = s3_filesystem(self.config)
            if not fs.exists(self.config.bucket):
                raise InputError(f"no such bucket {self.config.bucket!r}",
                                 bucket=self.config.bucket)
        return _Upload(self.config, fs, staged)


class _Upload(PreparedWrite):
    """One file put to its key (S3 makes an object visible whole, or not at all)."""

    def __init__(self, config: ObjectStorageSinkConfig, fs: Any, staged: str) -> None:
        self.config, self.fs, self.staged = config, fs, staged

    def commit(self) -> None:
        with _s3_errors(self.config):
            self.fs.put_file(self.staged, f"{self.config.bucket}/{self.config.key}")


@contextmanager
def _s3_errors(config: ObjectStorageSinkConfig) -> Iterator[None]:
    """s3fs and botocore errors as the project's: PermissionDenied, InputError (no bucket,
    no credentials), TransientError (a store that does not answer); secrets masked."""
    try:
        yield
    except WorkflowError:
        raise
    except Exception as exc:
        message = redact(f"{type(exc).__name__}: {exc}", secrets(config))
        name = type(exc).__name__
        if isinstance(exc, PermissionError):
            raise PermissionDenied(f"the store refused the upload: {message}") from None
        if isinstance(exc, FileNotFoundError):
            raise InputError(f"no such bucket {config.bucket!r}: {message}") from None
        if name == "NoCredentialsError":
            raise InputError("no AWS credentials where the job commits: give "
                             "`access_key_id` and `secret_access_key` (as ${NAME} "
                             "references) or set AWS_ACCESS_KEY_ID and "
                             "AWS_SECRET_ACCESS_KEY") from None
        if isinstance(exc, OSError) or any(k in name for k in ("Connect", "Timeout",
                                                                 "Endpoint")):
            raise TransientError(f"cannot reach the store: {message}") from None
        raise PermanentError(f"the upload failed: {message}") from None
