"""The checks of preprocessors and analyses: partitioned runs equal the whole-table run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from raysight.errors import InputError
from raysight.plugins import (
    AnalysisResult,
)
from raysight.testing.compare import assert_results_match, assert_tables_match
from raysight.testing.partitions import partitionings, tree_merge
from raysight.testing.plugins import (
    ConfigArg,
    PluginArg,
    as_frame,
    build_plugin,
    config_dict,
    preprocess_whole,
    resolve_plugin,
    roundtrip,
    workdir,
)


def check_preprocessor_partitions(plugin: PluginArg, config: ConfigArg,
                                  table: pa.Table | None = None, *, kind: str | None = None,
                                  tmp_path: Path | None = None) -> None:
    """Applied per partition (with merged statistics when ``needs_stats``), every partition
    has the whole table's output schema and their concatenation equals ``apply`` on the whole
    table, for random partitionings with empty and one-row partitions."""
    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table)
    with workdir(tmp_path) as folder:
        op = build_plugin(cls, config_dict(config, folder))
    whole = op.apply(df)
    for parts in partitionings(df):
        shipped = roundtrip(op)
        stats = None
        if getattr(op, "needs_stats", False):
            partials = [roundtrip(shipped.partial_stats(p)) for p in parts]
            stats = roundtrip(shipped.merge_stats(partials))
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
    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table)
    with workdir(tmp_path) as folder:
        op = build_plugin(cls, config_dict(config, folder))
    for edge in (df.head(1), df.clear()):
        try:
            out = preprocess_whole(op)(edge)
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
    shipped = roundtrip(kernel)
    if kernel.shuffle_keys():
        n = 3
        sharded = [roundtrip(shipped.shard(p, n)) for p in parts]
        assert all(len(s) == n for s in sharded), f"shard did not return {n} tables"
        reduced = [roundtrip(shipped.reduce_shard([s[j] for s in sharded])) for j in range(n)]
        return shipped.finish(reduced)  # type: ignore[no-any-return]
    partials = [roundtrip(shipped.partial(p)) for p in parts]
    return shipped.combine(partials)  # type: ignore[no-any-return]


def check_analysis_partitions(plugin: PluginArg, config: ConfigArg,
                              table: pa.Table | None = None, *, kind: str | None = None,
                              tmp_path: Path | None = None) -> None:
    """partial on each partition then combine (or the shuffle path: shard, reduce_shard,
    finish) equals ``run`` on the whole table, for random partitionings with empty and one-row
    partitions; partial states make the trip into a Ray task on the way."""
    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table)
    with workdir(tmp_path) as folder:
        kernel = build_plugin(cls, config_dict(config, folder))
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
    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table)
    with workdir(tmp_path) as folder:
        kernel = build_plugin(cls, config_dict(config, folder))
    if not kernel.mergeable or kernel.shuffle_keys():
        return
    expected = _reference(kernel, df)
    for seed, parts in enumerate(partitionings(df)):
        shipped = roundtrip(kernel)
        merged = tree_merge(shipped, [shipped.partial(p) for p in parts], random.Random(seed))
        sizes = [p.height for p in parts]
        assert_results_match(shipped.finalize(merged), expected, what=f"finalize of {sizes}")
        assert_results_match(shipped.combine([merged]), expected, what=f"combine of {sizes}")


def check_analysis_edge_tables(plugin: PluginArg, config: ConfigArg,
                               table: pa.Table | None = None, *, kind: str | None = None,
                               tmp_path: Path | None = None) -> None:
    """On a one-row and an empty table, ``run`` and partial/combine agree: both give the same
    result, or both raise InputError."""
    _, cls = resolve_plugin(plugin, kind)
    df = as_frame(table)
    with workdir(tmp_path) as folder:
        kernel = build_plugin(cls, config_dict(config, folder))
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
