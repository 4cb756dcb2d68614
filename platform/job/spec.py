"""The job spec: pydantic models assembled from the plugin registries.

A spec is loaded from YAML or JSON (or built in Python), validated strictly (unknown keys are
rejected, every error names the field path), and turned into a workflow by
:mod:`raysight.job.pipeline`. ``raysight schema`` prints the JSON Schema.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import json
import posixpath
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from raysight import registry
from raysight.analyses.aliases import SEED_NAMES, CustomForm, resolve_custom
from raysight.connections import (
    Connection,
    connections_file,
    load_connections,
    uses_connections,
    validation_context,
)
from raysight.engine.context import Fault
from raysight.engine.resources import Resources, parse_bytes
from raysight.engine.retry import Exponential, RetryPolicy
from raysight.engine.workflow import DEFAULT_FAN_IN
from raysight.errors import InputError
from raysight.plugins import PluginConfig, Sink
from raysight.secrets import masked_url

SPEC_VERSION = 1
PIPELINE_STEPS = ("load", "preprocess", "analyze", "results", "notify", "complete")
StepName = Literal["load", "preprocess", "analyze", "results", "notify", "complete"]
#: retries after the first attempt, per pipeline step
DEFAULT_STEP_RETRIES = {"load": 5, "preprocess": 3, "analyze": 2, "results": 2, "notify": 3,
                        "complete": 1}
RESERVED_OUTPUTS = {"result.json", "events.jsonl", "audit.jsonl", "spec.json", ".driver.lock"}
RESERVED_FOLDERS = (".staging", "checkpoints", ".sinks")
#: the folder of the staging folder where sinks stage their rows until the job commits
SINK_STAGING = ".sinks"
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SpecError(InputError):
    """The job spec (or a file it names) is invalid; the message lists every problem."""

    category = "invalid_spec"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _size(value: Any) -> Any:
    """A size like ``"2GiB"`` as bytes, parsed once, while the spec is validated."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return parse_bytes(value)
        except InputError as err:
            raise ValueError(str(err)) from None
    return value


class ResourceSpec(_Strict):
    """Ray resources for every task of one pipeline step."""

    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    memory: Annotated[
        int | None,
        BeforeValidator(_size),
        WithJsonSchema(
            {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}, {"type": "null"}]}
        ),
    ] = Field(default=None, description="bytes, or a size like '2GiB'")
    resources: dict[str, float] | None = None

    def to_resources(self) -> Resources:
        """The engine's resources of one task (unset fields keep the engine's defaults)."""
        return Resources().merged(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            memory=self.memory,
            resources=self.resources,
        )


class RetrySpec(_Strict):
    """Exponential backoff between retries: initial_s * multiplier**(n-1), capped, + jitter."""

    initial_s: float = Field(default=1.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_s: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1)

    def backoff(self) -> Exponential:
        return Exponential(self.initial_s, self.multiplier, self.max_s, self.jitter)


class FaultSpec(_Strict):
    """An injected failure (tests, chaos drills): the step fails its first `times` attempts."""

    step: str = Field(description="a pipeline step or sub-step, e.g. analyze or load.plan")
    error: Literal["transient", "permanent", "delay", "crash"] = "transient"
    times: int = Field(default=1, ge=1)
    delay_s: float = Field(default=0.0, ge=0)
    partition: int | None = Field(default=None, ge=0)

    def to_fault(self) -> Fault:
        return Fault(self.step, self.error, self.times, self.delay_s, self.partition)


