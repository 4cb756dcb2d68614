"""Registries that connect the engine to connectors, kernels and exporters.

Built-in and third-party plugins are found through Python entry points, one group per kind
(``raysight.connectors``, ``raysight.preprocessors``, ``raysight.analyses``,
``raysight.charts``, ``raysight.exporters``, ``raysight.notifiers``). Code may also register a
plugin directly, e.g. in a notebook::

    from raysight.registry import analyses
    analyses.register(MyKernel)
"""

from __future__ import annotations

import difflib
import logging
import threading
from importlib.metadata import entry_points
from typing import Any

from raysight.errors import InputError

log = logging.getLogger(__name__)


class UnknownPlugin(InputError):
    """No plugin of that kind is registered under that name."""

    category = "unknown_plugin"


#: held while entry points load (one plugin's import may load another kind's registry)
_LOADING = threading.RLock()


class Registry:
    """Plugins of one kind, by name; entry points are loaded on first use."""

    def __init__(self, kind: str, discriminator: str, singular: str) -> None:
        self.kind = kind
        self.singular = singular
        self.discriminator = discriminator
        self.group = f"raysight.{kind}"
        self._plugins: dict[str, type] = {}
        #: where each plugin came from: the distribution of its entry point, or "code"
        self._origins: dict[str, str] = {}
        self._loaded = False
        self._loading = False

    def register(self, plugin: type, name: str | None = None) -> type:
        """Add a plugin class (usable as a decorator); the name defaults to ``plugin.name``."""
        name = name or getattr(plugin, "name")  # noqa: B009
        self._plugins[name] = plugin
        self._origins.setdefault(name, "registered in code")
        return plugin

    def _load(self) -> None:
        if self._loaded:
            return
        with _LOADING:  # another thread waits until the plugins are all there
            if self._loaded or self._loading:  # a plugin's import asking again
                return
            self._loading = True
            try:
                self._load_entry_points()
            finally:
                self._loaded, self._loading = True, False

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=self.group):
            if ep.name in self._plugins:
                continue
            try:
                self._plugins[ep.name] = ep.load()
                dist = ep.dist
                self._origins[ep.name] = (f"{dist.name} {dist.version}" if dist is not None
                                          else f"entry point {ep.value}")
            except Exception as err:  # a broken third-party plugin must not break the others
                log.warning("cannot load %s plugin %r from %s: %s", self.kind, ep.name,
                            ep.value, err)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._plugins)

    def get(self, name: str) -> type:
        self._load()
        try:
            return self._plugins[name]
        except KeyError:
            known = self.names()
            near = difflib.get_close_matches(str(name), known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UnknownPlugin(f"unknown {self.singular} {name!r} (known: "
                                f"{', '.join(known) or 'none'}){hint}", kind=self.singular,
                                name=str(name), known=known) from None

    def origin(self, name: str) -> str:
        """Where plugin ``name`` comes from: its distribution and version, or code."""
        self.get(name)
        return self._origins.get(name, "registered in code")

    def configs(self) -> list[type]:
        """The Config models of all plugins, in name order (for the job spec union)."""
        return [getattr(self._plugins[n], "Config") for n in self.names()]  # noqa: B009

    def build(self, config: Any) -> Any:
        """Instantiate the plugin for a validated config."""
        return self.get(getattr(config, self.discriminator))(config)


connectors = Registry("connectors", "type", "connector")
preprocessors = Registry("preprocessors", "op", "preprocessing operation")
analyses = Registry("analyses", "type", "analysis")
charts = Registry("charts", "type", "chart")
exporters = Registry("exporters", "format", "export format")
notifiers = Registry("notifiers", "channel", "notification channel")
