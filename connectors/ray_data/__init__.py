"""A ``ray.data.Dataset`` as a job's source (and so every Ray Data datasource), read from the
object store without passing through the driver.

In Python::

    job = Job("events")
    events = job.source("events", ray.data.read_json("s3://bucket/events/"))
    events.analyze("by_kind", type="aggregation", group_by=["kind"],
                   metrics=[{"function": "count", "alias": "n"}])
    result = job.run(keep=["events"])
    result.datasets["events"]          # any kept node, handed back as a Ray Dataset

A spec names such a source by its type alone (``{type: ray_dataset}``): the dataset itself
is given to :class:`raysight.job.pipeline.AnalysisJob` as ``inputs={"events": dataset}``.
"""

from raysight.connectors.ray_data.connector import RayDatasetConfig, RayDatasetConnector

__all__ = ["RayDatasetConfig", "RayDatasetConnector"]
