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
