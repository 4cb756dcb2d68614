"""Which files a source names, in path order, and the format of each."""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from fsspec import AbstractFileSystem
from fsspec.core import has_magic, url_to_fs
from fsspec.utils import infer_compression

from raysight.connectors.files.config import (
    EXTENSIONS,
    FileSourceConfig,
    Format,
    extension_names,
    format_names,
)
from raysight.connectors.files.errors import translated_errors
from raysight.errors import InputError


@dataclass(frozen=True)
class SourceFile:
    path: str  # as the filesystem names it (no protocol)
    size: int
    relpath: str  # relative to the source folder or glob root: the partition label
    format: Format


#: a URL to its filesystem and path (``fsspec.core.url_to_fs``, or one that adds credentials)
Resolver = Callable[[str], tuple[AbstractFileSystem, str]]


def list_files(
    config: FileSourceConfig, resolve: Resolver = url_to_fs
) -> tuple[AbstractFileSystem, list[SourceFile]]:
    """List the source's files in path order, each with its format; raise if none."""
    user_path = config.path
    with translated_errors(user_path, config.format or "file"):
        fs, root = resolve(user_path)
        # fsspec reuses a filesystem instance across jobs in a Ray worker: list afresh
        fs.invalidate_cache()
        root = root.rstrip("/") or root
        if fs.isfile(root):
            infos = [fs.info(root)]
            base, is_folder = posixpath.dirname(root), False
        elif fs.isdir(root):
            depth = None if config.recursive or _partitioned(fs, root, config.hive) else 1
            found = fs.find(root, maxdepth=depth, withdirs=False, detail=True)
            infos = [i for i in found.values() if not _hidden(_relative(i["name"], root))]
            base, is_folder = root, True
            if not infos:
                raise InputError(f"source folder has no files: {user_path}", path=user_path)
        elif has_magic(root):
            found = fs.glob(root, detail=True)
            infos = [i for i in found.values() if i.get("type") == "file"]
            base, is_folder = _glob_base(root), False
            if not infos:
                raise InputError(f"no files match {user_path}", path=user_path)
        else:
            raise InputError(f"source file not found: {user_path}", path=user_path)
    infos.sort(key=lambda i: i["name"])
    named = [(i["name"], int(i.get("size") or 0)) for i in infos]
    fmt = _resolve_format(config, [n for n, _ in named], is_folder)
    if is_folder:
        # a folder keeps the files named for the format, else those without an extension
        # (part-00000), when the format was given
        matching = [(n, s) for n, s in named if format_of(n) == fmt]
        if not matching and config.format is not None:
            matching = [(n, s) for n, s in named if "." not in posixpath.basename(n)]
        if not matching:
            raise InputError(f"source folder has no {fmt} files: {config.path}", path=config.path)
        named = matching
    files = [SourceFile(n, s, _relative(n, base), fmt) for n, s in named]
    return fs, files


def _resolve_format(config: FileSourceConfig, names: list[str], is_folder: bool) -> Format:
    if config.format is not None:
        return config.format
    path = config.path
    hint = f"set `format` ({format_names()})"
    formats = {format_of(n) for n in names}
    if is_folder:
        formats.discard(None)
        if not formats:
            raise InputError(
                f"source folder has no {extension_names()} files: {path}; {hint}",
                path=path,
            )
    if None in formats:
        unknown = next(n for n in names if format_of(n) is None)
        raise InputError(
            f"cannot tell the format of {posixpath.basename(unknown)} from its extension; "
            f"{hint}",
            path=path,
        )
    if len(formats) > 1:
        raise InputError(
            f"{path} mixes formats ({', '.join(sorted(f for f in formats if f))}); {hint}",
            path=path,
        )
    (fmt,) = formats
    assert fmt is not None
    return fmt


def format_of(name: str) -> Format | None:
    """The format a file name's extension implies (a compression suffix is looked through)."""
    lower = posixpath.basename(name).lower()
    if infer_compression(lower):
        lower = lower.rsplit(".", 1)[0]
    _, ext = posixpath.splitext(lower)
    return EXTENSIONS.get(ext)


def shown(fs: AbstractFileSystem, path: str) -> str:
    """A path for messages: a local path as is, anything else as its URL."""
    url = fs.unstrip_protocol(path)
    return url.removeprefix("file://")


def _partitioned(fs: AbstractFileSystem, root: str, hive: bool | None) -> bool:
    """Whether a folder holds hive partition folders (``year=2024/``), read recursively."""
    if hive is False:
        return False
    return hive is True or any(
        info["type"] == "directory" and "=" in posixpath.basename(info["name"].rstrip("/"))
        for info in fs.ls(root, detail=True)
    )


def _hidden(relpath: str) -> bool:
    return any(part.startswith((".", "_")) for part in relpath.split("/"))


def _relative(name: str, base: str) -> str:
    prefix = base.rstrip("/") + "/"
    return name[len(prefix) :] if name.startswith(prefix) else posixpath.basename(name)


def _glob_base(pattern: str) -> str:
    """The folder part of a glob before its first wildcard: the root of partition labels."""
    return "/".join(itertools.takewhile(lambda part: not has_magic(part), pattern.split("/")))
