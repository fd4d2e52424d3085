"""What runs a batch of jobs against one model and its online state: a :class:`Scorer`.

:class:`LocalScorer` runs them in this process. ``compute.ProcessScorer`` runs a LocalScorer in a
process of its own, so that model code and the HTTP event loop do not take turns on one GIL. Both
answer the same calls with the same values (tested), and neither knows about HTTP, the database
writer or the journal of a model swap: the batcher does that with what :meth:`Scorer.process`
reports as accepted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from prognos.data.regimes import RegimeModel
from prognos.errors import (
    DuplicateReadingError,
    OutOfOrderReadingError,
    PrognosError,
    StateNotReadyError,
    StateStoreError,
    StateStoreLostError,
    StorageUnavailableError,
)
from prognos.features.online import asset_key
from prognos.ingestion.predictor import Prediction, Predictor, Scored
from prognos.storage.database import Database
from prognos.storage.history import readings_tail
from prognos.storage.models import DEFAULT_FLEET

if TYPE_CHECKING:
    from prognos.features.pipeline import FeaturePipeline

log = logging.getLogger("prognos.serving")

Kind = Literal["predict", "ingest", "current", "state"]


class NoModelError(PrognosError):
    """No model is loaded (the registry was unreachable or has no champion yet)."""


class ComputeLostError(NoModelError):
    """The compute process stopped; the service is starting a new one."""


@dataclass(frozen=True)
class ServedModel:
    """What the HTTP layer needs to know of the model being served (small, so it crosses
    processes: the model itself stays with its scorer)."""

    name: str
    version: str
    fleet_name: str
    sensor_names: tuple[str, ...]
    setting_names: tuple[str, ...]
    threshold: float
    coverage: float
    horizon: int
    known_sensors: frozenset[str] = field(init=False, repr=False, compare=False)
    known_settings: frozenset[str] = field(init=False, repr=False, compare=False)
    scaling: RegimeScaling | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "known_sensors", frozenset(self.sensor_names))
        object.__setattr__(self, "known_settings", frozenset(self.setting_names))

    @classmethod
    def of(cls, predictor: Predictor) -> ServedModel:
        bundle = predictor.bundle
        return cls(
            name=predictor.model_name,
            version=predictor.model_version,
            fleet_name=bundle.fleet.name,
            sensor_names=tuple(bundle.fleet.sensor_names),
            setting_names=tuple(bundle.fleet.setting_names),
            threshold=predictor.threshold,
            coverage=float(bundle.post.intervals.coverage),
            horizon=int(bundle.horizon),
            scaling=RegimeScaling.of(bundle.pipeline),
        )


@dataclass(frozen=True)
class RegimeScaling:
    """The feature pipeline's operating regimes and per-regime sensor scaling (a few small
    arrays, so it crosses processes with :class:`ServedModel`): the dashboard plots an asset's
    sensors as the model sees them, each standardised within its regime."""

    regimes: RegimeModel
    sensors: tuple[str, ...]
    mean: NDArray[np.float64]  # (n_regimes, len(sensors))
    scale: NDArray[np.float64]

    @classmethod
    def of(cls, pipeline: FeaturePipeline) -> RegimeScaling:
        return cls(
            pipeline.regimes_, tuple(pipeline.sensors_), pipeline.sensor_mean_,
            pipeline.sensor_scale_,
        )  # fmt: skip

    def normalise(
        self, settings: NDArray[np.float64], sensors: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Rows of ``settings`` and of ``sensors`` (columns as :attr:`sensors`) -> standardised
        sensors and each row's regime."""
        regime = self.regimes.assign(settings)
        return (sensors - self.mean[regime]) / self.scale[regime], regime


@dataclass(frozen=True)
class AssetSummary:
    """An asset's online state in brief (``GET /assets/{id}``)."""

    readings_seen: int
    last_time: int
    regime: int


@dataclass
class Outcome:
    """What happened to one item: a prediction, an accepted reading, or the error it raised."""

    prediction: Prediction | None = None
    duplicate: bool = False
    error: Exception | None = None
    model_version: str | None = None
    state: AssetSummary | None = None
    latency_ms: float | None = None  # set when the batcher logged the prediction


# One request's work as a scorer takes it: (kind, items, explain). Items are readings (dicts) for
# "predict" and "ingest", asset ids for "current" and "state".
Work = tuple[Kind, Sequence[Any], bool]


@dataclass
class BatchResult:
    """Outcomes per job and item, and each newly accepted reading as (job, item, asset, time) in
    the order the state took them (the caller stores and journals those readings). ``ready``
    False: the online state needs rebuilding (see :meth:`LocalScorer.seed`)."""

    outcomes: list[list[Outcome]]
    accepted: list[tuple[int, int, str, int]]
    ready: bool = True


class Scorer(Protocol):
    model: ServedModel
    mode: str  # "thread" (this process) or "process"
    pid: int

    @property
    def alive(self) -> bool: ...

    @property
    def ready(self) -> bool: ...

    def process(self, work: Sequence[Work]) -> BatchResult: ...

    def seed(self) -> int: ...

    def resume(self) -> bool: ...

    def replay(self, readings: Sequence[Any]) -> tuple[int, int]: ...

    def close(self) -> None: ...


