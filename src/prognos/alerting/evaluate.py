"""Evaluating the rules with state: each alert's life in the ``alerts`` table.

Per (rule, fleet, subject): the condition holds -> ``pending`` (``started_at``); it has held for
the rule's ``for`` -> ``firing``, notified once, and again every ``alert_repeat_minutes`` while it
holds; it clears -> ``resolved``, notified once (a pending alert that clears never fired and
resolves silently). A signal without data changes nothing: the alert neither fires nor resolves,
and the result says "no data"; when data returns, a pending alert's clock has kept running.

Deterministic given ``now``. Notifications leave only after the state change is committed, so a
failed write never sends a message its next evaluation would send again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from prognos.alerting.notify import AlertEvent, Dispatcher
from prognos.alerting.rules import AssetRule, Rule, RuleSet, format_duration
from prognos.alerting.signals import ALL_FLEETS, MONITORING_METRICS, Observation, Signals
from prognos.config import Settings
from prognos.storage import alerts as store
from prognos.storage.database import Database

__all__ = ["AlertResult", "Evaluation", "evaluate"]

AnyRule = Rule | AssetRule


@dataclass
class AlertResult:
    """One (rule, fleet, subject) after an evaluation. ``state``: ``ok``, ``pending``,
    ``firing``, ``resolved`` or ``no data``; ``change``: what this evaluation did (``new``,
    ``fired``, ``repeated``, ``resolved``, ``cleared``, or "")."""

    rule: str
    severity: str
    fleet: str
    subject: str
    state: str
    value: float | None
    comparison: str
    threshold: float | None
    change: str = ""
    started_at: datetime | None = None
    fired_at: datetime | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass
class Evaluation:
    at: datetime
    results: list[AlertResult]
    events: list[AlertEvent]
    # Asset rules: assets whose condition does not hold (not listed one by one in ``results``).
    ok_assets: dict[str, int] = field(default_factory=dict)

    def by_state(self, state: str) -> list[AlertResult]:
        return [r for r in self.results if r.state == state]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "results": [r.to_json() for r in self.results],
            "events": [e.to_json() for e in self.events],
            "ok_assets": self.ok_assets,
        }


def evaluate(
    settings: Settings,
    db: Database,
    rules: RuleSet,
    *,
    now: datetime,
    dispatcher: Dispatcher | None = None,
) -> Evaluation:
    """Evaluate every rule at ``now`` (for ``settings.fleet``, or every fleet), store the state
    changes and hand the notifications to ``dispatcher`` (which delivers in the background)."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    signals = Signals(db, now, fleet=settings.fleet, asset_hours=settings.monitoring_window_hours)
    every: list[AnyRule] = [*rules.rules, *rules.asset_rules]
    observed = {rule.name: signals.observe(rule) for rule in every}
    stepper = _Stepper(now, settings.alert_repeat_minutes * 60.0)
    evaluation = Evaluation(at=now, results=[], events=[])
    with store.alert_transaction(db) as conn:
        active: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in store.active_alerts(conn):
            active.setdefault((row["rule"], row["fleet"], row["subject"]), row)
        for rule in every:
            observations = observed[rule.name]
            if not observations and not any(key[0] == rule.name for key in active):
                scope = settings.fleet or ALL_FLEETS
                evaluation.results.append(_no_data(rule, scope, "", None, "nothing to evaluate"))
            for obs in observations:
                alert = active.pop((rule.name, obs.fleet, obs.subject), None)
                result = stepper.step(conn, rule, obs, alert, evaluation.events)
                if result.state == "ok" and isinstance(rule, AssetRule):
                    evaluation.ok_assets[rule.name] = evaluation.ok_assets.get(rule.name, 0) + 1
                else:
                    evaluation.results.append(result)
        for (name, fleet, subject), alert in active.items():  # active, but not observed now
            rule_now = rules.get(name)
            note = "no data" if rule_now is not None else "the rule is no longer defined"
            evaluation.results.append(_no_data(rule_now, fleet, subject, alert, note, name))
    if dispatcher is not None:
        for event in evaluation.events:
            dispatcher.submit(event)
    return evaluation


def _no_data(
    rule: AnyRule | None,
    fleet: str,
    subject: str,
    alert: dict[str, Any] | None,
    note: str,
    name: str = "",
) -> AlertResult:
    if alert is not None:
        note = f"{note}: stays {alert['state']}"
    return AlertResult(
        rule=rule.name if rule is not None else name,
        severity=rule.severity if rule is not None else str((alert or {}).get("severity", "")),
        fleet=fleet,
        subject=subject,
        state="no data",
        value=None,
        comparison=rule.comparison if rule is not None else "",
        threshold=rule.threshold if rule is not None else None,
        started_at=None if alert is None else alert["started_at"],
        fired_at=None if alert is None else alert["fired_at"],
        note=note,
    )


