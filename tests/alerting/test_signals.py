"""Each default signal computed from a database built here, through the shipped rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from prognos.alerting.evaluate import AlertResult, Evaluation, evaluate
from prognos.alerting.rules import load_rules
from prognos.alerting.signals import ALL_FLEETS, Signals
from prognos.config import Settings
from prognos.storage.database import Database
from tests.alerting.conftest import FLEET, MODEL, NOW, Seed

RULES = load_rules()


def check(settings: Settings, db: Database, minutes: float = 0) -> Evaluation:
    return evaluate(settings, db, RULES, now=NOW + timedelta(minutes=minutes))


def by_rule(evaluation: Evaluation) -> dict[str, list[AlertResult]]:
    out: dict[str, list[AlertResult]] = {}
    for result in evaluation.results:
        out.setdefault(result.rule, []).append(result)
    return out


def test_an_empty_database_is_no_data_everywhere(settings: Settings, db: Database) -> None:
    evaluation = check(settings, db)
    fleet_rules = {r.rule: r.state for r in evaluation.results}
    assert fleet_rules == {r.name: "no data" for r in (*RULES.rules, *RULES.asset_rules)}
    assert evaluation.events == []


def test_monitoring_figures_from_the_latest_live_run_of_each_model(
    settings: Settings, db: Database, seed: Seed
) -> None:
    metrics = {
        "model_f2_score_current": 0.70,
        "prediction_drift_psi": 0.30,
        "data_drift_share": 0.35,
    }
    seed.run(NOW - timedelta(hours=2), {**metrics, "model_f2_score_current": 0.99})
    seed.run(NOW - timedelta(hours=1), metrics)  # the newest of model m: it counts
    seed.run(NOW - timedelta(hours=1), {"model_f2_score_current": 0.9}, model="other")
    results = by_rule(check(settings, db))
    f2 = {r.subject: (r.state, r.value) for r in results["realised_f2_warning"]}
    assert f2 == {MODEL: ("firing", 0.70), "other": ("ok", 0.9)}
    critical = {r.subject: r.state for r in results["realised_f2_critical"]}
    assert critical == {MODEL: "pending", "other": "ok"}  # for 24h
    assert [
        (r.state, r.value) for r in results["prediction_psi_warning"] if r.subject == MODEL
    ] == [("firing", 0.30)]
    assert [r.state for r in results["prediction_psi_critical"] if r.subject == MODEL] == ["ok"]
    assert [r.state for r in results["data_drift_share"] if r.subject == MODEL] == ["firing"]
    # The other model's run has no PSI: no data for it, not a made-up value.
    assert [r.state for r in results["prediction_psi_warning"] if r.subject == "other"] == [
        "no data"
    ]
    assert all(r.fleet == FLEET for r in results["realised_f2_warning"])


def test_latency_p95_over_the_window_without_shadow_or_old_predictions(
    settings: Settings, db: Database, seed: Seed
) -> None:
    for i in range(100):  # 1..100 ms in the last five minutes: p95 = 95.05 ms
        seed.prediction(NOW - timedelta(seconds=1 + i * 2), latency_ms=float(i + 1))
    for _ in range(50):  # not counted: a challenger's, and older than the window
        seed.prediction(NOW - timedelta(seconds=5), latency_ms=900.0, shadow=True)
        seed.prediction(NOW - timedelta(minutes=6), latency_ms=900.0)
    [result] = by_rule(check(settings, db))["latency_p95_high"]
    assert result.value == pytest.approx(95.05)
    assert (result.state, result.fleet) == ("ok", ALL_FLEETS)

    for i in range(100):
        seed.prediction(NOW - timedelta(seconds=1), latency_ms=150.0 + i)
    [result] = by_rule(check(settings, db))["latency_p95_high"]
    assert result.value is not None and result.value > 100
    assert result.state == "pending"  # for 10 minutes
    # Ten minutes on, with slow requests still in the window: it fires.
    seed.prediction(NOW + timedelta(minutes=9), latency_ms=500.0)
    [result] = by_rule(check(settings, db, minutes=10))["latency_p95_high"]
    assert result.state == "firing"


def test_seconds_since_the_last_served_prediction(
    settings: Settings, db: Database, seed: Seed
) -> None:
    seed.prediction(NOW - timedelta(minutes=4))
    seed.prediction(NOW - timedelta(minutes=1), shadow=True)  # a shadow is no service
    [result] = by_rule(check(settings, db))["no_successful_request"]
    assert (result.state, result.value) == ("ok", 240.0)
    [result] = by_rule(check(settings, db, minutes=2))["no_successful_request"]
    assert (result.state, result.value) == ("firing", 360.0)


def test_ingestion_delay_from_the_newest_arrival(
    settings: Settings, db: Database, seed: Seed
) -> None:
    seed.reading(NOW - timedelta(minutes=90), asset="A")
    seed.reading(NOW - timedelta(minutes=50), asset="B")
    seed.reading(NOW - timedelta(minutes=70), asset="C")  # stored last, arrived earlier
    [result] = by_rule(check(settings, db))["ingestion_delayed"]
    assert (result.state, result.value) == ("ok", 3000.0)
    [result] = by_rule(check(settings, db, minutes=11))["ingestion_delayed"]
    assert (result.state, result.value) == ("firing", 3660.0)


def test_training_failures_in_a_row_from_the_audit_log(
    settings: Settings, db: Database, seed: Seed
) -> None:
    hours = iter(range(-20, 0))

    def event(action: str, model: str) -> None:
        seed.audit(action, model, NOW + timedelta(hours=next(hours)))

    event("retrain.failed", "fd001")
    event("retrain.succeeded", "fd001")
    event("retrain.failed", "fd001")
    event("retrain.triggered", "fd001")  # not an outcome
    event("retrain.failed", "fd001")
    event("retrain.failed", "fd002")
    event("retrain.succeeded", "fd002")
    results = {r.subject: r for r in by_rule(check(settings, db))["training_failed_twice"]}
    assert {s: (r.state, r.value) for s, r in results.items()} == {
        "fd001": ("firing", 2.0),
        "fd002": ("ok", 0.0),
    }
    event("retrain.succeeded", "fd001")
    results = {r.subject: r for r in by_rule(check(settings, db, 1))["training_failed_twice"]}
    assert results["fd001"].state == "resolved"


def test_asset_alerts_from_each_assets_latest_served_prediction(
    settings: Settings, db: Database, seed: Seed
) -> None:
    seed.run(NOW - timedelta(hours=1), {}, threshold=0.4)  # the model's threshold
    recent = NOW - timedelta(minutes=5)
    # A: inspect now (its older prediction did not say so).
    seed.prediction(recent, asset_id="A", time=10, failure_probability=0.1)
    seed.prediction(recent, asset_id="A", time=11, failure_probability=0.8, should_inspect=True)
    # B: RUL lower bound 12 < lead time 15 (and inspect).
    seed.prediction(
        recent, asset_id="B", time=5, failure_probability=0.9, should_inspect=True, rul_lower=12.0
    )
    # C: healthy; its challenger's shadow prediction would alert but does not count.
    seed.prediction(recent, asset_id="C", time=5)
    seed.prediction(recent, asset_id="C", time=6, should_inspect=True, rul_lower=1.0, shadow=True)
    # D: alerting, but predicted before the recent window: not looked at.
    seed.prediction(NOW - timedelta(hours=30), asset_id="D", time=5, should_inspect=True)
    evaluation = check(settings, db)
    results = by_rule(evaluation)
    inspect = {r.subject: r for r in results["asset_inspect"]}
    assert set(inspect) == {"A", "B"}
    assert (inspect["A"].state, inspect["A"].value, inspect["A"].threshold) == (
        "firing",
        0.8,
        0.4,
    )
    [rul] = results["asset_rul_below_lead_time"]
    assert (rul.subject, rul.state, rul.value, rul.threshold) == ("B", "firing", 12.0, 15.0)
    assert evaluation.ok_assets == {"asset_inspect": 1, "asset_rul_below_lead_time": 2}
    messages = [e.message for e in evaluation.events if e.rule.startswith("asset")]
    assert any("asset B" in m and "RUL lower bound 12" in m for m in messages)

    # A's newest prediction no longer says inspect: resolved.
    seed.prediction(NOW, asset_id="A", time=12, failure_probability=0.2)
    later = by_rule(check(settings, db, minutes=1))
    assert {r.subject: r.state for r in later["asset_inspect"]} == {
        "A": "resolved",
        "B": "firing",
    }


def test_a_fleet_setting_scopes_every_signal(settings: Settings, db: Database, seed: Seed) -> None:
    seed.run(NOW, {"data_drift_share": 0.9}, fleet="other")
    seed.prediction(NOW - timedelta(minutes=1), fleet="other")
    signals = Signals(db, NOW, fleet=FLEET)
    rule = RULES.get("data_drift_share")
    assert rule is not None and signals.observe(rule) == []
    rule = RULES.get("no_successful_request")
    assert rule is not None
    [observation] = signals.observe(rule)
    assert (observation.fleet, observation.value) == (FLEET, None)


@pytest.mark.services
def test_every_query_and_state_write_on_postgresql(settings: Settings, postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        db.upgrade()
        seed = Seed(db)
        seed.run(NOW - timedelta(hours=1), {"model_f2_score_current": 0.5})
        seed.prediction(NOW - timedelta(minutes=2), latency_ms=500.0, should_inspect=True)
        seed.prediction(NOW - timedelta(minutes=1), asset_id="B", shadow=True, rul_lower=1.0)
        seed.reading(NOW - timedelta(hours=3))
        seed.audit("retrain.failed", "fd001", NOW - timedelta(hours=2))
        seed.audit("retrain.failed", "fd001", NOW - timedelta(hours=1))
        first = {(r.rule, r.subject): r.state for r in check(settings, db).results}
        assert first[("realised_f2_warning", MODEL)] == "firing"
        assert first[("latency_p95_high", "")] == "pending"
        assert first[("no_successful_request", "")] == "ok"
        assert first[("ingestion_delayed", "")] == "firing"
        assert first[("training_failed_twice", "fd001")] == "firing"
        assert first[("asset_inspect", "A")] == "firing"
        assert ("asset_rul_below_lead_time", "B") not in first
        later = check(settings, db, minutes=11)
        states = {(r.rule, r.subject): r.state for r in later.results}
        assert states[("latency_p95_high", "")] == "no data"  # nothing in the last 5 minutes
        assert states[("no_successful_request", "")] == "firing"
        assert len([e for e in later.events if e.rule == "realised_f2_warning"]) == 0
    finally:
        db.dispose()
