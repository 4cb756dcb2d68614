"""Step resource requirements and how they become Ray task options.

>>> Resources(num_cpus=2, resources={"high_memory": 0.001}, scheduling="SPREAD").ray_options()
{'num_cpus': 2, 'resources': {'high_memory': 0.001}, 'scheduling_strategy': 'SPREAD'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from raysight.errors import InputError, ResourceExhausted

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
    "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20,
    "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
}


def parse_bytes(value: int | float | str) -> int:
    """Bytes from an int or a size string such as ``"2GiB"``, ``"512 MB"`` or ``"1.5g"``."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise InputError(f"size must not be negative: {value!r}", value=value)
        return int(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).lower() not in _UNITS:
        raise InputError(f"not a size: {value!r} (use e.g. 512MiB, 2GiB, 1.5GB)", value=value)
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


#: ``Resources.scheduling`` of a soft affinity to one node: this prefix, then its hex node id
NODE_PREFIX = "node:"


@dataclass(frozen=True)
class Resources:
    """What one task of a step needs: CPUs, GPUs, memory in bytes and custom resources, and
    where Ray should place it.

    ``scheduling`` is ``None`` (Ray's default), ``"DEFAULT"``, ``"SPREAD"`` or
    ``"node:<hex node id>"``: a soft affinity to that node (see :func:`scheduling_strategy`).
    It is a string, not a Ray object, so that it keys the cache of Ray task options
    (:mod:`raysight.engine.calls`) and is JSON-ready.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    scheduling: str | None = None

    def ray_options(self) -> dict[str, Any]:
        """Keyword options for ``ray.remote(...).options``."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.memory:
            opts["memory"] = self.memory
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self.scheduling:
            opts["scheduling_strategy"] = scheduling_strategy(self.scheduling)
        return opts

    def routed(self, resources: dict[str, float] | None = None,
               scheduling: str | None = None) -> Resources:
        """A copy that also asks for ``resources`` and takes ``scheduling``, where this one
        does not already say otherwise (what a step asks for itself wins)."""
        extra = {k: v for k, v in (resources or {}).items() if k not in self.resources}
        return Resources(self.num_cpus, self.num_gpus, self.memory, {**self.resources, **extra},
                         self.scheduling or scheduling)

    def merged(self, **overrides: Any) -> Resources:
        """A copy with the given fields replaced (``None`` keeps the current value)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "memory" in values:
            values["memory"] = parse_bytes(values["memory"])
        return Resources(**{**self.__dict__, **values})

    def check_feasible(self, nodes: list[dict[str, float]], step: str) -> None:
        """Fail fast when no node could ever run one task of the step.

        Ray would keep such a task pending forever; a clear error is better. ``nodes`` holds
        the resources of each live node (:func:`node_resources`): every amount a task asks
        for must be on one node. The error says ``infeasible``: the request, not the data or
        a worker, is at fault (the CLI exits 2).
        """
        if self.feasible(nodes):
            return
        wanted = self.wanted()
        for name, amount in wanted.items():
            largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
            if amount > largest:
                if not largest:
                    have = f"no node of the Ray cluster has {name}"
                elif len(nodes) == 1:
                    have = f"the Ray cluster's only node has {format_amount(name, largest)}"
                else:
                    have = f"the most any node has is {format_amount(name, largest)}"
                raise ResourceExhausted(
                    f"step {step!r} needs {name}={format_amount(name, amount)} per task, "
                    f"but {have}", step=step, resource=name, requested=amount,
                    available=largest, infeasible=True)
        asked = ", ".join(f"{k}={format_amount(k, v)}" for k, v in wanted.items())
        raise ResourceExhausted(f"step {step!r} needs {asked} on one node, but no node of the "
                                "Ray cluster has all of them", step=step, requested=wanted,
                                infeasible=True)

    def feasible(self, nodes: list[dict[str, float]]) -> bool:
        """True when some node has every amount one task asks for."""
        wanted = self.wanted()
        return any(all(node.get(k, 0.0) >= v for k, v in wanted.items()) for node in nodes)

    def wanted(self) -> dict[str, float]:
        """The non-zero amounts of one task, by Ray resource name."""
        amounts = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources,
                   "memory": float(self.memory or 0)}
        return {k: float(v) for k, v in amounts.items() if v}


def scheduling_strategy(scheduling: str) -> Any:
    """Ray's ``scheduling_strategy`` for a :attr:`Resources.scheduling` value."""
    if not scheduling.startswith(NODE_PREFIX):
        if scheduling not in ("DEFAULT", "SPREAD"):
            raise InputError(f"not a scheduling strategy: {scheduling!r} (use DEFAULT, SPREAD "
                             f"or {NODE_PREFIX}<node id>)", value=scheduling)
        return scheduling
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # soft, and spilling when the node is busy: a preference (data cached there), never a
    # queue of the job's tasks behind one node, nor a failure when that node has gone
    return NodeAffinitySchedulingStrategy(scheduling[len(NODE_PREFIX):], soft=True,
                                          _spill_on_unavailable=True)


def live_nodes() -> list[dict[str, Any]]:
    """The live nodes of the connected Ray cluster as ``ray.nodes()`` describes them."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def node_resources(nodes: list[dict[str, Any]] | None = None) -> list[dict[str, float]]:
    """The total resources of every live node of the connected Ray cluster (or of
    ``nodes``, as :func:`live_nodes` returns them)."""
    return [dict(node["Resources"]) for node in (live_nodes() if nodes is None else nodes)]


def cluster_cpus() -> int:
    """CPUs of the connected Ray cluster (2 before Ray is up), at least one."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 2) if ray.is_initialized() else 2
    return max(1, int(cpus))


def format_bytes(n: float) -> str:
    """A byte count for people: ``536870912000`` -> ``'500 GiB'``, ``1536`` -> ``'1.5 KiB'``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_amount(name: str, amount: float) -> str:
    """A resource amount as Ray counts it, memory in binary units."""
    return format_bytes(amount) if name in ("memory", "object_store_memory") else f"{amount:g}"
