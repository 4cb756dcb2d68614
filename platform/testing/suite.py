"""Running the checks: examples, bound checks, ``check_plugin`` and ``parametrize_with_checks``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from raysight.testing.contract import check_config_in_schema, check_missing_column, check_pickles
from raysight.testing.io import (
    check_chart_renders,
    check_connector_reads,
    check_exporter_leaves_nothing_on_error,
    check_exporter_writes,
)
from raysight.testing.kernels import (
    check_analysis_edge_tables,
    check_analysis_partitions,
    check_analysis_tree_merge,
    check_preprocessor_edge_tables,
    check_preprocessor_partitions,
)
from raysight.testing.plugins import KINDS, ConfigArg, PluginArg, kind_of

#: the checks of each kind, in the order they run
CHECKS: dict[str, tuple[Callable[..., None], ...]] = {
    "connector": (check_pickles, check_config_in_schema, check_connector_reads),
    "preprocessor": (check_pickles, check_config_in_schema, check_missing_column,
                     check_preprocessor_partitions, check_preprocessor_edge_tables),
    "analysis": (check_pickles, check_config_in_schema, check_missing_column,
                 check_analysis_partitions, check_analysis_tree_merge,
                 check_analysis_edge_tables),
    "chart": (check_pickles, check_config_in_schema, check_missing_column, check_chart_renders),
    "exporter": (check_pickles, check_config_in_schema, check_exporter_writes,
                 check_exporter_leaves_nothing_on_error),
    "notifier": (check_pickles, check_config_in_schema),
}


@dataclass(frozen=True)
class Example:
    """One plugin with an example config (and table) to run the checks of its kind on.

    ``name`` is the registered name; ``plugin`` the class, when it is not (yet) looked up
    in the registry. For a connector, ``config`` is a function that writes a source into the
    folder it is given and returns the config, and ``table`` is what the source holds.
    ``variant`` tells apart several examples of one plugin (``analysis[aggregation-median]``).
    """

    kind: str
    name: str
    config: ConfigArg
    table: pa.Table | None = None
    plugin: type[Any] | None = None
    variant: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}[{self.name}{'-' + self.variant if self.variant else ''}]"


@dataclass(frozen=True)
class PluginCheck:
    """One check bound to one example; call it with a folder for its files (pytest's
    ``tmp_path``)."""

    example: Example
    check: Callable[..., None]

    @property
    def id(self) -> str:
        return f"{self.example.id}-{self.check.__name__}"

    def __call__(self, tmp_path: Path | None = None) -> None:
        e = self.example
        self.check(e.plugin or e.name, e.config, e.table, kind=e.kind, tmp_path=tmp_path)


def check_plugin(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None, *,
                 kind: str | None = None, tmp_path: Path | None = None) -> None:
    """Run every check of the plugin's kind (the first failure raises), as
    scikit-learn's ``check_estimator``."""
    kind = kind_of(plugin, kind)
    for check in CHECKS[kind]:
        if tmp_path is None:
            check(plugin, config, table, kind=kind)
            continue
        folder = Path(tmp_path) / check.__name__
        folder.mkdir(parents=True, exist_ok=True)
        check(plugin, config, table, kind=kind, tmp_path=folder)


def parametrize_with_checks(examples: Iterable[Example], *,
                            expected_failures: Mapping[str, str] | None = None) -> Any:
    """A ``pytest.mark.parametrize`` over every check of every example, with ids such as
    ``analysis[descriptive]-check_pickles``; ``expected_failures`` maps such ids to the reason
    they fail (marked ``xfail(strict=True)``: one that passes fails the run). The test takes
    one argument, ``check``, and calls ``check(tmp_path)``."""
    import pytest

    expected = dict(expected_failures or {})
    params = []
    examples = list(examples)
    ids = [e.id for e in examples]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"examples listed twice (give them a variant): {', '.join(twice)}")
    for example in examples:
        for check in CHECKS[example.kind]:
            bound = PluginCheck(example, check)
            reason = expected.pop(bound.id, None)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(bound, id=bound.id, marks=marks))
    if expected:
        raise ValueError(f"expected failures name no check: {', '.join(sorted(expected))}")
    return pytest.mark.parametrize("check", params)


def missing_examples(examples: Iterable[Example]) -> list[str]:
    """``kind[name]`` of every registered plugin without an example, for a test asserting
    that a newly registered plugin adds one."""
    have = {(e.kind, e.name) for e in examples}
    return [f"{kind}[{name}]" for kind, (reg, *_) in KINDS.items() for name in reg.names()
            if (kind, name) not in have]
