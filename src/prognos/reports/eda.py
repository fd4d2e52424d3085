"""``prognos report eda``: the exploratory plots a data scientist would otherwise make by hand.

Nothing here re-derives what the platform already knows: fleet size, dead channels and regime
centres come from :func:`prognos.data.inspect.inspect_fleet`, stuck sensors from validation
(:func:`prognos.data.validation.validate_readings`), labels from :mod:`prognos.data.labels`, and
the regime assignment, per-regime normalisation, kept sensors and health index from a
:class:`~prognos.features.FeaturePipeline` fitted on the valid rows, so the report shows what the
model will see.

What the sensor plots are drawn against depends on the data's shape:

- run-to-failure trajectories: the true RUL (uncapped), failure at the right;
- telemetry with an event log: the time to the next failure, on rows followed to a failure
  (rows censored by a repair or by the end of the data are left out and counted);
- telemetry without outcomes (a C-MAPSS test file): the asset's age in readings, since no RUL
  is known; the page says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.data.dataset import FleetData
from prognos.data.inspect import InspectReport, inspect_fleet
from prognos.data.labels import labels_for
from prognos.data.validation import ValidationReport, validate_readings
from prognos.errors import DataValidationError
from prognos.features import FeaturePipeline
from prognos.features.pipeline import HEALTH_INDEX
from prognos.fleet import ASSET, TIME
from prognos.reports import eda_plots as plots
from prognos.reports.html import Page, Table

Progress = Callable[[str], None]
STEPS = ("inspecting", "validating", "labels", "features", "fleet", "sensors", "correlations",
         "regimes", "dead sensors", "health index", "trends")  # fmt: skip
TREND_ASSETS = 4
TREND_CHANNELS = 4


@dataclass(frozen=True)
class EdaFacts:
    """The report's headline figures (also what the tests check against the data)."""

    source: str
    shape: str
    n_rows: int
    n_valid_rows: int
    n_assets: int
    target: str
    target_rows: int
    n_regimes: int
    constant_columns: list[str]
    dropped_sensors: list[str]
    stuck_sensors: list[str]
    kept_sensors: list[str]
    health_index_corr: float | None


@dataclass(frozen=True)
class _Target:
    name: str  # axis label
    values: NDArray[np.float64]  # per valid row; NaN where unknown
    note: str


def build_eda(data: FleetData, progress: Progress | None = None) -> tuple[Page, EdaFacts]:
    """The EDA page of one fleet and its headline figures."""
    say = progress or (lambda _: None)
    say("inspecting")
    inspection = inspect_fleet(data)
    say("validating")
    result = validate_readings(data.readings, data.spec)
    valid = result.valid.reset_index(drop=True)
    if valid.empty:
        raise DataValidationError(f"{data.source}: no valid rows to report on")
    say("labels")
    target = _target(dataclasses.replace(data, readings=valid))
    say("features")
    pipeline = FeaturePipeline(data.spec).fit(valid)
    settings = valid[list(data.spec.setting_names)].to_numpy(dtype=np.float64)
    z, regime = pipeline.channel_values(
        settings, valid[pipeline.sensors_].to_numpy(dtype=np.float64)
    )
    channels = pipeline.sensors_ + ([HEALTH_INDEX] if pipeline.health_weights_ is not None else [])
    normalised = pd.DataFrame(z, columns=channels)
    stuck = _stuck(result.report, data.spec.sensor_names)

    page = Page(title=f"prognos EDA: {data.source}")
    page.intro.append(
        f"{inspection.n_rows:,} readings of {inspection.n_assets:,} assets "
        f"({inspection.shape.replace('_', '-')}); {result.report.quarantined_rows:,} readings "
        "fail validation and are left out of the plots below."
    )
    page.intro.append(target.note)

    say("fleet")
    _fleet_section(page, inspection, valid, data.run_to_failure)
    say("sensors")
    known = np.isfinite(target.values)
    kept = normalised[pipeline.sensors_]
    section = page.section("Each sensor against the target", "sensors")
    section.text(
        f"Regime-normalised value of each of the {len(pipeline.sensors_)} sensors the model uses "
        f"against {target.name}, coloured by operating regime; the black line is the median "
        f"({int(known.sum()):,} rows)."
    )
    if known.any():
        section.figure(
            plots.against_target(kept[known], target.values[known], regime[known], target.name),
            f"sensors against {target.name}",
        )
    say("correlations")
    corr_with = _correlations(page, normalised, target, known)
    say("regimes")
    _regime_section(page, inspection, valid[list(data.spec.setting_names)], regime)
    say("dead sensors")
    _dead_section(page, inspection, pipeline.dropped_sensors_, stuck, result.report)
    say("health index")
    hi_corr = _health_section(page, normalised, target, known)
    say("trends")
    _trend_section(page, valid, normalised, corr_with, data.spec.time_kind)
    facts = EdaFacts(
        source=data.source,
        shape=inspection.shape,
        n_rows=inspection.n_rows,
        n_valid_rows=len(valid),
        n_assets=inspection.n_assets,
        target=target.name,
        target_rows=int(known.sum()),
        n_regimes=inspection.n_regimes,
        constant_columns=list(inspection.constant_columns),
        dropped_sensors=list(pipeline.dropped_sensors_),
        stuck_sensors=stuck,
        kept_sensors=list(pipeline.sensors_),
        health_index_corr=hi_corr,
    )
    return page, facts


