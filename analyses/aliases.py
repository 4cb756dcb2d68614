"""Other spellings of an analysis in a job spec, rewritten to the kernel's own form.

::

    resolve_custom({"type": "custom", "name": "outlier_detection", "params": {"column": "v"}})
    # {"type": "outlier_detection", "column": "v"}

``{type: custom, name: X, params: {...}}`` is the seed's way to name any kernel: ``name`` is a
kernel registered in :data:`raysight.registry.analyses` (built in, from an entry point or at
run time), or one of the seed's names in :data:`SEED_NAMES`, and ``params`` is that kernel's
config. The job spec resolves it while it validates the analysis (before the kernels' union
sees it), so the spec holds the kernel's own config and no kernel looks another one up.
Errors name the fields as the user wrote them (``name``, ``params.<field>``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from raysight import registry
from raysight.plugins import PluginConfig

__all__ = ["CUSTOM", "SEED_NAMES", "CustomForm", "resolve_custom"]

CUSTOM = "custom"
#: the seed's names of kernels that raysight registers under another name
SEED_NAMES = {"text_frequency_analysis": "text_frequency"}


class CustomForm(PluginConfig):
    """``{type: custom, name: <kernel>, params: {...}}``; ``params`` is the kernel's config.

    ``name`` is any registered analysis, or another name listed in :data:`SEED_NAMES`.
    """

    type: Literal["custom"] = "custom"
    #: a kernel registered under the ``raysight.analyses`` entry-point group or at run time
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


def resolve_custom(value: Any) -> Any:
    """``{type: X, **params}`` for the custom form, anything else unchanged.

    Raises pydantic's ValidationError located in the custom form (``name``, ``params.k``)
    when the name is no registered kernel (listing the known ones) or ``params`` is not a
    valid config of that kernel; a pydantic validator re-raises it under its own field.
    """
    if not (isinstance(value, dict) and value.get("type") == CUSTOM):
        return value
    form = CustomForm.model_validate(value)
    kernel = _kernel(form.name)
    config: type[BaseModel] = kernel.Config
    data = dict(form.params)
    if "type" in config.model_fields:
        data.setdefault("type", kernel.name)
    try:
        config.model_validate(data)
    except ValidationError as err:
        raise ValidationError.from_exception_data(
            "custom analysis",
            [_located(e, ("params", *e["loc"])) for e in err.errors()],
        ) from None
    return data


def _kernel(name: str) -> Any:
    """The registered analysis class called ``name`` (or its seed name)."""
    known = registry.analyses.names()
    problem = None
    if name == CUSTOM:
        problem = f"'custom' cannot run itself; name one of: {', '.join(known)}"
    elif name not in known and SEED_NAMES.get(name) not in known:
        problem = f"unknown analysis kernel {name!r}; known: {', '.join(known)}"
    if problem is not None:
        error = PydanticCustomError("unknown_kernel", "{message}", {"message": problem})
        raise ValidationError.from_exception_data(
            "custom analysis", [InitErrorDetails(type=error, loc=("name",), input=name)]
        )
    return registry.analyses.get(name if name in known else SEED_NAMES[name])


def _located(error: Any, loc: tuple[str | int, ...]) -> InitErrorDetails:
    """One error of a validation, at ``loc``, with its type and message."""
    kind = PydanticCustomError(error["type"], "{message}", {"message": error["msg"]})
    return InitErrorDetails(type=kind, loc=loc, input=error.get("input"))
