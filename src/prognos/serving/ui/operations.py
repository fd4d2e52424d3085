"""The Models page (versions, champion and challenger with the shadow comparison, promote and
rollback for admin keys), the Monitoring page and the Alerts page (with acknowledge)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from prognos.config import Settings
from prognos.errors import PrognosError
from prognos.registry import champion as moves
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.reports.business import savings_for_model
from prognos.serving.runtime import Runtime
from prognos.serving.ui import views
from prognos.serving.ui.fleet import templates
from prognos.serving.ui.web import FormSession, SessionDep, render, runtime_of, secure_headers
from prognos.storage import alerts as alert_store
from prognos.storage import dashboard, repository
from prognos.storage import monitoring as monitoring_store
from prognos.storage.database import Database

router = APIRouter(prefix="/ui", include_in_schema=False)

CV_SHOWN = ("rmse", "f2", "recall", "precision", "pr_auc", "coverage")
MOVES = {"promoted": "promoted to", "rolled_back": "rolled back to"}
REALISED = {
    "F2": "model_f2_score_current",
    "precision": "model_precision_current",
    "recall": "model_recall_current",
    "false alarms": "model_false_alarm_rate",
    "RUL MAE": "model_rul_mae_current",
    "coverage": "model_interval_coverage_current",
    "labelled": "model_predictions_labelled",
}


def _model_name(runtime: Runtime) -> str | None:
    return runtime.core.model_name or runtime.settings.model_name


def _realised_by_version(db: Database, name: str) -> dict[str, dict[str, Any]]:
    """Each version's newest live monitoring run's realised figures."""
    newest: dict[str, dict[str, Any]] = {}
    for run in monitoring_store.list_runs(db, 200, model_name=name, kind="live"):
        newest.setdefault(run["model_version"], run)
    out = {}
    for version, run in newest.items():
        metrics = {m["name"]: m["value"] for m in monitoring_store.run_metrics(db, run["id"])}
        out[version] = {label: metrics.get(key) for label, key in REALISED.items()}
        out[version]["at"] = run["started_at"]
    return out


def _registry(settings: Settings, name: str) -> dict[str, Any]:
    client = connect(settings)
    found = versions.list_versions(client, name)
    return {"versions": list(reversed(found))}


@router.get("/models", response_class=HTMLResponse)
async def models(request: Request, session: SessionDep) -> HTMLResponse:
    """Registered versions with cross-validation and realised figures, the champion and the
    challenger in its shadow with the gate's latest comparison, and the champion's moves."""
    runtime = runtime_of(request)
    db = runtime.core.db
    assert db is not None
    name = _model_name(runtime)
    context: dict[str, Any] = {"active": "models", "name": name, "cv_shown": CV_SHOWN}
    if name is not None:
        try:
            context.update(await run_in_threadpool(_registry, runtime.settings, name))
        except versions.RegistryError as exc:
            context["registry_error"] = str(exc)
        context["realised"] = await run_in_threadpool(_realised_by_version, db, name)
        context["realised_labels"] = list(REALISED)
        gates = await run_in_threadpool(lambda: repository.audit_events(db, 1, action="gate."))
        context["gate"] = gates[0] if gates else None
        context["gate_rows"] = _gate_rows(gates[0]["details"]) if gates else []
        context["moves"] = await run_in_threadpool(
            lambda: repository.audit_events(db, 10, action="champion_", subject=name)
        )
        context["business"] = await _business(request, runtime, name)
    shadows = runtime.core.shadows
    context["shadow"] = None if shadows is None else shadows.status()
    context["served"] = runtime.core.model
    moved = MOVES.get(request.query_params.get("moved", ""))
    context["moved"] = moved and f"{moved} version {request.query_params.get('version', '?')[:9]}"
    return render(templates, request, "models.html", context, session=session)


async def _business(request: Request, runtime: Runtime, name: str) -> dict[str, Any]:
    """The served version's savings on its cross-validation (``prognos report savings``'s own
    function), computed once per version: they never change."""
    served = runtime.core.model
    if served is None:
        return {"error": "no model is loaded"}
    key = f"{name}/{served.version}"
    cache: dict[str, dict[str, Any]] = request.app.state.ui_business
    if key not in cache:
        try:
            found = await run_in_threadpool(savings_for_model, runtime.settings, key)
        except PrognosError as exc:
            return {"error": str(exc)}
        cache[key] = {"savings": found}
    return cache[key]


def _gate_rows(decision: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The gate's figures side by side: each figure's champion and challenger values, live (on
    the predictions both made) and from cross-validation."""
    figures = decision.get("figures") or {}
    cells = [
        (figures.get(model) or {}).get(where) or {}
        for where in ("live", "cv")
        for model in ("champion", "challenger")
    ]
    names = list(dict.fromkeys(k for cell in cells for k in cell))
    return [(name, [cell.get(name) for cell in cells]) for name in names]


