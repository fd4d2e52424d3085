"""The promotion gate: the challenger against the champion on the same live outcomes.

Both models scored the same readings over the label window (the champion to answer, the
challenger in its shadow). Their predictions are labelled by feedback with the monitoring rules
(``monitoring.performance``) and compared on the (asset, time) pairs both scored:

- **wait** while fewer than ``gate_min_labelled`` of those pairs are labelled, or none is a
  positive (an F2 without failures says nothing);
- **reject** when the challenger's realised F2 is below ``gate_min_f2``, not above the
  champion's (and by at least ``gate_margin``), or its cross-validation misses the floors
  (``gate_min_f2``, ``gate_max_rmse``);
- **promote** otherwise.

The champion's cross-validation is reported beside the challenger's, not compared: they were
measured on different data, so only the shared live window compares them fairly.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from prognos.alerting import AlertEvent, Dispatcher, build_notifiers
from prognos.config import Settings
from prognos.monitoring.live import MonitoredModel, load_monitored
from prognos.monitoring.performance import assess_performance, label_predictions
from prognos.registry import versions
from prognos.registry.tracking import connect
from prognos.storage import audit
from prognos.storage import monitoring as store
from prognos.storage.database import Database

__all__ = ["GateVerdict", "cv_floors", "judge", "run_gate"]

Verdict = Literal["promote", "reject", "wait", "none"]
ACTOR = "gate"


@dataclass
class GateVerdict:
    verdict: Verdict
    name: str
    champion: int | None
    challenger: int | None
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "name": self.name,
            "champion": self.champion,
            "challenger": self.challenger,
            "reasons": self.reasons,
            "figures": self.figures,
        }


def cv_floors(settings: Settings, cv: dict[str, float]) -> list[str]:
    """Why a cross-validation result may not become a challenger (empty: it may)."""
    reasons = []
    f2, rmse = cv.get("f2", float("nan")), cv.get("rmse", float("nan"))
    if not f2 >= settings.gate_min_f2:
        reasons.append(f"cross-validated F2 {f2:.3f} below the floor {settings.gate_min_f2:.3f}")
    if not rmse <= settings.gate_max_rmse:
        reasons.append(
            f"cross-validated RMSE {rmse:.2f} above the ceiling {settings.gate_max_rmse:.2f}"
        )
    return reasons


def _realised(
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
    reached: dict[str, int],
    horizon: float,
    time_kind: Any,
    rul_cap: float,
) -> dict[str, float]:
    labelled, _ = label_predictions(
        predictions, feedback, reached, horizon=horizon, time_kind=time_kind
    )
    perf = assess_performance(
        labelled,
        rul_cap=rul_cap,
        nominal_coverage=0.9,
        band=(0.0, 1.0),
        min_count=1,
    )
    c = perf.counts
    return {
        "predictions": float(c["predictions"]),
        "labelled": float(c["labelled"]),
        "positives": float(c["positives"]),
        **{k: float(v) for k, v in perf.realised.items()},
        "rul_rmse": float(perf.rul["rmse"]),
    }


def _finite(figures: dict[str, float]) -> dict[str, float | None]:
    return {
        k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in figures.items()
    }


def judge(
    settings: Settings,
    db: Database,
    model: MonitoredModel,
    *,
    fleet: str | None = None,
    now: datetime | None = None,
) -> GateVerdict:
    """The verdict on ``model``'s current challenger (``none`` without one); changes nothing.
    ``model``: the champion's facts (horizon, RUL cap, time kind label the outcomes)."""
    name, horizon, rul_cap = model.name, float(model.horizon), float(model.rul_cap)
    time_kind = model.spec.time_kind
    fleet = fleet or settings.fleet or model.spec.name
    client = connect(settings)
    champ, chall = versions.champion(client, name), versions.challenger(client, name)
    if champ is None or chall is None:
        current = None if champ is None else champ.version
        return GateVerdict("none", name, current, None, ["no challenger"])
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(hours=settings.monitoring_label_window_hours)
    limit = settings.monitoring_max_rows
    served = store.window_predictions(
        db, fleet, name, str(champ.version), start, end, limit, shadow=False
    )
    shadowed = store.window_predictions(
        db, fleet, name, str(chall.version), start, end, limit, shadow=True
    )
    pairs = pd.merge(
        served[["asset_id", "time"]].drop_duplicates(),
        shadowed[["asset_id", "time"]].drop_duplicates(),
        on=["asset_id", "time"],
    )
    served = served.merge(pairs, on=["asset_id", "time"])
    shadowed = shadowed.merge(pairs, on=["asset_id", "time"])
    feedback = store.window_feedback(db, fleet, pairs["asset_id"].unique())
    reached = store.last_reading_times(db, fleet, name, str(champ.version), start)
    champion_live = _realised(served, feedback, reached, horizon, time_kind, rul_cap)
    challenger_live = _realised(shadowed, feedback, reached, horizon, time_kind, rul_cap)
    challenger_cv = {k: float(v) for k, v in chall.metrics.items() if k in ("f2", "rmse", "recall")}
    champion_cv = {k: float(v) for k, v in champ.metrics.items() if k in ("f2", "rmse", "recall")}
    figures = {
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "shared_predictions": len(pairs),
        "champion": {"live": _finite(champion_live), "cv": _finite(champion_cv)},
        "challenger": {"live": _finite(challenger_live), "cv": _finite(challenger_cv)},
        "gate": {
            "min_labelled": settings.gate_min_labelled,
            "margin": settings.gate_margin,
            "min_f2": settings.gate_min_f2,
            "max_rmse": settings.gate_max_rmse,
        },
    }
    labelled = int(min(champion_live["labelled"], challenger_live["labelled"]))
    verdict: Verdict
    reasons: list[str] = []
    if labelled < settings.gate_min_labelled:
        verdict = "wait"
        reasons.append(
            f"{labelled} labelled shared predictions, {settings.gate_min_labelled} needed"
        )
    elif champion_live["positives"] == 0:
        verdict = "wait"
        reasons.append("no failure among the labelled shared predictions yet")
    else:
        f2_new, f2_old = challenger_live["f2"], champion_live["f2"]
        f2_old = 0.0 if math.isnan(f2_old) else f2_old
        if not f2_new >= settings.gate_min_f2:
            reasons.append(f"realised F2 {f2_new:.3f} below the floor {settings.gate_min_f2:.3f}")
        # Strictly better, and by the margin: a tie keeps the champion.
        if not (f2_new > f2_old and f2_new >= f2_old + settings.gate_margin):
            reasons.append(
                f"realised F2 {f2_new:.3f} not above the champion's {f2_old:.3f} by the "
                f"margin {settings.gate_margin:.3f}"
            )
        reasons += cv_floors(settings, challenger_cv)
        verdict = "reject" if reasons else "promote"
        if verdict == "promote":
            reasons.append(
                f"realised F2 {f2_new:.3f} vs the champion's {f2_old:.3f} over {labelled} "
                "labelled shared predictions; cross-validation within the floors"
            )
    return GateVerdict(verdict, name, champ.version, chall.version, reasons, figures)


