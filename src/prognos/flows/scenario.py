"""The closed loop on a simulated fleet whose degradation changes (``prognos demo --loop``).

A champion is trained on a fleet that wears out slowly (lives of 120-350 cycles). The live fleet
then wears out about twice as fast (60-150 cycles: a harsher duty), and some of its assets carry a
sensor offset. The loop, every stage on embedded defaults: stream the changed fleet through the
ingestion core, record the operators' failure reports, monitor (drift, realised F2), alert (to a
local receiver), see the triggers hold, retrain on the original data plus the labelled live lives,
stream a second wave of the changed fleet with the challenger in the champion's shadow, report
those failures too, and let the gate judge both models on the same labelled predictions.

The simulator only serves the demonstration: no accuracy claim rests on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from prognos.alerting import Dispatcher, build_notifiers, evaluate, load_rules
from prognos.config import Settings
from prognos.data.dataset import FleetData
from prognos.data.faults import parse_fault
from prognos.data.simulator import SimulatorConfig, simulate_fleet
from prognos.data.sinks import write_source
from prognos.fleet import ASSET, TIME
from prognos.flows.promotion import GateVerdict, run_gate
from prognos.flows.receiver import WebhookReceiver
from prognos.flows.retrain import RetrainOutcome, retrain
from prognos.flows.triggers import check_triggers
from prognos.monitoring.build import profile_from_training
from prognos.monitoring.live import LiveResult, load_monitored, profile_drift, run_live
from prognos.storage import repository
from prognos.storage.database import Database, open_database
from prognos.streaming.run import StreamPlan, StreamSummary, run_stream
from prognos.training.config import TrainConfig
from prognos.training.flow import train
from prognos.training.report import headline

__all__ = ["LOOP_TRAINING", "LoopPlan", "LoopResult", "run_loop"]

Say = Callable[[str], None]

LOOP_TRAINING: dict[str, Any] = {
    "folds": 3,
    "cuts_per_asset": 4,
    "members": {
        "xgboost": {"params": {"n_estimators": 150}},
        "sequence": {"params": {"max_epochs": 4, "hidden": 16}},
        "forest": {"enabled": False},
    },
}


@dataclass(frozen=True)
class LoopPlan:
    name: str = "loop"
    fleet: str = "loop"
    train_assets: int = 60
    live_assets: int = 30  # per wave
    old_life: tuple[int, int] = (120, 350)
    new_life: tuple[int, int] = (60, 150)
    fault: str = "offset:1-10:40:1.5"
    rate: float = 400.0  # messages/s: slow enough that most readings get their own prediction
    seed: int = 0
    training: dict[str, Any] = field(default_factory=lambda: dict(LOOP_TRAINING))


@dataclass
class LoopResult:
    champion_cv: dict[str, float]
    wave1: StreamSummary
    failures1: int
    monitoring: LiveResult
    alerts: list[str]
    triggers: list[str]
    retrained: RetrainOutcome
    wave2: StreamSummary
    failures2: int
    verdict: GateVerdict
    audit: list[dict[str, Any]]
    seconds: dict[str, float]


def _fleet(plan: LoopPlan, life: tuple[int, int], n: int, seed: int, prefix: str) -> FleetData:
    data = simulate_fleet(
        SimulatorConfig(n_assets=n, seed=seed, min_life=life[0], max_life=life[1], name=plan.name)
    )
    data.readings[ASSET] = prefix + data.readings[ASSET].astype(str)
    return data


def _failures(db: Database, data: FleetData, fleet: str) -> int:
    """An operator's failure report for every asset of the wave (each ran to failure)."""
    last = data.readings.groupby(ASSET)[TIME].max()
    rows = [
        {
            "fleet": fleet,
            "asset_id": str(asset),
            "failure_occurred": True,
            "failure_cycle": int(cycle),
            "failure_type": "failure",
            "notes": "reported by the loop demo",
            "submitted_by": "operator-demo",
        }
        for asset, cycle in last.items()
    ]
    return repository.insert_feedback(db, rows)