async def _move(
    request: Request, session: Any, act: Callable[[Any, Database, str, str], int], what: str
) -> Response:
    """An admin's move of the champion through the CLI's own code (audited with the user's
    key name); the service follows the alias as it does after ``prognos models promote``."""
    session.principal.require("admin")
    runtime = runtime_of(request)
    assert runtime.core.db is not None
    name = _model_name(runtime)
    if name is None:
        raise versions.RegistryError("the service serves no registered model")
    db, settings, actor = runtime.core.db, runtime.settings, f"ui:{session.principal.name}"
    version = await run_in_threadpool(lambda: act(connect(settings), db, name, actor))
    response = RedirectResponse(f"/ui/models?moved={what}&version={version}", status_code=303)
    secure_headers(response)
    return response


@router.post("/models/promote", response_model=None)
async def promote(
    request: Request, session: FormSession, version: Annotated[int, Form(ge=1)]
) -> Response:
    def act(client: Any, db: Database, name: str, actor: str) -> int:
        return moves.promote(client, db, name, version, actor)

    return await _move(request, session, act, "promoted")


@router.post("/models/rollback", response_model=None)
async def rollback(request: Request, session: FormSession) -> Response:
    return await _move(request, session, moves.rollback, "rolled_back")


# ------------------------------------------------------------------------------ monitoring


def _monitoring(db: Database) -> dict[str, Any]:
    run = monitoring_store.latest_run(db, kind="live") or monitoring_store.latest_run(db)
    if run is None:
        return {"run": None}
    metrics = monitoring_store.run_metrics(db, run["id"])
    plain = {m["name"]: m["value"] for m in metrics if m["label"] == ""}
    columns: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if m["name"].startswith("feature_drift_") and m["label"]:
            key = m["name"].removeprefix("feature_drift_")
            columns.setdefault(m["label"], {})[key] = m["value"]
    missing = {m["label"]: m["value"] for m in metrics if m["name"] == "data_missing_value_rate"}
    estimated = {m["label"]: m["value"] for m in metrics if m["name"] == "model_f2_score_estimated"}

    def history(name: str) -> list[dict[str, Any]]:
        return dashboard.metric_history(db, name, kind=run["kind"], model_name=run["model_name"])

    return {
        "run": run,
        "plain": plain,
        "columns": sorted(columns.items(), key=lambda c: -(c[1].get("score") or 0.0)),
        "missing": {k: v for k, v in missing.items() if k},
        "estimated": estimated,
        "charts": {
            "drift": views.drift_series(history("feature_drift_score")),
            "f2": views.scalar_series(history("model_f2_score_current"), "realised F2"),
            "coverage": views.scalar_series(
                history("model_interval_coverage_current"), "interval coverage"
            ),
            "share": views.scalar_series(history("data_drift_share"), "share of columns drifted"),
        },
    }


@router.get("/monitoring", response_class=HTMLResponse)
async def monitoring(request: Request, session: SessionDep) -> HTMLResponse:
    """The latest monitoring run: data quality, drift per column (and over runs), realised and
    estimated performance, interval coverage."""
    runtime = runtime_of(request)
    assert runtime.core.db is not None
    context = await run_in_threadpool(_monitoring, runtime.core.db)
    return render(
        templates, request, "monitoring.html", {"active": "monitoring", **context}, session=session
    )


# ---------------------------------------------------------------------------------- alerts


@router.get("/alerts", response_class=HTMLResponse)
async def alerts(request: Request, session: SessionDep) -> HTMLResponse:
    """Active alerts (pending, firing) and the resolved ones, with who acknowledged them."""
    runtime = runtime_of(request)
    db = runtime.core.db
    assert db is not None
    rows = await run_in_threadpool(
        lambda: alert_store.list_alerts(db, include_resolved=True, limit=200)
    )
    acks = await run_in_threadpool(alert_store.acknowledgements, db, [a["id"] for a in rows])
    active = [a for a in rows if a["state"] in alert_store.ACTIVE_STATES]
    resolved = [a for a in rows if a["state"] not in alert_store.ACTIVE_STATES]
    context = {"active": "alerts", "open": active, "resolved": resolved, "acks": acks}
    return render(templates, request, "alerts.html", context, session=session)


@router.post("/alerts/{alert_id}/acknowledge", response_model=None)
async def acknowledge(request: Request, alert_id: str, session: FormSession) -> Response:
    """Acknowledge an alert (``ingest`` scope: the operators who also report outcomes);
    audited as ``alert.acknowledged`` with the user's key name."""
    session.principal.require("ingest")
    runtime = runtime_of(request)
    assert runtime.core.db is not None
    db, actor = runtime.core.db, f"ui:{session.principal.name}"
    await run_in_threadpool(alert_store.acknowledge_alert, db, alert_id[:64], actor)
    response = RedirectResponse("/ui/alerts", status_code=303)
    secure_headers(response)
    return response
