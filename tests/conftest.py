"""Shared fixtures: real C-MAPSS paths and real services on 127.0.0.1.

A test that needs a service is marked ``services``. Without the service it skips with the reason on
a user's machine; under CI (``CI=true``) a missing service fails the test instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Before XGBoost/torch load their OpenMP runtimes: spinning waiters starve 2-core machines.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from tests.helpers.trained import Trained

REPO = Path(__file__).resolve().parents[1]
CMAPSS_DIR = REPO.parent / "shared" / "data" / "cmapss"
REDIS_URL = os.environ.get("PROGNOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# A server where the tests may create and drop databases (trust auth on the dev machine and CI).
POSTGRES_URL = os.environ.get(
    "PROGNOS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _missing_service(reason: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"service unavailable under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cmapss_dir() -> Path:
    if not (CMAPSS_DIR / "train_FD001.txt").exists():
        _missing_service(f"C-MAPSS data not found at {CMAPSS_DIR}")
    return CMAPSS_DIR


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A reachable Redis URL; the test gets a fresh key namespace via ``redis_namespace``."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        _missing_service(f"Redis not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    yield REDIS_URL


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    import redis

    namespace = f"prognos-test-{uuid.uuid4().hex[:8]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a throwaway, empty PostgreSQL database ``prognos_test_<uuid8>``, dropped after."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    server = sa.make_url(POSTGRES_URL)
    if server.drivername in {"postgresql", "postgres"}:
        server = server.set(drivername="postgresql+psycopg")
    shown = server.render_as_string(hide_password=True)
    name = f"prognos_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        server,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 2},
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        detail = " ".join(str(exc.orig).split())  # one line
        _missing_service(f"PostgreSQL not reachable at {shown}: {detail}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # FORCE (PostgreSQL 13+): a test that leaked a connection must not leak a database.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One tiny model, trained and registered once per session (about 20 s)."""
    # Imported here: XGBoost and torch must load after OMP_WAIT_POLICY is set above.
    from tests.helpers.trained import train_tiny

    return train_tiny(tmp_path_factory.mktemp("serving-home"))
