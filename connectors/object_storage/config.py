"""What an object storage source says: the bucket, a key or a prefix, where the store is and
how to sign in, plus every option of a file source (format, CSV dialect, partition size)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from raysight.connectors.files.config import FileSourceConfig
from raysight.plugins import PluginConfig
from raysight.secrets import check_references

#: fields that hold a secret: a ``${NAME}`` reference is required, a literal value refused
SECRET_FIELDS = ("secret_access_key", "session_token")


class S3Location(PluginConfig):
    """Where a bucket is and how to sign in to it: what object storage sources and sinks
    share. Secrets are ``${NAME}`` references (see :func:`check_credentials`)."""

    bucket: str = Field(min_length=1, max_length=255)
    region: str | None = Field(default=None, min_length=1)
    #: an S3-compatible endpoint (``http://127.0.0.1:9000``); None for AWS
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+/?$")
    #: unsigned requests, for a public bucket
    anonymous: bool = False
    access_key_id: str | None = Field(default=None, min_length=1)
    secret_access_key: str | None = Field(default=None, min_length=1)
    session_token: str | None = Field(default=None, min_length=1)
    #: seconds to wait for the endpoint's TCP connection (an unreachable one fails fast,
    #: as a TransientError the job retries)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("bucket")
    @classmethod
    def _a_bucket_name(cls, value: str) -> str:
        if "/" in value or ":" in value:
            raise ValueError(f"a bucket is a name, without s3:// or /, got {value!r}")
        return value

    @model_validator(mode="after")
    def _safe_credentials(self) -> S3Location:
        check_credentials(self)
        return self


class ObjectStorageSourceConfig(FileSourceConfig, S3Location):
    """Objects of an S3 (or S3-compatible: MinIO, Ceph, R2...) bucket read as files.

    ``key`` names one object or a glob of them (``sales/2024-*.parquet``, ``**/*.csv``);
    ``prefix`` a folder (``sales/``; ``""`` is the whole bucket), one partition per object
    as for a local folder (``recursive`` includes sub-prefixes). Every option of a ``file``
    source applies (``format``, ``csv``, ``partition_bytes``, ``split_files``).

    Credentials are ``${NAME}`` references to environment variables, resolved only where the
    objects are opened (the Ray workers), so no secret enters the spec, the run directory or
    a Ray task's arguments; a literal ``secret_access_key`` or ``session_token`` is refused.
    Without credentials the workers' default AWS chain applies (``AWS_ACCESS_KEY_ID``...,
    ``~/.aws``, an instance role); ``anonymous: true`` reads a public bucket unsigned.

    Example (YAML)::

        type: object_storage
        bucket: analytics
        prefix: sales/2024/
        region: eu-west-1
        access_key_id: ${AWS_ACCESS_KEY_ID}
        secret_access_key: ${AWS_SECRET_ACCESS_KEY}
    """

    type: Literal["object_storage"] = "object_storage"  # type: ignore[assignment]
    #: the URL the file connector lists (``s3://bucket/key``): derived, never given
    path: SkipJsonSchema[str] = Field(default="", exclude=True, repr=False)
    key: str | None = Field(default=None, min_length=1)
    prefix: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _url_of_the_objects(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "path" in data:
            raise ValueError("an object_storage source names `bucket` and `key` or `prefix`, "
                             "not `path` (a `file` source takes an s3:// path)")
        where = data.get("key", data.get("prefix"))
        if isinstance(data.get("bucket"), str) and isinstance(where, str):
            data = {**data, "path": f"s3://{data['bucket']}/{where}".rstrip("/")}
        return data

    @field_validator("key", "prefix")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("/"):
            raise ValueError(f"a key or prefix is relative to the bucket (no leading /), "
                             f"got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> ObjectStorageSourceConfig:
        if (self.key is None) == (self.prefix is None):
            raise ValueError("give exactly one of `key` (an object or a glob) or `prefix` "
                             "(a folder of objects)")
        return self


def check_credentials(config: Any) -> None:
    """ValueError for credentials given in part, beside ``anonymous``, or a secret given as
    a value rather than a ``${NAME}`` reference (sources and sinks alike)."""
    credentials = {name: getattr(config, name) for name in
                   ("access_key_id", *SECRET_FIELDS) if getattr(config, name) is not None}
    if config.anonymous and credentials:
        raise ValueError(f"`anonymous: true` reads unsigned: drop {', '.join(credentials)}")
    if (config.access_key_id is None) != (config.secret_access_key is None):
        raise ValueError("give `access_key_id` and `secret_access_key` together")
    if config.session_token is not None and config.access_key_id is None:
        raise ValueError("a `session_token` needs `access_key_id` and `secret_access_key`")
    for name, value in credentials.items():
        if not check_references(value) and name in SECRET_FIELDS:
            raise ValueError(
                f"`{name}` must name an environment variable (`${{AWS_SECRET_ACCESS_KEY}}`"
                "), not hold the secret: the spec is copied into the run directory")