class ExecutionSpec(_Strict):
    """How the job runs: time limits, retries, injected faults."""

    timeout_s: float = Field(default=1800.0, gt=0,
                             description="whole-job time limit (seed: 30 min)")
    max_retries: int | None = Field(default=None, ge=0,
                                    description="cap on every step's retries (default per step)")
    step_timeouts_s: dict[StepName, float] = Field(default_factory=dict)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    checkpoint: bool = Field(default=True, description="persist every step's output so "
                             "`raysight resume` can finish an interrupted job")
    checkpoint_url: str | None = Field(default=None, description="fsspec URL for checkpoints "
                                       "(default: <run dir>/<job id>/checkpoints); "
                                       "{job_id} is replaced")
    keep_checkpoints: bool = Field(default=False, description="keep checkpoints after the job "
                                   "completed (they are always kept after a failure)")
    faults: list[FaultSpec] = Field(default_factory=list)
    routing: Literal["auto", "spread", "off"] = Field(
        default="auto", description="resource routing (raysight.job.routing): auto applies "
        "the size, kind and affinity rules where the cluster offers what they ask for; "
        "spread also spreads the data steps over the nodes when no rule applies; off asks "
        "for nothing beyond the spec's resources")
    combine_fan_in: int = Field(
        default=DEFAULT_FAN_IN,
        ge=2,
        description="most partial "
        "states one combine task merges: partials of more partitions "
        "are merged as a tree",
    )

    def retry_policy(self, step: StepName) -> RetryPolicy:
        """The retry policy of one pipeline step: its default retries (capped by
        ``max_retries``) with the spec's backoff."""
        retries = DEFAULT_STEP_RETRIES[step]
        if self.max_retries is not None:
            retries = min(retries, self.max_retries)
        return RetryPolicy(max_retries=retries, backoff=self.retry.backoff())

    @model_validator(mode="after")
    def _positive_timeouts(self) -> ExecutionSpec:
        for name, seconds in self.step_timeouts_s.items():
            if seconds <= 0:
                raise ValueError(f"step_timeouts_s.{name} must be > 0, got {seconds}")
        return self


class JobCommon(_Strict):
    """Fields every job has, whatever its spec version."""

    job_id: str | None = Field(default=None, description="default job_<uuid4>; templates {date} "
                               "{timestamp} {uuid}")
    user_id: str = "anonymous"
    priority: int = Field(default=50, ge=0, le=100)
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    resources: dict[StepName, ResourceSpec] = Field(default_factory=dict)
    connections: dict[str, Connection] = Field(
        default_factory=dict, description="named connections that sources name with "
        "`connection:` (a password must be a ${NAME} reference; these win over a connections "
        "file's of the same name)")
    #: the connections file's connections the spec was validated with (None: the default)
    _file_connections: dict[str, Connection] | None = PrivateAttr(default=None)

    @property
    def file_connections(self) -> dict[str, Connection] | None:
        """The connections of the file this spec's sources were looked up in (None when no
        source names a connection, or for a spec validated without a parse function)."""
        return self._file_connections

    @model_validator(mode="after")
    def _check_outputs(self) -> JobCommon:
        seen: dict[str, int] = {}
        for i, export in enumerate(getattr(self, "exports", [])):
            if is_sink(export):  # writes outside the run directory; staged under its digest
                norm = export_path(export)
                if norm in seen:
                    raise ValueError(f"exports[{i}] writes what exports[{seen[norm]}] writes")
                seen[norm] = i
                continue
            path = export.path or _default_export_name(export)
            problem = _export_path_problem(path)
            if problem:
                raise ValueError(f"exports[{i}].path: {path!r} {problem}")
            norm = posixpath.normpath(path)
            if norm in seen:
                raise ValueError(
                    f"exports[{i}].path: {path!r} is also written by exports[{seen[norm]}]")
            seen[norm] = i
        if self.job_id is not None:
            render_job_id(self.job_id)  # raises on a bad template
        return self


class JobSpecBase(JobCommon):
    """A version 1 job: one source, its preprocessing and one analysis; the source,
    preprocessing, analysis ... fields come from the registries."""

    version: Literal[1] = Field(default=1, description="spec version; older versions are "
                                "migrated (0 = the job JSON with id, parameters "
                                "and execution_settings)")

    @model_validator(mode="after")
    def _check_charts(self) -> JobSpecBase:
        charts = getattr(self, "visualizations", [])
        analysis = getattr(self, "analysis", None)
        check_chart_columns([(i, chart, analysis) for i, chart in enumerate(charts)])
        return self


