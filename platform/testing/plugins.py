"""Plugins under test: their kind, class, config and example table."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from raysight import registry
from raysight.plugins import (
    Analysis,
    AnalysisResult,
    Chart,
    Connector,
    Exporter,
    Notifier,
    Preprocessor,
)

#: plugin kind -> (registry, base class, job spec field, whether that field is a list)
KINDS: dict[str, tuple[registry.Registry, type, str, bool]] = {
    "connector": (registry.connectors, Connector, "source", False),
    "preprocessor": (registry.preprocessors, Preprocessor, "preprocessing", True),
    "analysis": (registry.analyses, Analysis, "analysis", False),
    "chart": (registry.charts, Chart, "visualizations", True),
    "exporter": (registry.exporters, Exporter, "exports", True),
    "notifier": (registry.notifiers, Notifier, "notifications", True),
}

#: a config, or a function of a scratch folder that makes one (and, for a connector that is
#: given its data in Python, returns ``(config, data)``)
ConfigArg = Mapping[str, Any] | Callable[[Path], Any]
PluginArg = type[Any] | str


def kind_of(plugin: PluginArg, kind: str | None) -> str:
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        return kind
    if isinstance(plugin, type):
        for name, (_, base, _, _) in KINDS.items():
            if issubclass(plugin, base):
                return name
        raise ValueError(f"{plugin.__name__} subclasses none of the plugin base classes")
    found = [k for k, (reg, *_) in KINDS.items() if plugin in reg.names()]
    if len(found) != 1:
        raise ValueError(f"name {plugin!r} is registered as {found or 'nothing'}; pass kind=")
    return found[0]


def resolve_plugin(plugin: PluginArg, kind: str | None) -> tuple[str, type[Any]]:
    """The plugin's kind and class (a name is looked up in that kind's registry)."""
    kind = kind_of(plugin, kind)
    cls = plugin if isinstance(plugin, type) else KINDS[kind][0].get(plugin)
    return kind, cls


@contextmanager
def workdir(tmp_path: Path | None) -> Iterator[Path]:
    if tmp_path is not None:
        yield Path(tmp_path)
        return
    with tempfile.TemporaryDirectory(prefix="raysight-check-") as folder:
        yield Path(folder)


def config_dict(config: ConfigArg, folder: Path) -> dict[str, Any]:
    return dict(config_and_data(config, folder)[0])


def config_and_data(config: ConfigArg, folder: Path) -> tuple[Mapping[str, Any], Any]:
    """The config, and the object a connector is given in Python (None for most)."""
    value = config(folder) if callable(config) else config
    return value if isinstance(value, tuple) else (value, None)


def build_plugin(cls: type[Any], config: Mapping[str, Any]) -> Any:
    return cls(cls.Config.model_validate(dict(config)))


def as_frame(table: pa.Table | pl.DataFrame | None, what: str = "an example table") -> pl.DataFrame:
    assert table is not None, f"this check needs {what}"
    if isinstance(table, pl.DataFrame):
        return table
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def roundtrip(value: Any) -> Any:
    """``value`` after the trip into a Ray task (cloudpickle, as Ray uses, where installed)."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - Ray depends on it
        return pickle.loads(pickle.dumps(value))
    return cloudpickle.loads(cloudpickle.dumps(value))


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)


def result_of(table: pa.Table | pl.DataFrame) -> AnalysisResult:
    frame = as_frame(table, "an example result table")
    return AnalysisResult("example", frame.to_arrow(), {"row_count": frame.height})


def preprocess_whole(op: Any) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The partitioned protocol on one partition: statistics (if needed), then apply."""

    def run(df: pl.DataFrame) -> pl.DataFrame:
        if getattr(op, "needs_stats", False):
            return op.apply(df, op.merge_stats([op.partial_stats(df)]), partition=0)
        return op.apply(df)

    return run
