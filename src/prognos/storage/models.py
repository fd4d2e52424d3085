"""The prediction service's tables (SQLAlchemy 2 typed declarative).

The schema is created and changed only by the Alembic migrations in ``migrations/versions``; a test
holds the migrations and these classes to the same tables and columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint and index names, so the migrations can name (and later drop) them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit key on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive UTC
    and made aware again on the way out. Naive inputs are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            value = datetime.fromisoformat(str(value))
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# The fleet of records written before readings carried one (revision 0003), and of a service
# whose model names none.
DEFAULT_FLEET = "default"


class Reading(Base):
    """One accepted sensor reading; (fleet, asset_id, time) is unique so replays, retries and
    re-delivered stream messages are no-ops, and one database holds several fleets.

    The unique index leads with ``fleet`` then ``asset_id``, so it also serves lookups by asset.
    """

    __tablename__ = "readings"
    __table_args__ = (UniqueConstraint("fleet", "asset_id", "time"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    fleet: Mapped[str] = mapped_column(String, server_default=DEFAULT_FLEET)
    asset_id: Mapped[str] = mapped_column(String)
    # Cycles, or nanoseconds since the epoch for timestamped fleets.
    time: Mapped[int] = mapped_column(BigInteger)
    # Channel name -> value (null for a missing value).
    values: Mapped[dict[str, float | None]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Prediction(Base):
    """One served prediction, with the model that made it and how long it took."""

    __tablename__ = "predictions"
    # History of one asset, newest first, and each asset's latest prediction use this index.
    __table_args__ = (Index("ix_predictions_asset_id_time", "asset_id", "time"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)  # pred_<uuid hex>
    fleet: Mapped[str] = mapped_column(String, server_default=DEFAULT_FLEET)
    asset_id: Mapped[str] = mapped_column(String)
    time: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    model_name: Mapped[str] = mapped_column(String)
    model_version: Mapped[str] = mapped_column(String)
    failure_probability: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String)
    rul: Mapped[float] = mapped_column(Float)
    rul_lower: Mapped[float] = mapped_column(Float)
    # NULL: the interval is open above ("more than rul_lower"; revision 0006).
    rul_upper: Mapped[float | None] = mapped_column(Float, nullable=True)
    should_inspect: Mapped[bool] = mapped_column(Boolean)
    # [{"feature": str, "value": float, "contribution": float}, ...] or null.
    explanation: Mapped[dict[str, Any] | list[dict[str, Any]] | None] = mapped_column(
        JSON, nullable=True
    )
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    # A challenger's prediction made in the shadow of the champion's (revision 0004): logged for
    # the promotion gate, never returned to clients.
    shadow: Mapped[bool] = mapped_column(Boolean, server_default=false())


# What a feedback row reports. A repair or a replacement ends the asset's life (a new one starts);
# a failure ends it too; an inspection only says the asset had not failed by then.
FeedbackEvent = Literal["failure", "repair", "replacement", "inspection"]
FEEDBACK_EVENTS: tuple[FeedbackEvent, ...] = get_args(FeedbackEvent)
RESET_EVENTS: tuple[FeedbackEvent, ...] = ("repair", "replacement")


class Feedback(Base):
    """What really happened to an asset: the labels monitoring and retraining learn from.

    ``prediction_id`` deliberately has no foreign key: the prediction it refers to may still sit in
    a writer's spool when the feedback arrives.
    """

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String, primary_key=True)  # fb_<uuid hex>
    prediction_id: Mapped[str | None] = mapped_column(String, nullable=True, index=True)
    fleet: Mapped[str] = mapped_column(String, server_default=DEFAULT_FLEET)
    asset_id: Mapped[str] = mapped_column(String, index=True)
    failure_occurred: Mapped[bool] = mapped_column(Boolean)
    failure_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The cycle the asset failed at, for fleets counted in cycles (revision 0002).
    failure_cycle: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failure_type: Mapped[str | None] = mapped_column(String, nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    submitted_by: Mapped[str | None] = mapped_column(String, nullable=True)  # the API key's name
    # What happened (revision 0005): one of FEEDBACK_EVENTS; ``failure_time``/``failure_cycle``
    # then date it, whatever it was. Null in a row inserted without one: read it as "failure"
    # when ``failure_occurred``, else "inspection".
    event: Mapped[str | None] = mapped_column(String, nullable=True)


class ApiKey(Base):
    """A service API key, stored only as a hash.

    SHA-256 and not bcrypt/argon2: the key is 32 random bytes from ``secrets``, so there is nothing
    to brute-force that a slow hash would protect, and verification sits on every request's hot
    path where it must stay sub-millisecond.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    # The first 8 characters after ``pk_``: finds the row without storing the key.
    prefix: Mapped[str] = mapped_column(String, index=True)
    key_hash: Mapped[str] = mapped_column(String)  # sha256 hex of the whole key
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # None: the service's default limit.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEvent(Base):
    """Who did what to what; ``event_id`` is client-generated so a replayed spool adds nothing."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String, unique=True)  # evt_<uuid hex>
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeadLetter(Base):
    """A message the stream ingester could not take (not JSON, wrong schema, out of range, out of
    order ...): kept with the reason and the raw payload, so nothing that arrived is lost."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String, primary_key=True)  # dl_<uuid hex>
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    fleet: Mapped[str] = mapped_column(String, server_default=DEFAULT_FLEET)
    source: Mapped[str] = mapped_column(String)  # "mqtt", "kafka", "memory"
    topic: Mapped[str | None] = mapped_column(String, nullable=True)
    asset_id: Mapped[str | None] = mapped_column(String, nullable=True)
    reason: Mapped[str] = mapped_column(String, index=True)  # a short code: not_json, schema, ...
    detail: Mapped[str] = mapped_column(Text)
    # The payload as received, decoded as UTF-8 with undecodable bytes as \x escapes.
    payload: Mapped[str] = mapped_column(Text)


