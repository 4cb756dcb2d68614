"""What a connector, preprocessor, analysis, chart, exporter or notifier provides.

Plugins are plain classes registered under an entry-point group (see :mod:`raysight.registry`).
Each has a ``name`` and a pydantic ``Config`` model whose discriminator field (``type``, ``op``,
``format`` or ``channel``) is ``Literal[name]``; the job spec is assembled from these models.
A plugin instance is built from its validated config and is pickled into Ray tasks, so it must
hold only plain data.

Kernels work on Polars DataFrames and Arrow tables and never import the workflow engine.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from raysight.errors import InputError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class PluginConfig(BaseModel):
    """Base of every plugin config: strict, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Plugin(Generic[ConfigT]):
    """A plugin built from its validated config (kept untouched, as in scikit-learn)."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


# ---------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class PartitionSpec:
    """A small, picklable description of one partition of a source (a file, a byte range...)."""

    label: str
    location: str
    estimated_bytes: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadHints:
    """What a job needs of a source, so a connector that can may read less of it.

    ``columns``: the columns the job reads (None: all of them); a connector may return more,
    and must return each of these that the source has (a missing one is the job's error to
    report). ``filters``: rows the job keeps, as alternatives (one per consumer of the source)
    of SQL conditions that must all hold; None when some consumer keeps every row. A
    connector may skip whole files, row groups or ranges where no row can meet them, and
    must return every row that may: the job filters the rows itself, so a hint never changes
    an answer, only what is read.
    """

    columns: tuple[str, ...] | None = None
    filters: tuple[tuple[str, ...], ...] | None = None


@functools.lru_cache(maxsize=256)
def condition_columns(condition: str) -> frozenset[str]:
    """The columns an SQL condition (a ``filter_rows`` condition) reads."""
    expr = pl.sql_expr(condition)
    assert isinstance(expr, pl.Expr)
    return frozenset(expr.meta.root_names())


class Connector(Plugin[ConfigT]):
    """Reads a source into Arrow tables, one per partition.

    ``check`` runs on the driver before the job starts (cheap: does the file exist?);
    ``plan`` runs in a Ray task and lists the partitions; ``read`` runs in one Ray task per
    partition. Errors are :class:`raysight.errors.InputError` (bad path, malformed file) or
    :class:`raysight.errors.TransientError` (a service that may come back). ``hints`` say
    what the job needs of the source (:class:`ReadHints`); a connector may ignore them.
    """

    hints: ReadHints = ReadHints()

    def with_data(self, data: Any) -> Connector[ConfigT]:
        """A copy that reads ``data``, an object given in Python (a Ray Dataset) rather than
        named by the config; InputError for a connector that reads only what it names."""
        raise InputError(f"a {self.name} source reads what its config names; it cannot be "
                         f"given a {type(data).__name__} object")

    def with_hints(self, hints: ReadHints) -> Self:
        """A copy of the connector that reads with ``hints`` (the config is shared)."""
        clone = copy.copy(self)
        clone.hints = hints
        return clone

    def check(self) -> None:
        """Raise InputError when the source obviously cannot be read."""

    def plan(self) -> list[PartitionSpec]:
        raise NotImplementedError

    def read(self, partition: PartitionSpec) -> pa.Table:
        raise NotImplementedError

    def read_stats(self, partition: PartitionSpec
                   ) -> tuple[pa.Table, dict[str, dict[str, Any]] | None]:
        """The partition, with its column statistics (``raysight.tables.column_stats``)
        when the source has them without a pass over the data (Parquet footers); None lets
        the job compute them."""
        return self.read(partition), None

    def schema(self) -> pa.Schema | None:
        """The source's schema when it is known without reading its data (a Parquet footer,
        a database catalog), for checks before the job runs; None when it is not."""
        return None

    def estimated_bytes(self) -> int | None:
        """The source's size in bytes when it is known cheaply on the driver, without reading
        its data (file sizes from a listing), for routing the job; None when it is not."""
        return None

    def acknowledge(self, partitions: list[PartitionSpec]) -> None:
        """Called on the driver once the job that read ``partitions`` (those ``plan``
        returned) completed and committed its outputs: a stream source commits its consumer
        offsets here, so a job that fails reads the same messages again. A failure here is a
        warning of the job, not a failure: its results are written."""


#: schema metadata key of a partition's table: a JSON list of warnings about the read (messages
#: skipped as malformed), which the job reports as its warnings
WARNINGS_KEY = b"raysight.warnings"


def with_warnings(table: pa.Table, warnings: list[str]) -> pa.Table:
    """``table`` carrying ``warnings`` for the job to report (see :data:`WARNINGS_KEY`)."""
    if not warnings:
        return table
    metadata = dict(table.schema.metadata or {})
    metadata[WARNINGS_KEY] = json.dumps(warnings).encode()
    return table.replace_schema_metadata(metadata)


def pop_warnings(table: pa.Table) -> tuple[pa.Table, list[str]]:
    """The table without the warnings a connector attached to it, and those warnings (the
    load step reports them; they never reach a later step or an export)."""
    metadata = dict(table.schema.metadata or {})
    raw = metadata.pop(WARNINGS_KEY, None)
    if raw is None:
        return table, []
    return table.replace_schema_metadata(metadata or None), list(json.loads(raw))


# ---------------------------------------------------------------------------------------------
# Preprocessing


class Preprocessor(Plugin[ConfigT]):
    """One preprocessing operation over a Polars DataFrame.

    Row-local operations only implement ``apply``. Operations that need statistics of the whole
    column (a mean to fill with) set ``needs_stats = True``: ``partial_stats`` runs per
    partition, ``merge_stats`` combines the partial results (given in partition order), and
    ``apply`` receives the merged statistics, so every partition is transformed with the same
    numbers. ``partition`` is the index of the partition being transformed (partitions keep the
    source's row order), for operations whose result depends on what came before (a forward
    fill carries the last value of the previous partitions) or that need a per-partition seed.
    ``apply(df)`` without statistics treats ``df`` as the whole table (notebook use).
    """

    needs_stats: ClassVar[bool] = False

    def partial_stats(self, df: pl.DataFrame) -> Any:
        return None

    def merge_stats(self, partials: list[Any]) -> Any:
        return None

    def apply(self, df: pl.DataFrame, stats: Any = None, *, partition: int = 0) -> pl.DataFrame:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Analyses


@dataclass
class AnalysisResult:
    """What an analysis produces: a result table plus a JSON-ready summary.

    String and binary columns of ``table`` are in Polars' layout (Arrow string/binary views),
    which Polars, DuckDB, pandas and Parquet read as they are; ``raysight.tables.portable``
    converts them for consumers that want the classic types (pyarrow's CSV writer)."""

    kind: str
    table: pa.Table
    summary: dict[str, Any] = field(default_factory=dict)


class Analysis(Plugin[ConfigT]):
    """An analysis kernel: partial state per partition, then a combine into one result.

    ``partial`` runs in one Ray task per partition and returns picklable partial state (an Arrow
    table or small dict). A *mergeable* kernel (``mergeable`` true) also implements ``merge``,
    which merges partial states into one state of the same shape (associative over adjacent
    partials, so the engine reduces hundreds of partitions as a tree of merge tasks), and
    ``finalize``, which turns one merged state into the result; ``combine`` is then
    ``finalize(merge(partials))``. A kernel that is not mergeable overrides ``combine`` and
    receives every partial state at once. ``run`` is the single-partition fast path and the
    notebook entry point (a whole table in memory). The result must equal the single-process
    Polars answer.

    Kernels that need all rows of a group together (exact median per group, top-k) may instead
    take the shuffle path: ``shuffle_keys`` names the keys, ``shard`` hash-splits one partition
    into ``n`` tables by those keys (rows with equal keys always land in the same shard),
    ``reduce_shard`` computes the exact answer for one shard (all rows of its groups), and
    ``finish`` puts the shard answers together (concatenate, order, filter).
    """

    #: True when ``merge`` is associative over partial states (a tree reduce is possible)
    mergeable: ClassVar[bool] = True

    def partial(self, df: pl.DataFrame) -> Any:
        raise NotImplementedError

    def merge(self, partials: list[Any]) -> Any:
        """One partial state from several (mergeable kernels only)."""
        raise NotImplementedError

    def finalize(self, state: Any) -> AnalysisResult:
        """The result from one merged partial state (mergeable kernels only)."""
        raise NotImplementedError

    def combine(self, partials: list[Any]) -> AnalysisResult:
        return self.finalize(self.merge(partials))

    def run(self, df: pl.DataFrame) -> AnalysisResult:
        return self.combine([self.partial(df)])

    def required_columns(self) -> list[str]:
        """Columns the analysis reads (checked against the data before it runs)."""
        return []

    def output_columns(self) -> list[str] | None:
        """The result's columns as the config alone decides them, in order; None when they
        depend on the data (charts naming other columns are refused when the spec is
        validated)."""
        return None

    # -- optional shuffle path ------------------------------------------------------------------

    def shuffle_keys(self) -> list[str] | None:
        """Keys to hash-partition by for the shuffle path; None to use partial/combine."""
        return None

    def shard(self, df: pl.DataFrame, n: int) -> list[pa.Table]:
        raise NotImplementedError

    def reduce_shard(self, tables: list[pa.Table]) -> pa.Table:
        raise NotImplementedError

    def finish(self, shards: list[pa.Table]) -> AnalysisResult:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Outputs


@dataclass(frozen=True)
class AnalysisSection:
    """One named analysis of a job as a report shows it: its result, charts and warnings.

    ``source`` names the node the analysis reads (a dataset or preprocessing step), for display
    only.
    """

    name: str
    analysis_type: str
    result: AnalysisResult
    figures: list[tuple[str, Any]] = field(default_factory=list)  # (title, plotly Figure)
    warnings: list[str] = field(default_factory=list)
    source: str = ""


@dataclass
class ReportContext:
    """Everything an exporter may show about a finished job.

    ``result``, ``analysis_type`` and ``figures`` are the analysis an export names (data
    exporters write ``result``); ``analyses`` lists every analysis of the job in order, for
    reports that show them all, and is empty for a job of one analysis.
    """

    job_id: str
    user_id: str
    analysis_type: str
    result: AnalysisResult
    figures: list[tuple[str, Any]] = field(default_factory=list)  # (title, plotly Figure)
    data_stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    analyses: list[AnalysisSection] = field(default_factory=list)


class Chart(Plugin[ConfigT]):
    """Renders an analysis result as a plotly figure.

    An unsupported pairing (a column that is not in the result) raises
    :class:`raysight.errors.InputError`; the pipeline records it as an error entry in the
    result instead of failing the job.
    """

    def columns(self) -> dict[str, str]:
        """The result columns the chart reads, by the config field that names each
        (``{"x": "region", "y[1]": "total"}``)."""
        return {}

    def render(self, result: AnalysisResult) -> Any:
        raise NotImplementedError


class Exporter(Plugin[ConfigT]):
    """Writes a result to one file. ``extension`` names the default file suffix.

    ``problem`` says, from the result's schema alone, why this exporter cannot write it (a
    nested column for CSV); the pipeline asks every exporter before it writes any file, and an
    export that cannot be written becomes an error entry while the others are written.
    """

    extension: ClassVar[str] = ""

    def problem(self, schema: pa.Schema) -> str | None:
        """Why a result of this schema cannot be written, or None when it can."""
        return None

    def export(self, report: ReportContext, path: str) -> None:
        raise NotImplementedError


class PreparedWrite:
    """A sink's write, made ready by :meth:`Sink.prepare` and not yet visible: ``commit``
    makes it visible, ``rollback`` drops it. ``transactional`` is True when ``prepare`` did
    the work inside a transaction (a database), so ``commit`` rarely fails and ``rollback``
    leaves the target as it was; False when the work happens in ``commit`` and cannot be
    taken back once done (objects uploaded, messages produced). The job commits the
    writes that cannot be taken back first, so a failure among them still rolls back every
    transaction."""

    transactional: ClassVar[bool] = False

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        """Drop what ``prepare`` did (nothing, unless the write is transactional)."""


class Sink(Exporter[ConfigT]):
    """Writes a result outside the run directory (a database table, objects, a topic), and
    only when the whole job has succeeded.

    The results step calls ``export(report, path)`` to stage the rows at ``path`` in the
    run's staging folder (Parquet by default); the job's commit, on the driver, calls
    ``prepare(path)`` on every sink, then commits each :class:`PreparedWrite` (or rolls them
    all back when one fails). A sink's errors fail the job: they are raised with
    ``describe()`` in front (``exports[1] (database 'warehouse', table sales): ...``).
    """

    extension = ".parquet"

    def describe(self) -> str:
        """The target in messages, without secrets (``database 'warehouse', table sales``)."""
        return self.name

    def export(self, report: ReportContext, path: str) -> None:
        """Stage the rows at ``path`` as Parquet (InputError for a result ``problem``
        refuses)."""
        import pyarrow.parquet as pq

        problem = self.problem(report.result.table.schema)
        if problem is not None:
            raise InputError(problem)
        pq.write_table(report.result.table, path)

    def prepare(self, staged: str) -> PreparedWrite:
        """The write of the rows staged at ``staged``, ready to commit."""
        raise NotImplementedError


class Notifier(Plugin[ConfigT]):
    """Sends one notification. Failures raise TransientError (counted, never fatal)."""

    def send(self, message: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError
