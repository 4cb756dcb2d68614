"""How a running job stops: SIGINT and SIGTERM cancel it, and the error it ends with says so."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from raysight.engine.context import RunContext
from raysight.engine.failures import classify
from raysight.errors import Cancelled, WorkflowError
from raysight.job.record import RunRecord

log = logging.getLogger(__name__)

#: signals that stop a job: Ctrl-C, and the SIGTERM of a stop through Ray's Jobs API
STOP_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM (a stop through Ray's Jobs API, or kill)"}


@contextlib.contextmanager
def cancelled_by_signals(ctx: RunContext, record: RunRecord) -> Iterator[None]:
    """While the job runs, SIGINT and SIGTERM cancel it (running tasks are cancelled, the
    result says CANCELED, checkpoints stay for ``raysight resume``); a second one stops the
    process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        if ctx.cancelled:
            raise KeyboardInterrupt
        record.stopped_by = signal.Signals(signum).name
        log.warning("job %s: %s received, cancelling", ctx.job_id, signal.Signals(signum).name)
        ctx.cancel()

    previous = {name: signal.signal(getattr(signal, name), stop) for name in STOP_SIGNALS}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def job_error(exc: BaseException, ctx: RunContext, record: RunRecord) -> WorkflowError:
    """The error a job ended with; after a stop signal, a cancellation whatever broke."""
    err = exc if isinstance(exc, WorkflowError) else classify(exc, "job")
    by = record.stopped_by
    if by is None:
        return err
    step = err.details.get("step")
    during = f" during step {step!r}" if step else ""
    if record.stop_reason:  # the job manager: its reason says what happens next
        return Cancelled(f"job {ctx.job_id} was stopped{during} by {record.stop_reason}",
                         step=step, signal=by)
    how = STOP_SIGNALS.get(by, by)
    return Cancelled(f"job {ctx.job_id} was stopped by {how}{during}"
                     f"; `raysight resume {ctx.job_id}` finishes it", step=step, signal=by)
