"""The database: engine, sessions, health and schema migrations, for SQLite and PostgreSQL.

SQLite (a file under the home) is the embedded default; PostgreSQL (``PROGNOS_DATABASE_URL``) is
for a service with several workers or replicas. URLs are only ever logged with the password hidden.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from prognos.errors import ConfigError, StorageError, StorageUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

    from prognos.config import Settings

__all__ = ["MIGRATIONS_DIR", "Database", "alembic_config", "database_url", "normalise_url"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long a connection attempt may take before the database counts as down: an outage must be
# noticed fast, because the writer spools while it waits. (libpq's minimum is 2 seconds.)
CONNECT_TIMEOUT_S = 2
# How long a SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 5000
# Serialises concurrent ``upgrade()`` calls from several workers on PostgreSQL (any fixed number).
_MIGRATION_LOCK_KEY = 0x70726F676E6F73  # "prognos"
# Execution option naming the statement that opens a SQLite transaction.
_SQLITE_BEGIN = "prognos_sqlite_begin"


def json_text(value: Any) -> str:
    """The text of a JSON column, written with orjson: the standard encoder spends ~1 µs per
    float on this machine, ~0.3 ms per logged prediction (its explanation) on the writer thread,
    which shares the serving event loop's GIL; orjson takes ~10 µs. NaN and infinities become
    null, as :func:`~prognos.storage.records.normalise_record` already makes them."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def normalise_url(url: str) -> str:
    """A SQLAlchemy URL with a bare ``postgresql://`` (or ``postgres://``) routed to psycopg 3."""
    try:
        parsed = make_url(url.strip())
    except exc.ArgumentError as err:
        # The URL may hold a password: never echo it.
        raise ConfigError("the database URL is not a valid SQLAlchemy URL") from err
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def database_url(settings: Settings) -> str:
    """``PROGNOS_DATABASE_URL`` when set, else the SQLite file ``{home}/prognos.db``."""
    if settings.database_url is not None and settings.database_url.get_secret_value().strip():
        return normalise_url(settings.database_url.get_secret_value())
    return f"sqlite:///{(settings.home / 'prognos.db').resolve()}"


def open_database(settings: Settings) -> Database:
    """The configured database with its schema migrated to the newest revision (what a command
    or flow opens; the services migrate in the background instead, see ``ingestion.core``)."""
    db = Database(database_url(settings))
    try:
        db.upgrade()
    except BaseException:
        db.dispose()
        raise
    return db


def alembic_config(connection: Connection) -> Config:
    """An Alembic config built in code: the package's migrations, run on ``connection``.

    Nothing is read from an ``alembic.ini`` or the environment. For a new revision::

        with db.engine.begin() as conn:
            command.revision(alembic_config(conn), "message", autogenerate=True)
    """
    from alembic.config import Config

    config = Config()
    # configparser interpolates "%": a path containing one must be escaped.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


class Database:
    """One engine and session factory for a database URL; thread-safe, share one per process."""

    def __init__(self, url: str) -> None:
        parsed = make_url(normalise_url(url))
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(parsed)
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                parsed,
                json_serializer=json_text,
                pool_pre_ping=True,  # a connection dropped by an outage is replaced, not used
                connect_args={
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": "prognos",
                    # A peer that vanished without closing (cable, partition) is noticed too.
                    "keepalives": 1,
                    "keepalives_idle": 10,
                    "keepalives_interval": 2,
                    "keepalives_count": 3,
                    "tcp_user_timeout": 10_000,
                },
            )
        else:
            raise ConfigError(
                f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://"
            )
        self.sessionmaker: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The URL with its password hidden: the only form that may be logged or shown."""
        return self.engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    def ping(self) -> bool:
        """Whether the database answers ``SELECT 1`` now; never raises."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as err:  # any failure means "not usable now"
            log.debug("database %s ping failed: %s", self.display_url, _first_line(err))
            return False
        return True

    @contextmanager
    def begin(self, action: str, *, immediate: bool = False) -> Iterator[Connection]:
        """A connection in a transaction, committed on success; errors become StorageErrors.

        ``immediate`` takes SQLite's write lock up front, so a read-then-write transaction waits
        for another writer instead of failing part-way.
        """
        with self.translate_errors(action), self.engine.connect() as conn:
            if immediate and self.dialect == "sqlite":
                conn.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def translate_errors(self, action: str) -> Iterator[None]:
        """Turn SQLAlchemy errors into :class:`StorageUnavailableError` (cannot reach the
        database: retry later) or :class:`StorageError` (the database said no)."""
        try:
            yield
        except exc.DBAPIError as err:
            raise _translate(err, self.display_url, action) from err
        except exc.TimeoutError as err:  # the connection pool is exhausted
            raise StorageUnavailableError(
                f"database {self.display_url}: no free connection while {action}"
            ) from err
        except exc.SQLAlchemyError as err:
            raise StorageError(
                f"database {self.display_url}: {action} failed: {_first_line(err)}"
            ) from err

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision`` (default: the newest).

        Safe to call from several processes at once: PostgreSQL serialises them with an advisory
        lock, SQLite with its write lock; the later callers find the schema already current.
        """
        from alembic import command

        with self.begin("upgrading the schema", immediate=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            command.upgrade(alembic_config(conn), revision)
        log.info("database %s schema at %s", self.display_url, revision)

    def revision(self) -> str | None:
        """The schema's current Alembic revision (None for an empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self.translate_errors("reading the schema revision"), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        """Close every pooled connection (the engine can still be used afterwards)."""
        self.engine.dispose()


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database in {"", ":memory:"} or database.startswith("file::memory:"):
        # One shared connection, or each connection would see its own empty database.
        engine = create_engine(
            url,
            json_serializer=json_text,
            connect_args={"check_same_thread": False},
            poolclass=StaticPool,
        )
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=json_text,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit transactions skip DDL and cannot BEGIN IMMEDIATE: turn them off
        # and let the "begin" hook below open every transaction (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        # NORMAL is WAL's recommended level: no fsync per commit, never a corrupt file; a power
        # cut (not a crash) may lose the last commits. Measured: 15-40% less time per batch.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL: readers never block the writer (the API reads while the writer
    thread inserts).

    Written by hand because SQLite answers "database is locked" at once, without its busy
    handler, when another connection holds the file while this one changes the journal mode: it
    happened to about one start in twenty when workers open a new file together. So: skip when
    it is WAL already, otherwise retry for the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _first_line(err: BaseException) -> str:
    cause = getattr(err, "orig", None) or err
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def _translate(err: exc.DBAPIError, where: str, action: str) -> StorageError:
    detail = _first_line(err)
    lowered = detail.lower()
    if "no such table" in lowered or getattr(err.orig, "sqlstate", None) == "42P01":
        # Retryable: the service migrates a database that was down at its start once it
        # answers, and the writer keeps records spooled meanwhile instead of setting them aside.
        return StorageUnavailableError(
            f"database {where} has no prognos schema ({detail}): run `prognos db upgrade`"
        )
    if err.connection_invalidated or isinstance(err, exc.OperationalError | exc.InterfaceError):
        return StorageUnavailableError(f"database {where} is unavailable while {action}: {detail}")
    return StorageError(f"database {where} refused {action}: {detail}")
