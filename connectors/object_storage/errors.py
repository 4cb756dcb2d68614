"""Errors of an object storage source named for it, secrets masked; what the file connector's
errors (:mod:`raysight.connectors.files.errors`) cannot tell: missing credentials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from raysight.errors import InputError, WorkflowError
from raysight.secrets import redact


@contextmanager
def named_errors(where: str, secrets: list[str]) -> Iterator[None]:
    """raysight errors inside get ``where`` in front of their message (any secret masked);
    botocore's "no credentials" becomes an InputError saying how to give them."""
    try:
        yield
    except WorkflowError as err:
        message = redact(err.message, secrets)
        raise type(err)(f"{where}: {message}", **{"source": where, **err.details}) from None
    except Exception as exc:
        if not _no_credentials(exc):
            raise
        raise InputError(f"{where}: no AWS credentials where the objects are opened (the Ray "
                         "workers): give `access_key_id` and `secret_access_key` (as ${NAME} "
                         "references), set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY where "
                         "Ray runs, or `anonymous: true` for a public bucket",
                         source=where) from None


def _no_credentials(exc: Exception) -> bool:
    from botocore.exceptions import NoCredentialsError  # loaded by s3fs by now

    return isinstance(exc, NoCredentialsError)