def run_gate(
    settings: Settings,
    db: Database,
    name: str,
    *,
    fleet: str | None = None,
    now: datetime | None = None,
    act: bool = True,
) -> GateVerdict:
    """Judge, then act (unless ``act`` is False): promote (the challenger becomes champion, its
    shadow ends) or reject (the challenger alias is removed and a ``challenger_rejected`` alert
    sent); ``wait`` changes nothing. Each decision is audited with its reasons and figures
    (``gate.promoted``, ``gate.rejected``, ``gate.waiting``)."""
    verdict = judge(settings, db, load_monitored(settings, name), fleet=fleet, now=now)
    if verdict.verdict == "none" or not act:
        return verdict
    client = connect(settings)
    assert verdict.challenger is not None
    if verdict.verdict == "promote":
        versions.promote(client, name, verdict.challenger)  # clears the challenger alias
    elif verdict.verdict == "reject":
        versions.clear_challenger(client, name)
        notify_rejection(settings, verdict, fleet or settings.fleet or name)
    action = {"promote": "gate.promoted", "reject": "gate.rejected", "wait": "gate.waiting"}
    audit.record(db, ACTOR, action[verdict.verdict], name, verdict.to_json())
    return verdict


def notify_rejection(settings: Settings, verdict: GateVerdict, fleet: str) -> None:
    """Tell the people who must know that the retrained model was not good enough: one
    ``challenger_rejected`` alert through the configured notifiers (log, webhooks), delivered
    in the background with retries and waited for at most a few seconds."""
    now = datetime.now(UTC)
    live = verdict.figures.get("challenger", {}).get("live", {})
    event = AlertEvent(
        alert_id=f"alr_{uuid.uuid4().hex}",
        rule="challenger_rejected",
        signal="promotion_gate",
        severity="warning",
        state="firing",
        fleet=fleet,
        subject=verdict.name,
        value=live.get("f2"),
        comparison="<",
        threshold=settings.gate_min_f2,
        started_at=now,
        fired_at=now,
        resolved_at=None,
        at=now,
        repeat=False,
        message=f"challenger {verdict.challenger} of {verdict.name} rejected at the promotion "
        f"gate: {'; '.join(verdict.reasons)}",
        description="The retrained model did not beat the champion on live outcomes; the "
        "champion stays.",
    )
    dispatcher = Dispatcher(build_notifiers(settings))
    try:
        dispatcher.submit(event)
        dispatcher.flush(10.0)
    finally:
        dispatcher.stop(2.0)
