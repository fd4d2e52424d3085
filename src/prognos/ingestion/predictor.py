"""The serving hot path: a loaded model bundle plus online feature state, free of pandas.

``reading -> OnlineFeatures.update -> feature row + sequence window -> members -> stacked,
calibrated probability, threshold, interval -> explanation`` (per input channel, of the served
log-odds: :mod:`prognos.models.explain`). Scoring takes many rows at once so the service can
coalesce concurrent requests into one call of each member (see ``batching``).
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prognos.errors import UnknownAssetError
from prognos.features.online import OnlineFeatures, asset_key, time_key
from prognos.features.stores import StateStore
from prognos.models.base import ModelInput
from prognos.models.bundle import ModelBundle
from prognos.models.explain import Contribution, Explainer, Explanation
from prognos.storage.models import DEFAULT_FLEET

__all__ = [
    "LOGGED_CONTRIBUTIONS",
    "RISK_LEVELS",
    "Contribution",
    "Explanation",
    "Prediction",
    "Predictor",
    "Scored",
    "reading_log_row",
    "risk_level",
]

RISK_LEVELS = ("LOW", "MEDIUM", "HIGH")
# How many contributions a logged prediction keeps (the rest are summed into "other"): enough for
# any explanation screen, small enough to log every prediction at hundreds per second.
LOGGED_CONTRIBUTIONS = 10


def risk_level(probability: float, threshold: float) -> str:
    """HIGH at or above the cost-optimal alert threshold, MEDIUM above a quarter of it, else LOW.

    Tied to the threshold rather than fixed cut-offs so that the levels keep their meaning (HIGH
    means "inspect now pays") whatever the fleet's costs are.
    """
    if probability >= threshold:
        return "HIGH"
    if probability >= threshold / 4.0:
        return "MEDIUM"
    return "LOW"


# uuid5 namespace of prediction ids (any fixed UUID).
_PREDICTION_IDS = uuid.UUID("6a1c0d3e-9b7f-4c25-8e61-70726f676e6f")


@dataclass
class Prediction:
    asset_id: str
    time: int
    failure_probability: float
    risk_level: str
    rul: float
    rul_lower: float
    rul_upper: float | None  # None: open above, the RUL is "more than rul_lower"
    should_inspect: bool
    model_name: str
    model_version: str
    explanation: Explanation | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @functools.cached_property
    def prediction_id(self) -> str:
        """The same for the same model version, asset, time and whether it is explained.

        So a re-sent reading (scored as the asset stands, with the same numbers) answers with
        the prediction it got the first time, and logging it again inserts nothing: one
        prediction per reading and model version, however often a client retries.
        """
        key = "\x1f".join(
            (self.model_name, self.model_version, self.asset_id, str(self.time),
             "explained" if self.explanation is not None else "plain")
        )  # fmt: skip
        return f"pred_{uuid.uuid5(_PREDICTION_IDS, key).hex}"

    def log_row(
        self, latency_ms: float | None = None, fleet: str = DEFAULT_FLEET, *, shadow: bool = False
    ) -> dict[str, Any]:
        """The ``predictions`` table row, already in ``normalise_record``'s form (tested).

        Every row carries ``shadow`` (a challenger's, see ``ingestion.shadow``): the writer
        inserts a batch with one statement, which takes its columns from the first row.
        """
        return {
            "id": self.prediction_id,
            "fleet": fleet,
            "asset_id": self.asset_id,
            "time": self.time,
            "created_at": self.created_at,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "failure_probability": self.failure_probability,
            "risk_level": self.risk_level,
            "rul": self.rul,
            "rul_lower": self.rul_lower,
            "rul_upper": self.rul_upper,
            "should_inspect": self.should_inspect,
            "explanation": None if self.explanation is None else self.explanation.to_dict(),
            "latency_ms": latency_ms,
            "shadow": shadow,
        }


def _bound(upper: float) -> float | None:
    """An interval's upper end, or None when it is open above (the model cannot see past the
    RUL cap, so no finite bound could be honoured)."""
    return float(upper) if math.isfinite(upper) else None


def reading_log_row(
    reading: Mapping[str, Any], asset: str, time: int, fleet: str
) -> dict[str, Any]:
    """The ``readings`` table row of an accepted reading, in ``normalise_record``'s form (tested).

    ``asset`` and ``time`` are the keys the state took; the other fields are the channels.
    """
    return {
        "fleet": fleet,
        "asset_id": asset,
        "time": time,
        "values": {k: float(v) for k, v in reading.items() if k not in ("asset_id", "time")},
        "received_at": datetime.now(UTC),
    }


@dataclass
class Scored:
    """One asset's model inputs, ready to score together with others."""

    asset_id: str
    time: int
    features: NDArray[np.float64]
    sequence: NDArray[np.float32]
    length: int


