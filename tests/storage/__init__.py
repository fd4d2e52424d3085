"""Tests of prognos.storage; row factories and a database that can be switched off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from prognos.errors import StorageUnavailableError
from prognos.storage import Database

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def prediction(asset: str = "A1", time: int = 1, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "asset_id": asset,
        "time": time,
        "created_at": T0 + timedelta(seconds=int(time)),
        "model_name": "fleet",
        "model_version": "3",
        "failure_probability": 0.25,
        "risk_level": "low",
        "rul": 80.0,
        "rul_lower": 60.0,
        "rul_upper": 100.0,
        "should_inspect": False,
        "explanation": [{"feature": "s2_mean", "value": 642.1, "contribution": 0.12}],
        "latency_ms": 3.5,
    }
    row.update(overrides)
    return row


def reading(asset: str = "A1", time: int = 1, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "asset_id": asset,
        "time": time,
        "values": {"s2": 642.5, "s3": 1589.7},
        "received_at": T0 + timedelta(seconds=int(time)),
    }
    row.update(overrides)
    return row


class FlakyDatabase(Database):
    """A real database that a test can declare unreachable (``down = True``), per instance."""

    down = False

    def ping(self) -> bool:
        return not self.down and super().ping()

    @contextmanager
    def begin(self, action: str, *, immediate: bool = False) -> Iterator[Connection]:
        if self.down:
            raise StorageUnavailableError(f"database {self.display_url} is down (test)")
        with super().begin(action, immediate=immediate) as conn:
            yield conn
