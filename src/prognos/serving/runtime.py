"""What one HTTP service process holds: the ingestion core (model, writer, batcher; shared with
the stream ingester) and what only the HTTP edge needs: API keys, rate limits and metrics. Built in
the app's lifespan, never at import."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from prognos.alerting import AlertLoop
from prognos.config import Settings
from prognos.ingestion.core import IngestionCore
from prognos.ingestion.loading import LoadedModel
from prognos.serving.monitoring_gauges import MonitoringGauges
from prognos.serving.ratelimit import RateLimiter
from prognos.serving.security import KeyCache, key_cache
from prognos.serving.telemetry import Telemetry


@dataclass
class Runtime:
    settings: Settings
    telemetry: Telemetry = field(default_factory=Telemetry)
    core: IngestionCore = field(init=False)
    keys: KeyCache | None = None
    limiter: RateLimiter | None = None
    alerts: AlertLoop | None = None
    _redis: Any = None

    def __post_init__(self) -> None:
        telemetry = self.telemetry
        self.core = IngestionCore(
            self.settings,
            on_batch=telemetry.on_batch,
            on_prediction=lambda p: telemetry.count_prediction(p.risk_level),
            on_model=telemetry.set_model,
        )

    async def start(self, model: LoadedModel | None = None) -> None:
        settings = self.settings
        await self.core.open()
        assert self.core.db is not None
        self.telemetry.add_shared(
            MonitoringGauges(self.core.db, settings.monitoring_refresh_seconds)
        )
        self.keys = key_cache(settings, self.core.db)
        if settings.auth_enabled:
            self.keys.start()  # drops keys revoked elsewhere (CLI, other workers) within 2 s
        if settings.redis_url is not None:
            import redis

            self._redis = redis.Redis.from_url(
                settings.redis_url.get_secret_value(), socket_timeout=0.25,
                socket_connect_timeout=0.25,
            )  # fmt: skip
        self.limiter = RateLimiter(
            settings.rate_limit_per_minute, self._redis, prefix=settings.redis_namespace
        )
        await self.core.serve(model)
        if settings.alerts_enabled:
            # Its own thread: rules are evaluated over the database, off the event loop; a bad
            # rules file fails start-up here rather than silently alerting nobody.
            self.alerts = AlertLoop(settings, self.core.db)
            self.alerts.start()

    async def stop(self) -> None:
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.stop)
        if self.keys is not None:
            await self.keys.stop()
        await self.core.stop()
        if self._redis is not None:
            self._redis.close()
        self.telemetry.close()

    def state_store_ok(self) -> bool:
        """Whether the shared state store answers (the in-process one always does)."""
        if self._redis is None:
            return True
        try:
            return bool(self._redis.ping())
        except Exception:
            return False
