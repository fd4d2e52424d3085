"""``prognos stream ingest --lake-every``: the export thread beside a real ingester process (over
Mosquitto on 127.0.0.1) puts what it stores into the lake while it keeps ingesting, each reading
once, and SIGTERM stops both cleanly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from prognos.storage import Database, audit_events
from prognos.storage.lake import open_lake
from prognos.streaming.publisher import outgoing, publish, simulated_fleet
from prognos.streaming.transport import MqttSender
from tests.conftest import _missing_service
from tests.helpers.lake import stored_rows
from tests.helpers.streaming import BROKER, broker_up, ingester_process, stored, wait_for
from tests.helpers.trained import Trained

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _lake_keys(lake_dir: Path, fleet: str) -> list[tuple[str, int]]:
    lake = open_lake(str(lake_dir))
    if not lake.files(fleet):
        return []
    rows = stored_rows(lake, fleet)
    return sorted(zip(rows["asset_id"], rows["time"].astype(int), strict=True))


def test_the_ingester_exports_to_the_lake_while_it_ingests(
    trained: Trained, tmp_path: Path
) -> None:
    if not broker_up():
        _missing_service(f"no MQTT broker at {BROKER}")
    fleet = f"t{uuid.uuid4().hex[:10]}"
    db, lake_dir = f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "lake"
    env = {"PROGNOS_DATABASE_URL": db, "PROGNOS_COMPUTE_PROCESS": "false",
           "PROGNOS_LAKE_URL": str(lake_dir)}  # fmt: skip
    messages = list(outgoing(simulated_fleet(3, 8, seed=5), fleet))
    waves = [messages[:12], messages[12:]]
    with ingester_process(trained.home, tmp_path, fleet, env=env,
                          args=("--lake-every", "0.3")) as ingester:  # fmt: skip
        sender = MqttSender(BROKER)
        assert sender.wait_connected(10)
        try:
            for wave, so_far in ((waves[0], waves[0]), (waves[1], messages)):
                assert publish(sender, iter(wave), drain_seconds=20).acknowledged
                expected = sorted((m.asset_id, int(m.time)) for m in so_far)
                # Stored and then exported, while the ingester is still running.
                assert wait_for(lambda e=expected: _lake_keys(lake_dir, fleet) == e, 30), (
                    _lake_keys(lake_dir, fleet), ingester.log.read_text()[-3000:])  # fmt: skip
                assert ingester.process.poll() is None
        finally:
            sender.close()
        assert ingester.terminate() == 0
    assert _lake_keys(lake_dir, fleet) == sorted(stored(db, fleet))
    assert len(open_lake(str(lake_dir)).files(fleet)) >= 2  # one export per wave at least
    database = Database(db)
    try:
        exports = audit_events(database, action="lake.export", subject=fleet)
    finally:
        database.dispose()
    assert len(exports) >= 2 and {e["actor"] for e in exports} == {"stream"}
    assert sum(e["details"]["rows"] for e in exports) == len(messages)
    log = ingester.log.read_text()
    assert "Traceback" not in log and "stopped:" in log
