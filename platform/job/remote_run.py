"""Run directories at an fsspec URL (``--run-dir s3://bucket/runs``): storage that outlives a
Ray session and that every node of a cluster reaches.

A run needs a local folder while it runs (its driver lock, staged exports and an event log
flushed line by line), so a job whose run root is a URL runs in a local mirror of the same
layout (``~/.cache/raysight/runs/<hash of the URL>/<job id>``, or under
``RAYSIGHT_CACHE_DIR``) and its checkpoints go to the URL directly; when the job ends, however
it ends, its files are copied to ``<URL>/<job id>/``, ``result.json`` last, so a reader that
finds ``result.json`` there finds every file with it. Resuming a run from a URL first copies
its spec, result and events back into the mirror. Credentials and endpoints come from the
environment the filesystem reads (``AWS_*``, ``AWS_ENDPOINT_URL`` for S3).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from raysight.errors import InputError

#: the files of a run folder that a resume or ``inspect`` reads back from the URL
RECORD_FILES = ("spec.json", "events.jsonl", "audit.jsonl", "result.json")
#: what never leaves the local mirror
_LOCAL_ONLY = (".staging", ".sinks", "checkpoints", ".driver.lock")


def is_url(run_dir: str | os.PathLike[str]) -> bool:
    """True for a run root on a non-local filesystem (``s3://``, ``gs://``, ``memory://``)."""
    text = str(run_dir)
    return "://" in text and not text.startswith("file://")


def filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise InputError(f"run directory {url}: {err}", path=url) from None
    return fs, str(path).rstrip("/")


def local_mirror(url: str) -> Path:
    """The local folder runs under ``url`` run in."""
    cache = Path(os.environ.get("RAYSIGHT_CACHE_DIR", "~/.cache/raysight")).expanduser()
    return cache / "runs" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    try:
        return bool(fs.exists(path))
    except OSError as err:
        raise InputError(f"run directory {url} cannot be reached: {err}", path=url) from None


def read_text(location: str | os.PathLike[str]) -> str | None:
    """The text of a local file or of one at a URL; None when there is none."""
    if not is_url(location):
        path = Path(location)
        return path.read_text(encoding="utf-8") if path.exists() else None
    fs, key = filesystem(str(location))
    try:
        return bytes(fs.cat_file(key)).decode("utf-8")
    except FileNotFoundError:
        return None


def upload(job_dir: Path, url: str) -> list[str]:
    """Copy the run folder's files to ``url``, ``result.json`` last; returns their names."""
    fs, root = filesystem(url)
    files = sorted((p for p in job_dir.rglob("*") if p.is_file()
                    and p.relative_to(job_dir).parts[0] not in _LOCAL_ONLY
                    and not p.name.endswith(".tmp")),
                   key=lambda p: (p.name == "result.json", str(p)))
    for path in files:
        relative = path.relative_to(job_dir).as_posix()
        fs.put_file(str(path), f"{root}/{relative}")
    return [p.relative_to(job_dir).as_posix() for p in files]


def download_records(url: str, job_dir: Path) -> None:
    """Copy a run's record files from ``url`` into the local mirror ``job_dir``."""
    fs, root = filesystem(url)
    job_dir.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        target = job_dir / name
        try:
            data = fs.cat_file(f"{root}/{name}")
        except FileNotFoundError:
            target.unlink(missing_ok=True)
            continue
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