if TYPE_CHECKING:

    class JobSpec(JobSpecBase):
        """The JobSpec model :func:`spec_model` builds, as type checkers see it."""

        source: PluginConfig
        preprocessing: list[PluginConfig]
        analysis: PluginConfig
        visualizations: list[PluginConfig]
        exports: list[PluginConfig]
        notifications: list[PluginConfig]
else:
    JobSpec = JobSpecBase


def check_chart_columns(charts: list[tuple[int, Any, Any]]) -> None:
    """Charts may only name columns the analysis they render will produce, where its config
    decides them: for each ``(index, chart, analysis config)``, a ValidationError at
    ``visualizations[index].<field>`` listing the result's columns."""
    problems = []
    for i, chart, analysis in charts:
        columns = registry.analyses.build(analysis).output_columns()
        if columns is None:
            continue
        for field, column in registry.charts.build(chart).columns().items():
            if column not in columns:
                near = difflib.get_close_matches(column, columns, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                message = (f"column {column!r} is not in the {analysis.type} result, "
                           f"whose columns will be: {', '.join(columns)}{hint}")
                problems.append(InitErrorDetails(
                    type=PydanticCustomError("unknown_column", "{message}",
                                             {"message": message}),
                    loc=("visualizations", i, *_field_loc(field)), input=column))
    if problems:
        raise ValidationError.from_exception_data("JobSpec", problems)


def _field_loc(field: str) -> tuple[str | int, ...]:
    """``"y[1]"`` -> ``("y", 1)``."""
    name, _, index = field.partition("[")
    return (name, int(index.rstrip("]"))) if index else (name,)


def _default_export_name(export: Any) -> str:
    plugin = registry.exporters.get(export.format)
    return f"{'report' if export.format == 'html' else 'analysis'}{plugin.extension}"


def export_path(export: Any) -> str:
    """The run-directory-relative path an export writes (a sink: where its rows are staged,
    under the staging folder's ``.sinks``, until the job commits)."""
    if is_sink(export):
        digest = hashlib.sha256(export.model_dump_json().encode()).hexdigest()[:16]
        return f"{SINK_STAGING}/{export.format}-{digest}.parquet"
    return posixpath.normpath(export.path or _default_export_name(export))


def is_sink(export: Any) -> bool:
    """Whether an export config is a sink's (it writes outside the run directory)."""
    return issubclass(registry.exporters.get(export.format), Sink)


def _export_path_problem(path: str) -> str | None:
    if not path or path.strip() != path:
        return "is empty or has surrounding spaces"
    if "://" in path or path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "must be a path relative to the run directory"
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm == ".":
        return "escapes the run directory"
    if norm in RESERVED_OUTPUTS or norm.split("/")[0] in RESERVED_FOLDERS:
        return "is reserved for raysight's own files"
    return None


def union_of(configs: list[type], discriminator: str) -> Any:
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator=discriminator)]  # noqa: UP007


class AcceptsCustomForm:
    """An analysis field's JSON Schema also accepts the custom form, ``{type: custom, name,
    params}`` (``form``), which the field's validator rewrites to the kernel's own config."""

    def __init__(self, form: type[BaseModel] = CustomForm) -> None:
        self.form = form

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema: dict[str, Any] = handler(core_schema)
        custom: dict[str, Any] = handler(self.form.__pydantic_core_schema__)
        names = ", ".join([*registry.analyses.names(), *SEED_NAMES])
        custom = {**custom, "description": f"runs the analysis `name` ({names}) with `params`"}
        if "oneOf" not in schema:
            return {"oneOf": [schema, custom]}
        schema = {**schema, "oneOf": [*schema["oneOf"], custom]}
        if "discriminator" in schema and "$ref" in custom:
            mapping = {**schema["discriminator"].get("mapping", {}), "custom": custom["$ref"]}
            schema["discriminator"] = {**schema["discriminator"], "mapping": mapping}
        return schema


