"""Database URLs, health, error translation and migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from prognos.config import get_settings
from prognos.errors import ConfigError, StorageUnavailableError
from prognos.storage import Database, database_url, insert_predictions
from prognos.storage.database import alembic_config
from prognos.storage.models import Base
from tests.storage import prediction

TABLES = {"readings", "predictions", "feedback", "api_keys", "audit_log"}
HEAD = "0006"  # the newest migration


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def schema_differences(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


# -------------------------------------------------------------------------------------- URLs


def test_database_url_defaults_to_sqlite_under_home(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home", database_url=None)
    assert database_url(settings) == f"sqlite:///{(tmp_path / 'home' / 'prognos.db').resolve()}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_database_url_routes_postgres_to_psycopg3(tmp_path: Path, scheme: str) -> None:
    settings = get_settings(home=tmp_path, database_url=f"{scheme}://u:p%40ss@db:5433/prognos")
    assert database_url(settings) == "postgresql+psycopg://u:p%40ss@db:5433/prognos"


def test_invalid_url_does_not_echo_it(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path, database_url="not a url with s3cret")
    with pytest.raises(ConfigError) as info:
        database_url(settings)
    assert "s3cret" not in str(info.value)


def test_unsupported_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported database"):
        Database("mysql://u@localhost/x")


def test_sqlite_file_and_its_directory_are_created(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/deep/er/prognos.db")
    db.upgrade()
    assert (tmp_path / "deep" / "er" / "prognos.db").exists()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    db.dispose()


# ------------------------------------------------------------------------------ health, errors


def test_unreachable_postgres_pings_false_fast_and_hides_the_password() -> None:
    db = Database(f"postgresql://prognos:s3cret@127.0.0.1:{closed_port()}/prognos")
    assert "s3cret" not in repr(db)
    assert "***" in db.display_url
    started = time.monotonic()
    assert db.ping() is False
    with pytest.raises(StorageUnavailableError) as info:
        insert_predictions(db, [prediction()])
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "s3cret" not in message
    assert "127.0.0.1" in message
    assert "unavailable" in message
    db.dispose()


def test_missing_schema_says_to_upgrade(tmp_path: Path) -> None:
    """Retryable (unavailable), not a refusal: the service migrates a database that was down at
    its start once it answers, and the writer keeps records spooled rather than rejected."""
    db = Database(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(StorageUnavailableError, match="prognos db upgrade"):
        insert_predictions(db, [prediction()])
    db.dispose()


# ---------------------------------------------------------------------------------- migrations


def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/prognos.db")
    assert db.revision() is None
    db.upgrade()
    db.upgrade()  # a second run is a no-op
    assert db.revision() == HEAD
    assert set(sa.inspect(db.engine).get_table_names()) >= TABLES
    assert schema_differences(db) == []
    db.dispose()


def test_comparison_would_notice_a_drift(tmp_path: Path) -> None:
    """Guards the test above: compare_metadata does see a column the migration lacks."""
    db = Database(f"sqlite:///{tmp_path}/prognos.db")
    db.upgrade()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE feedback DROP COLUMN notes")
    diffs = schema_differences(db)
    assert any(d[0] == "add_column" and d[3].name == "notes" for d in diffs)  # type: ignore[index]
    db.dispose()


@pytest.mark.services
def test_postgres_migrations_match_the_models(postgres_url: str) -> None:
    db = Database(postgres_url)
    db.upgrade()
    assert db.revision() == HEAD
    assert set(sa.inspect(db.engine).get_table_names()) >= TABLES
    assert schema_differences(db) == []
    db.dispose()


def _upgrade_from_0001_keeps_feedback(db: Database) -> None:
    """A database at 0001 with a feedback row: ``upgrade()`` brings it to the head, the row
    intact with a null ``failure_cycle``, and the schema equal to the models."""
    db.upgrade("0001")
    assert db.revision() == "0001"
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO feedback (id, asset_id, failure_occurred, created_at) "
                "VALUES ('fb_old', 'A1', :yes, :at)"
            ),
            {"yes": True, "at": datetime(2025, 1, 1, tzinfo=UTC)},
        )
    db.upgrade()
    assert db.revision() == HEAD
    assert schema_differences(db) == []
    with db.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, failure_cycle FROM feedback")).one()
    assert tuple(row) == ("fb_old", None)
    with db.engine.begin() as conn:  # and back: the downgrade drops the column again
        command.downgrade(alembic_config(conn), "0001")
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("feedback")}
    assert "failure_cycle" not in columns and "asset_id" in columns


def test_sqlite_upgrade_from_0001(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/prognos.db")
    _upgrade_from_0001_keeps_feedback(db)
    db.dispose()


@pytest.mark.services
def test_postgres_upgrade_from_0001(postgres_url: str) -> None:
    db = Database(postgres_url)
    _upgrade_from_0001_keeps_feedback(db)
    db.dispose()


def upgrade_at_once(databases: list[Database]) -> list[BaseException]:
    """Run ``upgrade()`` on every handle in its own thread at once; the errors raised."""
    errors: list[BaseException] = []

    def upgrade(db: Database) -> None:
        try:
            db.upgrade()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


@pytest.mark.services
def test_concurrent_upgrades_on_postgres_are_serialised(postgres_url: str) -> None:
    """Several workers starting at once all migrate without tripping over each other."""
    databases = [Database(postgres_url) for _ in range(4)]
    assert upgrade_at_once(databases) == []
    assert databases[0].revision() == HEAD
    for db in databases:
        db.dispose()


def test_concurrent_upgrades_on_sqlite_are_serialised(tmp_path: Path) -> None:
    databases = [Database(f"sqlite:///{tmp_path}/prognos.db") for _ in range(4)]
    assert upgrade_at_once(databases) == []
    assert schema_differences(databases[0]) == []
    for db in databases:
        db.dispose()


def test_a_new_sqlite_file_held_by_another_connection_still_becomes_wal(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once while another connection writes the file (no busy
    handler there): the engine waits for it instead of failing its first connection."""
    import sqlite3

    path = tmp_path / "prognos.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE t (x INTEGER)")
    release = threading.Timer(0.3, holder.execute, args=("COMMIT",))
    release.start()
    db = Database(f"sqlite:///{path}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        release.join()
        holder.close()
        db.dispose()
