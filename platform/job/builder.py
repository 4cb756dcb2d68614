"""Job graphs built in Python: the same nodes as a version 2 spec, validated by the same
model.

::

    from raysight.job.builder import Job

    job = Job("orders-report")
    orders = job.source("orders", type="file", path="data/orders.parquet")
    customers = job.source("customers", type="file", path="data/customers.csv")
    big = orders.preprocess("big_orders", {"op": "filter_rows", "condition": "amount > 10"})
    enriched = big.join("enriched", customers, on=["customer_id"], how="left")
    enriched.analyze("by_region", type="aggregation", group_by=["region"],
                     metrics=[{"function": "count", "alias": "n"}])
    job.chart("by_region", type="bar", x="region", y="n")
    job.export(format="html", path="report.html")
    spec = job.spec()   # the GraphSpec a YAML file with these nodes gives

A node is named once (a name given twice raises ValueError at once); configs are dicts,
pydantic configs or keyword fields (node names and configs are positional, so a config may
have a field called ``name``). Everything else is checked by :meth:`Job.spec`, which raises
the same SpecError as a spec file would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from raysight.job.graph_spec import GRAPH_VERSION, GraphSpec, parse_graph_spec


@dataclass(frozen=True)
class Node:
    """A named node of a :class:`Job`; its methods add nodes that read it."""

    job: Job
    name: str

    def preprocess(self, name: str, /, *operations: Any) -> Node:
        """A dataset: this node through ``operations``."""
        return self.job.dataset(name, self, list(operations))

    def join(self, name: str, right: Node | str, /, **fields: Any) -> Node:
        """This node (left) joined with ``right`` (``on=``, ``how=`` ...)."""
        return self.job.join(name, self, right, **fields)

    def union(self, name: str, /, *others: Node | str, **fields: Any) -> Node:
        """This node and ``others`` concatenated by column name."""
        return self.job.union(name, self, *others, **fields)

    def analyze(self, name: str, config: Any = None, /, **fields: Any) -> Node:
        """An analysis of this node (``type=`` and the kernel's fields)."""
        return self.job.analysis(name, self, config, **fields)


@dataclass
class Job:
    """A version 2 job spec under construction; ``settings`` are the job's other fields
    (``user_id``, ``priority``, ``execution`` ...)."""

    job_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    _sections: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "sources": {}, "datasets": {}, "joins": {}, "unions": {}, "analyses": {}})
    _lists: dict[str, list[Any]] = field(default_factory=lambda: {
        "visualizations": [], "exports": [], "notifications": []})
    #: objects given as sources (Ray Datasets), by source name
    _inputs: dict[str, Any] = field(default_factory=dict)

    # -- nodes ----------------------------------------------------------------------------

    def source(self, name: str, config: Any = None, /, **fields: Any) -> Node:
        """A source: a connector config, or a ``ray.data.Dataset`` (a ``ray_dataset``
        source whose data the run reads from the object store)."""
        if _is_ray_dataset(config):
            node = self._add("sources", name, {"type": "ray_dataset", **fields})
            self._inputs[name] = config
            return node
        return self._add("sources", name, _config(config, fields))

    def dataset(self, name: str, from_: Node | str, preprocessing: list[Any], /) -> Node:
        return self._add("datasets", name, {"from": _name(from_),
                                            "preprocessing": [_config(op, {})
                                                              for op in preprocessing]})

    def join(self, name: str, left: Node | str, right: Node | str, /, **fields: Any) -> Node:
        return self._add("joins", name, {"left": _name(left), "right": _name(right), **fields})

    def union(self, name: str, /, *inputs: Node | str, **fields: Any) -> Node:
        return self._add("unions", name, {"inputs": [_name(i) for i in inputs], **fields})

    def analysis(self, name: str, from_: Node | str, config: Any = None, /,
                 **fields: Any) -> Node:
        return self._add("analyses", name, {"from": _name(from_), **_config(config, fields)})

    # -- outputs --------------------------------------------------------------------------

    def chart(self, from_: Node | str | None = None, config: Any = None, /,
              **fields: Any) -> None:
        self._lists["visualizations"].append(_reading(from_, _config(config, fields)))

    def export(self, from_: Node | str | None = None, config: Any = None, /,
               **fields: Any) -> None:
        self._lists["exports"].append(_reading(from_, _config(config, fields)))

    def notify(self, config: Any = None, /, **fields: Any) -> None:
        self._lists["notifications"].append(_config(config, fields))

    # -- the spec -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The job as a version 2 spec dict (what a YAML file would hold)."""
        data: dict[str, Any] = {"version": GRAPH_VERSION, **self.settings}
        if self.job_id is not None:
            data["job_id"] = self.job_id
        data.update({k: dict(v) for k, v in self._sections.items() if v})
        data.update({k: list(v) for k, v in self._lists.items() if v})
        return data

    def spec(self) -> GraphSpec:
        """The validated spec (SpecError naming every bad field, as for a file)."""
        return parse_graph_spec(self.to_dict(), f"job {self.job_id or '(unnamed)'}")

    def run(self, run_dir: str = "runs", job_id: str | None = None,
            keep: list[Node | str] | tuple[Node | str, ...] = ()) -> Any:
        """Validate the job and run it to a terminal state: its JobResult (see
        :meth:`raysight.job.pipeline.AnalysisJob.run`), whose ``datasets`` hold the nodes
        named in ``keep`` as Ray Datasets."""
        from raysight.job.pipeline import AnalysisJob

        return AnalysisJob(self.spec(), run_dir=run_dir, job_id=job_id, inputs=self._inputs,
                           keep=[_name(n) for n in keep]).run()

    def _add(self, section: str, name: str, config: dict[str, Any]) -> Node:
        for other, nodes in self._sections.items():
            if name in nodes:
                raise ValueError(f"node {name!r} is already one of the job's {other}")
        self._sections[section][name] = config
        return Node(self, name)


def _name(node: Node | str) -> str:
    return node.name if isinstance(node, Node) else node


def _config(config: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """A config as a dict: a pydantic config dumped, a dict copied, updated by ``fields``."""
    if isinstance(config, BaseModel):
        base = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for key in ("type", "op", "format", "channel"):  # the discriminator is never unset
            if key in type(config).model_fields:
                base.setdefault(key, getattr(config, key))
    else:
        base = dict(config or {})
    return {**base, **fields}


def _is_ray_dataset(value: Any) -> bool:
    module = type(value).__module__
    if not module.startswith("ray.data"):
        return False  # ray is imported only when a Ray object is given
    import ray.data

    return isinstance(value, ray.data.Dataset)


def _reading(from_: Node | str | None, config: dict[str, Any]) -> dict[str, Any]:
    return config if from_ is None else {"from": _name(from_), **config}


__all__ = ["Job", "Node"]
