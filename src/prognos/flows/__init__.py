"""The platform's jobs (batch ingest, train, monitor, retrain) as plain functions the CLI calls,
and as Prefect 3 flows over the same functions (:mod:`prognos.flows.orchestration`).

Nothing here imports Prefect except ``orchestration``: it is slow to import and needs a server to
register schedules with, and the plain path must need neither.
"""
