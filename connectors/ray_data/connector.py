"""The Ray Dataset connector: a materialized dataset's blocks, read where they are."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import pyarrow as pa
import ray
from pydantic import Field

from raysight.errors import InputError
from raysight.plugins import Connector, PartitionSpec, PluginConfig
from raysight.tables import conform, unify


class RayDatasetConfig(PluginConfig):
    """A ``ray.data.Dataset`` given to the job in Python; the spec holds only its type."""

    type: Literal["ray_dataset"] = "ray_dataset"
    #: at most this many partitions, each of consecutive blocks (None: one per block)
    partitions: int | None = Field(default=None, ge=1, le=100_000)


class RayDatasetConnector(Connector[RayDatasetConfig]):
    """Reads the blocks of a Ray Dataset, one partition per block (or per group of blocks).

    :meth:`with_data` executes the dataset on the cluster (``materialize``) on the driver,
    so its blocks stay in the object store, owned by the driver for as long as the job
    runs; the partitions carry the blocks' object references and each read task fetches its
    own blocks. Nothing of the data passes through the driver.
    """

    name: ClassVar[str] = "ray_dataset"
    Config = RayDatasetConfig

    blocks: tuple[Any, ...] | None = None
    known_schema: pa.Schema | None = None

    def with_data(self, data: Any) -> RayDatasetConnector:
        """A copy that reads ``data``, a ``ray.data.Dataset`` (executed here)."""
        if not isinstance(data, ray.data.Dataset):
            raise InputError(f"a ray_dataset source reads a ray.data.Dataset, not "
                             f"{type(data).__name__}")
        materialized = data.materialize()
        clone = copy.copy(self)
        clone.blocks = tuple(materialized.to_arrow_refs())
        schema = getattr(materialized.schema(), "base_schema", None)
        clone.known_schema = schema if isinstance(schema, pa.Schema) else None
        return clone

    def check(self) -> None:
        if self.blocks is None:
            raise InputError("a ray_dataset source is given in Python: Job.source(name, "
                             "dataset), or AnalysisJob(spec, inputs={name: dataset})")

    def schema(self) -> pa.Schema | None:
        return self.known_schema

    def plan(self) -> list[PartitionSpec]:
        blocks = list(self.blocks or ())
        count = max(1, min(self.config.partitions or len(blocks), len(blocks)))
        bounds = [len(blocks) * i // count for i in range(count + 1)]
        return [
            PartitionSpec(f"blocks {lo}-{hi - 1}" if hi - lo > 1 else f"block {lo}",
                          "ray-object-store", 0, {"blocks": blocks[lo:hi]})
            for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]

    def read(self, partition: PartitionSpec) -> pa.Table:
        tables = ray.get(list(partition.options["blocks"]))
        if not tables:  # an empty dataset: its columns, no rows
            return (self.known_schema or pa.schema([])).empty_table()
        schema = unify([t.schema for t in tables])
        return pa.concat_tables([conform(t, schema) for t in tables])
