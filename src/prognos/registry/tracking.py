"""Where MLflow keeps runs and models: a SQLite store under PROGNOS_HOME unless told otherwise."""

from __future__ import annotations

import logging
import os

import mlflow
from mlflow.tracking import MlflowClient

from prognos.config import Settings

EXPERIMENT = "prognos"
_ENV = "MLFLOW_TRACKING_URI"


def connect(settings: Settings, experiment: str = EXPERIMENT) -> MlflowClient:
    """Point MLflow at the configured store and make sure the experiment exists.

    The experiment's artifacts go under the home (not MLflow's default ``./mlruns`` relative to
    the working directory), so two homes never share files.
    """
    settings.ensure_home()
    # MLflow's SQLite store logs every Alembic migration at INFO on first use: noise on a CLI.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, which Settings reads:
    # left there, the next Settings built in this process would point at this home's store.
    before = os.environ.get(_ENV)
    mlflow.set_tracking_uri(settings.tracking_uri)
    if before is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = before
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    if client.get_experiment_by_name(experiment) is None:
        location = None
        if settings.mlflow_tracking_uri is None:
            settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
            location = settings.artifacts_dir.resolve().as_uri()
        client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return client
