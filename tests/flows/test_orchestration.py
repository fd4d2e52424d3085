"""The Prefect flows under Prefect's test harness: each one's result is the plain function's, and
the deployments carry the configured cron schedules (checked without a server, then registered
with the harness server). Prefect is imported inside the tests (see conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prognos.config import get_settings
from prognos.errors import ConfigError
from prognos.flows import jobs
from prognos.flows.ingest import ingest
from prognos.storage import Database, audit_events, insert_records
from prognos.storage.monitoring import json_safe
from tests.helpers import monitoring as case
from tests.helpers.loop import private_home, register_again
from tests.helpers.trained import Trained


def _use_database(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    url = f"sqlite:///{path}"
    monkeypatch.setenv("PROGNOS_DATABASE_URL", url)
    return url


@pytest.mark.slow
def test_ingest_flow_is_the_plain_ingest(
    prefect_server: None, tmp_path: Path, broken_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prognos.flows.orchestration import ingest_flow

    source = f"csv:{broken_csv}"
    _use_database(monkeypatch, tmp_path / "plain.db")
    plain = ingest(get_settings(home=tmp_path / "a"), source)
    flow_url = _use_database(monkeypatch, tmp_path / "flow.db")
    state = ingest_flow(source=source, home=str(tmp_path / "b"), return_state=True)
    assert state.is_completed()
    flowed = state.result()

    def counts(outcome: Any) -> dict[str, Any]:
        return {k: v for k, v in outcome.to_json().items() if k != "quarantine_path"}

    assert counts(flowed) == counts(plain) and plain.stored > 0 and plain.quarantined > 0
    assert flowed.quarantine_path.read_text() == plain.quarantine_path.read_text()
    db = Database(flow_url)
    event = audit_events(db, action="data.ingest")[0]
    db.dispose()
    assert event["actor"] == "prefect" and event["details"]["stored"] == plain.stored


@pytest.mark.slow
def test_monitor_flow_is_the_plain_monitoring_run(
    prefect_server: None, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prognos.flows.orchestration import monitor_flow

    url = _use_database(monkeypatch, tmp_path / "live.db")
    db = Database(url)
    db.upgrade()
    insert_records(
        db,
        {
            "reading": case.reading_rows(),
            "prediction": case.prediction_rows(),
            "feedback": [*case.feedback_rows(), case.LATE_FEEDBACK],
        },
    )
    plain = jobs.monitor(trained.settings(), trained.name, fleet=case.FLEET, now=case.NOW)
    flowed = monitor_flow(name=trained.name, fleet=case.FLEET, now=case.NOW, home=str(trained.home))

    def figures(result: Any) -> dict[str, Any]:
        out = json_safe(result.to_json())
        return {"summary": out["summary"], "metrics": out["metrics"], "fleet": out["fleet"]}

    assert flowed.run_id != plain.run_id  # two runs, both stored ...
    assert figures(flowed) == figures(plain)  # ... with the same figures
    assert plain.performance.counts["labelled"] > 0
    from prognos.storage import monitoring as store

    assert [r["id"] for r in store.list_runs(db, limit=5)] == [flowed.run_id, plain.run_id]
    db.dispose()


@pytest.mark.slow
def test_retrain_and_gate_flows_are_the_plain_jobs(
    prefect_server: None, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a trigger the retrain flow retrains nothing; with a challenger the gate waits for
    labels (and says so in the audit log) and the retrain flow leaves it to the gate."""
    from prognos.flows.orchestration import gate_flow, retrain_flow

    url = _use_database(monkeypatch, tmp_path / "loop.db")
    settings = private_home(trained, tmp_path / "home")
    home = str(settings.home)
    plain = jobs.retrain_if_due(settings, trained.name)
    flowed = retrain_flow(name=trained.name, home=home)
    assert (
        flowed.to_json() == plain.to_json() == {"reasons": [], "retrained": False, "outcome": None}
    )

    register_again(settings, trained.name)
    from prognos.registry import versions
    from prognos.registry.tracking import connect

    versions.set_challenger(connect(settings), trained.name, 2)
    verdict = gate_flow(name=trained.name, now=case.NOW, home=home)
    assert verdict.verdict == "wait" and verdict.challenger == 2
    assert jobs.gate(settings, trained.name, now=case.NOW).to_json() == verdict.to_json()
    db = Database(url)
    waited = audit_events(db, action="gate.", subject=trained.name)
    db.dispose()
    assert [e["action"] for e in waited] == ["gate.waiting", "gate.waiting"]
    assert retrain_flow(name=trained.name, home=home).reasons == []  # the gate judges first


