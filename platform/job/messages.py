"""Rendering of ``{placeholder}`` templates in notification messages.

Placeholders are dotted paths into a context: ``{job_id}``, ``{state}``, ``{metrics.row_count}``,
``{result.groups}``. An unknown placeholder stays as written and is reported, never an error.
"""

from __future__ import annotations

import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")


def render(template: str, context: dict[str, Any]) -> tuple[str, list[str]]:
    """The rendered text and the placeholders that had no value."""
    missing: list[str] = []

    def lookup(match: re.Match[str]) -> str:
        node: Any = context
        for part in match.group(1).split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                missing.append(match.group(1))
                return match.group(0)
        if isinstance(node, float):
            return f"{node:g}"
        return str(node)

    return _PLACEHOLDER.sub(lookup, template), missing
