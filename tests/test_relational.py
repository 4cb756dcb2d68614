"""Joins and unions over partitioned Arrow tables equal Polars and DuckDB on the whole tables."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from compare import assert_frames_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from strategies import frames, split

from raysight.analyses.relational import (
    BROADCAST_BYTES,
    AsofOptions,
    JoinConfig,
    UnionConfig,
    asof_shards,
    broadcast_sides,
    choose_strategy,
    common_type,
    hash_shards,
    join_broadcast,
    join_shard,
    plan_join,
    union_schema,
    union_tables,
)
from raysight.errors import InputError, PlanError
from raysight.tables import to_arrow

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HOWS = ["inner", "left", "right", "full", "semi", "anti"]

WORDS = st.sampled_from(["a", "b", "é", "日本", "🙂x"]) | st.none()
SMALL_INT = st.integers(0, 4) | st.none()


def left_frames(max_rows: int = 12) -> st.SearchStrategy[pl.DataFrame]:
    return frames({"k1": SMALL_INT, "k2": WORDS, "v": st.integers(-5, 5) | st.none(),
                   "lx": st.text(max_size=3) | st.none()},
                  {"k1": pl.Int32, "k2": pl.String, "v": pl.Int64, "lx": pl.String},
                  max_rows=max_rows)


def right_frames(names: dict[str, str], max_rows: int = 12) -> st.SearchStrategy[pl.DataFrame]:
    return frames({names["k1"]: SMALL_INT, names["k2"]: WORDS,
                   "v": st.integers(-5, 5) | st.none(), "ry": st.integers(0, 9) | st.none()},
                  {names["k1"]: pl.Int64, names["k2"]: pl.String, "v": pl.Int64,
                   "ry": pl.Float64},
                  max_rows=max_rows)


def sorted_rows(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True) if df.width else df


def same_rows(actual: pa.Table | pl.DataFrame, expected: pl.DataFrame) -> None:
    got = actual if isinstance(actual, pl.DataFrame) else pl.from_arrow(actual)
    assert isinstance(got, pl.DataFrame)
    assert_frames_match(sorted_rows(got), sorted_rows(expected.select(got.columns)))
    assert got.columns == expected.columns


def arrow_parts(parts: list[pl.DataFrame], narrow: list[bool]) -> list[pa.Table]:
    """Partitions as Arrow tables; some with their int key narrowed to Int16 (a partition's
    physical width need not be the planned one)."""
    out = []
    for part, small in zip(parts, narrow, strict=False):
        if small and "k1" in part.columns:
            part = part.with_columns(pl.col("k1").cast(pl.Int16))
        out.append(part.to_arrow())
    return out


def shuffled(left: list[pa.Table], right: list[pa.Table], plan, shards: int) -> pa.Table:
    lsh = [hash_shards(t, plan.left_keys, plan.left_casts, shards) for t in left]
    rsh = [hash_shards(t, plan.right_keys, plan.right_casts, shards) for t in right]
    answers = [join_shard([s[i] for s in lsh], [s[i] for s in rsh], plan) for i in range(shards)]
    return pa.concat_tables(answers)


def broadcast(left: list[pa.Table], right: list[pa.Table], plan, side: str) -> pa.Table:
    big, small = (left, right) if side == "right" else (right, left)
    answers = [join_broadcast(p, small, plan, small_side=side) for p in big]  # type: ignore
    return pa.concat_tables(answers) if answers else join_shard([], [], plan).slice(0, 0)


def duckdb_join(left: pl.DataFrame, right: pl.DataFrame, config: JoinConfig) -> pl.DataFrame:
    """The join in DuckDB SQL, with the columns the plan documents."""
    lk, rk, how, sfx = config.left_keys, config.right_keys, config.how, config.suffix
    on = " AND ".join(f'l."{a}" = r."{b}"' for a, b in zip(lk, rk, strict=True))
    lcols, rcols = left.columns, right.columns
    if how in ("semi", "anti"):
        exists = "EXISTS" if how == "semi" else "NOT EXISTS"
        sql = f"SELECT l.* FROM l WHERE {exists} (SELECT 1 FROM r WHERE {on})"
    else:
        if how in ("inner", "left"):
            lsel, rsel = lcols, [c for c in rcols if c not in rk]
        elif how == "right":
            lsel, rsel = [c for c in lcols if c not in lk], rcols
        else:
            lsel, rsel = lcols, rcols
        select = [f'l."{c}" AS "{c}"' for c in lsel]
        select += [f'r."{c}" AS "{c + sfx if c in lsel else c}"' for c in rsel]
        kind = {"inner": "JOIN", "left": "LEFT JOIN", "right": "RIGHT JOIN",
                "full": "FULL OUTER JOIN"}[how]
        sql = f"SELECT {', '.join(select)} FROM l {kind} r ON {on}"
    con = duckdb.connect()
    con.register("l", left.to_arrow())
    con.register("r", right.to_arrow())
    out = con.sql(sql).pl()
    con.close()
    return out


@st.composite
def join_cases(draw: st.DrawFn):
    renamed = draw(st.booleans())
    names = {"k1": "rk1", "k2": "rk2"} if renamed else {"k1": "k1", "k2": "k2"}
    keys = draw(st.sampled_from([["k1"], ["k2"], ["k1", "k2"]]))
    how = draw(st.sampled_from(HOWS))
    if renamed:
        config = JoinConfig(left="L", right="R", left_on=keys,
                            right_on=[names[k] for k in keys], how=how)
    else:
        config = JoinConfig(left="L", right="R", on=keys, how=how)
    left, right = draw(left_frames()), draw(right_frames(names))
    lparts, rparts = draw(split(left)), draw(split(right))
    narrow = draw(st.lists(st.booleans(), min_size=5, max_size=5))
    return config, pl.concat(lparts), pl.concat(rparts), lparts, rparts, narrow


def polars_join(left: pl.DataFrame, right: pl.DataFrame, config: JoinConfig) -> pl.DataFrame:
    left = left.with_columns(pl.col("k1").cast(pl.Int64))
    if config.on is not None:
        return left.join(right, on=config.on, how=config.how)  # type: ignore[arg-type]
    return left.join(right, left_on=config.left_on, right_on=config.right_on,
                     how=config.how)  # type: ignore[arg-type]


@PROPERTY
@given(case=join_cases(), shards=st.integers(1, 4))
def test_shuffled_join_equals_polars_and_duckdb_on_the_whole_tables(case, shards) -> None:
    config, left, right, lparts, rparts, narrow = case
    plan = plan_join(config, lparts[0].to_arrow().schema, rparts[0].to_arrow().schema, "j")
    actual = shuffled(arrow_parts(lparts, narrow), arrow_parts(rparts, narrow[::-1]), plan,
                      shards)
    assert actual.schema == plan.schema
    expected = polars_join(left, right, config)
    same_rows(actual, expected)
    same_rows(actual, duckdb_join(left, right, config))


@PROPERTY
@given(case=join_cases())
def test_broadcast_join_equals_polars_for_every_side_it_may_broadcast(case) -> None:
    config, left, right, lparts, rparts, narrow = case
    plan = plan_join(config, lparts[0].to_arrow().schema, rparts[0].to_arrow().schema, "j")
    expected = polars_join(left, right, config)
    for side in broadcast_sides(config.how):
        actual = broadcast(arrow_parts(lparts, narrow), arrow_parts(rparts, narrow), plan, side)
        assert actual.schema == plan.schema
        same_rows(actual, expected)


@PROPERTY
@given(case=join_cases())
def test_a_broadcast_of_several_partitions_in_one_task_equals_polars(case) -> None:
    config, left, right, lparts, rparts, narrow = case
    plan = plan_join(config, lparts[0].to_arrow().schema, rparts[0].to_arrow().schema, "j")
    expected = polars_join(left, right, config)
    for side in broadcast_sides(config.how):
        small, large = (rparts, lparts) if side == "right" else (lparts, rparts)
        actual = join_broadcast(arrow_parts(large, narrow), arrow_parts(small, narrow), plan,
                                side)
        same_rows(actual, expected)


@pytest.mark.parametrize("count,tasks,sizes,expected", [
    (8, 2, [10] * 8, [4, 4]),          # one group per CPU
    (3, 2, [10] * 3, [1, 2]),
    (1, 4, [10], [1]),                  # never more groups than partitions
    (4, 2, [300, 300, 300, 300], [1, 1, 1, 1]),  # over most_bytes: more groups
    (0, 2, [], []),
])
def test_a_broadcast_groups_neighbouring_partitions_one_task_per_cpu(count, tasks, sizes,
                                                                      expected) -> None:
    from raysight.engine.context import Partitions, TaskReport
    from raysight.job.graph_steps import grouped

    reports = [TaskReport("s", 1, i, 0.0, 0.0, 0, bytes=b) for i, b in enumerate(sizes)]
    out = grouped(Partitions(list(range(count)), reports), tasks, most_bytes=500)
    assert [len(g) for g in out.items] == expected
    assert [i for g in out.items for i in g.items] == list(range(count))


@pytest.mark.parametrize("how", HOWS)
def test_a_join_of_empty_sides_has_the_planned_columns_and_no_rows(how: str) -> None:
    left = pl.DataFrame(schema={"k1": pl.Int32, "v": pl.String}).to_arrow()
    right = pl.DataFrame(schema={"k1": pl.Int64, "v": pl.Float64}).to_arrow()
    plan = plan_join(JoinConfig(left="L", right="R", on=["k1"], how=how), left.schema,  # type: ignore[arg-type]
                     right.schema, "j")
    out = shuffled([left], [], plan, 3)
    assert out.num_rows == 0 and out.schema == plan.schema


def test_one_row_sides_with_null_keys_never_match() -> None:
    left = pl.DataFrame({"k": [None], "a": [1]}, schema={"k": pl.Int64, "a": pl.Int64})
    right = pl.DataFrame({"k": [None], "b": [2]}, schema={"k": pl.Int64, "b": pl.Int64})
    counts = {}
    for how in HOWS:
        plan = plan_join(JoinConfig(left="L", right="R", on=["k"], how=how),  # type: ignore[arg-type]
                         left.to_arrow().schema, right.to_arrow().schema, "j")
        counts[how] = shuffled([left.to_arrow()], [right.to_arrow()], plan, 2).num_rows
    assert counts == {"inner": 0, "left": 1, "right": 1, "full": 2, "semi": 0, "anti": 1}


def test_equal_keys_of_different_widths_land_in_the_same_shard() -> None:
    narrow = pa.table({"k": pa.array(range(100), pa.int8())})
    wide = pa.table({"k": pa.array(range(100), pa.int64())})
    casts = {"k": pl.Int64()}
    a = [t.column("k").to_pylist() for t in hash_shards(narrow, ["k"], casts, 5)]
    b = [t.column("k").to_pylist() for t in hash_shards(wide, ["k"], {}, 5)]
    assert a == b and sum(map(len, a)) == 100 and all(a)


def test_the_shard_of_a_key_is_the_same_in_another_process() -> None:
    code = ("import pyarrow as pa; from raysight.analyses.relational import hash_shards; "
            "t = pa.table({'k': list(range(50)) + [None], 's': ['é' * i for i in range(51)]}); "
            "print([s.column('k').to_pylist() for s in hash_shards(t, ['k', 's'], {}, 4)])")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    table = pa.table({"k": [*range(50), None], "s": ["é" * i for i in range(51)]})
    here = str([s.column("k").to_pylist() for s in hash_shards(table, ["k", "s"], {}, 4)])
    assert runs == {here + "\n"}


# -- as-of --------------------------------------------------------------------------------------

@st.composite
def asof_cases(draw: st.DrawFn, unique_right: bool = False):
    with_by = draw(st.booleans())
    direction = draw(st.sampled_from(["backward", "forward", "nearest"]))
    tolerance = draw(st.none() | st.integers(0, 4))
    by = {"by": ["g"]} if with_by else {}
    config = JoinConfig(left="L", right="R", on=["t"], how="asof",
                        asof=AsofOptions(direction=direction, tolerance=tolerance, **by))
    keys = st.integers(0, 30) | st.none()
    left = draw(frames({"t": keys, "g": WORDS, "x": st.integers(0, 9)},
                       {"t": pl.Int64, "g": pl.String, "x": pl.Int64}))
    n = draw(st.integers(0, 12))
    right_t = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n, unique=unique_right))
    right = pl.DataFrame({"t": right_t, "g": draw(st.lists(WORDS, min_size=n, max_size=n)),
                          "x": list(range(n))}, schema={"t": pl.Int32, "g": pl.String,
                                                        "x": pl.Int64})
    lparts, rparts = draw(split(left)), draw(split(right))
    return config, pl.concat(lparts), pl.concat(rparts), lparts, rparts


def asof_sharded(lparts, rparts, plan, shards: int) -> pa.Table:
    lsh = [asof_shards(p.to_arrow(), plan, "left", shards) for p in lparts]
    rsh = [asof_shards(p.to_arrow(), plan, "right", shards) for p in rparts]
    n = len(lsh[0])
    return pa.concat_tables(
        [join_shard([s[i] for s in lsh], [s[i] for s in rsh], plan) for i in range(n)])


@PROPERTY
@given(case=asof_cases(), shards=st.integers(1, 4))
def test_asof_join_by_shards_and_broadcast_equals_polars_join_asof(case, shards) -> None:
    config, left, right, lparts, rparts = case
    options = config.asof
    plan = plan_join(config, lparts[0].to_arrow().schema, rparts[0].to_arrow().schema, "j")
    expected = left.sort("t", maintain_order=True).join_asof(
        right.with_columns(pl.col("t").cast(pl.Int64)).sort("t", maintain_order=True),
        on="t", by=options.by, strategy=options.direction, tolerance=options.tolerance,
        check_sortedness=False)
    same_rows(asof_sharded(lparts, rparts, plan, shards), expected)
    same_rows(broadcast([p.to_arrow() for p in lparts], [p.to_arrow() for p in rparts], plan,
                        "right"), expected)


@PROPERTY
@given(case=asof_cases(unique_right=True))
def test_asof_join_equals_duckdb_asof_join(case) -> None:
    config, left, right, lparts, rparts = case
    options = config.asof
    if options.direction == "nearest":  # DuckDB has no nearest as-of join
        return
    plan = plan_join(config, lparts[0].to_arrow().schema, rparts[0].to_arrow().schema, "j")
    op = ">=" if options.direction == "backward" else "<="
    by = 'l.g = r.g AND ' if options.by else ""
    con = duckdb.connect()
    con.register("l", left.to_arrow())
    con.register("r", right.to_arrow())
    right_cols = "r.x AS x_right" if options.by else "r.g AS g_right, r.x AS x_right"
    out = con.sql(f'SELECT l.*, {right_cols}, r.t AS rt FROM l ASOF LEFT JOIN r '
                  f'ON {by}l.t {op} r.t').pl()
    con.close()
    if options.tolerance is not None:
        far = (pl.col("t") - pl.col("rt")).abs() > options.tolerance
        out = out.with_columns(pl.when(far).then(None).otherwise(pl.col(c)).alias(c)
                               for c in out.columns if c.endswith("_right"))
    same_rows(asof_sharded(lparts, rparts, plan, 3), out.drop("rt"))


def test_asof_with_differently_named_keys_keeps_the_right_sorted_key() -> None:
    left = pl.DataFrame({"t": [5, 10], "g": ["a", "a"]}).to_arrow()
    right = pl.DataFrame({"ts": [4, 9], "h": ["a", "a"], "p": [1.0, 2.0]}).to_arrow()
    config = JoinConfig(left="L", right="R", left_on=["t"], right_on=["ts"], how="asof",
                        asof=AsofOptions(by_left=["g"], by_right=["h"], direction="forward"))
    plan = plan_join(config, left.schema, right.schema, "j")
    out = pl.from_arrow(join_shard([left], [right], plan))
    assert plan.schema.names == ["t", "g", "ts", "p"]
    assert out.sort("t").rows() == [(5, "a", 9, 2.0), (10, "a", None, None)]


def test_asof_tolerance_as_a_duration_on_datetime_keys() -> None:
    base = dt.datetime(2024, 1, 1, 12)
    left = pl.DataFrame({"time": [base, base + dt.timedelta(hours=1)]}).to_arrow()
    right = pl.DataFrame({"time": [base - dt.timedelta(minutes=3),
                                   base + dt.timedelta(minutes=50)], "q": [1, 2]},
                         schema={"time": pl.Datetime("ms"), "q": pl.Int64}).to_arrow()
    config = JoinConfig(left="L", right="R", on=["time"], how="asof",
                        asof=AsofOptions(tolerance="5m"))
    plan = plan_join(config, left.schema, right.schema, "j")
    assert plan.tolerance == dt.timedelta(minutes=5)
    out = pl.from_arrow(join_shard([left], [right], plan)).sort("time")
    assert out.get_column("q").to_list() == [1, None]


# -- unions -------------------------------------------------------------------------------------

@st.composite
def union_inputs(draw: st.DrawFn):
    specs = [({"a": SMALL_INT, "b": WORDS}, {"a": pl.Int8, "b": pl.String}),
             ({"b": WORDS, "c": st.integers(0, 3) | st.none()}, {"b": pl.String, "c": pl.Float32}),
             ({"a": SMALL_INT, "c": SMALL_INT}, {"a": pl.Int64, "c": pl.Int16})]
    chosen = draw(st.lists(st.sampled_from(range(3)), min_size=2, max_size=3))
    dfs = [draw(frames(*specs[i], max_rows=8)) for i in chosen]
    return {f"in{i}": df for i, df in enumerate(dfs)}


def duckdb_union(dfs: dict[str, pl.DataFrame], distinct: bool) -> pl.DataFrame:
    con = duckdb.connect()
    for name, df in dfs.items():
        con.register(name, df.to_arrow())
    op = " UNION BY NAME " if distinct else " UNION ALL BY NAME "
    out = con.sql(op.join(f"SELECT * FROM {n}" for n in dfs)).pl()
    con.close()
    return out


@PROPERTY
@given(dfs=union_inputs(), distinct=st.booleans())
def test_union_equals_polars_diagonal_relaxed_concat_and_duckdb(dfs, distinct) -> None:
    schema = union_schema({n: df.to_arrow().schema for n, df in dfs.items()}, "u")
    parts = [p.to_arrow() for df in dfs.values() for p in [df.head(3), df.slice(3)]]
    out = union_tables(parts, schema, distinct=distinct)
    assert out.schema == schema
    expected = pl.concat(list(dfs.values()), how="diagonal_relaxed")
    if distinct:
        expected = expected.unique(maintain_order=True)
    got = pl.from_arrow(out)
    assert isinstance(got, pl.DataFrame)
    assert_frames_match(got, expected)  # row order kept: inputs in order
    same_rows(got, duckdb_union(dfs, distinct))


@PROPERTY
@given(dfs=union_inputs(), shards=st.integers(1, 4))
def test_a_distinct_union_dropped_shard_by_shard_equals_duckdb(dfs, shards) -> None:
    from raysight.job.graph_steps import union_distinct, union_shard

    schema = union_schema({n: df.to_arrow().schema for n, df in dfs.items()}, "u")
    parts = [p.to_arrow() for df in dfs.values() for p in [df.head(3), df.slice(3)]]
    split = [union_shard(part, schema, shards) for part in parts]
    assert all(len(s) == shards for s in split)
    outs = [union_distinct([s[j] for s in split], schema) for j in range(shards)]
    assert all(out.schema == schema for out in outs)
    got = pl.from_arrow(pa.concat_tables(outs))
    assert isinstance(got, pl.DataFrame)
    same_rows(got, duckdb_union(dfs, distinct=True))


def test_union_of_incompatible_columns_names_node_column_and_both_inputs() -> None:
    with pytest.raises(InputError) as err:
        union_schema({"a": pa.schema([("x", pa.int64())]), "b": pa.schema([("x", pa.string())])},
                     "sales")
    assert "'sales'" in str(err.value) and "'x'" in str(err.value)
    assert "'a'" in str(err.value) and "'b'" in str(err.value)
    assert err.value.details["node"] == "sales" and err.value.details["column"] == "x"


def test_union_config_needs_two_inputs_listed_once() -> None:
    with pytest.raises(ValidationError, match="at least 2"):
        UnionConfig(inputs=["a"])
    with pytest.raises(ValidationError, match="more than once"):
        UnionConfig(inputs=["a", "a"])


# -- planning and validation ------------------------------------------------------------------

LEFT = pa.schema([("id", pa.int32()), ("name", pa.string()), ("when", pa.timestamp("ms"))])
RIGHT = pa.schema([("cust_id", pa.int64()), ("name", pa.string()),
                   ("when", pa.timestamp("us", "UTC")), ("score", pa.float32())])


def test_a_missing_left_key_names_node_field_column_and_a_close_match() -> None:
    config = JoinConfig(left="orders", right="customers", left_on=["idd"], right_on=["cust_id"])
    with pytest.raises(InputError) as err:
        plan_join(config, LEFT, RIGHT, "joined")
    message = str(err.value)
    assert "'joined'" in message and "left_on" in message and "'idd'" in message
    assert "did you mean 'id'" in message and "'orders'" in message
    assert err.value.details["node"] == "joined" and err.value.details["column"] == "idd"
    assert err.value.details["field"] == "left_on"


def test_a_missing_right_key_names_the_on_field_and_the_right_input() -> None:
    config = JoinConfig(left="orders", right="customers", on=["id"])
    with pytest.raises(InputError) as err:
        plan_join(config, LEFT, RIGHT, "joined")
    assert "'customers'" in str(err.value) and err.value.details["field"] == "on"
    assert "\n" not in str(err.value)


def test_keys_of_incompatible_types_name_both_types() -> None:
    config = JoinConfig(left="orders", right="customers", left_on=["name"], right_on=["cust_id"])
    with pytest.raises(InputError) as err:
        plan_join(config, LEFT, RIGHT, "joined")
    assert "String" in str(err.value) and "Int64" in str(err.value)


def test_naive_and_aware_datetime_keys_do_not_join() -> None:
    config = JoinConfig(left="orders", right="customers", on=["when"])
    with pytest.raises(InputError, match="time-zone aware"):
        plan_join(config, LEFT, RIGHT, "joined")


@pytest.mark.parametrize(("a", "b", "common"), [
    (pl.Int32(), pl.Int64(), pl.Int64()), (pl.UInt8(), pl.Int8(), pl.Int16()),
    (pl.UInt64(), pl.Int64(), pl.Int128()), (pl.Int64(), pl.Float32(), pl.Float64()),
    (pl.Float32(), pl.Float64(), pl.Float64()), (pl.Categorical(), pl.String(), pl.String()),
    (pl.Date(), pl.Datetime("ms"), pl.Datetime("ms")),
    (pl.Datetime("ms"), pl.Datetime("ns"), pl.Datetime("ns")),
    (pl.Datetime("us", "Europe/Paris"), pl.Datetime("us", "UTC"), pl.Datetime("us", "UTC")),
    (pl.Null(), pl.String(), pl.String()), (pl.String(), pl.Int64(), None),
    (pl.Boolean(), pl.Int8(), None), (pl.Datetime("us"), pl.Datetime("us", "UTC"), None),
])
def test_common_key_types(a: pl.DataType, b: pl.DataType, common: pl.DataType | None) -> None:
    assert common_type(a, b) == common and common_type(b, a) == common


def test_keys_of_different_widths_join_as_their_common_type() -> None:
    plan = plan_join(JoinConfig(left="L", right="R", left_on=["id"], right_on=["cust_id"]),
                     LEFT, RIGHT, "j")
    assert plan.left_casts == {"id": pl.Int64()} and plan.right_casts == {}
    assert plan.schema.field("id").type == pa.int64()
    assert plan.schema.names == ["id", "name", "when", "name_right", "when_right", "score"]


def test_a_suffix_that_still_collides_is_an_input_error() -> None:
    left = pa.schema([("k", pa.int64()), ("v", pa.int64()), ("v_r", pa.int64())])
    right = pa.schema([("k", pa.int64()), ("v", pa.int64())])
    with pytest.raises(InputError, match="suffix '_r'"):
        plan_join(JoinConfig(left="L", right="R", on=["k"], suffix="_r"), left, right, "j")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"how": "asof", "on": ["t"]}, "needs the asof options"),
    ({"on": ["t"], "asof": {}}, "asof options are for how 'asof'"),
    ({"on": ["t"], "left_on": ["t"], "right_on": ["t"]}, "either on or left_on"),
    ({"left_on": ["t"]}, "keys are missing"),
    ({"left_on": ["a", "b"], "right_on": ["a"]}, "left_on names 2 keys but right_on 1"),
    ({"on": ["a", "a"]}, "more than once"),
    ({"on": ["a"], "how": "full", "strategy": "broadcast"}, "cannot broadcast"),
    ({"on": ["a", "b"], "how": "asof", "asof": {}}, "one sorted key"),
    ({"on": ["t"], "how": "asof", "asof": {"tolerance": -1}}, "tolerance must be >= 0"),
    ({"on": ["t"], "how": "asof", "asof": {"tolerance": "5 parsecs"}}, "not a duration"),
    ({"on": ["t"], "how": "asof", "asof": {"by": ["g"], "by_left": ["g"]}}, "either by"),
    ({"on": ["t"], "how": "asof", "asof": {"by_left": ["g"]}}, "go together"),
    ({"on": ["t"], "how": "outer"}, "Input should be"),
    ({"on": ["t"], "hw": "inner"}, "Extra inputs"),
])
def test_join_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JoinConfig.model_validate({"left": "L", "right": "R", **kwargs})


def test_a_duration_tolerance_on_a_numeric_key_is_an_input_error() -> None:
    schema = pa.schema([("t", pa.int64())])
    config = JoinConfig(left="L", right="R", on=["t"], how="asof",
                        asof=AsofOptions(tolerance="5m"))
    with pytest.raises(InputError, match="tolerance '5m'"):
        plan_join(config, schema, schema, "j")


def test_a_missing_by_key_names_the_asof_field() -> None:
    schema = pa.schema([("t", pa.int64())])
    config = JoinConfig(left="L", right="R", on=["t"], how="asof", asof=AsofOptions(by=["g"]))
    with pytest.raises(InputError) as err:
        plan_join(config, schema, schema, "j")
    assert err.value.details["field"] == "asof.by"


def test_the_join_config_has_a_json_schema() -> None:
    schema = JoinConfig.model_json_schema()
    assert {"left", "right", "on", "how", "suffix", "asof", "strategy"} <= set(
        schema["properties"])
    assert "AsofOptions" in schema["$defs"]


# -- strategy -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("how", "sizes", "expected"), [
    ("inner", (10, 2 * BROADCAST_BYTES), ("broadcast", "left")),
    ("inner", (2 * BROADCAST_BYTES, 10), ("broadcast", "right")),
    ("left", (10, 20), ("broadcast", "right")),
    ("right", (20, 10), ("broadcast", "left")),
    ("semi", (10, 2 * BROADCAST_BYTES), ("shuffle", None)),
    ("anti", (2 * BROADCAST_BYTES, 10), ("broadcast", "right")),
    ("full", (10, 10), ("shuffle", None)),
    ("inner", (2 * BROADCAST_BYTES, 2 * BROADCAST_BYTES), ("shuffle", None)),
])
def test_auto_broadcasts_the_smaller_side_it_may_below_the_threshold(how, sizes, expected):
    config = JoinConfig(left="L", right="R", on=["k"], how=how)
    assert choose_strategy(config, *sizes) == expected


def test_strategy_overrides_the_threshold() -> None:
    big = 10 * BROADCAST_BYTES
    forced = JoinConfig(left="L", right="R", on=["k"], how="left", strategy="broadcast")
    assert choose_strategy(forced, 1, big) == ("broadcast", "right")
    never = JoinConfig(left="L", right="R", on=["k"], strategy="shuffle")
    assert choose_strategy(never, 1, 1) == ("shuffle", None)


def test_broadcasting_a_side_the_join_kind_cannot_is_a_plan_error() -> None:
    table = pa.table({"k": [1]})
    plan = plan_join(JoinConfig(left="L", right="R", on=["k"], how="left"), table.schema,
                     table.schema, "j")
    with pytest.raises(PlanError, match="cannot broadcast its left side"):
        join_broadcast(table, [table], plan, small_side="left")


def test_join_output_keeps_polars_string_views_and_unicode() -> None:
    left = pa.table({"k": pa.array(["日本", "é", None], pa.large_string()), "a": [1, 2, 3]})
    right = to_arrow(pl.DataFrame({"k": ["é", "🙂"], "b": [1.5, 2.5]}))
    plan = plan_join(JoinConfig(left="L", right="R", on=["k"], how="full"), left.schema,
                     right.schema, "j")
    out = pl.from_arrow(shuffled([left], [right], plan, 2))
    assert sorted(out.get_column("k_right").drop_nulls().to_list()) == ["é", "🙂"]
    assert out.height == 4
