"""Conformance checks for plugins: the contract every connector, preprocessor, analysis, chart,
exporter and notifier meets, runnable as pytest cases (after scikit-learn's
``parametrize_with_checks``).

Example (a plugin author's test module)::

    from raysight.testing import Example, parametrize_with_checks

    EXAMPLES = [Example("analysis", "my_kernel", {"type": "my_kernel", "column": "x"}, table)]

    @parametrize_with_checks(EXAMPLES)
    def test_my_plugin_conforms(check, tmp_path):
        check(tmp_path)

Each check is also a plain function, ``check_x(plugin, config, table=None, *, kind=None,
tmp_path=None)``, that raises ``AssertionError`` naming what broke. ``plugin`` is a plugin
class or a registered name; ``config`` is the example config as a job spec would hold it (for a
connector, a function of a folder that writes a source there and returns the config);
``table`` is a small example table (the source's content for a connector, an analysis result
for a chart or an exporter). Checks call plugin methods directly: no Ray is started.

The package's modules: :mod:`.suite` (examples and running them), :mod:`.contract` (checks of
every kind), :mod:`.kernels` (preprocessors and analyses), :mod:`.io` (connectors, charts,
exporters), :mod:`.compare`, :mod:`.partitions` and :mod:`.plugins` (what the checks share).
"""

from raysight.testing.compare import assert_results_match, assert_tables_match
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
from raysight.testing.partitions import partitionings
from raysight.testing.plugins import KINDS
from raysight.testing.suite import (
    CHECKS,
    Example,
    PluginCheck,
    check_plugin,
    missing_examples,
    parametrize_with_checks,
)

__all__ = [
    "CHECKS",
    "KINDS",
    "Example",
    "PluginCheck",
    "assert_results_match",
    "assert_tables_match",
    "check_analysis_edge_tables",
    "check_analysis_partitions",
    "check_analysis_tree_merge",
    "check_chart_renders",
    "check_config_in_schema",
    "check_connector_reads",
    "check_exporter_leaves_nothing_on_error",
    "check_exporter_writes",
    "check_missing_column",
    "check_pickles",
    "check_plugin",
    "check_preprocessor_edge_tables",
    "check_preprocessor_partitions",
    "missing_examples",
    "parametrize_with_checks",
    "partitionings",
]
