"""Events of a job and the observers that receive them.

The engine emits ``step_started``, ``step_succeeded``, ``step_failed``, ``step_skipped`` and
``task_retry``, and for each node of a graph ``node_started``, ``node_succeeded``,
``node_failed`` and ``node_skipped`` (their step is the node's name); the analysis pipeline
adds its domain events (``data_loaded``, ``analysis_completed``, ``job_completed``,
``job_failed``, ``job_cancelled``...). When a resumed job restores a step from its checkpoint,
the engine emits ``step_restored`` and the step's domain events again, marked
``"restored": true`` in their data, so a consumer that counts work done skips them. An
observer that raises is logged and never breaks the workflow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Something that happened in a job; ``data`` is JSON-ready."""

    event_type: str
    job_id: str
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "raysight"
    timestamp: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "job_id": self.job_id,
            "step": self.step,
            "source": self.source,
            "timestamp": self.timestamp,
            "data": self.data,
        }


class Observer(Protocol):
    def on_event(self, event: Event) -> None: ...


class EventLog:
    """Keeps every event in memory, in order (thread-safe)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_type(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.event_type == event_type]


class JsonlObserver:
    """Appends each event as one JSON line to a file, flushed as it happens."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), default=str, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class LoggingObserver:
    """Logs each event with its job id and step."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level

    def on_event(self, event: Event) -> None:
        log.log(self.level, "[%s] %s%s %s", event.job_id, event.event_type,
                f" {event.step}" if event.step else "", event.data or "")


class Observers:
    """Delivers each event to every observer in order; a failing observer is only logged.

    Delivery is serialized: parallel branches and graph nodes emit from their own driver
    threads, and an observer (a progress table, a span map) is never called by two at once;
    every observer sees the events in one order. Re-entrant: an observer may emit."""

    def __init__(self, observers: list[Any] | None = None) -> None:
        self.observers: list[Any] = list(observers or [])
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        return {"observers": self.observers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["observers"])  # type: ignore[misc]

    def add(self, observer: Any) -> None:
        with self._lock:
            self.observers.append(observer)

    def on_event(self, event: Event) -> None:
        with self._lock:
            for observer in self.observers:
                try:
                    observer.on_event(event)
                except Exception:
                    log.exception("observer %r failed on %s", observer, event.event_type)