def _target(data: FleetData) -> _Target:
    unit = "cycles" if data.spec.time_kind == "cycle" else "hours"
    if data.events is not None:
        ttf = labels_for(data)["time_to_failure"].to_numpy(dtype=np.float64)
        known = int(np.isfinite(ttf).sum())
        return _Target(
            f"time to failure ({unit})",
            ttf,
            f"Telemetry with an event log: sensors are shown against the time to the next "
            f"failure, on the {known:,} readings followed to a failure; the other "
            f"{len(ttf) - known:,} are censored (a repair or the end of the data came first) "
            "and left out of those plots.",
        )
    if data.run_to_failure:
        rul = labels_for(data)["rul"].to_numpy(dtype=np.float64)
        return _Target(
            f"RUL ({unit})",
            rul,
            "Run-to-failure trajectories: each asset's last reading is its failure, so every "
            "reading has a known remaining useful life (RUL, uncapped).",
        )
    age = data.readings.groupby(ASSET, sort=False).cumcount().to_numpy(dtype=np.float64)
    return _Target(
        "age (readings since the first)",
        np.asarray(age + 1.0, dtype=np.float64),
        "The data stops before failure and has no event log, so no RUL is known: sensors are "
        "shown against each asset's age instead (a trend with age is wear only if the assets "
        "started healthy).",
    )


def _fleet_section(page: Page, report: InspectReport, valid: pd.DataFrame, rtf: bool) -> None:
    cycles = report.cycles_per_asset
    section = page.section("Fleet size and life lengths", "fleet")
    rows = [
        ["assets", f"{report.n_assets:,}"],
        ["readings", f"{report.n_rows:,}"],
        ["valid readings", f"{len(valid):,}"],
        ["data shape", report.shape.replace("_", "-")],
        [
            "readings per asset" + (" (life length)" if rtf else ""),
            f"min {cycles.min}, median {cycles.median:g}, mean {cycles.mean:.1f}, max {cycles.max}",
        ],
        ["settings", ", ".join(report.settings) or "none"],
        ["sensors", f"{len(report.sensors)}"],
    ]
    if report.events:
        rows.append(["events", ", ".join(f"{k}: {v:,}" for k, v in report.events.items())])
    section.table(Table(header=["", "value"], rows=rows))
    lengths = valid.groupby(ASSET, sort=False).size()
    section.figure(plots.life_lengths(lengths, rtf), "distribution of readings per asset")


def _correlations(
    page: Page, normalised: pd.DataFrame, target: _Target, known: NDArray[np.bool_]
) -> pd.Series:
    section = page.section("Correlations", "correlations")
    frame = normalised.copy()
    frame[target.name] = target.values
    corr = frame[known].corr() if known.sum() > 2 else frame.corr()
    section.text(
        "Pearson correlation of the regime-normalised sensors, the health index and the target "
        "(readings with a known target). Strongly correlated sensors carry the same information."
    )
    section.figure(plots.correlation_heatmap(corr), "correlation heatmap")
    with_target = corr[target.name].drop(target.name).dropna()
    ordered = with_target.reindex(with_target.abs().sort_values(ascending=False).index)
    section.table(
        Table(
            header=["channel", f"correlation with {target.name}"],
            rows=[[str(name), f"{value:+.3f}"] for name, value in ordered.items()],
        )
    )
    return ordered


