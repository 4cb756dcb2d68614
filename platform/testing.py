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
"""

from __future__ import annotations

import json
import pickle
import random
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from raysight import registry
from raysight.errors import InputError
from raysight.plugins import (
    Analysis,
    AnalysisResult,
    Chart,
    Connector,
    Exporter,
    Notifier,
    Preprocessor,
    ReportContext,
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

#: plugin kind -> (registry, base class, job spec field, whether that field is a list)
KINDS: dict[str, tuple[registry.Registry, type, str, bool]] = {
    "connector": (registry.connectors, Connector, "source", False),
    "preprocessor": (registry.preprocessors, Preprocessor, "preprocessing", True),
    "analysis": (registry.analyses, Analysis, "analysis", False),
    "chart": (registry.charts, Chart, "visualizations", True),
    "exporter": (registry.exporters, Exporter, "exports", True),
    "notifier": (registry.notifiers, Notifier, "notifications", True),
}
#: seeds of the random partitionings every partition check tries
SEEDS = (0, 1, 2)
RTOL = 1e-9

ConfigArg = Mapping[str, Any] | Callable[[Path], Mapping[str, Any]]
PluginArg = type[Any] | str


# ---------------------------------------------------------------------------------------------
# Plugins, configs and tables


def _kind_of(plugin: PluginArg, kind: str | None) -> str:
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


def _resolve(plugin: PluginArg, kind: str | None) -> tuple[str, type[Any]]:
    """The plugin's kind and class (a name is looked up in that kind's registry)."""
    kind = _kind_of(plugin, kind)
    cls = plugin if isinstance(plugin, type) else KINDS[kind][0].get(plugin)
    return kind, cls


@contextmanager
def _workdir(tmp_path: Path | None) -> Iterator[Path]:
    if tmp_path is not None:
        yield Path(tmp_path)
        return
    with tempfile.TemporaryDirectory(prefix="raysight-check-") as folder:
        yield Path(folder)


def _config_dict(config: ConfigArg, folder: Path) -> dict[str, Any]:
    return dict(config(folder) if callable(config) else config)


def _build(cls: type[Any], config: Mapping[str, Any]) -> Any:
    return cls(cls.Config.model_validate(dict(config)))


def _frame(table: pa.Table | pl.DataFrame | None, what: str = "an example table") -> pl.DataFrame:
    assert table is not None, f"this check needs {what}"
    if isinstance(table, pl.DataFrame):
        return table
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _roundtrip(value: Any) -> Any:
    """``value`` after the trip into a Ray task (cloudpickle, as Ray uses, where installed)."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - Ray depends on it
        return pickle.loads(pickle.dumps(value))
    return cloudpickle.loads(cloudpickle.dumps(value))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