class Predictor:
    """A champion bundle with its online feature state.

    Threads: members are pinned to one thread each (XGBoost ``n_jobs=1``; the sequence member
    already uses one thread for small batches). In one process the OpenMP pools of XGBoost and
    torch otherwise fight and stall requests for hundreds of milliseconds; the service gets its
    parallelism from processes (workers) and from scoring coalesced batches instead.

    ``attribute``: members whose explanation goes down to input channels (default: all that
    can); any other member appears in explanations as one term.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        store: StateStore | None = None,
        *,
        model_name: str,
        model_version: str,
        attribute: Collection[str] | None = None,
    ) -> None:
        self.bundle = bundle
        self.model_name = model_name
        self.model_version = model_version
        self.online = OnlineFeatures(bundle.pipeline, store, window=bundle.window)
        self.feature_names = list(self.online.feature_names)
        self.threshold = float(bundle.post.threshold)
        self.explainer = Explainer(bundle, attribute=attribute)
        for member in bundle.members.values():
            for model in (
                getattr(member, "regressor_", None),
                getattr(member, "classifier_", None),
            ):
                if model is not None and hasattr(model, "set_params"):
                    model.set_params(n_jobs=1)

    @property
    def store(self) -> StateStore:
        return self.online.store

    def ingest(self, reading: Mapping[str, Any]) -> Scored:
        """Accept one reading (validated, stateful) and return the asset's model inputs."""
        features, sequence, length = self.online.update_with_sequence(reading)
        # Accepted, so the time parsed: the same key the state now holds.
        when = time_key(reading["time"])
        return Scored(asset_key(reading["asset_id"]), when, features, sequence, length)

    def current(self, asset: Any) -> Scored:
        """The asset's model inputs at its latest accepted reading (UnknownAssetError if none)."""
        [found] = self.current_many([asset])
        if isinstance(found, UnknownAssetError):
            raise found
        return found

    def current_many(self, assets: Sequence[Any]) -> list[Scored | UnknownAssetError]:
        """:meth:`current` for many assets at once (one store read, one feature-kernel call)."""
        out: list[Scored | UnknownAssetError] = []
        for asset, got in zip(assets, self.online.current_many(list(assets)), strict=True):
            if isinstance(got, UnknownAssetError):
                out.append(got)
            else:
                features, sequence, length, state = got
                out.append(Scored(asset_key(asset), state.last_time, features, sequence, length))
        return out

    def score(
        self,
        items: Sequence[Scored],
        *,
        explain: bool = True,
        side: Executor | None = None,
    ) -> list[Prediction]:
        """One call of each member for all ``items``; a prediction per item, in order.

        With a ``side`` executor (one thread) the explanation runs there while this thread runs
        the ensemble (XGBoost and torch release the GIL in their kernels; the results are
        identical). The explanation is not split further between the two threads, as TreeSHAP
        alone once was: split over two threads, the network attribution of a 100-row batch
        (60 + 40 rows, Integrated Gradients then) took longer than one thread doing both parts
        (demo model, 2 cores: 130-136 against 118-126 ms), and one call keeps the explanation
        independent of how rows were batched.
        """
        if not items:
            return []
        X = ModelInput(
            features=np.vstack([i.features for i in items]),
            feature_names=self.feature_names,
            sequences=np.stack([i.sequence for i in items]),
            lengths=np.array([i.length for i in items], dtype=np.int64),
            groups=np.array([i.asset_id for i in items], dtype=object),
        )
        explanations: list[Explanation | None] = [None] * len(items)
        if not explain:
            out = self.bundle.predict_rows(X)
        else:
            # The attribution needs no prediction: it runs beside the members (on ``side``) and
            # is closed on their outputs, so each member predicts once per batch.
            attributing = side.submit(self.explainer.attribute, X) if side is not None else None
            outputs = self.bundle.member_outputs(X)
            out = self.bundle.predict_rows(X, outputs)
            raw = self.explainer.attribute(X) if attributing is None else attributing.result()
            proba = {m: p for m, (_, p) in outputs.items()}
            explanations = list(self.explainer.finish(X, raw, proba, keep=LOGGED_CONTRIBUTIONS))
        predictions = []
        for i, item in enumerate(items):
            probability = float(out["proba"][i])
            predictions.append(
                Prediction(
                    asset_id=item.asset_id,
                    time=item.time,
                    failure_probability=probability,
                    risk_level=risk_level(probability, self.threshold),
                    rul=float(out["rul"][i]),
                    rul_lower=float(out["rul_lower"][i]),
                    rul_upper=_bound(out["rul_upper"][i]),
                    should_inspect=bool(out["alert"][i]),
                    model_name=self.model_name,
                    model_version=self.model_version,
                    explanation=explanations[i],
                )
            )
        return predictions
