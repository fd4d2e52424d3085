"""Alerting: rules in one validated YAML, evaluated by prognos over its own database (with
state: pending, firing, resolved) and delivered to webhooks and the log; the same rules as
Prometheus alerting rules for Alertmanager."""

from prognos.alerting.evaluate import AlertResult, Evaluation, evaluate
from prognos.alerting.loop import AlertLoop
from prognos.alerting.notify import (
    AlertEvent,
    Dispatcher,
    JsonWebhook,
    LogNotifier,
    SlackWebhook,
    build_notifiers,
)
from prognos.alerting.prometheus import render_prometheus_rules
from prognos.alerting.rules import AssetRule, Rule, RuleSet, load_rules

__all__ = [
    "AlertEvent",
    "AlertLoop",
    "AlertResult",
    "AssetRule",
    "Dispatcher",
    "Evaluation",
    "JsonWebhook",
    "LogNotifier",
    "Rule",
    "RuleSet",
    "SlackWebhook",
    "build_notifiers",
    "evaluate",
    "load_rules",
    "render_prometheus_rules",
]
