"""The registered plugins and their options, as ``raysight plugins`` prints them.

Every plugin kind is an entry point group (``raysight.connectors`` ...); a plugin another
package installs is listed with the distribution it came from, and its options are those of
its pydantic ``Config`` (the ones a spec is validated against).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import PydanticUndefined

from raysight import registry

KINDS: dict[str, registry.Registry] = {
    "connectors": registry.connectors,
    "preprocessors": registry.preprocessors,
    "analyses": registry.analyses,
    "charts": registry.charts,
    "exporters": registry.exporters,
    "notifiers": registry.notifiers,
}


def catalog(kind: str | None = None, name: str | None = None) -> list[str]:
    """Lines: every kind's plugins (``kind`` None), one kind's plugins with their options, or
    one plugin's options (``name``); InputError naming an unknown kind or plugin."""
    if kind is None:
        return [f"{k}: {', '.join(r.names())}" for k, r in KINDS.items()]
    plugins = _kind(kind)
    names = [name] if name is not None else plugins.names()
    lines: list[str] = []
    for plugin_name in names:
        cls = plugins.get(plugin_name)
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        lines.append(f"{plugin_name}  ({plugins.origin(plugin_name)})"
                     + (f": {summary}" if summary else ""))
        lines += ["  " + option for option in options(cls.Config, plugins.discriminator)]
    return lines


def options(config: Any, discriminator: str) -> list[str]:
    """One line per field of a plugin's config: name, type, default (or required), and
    its description where the field has one."""
    out = []
    for field_name, field in config.model_fields.items():
        if field_name == discriminator or field.exclude:
            continue  # the type itself, or a field derived from the others
        shown = field.alias or field_name
        default = "required" if field.default is PydanticUndefined and \
            field.default_factory is None else f"default {_default(field)}"
        text = f"{shown}: {_type_name(field.annotation)} ({default})"
        if field.description:
            text += f" - {field.description}"
        out.append(text)
    return out


def _kind(kind: str) -> registry.Registry:
    try:
        return KINDS[kind]
    except KeyError:
        from raysight.errors import InputError

        raise InputError(f"unknown plugin kind {kind!r} (kinds: {', '.join(KINDS)})",
                         kind=kind) from None


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    return repr(value)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("NoneType", "None")
    return re.sub(r"\b(?:typing|typing_extensions|[a-z_]+(?:\.[a-z_]+)+)\.", "", text)
