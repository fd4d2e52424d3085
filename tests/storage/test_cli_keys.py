"""``prognos keys`` and ``prognos db`` end to end through typer's CliRunner, on fresh homes."""

from __future__ import annotations

from pathlib import Path

import pytest

from prognos.storage import Database, audit_events, verify_api_key
from tests.helpers.cli import assert_one_line_error, run


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The home's SQLite file, whatever the developer's environment says."""
    monkeypatch.delenv("PROGNOS_DATABASE_URL", raising=False)


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = run(
        "keys",
        "create",
        "--name",
        "dashboard",
        "--scopes",
        "read,predict",
        "--rate-limit",
        "90",
        "--home",
        home,
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("pk_") and "\n" not in key  # the key alone on stdout, for $(...)
    assert "shown only once" in created.stderr
    assert "dashboard" in created.stderr

    db = Database(f"sqlite:///{home / 'prognos.db'}")
    info = verify_api_key(db, key)
    assert info is not None and info.scopes == {"read", "predict"}
    assert info.rate_limit_per_minute == 90

    run("--home", home, "keys", "create", "--name", "ops", "--scopes", "admin")
    listed = run("keys", "list", "--home", home)
    assert listed.exit_code == 0, listed.output
    assert "dashboard" in listed.stdout and "predict,read" in listed.stdout
    assert "ops" in listed.stdout and "default" in listed.stdout
    assert key not in listed.stdout and key[3:11] not in listed.stdout

    revoked = run("keys", "revoke", "dashboard", "--home", home)
    assert revoked.exit_code == 0, revoked.output
    assert "running services refuse it within 2 s" in revoked.stdout  # the bound, stated
    assert verify_api_key(db, key) is None
    assert "revoked" in run("keys", "list", "--home", home).stdout
    actions = {(e["action"], e["subject"]) for e in audit_events(db)}
    assert {("api_key.create", "dashboard"), ("api_key.revoke", "dashboard")} <= actions
    db.dispose()


def test_keys_errors_are_one_red_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert_one_line_error(
        run("keys", "create", "--name", "x", "--scopes", "read,sudo", "--home", home), "sudo"
    )
    assert run("keys", "create", "--name", "x", "--scopes", "read", "--home", home).exit_code == 0
    assert_one_line_error(
        run("keys", "create", "--name", "x", "--scopes", "read", "--home", home), "already exists"
    )
    assert_one_line_error(run("keys", "revoke", "ghost", "--home", home), "ghost")


def test_keys_list_on_a_fresh_home(tmp_path: Path) -> None:
    result = run("keys", "list", "--home", tmp_path / "fresh")
    assert result.exit_code == 0, result.output
    assert "No API keys" in result.stderr


def test_db_upgrade(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run("db", "upgrade", "--home", home)
    assert result.exit_code == 0, result.output
    assert "at revision 0006" in result.stdout
    assert (home / "prognos.db").exists()
    assert run("db", "upgrade", "--home", home).exit_code == 0  # idempotent
