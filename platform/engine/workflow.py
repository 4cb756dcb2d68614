"""Workflows as plans: steps and their combinators.

A workflow is a tree of nodes that an executor (:mod:`raysight.engine.executor`) interprets; each
:class:`Task` runs as a Ray task. Data flows from step to step (a step's output is the next
step's input, as an ObjectRef), never through a shared mutable context.

>>> @step(num_cpus=1)
... def double(x):
...     return 2 * x
>>> @step(retry=RetryPolicy(max_retries=2), timeout_s=60)
... def plus_one(x):
...     return x + 1
>>> flow = double.then(plus_one)   # or: double >> plus_one
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from raysight.engine.resources import Resources, parse_bytes
from raysight.engine.retry import RetryPolicy

Mode = Literal["apply", "map", "fanout", "driver", "dynamic", "actor", "shard", "reduce"]
#: default fan-in of a reduce step: how many partitions one call merges at most
DEFAULT_FAN_IN = 8


@dataclass(frozen=True)
class LockSpec:
    """A distributed lock held (with renewal) while each attempt of a step runs."""

    key: str
    lease_s: float = 30.0
    timeout_s: float = 10.0


class Step:
    """A node of a workflow plan, with fluent combinators."""

    name: str

    def then(self, other: Step) -> Sequence:
        """Run ``other`` after this step, with this step's output as its input."""
        left = self.steps if isinstance(self, Sequence) else (self,)
        right = other.steps if isinstance(other, Sequence) else (other,)
        return Sequence(left + right)

    __rshift__ = then

    def when(self, predicate: Callable[..., bool], description: str = "") -> When:
        """Run this step only if ``predicate(ctx)`` (or ``predicate(ctx, value)``, given the
        step's input as the executor holds it: Partitions or an ObjectRef, not data) is true;
        otherwise it is skipped and its input passes through unchanged. ``description`` states
        the condition under which the step runs ("publishing enabled"): the DAG labels the
        decision with it, and a skip records
        ``condition false: <description>``."""
        return When(self, predicate, description)

    def or_else(
        self,
        fallback: Callable[[Any], Any],
        description: str = "",
        accept: Callable[[Any], bool] | None = None,
    ) -> Recovered:
        """When this step fails for good (after its retries) with an error that ``accept``
        admits (any by default), its output is ``fallback(error)`` instead and the workflow
        goes on (the failure stays in the trace and the events). Cancellation and timeouts
        are never recovered."""
        return Recovered(self, fallback, description, accept)

    def parallel(self, *others: Step) -> Parallel:
        """Run this step and ``others`` concurrently on the same input; output is a tuple."""
        return Parallel((self, *others))

    def nested(self, name: str | None = None, params: dict[str, Any] | None = None) -> Nested:
        """Run this workflow as a sub-workflow with its own child trace (and extra params)."""
        return Nested(self, name or f"Nested({self.name})", params or {})

    def with_retry(self, policy: RetryPolicy) -> Step:
        """Retry this (sub-)workflow on retryable errors under ``policy``."""
        return Retrying(self, policy)

    def with_timeout(self, seconds: float) -> Step:
        """Cancel this (sub-)workflow and raise StepTimeout after ``seconds``."""
        return TimeLimited(self, float(seconds))

    def with_observer(self, observer: Any) -> Step:
        """Send the events of this (sub-)workflow also to ``observer``."""
        return Observed(self, observer)

    def with_circuit_breaker(self, name: str) -> Step:
        """Guard every task of this (sub-)workflow by the circuit breaker ``name``."""
        return _map_tasks(self, lambda t: t.with_circuit_breaker(name))

    def with_lock(self, key: str, lease_s: float = 30.0, timeout_s: float = 10.0) -> Step:
        """Hold the distributed lock ``key`` during each task of this (sub-)workflow."""
        return _map_tasks(self, lambda t: t.with_lock(key, lease_s, timeout_s))

    def with_checkpoint(self, enabled: bool = True) -> Step:
        """Persist (or not) the outputs of the tasks of this (sub-)workflow."""
        return _map_tasks(self, lambda t: t.with_checkpoint(enabled))


