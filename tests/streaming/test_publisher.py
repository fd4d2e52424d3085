"""The publisher: live order, bodies /readings accepts, faults as asked, deterministic, paced."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter

from prognos.data.faults import parse_fault
from prognos.ingestion.readings import ReadingIn
from prognos.streaming.memory import MemoryBroker
from prognos.streaming.messages import asset_of
from prognos.streaming.publisher import (
    TransportFaults,
    outgoing,
    publish,
    simulated_fleet,
)


def test_messages_are_readings_in_live_order() -> None:
    data = simulated_fleet(5, 8, seed=1)
    messages = list(outgoing(data, "f"))
    assert len(messages) == 40
    assert [m.time for m in messages] == sorted(m.time for m in messages)
    assert [m.asset_id for m in messages[:5]] == ["1", "2", "3", "4", "5"]
    for m in messages:
        reading = ReadingIn.model_validate(json.loads(m.payload))
        assert asset_of(m.topic) == reading.equipment_id == m.asset_id
        assert reading.cycle == m.time and len(reading.sensor_readings) == 12
    assert Counter(m.asset_id for m in messages) == {str(a): 8 for a in range(1, 6)}


def test_sensor_faults_change_the_bodies() -> None:
    data = simulated_fleet(3, 10, seed=1)
    clean = list(outgoing(data, "f"))
    stuck = list(outgoing(data, "f", [parse_fault("stuck:2-2:4:sensor_3")]))
    changed = {(a.asset_id, a.time) for a, b in zip(clean, stuck, strict=True)
               if a.payload != b.payload}  # fmt: skip
    assert changed == {("2", t) for t in range(5, 11)}  # frozen at the 4th reading's value
    values = {json.loads(m.payload)["sensor_readings"]["sensor_3"] for m in stuck
              if m.asset_id == "2" and m.time >= 4}  # fmt: skip
    assert len(values) == 1


def _apply(faults: str, seed: int = 0) -> tuple[list[tuple[str, int]], TransportFaults]:
    data = simulated_fleet(4, 50, seed=2)
    transport = TransportFaults([parse_fault(f) for f in faults.split()], seed)
    keys = [(m.asset_id, int(m.time)) for m in transport.apply(outgoing(data, "f"))]
    return keys, transport


def test_transport_faults_drop_duplicate_and_reorder_the_named_readings() -> None:
    keys, t = _apply("drop:1-2:10:0.2 duplicate:3-3:1:0.3 reorder:4-4:1:0.3")
    counts = Counter(keys)
    dropped = {k for a in ("1", "2") for k in [(a, c) for c in range(1, 51)] if k not in counts}
    assert len(dropped) == t.dropped > 0 and all(c >= 10 for _, c in dropped)
    assert all(a in ("1", "2") for a, _ in dropped)
    assert {k for k, n in counts.items() if n == 2} == {k for k in counts if k[0] == "3"
                                                        and counts[k] == 2}  # fmt: skip
    assert sum(n - 1 for n in counts.values()) == t.duplicated > 0
    times = [c for a, c in keys if a == "4"]
    swaps = sum(1 for x, y in itertools.pairwise(times) if y < x)
    assert swaps == t.reordered > 0 and sorted(times) == list(range(1, 51))
    assert all(times == sorted(times) for a in "123" for times in [[c for b, c in keys if b == a]])
    assert _apply("drop:1-2:10:0.2 duplicate:3-3:1:0.3 reorder:4-4:1:0.3")[0] == keys
    assert _apply("drop:1-2:10:0.2 duplicate:3-3:1:0.3 reorder:4-4:1:0.3", seed=1)[0] != keys


def test_publish_paces_to_the_rate_and_reports() -> None:
    broker = MemoryBroker()
    data = simulated_fleet(5, 10, seed=0)
    start = time.perf_counter()
    report = publish(broker.sender(), outgoing(data, "f"), rate=200.0,
                     faults=TransportFaults([parse_fault("duplicate:1-5:1:0.2")]))  # fmt: skip
    elapsed = time.perf_counter() - start
    assert report.published == 50 + report.duplicated and report.readings == 50
    assert 0.2 <= elapsed < 2.0 and report.acknowledged
