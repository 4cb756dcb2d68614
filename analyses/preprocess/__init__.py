"""Preprocessing operations: cleaning, transforming and feature steps, one module per concept.

Each operation is a :class:`raysight.plugins.Preprocessor` built from its validated config and
applied per partition with Polars expressions (no Python loop over rows). Row-local operations
(``filter_rows``, ``select_columns``, ``derive``, ``cast``, ``rename``, ``date_extraction``,
``text_tokenization``, ``binning`` with explicit edges) only implement ``apply``. Operations
whose result depends on the whole table set ``needs_stats``: the engine runs ``partial_stats``
per partition, ``merge_stats`` once (partials in partition order), and hands the merged
statistics to ``apply`` on every partition::

    from raysight.analyses.preprocess import FillMissing

    op = FillMissing(FillMissing.Config(op="fill_missing", columns=["amount"], method="mean"))
    stats = op.merge_stats([op.partial_stats(part) for part in parts])
    parts = [op.apply(part, stats, partition=i) for i, part in enumerate(parts)]

Concatenated in partition order, the result equals the operation applied to the whole table
(``op.apply(whole)``, which computes its statistics from ``whole`` itself), with one documented
exception: ``sample`` draws depend on the partitioning.

Modules: ``missing`` (drop_missing, fill_missing), ``rows`` (filter_rows, deduplicate,
sample), ``shape`` (select_columns, rename), ``cast``, ``derive``, ``scaling`` (normalize),
``binning``, ``encoding`` (encode), ``dates`` (date_extraction), ``text``
(text_tokenization); ``checks`` holds the column checks they share. ISO-8601 parsing is
:mod:`raysight.analyses.temporal`, shared with the time-series kernel.
"""

from raysight.analyses.preprocess.binning import Binning, BinningConfig
from raysight.analyses.preprocess.cast import Cast, CastConfig
from raysight.analyses.preprocess.dates import DateExtraction, DateExtractionConfig
from raysight.analyses.preprocess.derive import Derive, DeriveConfig
from raysight.analyses.preprocess.encoding import Encode, EncodeConfig
from raysight.analyses.preprocess.missing import (
    DropMissing,
    DropMissingConfig,
    FillMissing,
    FillMissingConfig,
)
from raysight.analyses.preprocess.rows import (
    Deduplicate,
    DeduplicateConfig,
    FilterRows,
    FilterRowsConfig,
    Sample,
    SampleConfig,
)
from raysight.analyses.preprocess.scaling import Normalize, NormalizeConfig
from raysight.analyses.preprocess.shape import (
    Rename,
    RenameConfig,
    SelectColumns,
    SelectColumnsConfig,
)
from raysight.analyses.preprocess.text import TextTokenization, TextTokenizationConfig

__all__ = [
    "Binning",
    "BinningConfig",
    "Cast",
    "CastConfig",
    "DateExtraction",
    "DateExtractionConfig",
    "Deduplicate",
    "DeduplicateConfig",
    "Derive",
    "DeriveConfig",
    "DropMissing",
    "DropMissingConfig",
    "Encode",
    "EncodeConfig",
    "FillMissing",
    "FillMissingConfig",
    "FilterRows",
    "FilterRowsConfig",
    "Normalize",
    "NormalizeConfig",
    "Rename",
    "RenameConfig",
    "Sample",
    "SampleConfig",
    "SelectColumns",
    "SelectColumnsConfig",
    "TextTokenization",
    "TextTokenizationConfig",
]
