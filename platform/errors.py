"""The error taxonomy of raysight workflows.

Every error is a :class:`WorkflowError`. Only :class:`TransientError` is retried by the
executor. Each class pickles cleanly, so an error raised inside a Ray task is still caught
by ``except TransientError`` around the executor (Ray re-raises it as a subclass of both
``RayTaskError`` and the original class).
"""

from __future__ import annotations

from typing import Any


class WorkflowError(Exception):
    """Base class: a failure of a workflow step, with a message a user can act on."""

    retryable: bool = False
    #: short machine-readable category used in result.json and events
    category: str = "workflow_error"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: category, class name, message and details."""
        return {
            "category": self.category,
            "error": type(self).__name__,
            "message": self.message,
            **{k: _jsonable(v) for k, v in self.details.items()},
        }


def _rebuild(cls: type[WorkflowError], message: str, details: dict[str, Any]) -> WorkflowError:
    return cls(message, **details)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class TransientError(WorkflowError):
    """A failure that may succeed when tried again (a dropped connection, a busy service)."""

    retryable = True
    category = "transient"


class PermanentError(WorkflowError):
    """A failure that will fail again the same way; never retried."""

    category = "permanent"


class InputError(PermanentError):
    """Bad user input: a spec value, a file, a column or a value that cannot be used.

    The CLI exits with status 2 for these, without a traceback.
    """

    category = "invalid_input"


class PlanError(PermanentError):
    """The workflow is wired wrongly (a mapped step with nothing to map over): a defect in the
    code that built it, not in the user's input, so the CLI reports a failed job (exit 1)."""

    category = "invalid_plan"


class StepTimeout(WorkflowError):
    """A step (or the whole job) ran past its time limit and was cancelled."""

    category = "timeout"

    def __init__(self, message: str = "", timeout_s: float | None = None, **details: Any) -> None:
        super().__init__(message, timeout_s=timeout_s, **details)
        self.timeout_s = timeout_s


class ResourceExhausted(WorkflowError):
    """Not enough memory, GPUs or custom resources for a step (or Ray ran out of memory)."""

    category = "resource_exhausted"


class DependencyFailure(WorkflowError):
    """An upstream step or an external dependency failed, so this step cannot run."""

    category = "dependency_failure"


class ConditionNotMet(WorkflowError):
    """A guarded step's condition was false where the caller required it to run."""

    category = "condition_not_met"


class PermissionDenied(WorkflowError):
    """Access to a file, bucket, table or service was refused."""

    category = "permission_denied"


class InconsistentState(WorkflowError):
    """Stored state (a checkpoint, a manifest) contradicts what the workflow expects."""

    category = "inconsistent_state"


class SerializationError(WorkflowError):
    """A value could not be serialized or deserialized between steps."""

    category = "serialization"


class Cancelled(WorkflowError):
    """The step or job was cancelled (by a user, by fail-fast of a sibling, by preemption)."""

    category = "cancelled"


def root_cause(exc: BaseException) -> BaseException:
    """Return the user-level exception inside Ray's wrappers (``RayTaskError`` and friends)."""
    seen = 0
    while seen < 10:
        cause = getattr(exc, "cause", None)
        if cause is None or cause is exc:
            break
        exc = cause
        seen += 1
    return exc