@functools.cache
def spec_model() -> type[JobSpec]:
    """The JobSpec model for the plugins installed now (built once per process)."""
    source = union_of(registry.connectors.configs(), "type")
    op = union_of(registry.preprocessors.configs(), "op")
    analysis: Any = Annotated[
        union_of(registry.analyses.configs(), "type"),
        BeforeValidator(resolve_custom),
        AcceptsCustomForm(),
    ]
    chart = union_of(registry.charts.configs(), "type")
    export = union_of(registry.exporters.configs(), "format")
    notify = union_of(registry.notifiers.configs(), "channel")
    return create_model(  # type: ignore[call-overload,no-any-return]
        "JobSpec",
        __base__=JobSpecBase,  # type: ignore[arg-type]
        __doc__="A raysight analysis job.",
        source=(source, ...),
        preprocessing=(list[op], Field(default_factory=list)),  # type: ignore[valid-type]
        analysis=(analysis, ...),
        visualizations=(list[chart], Field(default_factory=list)),  # type: ignore[valid-type]
        exports=(list[export], Field(default_factory=list)),  # type: ignore[valid-type]
        notifications=(list[notify], Field(default_factory=list)),  # type: ignore[valid-type]
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema of the job spec, for editors and validation elsewhere."""
    return spec_model().model_json_schema()


# ---------------------------------------------------------------------------------------------
# Loading


#: spec migrations: version -> function turning a spec dict of that version into the next
MIGRATIONS: dict[int, Any] = {}


def migration(from_version: int) -> Any:
    """Register a function that upgrades a spec dict from ``from_version`` to the next."""
    def register(fn: Any) -> Any:
        MIGRATIONS[from_version] = fn
        return fn
    return register


@migration(0)
def _from_seed_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 is the older job JSON: ``id`` for the job id, the lists of
    preprocessing, visualizations, exports and notifications under ``parameters``, and
    ``execution_settings`` with ``timeout`` (seconds) and ``max_retries``."""
    out = {k: v for k, v in data.items()
           if k not in ("id", "parameters", "execution_settings", "version")}
    if "id" in data:
        out["job_id"] = data["id"]
    for key, value in (data.get("parameters") or {}).items():
        out.setdefault(key, value)
    settings = data.get("execution_settings") or {}
    execution = dict(out.get("execution") or {})
    if settings.get("timeout") is not None:
        execution["timeout_s"] = float(settings["timeout"])
    if settings.get("max_retries") is not None:
        execution["max_retries"] = settings["max_retries"]
    if execution:
        out["execution"] = execution
    out["version"] = 1
    return out


def migrate(data: dict[str, Any], source: str = "spec") -> dict[str, Any]:
    """Upgrade an older spec dict to version 1, or refuse with a clear message (version 1
    becomes a job graph through the migration :mod:`raysight.job.graph_spec` registers)."""
    version = data.get("version", SPEC_VERSION)
    if not isinstance(version, int):
        return data  # the model reports the bad value
    if version > SPEC_VERSION:  # a job graph (version 2) is read by parse_graph_spec
        raise SpecError(f"{source}: spec version {version} is not a version "
                        f"{SPEC_VERSION} spec; read it with parse_graph_spec")
    while version < SPEC_VERSION:
        if version not in MIGRATIONS:
            raise SpecError(f"{source}: spec version {version} cannot be migrated to "
                            f"{SPEC_VERSION}: no migration registered")
        data = MIGRATIONS[version](data)
        version = data.get("version", version + 1)
    return data


def parse_spec(data: Any, source: str = "spec",
               connections: dict[str, Connection] | str | Path | None = None) -> JobSpec:
    """Validate a dict into a JobSpec (migrating older versions); raises SpecError naming
    every bad field. A source's ``connection:`` is looked up in the spec's ``connections:``
    and in ``connections`` (the connections a file defines, or the file; by default
    :func:`raysight.connections.connections_file`)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a job spec must be a mapping, got {type(data).__name__}")
    data = migrate(data, source)
    if uses_connections(data) and not isinstance(connections, dict):
        connections = load_connections(connections_file(connections))
    try:
        spec = spec_model().model_validate(data, context=validation_context(data, connections))
    except ValidationError as err:
        raise SpecError(f"{source}: invalid job spec\n" + format_errors(err, data),
                        errors=[_loc(e["loc"], data) for e in err.errors()]) from None
    if isinstance(connections, dict):
        spec._file_connections = connections
    return spec


class SpecLoader(yaml.SafeLoader):
    """YAML as version 1.2 reads booleans: only ``true``/``false``. YAML 1.1's ``on``,
    ``off``, ``yes`` and ``no`` stay strings, so a join's ``on: [key]`` is the key ``on``
    (PyYAML's default loader would read it as ``True: [key]``)."""


SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def read_yaml(text: str) -> Any:
    """A YAML document read with :class:`SpecLoader`."""
    return yaml.load(text, Loader=SpecLoader)  # noqa: S506 - a SafeLoader


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> JobSpec:
    """Read a YAML or JSON spec file, apply ``KEY=VALUE`` overrides, validate."""
    return parse_spec(read_spec_file(path, overrides), str(path))


def read_spec_file(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The data of a YAML or JSON spec file with ``KEY=VALUE`` overrides applied (not yet
    validated); SpecError when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}", path=str(path)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read spec file {path}: {err}", path=str(path)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else read_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{err}", path=str(path)) from None
    if isinstance(data, dict):
        for item in overrides:
            apply_override(data, item)
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b[0].c=value`` (or ``a.b.0.c=value``) in a spec dict; value parsed as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set priority=70")
    parts = [p for p in re.split(r"\.|\[(\d+)\]", key.strip()) if p]
    try:
        value = read_yaml(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"--set {key}: no item {part} in {'.'.join(parts[:i]) or 'spec'}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping or list")


#: error kinds whose message already names the value (it is not repeated as ``(got ...)``)
QUIET_ERRORS = {"missing", "extra_forbidden", "unknown_column", "unknown_node", "wrong_node",
                "duplicate_node", "cycle", "report_from", "node_name"}


def format_errors(err: ValidationError, data: Any) -> str:
    lines = []
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input")
        quiet = (e["type"] in QUIET_ERRORS
                 or isinstance(value, (dict, list)))
        if isinstance(value, str):  # a URL's password is never repeated to the user
            value = masked_url(value)
        shown = "" if quiet else f" (got {value!r})"
        lines.append(f"  {_loc(e['loc'], data)}: {msg}{shown}")
    return "\n".join(lines)


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """Dotted field path, without pydantic's union-tag segments: ``analysis.metrics[0].q``."""
    out = ""
    node = data
    for part in loc:
        if part == "[key]":  # pydantic's marker of a dict key that failed validation
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if isinstance(node, dict) and part not in node and part in _tags(node):
            continue  # a discriminated-union tag, not a key of the data
        out += f".{part}" if out else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out or "spec"


def _tags(node: dict[str, Any]) -> set[str]:
    return {str(node[k]) for k in ("type", "op", "format", "channel") if k in node}


def render_job_id(template: str | None, now: dt.datetime | None = None) -> str:
    """The job id for a run: ``job_<uuid4>`` by default, or the template rendered with
    ``{date}`` (YYYY-MM-DD), ``{timestamp}`` (YYYYMMDDTHHMMSS) and ``{uuid}``."""
    if template is None:
        return f"job_{uuid.uuid4()}"
    now = now or dt.datetime.now(dt.UTC)
    values = {"date": now.strftime("%Y-%m-%d"), "timestamp": now.strftime("%Y%m%dT%H%M%S"),
              "uuid": str(uuid.uuid4())}
    try:
        job_id = template.format(**values)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"job_id template {template!r}: unknown or bad placeholder {err}; "
                         "use {date}, {timestamp} or {uuid}") from None
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"job_id {job_id!r} may only contain letters, digits, '.', '_' and '-' "
                         "(it names the run directory)")
    return job_id
