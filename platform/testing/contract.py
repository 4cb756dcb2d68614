"""The checks every kind of plugin meets: it pickles, its config is in the job's JSON Schema,
a missing column is an InputError naming it."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from raysight.errors import InputError
from raysight.testing.plugins import (
    KINDS,
    ConfigArg,
    PluginArg,
    as_frame,
    build_plugin,
    config_dict,
    preprocess_whole,
    resolve_plugin,
    result_of,
    strings_in,
    workdir,
)


def check_pickles(plugin: PluginArg, config: ConfigArg, table: pa.Table | None = None, *,
                  kind: str | None = None, tmp_path: Path | None = None) -> None:
    """The class, its validated config and the built plugin survive the trip into a Ray task
    (pickle and cloudpickle), and the copy equals the original."""
    _, cls = resolve_plugin(plugin, kind)
    with workdir(tmp_path) as folder:
        validated = cls.Config.model_validate(config_dict(config, folder))
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

    kind, cls = resolve_plugin(plugin, kind)
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
    with workdir(tmp_path) as folder:
        data = json.loads(json.dumps(config_dict(config, folder)))  # as a JSON/YAML spec has it
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
    kind, cls = resolve_plugin(plugin, kind)
    df = as_frame(table)
    with workdir(tmp_path) as folder:
        config = config_dict(config, folder)
    built = build_plugin(cls, config)
    if kind == "analysis":
        wanted = list(built.required_columns())
    elif kind == "chart":
        wanted = list(built.columns().values())
    else:  # names the config holds, also inside expressions ("amount > 0")
        wanted = [w for text in strings_in(config) for w in (text, *re.findall(r"\w+", text))]
    for column in dict.fromkeys(c for c in wanted if c in df.columns):
        without = df.drop(column)
        calls: list[Callable[[pl.DataFrame], Any]]
        if kind == "analysis":
            calls = [built.run, built.partial]
        elif kind == "chart":
            calls = [lambda d: built.render(result_of(d))]
        else:
            calls = [preprocess_whole(built)]
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


