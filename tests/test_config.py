"""Settings come from PROGNOS_* variables, are built by a function, and keep secrets out of logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from prognos.config import get_settings
from prognos.features import MemoryStateStore, RedisStateStore, make_state_store


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROGNOS_HOME", raising=False)
    monkeypatch.delenv("PROGNOS_REDIS_URL", raising=False)
    assert get_settings().home == Path(".prognos")
    monkeypatch.setenv("PROGNOS_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("PROGNOS_REDIS_URL", "redis://:s3cret@127.0.0.1:6379/0")
    settings = get_settings()
    assert settings.home == tmp_path / "h"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    assert get_settings(home=tmp_path / "other").home == tmp_path / "other"


def test_homes_do_not_interfere(tmp_path: Path) -> None:
    one = get_settings(home=tmp_path / "one")
    two = get_settings(home=tmp_path / "two")
    one.ensure_home()
    (one.data_dir / "x.csv").write_text("a")
    two.ensure_home()
    assert not (two.data_dir / "x.csv").exists()
    assert {p.name for p in (tmp_path / "one").iterdir()} == {
        "data",
        "quarantine",
        "models",
        "reports",
    }


def test_state_store_follows_settings(tmp_path: Path) -> None:
    def decode(raw: bytes) -> None:
        raise AssertionError("not called")

    memory = make_state_store(get_settings(home=tmp_path), decode=decode, fingerprint="f")  # type: ignore[arg-type]
    assert isinstance(memory, MemoryStateStore)
    settings = get_settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/15")
    redis_store = make_state_store(settings, decode=decode, fingerprint="f")  # type: ignore[arg-type]
    assert isinstance(redis_store, RedisStateStore)