# ---------------------------------------------------------------------------------------------
# Comparing results


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values."""
    return value.tolist() if hasattr(value, "tolist") else value


def _values_match(a: Any, e: Any, rtol: float) -> bool:
    a, e = _plain(a), _plain(e)
    if isinstance(a, float) or isinstance(e, float):
        if a is None or e is None or isinstance(a, str) or isinstance(e, str):
            return False
        fa, fe = float(a), float(e)
        if fa != fa or fe != fe:  # NaN equals NaN here
            return fa != fa and fe != fe
        return fa == fe or abs(fa - fe) <= rtol * max(abs(fa), abs(fe))
    if isinstance(a, Mapping) and isinstance(e, Mapping):
        return list(a) == list(e) and all(_values_match(a[k], e[k], rtol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(e, (list, tuple)):
        return len(a) == len(e) and all(
            _values_match(x, y, rtol) for x, y in zip(a, e, strict=True))
    if isinstance(a, bool) is not isinstance(e, bool):
        return False
    return bool(a == e)


def assert_tables_match(actual: pa.Table | pl.DataFrame, expected: pa.Table | pl.DataFrame,
                        *, rtol: float = RTOL, what: str = "table") -> None:
    """Same column names, dtypes and rows in order; nulls in place; floats to ``rtol``
    relative (NaN equal to NaN); nested values compared element by element."""
    a, e = _frame(actual), _frame(expected)
    assert a.columns == e.columns, f"{what}: columns {a.columns} != {e.columns}"
    assert a.schema == e.schema, f"{what}: schema {dict(a.schema)} != {dict(e.schema)}"
    assert a.height == e.height, f"{what}: {a.height} rows != {e.height}"
    for name in a.columns:
        left, right = a.get_column(name).to_list(), e.get_column(name).to_list()
        for i, (x, y) in enumerate(zip(left, right, strict=True)):
            assert _values_match(x, y, rtol), f"{what}: column {name!r} row {i}: {x!r} != {y!r}"


def assert_results_match(actual: AnalysisResult, expected: AnalysisResult, *,
                         rtol: float = RTOL, what: str = "result") -> None:
    """Two analysis results agree: kind, table (see :func:`assert_tables_match`), summary."""
    assert actual.kind == expected.kind, f"{what}: kind {actual.kind!r} != {expected.kind!r}"
    assert_tables_match(actual.table, expected.table, rtol=rtol, what=f"{what} table")
    assert _values_match(actual.summary, expected.summary, rtol), (
        f"{what} summary: {actual.summary!r} != {expected.summary!r}")


# ---------------------------------------------------------------------------------------------
# Partitionings


def partitionings(df: pl.DataFrame, seeds: Sequence[int] = SEEDS) -> Iterator[list[pl.DataFrame]]:
    """Ways to split ``df`` into consecutive partitions (row order kept): whole, an empty
    partition first, one row per partition (up to 64 rows), and per seed random cuts with
    an empty and a one-row partition among them."""
    n = df.height
    yield [df]
    yield [df.clear(), df]
    if n <= 64:
        yield [df.slice(i, 1) for i in range(n)] or [df.clear()]
    for seed in seeds:
        rng = random.Random(seed)
        cuts = sorted(rng.randint(0, n) for _ in range(rng.randint(1, 5)))
        at = rng.randint(0, max(n - 1, 0))
        cuts = sorted([*cuts, at, min(at + 1, n), rng.choice(cuts)])  # a one-row, an empty part
        bounds = [0, *cuts, n]
        yield [df.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def _tree_merge(kernel: Any, states: list[Any], rng: random.Random) -> Any:
    """Merge adjacent states in random groups, level by level, down to one state."""
    while True:
        groups, i = [], 0
        while i < len(states):
            size = rng.randint(1, 3)
            groups.append(states[i:i + size])
            i += size
        states = [_roundtrip(kernel.merge([_roundtrip(s) for s in g])) for g in groups]
        if len(states) == 1:
            return states[0]


# ---------------------------------------------------------------------------------------------
# Checks every kind meets


def check_pickles(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None, *,
                  kind: str | None = None, tmp_path: Path | None = None) -> None:
    """The class, its validated config and the built plugin survive the trip into a Ray task
    (pickle and cloudpickle), and the copy equals the original."""
    _, cls = _resolve(plugin, kind)
    with _workdir(tmp_path) as folder:
        validated = cls.Config.model_validate(_config_dict(config, folder))
        built = cls(validated)
        for dumps, loads in _picklers():
            assert loads(dumps(cls)) is cls, f"{cls.__name__} does not unpickle to itself"
            copy = loads(dumps(validated))
            assert copy == validated, f"config changed in pickling: {copy!r} != {validated!r}"
            again = loads(dumps(built))
            assert type(again) is cls, f"built plugin unpickles as {type(again).__name__}"
            assert again.config == validated, "built plugin's config changed in pickling"


def _picklers() -> list[tuple[Callable[[Any], bytes], Callable[[bytes], Any]]]:
    found: list[tuple[Callable[[Any], bytes], Callable[[bytes], Any]]] = [
        (pickle.dumps, pickle.loads)]
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - Ray depends on it
        return found
    return [*found, (cloudpickle.dumps, cloudpickle.loads)]


def check_config_in_schema(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None,
                           *, kind: str | None = None, tmp_path: Path | None = None) -> None:
    """The plugin is registered under its name, its config model is in the job spec's JSON
    Schema at its field (``analysis``, ``exports[]``...), and the example config validates
    there: with ``jsonschema`` against the JSON Schema when it is installed, and always
    through the pydantic job spec model."""
    from raysight.job import spec

    kind, cls = _resolve(plugin, kind)
    reg, _, field, is_list = KINDS[kind]
    name = cls.name
    assert name in reg.names() and reg.get(name) is cls, (
        f"{cls.__name__} is not registered as {kind} {name!r}: add an entry point to the "
        f"{reg.group!r} group or call raysight.registry.{reg.kind}.register({cls.__name__})")
    schema = spec.json_schema()
    if _slot_ref(schema, field, is_list, reg.discriminator, name) is None:
        spec.spec_model.cache_clear()  # registered after the spec model was first built
        schema = spec.json_schema()
    ref = _slot_ref(schema, field, is_list, reg.discriminator, name)
    assert ref is not None, f"{kind} {name!r} is not in the job JSON Schema at {field!r}"
    with _workdir(tmp_path) as folder:
        data = json.loads(json.dumps(_config_dict(config, folder)))  # as a JSON/YAML spec has it
        try:
            import jsonschema
        except ImportError:
            jsonschema = None
        assert data.get(reg.discriminator) == name, (
            f"a job spec names the plugin: the example config needs {reg.discriminator}: {name}")
        if jsonschema is not None:
            slot = schema["properties"][field]
            slot_schema = {"$defs": schema["$defs"], **(slot["items"] if is_list else slot)}
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(slot_schema).iter_errors(data))
            assert error is None, (f"the example config does not validate against the job "
                                   f"JSON Schema at {field!r}: {error.message}")
        from pydantic import TypeAdapter

        info = spec.spec_model().model_fields[field]
        value = TypeAdapter(info.annotation).validate_python([data] if is_list else data)
        value = value[0] if is_list else value
        assert isinstance(value, cls.Config), (
            f"the job spec reads the example config as {type(value).__name__}, not "
            f"{cls.Config.__name__}")


def _slot_ref(schema: dict[str, Any], field: str, is_list: bool, discriminator: str,
              name: str) -> str | None:
    """The ``$defs`` reference of plugin ``name`` at the spec field, or None."""
    slot = schema["properties"][field]
    slot = slot["items"] if is_list else slot
    mapping = slot.get("discriminator", {}).get("mapping")
    if mapping is not None:
        return mapping.get(name)
    ref = slot.get("$ref", "")
    prop = schema["$defs"].get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
    return ref if prop.get(discriminator, {}).get("const") == name else None


def check_missing_column(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None,
                         *, kind: str | None = None, tmp_path: Path | None = None) -> None:
    """Each input column the plugin reads, dropped from the table, gives an InputError whose
    message names it. The columns: an analysis's ``required_columns()``, a chart's
    ``columns()``, and for a preprocessor the table's columns its config names (as a value,
    a key or a word of an expression)."""
    kind, cls = _resolve(plugin, kind)
    df = _frame(table)
    with _workdir(tmp_path) as folder:
        config = _config_dict(config, folder)
    built = _build(cls, config)
    if kind == "analysis":
        wanted = list(built.required_columns())
    elif kind == "chart":
        wanted = list(built.columns().values())
    else:  # names the config holds, also inside expressions ("amount > 0")
        wanted = [w for text in _strings(config) for w in (text, *re.findall(r"\w+", text))]
    for column in dict.fromkeys(c for c in wanted if c in df.columns):
        without = df.drop(column)
        calls: list[Callable[[pl.DataFrame], Any]]
        if kind == "analysis":
            calls = [built.run, built.partial]
        elif kind == "chart":
            calls = [lambda d: built.render(_result(d))]
        else:
            calls = [_preprocess_whole(built)]
        for call in calls:
            try:
                call(without)
            except InputError as err:
                assert column in str(err), f"InputError without the column {column!r}: {err}"
            except Exception as err:
                raise AssertionError(f"without column {column!r}: {type(err).__name__}, "
                                     f"not InputError: {err}") from err
            else:
                raise AssertionError(f"without column {column!r}, which the plugin reads, "
                                     "no InputError was raised")


def _preprocess_whole(op: Any) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """The partitioned protocol on one partition: statistics (if needed), then apply."""

    def run(df: pl.DataFrame) -> pl.DataFrame:
        if getattr(op, "needs_stats", False):
            return op.apply(df, op.merge_stats([op.partial_stats(df)]), partition=0)
        return op.apply(df)

    return run


# ---------------------------------------------------------------------------------------------
# Preprocessors


def check_preprocessor_partitions(plugin: PluginArg, config: ConfigArg,
                                  table: pa.Table | None = None, *, kind: str | None = None,
                                  tmp_path: Path | None = None) -> None:
    """Applied per partition (with merged statistics when ``needs_stats``), every partition
    has the whole table's output schema and their concatenation equals ``apply`` on the whole
    table, for random partitionings with empty and one-row partitions."""
    _, cls = _resolve(plugin, kind)
    df = _frame(table)
    with _workdir(tmp_path) as folder:
        op = _build(cls, _config_dict(config, folder))
    whole = op.apply(df)
    for parts in partitionings(df):
        shipped = _roundtrip(op)
        stats = None
        if getattr(op, "needs_stats", False):
            partials = [_roundtrip(shipped.partial_stats(p)) for p in parts]
            stats = _roundtrip(shipped.merge_stats(partials))
        outs = [shipped.apply(p, stats, partition=i) for i, p in enumerate(parts)]
        sizes = [p.height for p in parts]
        for i, out in enumerate(outs):
            assert out.schema == whole.schema, (
                f"partition {i} of {sizes}: schema {dict(out.schema)} != {dict(whole.schema)}")
        assert_tables_match(pl.concat(outs), whole, what=f"partitions {sizes}")


def check_preprocessor_edge_tables(plugin: PluginArg, config: ConfigArg,
                                   table: pa.Table | None = None, *, kind: str | None = None,
                                   tmp_path: Path | None = None) -> None:
    """A one-row and an empty table give a DataFrame (or an InputError), nothing else."""
    _, cls = _resolve(plugin, kind)
    df = _frame(table)
    with _workdir(tmp_path) as folder:
        op = _build(cls, _config_dict(config, folder))
    for edge in (df.head(1), df.clear()):
        try:
            out = _preprocess_whole(op)(edge)
        except InputError:
            continue
        assert isinstance(out, pl.DataFrame), f"apply returned {type(out).__name__}"


# ---------------------------------------------------------------------------------------------
# Analyses


def _reference(kernel: Any, df: pl.DataFrame) -> AnalysisResult:
    result = kernel.run(df)
    assert isinstance(result, AnalysisResult), f"run returned {type(result).__name__}"
    return result


def _distributed(kernel: Any, parts: list[pl.DataFrame]) -> AnalysisResult:
    """The result the engine computes over several partitions (shuffle or partial/combine)."""
    shipped = _roundtrip(kernel)
    if kernel.shuffle_keys():
        n = 3
        sharded = [_roundtrip(shipped.shard(p, n)) for p in parts]
        assert all(len(s) == n for s in sharded), f"shard did not return {n} tables"
        reduced = [_roundtrip(shipped.reduce_shard([s[j] for s in sharded])) for j in range(n)]
        return shipped.finish(reduced)  # type: ignore[no-any-return]
    partials = [_roundtrip(shipped.partial(p)) for p in parts]
    return shipped.combine(partials)  # type: ignore[no-any-return]


def check_analysis_partitions(plugin: PluginArg, config: ConfigArg,
                              table: pa.Table | None = None, *, kind: str | None = None,
                              tmp_path: Path | None = None) -> None:
    """partial on each partition then combine (or the shuffle path: shard, reduce_shard,
    finish) equals ``run`` on the whole table, for random partitionings with empty and one-row
    partitions; partial states make the trip into a Ray task on the way."""
    _, cls = _resolve(plugin, kind)
    df = _frame(table)
    with _workdir(tmp_path) as folder:
        kernel = _build(cls, _config_dict(config, folder))
    expected = _reference(kernel, df)
    for parts in partitionings(df):
        actual = _distributed(kernel, parts)
        assert_results_match(actual, expected, what=f"partitions {[p.height for p in parts]}")


def check_analysis_tree_merge(plugin: PluginArg, config: ConfigArg,
                              table: pa.Table | None = None, *, kind: str | None = None,
                              tmp_path: Path | None = None) -> None:
    """For a mergeable kernel: partial states merged as a random tree of adjacent groups,
    then ``finalize`` (and ``combine`` of the one merged state), equal ``run``. Kernels that
    are not mergeable, or take the shuffle path, have nothing to check here."""
    _, cls = _resolve(plugin, kind)
    df = _frame(table)
    with _workdir(tmp_path) as folder:
        kernel = _build(cls, _config_dict(config, folder))
    if not kernel.mergeable or kernel.shuffle_keys():
        return
    expected = _reference(kernel, df)
    for seed, parts in enumerate(partitionings(df)):
        shipped = _roundtrip(kernel)
        merged = _tree_merge(shipped, [shipped.partial(p) for p in parts], random.Random(seed))
        sizes = [p.height for p in parts]
        assert_results_match(shipped.finalize(merged), expected, what=f"finalize of {sizes}")
        assert_results_match(shipped.combine([merged]), expected, what=f"combine of {sizes}")


def check_analysis_edge_tables(plugin: PluginArg, config: ConfigArg,
                               table: pa.Table | None = None, *, kind: str | None = None,
                               tmp_path: Path | None = None) -> None:
    """On a one-row and an empty table, ``run`` and partial/combine agree: both give the same
    result, or both raise InputError."""
    _, cls = _resolve(plugin, kind)
    df = _frame(table)
    with _workdir(tmp_path) as folder:
        kernel = _build(cls, _config_dict(config, folder))
    for edge in (df.head(1), df.clear()):
        outcomes: list[Any] = []
        for compute in (lambda d: _reference(kernel, d), lambda d: _distributed(kernel, [d])):
            try:
                outcomes.append(compute(edge))
            except InputError as err:
                outcomes.append(err)
        run, distributed = outcomes
        what = f"{edge.height}-row table"
        if isinstance(run, InputError) or isinstance(distributed, InputError):
            assert type(run) is type(distributed), f"{what}: run gave {run!r}, " \
                f"partial/combine gave {distributed!r}"
        else:
            assert_results_match(distributed, run, what=what)


# ---------------------------------------------------------------------------------------------
# Connectors, charts, exporters


def check_connector_reads(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None,
                          *, kind: str | None = None, tmp_path: Path | None = None) -> None:
    """``check`` passes, ``plan`` lists picklable partitions, and reading each one (in a
    copy shipped as to a Ray task) gives, in order, the rows of the example table (columns
    unified across partitions as the pipeline does)."""
    _, cls = _resolve(plugin, kind)
    expected = _frame(table, "the table the source holds")
    with _workdir(tmp_path) as folder:
        connector = _build(cls, _config_dict(config, folder))
        connector.check()
        specs = _roundtrip(connector.plan())
        assert specs, "plan listed no partitions"
        tables = [_roundtrip(_roundtrip(connector).read(s)) for s in specs]
    for t, spec in zip(tables, specs, strict=True):
        assert isinstance(t, pa.Table), f"read({spec.label}) returned {type(t).__name__}"
    read = pl.concat([_frame(t) for t in tables], how="vertical_relaxed")
    assert read.columns == expected.columns, f"columns {read.columns} != {expected.columns}"
    assert_tables_match(read.cast(expected.schema, strict=False), expected,
                        what=f"{len(specs)} partitions read")


def _result(table: pa.Table | pl.DataFrame) -> AnalysisResult:
    frame = _frame(table, "an example result table")
    return AnalysisResult("example", frame.to_arrow(), {"row_count": frame.height})


def check_chart_renders(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None, *,
                        kind: str | None = None, tmp_path: Path | None = None) -> None:
    """An example result renders as a plotly figure with data that serializes to JSON; a
    one-row result does too, and an empty one gives a figure or an InputError."""
    import plotly.graph_objects as go

    _, cls = _resolve(plugin, kind)
    df = _frame(table, "an example result table")
    with _workdir(tmp_path) as folder:
        chart = _build(cls, _config_dict(config, folder))
    for edge in (df, df.head(1), df.clear()):
        try:
            figure = chart.render(_result(edge))
        except InputError:
            if edge.height:
                raise
            continue
        assert isinstance(figure, go.Figure), f"render returned {type(figure).__name__}"
        assert figure.data or not edge.height, f"no traces for a {edge.height}-row result"
        json.loads(figure.to_json())


def _report(table: pa.Table | pl.DataFrame) -> ReportContext:
    return ReportContext(job_id="conformance", user_id="tester", analysis_type="example",
                         result=_result(table))


def check_exporter_writes(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None,
                          *, kind: str | None = None, tmp_path: Path | None = None) -> None:
    """The example result (and a one-row and an empty one) is written to exactly one
    non-empty file at the given path, which ``problem`` does not object to."""
    _, cls = _resolve(plugin, kind)
    df = _frame(table, "an example result table")
    with _workdir(tmp_path) as folder:
        exporter = _build(cls, _config_dict(config, folder))
        problem = exporter.problem(df.to_arrow().schema)
        assert problem is None, f"the example result cannot be exported: {problem}"
        for edge in (df, df.head(1), df.clear()):
            out = folder / f"export-{edge.height}"
            out.mkdir()
            path = out / f"result{cls.extension}"
            exporter.export(_report(edge), str(path))
            written = sorted(p.name for p in out.rglob("*"))
            assert written == [path.name], f"export wrote {written}, not just {path.name}"
            assert path.stat().st_size > 0, f"{path.name} is empty"


#: results few formats can hold, to provoke ``problem``
_AWKWARD = {
    "nested": pa.table({"k": ["a"], "v": pa.array([{"x": [1, 2]}])}),
    "binary": pa.table({"k": ["a"], "v": pa.array([b"\x00\xff"])}),
}


def check_exporter_leaves_nothing_on_error(plugin: PluginArg, config: ConfigArg,
                                           table: pa.Table | None = None, *,
                                           kind: str | None = None,
                                           tmp_path: Path | None = None) -> None:
    """A result ``problem`` objects to (nested or binary columns) is refused by ``export``
    too, with an error and without a file left behind."""
    _, cls = _resolve(plugin, kind)
    with _workdir(tmp_path) as folder:
        exporter = _build(cls, _config_dict(config, folder))
        for label, awkward in _AWKWARD.items():
            if exporter.problem(awkward.schema) is None:
                continue
            out = folder / f"refused-{label}"
            out.mkdir()
            try:
                exporter.export(_report(awkward), str(out / f"result{cls.extension}"))
            except Exception:  # noqa: BLE001 - any error will do; what is left matters
                pass
            else:
                raise AssertionError(f"export wrote a {label} result that problem() refuses")
            left = sorted(p.name for p in out.rglob("*"))
            assert not left, f"a refused {label} export left {left} behind"


# ---------------------------------------------------------------------------------------------
# Running the checks

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
    kind = _kind_of(plugin, kind)
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
