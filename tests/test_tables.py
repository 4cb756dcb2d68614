"""Arrow helpers: the layout tasks hand tables on in (Polars' string views) and raysight's
pa.Table reducer in Ray, which carries view types that Ray's own reducer rejects."""

from __future__ import annotations

import datetime as dt
import pickle

import polars as pl
import pyarrow as pa
import pytest

from raysight.tables import _reduce_table, portable, register_arrow_serializer, to_arrow

WORDS = ["short", "a string longer than twelve bytes", "ünïcödé 文字", None, ""]


def frame(rows: int = 1000) -> pl.DataFrame:
    return pl.DataFrame({
        "s": [WORDS[i % len(WORDS)] for i in range(rows)],
        "b": [None if i % 7 == 0 else f"{i}".encode() for i in range(rows)],
        "v": list(range(rows)),
    })  # fmt: skip


def test_to_arrow_keeps_polars_views_and_portable_gives_the_classic_types() -> None:
    df = frame()
    table = to_arrow(df)
    assert table.schema.field("s").type == pa.string_view()
    assert table.schema.field("b").type == pa.binary_view()
    classic = portable(table)
    assert classic.schema.field("s").type == pa.large_string()
    assert classic.schema.field("b").type == pa.large_binary()
    assert classic.to_pylist() == df.to_arrow().to_pylist()


def roundtrip(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` through the reducer and pickle 5 (as Ray does), and the bytes it sent."""
    rebuild, args = _reduce_table(table)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps((rebuild, args), protocol=5, buffer_callback=buffers.append)
    rebuild, args = pickle.loads(data, buffers=buffers)
    sent = len(data) + sum(memoryview(b).nbytes for b in buffers)
    return rebuild(*args), sent


def test_a_view_table_goes_through_pyarrow_pickling_unchanged() -> None:
    table = to_arrow(frame())
    back, sent = roundtrip(table)
    assert back.schema == table.schema
    assert back.equals(table)
    assert sent < 2 * table.get_total_buffer_size() + 4096


@pytest.mark.parametrize("layout", ["views", "classic"])
def test_a_small_slice_of_a_big_table_sends_only_its_rows(layout: str) -> None:
    df = frame(200_000)
    table = to_arrow(df) if layout == "views" else df.to_arrow()
    part = table.slice(1000, 100)
    back, sent = roundtrip(part)
    assert back.equals(part)
    assert back.schema == part.schema
    assert sent < table.get_total_buffer_size() / 20


@pytest.mark.parametrize("words", ["short", "long"])
def test_chunks_that_slice_one_parent_send_only_their_rows(words: str) -> None:
    # Polars' streaming engine returns chunks that are slices of the same buffers; odd
    # offsets put rows in the middle of validity and boolean bytes
    rows, size = 100_003, 997
    text = [None if i % 11 == 0 else (f"w{i % 50}" if words == "short" else
            f"a string longer than twelve bytes {i}") for i in range(rows)]  # fmt: skip
    parent = to_arrow(pl.DataFrame({
        "s": text,
        "v": [None if i % 7 == 0 else i for i in range(rows)],
        "f": [i / 3 for i in range(rows)],
        "flag": [None if i % 5 == 0 else i % 3 == 0 for i in range(rows)],
        "d": pl.date_range(dt.date(2000, 1, 1), dt.date(2000, 1, 1) + dt.timedelta(days=rows - 1),
                           eager=True),
    }))  # fmt: skip
    table = pa.Table.from_batches(
        [parent.slice(start, size).combine_chunks().to_batches()[0]
         for start in range(3, rows, size)]
    )
    assert table.column("s").num_chunks > 50
    back, sent = roundtrip(table)
    assert back.schema == table.schema
    assert back.equals(table)
    assert sent < 2 * parent.get_total_buffer_size()


def test_view_tables_pass_through_ray_tasks(ray_session) -> None:
    import ray

    register_arrow_serializer()
    table = to_arrow(frame())

    @ray.remote
    def echo(t: pa.Table) -> pa.Table:
        register_arrow_serializer()
        return t.slice(0, t.num_rows)

    @ray.remote
    def sliced(t: pa.Table) -> pa.Table:
        register_arrow_serializer()
        return t.slice(10, 5)

    ref = ray.put(table)
    assert ray.get(ref).equals(table)
    assert ray.get(echo.remote(ref)).equals(table)
    assert ray.get(sliced.remote(ref)).equals(table.slice(10, 5))
    assert ray.get(echo.remote(ref)).schema.field("s").type == pa.string_view()
