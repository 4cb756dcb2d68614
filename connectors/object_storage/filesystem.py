"""The s3fs filesystem of an object storage source, its credentials resolved from the
environment where it is built (a Ray worker), and the secrets to mask in messages."""

from __future__ import annotations

from typing import Any, Protocol

from fsspec import AbstractFileSystem

from raysight.connectors.object_storage.config import SECRET_FIELDS
from raysight.errors import InputError
from raysight.secrets import resolve

#: botocore's own attempts per request (it backs off between them); the engine retries a
#: TransientError on top, so a few here only smooth over a dropped connection
MAX_ATTEMPTS = 2


class S3Settings(Protocol):
    """Where an S3 store is and how to sign in: what an object storage source and an object
    storage sink both say."""

    anonymous: bool
    endpoint_url: str | None
    region: str | None
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    connect_timeout_s: float


def s3_filesystem(config: S3Settings) -> AbstractFileSystem:
    """The source's S3FileSystem: fsspec reuses one instance (and its connection pool) per
    distinct set of options in a process; listings are never cached, so a job in a reused
    Ray worker sees the bucket as it is now."""
    import s3fs  # heavy (botocore): loaded where objects are opened

    fs: AbstractFileSystem = s3fs.S3FileSystem(**s3_options(config))
    return fs


def s3_options(config: S3Settings) -> dict[str, Any]:
    """The keyword arguments of ``s3fs.S3FileSystem``, references resolved (InputError naming
    a variable that is not set): call only where the objects are opened."""
    options: dict[str, Any] = {
        "anon": config.anonymous,
        "use_listings_cache": False,
        "config_kwargs": {
            "connect_timeout": config.connect_timeout_s,
            "retries": {"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        },
    }
    if config.endpoint_url is not None:
        options["endpoint_url"] = config.endpoint_url
    if config.region is not None:
        options["client_kwargs"] = {"region_name": config.region}
    if config.access_key_id is not None:
        options["key"] = resolve(config.access_key_id, "the source's `access_key_id`")
        options["secret"] = resolve(config.secret_access_key or "",
                                    "the source's `secret_access_key`")
        if config.session_token is not None:
            options["token"] = resolve(config.session_token, "the source's `session_token`")
    return options


def secrets(config: S3Settings) -> list[str]:
    """The resolved secret key and session token (those that resolve), to mask in messages."""
    found = []
    for name in SECRET_FIELDS:
        value = getattr(config, name)
        if value is None:
            continue
        try:
            found.append(resolve(value, name))
        except InputError:  # an unset variable: nothing to mask
            continue
    return found
