"""``${NAME}`` references to environment variables: checked in the spec, resolved only where a
connection is made (a Ray worker), masked in messages.

A spec names a secret by reference (``password: ${PG_PASSWORD}``), so the spec, its copy in
the run directory and the arguments of Ray tasks never hold the value itself.

Example::

    >>> import os
    >>> os.environ["EXAMPLE_TOKEN"] = "s3cr3t"
    >>> check_references("Bearer ${EXAMPLE_TOKEN}")
    ['EXAMPLE_TOKEN']
    >>> resolve("Bearer ${EXAMPLE_TOKEN}", "the header")
    'Bearer s3cr3t'
    >>> redact("token s3cr3t refused", ["s3cr3t"])
    'token *** refused'
"""

from __future__ import annotations

import os
import re
from typing import Any

from raysight.errors import InputError

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USERINFO = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]*@")
MASK = "***"


def masked_url(text: str) -> str:
    """``text`` with the password of each ``scheme://user:password@`` in it shown as ``***``."""
    return _USERINFO.sub(rf"\g<1>{MASK}@", text)


def without_references(text: str) -> str:
    """``text`` without its ``${NAME}`` references: what of it is written out literally."""
    return _REFERENCE.sub("", text)


def check_references(text: str) -> list[str]:
    """The variable names ``text`` refers to (ValueError for a ``${...}`` that is not a
    variable name, for spec validation)."""
    names = _REFERENCE.findall(text)
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"`${{{name}}}` is not an environment variable reference "
                             "(letters, digits and _)")
    return names


def check_settings(settings: dict[str, Any], where: str = "config") -> None:
    """ValueError for client settings (librdkafka's ``sasl.password`` ...) whose ``${...}`` is
    not a variable name, or whose key names a password or secret but whose value is written
    out rather than a ``${NAME}`` reference (a spec is copied into every run directory)."""
    for key, value in settings.items():
        if not isinstance(value, str):
            continue
        try:
            check_references(value)
        except ValueError as err:
            raise ValueError(f"{where}.{key}: {err}") from None
        secret = any(word in key.lower() for word in ("password", "secret"))
        if secret and without_references(value):
            raise ValueError(f"{where}.{key} must be a ${{NAME}} reference: the spec is copied "
                             "into the run directory")


def resolve(text: str, what: str) -> str:
    """``text`` with each ``${NAME}`` replaced by the environment variable's value; InputError
    naming the variable and ``what`` refers to it when one is not set."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise InputError(f"environment variable {name} is not set ({what} refers to "
                             f"${{{name}}})", variable=name)
        return os.environ[name]

    return _REFERENCE.sub(value, text)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each secret (longest first) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
