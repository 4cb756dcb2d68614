"""Step resource requirements and how they become Ray task options."""

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


@dataclass(frozen=True)
class Resources:
    """What one task of a step needs: CPUs, GPUs, memory in bytes and custom resources."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)

    def ray_options(self) -> dict[str, Any]:
        """Keyword options for ``ray.remote(...).options``."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.memory:
            opts["memory"] = self.memory
        if self.resources:
            opts["resources"] = dict(self.resources)
        return opts

    def merged(self, **overrides: Any) -> Resources:
        """A copy with the given fields replaced (``None`` keeps the current value)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "memory" in values:
            values["memory"] = parse_bytes(values["memory"])
        return Resources(**{**self.__dict__, **values})

    def check_feasible(self, cluster: dict[str, float], step: str) -> None:
        """Fail fast when no amount of waiting would give the step what it asks for.

        Ray would keep such a task pending forever; a clear error is better (DESIGN.md §2).
        ``cluster`` is ``ray.cluster_resources()``.
        """
        wanted: dict[str, float] = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.resources}
        if self.memory:
            wanted["memory"] = float(self.memory)
        for name, amount in wanted.items():
            have = cluster.get(name, 0.0)
            if amount and amount > have:
                raise ResourceExhausted(
                    f"step {step!r} needs {name}={amount:g} but the Ray cluster has {have:g}",
                    step=step, resource=name, requested=amount, available=have,
                )