class LocalScorer:
    """A :class:`Predictor` driven batch by batch. Not thread-safe: one caller thread at a time
    (the batcher's compute thread, or the compute process's main thread).

    It answers only once its online state is *ready*: rebuilt from the stored readings by
    :meth:`seed` (or kept whole by the store itself). Until then, and again after the store lost
    its states, every item fails with :class:`StateNotReadyError` (503): predicting from a
    history the state does not hold would be a wrong answer given as a right one.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        side: Executor | None = None,
        db: Database | None = None,
        fleet: str = DEFAULT_FLEET,
    ) -> None:
        self.predictor = predictor
        self.model = ServedModel.of(predictor)
        self.mode = "thread"
        self.pid = os.getpid()
        self.alive = True
        self._side = side
        self._db = db  # where the readings are stored, to seed state from
        self.fleet = fleet  # whose stored readings are this model's history
        self.ready = db is None  # without a database there is no history to rebuild

    def process(self, work: Sequence[Work]) -> BatchResult:
        predictor = self.predictor
        version = predictor.model_version
        outcomes = [[Outcome(model_version=version) for _ in items] for _, items, _ in work]
        if not self.ready:
            error = StateNotReadyError(
                "online state is not rebuilt from the stored readings yet (the database or the "
                "state store is unreachable); try again shortly"
            )
            for row in outcomes:
                for outcome in row:
                    outcome.error = error
            return BatchResult(outcomes, [], ready=False)
        result = self._process(work, outcomes)
        if any(isinstance(o.error, StateStoreLostError) for row in outcomes for o in row):
            self.ready = False  # the runtime rebuilds the state (seed) and we answer again
            result.ready = False
        return result

    def _process(self, work: Sequence[Work], outcomes: list[list[Outcome]]) -> BatchResult:
        predictor = self.predictor
        accepted: list[tuple[int, int, str, int]] = []
        to_score: list[tuple[Outcome, Scored, bool]] = []
        for j, ((kind, items, explain), row) in enumerate(zip(work, outcomes, strict=True)):
            if kind in ("current", "state"):
                self._read(kind, items, explain, row, to_score)
                continue
            for i, (item, outcome) in enumerate(zip(items, row, strict=True)):
                try:
                    scored = predictor.ingest(item)
                except DuplicateReadingError:
                    # The same (asset, time) again: idempotent. Score the asset as it stands.
                    outcome.duplicate = True
                    if kind == "predict":
                        try:
                            to_score.append((outcome, predictor.current(item["asset_id"]), explain))
                        except PrognosError as exc:
                            outcome.error = exc
                    continue
                except PrognosError as exc:
                    outcome.error = exc
                    continue
                accepted.append((j, i, scored.asset_id, scored.time))
                if kind == "predict":
                    to_score.append((outcome, scored, explain))
        if to_score:
            explain = any(e for _, _, e in to_score)
            predictions = predictor.score(
                [s for _, s, _ in to_score], explain=explain, side=self._side
            )
            for (outcome, _, wants), prediction in zip(to_score, predictions, strict=True):
                if not wants:
                    prediction.explanation = None
                outcome.prediction = prediction
        return BatchResult(outcomes, accepted)

    def _read(
        self,
        kind: Kind,
        assets: Sequence[Any],
        explain: bool,
        row: list[Outcome],
        to_score: list[tuple[Outcome, Scored, bool]],
    ) -> None:
        predictor = self.predictor
        if kind == "state":
            for asset, outcome in zip(assets, row, strict=True):
                try:
                    state = predictor.store.get(asset_key(asset))
                except PrognosError as exc:
                    outcome.error = exc
                    continue
                if state is not None:
                    outcome.state = AssetSummary(state.count, state.last_time, state.regime)
            return
        try:
            found: list[Scored | Exception] = list(predictor.current_many(assets))
        except PrognosError as exc:  # the store is away: every item of the job fails
            found = [exc] * len(assets)
        for outcome, got in zip(row, found, strict=True):
            if isinstance(got, Exception):
                outcome.error = got
            else:
                to_score.append((outcome, got, explain))

    def seed(self) -> int:
        """Rebuild, from the stored readings, the state of assets the store lacks or that missed
        readings (see ``OnlineFeatures.seed_states``), and so make the state ready; returns
        states written.

        Call it only when the table holds every acknowledged reading (the runtime waits for the
        writer's spool to be replayed). Raises :class:`StorageUnavailableError` or
        :class:`StateStoreError` when the readings cannot be read or the states written: the
        state then stays not ready, unless the store kept whole states of its own (a Redis
        whose generation is intact, see ``stores``), which are used as they are.
        """
        if self._db is None:
            self.ready = True
            return 0
        online = self.predictor.online
        store = online.store
        try:
            frame, counts = readings_tail(self._db, online.seed_tail, self.fleet)
        except StorageUnavailableError:
            self.ready = store.resume()
            if self.ready:
                log.warning("database unreachable: serving the states the state store kept")
                return 0
            raise
        store.begin_seed()
        self.ready = False
        written = 0
        if not frame.empty:
            try:
                written = online.seed_states(frame, counts)
            except StateStoreError:
                raise
            except (PrognosError, KeyError) as exc:
                log.error("stored readings do not fit model %s: %s", self.model.version, exc)
        store.finish_seed()
        self.ready = True
        return written

    def resume(self) -> bool:
        """Make the state ready without the database when the store kept whole states (see
        ``StateStore.resume``); False otherwise."""
        self.ready = self.ready or self.predictor.online.store.resume()
        return self.ready

    def replay(self, readings: Sequence[Any]) -> tuple[int, int]:
        """Fold readings another model accepted into this one's state; repeats are skipped.

        Returns (replayed, behind): ``behind`` counts readings older than their asset's state
        here, which another worker sharing the store advanced meanwhile (see ``seed``).
        """
        replayed = behind = 0
        for reading in readings:
            try:
                self.predictor.ingest(reading)
                replayed += 1
            except DuplicateReadingError:
                pass  # the seed already had it from the table
            except OutOfOrderReadingError:
                behind += 1
            except PrognosError as exc:  # the state store is away: say so, keep going
                log.warning("reading not carried over to the new model: %s", exc)
        return replayed, behind

    def close(self) -> None:
        pass
