"""The drift report: one self-contained HTML file (inline SVG plots, no script, no CDN).

Readable without knowing the method: the verdict first, then why (which columns, by which test
and how far past their thresholds), then the evidence (operating conditions, the batch's health
stages against the reference, the reweighted histograms of the columns that moved most).
"""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from prognos.monitoring.drift import ColumnDrift, DriftResult
from prognos.monitoring.profile import ReferenceProfile

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em} td,th{padding:3px 8px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6} td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:600} .ok{color:#1b7f3b;font-weight:600}
.verdict{font-size:1.2em;padding:.6em 1em;border-radius:6px;display:inline-block}
.verdict.bad{background:#fde8ec} .verdict.ok{background:#e6f4ea} .note{color:#666;font-size:.9em}
.plots{display:flex;flex-wrap:wrap;gap:1em}
"""


def render_report(
    result: DriftResult, profile: ReferenceProfile, *, title: str, details: dict[str, Any]
) -> str:
    """The HTML report of one drift run; ``details`` (model, data, timings) head the page."""
    verdict = "drift detected" if result.drift_detected else "no drift"
    css = "bad" if result.drift_detected else "ok"
    drifted = [c for c in result.columns.values() if c.drifted]
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="verdict {css}">{verdict}: {len(drifted)} of '
        f"{sum(c.score is not None for c in result.columns.values())} columns drifted "
        f"(share {result.share_drifted:.2f})</p>",
        _facts({**details, "readings": result.rows, "assets": result.assets}),
        "<h2>Columns</h2>",
        _svg(_ratio_plot(result)),
        _column_table(result),
        "<h2>Operating conditions</h2>",
        _condition_text(result),
        "<h2>Health stages</h2>",
        '<p class="note">The reference is reweighted to the batch\'s own mix of (regime, '
        "stage) cells: an older or younger fleet is compared with reference readings of the "
        "same stages, so aging alone is not drift.</p>",
        _svg(_stage_plot(result)),
        "<h2>Distributions that moved most</h2>",
        '<div class="plots">',
        *(_svg(_histogram(result, name)) for name in _most_moved(result, 6)),
        "</div>",
        "<h2>Predictions</h2>",
        _prediction_text(result.prediction_drift),
        "<h2>Method</h2>",
        _method(profile),
    ]
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _facts(details: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in details.items())
    return f"<table>{rows}</table>"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(column: ColumnDrift) -> float:
    if column.score is None or not column.threshold:
        return 0.0
    return float(column.score) / float(column.threshold)


def _column_table(result: DriftResult) -> str:
    head = (
        "<tr><th>column</th><th>kind</th><th>verdict</th><th>test</th><th>score</th>"
        "<th>threshold</th><th>score / threshold</th><th>mean shift (sd)</th>"
        "<th>assets that changed</th></tr>"
    )
    rows = []
    for column in sorted(result.columns.values(), key=lambda c: -_ratio(c)):
        state = "not tested" if column.score is None else "drift" if column.drifted else "ok"
        css = "bad" if column.drifted else "ok" if column.score is not None else "note"
        assets = ", ".join(map(str, column.changed_assets))
        rows.append(
            f"<tr><td>{_e(column.name)}</td><td>{_e(column.kind)}</td>"
            f'<td class="{css}">{state}</td><td>{_e(column.test)}</td>'
            f'<td class="n">{_fmt(column.score, 4)}</td>'
            f'<td class="n">{_fmt(column.threshold, 4)}</td>'
            f'<td class="n">{_ratio(column):.2f}</td>'
            f'<td class="n">{_fmt(column.mean_shift, 2)}</td><td>{_e(assets)}</td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _condition_text(result: DriftResult) -> str:
    c = result.operating_condition
    css = "bad" if c["drifted"] else "ok"
    return (
        f'<p class="{css}">{c["share_unseen"]:.1%} of readings ({c["unseen_readings"]:,}) are '
        f"in an operating condition the model never saw (farther than {c['cutoff_spreads']:.1f} "
        f"setting spreads from each of its {c['known_regimes']} known regimes; threshold "
        f"{c['threshold']:.0%}).</p><p class='note'>Those readings are left out of the column "
        "tests: their normalised values would mean nothing.</p>"
    )


def _prediction_text(prediction: dict[str, Any] | None) -> str:
    if not prediction:
        return "<p class='note'>No predictions were compared.</p>"
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td class='n'>{_e(_fmt(v, 4) if isinstance(v, float) else v)}</td>"
        "</tr>"
        for k, v in prediction.items()
    )
    return (
        "<p class='note'>Against the model's predictions on its training rows, in the batch's "
        "stage mix; reported, not part of the drift verdict.</p>"
        f"<table>{rows}</table>"
    )


def _method(profile: ReferenceProfile) -> str:
    c = profile.calibration
    meta = profile.meta
    return (
        "<p class='note'>Per column: <b>level</b> (PSI of the residual from the expected value "
        "in its regime and health stage, age trend removed), <b>shift</b> (mean residual in "
        "reference standard deviations), <b>dynamics</b> (PSI of within-asset first "
        "differences: noise, frozen sensors) and <b>change</b> (share of assets whose own level "
        "moved between the halves of their readings). Thresholds come from asset-grouped "
        f"resamples of the training fleet ({c.resamples} per batch size, "
        f"{meta.get('assets', '?')} assets, {meta.get('rows', '?')} readings), Bonferroni over "
        f"{c.n_tests} tests at a family-wise {c.alpha:.0%}; measured false-alarm rate on the "
        f"resamples: {c.false_alarms:.1%}. Effect-size floors: PSI {c.floor}, shift "
        f"{c.shift_floor} sd.</p>"
    )


def _most_moved(result: DriftResult, top: int) -> list[str]:
    ranked = sorted(
        (c for c in result.columns.values() if c.kind != "setting" and c.score is not None),
        key=lambda c: -_ratio(c),
    )
    return [c.name for c in ranked[:top] if f"{c.name}:level" in result.histograms]


# -- plots ---------------------------------------------------------------------------------


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _ratio_plot(result: DriftResult) -> Figure:
    columns = sorted(
        (c for c in result.columns.values() if c.score is not None), key=lambda c: _ratio(c)
    )
    figure = Figure(figsize=(8, max(2.5, 0.22 * len(columns))))
    ax = figure.subplots()
    ratios = [_ratio(c) for c in columns]
    colours = ["#b00020" if c.drifted else "#4a7bb7" for c in columns]
    ax.barh([c.name for c in columns], ratios, color=colours)
    ax.axvline(1.0, color="#222", linewidth=1)
    ax.set_xscale("symlog", linthresh=1.0)
    top = max([2.0, *ratios])
    ax.set_xticks([t for t in (0, 0.5, 1, 2, 5, 10, 100, 1000, 10000) if t <= top * 1.5])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel("score / threshold (drift past 1)")
    ax.tick_params(axis="y", labelsize=8)
    return figure


def _stage_plot(result: DriftResult) -> Figure:
    stages = result.stages
    batch = np.asarray(stages["batch_share"])
    reference = np.asarray(stages["reference_share"])
    life = stages.get("reference_life_fraction") or []
    labels = [
        f"stage {i + 1}" + (f"\n~{life[i]:.0%} of life" if i < len(life) else "")
        for i in range(len(batch))
    ]
    figure = Figure(figsize=(7, 2.8))
    ax = figure.subplots()
    x = np.arange(len(batch))
    ax.bar(x - 0.2, reference, 0.4, label="training fleet", color="#9aa5b1")
    ax.bar(x + 0.2, batch, 0.4, label="this batch", color="#4a7bb7")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("share of readings")
    ax.legend(fontsize=8)
    return figure


def _histogram(result: DriftResult, name: str) -> Figure:
    data = result.histograms[f"{name}:level"]
    observed, expected = np.asarray(data["observed"]), np.asarray(data["expected"])
    figure = Figure(figsize=(3.4, 2.4))
    ax = figure.subplots()
    x = np.arange(len(observed))
    ax.bar(x, expected, 0.9, color="#9aa5b1", label="reference (reweighted)")
    ax.step(x, observed, where="mid", color="#b00020", label="batch")
    ax.set_title(name, fontsize=9)
    ax.set_xticks([0, len(x) - 1], ["low tail", "high tail"], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6)
    return figure