def _alerts(settings: Settings, db: Database) -> list[str]:
    """Evaluate the alert rules once and deliver to a local receiver; one line per delivery
    received (rules per severity and state, asset alerts counted)."""
    receiver = WebhookReceiver()
    dispatcher = Dispatcher(build_notifiers(
        settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url)})
    ))  # fmt: skip
    rules = load_rules(settings)
    try:
        evaluate(settings, db, rules, now=datetime.now(UTC), dispatcher=dispatcher)
        dispatcher.flush(10.0)
    finally:
        dispatcher.stop(5.0)
        receiver.close()
    per_asset = {rule.name for rule in rules.asset_rules}
    lines = [
        f"{a.get('severity')} {a.get('rule')} {a.get('state')}: {a.get('message')}"
        for a in receiver.received
        if a.get("rule") not in per_asset
    ]
    counts: dict[str, int] = {}
    for a in receiver.received:
        if a.get("rule") in per_asset:
            counts[str(a.get("rule"))] = counts.get(str(a.get("rule")), 0) + 1
    return lines + [f"{n} asset alerts {rule}" for rule, n in sorted(counts.items())]


def run_loop(settings: Settings, plan: LoopPlan, *, say: Say = print) -> LoopResult:
    """Run every stage (see the module docstring); ``say`` gets one line per step."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    settings = settings.model_copy(update={"model_name": plan.name, "fleet": plan.fleet})
    settings.ensure_home()
    data_dir = settings.data_dir

    say(f"training the champion on {plan.train_assets} assets (lives {plan.old_life})")
    old = _fleet(plan, plan.old_life, plan.train_assets, plan.seed, "")
    write_source(old, f"parquet:{data_dir / 'loop-train.parquet'}")
    original = FleetData(
        readings=old.readings,
        spec=old.spec,
        source=f"parquet:{data_dir / 'loop-train.parquet'}",
        run_to_failure=True,
    )
    trained = train(
        original,
        TrainConfig.model_validate(plan.training),
        settings,
        name=plan.name,
        progress=say,
        reference=profile_from_training,
    )
    lap("train")

    db = open_database(settings)
    try:
        wave1_data = _fleet(plan, plan.new_life, plan.live_assets, plan.seed + 1, "w1-")
        wave1 = _stream(settings, plan, wave1_data, data_dir / "loop-wave1.parquet", say)
        failures1 = _failures(db, wave1_data, plan.fleet)
        lap("wave1")

        say("monitoring the champion on the first wave")
        facts = load_monitored(settings, plan.name)
        check, unavailable = profile_drift(settings, facts)
        monitoring = run_live(
            settings, db, facts, fleet=plan.fleet, drift=check, drift_unavailable=unavailable
        )
        say("evaluating the alert rules (delivered to a local webhook receiver)")
        alerts = _alerts(settings, db)
        triggers = check_triggers(settings, plan.name, db, plan.fleet)
        lap("monitor")

        say("retraining: " + ("; ".join(triggers) or "on demand (no trigger held)"))
        retrained = retrain(
            settings,
            plan.name,
            reason="; ".join(triggers) or "loop demo",
            trigger="monitoring" if triggers else "manual",
            progress=say,
        )
        lap("retrain")

        wave2_data = _fleet(plan, plan.new_life, plan.live_assets, plan.seed + 2, "w2-")
        wave2 = _stream(settings, plan, wave2_data, data_dir / "loop-wave2.parquet", say)
        failures2 = _failures(db, wave2_data, plan.fleet)
        lap("wave2")

        say("the promotion gate")
        verdict = run_gate(settings, db, plan.name, fleet=plan.fleet)
        lap("gate")
        trail = [
            event
            for event in repository.audit_events(db, limit=200)
            if event["subject"].startswith(plan.name)
        ]
    finally:
        db.dispose()
    return LoopResult(
        champion_cv=headline(trained.metrics),
        wave1=wave1,
        failures1=failures1,
        monitoring=monitoring,
        alerts=alerts,
        triggers=triggers,
        retrained=retrained,
        wave2=wave2,
        failures2=failures2,
        verdict=verdict,
        audit=list(reversed(trail)),
        seconds=seconds,
    )


def _stream(
    settings: Settings, plan: LoopPlan, data: FleetData, path: Path, say: Say
) -> StreamSummary:
    target = f"parquet:{path}"
    write_source(data, target)
    n = data.readings[ASSET].nunique()
    say(f"streaming {n} assets, {len(data.readings):,} readings (lives {plan.new_life})")
    return run_stream(
        settings,
        StreamPlan(
            source=target,
            faults=(parse_fault(plan.fault),),
            rate=plan.rate,
            seed=plan.seed,
            settle_seconds=300.0,
        ),
        say=say,
    )
