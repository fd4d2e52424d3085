"""A fleet as a live feed: one message per reading, cycle by cycle across the assets, at a rate,
with the transport faults of a real network.

Sensor faults change the readings first (:func:`prognos.data.faults.apply_sensor_faults`); the
transport faults then act on the messages of the assets and readings they name, each reading
hit with probability SIZE (default 0.1): ``drop`` (never published), ``duplicate`` (published
twice) and ``reorder`` (swapped with the asset's next reading). Deterministic for a seed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from prognos.data.dataset import FleetData
from prognos.data.faults import TRANSPORT_FAULTS, Fault, apply_sensor_faults
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.fleet import ASSET, TIME
from prognos.streaming.messages import topic_for
from prognos.streaming.transport import Sender

# Rate control sleeps only when ahead by more than this: shorter sleeps cost more than they pace.
_MIN_SLEEP = 0.002


@dataclass
class Outgoing:
    """One message to publish: the reading's asset, time and the body."""

    asset_id: str
    time: int | datetime
    topic: str
    payload: bytes


@dataclass
class PublishReport:
    """What the publisher sent: ``readings`` distinct readings in ``published`` messages."""

    published: int = 0
    readings: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    seconds: float = 0.0
    acknowledged: bool = True  # every publish acknowledged by the broker at the end

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


def simulated_fleet(n_assets: int, readings: int, seed: int = 0) -> FleetData:
    """``n_assets`` simulated assets with ``readings`` readings each: the simulator's telemetry
    mode (assets in service, repaired after a failure), so every asset keeps reporting."""
    config = SimulatorConfig(n_assets=n_assets, seed=seed, mode="telemetry", horizon=readings)
    return simulate_fleet(config)


def outgoing(
    data: FleetData, fleet: str, faults: Sequence[Fault] = (), *, seed: int = 0
) -> Iterator[Outgoing]:
    """The fleet's messages in live order (by time, then asset), sensor faults applied."""
    frame = apply_sensor_faults(data.readings, faults, seed=seed)
    settings = [c for c in data.spec.setting_names if c in frame.columns]
    sensors = [c for c in data.spec.sensor_names if c in frame.columns]
    order = np.lexsort((pd.factorize(frame[ASSET], sort=False)[0], frame[TIME].to_numpy()))
    frame = frame.iloc[order]
    assets = frame[ASSET].astype(str).tolist()
    times = frame[TIME].tolist()
    setting_values = frame[settings].to_numpy(dtype=float).tolist()
    sensor_values = frame[sensors].to_numpy(dtype=float).tolist()
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for asset, when, svals, values in zip(assets, times, setting_values, sensor_values,
                                          strict=True):  # fmt: skip
        body: dict[str, object] = {"equipment_id": asset}
        if isinstance(when, datetime):
            body["timestamp"] = pd.Timestamp(when).isoformat()
        else:
            body["cycle"] = int(when)
        # A missing value (NaN) is left out, as a client would leave out a sensor it lacks.
        body["sensor_readings"] = {n: v for n, v in zip(sensors, values, strict=True) if v == v}
        body["operational_settings"] = {n: v for n, v in zip(settings, svals, strict=True)
                                        if v == v}  # fmt: skip
        yield Outgoing(asset, when, topic_for(fleet, asset), dumps(body).encode())


class TransportFaults:
    """Applies drop, duplicate and reorder to a message sequence (see the module docstring)."""

    def __init__(self, faults: Sequence[Fault], seed: int = 0) -> None:
        self.faults = [f for f in faults if f.kind in TRANSPORT_FAULTS]
        self._rng = np.random.default_rng([seed, 0x7A5])
        self.dropped = self.duplicated = self.reordered = 0

    def _hit(self, kind: str, number: int, reading: int) -> bool:
        for fault in self.faults:
            covered = fault.kind == kind and fault.covers(number)
            if covered and reading >= fault.from_reading and self._rng.random() < fault.magnitude:
                return True
        return False

    def apply(self, messages: Iterator[Outgoing]) -> Iterator[Outgoing]:
        if not self.faults:
            yield from messages
            return
        numbers: dict[str, int] = {}
        counts: dict[str, int] = {}
        held: dict[str, Outgoing] = {}
        for message in messages:
            asset = message.asset_id
            number = numbers.setdefault(asset, len(numbers) + 1)
            counts[asset] = reading = counts.get(asset, 0) + 1
            if self._hit("drop", number, reading):
                self.dropped += 1
                continue
            copies = [message]
            if self._hit("duplicate", number, reading):
                self.duplicated += 1
                copies.append(message)
            if asset in held:  # this one goes first, the held one right after
                self.reordered += 1
                yield from copies
                yield held.pop(asset)
                continue
            if self._hit("reorder", number, reading):
                held[asset] = copies[0]
                yield from copies[1:]
                continue
            yield from copies
        yield from held.values()  # the asset's last reading: nothing to swap with


def publish(
    sender: Sender,
    messages: Iterator[Outgoing],
    *,
    rate: float | None = None,
    faults: TransportFaults | None = None,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    drain_seconds: float = 60.0,
) -> PublishReport:
    """Publish ``messages`` at ``rate`` messages/s (None: as fast as possible), then wait for
    the broker to acknowledge them all (up to ``drain_seconds``)."""
    faults = faults or TransportFaults(())
    report = PublishReport()
    start = time.perf_counter()
    for i, message in enumerate(faults.apply(messages)):
        if stop is not None and stop.is_set():
            break
        if rate:
            ahead = start + i / rate - time.perf_counter()
            if ahead > _MIN_SLEEP:
                time.sleep(ahead)
        sender.publish(message.topic, message.payload, time.time())
        report.published += 1
        if progress is not None and report.published % 1000 == 0:
            progress(report.published)
    report.acknowledged = sender.drain(drain_seconds)
    report.seconds = time.perf_counter() - start
    report.readings = report.published - faults.duplicated
    report.dropped, report.duplicated = faults.dropped, faults.duplicated
    report.reordered = faults.reordered
    if progress is not None:
        progress(report.published)
    return report
