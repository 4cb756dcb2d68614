"""Time series: resample to calendar or N-minute buckets, then per-series features.

::

    from raysight.analyses.timeseries import TimeSeries

    ts = TimeSeries(TimeSeries.Config(
        time_column="ts", value_columns=["amount"], operations=["sum", "mean"],
        interval="weekly", group_by=["region"], timezone="Europe/Berlin",
        fill_gaps="zero", rolling={"window": 4, "function": "mean"},
    ))
    ts.run(df).table   # region, bucket, bucket_label, amount_sum, amount_mean, filled, ...

One module per step, in the order a result is computed:

- ``config``: what to resample and which features to add; the output columns.
- ``timestamps``: the time column read as instants in the bucket zone (datetimes, dates,
  ISO-8601 strings, strptime formats, epoch numbers; time zones and DST).
- ``resample``: rows into (group keys, bucket) aggregates, mergeable across partitions; the
  buckets themselves (calendar or N-minute, DST-aware) are :mod:`raysight.analyses.temporal`.
- ``gaps``: missing buckets of each series inserted and filled.
- ``features``: rolling windows, lag/diff/pct_change and anomaly flags per series;
  ``decompose``: classical trend/seasonal/residual decomposition.
- ``forecast``: seasonal-naive and exponential-smoothing forecasts, scored on a hold-out.
- ``analysis``: the :class:`~raysight.analyses.timeseries.analysis.TimeSeries` kernel
  (``partial``/``merge``/``finalize``).
"""

from raysight.analyses.timeseries.analysis import TimeSeries
from raysight.analyses.timeseries.config import TimeSeriesConfig

__all__ = ["TimeSeries", "TimeSeriesConfig"]
