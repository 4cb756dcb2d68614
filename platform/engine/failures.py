"""How a failure raised through Ray maps onto raysight's error taxonomy.

Ray wraps what a task raised (``RayTaskError``), reports lost workers and nodes, cancelled
tasks and the out-of-memory killer with its own exceptions; :func:`classify` turns each into
the :class:`~raysight.errors.WorkflowError` subclass the retry policy decides on.
"""

from __future__ import annotations

import traceback

from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    TaskCancelledError,
    WorkerCrashedError,
)

from raysight.errors import (
    Cancelled,
    PermanentError,
    ResourceExhausted,
    SerializationError,
    StepTimeout,
    TransientError,
    WorkflowError,
    root_cause,
)


def classify(exc: BaseException, step: str) -> WorkflowError:
    """Map whatever a task raised (through Ray's wrappers) onto the error taxonomy."""
    cause = root_cause(exc)
    if isinstance(cause, WorkflowError):
        return cause
    if isinstance(exc, TaskCancelledError) or isinstance(cause, TaskCancelledError):
        return Cancelled(f"step {step!r} was cancelled", step=step)
    if isinstance(exc, OutOfMemoryError):
        return ResourceExhausted(f"step {step!r} ran out of memory: {exc}", step=step)
    if isinstance(exc, (WorkerCrashedError, NodeDiedError, ObjectLostError)):
        return TransientError(f"step {step!r} lost its worker: {type(exc).__name__}", step=step)
    if isinstance(exc, GetTimeoutError):
        return StepTimeout(f"step {step!r} timed out waiting for a result", step=step)
    if isinstance(cause, (TypeError, AttributeError)) and "pickle" in str(cause).lower():
        return SerializationError(f"step {step!r}: {cause}", step=step)
    # a task's own traceback travels as text in Ray's wrapper; a local one is formatted
    detail = getattr(exc, "traceback_str", "") or (
        "".join(traceback.format_exception(cause)) if isinstance(cause, BaseException) else "")
    return PermanentError(f"step {step!r} failed: {type(cause).__name__}: {cause}",
                          step=step, traceback=detail[-4000:])

