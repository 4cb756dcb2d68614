"""What a finished job reports (``result.json``), and how the driver writes its JSON files."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from raysight.job.steps import COMPLETED_WITH_ERRORS

#: the states of a job that wrote its outputs
DONE_STATES = ("COMPLETED", COMPLETED_WITH_ERRORS)


@dataclass
class JobResult:
    """What a finished job reports (written as ``result.json``)."""

    job_id: str
    user_id: str
    state: str  # COMPLETED | COMPLETED_WITH_ERRORS | FAILED | CANCELED
    analysis_type: str
    priority: int
    run_dir: str
    started_at: str
    finished_at: str
    execution_time_s: float
    data_stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    #: a job graph's analyses by name: type, rows, columns, summary, outputs, the node read
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    #: the targets the job's sinks wrote outside the run directory (tables, objects, topics)
    written: list[str] = field(default_factory=list)
    visualizations: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    execution_path: list[str] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    #: the nodes a run was asked to keep (``AnalysisJob(keep=...)``) as Ray Datasets, backed
    #: by their partitions in the object store; not part of ``result.json``
    datasets: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the job completed and wrote every output it was asked for."""
        return self.state == "COMPLETED"

    @property
    def input_error(self) -> bool:
        """True when the job failed because of its input (exit status 2 in the CLI): the
        spec, a file, or resources that no node of the cluster has."""
        return any(e.get("category") in ("invalid_input", "invalid_spec") or e.get("infeasible")
                   for e in self.errors)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """The result as ``result.json`` holds it (keys it does not know are ignored)."""
        known = {f.name for f in fields(cls)} - {"datasets"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, datasets={}))
        del data["datasets"]  # Ray Datasets, not JSON: they live in the object store
        return data


def ray_dataset(output: Any, analysis: bool) -> Any:
    """A node's output as a ``ray.data.Dataset``: a data node's partitions, or an analysis's
    result table, each made portable (classic string types, which Ray Data reads) by a Ray
    task where it lies, so no data passes through the driver."""
    import ray

    items = [output] if analysis else list(output.items)
    refs = [i if isinstance(i, ray.ObjectRef) else ray.put(i) for i in items]
    return ray.data.from_arrow_refs([_handout_task().remote(ref) for ref in refs])


def _portable_table(value: Any) -> pa.Table:
    from raysight.tables import portable

    return portable(getattr(value, "table", value))  # an AnalysisResult carries its table


@functools.cache
def _handout_task() -> Any:
    import ray

    return ray.remote(num_cpus=0.25)(_portable_table)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON so that ``path`` appears whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False),
                   encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, pa.Schema):
        return {f.name: str(f.type) for f in value}
    return str(value)
