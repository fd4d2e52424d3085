"""Settings: the one place configuration comes from (environment, prefix ``PROGNOS_``).

Build them with :func:`get_settings` and pass them in; nothing reads the environment elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Platform settings. Everything prognos writes lives under ``home``."""

    model_config = SettingsConfigDict(env_prefix="PROGNOS_", extra="ignore")

    home: Path = Field(
        default=Path(".prognos"), description="Root of every store, model and report."
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Online feature state in Redis when set; in process otherwise."
    )
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; a SQLite file under home when unset."
    )
    redis_namespace: str = Field(default="prognos", description="Key prefix for Redis state.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROGNOS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow server or store; a SQLite store under home when unset.",
    )
    log_level: str = "INFO"

    fleet: str | None = Field(
        default=None,
        # It names MQTT topics and Redis keys: no separators or wildcards.
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The fleet this process's readings belong to (stored with each reading, so "
        "one database holds several fleets); the served model's fleet when unset.",
    )

    # -- the prediction service ------------------------------------------------------------------
    model_name: str | None = Field(
        default=None, description="Registered model the service serves (its champion)."
    )
    auth_enabled: bool = Field(
        default=True, description="Require API keys; turn off only for a local demo."
    )
    rate_limit_per_minute: int = Field(
        default=100, ge=1, description="Requests per minute per API key unless the key says."
    )
    key_cache_offline_seconds: float = Field(
        default=86_400.0,
        ge=0,
        description="How long after its last verification a key is still accepted while the "
        "database cannot be reached (from HOME/keys/verified.json, hashes only); 0: never.",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body.")
    max_batch: int = Field(default=1000, ge=1, description="Most assets or readings per call.")
    model_poll_seconds: float = Field(
        default=30.0, gt=0, description="How often the service checks where champion points."
    )
    compute_process: bool = Field(
        default=True,
        description="Serve the model from a process of its own (its own GIL), not a thread of "
        "the HTTP server process.",
    )
    top_features: int = Field(default=5, ge=1, le=10, description="Contributions per response.")
    ack_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Longest a request waits for its records to be committed or spooled before "
        "it is answered 503 (never 2xx for what is not durable).",
    )

    # -- streaming ------------------------------------------------------------------------------
    mqtt_url: SecretStr | None = Field(
        default=None,
        description="MQTT broker (mqtt://user:pass@host:1883); the demo uses an in-process "
        "queue when unset.",
    )
    mqtt_session_expiry_seconds: int = Field(
        default=86_400,
        ge=0,
        le=4_294_967_295,
        description="How long the broker keeps a stopped ingester's session, and the readings "
        "queued for it, before dropping them.",
    )
    mqtt_receive_maximum: int = Field(
        default=20_000,
        ge=1,
        le=65_535,
        description="Unacknowledged messages the broker may send an ingester at once (messages "
        "are acknowledged only once durable, so this bounds a batch).",
    )
    stream_batch_max: int = Field(
        default=5_000, ge=1, description="Most messages the ingester takes in one batch."
    )
    stream_batch_wait_ms: float = Field(
        default=20.0,
        ge=0,
        description="How long the ingester lets a batch fill after its first message.",
    )
    stream_metrics_port: int | None = Field(
        default=None, ge=0, le=65_535, description="Serve the ingester's Prometheus metrics here."
    )
    stream_metrics_host: str = Field(
        default="127.0.0.1",
        description="Interface the ingester's metrics bind to (0.0.0.0 in a container, so that "
        "Prometheus can scrape it).",
    )

    # -- monitoring -----------------------------------------------------------------------------
    monitoring_window_hours: float = Field(
        default=24.0,
        gt=0,
        description="Live monitoring's recent window (by arrival time): data quality and drift "
        "of the readings, predictions and dead letters received in it.",
    )
    monitoring_label_window_hours: float = Field(
        default=720.0,
        gt=0,
        description="How far back predictions are judged against feedback: labels arrive late, "
        "so realised performance looks further back than the recent window.",
    )
    monitoring_max_rows: int = Field(
        default=200_000,
        ge=1,
        description="Most readings (and most predictions) one monitoring run reads: the newest.",
    )
    monitoring_coverage_min: float = Field(
        default=0.80, ge=0, le=1, description="Lowest realised interval coverage still in band."
    )
    monitoring_coverage_max: float = Field(
        default=0.97, ge=0, le=1, description="Highest realised interval coverage still in band."
    )
    monitoring_coverage_min_count: int = Field(
        default=20,
        ge=1,
        description="Realised RULs needed before coverage can be out of band (fewer: too noisy).",
    )
    monitoring_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often /metrics re-reads the latest monitoring runs from the database.",
    )

    ui_session_hours: float = Field(
        default=8.0,
        gt=0,
        le=24 * 30,
        description="How long a dashboard sign-in lasts (the session cookie's life).",
    )

    # -- alerts ---------------------------------------------------------------------------------
    alert_rules: Path | None = Field(
        default=None,
        description="Alert rules YAML; the shipped defaults (prognos/alerting/rules.yaml) when "
        "unset.",
    )
    alert_slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack-compatible incoming webhook alerts are posted to."
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None, description="Generic JSON webhook alerts are posted to."
    )
    alert_repeat_minutes: float = Field(
        default=240.0, gt=0, description="How often a firing alert is sent again while it holds."
    )
    alerts_enabled: bool = Field(
        default=True, description="Evaluate the alert rules in the prediction service."
    )
    alert_evaluate_seconds: float = Field(
        default=60.0, gt=0, description="How often the service evaluates the alert rules."
    )

    # -- training -------------------------------------------------------------------------------
    train_jobs: int | None = Field(
        default=None,
        ge=1,
        description="Worker processes fitting cross-validation's (fold, member) pairs and the "
        "final members, one thread each; unset: 2 on a machine of two or more cores for 10,000 "
        "rows or more without CUDA, else 1 (this process).",
    )

    # -- the retraining loop --------------------------------------------------------------------
    retrain_min_new_labels: int = Field(
        default=20,
        ge=1,
        description="New labelled outcomes (feedback) since the last training that trigger a "
        "retraining.",
    )
    retrain_f2_below: float = Field(
        default=0.78,
        ge=0,
        le=1,
        description="Realised F2 in the newest monitoring run below which retraining is due.",
    )
    retrain_schedule: str = Field(
        default="0 3 * * 0", description="Cron schedule of the scheduled retraining (Prefect)."
    )
    monitor_schedule: str = Field(
        default="0 * * * *", description="Cron schedule of the monitoring flow (Prefect)."
    )
    ingest_source: str | None = Field(
        default=None,
        description="KIND:PATH the scheduled batch-ingest flow loads (re-ingesting is "
        "idempotent, so a growing file or folder is safe); no ingest schedule when unset.",
    )
    ingest_schedule: str = Field(
        default="*/15 * * * *", description="Cron schedule of the batch-ingest flow (Prefect)."
    )
    gate_schedule: str = Field(
        default="30 * * * *",
        description="Cron schedule of the promotion-gate flow (Prefect): a shadowed challenger "
        "is judged as its labels arrive (half past, after the hourly monitoring run).",
    )
    prefect_api_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PROGNOS_PREFECT_API_URL", "PREFECT_API_URL"),
        description="The Prefect server `prognos flows serve` registers the flows with.",
    )
    shadow_queue_max: int = Field(
        default=20_000,
        ge=1,
        description="Readings and scores queued for the challenger's shadow at most; beyond it "
        "the shadow drops its backlog and rebuilds its state from the stored readings.",
    )
    gate_min_labelled: int = Field(
        default=20,
        ge=1,
        description="Labelled predictions of both models on the same window the promotion gate "
        "needs before it compares them on live outcomes.",
    )
    gate_margin: float = Field(
        default=0.0,
        ge=0,
        description="How much higher the challenger's realised F2 must be than the champion's.",
    )
    gate_min_f2: float = Field(
        default=0.5, ge=0, le=1, description="Floor on the challenger's realised and CV F2."
    )
    gate_max_rmse: float = Field(
        default=60.0, gt=0, description="Ceiling on the challenger's CV RMSE (fleet time units)."
    )

    # -- fleet scale (Spark) --------------------------------------------------------------------
    spark_master: str | None = Field(
        default=None,
        description="Where `--engine spark` runs: a Spark master URL (spark://host:7077, yarn, "
        "k8s://...) or Spark Connect (sc://host:15002); local[N] with N = the CPUs when unset.",
    )
    spark_driver_memory: str = Field(
        default="2g",
        description="JVM heap of a local Spark session (driver and executors share it); a "
        "cluster's own settings (spark-submit) apply otherwise.",
    )
    spark_assets_per_group: int = Field(
        default=250,
        ge=1,
        description="Assets per applyInPandas group: each group is whole assets, built in one "
        "vectorised call (one call per asset took twice as long: 150 s against 76 s for the "
        "features of 1,000 simulated assets, bench/bench_spark.py --grouping).",
    )
    spark_fit_assets: int = Field(
        default=5_000,
        ge=1,
        description="Most assets (a sample by asset hash) the driver fits the feature pipeline "
        "on; a fleet at most this large is fitted whole, as the pandas engine does.",
    )

    # -- the data lake --------------------------------------------------------------------------
    lake_url: str | None = Field(
        default=None,
        description="Root of the Parquet lake the stored readings are exported to: a local path "
        "or any fsspec URL (s3://bucket/lake); HOME/lake when unset.",
    )
    lake_export_schedule: str = Field(
        default="*/5 * * * *",
        description="Cron schedule of the lake-export flow (Prefect); `prognos lake export "
        "--every SECONDS` exports more often.",
    )
    lake_export_batch_rows: int = Field(
        default=200_000,
        ge=1,
        description="Most readings one export batch reads and writes (one file per date).",
    )

    @property
    def lake(self) -> str:
        """Where the lake lives: ``PROGNOS_LAKE_URL``, else ``HOME/lake``."""
        return self.lake_url or str(self.home / "lake")

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def tracking_uri(self) -> str:
        """Where runs and registered models live: ``MLFLOW_TRACKING_URI`` or SQLite under home."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    def ensure_home(self) -> Path:
        """Create the home layout; called by commands that write, never at import."""
        for path in (
            self.home,
            self.quarantine_dir,
            self.data_dir,
            self.models_dir,
            self.reports_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
        return self.home


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
