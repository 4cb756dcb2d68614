"""The job's commit of its sinks: every write prepared, then all committed, or none.

The results step staged each sink's rows in the run's staging folder
(:func:`raysight.job.steps.stage_sink`); once every step has succeeded, the job calls
:func:`commit_sinks` before it moves its files into the run directory. Each sink prepares
its write (a database sink opens a transaction and loads the rows into it); when all are
prepared, the writes that cannot be taken back (objects uploaded, messages produced) are
committed first, then the transactions. A failure before the last of those rolls back every
transaction not yet committed, so a database table changes only when every sink could write;
what was uploaded or produced before the failure stays (the error says which sinks had
committed).

Example::

    commit_sinks([(0, DatabaseSink(config), ".staging/.sinks/database-1a2b.parquet")])
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from raysight.engine.failures import classify
from raysight.errors import InputError, PermanentError, WorkflowError
from raysight.plugins import PreparedWrite, Sink

log = logging.getLogger(__name__)


def commit_sinks(sinks: list[tuple[int, Sink[Any], str]], job_id: str = "") -> list[str]:
    """Prepare and commit every ``(export index, sink, staged rows)``; the targets written,
    as :meth:`Sink.describe` names them. Raises the first sink's error, its message
    prefixed with ``exports[i] (<target>)``, after rolling back what it can."""
    prepared: list[tuple[int, Sink[Any], PreparedWrite]] = []
    committed: list[str] = []
    try:
        for i, sink, staged in sinks:
            with _named(i, sink, committed):
                prepared.append((i, sink, sink.prepare(staged)))
        # those that cannot be taken back first: a failure among them still rolls back
        # every transaction
        for i, sink, write in sorted(prepared, key=lambda p: p[2].transactional):
            with _named(i, sink, committed):
                write.commit()
            committed.append(f"exports[{i}] ({sink.describe()})")
            log.info("job %s: committed exports[%d] (%s)", job_id, i, sink.describe())
    except BaseException:
        for i, sink, write in prepared:
            if f"exports[{i}] ({sink.describe()})" in committed:
                continue
            try:
                write.rollback()
            except Exception as exc:  # the first error is the one to report
                log.warning("job %s: could not roll back exports[%d] (%s): %s", job_id, i,
                            sink.describe(), exc)
        raise
    return committed


@contextmanager
def _named(i: int, sink: Sink[Any], committed: list[str]) -> Iterator[None]:
    """Errors inside name the sink (and the sinks already committed, which stay)."""
    try:
        yield
    except Exception as exc:
        err = exc if isinstance(exc, WorkflowError) else classify(exc, "commit")
        kept = f" (already committed, and kept: {', '.join(committed)})" if committed else ""
        # the job ran; its target refused the write (a table that exists, a refused login):
        # a permanent failure of the job (exit 1), not bad input caught before it ran
        kind = PermanentError if isinstance(err, InputError) else type(err)
        raise kind(f"exports[{i}] ({sink.describe()}): {err.message}{kept}",
                   **{**err.details, "export": i, "step": "commit"}) from None


__all__ = ["commit_sinks"]
