"""Named connections: where a database is, defined once and named by sources.

A source says ``connection: warehouse`` instead of its own ``url`` or ``path``. Connections
come from the job spec's ``connections:`` section and from a connections file (YAML, the
same ``connections:`` mapping): ``--connections FILE`` on the command line, else the file
that ``$RAYSIGHT_CONNECTIONS`` names, else ``~/.config/raysight/connections.yaml`` when it
exists. The spec's section wins over the file for the same name.

Secrets: a URL's password should be a ``${NAME}`` reference, resolved from the environment
only where a connection is made. A connections file may hold a literal password (that is
what the file is for; keep it ``chmod 600``); the job spec may not, since the spec is copied
into every run directory (``spec.json``). Resolving a connection hands the source the URL as
written (references unresolved); the spec keeps only ``connection: <name>``, and messages
mask the password.

Example::

    >>> wh = Connection(url="postgresql://me:s3cret@db:5432/shop")  # as a file may hold it
    >>> wh
    Connection(url='postgresql://me:***@db:5432/shop', path=None, connect_timeout_s=None)
    >>> load_connections(connections_file("~/.config/raysight/mine.yaml"))  # doctest: +SKIP
    {'warehouse': Connection(url='postgresql://analyst:${PG_PASSWORD}@db:5432/shop', ...)}
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raysight.errors import InputError
from raysight.secrets import check_references, masked_url, without_references

log = logging.getLogger(__name__)
#: the environment variable naming a connections file
CONNECTIONS_ENV = "RAYSIGHT_CONNECTIONS"
#: the connections file used when neither ``--connections`` nor the variable names one
DEFAULT_CONNECTIONS_FILE = Path("~/.config/raysight/connections.yaml")
#: the validation context key under which a spec's sources find the known connections
CONTEXT_KEY = "connections"
#: the validation context key that marks the job spec's own section (no literal passwords)
IN_SPEC_KEY = "connections_in_spec"

_PASSWORD_PARAMS = ("password", "passwd", "pwd")


class Connection(BaseModel):
    """One named connection: a server database ``url`` or a SQLite ``path``.

    ``url`` may hold ``${NAME}`` references (resolved from the environment only where a
    connection is made); ``connect_timeout_s`` is the default of the sources that use it (a
    source's own setting wins).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    url: str | None = Field(default=None, min_length=1,
                            description="a server database URL, e.g. "
                                        "postgresql://me:${PG_PASSWORD}@db:5432/shop")
    path: str | None = Field(default=None, min_length=1, description="a SQLite file")
    connect_timeout_s: float | None = Field(default=None, gt=0, le=300)
    #: where the connection was defined (``the job spec`` or a file), for messages
    _origin: str = PrivateAttr(default="the job spec")

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None:
            return url
        check_references(url)
        if "://" not in url:
            raise ValueError("not a URL (scheme://user@host:port/database)")
        if (info.context or {}).get(IN_SPEC_KEY) and _literal_password(url):
            raise ValueError("a password in the job spec must be a ${NAME} reference (the "
                             "spec is copied into every run directory); put a literal "
                             "password in a connections file instead")
        return url

    @model_validator(mode="after")
    def _one_place(self) -> Connection:
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` (a server database) or `path` "
                             "(a SQLite file)")
        return self

    def __repr_args__(self) -> Any:  # a literal password never reaches a log line
        for key, value in super().__repr_args__():
            yield key, masked_url(value) if key == "url" and isinstance(value, str) else value

    @property
    def origin(self) -> str:
        """Where the connection was defined: ``the job spec`` or the file's path."""
        return self._origin

    def defined_in(self, origin: str) -> Connection:
        """This connection, marked as defined in ``origin`` (for messages)."""
        out = self.model_copy()
        out._origin = origin
        return out


def _literal_password(url: str) -> bool:
    """Whether ``url`` holds a password that is not made of ``${NAME}`` references only."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a bad port: the source's own checks say so
        return False
    values = [password] if password is not None else []
    values += [v for k, v in parse_qsl(parts.query) if k.lower() in _PASSWORD_PARAMS]
    return any(without_references(v) for v in values)


_CONNECTIONS = TypeAdapter(dict[str, Connection])


def connections_file(explicit: str | Path | None = None) -> Path | None:
    """The connections file to read: ``explicit`` (``--connections``), else the one
    ``$RAYSIGHT_CONNECTIONS`` names, else ``~/.config/raysight/connections.yaml`` when it
    exists; None when there is none."""
    if explicit is not None:
        return Path(explicit).expanduser()
    named = os.environ.get(CONNECTIONS_ENV)
    if named:
        return Path(named).expanduser()
    default = DEFAULT_CONNECTIONS_FILE.expanduser()
    return default if default.is_file() else None


def load_connections(path: str | Path | None) -> dict[str, Connection]:
    """The connections a file defines (``connections: {name: {url: ...}}``); InputError
    naming the file and the field for a missing, unreadable or invalid file. A relative
    SQLite ``path`` resolves against the file's folder."""
    if path is None:
        return {}
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"connections file not found: {path}", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read connections file {path}: {err}",
                         path=str(path)) from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {err}", path=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"connections"}:
        raise InputError(f"{path}: a connections file holds one mapping, `connections:` "
                         "(name: {url: ...} or {path: ...})", path=str(path))
    try:
        found = _CONNECTIONS.validate_python(data.get("connections") or {})
    except ValidationError as err:
        problems = "\n".join(
            f"  connections.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in err.errors())
        raise InputError(f"{path}: invalid connections file\n{problems}",
                         path=str(path)) from None
    if any(c.url is not None and _literal_password(c.url) for c in found.values()):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s holds a password and others may read it (mode %s): chmod 600 it, "
                        "or use ${NAME} references", path, stat.filemode(mode))
    out = {}
    for name, connection in found.items():
        if connection.path is not None and not os.path.isabs(connection.path):
            connection = connection.model_copy(
                update={"path": str((path.parent / connection.path).resolve())})
        out[name] = connection.defined_in(str(path))
    return out


def known_connections(spec_section: Any, file: dict[str, Connection] | str | Path | None
                      ) -> dict[str, Connection | None]:
    """The connections a spec's sources may name: the file's, then the spec's section over
    them (the spec wins for the same name). A spec connection that is invalid maps to None
    (its own field reports the problem; sources naming it are not also told it is unknown).
    """
    known: dict[str, Connection | None] = dict(
        file if isinstance(file, dict) else load_connections(connections_file(file)))
    if isinstance(spec_section, dict):
        for name, value in spec_section.items():
            try:
                known[str(name)] = Connection.model_validate(value, context={IN_SPEC_KEY: True})
            except ValidationError:
                known[str(name)] = None
    return known


def uses_connections(data: Any) -> bool:
    """Whether a spec dict (version 1 or 2) has a source or an export (a database sink) that
    names a connection."""
    if not isinstance(data, dict):
        return False
    sources = list(data["sources"].values()) if isinstance(data.get("sources"), dict) else []
    sources.append(data.get("source"))
    if isinstance(data.get("exports"), list):
        sources += data["exports"]
    return any(isinstance(s, dict) and "connection" in s for s in sources)


def lookup(name: str, info: ValidationInfo) -> Connection | None:
    """The connection ``name`` for a source config's validator: None when the spec is
    validated without connections (a config built in Python: resolved later) or when the
    connection itself is invalid; ValueError for an unknown name, listing the known ones
    with the closest match."""
    import difflib

    context = info.context or {}
    if CONTEXT_KEY not in context:
        return None
    known: dict[str, Connection | None] = context[CONTEXT_KEY]
    if name not in known:
        near = difflib.get_close_matches(name, list(known), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        where = ", ".join(sorted(known)) or "none (define one in the spec's `connections:` " \
            f"section or a connections file: --connections, ${CONNECTIONS_ENV} or " \
            f"{DEFAULT_CONNECTIONS_FILE})"
        raise ValueError(f"unknown connection {name!r}{hint} (known: {where})")
    return known[name]


def validation_context(data: Any, connections: dict[str, Connection] | str | Path | None
                       ) -> dict[str, Any]:
    """The pydantic validation context of a job spec dict: its section holds no literal
    password, and the known connections, read only when a source names one (so a broken
    connections file fails only the jobs that use it)."""
    context: dict[str, Any] = {IN_SPEC_KEY: True}
    if uses_connections(data):
        section = data.get("connections") if isinstance(data, dict) else None
        context[CONTEXT_KEY] = known_connections(section, connections)
    return context


__all__ = [
    "CONNECTIONS_ENV",
    "DEFAULT_CONNECTIONS_FILE",
    "Connection",
    "connections_file",
    "known_connections",
    "load_connections",
    "lookup",
    "uses_connections",
    "validation_context",
]
