"""The queries of the shipped Grafana dashboards and the metric names their PromQL refers to,
read with a real PromQL parser (promql-parser, the Rust parser of GreptimeDB): a name in a label
matcher, a ``by (...)`` clause or a function call is never taken for a metric."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser

# Grafana's own interval variables, given values so the expression parses as Prometheus sees it.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*[A-Za-z_][A-Za-z0-9_]*\)\s*$")
# Series Prometheus writes itself for every target (not exported by prognos).
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    language: str  # "promql" or "sql"
    text: str


def dashboard_queries(path: Path) -> list[Query]:
    """Every panel target and template-variable query of one dashboard JSON file."""
    board: dict[str, Any] = json.loads(path.read_text())
    out: list[Query] = []
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text or "")
        assert match, f"{path.name}: variable {variable['name']}: not label_values(...): {text}"
        out.append(Query(path.name, f"${variable['name']}", "promql", match["selector"]))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append(Query(path.name, panel["title"], "promql", target["expr"]))
            elif "rawSql" in target:
                out.append(Query(path.name, panel["title"], "sql", target["rawSql"]))
            else:
                raise AssertionError(f"{path.name}: {panel['title']}: a target without a query")
    return out


def prepared(expr: str) -> str:
    """``expr`` with Grafana's interval variables replaced by durations."""
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr``'s selectors read (raises ValueError when it does not parse)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    # A regex over names could match nothing: dashboards must name metrics.
                    assert matcher.op == promql_parser.MatchOp.Equal, expr
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(prepared(expr)), visit)
    return names


def unknown_metrics(queries: list[Query], exported: set[str]) -> dict[str, set[str]]:
    """For each PromQL query naming a metric outside ``exported``: where, and which names."""
    out: dict[str, set[str]] = {}
    for query in queries:
        if query.language != "promql":
            continue
        missing = metric_names(query.text) - exported - PROMETHEUS_SERIES
        if missing:
            out[f"{query.dashboard} / {query.panel}: {query.text}"] = missing
    return out
