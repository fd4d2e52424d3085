"""Locust users for the HTTP benchmark; ``bench/bench_http.py`` runs them (usable alone too).

Two targets, picked with ``PROGNOS_BENCH_TARGET`` (the other class is abstract, so a plain
``locust -f bench/locustfile.py`` never mixes them):

- ``prognos`` (default), :class:`PrognosUser`: the reference profile. Each user owns one asset
  (``bench-<uuid>``) and POSTs ``/predict`` with its successive readings; 5% of its requests are
  ``GET /assets/{id}`` (3%) and ``GET /health`` (2%). The service keeps each asset's state, so a
  request carries one reading.
- ``peer``, :class:`PeerUser`: ``mlflow models serve`` of the same registered model. It keeps no
  state and the model's features need history, so every ``POST /invocations`` carries the asset's
  last ``PROGNOS_BENCH_HISTORY`` readings (default 50) as the pyfunc's input: a ``dataframe_split``
  of the fleet's columns (``asset_id``, ``time``, settings, sensors), one prediction back.

Readings are real trajectories (C-MAPSS test units or a simulated fleet of the model's spec)
replayed in cycle order; a user starts at a random point of a random trajectory (at least
``HISTORY`` readings in, so the peer always gets a full history) and moves to a new asset when
its trajectory ends.

Environment:

- ``PROGNOS_BENCH_READINGS`` (required): the readings JSON ``bench_http.py`` writes (format in
  ``bench_http.write_readings``);
- ``PROGNOS_BENCH_KEY``: API key sent as ``X-API-Key`` (none for a ``--no-auth`` server);
- ``PROGNOS_BENCH_TARGET``: ``prognos`` or ``peer``;
- ``PROGNOS_BENCH_CLOSED_LOOP=1``: no think time (``constant(0)``) and prediction requests only,
  for the maximum-throughput run; otherwise ``between(1, 3)`` seconds between requests;
- ``PROGNOS_BENCH_HISTORY``: readings per peer request.

Failures are reported as ``HTTP <status>`` (e.g. ``HTTP 429``), ``connection error: <type>`` or
``bad response: <why>``, so that ``bench_http.py`` can count them by status.

Alone: ``PROGNOS_BENCH_READINGS=readings.json PROGNOS_BENCH_KEY=... locust -f bench/locustfile.py
--host http://127.0.0.1:8000``.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from locust import FastHttpUser, between, constant
from locust.contrib.fasthttp import ResponseContextManager

TARGET = os.environ.get("PROGNOS_BENCH_TARGET", "prognos")
if TARGET not in ("prognos", "peer"):
    raise ValueError(f"PROGNOS_BENCH_TARGET must be 'prognos' or 'peer', not {TARGET!r}")
CLOSED_LOOP = os.environ.get("PROGNOS_BENCH_CLOSED_LOOP", "0") not in ("", "0", "false")
HISTORY = int(os.environ.get("PROGNOS_BENCH_HISTORY", "50"))
KEY = os.environ.get("PROGNOS_BENCH_KEY") or None


@dataclass(frozen=True)
class Trajectory:
    times: list[Any]  # cycles (ints) or ISO timestamps
    values: list[list[float]]  # per reading: settings then sensors, in the fleet's order
    settings: list[dict[str, float]]  # per reading, as the request body carries them
    sensors: list[dict[str, float]]


@dataclass(frozen=True)
class Readings:
    time_field: str  # "cycle" or "timestamp" in POST /predict
    columns: list[str]  # the pyfunc's input columns: asset_id, time, settings, sensors
    integer_assets: bool  # the pyfunc's asset_id is a number (its signature says long)
    trajectories: list[Trajectory]


@cache
def readings() -> Readings:
    """The readings file, loaded once per Locust process."""
    path = os.environ.get("PROGNOS_BENCH_READINGS")
    if not path:
        raise RuntimeError("set PROGNOS_BENCH_READINGS to the readings JSON bench_http.py writes")
    raw = json.loads(Path(path).read_text())
    settings, sensors = raw["settings"], raw["sensors"]
    n = len(settings)
    trajectories = []
    for t in raw["trajectories"]:
        if len(t["times"]) < HISTORY + 1:
            continue
        trajectories.append(
            Trajectory(
                times=t["times"],
                values=t["values"],
                settings=[dict(zip(settings, v[:n], strict=True)) for v in t["values"]],
                sensors=[dict(zip(sensors, v[n:], strict=True)) for v in t["values"]],
            )
        )
    if not trajectories:
        raise RuntimeError(f"{path}: no trajectory has more than {HISTORY} readings")
    return Readings(
        time_field="cycle" if raw["time_kind"] == "cycle" else "timestamp",
        columns=["asset_id", "time", *settings, *sensors],
        integer_assets=bool(raw["integer_assets"]),
        trajectories=trajectories,
    )


def judge(
    response: ResponseContextManager, check: Callable[[Any], str | None] | None = None
) -> Any:
    """Mark the response failed by category; returns the JSON body of a 2xx (or None)."""
    if response.status_code == 0:
        error = getattr(response, "error", None)
        response.failure(f"connection error: {type(error).__name__}")
        return None
    if not 200 <= response.status_code < 300:
        response.failure(f"HTTP {response.status_code}")
        return None
    try:
        body = response.json()
    except ValueError:
        response.failure("bad response: not JSON")
        return None
    if check is not None:
        problem = check(body)
        if problem:
            response.failure(f"bad response: {problem}")
            return None
    response.success()
    return body


class ReplayUser(FastHttpUser):
    """Replays one trajectory; a new asset (and trajectory) when it ends."""

    abstract = True
    wait_time = constant(0) if CLOSED_LOOP else between(1, 3)
    network_timeout = 30.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.data = readings()
        self.headers = {"X-API-Key": KEY} if KEY else {}
        self.new_asset()

    def new_asset(self) -> None:
        self.trajectory = random.choice(self.data.trajectories)
        self.position = random.randrange(HISTORY - 1, len(self.trajectory.times))
        self.posted = False

    def advance(self) -> None:
        self.position += 1
        if self.position >= len(self.trajectory.times):
            self.new_asset()


class PrognosUser(ReplayUser):
    """The reference profile against ``prognos serve``."""

    abstract = TARGET != "prognos"

    def new_asset(self) -> None:
        super().new_asset()
        self.asset = f"bench-{uuid.uuid4().hex}"

    def predict(self) -> None:
        t, i = self.trajectory, self.position
        body = {
            "equipment_id": self.asset,
            self.data.time_field: t.times[i],
            "sensor_readings": t.sensors[i],
            "operational_settings": t.settings[i],
        }
        asset = self.asset

        def check(out: dict[str, Any]) -> str | None:
            if out.get("equipment_id") != asset:
                return f"equipment_id {out.get('equipment_id')!r}, expected {asset!r}"
            if "failure_probability" not in (out.get("prediction") or {}):
                return "no prediction.failure_probability"
            return None

        with self.client.post(
            "/predict", json=body, headers=self.headers, name="/predict", catch_response=True
        ) as response:
            if judge(response, check) is not None:
                self.posted = True
        self.advance()

    def look_up_asset(self) -> None:
        if not self.posted:  # nothing to look up yet
            self.health()
            return
        with self.client.get(
            f"/assets/{self.asset}", headers=self.headers, name="/assets/[id]", catch_response=True
        ) as response:
            judge(response)

    def health(self) -> None:
        with self.client.get("/health", name="/health", catch_response=True) as response:
            judge(response)

    tasks: ClassVar[Any] = (
        {predict: 1} if CLOSED_LOOP else {predict: 95, look_up_asset: 3, health: 2}
    )


class PeerUser(ReplayUser):
    """``mlflow models serve`` of the same model: the asset's last ``HISTORY`` readings a call."""

    abstract = TARGET != "peer"

    def new_asset(self) -> None:
        super().new_asset()
        number = random.getrandbits(40)
        self.asset_id: int | str = number if self.data.integer_assets else f"bench-{number}"

    def predict(self) -> None:
        t, i = self.trajectory, self.position
        start = max(0, i - HISTORY + 1)
        rows = [[self.asset_id, t.times[j], *t.values[j]] for j in range(start, i + 1)]
        body = {"dataframe_split": {"columns": self.data.columns, "data": rows}}

        def check(out: dict[str, Any]) -> str | None:
            predictions = out.get("predictions")
            if not isinstance(predictions, list) or len(predictions) != 1:
                return f"expected one prediction, got {str(predictions)[:200]}"
            return None

        with self.client.post(  # the peer takes no key
            "/invocations", json=body, name="/invocations", catch_response=True
        ) as response:
            judge(response, check)
        self.advance()

    tasks: ClassVar[Any] = {predict: 1}