@dataclass(frozen=True, eq=False)
class Task(Step):
    """A function that runs as a Ray task (``mode="apply"``), once per input partition
    (``"map"``), as a planning step whose returned list becomes partitions (``"fanout"``), or
    in the driver process (``"driver"``, for bookkeeping that needs no worker)."""

    fn: Callable[..., Any]
    name: str
    resources: Resources = field(default_factory=Resources)
    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    priority: int = 50
    mode: Mode = "apply"
    description: str = ""
    version: str = "1.0.0"
    tags: dict[str, str] = field(default_factory=dict)
    #: Ray-level retries for system failures only (worker or node death)
    system_retries: int = 3
    #: driver-side hook ``(ctx, outcome)`` run after the step succeeded
    on_success: Callable[[Any, Any], None] | None = None
    #: persist this step's output when the run has a checkpoint store
    checkpoint: bool = True
    #: saga compensation ``(output, ctx)``, run as a Ray task if a later step fails
    compensate: Callable[..., Any] | None = None
    #: name of the circuit breaker that guards every attempt
    circuit_breaker: str | None = None
    #: a distributed lock held while each attempt runs
    lock: LockSpec | None = None
    #: actor mode: how many actors serve the calls of one execution of the step
    concurrency: int = 1
    #: shard mode: each call returns this many outputs (a hash split of its partition); the
    #: step's output has one partition per shard, holding that shard of every input partition
    shards: int = 0
    #: reduce mode: each call merges at most this many input partitions into one, level by
    #: level, until at most ``fan_in`` remain (the step's output); no call ever receives more
    fan_in: int = DEFAULT_FAN_IN

    @property
    def wants_ctx(self) -> bool:
        return _wants_ctx(self.fn)

    def options(
        self,
        *,
        name: str | None = None,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | str | None = None,
        resources: dict[str, float] | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float | None = None,
        priority: int | None = None,
        mode: Mode | None = None,
        on_success: Callable[[Any, Any], None] | None = None,
    ) -> Task:
        """A copy with some options replaced (like Ray's ``.options``)."""
        changes: dict[str, Any] = {
            "resources": self.resources.merged(
                num_cpus=num_cpus, num_gpus=num_gpus, memory=memory, resources=resources
            )
        }
        for key, value in (("name", name), ("retry", retry), ("timeout_s", timeout_s),
                           ("priority", priority), ("mode", mode), ("on_success", on_success)):
            if value is not None:
                changes[key] = value
        if "priority" in changes:
            changes["priority"] = max(0, min(100, int(changes["priority"])))
        return dataclasses.replace(self, **changes)

    def map(self) -> Task:
        """This step applied to each partition of its input, in parallel."""
        return self.options(mode="map")

    def with_compensation(self, compensate: Callable[..., Any]) -> Task:
        """Saga: if a later step fails, ``compensate(output)`` undoes this step's effect
        (steps are compensated in reverse order)."""
        return dataclasses.replace(self, compensate=compensate)

    def with_circuit_breaker(self, name: str) -> Task:
        """Guard every attempt by the cluster-wide circuit breaker ``name``: while it is
        open, attempts fail with a transient CircuitOpenError without running."""
        return dataclasses.replace(self, circuit_breaker=name)

    def with_lock(self, key: str, lease_s: float = 30.0, timeout_s: float = 10.0) -> Task:
        """Hold the distributed lock ``key`` (renewed while running) during each attempt;
        the step sees the fencing token as ``ctx.fencing_token``."""
        return dataclasses.replace(self, lock=LockSpec(key, lease_s, timeout_s))

    def with_checkpoint(self, enabled: bool = True) -> Task:
        """Persist (or not) this step's output when the run has a checkpoint store."""
        return dataclasses.replace(self, checkpoint=enabled)

    def replace_shards(self, shards: int) -> Task:
        """A shard-mode copy whose calls each return ``shards`` outputs."""
        return dataclasses.replace(self, mode="shard", shards=shards)

    def with_retry(self, policy: RetryPolicy) -> Task:
        return self.options(retry=policy)

    def with_timeout(self, seconds: float) -> Task:
        return self.options(timeout_s=float(seconds))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, in this process (notebooks, unit tests)."""
        return self.fn(*args, **kwargs)


@functools.lru_cache(maxsize=4096)
def _wants_ctx(fn: Any) -> bool:
    """True when ``fn`` (or, for a class, its ``__call__``) has a parameter named ``ctx``."""
    target = fn.__call__ if isinstance(fn, type) else fn
    try:
        return "ctx" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    memory: int | str | None = None,
    resources: dict[str, float] | None = None,
    retry: RetryPolicy | None = None,
    timeout_s: float | None = None,
    priority: int = 50,
    mode: Mode = "apply",
    description: str = "",
    concurrency: int = 1,
    fan_in: int = DEFAULT_FAN_IN,
) -> Any:
    """Turn a function into a workflow :class:`Task` whose Ray options come from its resource
    requirements. The function receives the previous step's output as its first argument and,
    if it has a parameter named ``ctx``, a :class:`raysight.engine.context.StepContext`."""

    def wrap(f: Callable[..., Any]) -> Task:
        return Task(
            fn=f,
            name=name or f.__name__,
            resources=Resources(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                memory=parse_bytes(memory) if memory is not None else None,
                resources=dict(resources or {}),
            ),
            retry=retry,
            timeout_s=timeout_s,
            priority=max(0, min(100, priority)),
            mode=mode,
            description=description or (inspect.getdoc(f) or "").split("\n")[0],
            concurrency=concurrency,
            fan_in=fan_in,
        )

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True, eq=False)
class Sequence(Step):
    """Steps run one after another; each gets the previous one's output."""

    steps: tuple[Step, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "Sequential(" + "->".join(s.name for s in self.steps) + ")"


@dataclass(frozen=True, eq=False)
class When(Step):
    """A step guarded by a condition on the run context (and, if the predicate takes two
    arguments, the step's input); false means *skipped*, not failed."""

    inner: Step
    predicate: Callable[..., bool]
    description: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"Conditional({self.inner.name})"


@dataclass(frozen=True, eq=False)
class Branch(Step):
    """``if_true`` when the predicate holds, else ``if_false`` (skipped when None)."""

    predicate: Callable[..., bool]
    if_true: Step
    if_false: Step | None = None
    description: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        other = self.if_false.name if self.if_false else "skip"
        return f"Branch({self.if_true.name}|{other})"


def branch(predicate: Callable[..., bool], if_true: Step, if_false: Step | None = None) -> Branch:
    """Choose between two sub-workflows by a condition on the run context (``predicate(ctx)``)
    or on the context and the input (``predicate(ctx, value)``)."""
    return Branch(predicate, if_true, if_false)


def holds(predicate: Callable[..., bool], ctx: Any, value: Any) -> bool:
    """The verdict of a condition: ``predicate(ctx, value)`` when it takes two arguments,
    else ``predicate(ctx)``."""
    try:
        params = [
            p
            for p in inspect.signature(predicate).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return bool(predicate(ctx, value) if len(params) >= 2 else predicate(ctx))


@dataclass(frozen=True, eq=False)
class Recovered(Step):
    """A sub-workflow whose final failure becomes a fallback output (see ``Step.or_else``)."""

    inner: Step
    fallback: Callable[[Any], Any]
    description: str = ""
    accept: Callable[[Any], bool] | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"Recovered({self.inner.name})"


@dataclass(frozen=True, eq=False)
class Parallel(Step):
    """Branches run concurrently on the same input; fail-fast: the first error cancels the
    others. The output is a tuple in declaration order."""

    branches: tuple[Step, ...]
    #: the name the trace and the plan show (default ``Parallel(<branch names>)``)
    label: str | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label or "Parallel(" + ",".join(b.name for b in self.branches) + ")"

    def parallel(self, *others: Step) -> Parallel:
        return Parallel(self.branches + others, self.label)


def parallel(*steps: Step, name: str | None = None) -> Parallel:
    """N-ary fan-out: run ``steps`` concurrently on the same input (``name`` labels it in
    the trace and the plan)."""
    return Parallel(tuple(steps), name)


@dataclass(frozen=True, eq=False)
class Nested(Step):
    """A sub-workflow with its own child trace and extra parameters."""

    inner: Step
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Retrying(Step):
    """Re-run a whole sub-workflow on retryable errors."""

    inner: Step
    policy: RetryPolicy

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"Retryable({self.inner.name})"


@dataclass(frozen=True, eq=False)
class TimeLimited(Step):
    """A deadline for a whole sub-workflow; on expiry its running tasks are cancelled."""

    inner: Step
    timeout_s: float

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"Timeout({self.inner.name})"


@dataclass(frozen=True, eq=False)
class Observed(Step):
    """A sub-workflow whose events also go to an extra observer."""

    inner: Step
    observer: Any

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"Monitored({self.inner.name})"


class Composite(Step):
    """A step made of named parts that the combinators of this module do not know (a
    :class:`~raysight.engine.graph.Graph`): :func:`tasks` and the ``with_*`` helpers reach
    the tasks inside through these two methods."""

    def parts(self) -> list[tuple[str, Step]]:
        """The named sub-steps, in declaration order."""
        raise NotImplementedError

    def map_parts(self, change: Callable[[Step], Step]) -> Step:
        """The same step with ``change`` applied to each sub-step."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Pass(Step):
    """Passes its input through unchanged (no task); useful as a parallel branch."""

    name: str = "pass"


def _map_tasks(node: Step, change: Callable[[Task], Task]) -> Step:
    """The same plan with ``change`` applied to every task."""
    if isinstance(node, Task):
        return change(node)
    if isinstance(node, Sequence):
        return Sequence(tuple(_map_tasks(s, change) for s in node.steps))
    if isinstance(node, Parallel):
        return Parallel(tuple(_map_tasks(b, change) for b in node.branches), node.label)
    if isinstance(node, Branch):
        return Branch(
            node.predicate,
            _map_tasks(node.if_true, change),
            _map_tasks(node.if_false, change) if node.if_false else None,
            node.description,
        )
    if isinstance(node, (When, Nested, Retrying, TimeLimited, Observed, Recovered)):
        return dataclasses.replace(node, inner=_map_tasks(node.inner, change))
    if isinstance(node, Composite):
        return node.map_parts(lambda s: _map_tasks(s, change))
    return node


def children(node: Step) -> tuple[Step, ...]:
    """The direct sub-steps of a plan node, in declaration order."""
    if isinstance(node, Sequence):
        return node.steps
    if isinstance(node, Parallel):
        return node.branches
    if isinstance(node, Branch):
        return (node.if_true,) + ((node.if_false,) if node.if_false else ())
    if isinstance(node, (When, Nested, Retrying, TimeLimited, Observed, Recovered)):
        return (node.inner,)
    if isinstance(node, Composite):
        return tuple(part for _, part in node.parts())
    return ()


def tasks(node: Step) -> list[Task]:
    """All tasks of a plan, depth first, in declaration order."""
    if isinstance(node, Task):
        return [node]
    return [t for child in children(node) for t in tasks(child)]