def _regime_section(
    page: Page, report: InspectReport, settings: pd.DataFrame, regime: NDArray[np.intp]
) -> None:
    section = page.section("Operating regimes", "regimes")
    section.text(
        f"{report.n_regimes} operating regime(s) found from the settings by k-means "
        "(prognos data inspect); sensors are normalised within their regime before modelling."
    )
    header = ["regime", *report.settings, "readings", "share"]
    rows = [
        [
            str(i),
            *(f"{r.center[n]:.4g}" if n in r.center else "-" for n in report.settings),
            f"{r.rows:,}",
            f"{r.rows / report.n_rows:.1%}" if report.n_rows else "-",
        ]
        for i, r in enumerate(report.regimes, start=1)
    ]
    section.table(Table(header=header, rows=rows, caption="regime centres and readings"))
    if settings.shape[1]:
        section.figure(
            plots.settings_scatter(settings, regime), "operating settings, coloured by regime"
        )
    else:
        section.note("The fleet has no operating settings: one regime.")


def _dead_section(
    page: Page,
    report: InspectReport,
    dropped: list[str],
    stuck: list[str],
    validation: ValidationReport,
) -> None:
    section = page.section("Dead and stuck sensors", "dead")
    section.table(
        Table(
            header=["finding", "columns"],
            rows=[
                ["constant across the fleet (dead)", ", ".join(report.constant_columns) or "none"],
                [
                    "constant within every regime (dropped by the features)",
                    ", ".join(dropped) or "none",
                ],
                ["stuck on some assets", ", ".join(stuck) or "none"],
            ],
        )
    )
    for warning in validation.warnings:
        if "looks stuck" in warning:
            section.note(warning)


def _health_section(
    page: Page, normalised: pd.DataFrame, target: _Target, known: NDArray[np.bool_]
) -> float | None:
    section = page.section("Health index", "health")
    if HEALTH_INDEX not in normalised.columns:
        section.note("The feature spec turns the health index off.")
        return None
    hi = normalised[HEALTH_INDEX].to_numpy()
    corr = float(np.corrcoef(hi[known], target.values[known])[0, 1]) if known.sum() > 2 else None
    section.text(
        "The composite health index the features learn: the first principal direction of the "
        "regime-normalised sensors, oriented to rise with age"
        + (f"; correlation with {target.name}: {corr:+.3f}." if corr is not None else ".")
    )
    if known.any():
        section.figure(
            plots.health_index(hi[known], target.values[known], target.name),
            f"health index against {target.name}",
        )
    return corr


def _trend_section(
    page: Page, valid: pd.DataFrame, normalised: pd.DataFrame, ranked: pd.Series, time_kind: str
) -> None:
    section = page.section("Sensor trends of a few assets", "trends")
    lengths = valid.groupby(ASSET, sort=True).size().sort_values(kind="stable")
    picks = lengths.index[
        np.unique(np.linspace(0, len(lengths) - 1, min(TREND_ASSETS, len(lengths))).astype(int))
    ]
    channels = [c for c in ranked.index if c != HEALTH_INDEX][:TREND_CHANNELS]
    if HEALTH_INDEX in normalised.columns:
        channels.append(HEALTH_INDEX)
    age = valid[TIME] if time_kind == "cycle" else valid.groupby(ASSET).cumcount() + 1
    trends = {}
    for asset in picks:
        mine = (valid[ASSET] == asset).to_numpy()
        trends[str(asset)] = normalised.loc[mine, channels].set_axis(age[mine].to_numpy())
    section.text(
        f"Regime-normalised values of the {len(channels)} channels most correlated with the "
        "target, for the shortest, the longest and evenly spaced assets in between (by readings)."
    )
    section.figure(
        plots.asset_trends(trends, "cycle" if time_kind == "cycle" else "reading"),
        "normalised sensor trends per asset",
    )


def _stuck(report: ValidationReport, sensors: list[str]) -> list[str]:
    """Sensors validation found stuck (its warnings name the sensor first)."""
    found = {w.split(" ", 1)[0] for w in report.warnings if " looks stuck " in w}
    return [name for name in sensors if name in found]
