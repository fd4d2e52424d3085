"""RecordWriter: batching, spooling through outages, replay across restarts, shared spool dirs.

The logic runs against SQLite with a database a test can switch off (``FlakyDatabase``); the
outage the service must survive runs against PostgreSQL through a TCP proxy that is cut.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from prognos.errors import StorageError
from prognos.storage import (
    Database,
    RecordWriter,
    audit_events,
    feedback_labels,
    get_prediction,
    readings_for_asset,
)
from prognos.storage import writer as writer_module
from tests.proxy import TcpProxy
from tests.storage import FlakyDatabase, prediction, reading

FAST = {"batch_size": 50, "flush_interval": 0.02, "retry_interval": 0.05}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def spool_files(spool: Path) -> list[Path]:
    return sorted(p for p in spool.glob("*.jsonl"))


def prediction_ids(db: Database) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT id FROM predictions")).scalars())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/prognos.db"
    db = Database(url)
    db.upgrade()
    db.dispose()
    return url


@pytest.fixture
def flaky(sqlite_url: str) -> Iterator[FlakyDatabase]:
    db = FlakyDatabase(sqlite_url)
    yield db
    db.dispose()


# ------------------------------------------------------------------------------- healthy path


def test_records_of_every_kind_are_written(flaky: FlakyDatabase, tmp_path: Path) -> None:
    with RecordWriter(flaky, tmp_path / "spool", **FAST) as writer:
        pred = writer.submit("prediction", prediction("A1", 1))
        writer.submit("reading", reading("A1", 1))
        writer.submit("reading", reading("A1", 1))  # a duplicate is dropped, not an error
        writer.submit(
            "feedback", {"prediction_id": pred["id"], "asset_id": "A1", "failure_occurred": True}
        )
        writer.submit("audit", {"actor": "k", "action": "predict", "subject": "A1"})
        assert writer.flush(5)
        assert writer.status() == {"database": "ok", "queued": 0, "spooled": 0, "rejected": 0}
    assert get_prediction(flaky, pred["id"]) is not None
    assert len(readings_for_asset(flaky, "A1")) == 1
    assert feedback_labels(flaky)["prediction_id"].tolist() == [pred["id"]]
    assert [e["action"] for e in audit_events(flaky)] == ["predict"]
    assert spool_files(tmp_path / "spool") == []


def test_pending_prediction_until_committed(flaky: FlakyDatabase, tmp_path: Path) -> None:
    writer = RecordWriter(flaky, tmp_path / "spool", **FAST)
    row = writer.submit("prediction", prediction("A1", 1))  # not started: stays queued
    assert row["id"].startswith("pred_")
    pending = writer.pending_prediction(row["id"])
    assert pending is not None and pending["rul"] == 80.0
    assert writer.status()["queued"] == 1
    writer.start()
    assert writer.flush(5)
    assert writer.pending_prediction(row["id"]) is None
    assert get_prediction(flaky, row["id"]) is not None
    writer.close()


def test_submit_rejects_malformed_records_at_once(flaky: FlakyDatabase, tmp_path: Path) -> None:
    writer = RecordWriter(flaky, tmp_path / "spool", **FAST)
    with pytest.raises(StorageError, match="missing"):
        writer.submit("prediction", {"asset_id": "A1"})
    assert writer.status()["queued"] == 0


def test_a_refused_row_is_set_aside_and_the_rest_written(
    flaky: FlakyDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = writer_module.insert_records

    def refuse_poison(
        db: Database, records: dict[str, list[dict[str, Any]]], *, normalised: bool = False
    ) -> Any:
        if any(r.get("asset_id") == "poison" for rows in records.values() for r in rows):
            raise StorageError("value out of range (test)")
        return real(db, records, normalised=normalised)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module, "insert_records", refuse_poison)
    with RecordWriter(flaky, tmp_path / "spool", **FAST) as writer:
        good = [writer.submit("prediction", prediction("A1", t))["id"] for t in range(5)]
        writer.submit("prediction", prediction("poison", 1))
        assert writer.flush(5)
        assert writer.rejected == 1
    assert sorted(prediction_ids(flaky)) == sorted(good)
    rejected = (tmp_path / "spool" / "rejected").glob("*.jsonl")
    lines = [json.loads(line) for path in rejected for line in path.read_text().splitlines()]
    assert [(r["row"]["asset_id"], "out of range" in r["error"]) for r in lines] == [
        ("poison", True)
    ]


def test_a_ticket_settles_only_once_its_records_are_committed_or_spooled(
    flaky: FlakyDatabase, tmp_path: Path
) -> None:
    """What the service waits on before it answers 2xx: records settle in submission order,
    and the callback runs only when the rows are in the database (or fsynced in the spool)."""
    seen: list[tuple[int, int]] = []
    with RecordWriter(flaky, tmp_path / "spool", **FAST) as writer:
        for t in range(3):
            writer.submit("reading", reading("A1", t))
            ticket = writer.ticket()

            def settled(ticket: int = ticket) -> None:
                # Called on the writer thread after the commit: the rows are readable now.
                seen.append((ticket, len(readings_for_asset(flaky, "A1"))))

            assert writer.when_settled(ticket, settled)
        assert wait_for(lambda: len(seen) == 3)
        assert [t for t, _ in seen] == [1, 2, 3]
        assert all(stored >= ticket for ticket, stored in seen)
        assert writer.when_settled(writer.ticket(), lambda: None) is False  # already durable

        flaky.down = True
        writer.submit("reading", reading("A1", 9))
        spooled: list[int] = []
        writer.when_settled(writer.ticket(), lambda: spooled.append(writer.status()["spooled"]))
        assert wait_for(lambda: spooled == [1])  # settled by the fsynced spool, not the table
        assert writer.wait_replayed(0.5) is False  # the table lacks an acknowledged reading
        flaky.down = False  # False at once until the writer finds it back and replays
        assert wait_for(lambda: writer.wait_replayed(0.1))
        assert len(readings_for_asset(flaky, "A1")) == 4


def test_wait_replayed_waits_for_what_an_earlier_process_left(
    flaky: FlakyDatabase, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    flaky.down = True
    first = RecordWriter(flaky, spool, **FAST)
    first.start()
    for t in range(20):
        first.submit("reading", reading("A2", t))
    first.close(timeout=3)  # as a crash would: the records are only in the spool
    flaky.down = False
    with RecordWriter(flaky, spool, **FAST) as second:
        assert second.wait_replayed(10)
        assert len(readings_for_asset(flaky, "A2")) == 20  # all of them, before any seed


# ------------------------------------------------------------------------------------ outages


def test_outage_spools_then_replays_with_datetimes_intact(
    flaky: FlakyDatabase, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    failure_at = datetime(2025, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    with RecordWriter(flaky, spool, **FAST) as writer:
        flaky.down = True
        started = time.monotonic()
        preds = [writer.submit("prediction", prediction("A1", t)) for t in range(120)]
        writer.submit("reading", reading("A1", 1))
        writer.submit(
            "feedback",
            {"asset_id": "A1", "failure_occurred": True, "failure_time": failure_at, "id": "fb_1"},
        )
        assert time.monotonic() - started < 0.5  # submit never waits on the database
        assert writer.flush(5)
        assert writer.status() == {"database": "down", "queued": 0, "spooled": 122, "rejected": 0}
        assert len(spool_files(spool)) == 1
        assert writer.pending_prediction(preds[60]["id"]) is not None

        flaky.down = False
        assert wait_for(lambda: writer.status()["spooled"] == 0)
        assert writer.status()["database"] == "ok"
    assert sorted(prediction_ids(flaky)) == sorted(p["id"] for p in preds)
    stored = get_prediction(flaky, preds[7]["id"])
    assert stored is not None and stored["created_at"] == preds[7]["created_at"]
    assert readings_for_asset(flaky, "A1")[0]["received_at"] == reading("A1", 1)["received_at"]
    assert feedback_labels(flaky)["failure_time"].tolist() == [failure_at]
    assert writer.pending_prediction(preds[60]["id"]) is None
    assert spool_files(spool) == []


def test_close_while_down_spools_and_the_next_writer_replays(
    flaky: FlakyDatabase, sqlite_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    flaky.down = True
    first = RecordWriter(flaky, spool, **FAST)
    first.start()
    ids = [first.submit("prediction", prediction("A1", t))["id"] for t in range(30)]
    started = time.monotonic()
    first.close(timeout=3)
    assert time.monotonic() - started < 3.5
    assert first.status()["spooled"] == 30
    assert len(spool_files(spool)) == 1
    late = first.submit("prediction", prediction("A1", 99))["id"]  # after close: spooled at once
    assert len(spool_files(spool)) == 2

    second_db = FlakyDatabase(sqlite_url)
    second_db.down = True
    with RecordWriter(second_db, spool, **FAST) as second:
        assert wait_for(lambda: second.status()["spooled"] == 31)  # took over the leftovers
        assert second.pending_prediction(ids[3]) is not None  # findable while still spooled
        second_db.down = False
        assert wait_for(lambda: second.status()["spooled"] == 0)
    assert sorted(prediction_ids(second_db)) == sorted([*ids, late])
    assert spool_files(spool) == []
    second_db.dispose()


def test_a_live_writers_spool_is_not_taken(
    flaky: FlakyDatabase, sqlite_url: str, tmp_path: Path
) -> None:
    """Two workers share a home: a healthy one must not replay (and delete) a file the other is
    still appending to; once the other stops, its leftovers are taken."""
    spool = tmp_path / "spool"
    flaky.down = True
    degraded = RecordWriter(flaky, spool, **FAST)
    degraded.start()
    ids = [degraded.submit("prediction", prediction("A1", t))["id"] for t in range(10)]
    assert degraded.flush(5)
    healthy_db = Database(sqlite_url)
    with RecordWriter(healthy_db, spool, **FAST) as healthy:
        time.sleep(0.3)  # several maintenance rounds
        assert healthy.status()["spooled"] == 0
        ids += [degraded.submit("prediction", prediction("A1", t))["id"] for t in range(10, 20)]
        assert degraded.flush(5)
        assert prediction_ids(healthy_db) == []
        degraded.close(timeout=2)  # leaves its spool behind, unlocked
        assert wait_for(lambda: sorted(prediction_ids(healthy_db)) == sorted(ids))
    assert spool_files(spool) == []
    healthy_db.dispose()


def test_a_torn_last_line_does_not_block_replay(sqlite_url: str, tmp_path: Path) -> None:
    """A crash mid-append leaves half a line: the rest is replayed, the fragment set aside."""
    spool = tmp_path / "spool"
    spool.mkdir()
    good = prediction("A1", 1, id="pred_crash1")
    line = json.dumps({"kind": "prediction", "row": good}, default=str)
    (spool / "spool-00000000000000000001-123-dead-0001.jsonl").write_text(line + "\n" + line[:40])
    db = Database(sqlite_url)
    with RecordWriter(db, spool, **FAST) as writer:
        assert wait_for(lambda: prediction_ids(db) == ["pred_crash1"])
        assert wait_for(lambda: writer.rejected == 1)
    assert prediction_ids(db) == ["pred_crash1"]
    assert spool_files(spool) == []
    db.dispose()


# ------------------------------------------------------------------- the real outage (PostgreSQL)


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[Database, Database, TcpProxy]]:
    """(database through a cuttable proxy, direct database, the proxy)."""
    direct = Database(postgres_url)
    direct.upgrade()
    url = sa.make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        via_proxy = Database(
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        )
        yield via_proxy, direct, proxy
        via_proxy.dispose()
    direct.dispose()


@pytest.mark.services
def test_postgres_outage_loses_nothing(
    proxied: tuple[Database, Database, TcpProxy], tmp_path: Path
) -> None:
    db, direct, proxy = proxied
    spool = tmp_path / "spool"
    with RecordWriter(db, spool, **FAST) as writer:
        ids = [writer.submit("prediction", prediction(f"A{t % 7}", t))["id"] for t in range(100)]
        assert writer.flush(10)
        assert writer.status() == {"database": "ok", "queued": 0, "spooled": 0, "rejected": 0}

        proxy.cut()
        started = time.monotonic()
        ids += [
            writer.submit("prediction", prediction(f"A{t % 7}", t))["id"] for t in range(100, 300)
        ]
        assert time.monotonic() - started < 0.5  # accepted without waiting on the database
        assert writer.flush(10)
        assert writer.status() == {"database": "down", "queued": 0, "spooled": 200, "rejected": 0}
        assert spool_files(spool)
        assert writer.pending_prediction(ids[250]) is not None
        # Records keep coming during the outage, some while the database comes back.
        ids += [writer.submit("prediction", prediction("B", t))["id"] for t in range(300, 350)]

        proxy.restore()
        ids += [writer.submit("prediction", prediction("B", t))["id"] for t in range(350, 400)]
        assert wait_for(
            lambda: writer.status() == {"database": "ok", "queued": 0, "spooled": 0, "rejected": 0}
        )
        assert writer.pending_prediction(ids[250]) is None

    stored = prediction_ids(direct)
    assert len(stored) == len(set(stored)) == 400  # every prediction, exactly once
    assert set(stored) == set(ids)
    assert spool_files(spool) == []


@pytest.mark.services
def test_postgres_restart_replays_what_the_last_process_spooled(
    proxied: tuple[Database, Database, TcpProxy], tmp_path: Path
) -> None:
    db, direct, proxy = proxied
    spool = tmp_path / "spool"
    proxy.cut()
    first = RecordWriter(db, spool, **FAST)
    first.start()
    ids = [first.submit("prediction", prediction("A1", t))["id"] for t in range(40)]
    first.close(timeout=3)
    assert first.status()["spooled"] == 40
    assert prediction_ids(direct) == []

    with RecordWriter(db, spool, **FAST) as second:  # "the next process", still cut off
        assert wait_for(lambda: second.status()["spooled"] == 40)
        assert second.status()["database"] == "down"
        proxy.restore()
        assert wait_for(
            lambda: second.status() == {"database": "ok", "queued": 0, "spooled": 0, "rejected": 0}
        )
    stored = prediction_ids(direct)
    assert len(stored) == 40 and set(stored) == set(ids)
    assert spool_files(spool) == []
