"""The simulator drill: false alarms under pure aging, detection and delay under injected faults.

Per seed: simulate a training fleet, fit the feature pipeline (the profile needs the model's
normalisation and health index only, not its members, so no model is trained per seed) and build
the reference profile; then stream a *new* fleet of the same design cycle by cycle, all assets
new at the start, so the stream goes from all-healthy to all-degraded: pure aging, the case a
naive comparison calls drift. Windows of the last ``window`` readings slide over the stream every
``step`` readings and each is judged by :func:`~prognos.monitoring.drift.detect_drift`.

Every window is also judged by :class:`NaiveDrift`, the comparison against the whole training
set with Evidently's defaults, to show what aging does to it.

Faults (:mod:`prognos.data.faults`) hit assets ``1..affected`` from their ``from_reading``-th
reading on. Detection: the first window, ending at or after the first faulty reading, that
reports drift; delay: readings of the stream from the first faulty reading to that window's end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.data.faults import Fault, apply_sensor_faults
from prognos.data.simulator import SimulatorConfig, simulate_fleet, simulated_spec
from prognos.features import FeaturePipeline
from prognos.fleet import ASSET, TIME
from prognos.monitoring.build import build_profile
from prognos.monitoring.drift import detect_drift
from prognos.monitoring.profile import ReferenceProfile
from prognos.monitoring.stats import psi


@dataclass(frozen=True)
class DrillConfig:
    seeds: int = 20
    train_assets: int = 60
    live_assets: int = 30
    window: int = 3_000
    step: int = 300
    affected: int = 10  # assets 1..affected carry the fault
    from_reading: int = 50
    resamples: int = 60


@dataclass(frozen=True)
class Scenario:
    """A fault kind and size (``kind="aging"``: none)."""

    kind: str
    size: float | None = None

    @property
    def label(self) -> str:
        return self.kind if self.size is None else f"{self.kind} {self.size:g}"


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    method: str  # "prognos" | "naive"
    seed: int
    windows: int
    alarms: int  # windows flagged (aging) or flagged before the fault started
    clean_windows: int
    delay: int | None  # readings from the first faulty reading to detection; None: missed


Judge = Callable[[pd.DataFrame], bool]


@dataclass(frozen=True)
class NaiveDrift:
    """The comparison "aging is not drift" argues against, with Evidently's defaults for large
    samples: each raw sensor's PSI against the whole training set (deciles), drifted past 0.1,
    the batch drifted when at least half the sensors are."""

    columns: list[str]
    edges: NDArray[np.float64]  # (columns, 9)
    props: NDArray[np.float64]  # (columns, 10)

    @classmethod
    def fit(cls, readings: pd.DataFrame) -> NaiveDrift:
        columns = [c for c in readings.columns if str(c).startswith("sensor_")]
        values = readings[columns].to_numpy(np.float64)
        edges = np.quantile(values, np.linspace(0.1, 0.9, 9), axis=0).T
        props = np.stack([_shares(values[:, j], edges[j]) for j in range(len(columns))])
        return cls(columns, edges, props)

    def __call__(self, batch: pd.DataFrame) -> bool:
        values = batch[self.columns].to_numpy(np.float64)
        observed = np.stack(
            [_shares(values[:, j], self.edges[j]) for j in range(len(self.columns))]
        )
        n = np.full(len(self.columns), float(len(batch)))
        return bool((psi(observed, self.props, n) > 0.1).mean() >= 0.5)


def _shares(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype=np.float64)


def stream_order(readings: pd.DataFrame) -> pd.DataFrame:
    """Readings as a live feed brings them: cycle by cycle, assets in id order."""
    return readings.sort_values([TIME, ASSET], kind="stable").reset_index(drop=True)


def training_fleet(seed: int, config: DrillConfig) -> pd.DataFrame:
    return simulate_fleet(
        SimulatorConfig(n_assets=config.train_assets, seed=1_000 + seed, design_seed=seed)
    ).readings


def train_profile(readings: pd.DataFrame, seed: int, config: DrillConfig) -> ReferenceProfile:
    pipeline = FeaturePipeline(simulated_spec(SimulatorConfig(design_seed=seed))).fit(readings)
    return build_profile(readings, pipeline, resamples=config.resamples, seed=seed)


def live_fleet(seed: int, config: DrillConfig) -> pd.DataFrame:
    return simulate_fleet(
        SimulatorConfig(n_assets=config.live_assets, seed=2_000 + seed, design_seed=seed)
    ).readings


def run_stream(
    judge: Judge, stream: pd.DataFrame, onset: int | None, config: DrillConfig
) -> tuple[int, int, int, int | None]:
    """(windows, alarms before the onset, windows before the onset, delay) over one stream."""
    ends = range(config.step * 2, len(stream) + 1, config.step)
    windows = alarms = clean = 0
    for end in ends:
        flagged = judge(stream.iloc[max(0, end - config.window) : end])
        windows += 1
        if onset is None or end <= onset:
            clean += 1
            alarms += int(flagged)
        elif flagged:
            return windows, alarms, clean, end - onset
    return windows, alarms, clean, None


def run_seed(seed: int, scenarios: Sequence[Scenario], config: DrillConfig) -> list[Outcome]:
    reference = training_fleet(seed, config)
    profile = train_profile(reference, seed, config)
    judges: dict[str, Judge] = {
        "prognos": lambda batch: detect_drift(profile, batch).drift_detected,
        "naive": NaiveDrift.fit(reference),
    }
    fleet = live_fleet(seed, config)
    outcomes = []
    for scenario in scenarios:
        readings, onset = fleet, None
        if scenario.kind != "aging":
            fault = Fault(
                scenario.kind,  # type: ignore[arg-type]
                1,
                config.affected,
                config.from_reading,
                scenario.size,
            )
            readings = apply_sensor_faults(fleet, [fault], seed=seed)
        stream = stream_order(readings)
        if scenario.kind != "aging":
            position = stream.groupby(ASSET, sort=False).cumcount().to_numpy() + 1
            faulty = (stream[ASSET].to_numpy() <= config.affected) & (
                position >= config.from_reading
            )
            onset = int(np.flatnonzero(faulty)[0])
        for method, judge in judges.items():
            windows, alarms, clean, delay = run_stream(judge, stream, onset, config)
            outcomes.append(Outcome(scenario, method, seed, windows, alarms, clean, delay))
    return outcomes


def run_drill(
    scenarios: Sequence[Scenario],
    config: DrillConfig,
    *,
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for seed in range(config.seeds):
        outcomes.extend(run_seed(seed, scenarios, config))
        if progress is not None:
            progress(seed)
    return outcomes


def summarise(outcomes: Sequence[Outcome]) -> pd.DataFrame:
    """Per scenario: false-alarm rate per clean window, detection rate and delay (median, max),
    for prognos, then the naive comparison's false-alarm and detection rates."""
    rows = []
    for label in dict.fromkeys(o.scenario.label for o in outcomes):
        row: dict[str, object] = {"scenario": label}
        for method in ("prognos", "naive"):
            mine = [o for o in outcomes if o.scenario.label == label and o.method == method]
            if not mine:
                continue
            clean = sum(o.clean_windows for o in mine)
            delays = [o.delay for o in mine if o.delay is not None]
            is_fault = mine[0].scenario.kind != "aging"
            prefix = "" if method == "prognos" else "naive "
            row[f"{prefix}false-alarm rate"] = (
                sum(o.alarms for o in mine) / clean if clean else np.nan
            )
            row[f"{prefix}detection rate"] = len(delays) / len(mine) if is_fault else np.nan
            if method == "prognos":
                row["seeds"] = len(mine)
                row["clean windows"] = clean
                row["median delay"] = float(np.median(delays)) if delays else np.nan
                row["max delay"] = float(max(delays)) if delays else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
