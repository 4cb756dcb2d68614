"""Checkpoints of step outputs, so a job can resume where it stopped.

Every completed step's output is written by the Ray task that produced it (the data never
passes through the driver) to ``<url>/<step key>/part-<i>.<arrow|pkl>``: first to a temporary
name, then renamed, so a file that exists is whole. The driver then records the step in
``manifest.jsonl``, one JSON line per completed step appended and flushed (a torn last line,
from a crash while appending, is ignored). A run that starts with an existing manifest
restores the recorded steps instead of running them again. ``url`` is any
fsspec URL; a plain path means the local file system.
"""

from __future__ import annotations

import base64
import json
import pickle
import posixpath
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import fsspec
import pyarrow as pa

from raysight.errors import InconsistentState, SerializationError

#: 2: step reports are TaskReport dataclasses (1: dicts)
FORMAT_VERSION = 2
MANIFEST = "manifest.jsonl"


@dataclass
class CheckpointStore:
    """Step outputs and their manifest under one fsspec URL."""

    url: str
    spec_version: int | None = None
    _manifest: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _header_written: bool = field(default=False, init=False, repr=False)
    # the nodes of a graph commit from their own driver threads: one commit at a time, so the
    # header is written once and the manifest's lines never interleave
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False,
                                   compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # workers only write partition files: the manifest stays with the driver
        return {"url": self.url, "spec_version": self.spec_version}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def fs(self) -> Any:
        return fsspec.core.url_to_fs(self.url)[0]

    @property
    def root(self) -> str:
        return fsspec.core.url_to_fs(self.url)[1]

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    # -- worker side ----------------------------------------------------------------------

    def write(self, key: str, part: int, value: Any) -> dict[str, Any]:
        """Persist one partition's output atomically; returns where it went."""
        fs = self.fs
        is_table = isinstance(value, pa.Table)
        name = f"part-{part:05d}.{'arrow' if is_table else 'pkl'}"
        final = self._path(key, name)
        tmp = self._path(key, f".{name}.{uuid.uuid4().hex}.tmp")
        fs.makedirs(self._path(key), exist_ok=True)
        try:
            with fs.open(tmp, "wb") as out:
                if is_table:
                    with pa.ipc.new_file(out, value.schema) as writer:
                        writer.write_table(value)
                else:
                    cloudpickle.dump(value, out)
            fs.mv(tmp, final)
        except (pickle.PicklingError, TypeError) as err:
            raise SerializationError(f"cannot checkpoint the output of {key}: {err}") from None
        return {"path": final, "format": "arrow" if is_table else "pickle",
                "bytes": fs.size(final)}

    def read(self, entry: dict[str, Any]) -> Any:
        """Load one persisted partition (runs in a Ray task)."""
        with self.fs.open(entry["path"], "rb") as f:
            if entry["format"] == "arrow":
                return pa.ipc.open_file(pa.BufferReader(f.read())).read_all()
            return pickle.load(f)

    # -- driver side ----------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The manifest, read once (empty when nothing was checkpointed yet): a header with
        the versions and the completed steps by key."""
        with self._lock:
            return self._load_manifest()

    def _load_manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            path = self._path(MANIFEST)
            header = {"format_version": FORMAT_VERSION, "spec_version": self.spec_version}
            steps: dict[str, Any] = {}
            if self.fs.exists(path):
                with self.fs.open(path, "r") as f:
                    lines = f.read().splitlines()
                for number, line in enumerate(lines):
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        if number == len(lines) - 1:
                            break  # torn by a crash while appending: the step is not done
                        raise InconsistentState(f"corrupt checkpoint manifest {path} at line "
                                                f"{number + 1}", url=self.url) from None
                    if "format_version" in record:
                        header = record
                    else:
                        steps[record["key"]] = record
                self._check_versions(header)
            self._manifest = {**header, "steps": steps}
        return self._manifest

    def _check_versions(self, manifest: dict[str, Any]) -> None:
        found = manifest.get("format_version")
        if found != FORMAT_VERSION:
            raise InconsistentState(
                f"checkpoints at {self.url} have format version {found}; this raysight reads "
                f"version {FORMAT_VERSION}: start the job afresh", url=self.url)
        spec = manifest.get("spec_version")
        if self.spec_version is not None and spec not in (None, self.spec_version):
            raise InconsistentState(
                f"checkpoints at {self.url} were written for spec version {spec}, the job now "
                f"has version {self.spec_version}", url=self.url)

    def completed(self, key: str) -> dict[str, Any] | None:
        """The manifest entry of a step whose every partition file still exists."""
        entry = self.manifest()["steps"].get(key)
        if entry is None:
            return None
        fs = self.fs
        if all(fs.exists(p["path"]) for p in entry["parts"]):
            return entry
        return None

    def commit(self, key: str, step: str, parts: list[dict[str, Any]],
               reports: list[Any]) -> None:
        """Record a completed step (its partition files are already in place) by appending
        one line to the manifest; the step's reports travel inside it."""
        with self._lock:
            self._commit(key, step, parts, reports)

    def _commit(self, key: str, step: str, parts: list[dict[str, Any]],
                reports: list[Any]) -> None:
        manifest = self.manifest()
        record = {"key": key, "step": step, "parts": parts, "completed_at": time.time(),
                  "reports": base64.b64encode(cloudpickle.dumps(reports)).decode()}
        lines = ""
        if not manifest["steps"] and not self._header_written:
            header = {k: v for k, v in manifest.items() if k != "steps"}
            lines = json.dumps(header) + "\n"
        lines += json.dumps(record, default=str) + "\n"
        fs = self.fs
        fs.makedirs(self.root, exist_ok=True)
        with fs.open(self._path(MANIFEST), "a") as out:
            out.write(lines)
            out.flush()
        self._header_written = True
        manifest["steps"][key] = record

    def reports(self, entry: dict[str, Any]) -> list[Any]:
        return pickle.loads(base64.b64decode(entry["reports"]))  # noqa: S301 - our own file
