"""Database URLs: parsed without their secrets, resolved from the environment in the worker,
shown with the password masked.

Example::

    >>> url = parse_url("postgresql://me:${PG_PASSWORD}@127.0.0.1:5432/test")
    >>> url.shown
    'postgresql://me:***@127.0.0.1:5432/test'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from raysight.errors import InputError
from raysight.secrets import MASK, check_references
from raysight.secrets import redact as redact_secrets
from raysight.secrets import resolve as resolve_references

Dialect = Literal["postgresql", "mysql", "sqlite"]

#: URL scheme -> dialect
SCHEMES: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
DEFAULT_PORTS: dict[Dialect, int] = {"postgresql": 5432, "mysql": 3306}

#: ``scheme://user:password@`` in any text, for masking driver messages
_USERINFO = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]*@")


@dataclass(frozen=True)
class DatabaseUrl:
    """A server database URL's parts, ``${NAME}`` references still in place."""

    dialect: Dialect
    scheme: str
    user: str
    password: str | None = field(repr=False)  # a literal one never reaches a log line
    host: str
    port: int
    database: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def shown(self) -> str:
        """The URL for messages: the password (even a reference) masked."""
        auth = self.user + (f":{MASK}" if self.password is not None else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{'@' if auth else ''}{host}:{self.port}/{self.database}"

    def driver_url(self, connect_timeout_s: float) -> str:
        """The URL connectorx connects with, references resolved (InputError for a missing
        variable): call only where the connection is made, never on the driver."""
        user = quote(resolve(self.user), safe="")
        auth = user
        if self.password is not None:
            auth += ":" + quote(resolve(self.password), safe="")
        params = dict((k, resolve(v)) for k, v in self.params)
        if self.dialect == "postgresql":
            params.setdefault("connect_timeout", str(max(1, round(connect_timeout_s))))
        else:
            params.setdefault("tcp_connect_timeout_ms", str(round(connect_timeout_s * 1000)))
        scheme = "postgresql" if self.dialect == "postgresql" else "mysql"
        host = resolve(self.host)
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        return (f"{scheme}://{auth}{'@' if auth else ''}{host}:{self.port}/"
                f"{quote(resolve(self.database), safe='')}?{urlencode(params)}")

    def secrets(self) -> list[str]:
        """The resolved password, as given and percent-encoded, to mask in messages."""
        if self.password is None:
            return []
        try:
            value = resolve(self.password)
        except InputError:
            return []
        return [s for s in (value, quote(value, safe="")) if s]


def parse_url(url: str) -> DatabaseUrl:
    """The parts of a ``postgresql://``, ``postgres://``, ``mysql://`` or ``mariadb://`` URL
    (ValueError naming what is wrong: the scheme, a port, a reference)."""
    check_references(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        raise ValueError("a SQLite database is named by `path` (its file), not by `url`")
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported database URL scheme {parts.scheme!r} (supported: "
                         f"{', '.join(SCHEMES)}; a SQLite file is given by `path`)")
    dialect = SCHEMES[scheme]
    try:
        port = parts.port or DEFAULT_PORTS[dialect]
    except ValueError:
        raise ValueError("the URL's port must be a number") from None
    if not parts.hostname:
        raise ValueError("the URL names no host (scheme://user@host:port/database)")
    database = parts.path.lstrip("/")
    if not database:
        raise ValueError("the URL names no database (scheme://user@host:port/database)")
    return DatabaseUrl(
        dialect=dialect,
        scheme=scheme,
        user=unquote(parts.username or ""),
        password=None if parts.password is None else unquote(parts.password),
        host=parts.hostname,
        port=port,
        database=unquote(database),
        params=tuple(parse_qsl(parts.query)),
    )


def resolve(text: str) -> str:
    """``text`` with each ``${NAME}`` replaced by the environment variable's value."""
    return resolve_references(text, "the database URL")


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with each secret and any ``scheme://user:password@`` password masked."""
    return _USERINFO.sub(rf"\g<1>{MASK}@", redact_secrets(text, secrets))
