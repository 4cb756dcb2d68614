"""Stream errors: a malformed message under ``on_malformed: fail``, client errors translated
into the project's errors (naming the source, never a secret), and the malformed policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from raysight.connectors.database.urls import redact
from raysight.connectors.streams.decode import Rejected
from raysight.errors import InputError, PermanentError, TransientError, WorkflowError

log = logging.getLogger(__name__)


class MalformedMessage(PermanentError):
    """A message whose payload does not decode into the source's schema (``on_malformed:
    fail``): the job fails (exit 1) and reads it again next time, so it is not an input error
    of the spec but of the data, which a retry cannot change."""

    category = "malformed_message"


def handle_malformed(
    rejected: list[Rejected],
    policy: str,
    where: str,
    describe: Callable[[int], str],
    dead_letter: Callable[[list[Rejected]], str] | None = None,
) -> list[str]:
    """Apply the malformed policy to a read's rejected payloads: raise MalformedMessage
    (``fail``), or return the warnings to report (``skip``; ``dead_letter`` after
    ``dead_letter(rejected)`` wrote them and said where)."""
    if not rejected:
        return []
    first = f"{describe(rejected[0].index)}: {rejected[0].reason}"
    count = len(rejected)
    if policy == "fail":
        more = f" ({count} malformed in this read)" if count > 1 else ""
        raise MalformedMessage(f"{where}: malformed message at {first}{more}; set "
                               "`on_malformed: skip` or `dead_letter` to read past it",
                               source=where, malformed=count)
    plural = "s" if count > 1 else ""
    if policy == "skip":
        warning = f"{where}: skipped {count} malformed message{plural} (first at {first})"
    else:
        assert dead_letter is not None
        target = dead_letter(rejected)
        warning = f"{where}: wrote {count} malformed message{plural} to {target} (first at {first})"
    log.warning("%s", warning)
    return [warning]


@contextmanager
def translated_kafka_errors(where: str, secrets: list[str]) -> Iterator[None]:
    """librdkafka errors inside become TransientError (a broker that cannot be reached, a
    timeout, anything librdkafka calls retriable) or InputError (an unknown topic, refused
    credentials, a bad setting), prefixed with ``where``, secrets masked."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        yield
    except WorkflowError:
        raise
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        message = redact(str(error.str() if isinstance(error, KafkaError) else exc), secrets)
        code = error.code() if isinstance(error, KafkaError) else None
        if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise InputError(f"{where}: no such topic or partition: {message}",
                             source=where) from None
        if code in _INPUT_CODES(KafkaError):
            raise InputError(f"{where}: {message}", source=where) from None
        raise TransientError(f"{where}: {message}", source=where) from None


def _INPUT_CODES(codes: Any) -> set[int]:  # noqa: N802 (a set of constants)
    names = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "TOPIC_AUTHORIZATION_FAILED",
             "GROUP_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED", "_INVALID_ARG",
             "_SSL", "INVALID_CONFIG", "_UNKNOWN_TOPIC")
    return {getattr(codes, n) for n in names if hasattr(codes, n)}