class _Stepper:
    """One evaluation's transitions (its ``now`` and repeat interval)."""

    def __init__(self, now: datetime, repeat_seconds: float) -> None:
        self.now = now
        self.repeat_seconds = repeat_seconds

    def step(
        self,
        conn: Any,
        rule: AnyRule,
        obs: Observation,
        alert: dict[str, Any] | None,
        events: list[AlertEvent],
    ) -> AlertResult:
        threshold = obs.threshold if obs.threshold is not None else rule.threshold
        if obs.holds is not None:
            holds = obs.holds
        elif obs.value is None:
            return _no_data(rule, obs.fleet, obs.subject, alert, obs.note or "no data")
        else:
            holds = isinstance(rule, Rule) and rule.holds(obs.value)
        result = AlertResult(
            rule=rule.name,
            severity=rule.severity,
            fleet=obs.fleet,
            subject=obs.subject,
            state="ok",
            value=obs.value,
            comparison=rule.comparison,
            threshold=threshold,
            note=obs.note,
        )
        if not holds:
            return result if alert is None else self._clear(conn, rule, obs, alert, events, result)
        return self._hold(conn, rule, obs, alert, events, result)

    def _clear(
        self,
        conn: Any,
        rule: AnyRule,
        obs: Observation,
        alert: dict[str, Any],
        events: list[AlertEvent],
        result: AlertResult,
    ) -> AlertResult:
        """The condition no longer holds: a firing alert resolves (notified), a pending one is
        cleared silently (it was never announced)."""
        changes: dict[str, Any] = {"state": "resolved", "resolved_at": self.now, "value": obs.value}
        if alert["state"] == "firing":
            alert.update(changes)
            alert["message"] = changes["message"] = _message(
                rule, obs, alert, result.threshold, self.now
            )
            events.append(_event(rule, obs, alert, result.threshold, self.now, repeat=False))
            result.change = "resolved"
        else:
            result.change = "cleared"
        store.update_alert(conn, alert["id"], changes)
        result.state = "resolved"
        result.started_at, result.fired_at = alert["started_at"], alert["fired_at"]
        return result

    def _hold(
        self,
        conn: Any,
        rule: AnyRule,
        obs: Observation,
        alert: dict[str, Any] | None,
        events: list[AlertEvent],
        result: AlertResult,
    ) -> AlertResult:
        """The condition holds: a new alert is pending; it fires once held for ``for``; a firing
        one is notified again every repeat interval."""
        now, threshold = self.now, result.threshold
        changes: dict[str, Any] = {"value": obs.value, "threshold": threshold}
        if alert is None:
            alert = {
                "id": store.new_alert_id(),
                "rule": rule.name,
                "subject": obs.subject,
                "fleet": obs.fleet,
                "severity": rule.severity,
                "state": "pending",
                "value": obs.value,
                "threshold": threshold,
                "started_at": now,
                "fired_at": None,
                "last_notified_at": None,
                "resolved_at": None,
                "message": "",
            }
            store.insert_alert(conn, alert)
            result.change = "new"
        held = (now - alert["started_at"]).total_seconds()
        if alert["state"] == "pending" and held >= rule.for_seconds:
            changes.update(state="firing", fired_at=now, last_notified_at=now)
            result.change = "fired"
        elif alert["state"] == "firing":
            last = alert["last_notified_at"] or alert["fired_at"] or alert["started_at"]
            if (now - last).total_seconds() >= self.repeat_seconds:
                changes["last_notified_at"] = now
                result.change = "repeated"
        alert.update(changes)
        alert["message"] = changes["message"] = _message(rule, obs, alert, threshold, now)
        if result.change in {"fired", "repeated"}:
            events.append(
                _event(rule, obs, alert, threshold, now, repeat=result.change == "repeated")
            )
        store.update_alert(conn, alert["id"], changes)
        result.state = alert["state"]
        result.started_at, result.fired_at = alert["started_at"], alert["fired_at"]
        return result


def _where(rule: AnyRule, obs: Observation) -> str:
    parts = [] if obs.fleet == ALL_FLEETS else [f"fleet {obs.fleet}"]
    if obs.subject:
        kind = "asset" if isinstance(rule, AssetRule) else "model"
        parts.append(f"{kind} {obs.subject}")
    return ", ".join(parts) or "all fleets"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _condition(rule: AnyRule, obs: Observation, threshold: float | None) -> str:
    if isinstance(rule, AssetRule) and rule.signal == "should_inspect":
        known = "" if threshold is None else f" (threshold {_number(threshold)})"
        return f"failure probability {_number(obs.value)}{known}"
    if isinstance(rule, AssetRule):
        return f"RUL lower bound {_number(obs.value)} (lead time {_number(threshold)})"
    name = MONITORING_METRICS.get(rule.signal, rule.signal)
    return f"{name} {_number(obs.value)} {rule.comparison} {_number(threshold)}"


def _message(
    rule: AnyRule, obs: Observation, alert: dict[str, Any], threshold: float | None, now: datetime
) -> str:
    where = _where(rule, obs)
    if alert["state"] == "resolved":
        fired = alert["fired_at"] or alert["started_at"]
        return (
            f"[RESOLVED] {rule.name} on {where}: {_condition(rule, obs, threshold)} "
            f"(fired {format_duration((now - fired).total_seconds())} ago)"
        )
    seconds = (now - alert["started_at"]).total_seconds()
    held = f" for {format_duration(seconds)}" if seconds >= 1 else ""
    text = (
        f"[{rule.severity.upper()}] {rule.name} on {where}: {_condition(rule, obs, threshold)}"
        f"{held}"
    )
    return f"{text}. {rule.description}" if rule.description else text


def _event(
    rule: AnyRule,
    obs: Observation,
    alert: dict[str, Any],
    threshold: float | None,
    now: datetime,
    *,
    repeat: bool,
) -> AlertEvent:
    return AlertEvent(
        alert_id=str(alert["id"]),
        rule=rule.name,
        signal=rule.signal,
        severity=rule.severity,
        state="resolved" if alert["state"] == "resolved" else "firing",
        fleet=obs.fleet,
        subject=obs.subject,
        value=obs.value,
        comparison=rule.comparison,
        threshold=threshold,
        started_at=alert["started_at"],
        fired_at=alert["fired_at"],
        resolved_at=alert["resolved_at"],
        at=now,
        repeat=repeat,
        message=str(alert["message"]),
        description=rule.description,
    )
