"""Filesystem and parser errors turned into raysight errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from raysight.errors import InputError, PermissionDenied, TransientError


class Malformed(ValueError):
    """Input that parsed but cannot be a table (a JSON array of numbers)."""


_FORMAT_NAMES = {"csv": "CSV", "json": "JSON", "ndjson": "NDJSON", "parquet": "Parquet",
                 "avro": "Avro", "ipc": "Arrow IPC", "orc": "ORC", "excel": "Excel"}
#: formats whose reader reports a damaged file as an OSError
_OSERROR_FORMATS = ("parquet", "orc")


@contextmanager
def translated_errors(
    shown: str, fmt: str, label: str | None = None, opts: dict[str, Any] | None = None
) -> Iterator[None]:
    """Turn filesystem and parser errors into raysight errors that name the file."""
    details: dict[str, Any] = {"path": shown}
    if label is not None:
        details["partition"] = label
    where = shown
    if opts and "start" in opts:
        details.update(start=opts["start"], end=opts["end"])
        where = f"{shown} (bytes {opts['start']}-{opts['end']})"
    what = _FORMAT_NAMES.get(fmt, fmt)
    try:
        yield
    except (InputError, PermissionDenied, TransientError):
        raise
    except FileNotFoundError as exc:
        raise InputError(f"source file not found: {shown}", **details) from exc
    except PermissionError as exc:
        raise PermissionDenied(f"permission denied: {shown}", **details) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise TransientError(f"cannot reach {shown}: {exc}", **details) from exc
    except IsADirectoryError as exc:
        raise InputError(f"expected a file, found a folder: {shown}", **details) from exc
    except (pa.ArrowException, UnicodeError, Malformed) as exc:
        raise InputError(f"malformed {what} in {where}: {_clean(exc)}", **details) from exc
    except OSError as exc:
        if fmt not in _OSERROR_FORMATS:
            raise
        # pyarrow reports a truncated footer as OSError: Parquet "Couldn't deserialize
        # thrift", ORC "Invalid ORC postscript length", "Not an ORC file"
        raise InputError(f"malformed {what} in {where}: {_clean(exc)}", **details) from exc
    except Exception as exc:
        if not isinstance(exc, _network_errors()):
            raise
        raise TransientError(f"cannot reach {shown}: {exc}", **details) from exc


def _network_errors() -> tuple[type[BaseException], ...]:
    """Errors of remote filesystems' HTTP clients that mean "not reachable now" (s3fs raises
    botocore's, which are not the builtin ConnectionError); imported only once one is raised."""
    found: list[type[BaseException]] = []
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        found += [BotoConnectionError, HTTPClientError]
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError

        found.append(ClientConnectionError)
    except ImportError:
        pass
    return tuple(found)


def _clean(exc: BaseException) -> str:
    text = str(exc).strip()
    for prefix in ("CSV parse error: ", "JSON parse error: "):
        text = text.removeprefix(prefix)
    return text.replace("/rows/[]", "")