@pytest.mark.slow
def test_due_reasons_name_new_labels(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check the retrain flow runs, on the fleet the champion serves."""
    url = _use_database(monkeypatch, tmp_path / "labels.db")
    settings = private_home(trained, tmp_path / "home", retrain_min_new_labels=3)
    fleet = "simulated"  # the tiny model's (its spec's name; PROGNOS_FLEET unset)
    db = Database(url)
    db.upgrade()
    insert_records(
        db,
        {
            "feedback": [
                {"fleet": fleet, "asset_id": f"a{i}", "failure_occurred": True, "failure_cycle": 9}
                for i in range(3)
            ]
        },
    )
    db.dispose()
    (reason,) = jobs.due_reasons(settings, trained.name)
    assert reason.startswith("3 new labelled outcomes")


# ---------------------------------------------------------------------------------- deployments


def _crons(deployment: Any) -> list[tuple[str, str]]:
    return [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules]


def test_deployments_carry_the_configured_schedules(prefect_env: None, tmp_path: Path) -> None:
    from prognos.flows.orchestration import deployments

    settings = get_settings(
        home=tmp_path,
        model_name="tiny",
        monitor_schedule="*/5 * * * *",
        retrain_schedule="0 4 * * 1",
        gate_schedule="15 * * * *",
        ingest_source="csv:/data/fleet.csv",
        ingest_schedule="0 */2 * * *",
    )
    built = {d.flow_name: d for d in deployments(settings)}
    assert _crons(built["prognos-monitor"]) == [("*/5 * * * *", "UTC")]
    assert _crons(built["prognos-retrain"]) == [("0 4 * * 1", "UTC")]
    assert _crons(built["prognos-gate"]) == [("15 * * * *", "UTC")]
    assert _crons(built["prognos-ingest"]) == [("0 */2 * * *", "UTC")]
    assert _crons(built["prognos-train"]) == []  # on demand
    home = str(tmp_path.resolve())
    assert built["prognos-retrain"].parameters == {"name": "tiny", "home": home}
    assert built["prognos-ingest"].parameters == {"source": "csv:/data/fleet.csv", "home": home}
    assert built["prognos-monitor"].name == "monitor-tiny"
    assert built["prognos-monitor"].entrypoint == "prognos.flows.orchestration.monitor_flow"

    # Without a model or a source only the on-demand training is registrable.
    bare = deployments(get_settings(home=tmp_path))
    assert [d.flow_name for d in bare] == ["prognos-train"]
    with pytest.raises(ConfigError, match="PROGNOS_RETRAIN_SCHEDULE 'weekly'"):
        deployments(get_settings(home=tmp_path, retrain_schedule="weekly"), "tiny")


@pytest.mark.slow
def test_deployments_register_with_a_server(prefect_server: None, tmp_path: Path) -> None:
    """What ``serve`` does first: the deployments, with their schedules, on the server."""
    from prefect.client.orchestration import get_client

    from prognos.flows.orchestration import deployments

    settings = get_settings(home=tmp_path, model_name="tiny", monitor_schedule="7 * * * *")
    for deployment in deployments(settings):
        deployment.apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment_by_name("prognos-monitor/monitor-tiny")
        train = client.read_deployment_by_name("prognos-train/train")
    assert [s.schedule.cron for s in stored.schedules] == ["7 * * * *"]  # type: ignore[union-attr]
    assert stored.parameters == {"name": "tiny", "home": str(tmp_path.resolve())}
    assert train.schedules == []


def test_serve_refuses_without_a_server(
    prefect_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prognos.flows.orchestration import serve_flows

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PROGNOS_PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError, match="prefect server start"):
        serve_flows(get_settings(home=tmp_path), "tiny")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens there
    with pytest.raises(ConfigError, match="does not answer"):
        serve_flows(get_settings(home=tmp_path), "tiny")
