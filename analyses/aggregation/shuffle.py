"""The shuffle hash: which shard a row's group keys send it to, the same in every process."""

from __future__ import annotations

import polars as pl

__all__ = ["SHUFFLE_SEED", "shard_of"]

#: seed of the shuffle hash; every process must use the same one
SHUFFLE_SEED = 0x5EED


def shard_of(schema: pl.Schema, keys: list[str], n: int) -> pl.Expr:
    """The shard number (0..n-1) of each row: a hash of the keys, the same in every process.

    Each key is hashed on its own after widening (categories as strings, floats as Float64;
    integer widths and the null of any dtype already hash alike), then the key hashes are
    hashed together, so partitions whose key dtypes differ in width still agree.
    """
    hashes = []
    for i, key in enumerate(keys):
        col, dtype = pl.col(key), schema[key]
        if isinstance(dtype, (pl.Categorical, pl.Enum)):
            col = col.cast(pl.String)
        elif dtype.is_float():
            col = col.cast(pl.Float64)
        hashes.append(col.hash(SHUFFLE_SEED).alias(f"h{i}"))
    combined = hashes[0] if len(hashes) == 1 else pl.struct(hashes).hash(SHUFFLE_SEED)
    return combined % n
