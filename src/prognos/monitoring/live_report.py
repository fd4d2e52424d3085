"""The HTML page of one live monitoring run: one self-contained file, no scripts, every value
escaped. Rendered from the run's JSON (``LiveResult.to_json()``), so a stored run can be shown
again the same way."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

__all__ = ["render_live_report"]

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.bad { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; } .muted { color: #777; }
"""


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}f}"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _flag(bad: bool, text: str) -> str:
    return f'<span class="{"bad" if bad else "ok"}">{escape(text)}</span>'


def _performance(perf: Mapping[str, Any]) -> str:
    realised, estimated = perf["realised"], perf["estimated"]
    labelled = perf["estimated_labelled"]
    names = {
        "precision": "precision",
        "recall": "recall",
        "f2": "F2",
        "false_alarm_rate": "false-alarm rate (FP / negatives)",
    }
    rows = [
        [escape(label), _num(realised[k]), _num(labelled[k]), _num(estimated[k])]
        for k, label in names.items()
    ]
    counts = perf["counts"]
    count_rows = [
        [escape(k.replace("_", " ")), _num(int(counts[k]))]
        for k in ("predictions", "labelled", "positives", "negatives", "unlabelled")
    ]
    rul, cov = perf["rul"], perf["coverage"]
    band = f"{_num(cov['band'][0], 2)}–{_num(cov['band'][1], 2)}"
    status = cov["status"]
    return (
        "<h2>Performance at the served decision</h2>"
        + _table(
            ["figure", "realised", "estimated (same labelled predictions)", "estimated (all)"],
            rows,
        )
        + '<p class="muted">Estimated: expected confusion matrix from the served (calibrated) '
        "probabilities (CBPE); trustworthy only while the probabilities stay calibrated.</p>"
        + _table(["predictions", "count"], count_rows)
        + "<h2>Remaining useful life</h2>"
        + _table(
            ["figure", "value"],
            [
                ["realised RULs", _num(int(counts["realised_rul"]))],
                ["MAE (capped truth)", _num(rul["mae"], 2)],
                ["RMSE (capped truth)", _num(rul["rmse"], 2)],
                ["bias (predicted − realised)", _num(rul["bias"], 2)],
                ["interval coverage", _num(cov["coverage"])],
                ["nominal coverage", _num(cov["nominal"], 2)],
                ["band", band],
                ["status", _flag(status == "out_of_band", status.replace("_", " "))],
            ],
        )
    )


def _quality(quality: Mapping[str, Any], drift: Mapping[str, Any]) -> str:
    columns = drift.get("columns", {}) if drift.get("available") else {}
    rows = []
    for channel, missing in quality["missing_by_channel"].items():
        column = columns.get(channel, {})
        drifted = column.get("drifted")
        rows.append(
            [
                escape(channel),
                _num(missing),
                _num(int(quality["outliers_by_channel"].get(channel, 0))),
                _num(column.get("score")),
                "–" if drifted is None else _flag(bool(drifted), "drifted" if drifted else "ok"),
            ]
        )
    lag = quality["lag_seconds"]
    summary = [
        ["readings", _num(int(quality["readings"]))],
        ["assets", _num(int(quality["assets"]))],
        ["missing value rate", _num(quality["missing_rate"])],
        ["out-of-range values", _num(int(quality["outliers"]))],
        ["dead letters (quarantined)", _num(int(quality["dead_letters_total"]))],
        *(
            [f"dead letters: {escape(reason)}", _num(int(n))]
            for reason, n in quality["dead_letters"].items()
        ),
        *([f"ingestion lag {escape(k)} (s)", _num(v, 1)] for k, v in lag.items()),
        ["seconds since the last reading", _num(quality["seconds_since_last_reading"], 1)],
    ]
    return (
        "<h2>Data quality</h2>"
        + _table(["figure", "value"], summary)
        + _table(["channel", "missing rate", "out of range", "drift score", "drift"], rows)
    )


def _drift(drift: Mapping[str, Any]) -> str:
    if not drift.get("available"):
        return f'<h2>Drift</h2><p class="muted">Not computed: {escape(str(drift.get("reason")))}'
    share = drift.get("share_drifted")
    detected = bool(drift.get("drift_detected"))
    prediction = drift.get("prediction_drift") or {}
    rows = [
        ["drift detected", _flag(detected, "yes" if detected else "no")],
        ["share of columns drifted", _num(share)],
        *([escape(str(k)), _num(v)] for k, v in prediction.items() if _scalar(v)),
    ]
    return "<h2>Drift</h2>" + _table(["figure", "value"], rows)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | bool)


def render_live_report(run: Mapping[str, Any]) -> str:
    """The page for ``run`` (a live run's JSON: id, fleet, model, summary)."""
    summary = run["summary"]
    window = summary["window"]
    perf, quality, drift = summary["performance"], summary["quality"], summary["drift"]
    notes = "".join(f"<li>{escape(n)}</li>" for n in perf.get("notes", []))
    title = f"Live monitoring: {run['model_name']} v{run['model_version']}, fleet {run['fleet']}"
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"<p>Run <code>{escape(run['id'])}</code> at {escape(run['started_at'])}. "
        f"Recent window {escape(window['start'])} to {escape(window['end'])}; predictions judged "
        f"against feedback since {escape(window['label_start'])}.</p>"
        + _performance(perf)
        + _drift(drift)
        + _quality(quality, drift)
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + '<h2>Label rules</h2><p class="muted">A prediction at t is positive when a failure '
        "was reported at T with t ≤ T ≤ t+H, negative when the asset is known to have run past "
        "t+H (readings, a later failure, or an inspection without failure), and otherwise "
        "unlabelled: an asset that has not failed yet is no negative.</p>"
        "</body></html>"
    )
