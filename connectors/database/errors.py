"""Driver errors as the project's errors: naming the source, never its password."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from raysight.connectors.database.urls import redact
from raysight.errors import InputError, TransientError, WorkflowError

#: messages of a login the server refused (a wrong password or user, an unknown database)
_LOGIN = re.compile(r"access denied|password authentication|authentication failed|"
                    r"role .* does not exist|unknown database|database .* does not exist|"
                    r"no pg_hba\.conf entry", re.IGNORECASE)
#: messages of a server that cannot be reached or went away (worth another try)
_UNREACHABLE = re.compile(r"connection refused|could not connect|timed out|"
                          r"connection reset|broken pipe|server has gone away|"
                          r"lost connection|the database system is starting up", re.IGNORECASE)


@contextmanager
def translated_errors(where: str, secrets: list[str],
                      driver_errors: tuple[type[Exception], ...] = (RuntimeError, OSError,
                                                                    ValueError),
                      action: str = "the query") -> Iterator[None]:
    """Driver errors inside (``driver_errors``; connectorx raises RuntimeError) become
    InputError (login refused, bad SQL) or TransientError (no connection), their message
    prefixed with ``where`` and any secret masked; ``action`` names what failed."""
    try:
        yield
    except WorkflowError:
        raise
    except driver_errors as err:
        message = redact(str(err), secrets).strip()
        if _LOGIN.search(message):
            raise InputError(f"{where}: the database refused the login: {message}",
                             source=where) from None
        if _UNREACHABLE.search(message):
            raise TransientError(f"{where}: cannot connect: {message}", source=where) from None
        raise InputError(f"{where}: {action} failed: {message}", source=where) from None
