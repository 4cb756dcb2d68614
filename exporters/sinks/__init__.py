"""Sinks: results and datasets written back, outside the run directory, when the job has
succeeded: to a database table (:mod:`.database`), to object storage
(:mod:`.object_storage`) and to a Kafka topic (:mod:`.kafka`).

Each is an exporter (``exports: [{format: database, from: by_region, ...}]``) whose rows the
results step stages in the run's staging folder and the job's commit writes (see
:mod:`raysight.job.sinks`), so a job that fails in any step leaves every target as it was.
"""
