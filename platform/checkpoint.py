"""Checkpoints of step outputs, so a job can resume where it stopped (seed §5).

Every completed step's output is written by the Ray task that produced it (the data never
passes through the driver) to ``<url>/<step key>/part-<i>.<arrow|pkl>``: first to a temporary
name, then renamed, so a file that exists is whole. The driver then records the step in
``manifest.json`` (also written to a temporary name and renamed). A run that starts with an
existing manifest restores the recorded steps instead of running them again. ``url`` is any
fsspec URL; a plain path means the local file system.
"""

from __future__ import annotations

import io
import json
import pickle
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import fsspec
import pyarrow as pa

from raysight.errors import InconsistentState, SerializationError

FORMAT_VERSION = 1


@dataclass
class CheckpointStore:
    """Step outputs and their manifest under one fsspec URL."""

    url: str
    spec_version: int | None = None
    _manifest: dict[str, Any] | None = field(default=None, init=False, repr=False)

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
        """The manifest, read once (empty when nothing was checkpointed yet)."""
        if self._manifest is None:
            path = self._path("manifest.json")
            if self.fs.exists(path):
                with self.fs.open(path, "r") as f:
                    self._manifest = json.load(f)
                self._check_versions(self._manifest)
            else:
                self._manifest = {"format_version": FORMAT_VERSION,
                                  "spec_version": self.spec_version, "steps": {}}
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
               reports: list[dict[str, Any]]) -> None:
        """Record a completed step (its partition files are already in place)."""
        fs = self.fs
        reports_path = self._path(key, "reports.pkl")
        buffer = io.BytesIO()
        cloudpickle.dump(reports, buffer)
        self._atomic_write(reports_path, buffer.getvalue())
        manifest = self.manifest()
        manifest["steps"][key] = {"step": step, "parts": parts, "reports": reports_path,
                                  "completed_at": time.time()}
        self._atomic_write(self._path("manifest.json"),
                           json.dumps(manifest, indent=1, default=str).encode())
        fs.invalidate_cache()

    def reports(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        with self.fs.open(entry["reports"], "rb") as f:
            return pickle.load(f)  # noqa: S301 - our own files

    def _atomic_write(self, path: str, data: bytes) -> None:
        fs = self.fs
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with fs.open(tmp, "wb") as out:
            out.write(data)
        fs.mv(tmp, path)
