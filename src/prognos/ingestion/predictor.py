"""The serving hot path: a loaded model bundle plus online feature state, free of pandas.

``reading -> OnlineFeatures.update -> feature row + sequence window -> members -> ensemble,
calibration, threshold, interval -> TreeSHAP explanation``. Scoring takes many rows at once so the
service can coalesce concurrent requests into one call of each member (see ``batching``).
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Mapping, Sequence
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
from prognos.storage.models import DEFAULT_FLEET

RISK_LEVELS = ("LOW", "MEDIUM", "HIGH")
# The member whose failure classifier is explained (exact TreeSHAP, native to XGBoost).
EXPLAINED_MEMBER = "xgboost"
# A batch at least this large has its TreeSHAP shared between the compute and the side thread
# (below it, one thread's share would cost more in hand-off than it saves).
SHARE_SHAP_FROM = 16
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


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float
    contribution: float  # log-odds of the explained member's failure classifier


@dataclass
class Explanation:
    """TreeSHAP of the XGBoost member's failure classifier, largest magnitude first.

    ``contributions`` + ``other`` + ``base`` sum exactly to ``logit``, that member's log-odds.
    """

    model: str
    base: float
    logit: float
    contributions: list[Contribution]
    other: float

    def top(self, k: int) -> list[Contribution]:
        return self.contributions[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a feature value that is missing (NaN) is logged as null."""
        return {
            "model": self.model,
            "base": self.base,
            "logit": self.logit,
            "other": self.other,
            "contributions": [
                {
                    "feature": c.feature,
                    "value": c.value if math.isfinite(c.value) else None,
                    "contribution": c.contribution,
                }
                for c in self.contributions
            ],
        }


@dataclass
class Prediction:
    asset_id: str
    time: int
    failure_probability: float
    risk_level: str
    rul: float
    rul_lower: float
    rul_upper: float
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
    """

    def __init__(
        self,
        bundle: ModelBundle,
        store: StateStore | None = None,
        *,
        model_name: str,
        model_version: str,
    ) -> None:
        self.bundle = bundle
        self.model_name = model_name
        self.model_version = model_version
        self.online = OnlineFeatures(bundle.pipeline, store, window=bundle.window)
        self.feature_names = list(self.online.feature_names)
        self.threshold = float(bundle.post.threshold)
        self.explainer = bundle.members.get(EXPLAINED_MEMBER)
        if self.explainer is not None and not hasattr(self.explainer, "contributions"):
            self.explainer = None
        # The explained member's share of the blended failure probability (reported with every
        # explanation: TreeSHAP of one member describes that share of the risk, not all of it).
        self.explainer_weight = float(bundle.post.proba_weights.get(EXPLAINED_MEMBER, 0.0))
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
        the ensemble, and a large batch's TreeSHAP is shared between both threads. XGBoost and
        torch release the GIL in their kernels and XGBoost's prediction is thread-safe, so this
        shortens a batch by up to the smaller of the two parts (the results are identical).
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
        if not (explain and self.explainer is not None):
            out = self.bundle.predict_rows(X)
        elif side is None:
            out = self.bundle.predict_rows(X)
            explanations = list(self._explain(X))
        else:
            # The side thread takes the first rows; this thread the rest after the ensemble.
            n = len(items)
            split = n if n < SHARE_SHAP_FROM else (n * 3) // 5
            first = side.submit(self._explain, X if split == n else X.span(0, split))
            out = self.bundle.predict_rows(X)
            rest = self._explain(X.span(split, n)) if split < n else []
            explanations = [*first.result(), *rest]
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
                    rul_upper=float(out["rul_upper"][i]),
                    should_inspect=bool(out["alert"][i]),
                    model_name=self.model_name,
                    model_version=self.model_version,
                    explanation=explanations[i],
                )
            )
        return predictions

    def _explain(self, X: ModelInput) -> list[Explanation]:
        assert self.explainer is not None
        shap = self.explainer.contributions(X)  # type: ignore[attr-defined]
        names = self.feature_names
        explanations = []
        keep = min(LOGGED_CONTRIBUTIONS, len(names))
        for row, values in zip(shap, X.features, strict=True):
            contributions = row[:-1]
            top = np.argpartition(-np.abs(contributions), keep - 1)[:keep]
            top = top[np.argsort(-np.abs(contributions[top]), kind="stable")]
            kept = [Contribution(names[j], float(values[j]), float(contributions[j])) for j in top]
            explanations.append(
                Explanation(
                    model=EXPLAINED_MEMBER,
                    base=float(row[-1]),
                    logit=float(row.sum()),
                    contributions=kept,
                    other=float(contributions.sum() - contributions[top].sum()),
                )
            )
        return explanations