class MonitoringRun(Base):
    """One monitoring run (``prognos monitor run`` / ``monitor drift``): its window and verdict;
    its figures are rows of :class:`MonitoringMetric`."""

    __tablename__ = "monitoring_runs"

    id: Mapped[str] = mapped_column(String, primary_key=True)  # mon_<uuid hex>
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    kind: Mapped[str] = mapped_column(String)  # "live" or "batch"
    fleet: Mapped[str] = mapped_column(String, server_default=DEFAULT_FLEET)
    model_name: Mapped[str] = mapped_column(String)
    model_version: Mapped[str] = mapped_column(String)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    drift_detected: Mapped[bool] = mapped_column(Boolean)
    share_drifted: Mapped[float] = mapped_column(Float)
    report_path: Mapped[str | None] = mapped_column(String, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)


class MonitoringMetric(Base):
    """One figure of a monitoring run: ``name`` (e.g. ``feature_drift_score``), an optional
    ``label`` (e.g. the column), its value."""

    __tablename__ = "monitoring_metrics"
    __table_args__ = (Index("ix_monitoring_metrics_run_id_name", "run_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(String, server_default="")
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class Alert(Base):
    """One alert's life: ``pending`` while its condition holds for less than the rule's ``for``,
    ``firing`` once it has held that long (notified then, and again every repeat interval), then
    ``resolved`` (notified once) when it clears. ``subject`` is the asset for asset rules."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_rule_subject_state", "rule", "subject", "state"),)

    id: Mapped[str] = mapped_column(String, primary_key=True)  # alr_<uuid hex>
    rule: Mapped[str] = mapped_column(String)
    subject: Mapped[str] = mapped_column(String, server_default="")
    fleet: Mapped[str] = mapped_column(String, server_default=DEFAULT_FLEET)
    severity: Mapped[str] = mapped_column(String)  # "critical" or "warning"
    state: Mapped[str] = mapped_column(String)  # "pending", "firing", "resolved"
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    message: Mapped[str] = mapped_column(Text, server_default="")
