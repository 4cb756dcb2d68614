"""Group-by aggregation: metrics per group, equal to Polars on the whole table.

::

    agg = Aggregation(Aggregation.Config(
        group_by=["region"],
        metrics=[Metric(function="count"), Metric(column="amount", function="sum")],
    ))
    agg.run(df).table        # region, count, sum_amount; sorted by region, nulls last

Semantics (as Polars ``df.group_by(keys).agg(...)``): null keys form their own group; ``count``
without a column counts rows, with a column its non-null values; ``sum`` of a group without
values is 0, ``mean``/``min``/``max``/``median``/``std``/``var``/``percentile`` are null there;
``std``/``var`` are sample statistics (ddof=1, null below two values); ``percentile``
interpolates linearly; ``n_unique`` (alias ``count_distinct``) counts distinct non-null values;
``first``/``last`` are the values of the group's first/last row in row order (null when that
row's value is null, as Polars ``first()``); ``corr`` is Pearson's correlation of ``column`` and
``other`` over the rows where both are non-null, null when there are fewer than two such rows or
either column is constant over them (Polars and DuckDB give NaN there), and ``r2`` its square.
Float NaN is a value, not a missing one (as in Polars). Output dtypes: ``count`` and
``n_unique`` Int64; ``mean``, ``median``, ``percentile``, ``std``, ``var``, ``corr`` and ``r2``
Float64; ``sum`` the Polars sum dtype of the column; ``min``/``max``/``first``/``last``/``top_k``
the column dtype. Rows are sorted by the keys ascending, nulls last (or by ``order_by``, then
the keys); columns are the keys, then the metrics in declaration order. Without ``group_by`` the
result is one row, also for an empty table (count 0, sum 0, the others null).

``top_k`` (with ``k``) gives the k largest non-null values of each group, ONE ROW PER VALUE
(db-benchmark q8): the result has the keys and the value column, groups in key order and each
group's values in descending order; a group with fewer than k values has fewer rows, a group
without values none; ties are kept (``[5, 5, 3]`` with k=2 gives 5 and 5); NaN counts as the
largest float, as in Polars. Because its rows are values rather than groups, a ``top_k`` metric
must be the only metric of its aggregation.

Expressions over aggregates: ``Metric(expr="max(v1) - min(v2)", alias="range_v1_v2")``. The
aggregate calls ``fn(column)`` in the text (``sum``, ``mean``/``avg``, ``min``, ``max``,
``count`` and ``count(*)``, ``median``, ``std``/``stddev``, ``var``/``variance``, ``first``,
``last``, ``corr(x, y)``) are read by a tokenizer (never ``eval``), computed as hidden metrics
like any other (so they are distributed), and the rest of the text is evaluated as a Polars
SQL expression over them (``pl.sql_expr``); outside an aggregate call it may refer to group
keys only. ``having`` is a SQL condition over the output columns (keys and metric names), which
may also hold aggregate calls (``count(*) > 10``); rows where it is false or null are dropped.
Both are checked when the config is built.

Distributed, two ways:

* partial→combine. When every metric is mergeable (count, sum, mean, min, max, std, var, first,
  last, corr, r2, and expressions over those), ``partial`` aggregates each partition per group
  (row count, non-null count, sum, min, max, first, last, mean with M2 for std/var, and the
  co-moments n, mean_x, mean_y, C_xy, M2_x, M2_y with min/max of x and y for corr) and
  ``merge`` merges such tables into one of the same shape (Chan's parallel formula for M2
  and C_xy, from :mod:`raysight.analyses.moments`), so partials can be reduced as a tree of
  adjacent partials in partition order (first and last depend on it); ``finalize`` turns a
  merged partial into the result.
  When any metric is holistic (median, percentile, n_unique, top_k), ``partial`` projects the
  needed columns (``top_k`` keeps only each group's k largest values) and the merge
  concatenates them: a gather, exact, but all those rows meet in one task.
* shuffle. ``shuffle_keys`` names the group keys when a metric is holistic and there are keys
  (None otherwise: partial→combine is cheaper). ``shard(df, n)`` projects the needed columns
  of one partition (for ``top_k``, each group's k largest values) and splits them into n Arrow
  tables by a stable hash of the keys: equal keys, null included, land in the same shard in
  every process, whatever the integer or float width or categorical encoding of the key, and
  rows keep their order. ``reduce_shard`` aggregates one shard's tables (given in partition
  order) exactly, expression inputs included; ``finish`` concatenates the shard answers,
  evaluates expressions, applies ``having`` and the order. The result equals ``run`` on the
  partitions concatenated in order. ``shard`` works for any aggregation with keys.

The package, one concept a module: ``expressions`` (the tokenizer of expressions over
aggregates), ``config`` (Metric, AggregationConfig and the plan they give), ``groups`` (metrics
over whole groups), ``comoments`` (corr/r2 pairs), ``partials`` (mergeable partial tables: build,
merge, finalize), ``shuffle`` (the hash of the keys) and ``kernel`` (the Aggregation kernel).
"""

from raysight.analyses.aggregation.config import AggregationConfig, Function, Metric
from raysight.analyses.aggregation.expressions import (
    AggregateCall,
    ParsedExpression,
    parse_expression,
)
from raysight.analyses.aggregation.kernel import Aggregation

__all__ = [
    "Aggregation",
    "AggregationConfig",
    "AggregateCall",
    "Function",
    "Metric",
    "ParsedExpression",
    "parse_expression",
]
