"""The promotion gate judges challenger and champion on the same labelled live predictions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from prognos.config import Settings
from prognos.flows.promotion import judge, run_gate
from prognos.flows.receiver import WebhookReceiver
from prognos.monitoring.live import load_monitored
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.storage import repository
from prognos.storage.database import Database, database_url
from tests.helpers.loop import private_home, register_again
from tests.helpers.trained import Trained

FLEET = "gate-fleet"
FAILS_AT = 100


@pytest.fixture
def loop_home(trained: Trained, tmp_path: Path) -> tuple[Settings, Database, int, int]:
    settings = private_home(trained, tmp_path / "home", fleet=FLEET)
    champion = versions.champion(connect(settings), "tiny")
    assert champion is not None
    challenger = register_again(settings, "tiny")
    versions.set_challenger(connect(settings), "tiny", challenger)
    db = Database(database_url(settings))
    db.upgrade()
    yield settings, db, champion.version, challenger
    db.dispose()


def _predictions(
    version: int, *, shadow: bool, right: bool, horizon: int, assets: int = 8
) -> list[dict[str, object]]:
    rows = []
    for a in range(assets):
        for t in range(40, FAILS_AT + 1, 5):
            failing = FAILS_AT - t <= horizon
            inspect = failing if right else False
            rows.append(
                {
                    "fleet": FLEET,
                    "asset_id": f"a{a}",
                    "time": t,
                    "model_name": "tiny",
                    "model_version": str(version),
                    "failure_probability": 0.9 if inspect else 0.1,
                    "risk_level": "high" if inspect else "low",
                    "rul": float(FAILS_AT - t) if right else 120.0,
                    "rul_lower": 0.0,
                    "rul_upper": 200.0,
                    "should_inspect": inspect,
                    "shadow": shadow,
                }
            )
    return rows


def _failures(assets: int = 8) -> list[dict[str, object]]:
    return [
        {"fleet": FLEET, "asset_id": f"a{a}", "failure_occurred": True, "failure_cycle": FAILS_AT}
        for a in range(assets)
    ]


def test_a_better_challenger_is_promoted_and_can_be_rolled_back(loop_home) -> None:
    settings, db, champion, challenger = loop_home
    horizon = load_monitored(settings, "tiny").horizon
    repository.insert_predictions(db, _predictions(champion, shadow=False, right=False,
                                                   horizon=horizon))  # fmt: skip
    repository.insert_predictions(db, _predictions(challenger, shadow=True, right=True,
                                                   horizon=horizon))  # fmt: skip
    repository.insert_feedback(db, _failures())

    verdict = run_gate(settings, db, "tiny")

    assert verdict.verdict == "promote", verdict.reasons
    live = verdict.figures
    assert live["challenger"]["live"]["f2"] == pytest.approx(1.0)
    assert live["champion"]["live"]["f2"] == pytest.approx(0.0)
    assert live["shared_predictions"] == 8 * 13
    client = connect(settings)
    assert versions.champion(client, "tiny").version == challenger
    assert versions.challenger(client, "tiny") is None  # its shadow ends
    [event] = [e for e in repository.audit_events(db) if e["action"].startswith("gate.")]
    assert event["action"] == "gate.promoted"
    assert event["details"]["challenger"] == challenger
    assert versions.rollback(client, "tiny") == champion


def test_a_worse_challenger_is_rejected_with_its_reasons(loop_home) -> None:
    settings, db, champion, challenger = loop_home
    horizon = load_monitored(settings, "tiny").horizon
    repository.insert_predictions(db, _predictions(champion, shadow=False, right=True,
                                                   horizon=horizon))  # fmt: skip
    repository.insert_predictions(db, _predictions(challenger, shadow=True, right=False,
                                                   horizon=horizon))  # fmt: skip
    repository.insert_feedback(db, _failures())

    receiver = WebhookReceiver()
    try:
        told = settings.model_copy(update={"alert_webhook_url": SecretStr(receiver.url)})
        verdict = run_gate(told, db, "tiny")
    finally:
        receiver.close()

    assert verdict.verdict == "reject"
    [alert] = receiver.received
    assert alert["rule"] == "challenger_rejected" and alert["subject"] == "tiny"
    assert f"challenger {challenger} of tiny rejected" in alert["message"]
    assert any("below the floor" in r for r in verdict.reasons)
    assert any("not above the champion" in r for r in verdict.reasons)
    client = connect(settings)
    assert versions.champion(client, "tiny").version == champion
    assert versions.challenger(client, "tiny") is None


def test_the_gate_waits_for_enough_labels_and_ignores_unshared_predictions(loop_home) -> None:
    settings, db, champion, challenger = loop_home
    horizon = load_monitored(settings, "tiny").horizon
    # The champion scored 8 assets, the challenger (started later) only 1 of them.
    repository.insert_predictions(db, _predictions(champion, shadow=False, right=False,
                                                   horizon=horizon))  # fmt: skip
    repository.insert_predictions(db, _predictions(challenger, shadow=True, right=True,
                                                   horizon=horizon, assets=1))  # fmt: skip
    repository.insert_feedback(db, _failures())
    strict = settings.model_copy(update={"gate_min_labelled": 20})

    verdict = run_gate(strict, db, "tiny")

    assert verdict.verdict == "wait"
    assert verdict.figures["shared_predictions"] == 13
    assert "13 labelled shared predictions, 20 needed" in verdict.reasons[0]
    assert versions.challenger(connect(settings), "tiny").version == challenger  # unchanged


def test_the_margin_keeps_a_champion_the_challenger_only_matches(loop_home) -> None:
    settings, db, champion, challenger = loop_home
    horizon = load_monitored(settings, "tiny").horizon
    for version, shadow in ((champion, False), (challenger, True)):
        repository.insert_predictions(db, _predictions(version, shadow=shadow, right=True,
                                                       horizon=horizon))  # fmt: skip
    repository.insert_feedback(db, _failures())

    verdict = judge(settings, db, load_monitored(settings, "tiny"))

    assert verdict.verdict == "reject"
    assert verdict.reasons == [
        "realised F2 1.000 not above the champion's 1.000 by the margin 0.000"
    ]
