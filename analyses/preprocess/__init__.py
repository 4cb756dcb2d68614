"""Preprocessing operations: cleaning, transforming and feature steps, one module per concept.

Each operation is a :class:`raysight.plugins.Preprocessor` built from its validated config and
applied per partition with Polars expressions (no Python loop over rows). Row-local operations
(``filter_rows``, ``select_columns``, ``derive``, ``cast``, ``rename``, ``date_extraction``,
``text_tokenization``, ``binning`` with explicit edges) only implement ``apply``. Operations
whose result depends on the whole table set ``needs_stats``: the engine runs ``partial_stats``
per partition, ``merge_stats`` once (partials in partition order), and hands the merged
statistics to ``apply`` on every partition::

    from raysight.analyses.preprocess.missing import FillMissing

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
