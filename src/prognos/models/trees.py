"""Tree members on the feature matrix: gradient boosting (the workhorse) and a random forest.

Both fit two models on ``X.features``: a regressor on the capped RUL and a classifier on failure
within H. Trees need no scaling, shrug off the hundreds of correlated window features and give
TreeSHAP explanations later, which is why they carry most of the ensemble on tabular C-MAPSS data.
The forest is the baseline the boosted member has to beat.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import GroupShuffleSplit

from prognos.errors import LabelError, NotFittedError, SchemaError
from prognos.models.base import ModelInput, Targets

__all__ = ["GradientBoostedMember", "RandomForestMember"]

Device = Literal["auto", "cpu", "cuda"]


# ------------------------------------------------------------------------------------- helpers


def cuda_available() -> bool:
    """Whether XGBoost can train on a GPU here: a CUDA build and a visible NVIDIA device.

    Checked without initialising CUDA (that would break CUDA in processes forked later): the
    driver's device list and ``CUDA_VISIBLE_DEVICES``. If this is wrong, XGBoost itself falls back
    to the CPU with a warning, so a false positive costs a warning, not a crash.
    """
    if not xgb.build_info().get("USE_CUDA", False):
        return False
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in {"", "-1"}:
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return gpus.is_dir() and any(gpus.iterdir())
    except OSError:
        return False


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device in {"cpu", "cuda"} or device.startswith("cuda:"):
        return device
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


def _check_training_data(
    X: ModelInput, y: Targets
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Features, RUL and failure labels as arrays, refusing shapes and labels that cannot train."""
    features = np.asarray(X.features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != len(X.feature_names):
        raise SchemaError(
            f"features have shape {features.shape} but {len(X.feature_names)} feature names"
        )
    rul = np.asarray(y.rul, dtype=np.float64)
    failed = np.asarray(y.failed, dtype=np.float64)
    if not (len(features) == len(rul) == len(failed) == len(X.groups)):
        raise SchemaError(
            f"row counts differ: features {len(features)}, groups {len(X.groups)}, "
            f"rul {len(rul)}, failed {len(failed)}"
        )
    if len(features) == 0:
        raise SchemaError("no rows to fit on")
    if not np.isfinite(rul).all():
        raise LabelError("RUL targets contain NaN or infinity: drop unlabelled rows first")
    if not np.isin(failed, (0.0, 1.0)).all():
        raise LabelError("failure labels must be 0 or 1 (drop censored/unknown rows first)")
    if len(np.unique(failed)) < 2:
        raise LabelError(
            "failure labels hold one class only: the classifier needs failing and healthy rows"
        )
    return features, rul, failed.astype(np.int64)


class _TreeMember(BaseEstimator):
    """Shared plumbing: fitted check, feature alignment, clipped RUL and positive-class proba."""

    regressor_: Any
    classifier_: Any
    feature_names_in_: list[str]

    def _check_fitted(self) -> None:
        if not hasattr(self, "regressor_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")

    def _features(self, X: ModelInput) -> NDArray[np.float64]:
        self._check_fitted()
        if list(X.feature_names) != self.feature_names_in_:
            # Trees index columns by position: a reordered or different feature set would be
            # silently wrong, so it is refused (the model travels with its feature pipeline).
            raise SchemaError(
                f"{type(self).__name__} was fitted on {len(self.feature_names_in_)} features "
                f"{self.feature_names_in_[:5]}...; got {len(X.feature_names)} "
                f"{list(X.feature_names)[:5]}..."
            )
        return np.asarray(X.features, dtype=np.float64)

    def _raw_rul(self, features: NDArray[np.float64]) -> Any:
        return self.regressor_.predict(features)

    def _raw_proba(self, features: NDArray[np.float64]) -> Any:
        return self.classifier_.predict_proba(features)[:, 1]

    def _rul(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        if len(features) == 0:
            return np.zeros(0)
        return np.clip(np.asarray(self._raw_rul(features), dtype=np.float64), 0.0, None)

    def _proba(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        if len(features) == 0:
            return np.zeros(0)
        return np.asarray(self._raw_proba(features), dtype=np.float64)

    def predict_rul(self, X: ModelInput) -> NDArray[np.float64]:
        """Remaining useful life per row, clipped at 0 (trees can undershoot near failure)."""
        return self._rul(self._features(X))

    def predict_proba(self, X: ModelInput) -> NDArray[np.float64]:
        """Probability of failure within H, shape (rows,)."""
        return self._proba(self._features(X))

    def predict_rul_and_proba(
        self, X: ModelInput
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        features = self._features(X)  # checked once for both models
        return self._rul(features), self._proba(features)


# ---------------------------------------------------------------------------- gradient boosting


class GradientBoostedMember(_TreeMember):
    """XGBoost regressor (capped RUL) and classifier (failure within H) on the feature matrix.

    Rounds are chosen by early stopping on a validation split **by asset** (rows of one engine are
    strongly correlated, so a row-wise split would stop far too late), then each model is refit on
    all rows with its best number of rounds: the held-out assets are too valuable to leave out of
    the final model, and with ~100 engines a fifth of them changes the fit noticeably. The rounds
    are used as found, not scaled up for the larger refit set (a conservative choice).

    The split uses assets in order of first appearance, not their ids, so relabelling assets
    changes nothing. With fewer than two assets, ``early_stopping_rounds=None`` or
    ``validation_fraction=0``, all ``n_estimators`` rounds are fitted once.

    Defaults suit C-MAPSS-sized data (~20k-60k rows, ~400 features) on a 2-core CPU: a low
    learning rate with up to 600 rounds, shallow-ish trees (depth 5) and row/column subsampling,
    which together regularise against the many redundant window features; 64 histogram bins
    instead of XGBoost's 256 make each round ~2x faster with no measurable loss on FD001.

    ``device="auto"`` trains on CUDA when XGBoost is a CUDA build and a GPU is visible, else on the
    CPU; the fitted models predict on the CPU either way, so a model trained on a GPU serves
    anywhere. ``scale_pos_weight=None`` takes negatives/positives of the training rows, which
    ranks well but inflates probabilities: calibrate before reading them as frequencies.

    Fitted attributes: ``regressor_`` / ``classifier_`` (the refit ``XGBRegressor`` /
    ``XGBClassifier``; ``.get_booster()`` for TreeSHAP), ``best_rounds_`` ({"rul", "failed"}),
    ``feature_importances_`` (name -> share of total gain, mean of both models, sums to 1),
    ``device_``, ``scale_pos_weight_``, ``feature_names_in_``, ``n_features_in_``.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 600,
        learning_rate: float = 0.1,
        max_depth: int = 5,
        min_child_weight: float = 5.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        max_bin: int = 64,
        early_stopping_rounds: int | None = 50,
        validation_fraction: float = 0.2,
        scale_pos_weight: float | None = None,
        device: Device | str = "auto",
        n_jobs: int = 2,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.scale_pos_weight = scale_pos_weight
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _common_params(self, device: str) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "tree_method": "hist",
            "device": device,
            "n_jobs": self.n_jobs,
            "random_state": self.random_state,
        }

    def _validation_split(
        self, groups: NDArray[Any], n_rows: int
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]] | None:
        """Train/validation rows split by asset; None when early stopping is off or impossible."""
        if self.early_stopping_rounds is None or not 0.0 < self.validation_fraction < 1.0:
            return None
        # Codes in order of first appearance: invariant to how the assets are named.
        codes = pd.factorize(np.asarray(groups), use_na_sentinel=False)[0]
        if codes.max(initial=0) < 1:
            return None
        splitter = GroupShuffleSplit(
            n_splits=1, test_size=self.validation_fraction, random_state=self.random_state
        )
        train, valid = next(splitter.split(np.zeros((n_rows, 1)), groups=codes))
        return train, valid

    def fit(self, X: ModelInput, y: Targets) -> Self:
        features, rul, failed = _check_training_data(X, y)
        device = _resolve_device(str(self.device))
        common = self._common_params(device)
        positives = float(failed.sum())
        spw = (
            float(self.scale_pos_weight)
            if self.scale_pos_weight is not None
            else (len(failed) - positives) / positives
        )
        split = self._validation_split(X.groups, len(features))

        def rounds(model: Any, target: NDArray[Any]) -> int:
            if split is None:
                return int(self.n_estimators)
            train, valid = split
            model.set_params(early_stopping_rounds=self.early_stopping_rounds)
            model.fit(
                features[train],
                target[train],
                eval_set=[(features[valid], target[valid])],
                verbose=False,
            )
            return int(model.best_iteration) + 1

        reg_params = {**common, "objective": "reg:squarederror", "eval_metric": "rmse"}
        clf_params = {
            **common,
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "scale_pos_weight": spw,
        }
        best = {
            "rul": rounds(xgb.XGBRegressor(n_estimators=self.n_estimators, **reg_params), rul),
            "failed": rounds(
                xgb.XGBClassifier(n_estimators=self.n_estimators, **clf_params), failed
            ),
        }
        regressor = xgb.XGBRegressor(n_estimators=best["rul"], **reg_params)
        regressor.fit(features, rul, verbose=False)
        classifier = xgb.XGBClassifier(n_estimators=best["failed"], **clf_params)
        classifier.fit(features, failed, verbose=False)
        # Predict on the CPU wherever trained: portable pickles, no host/device copy warnings.
        # And on one thread: prediction is served a few rows at a time, where waking an OpenMP
        # pool costs more than it saves (measured: ~4 ms instead of ~0.2 ms per call on 2 cores
        # under load), and XGBoost's pool would fight torch's in the same process.
        regressor.set_params(device="cpu", n_jobs=1)
        classifier.set_params(device="cpu", n_jobs=1)

        self.feature_names_in_ = list(X.feature_names)
        self.n_features_in_ = features.shape[1]
        self.device_ = device
        self.scale_pos_weight_ = spw
        self.best_rounds_ = best
        self.regressor_ = regressor
        self.classifier_ = classifier
        self.feature_importances_ = self._importances()
        return self

    # Prediction through the boosters: the scikit-learn wrapper saves, sets and restores
    # XGBoost's global configuration (JSON both ways) around every call, which py-spy showed as
    # a fifth of the service's compute thread at a few rows per call. The refit models carry no
    # early-stopping iteration range and use NaN for missing, so the numbers are the wrapper's
    # (tests/models/test_trees.py checks).

    def _raw_rul(self, features: NDArray[np.float64]) -> Any:
        return self.regressor_.get_booster().inplace_predict(features)

    def _raw_proba(self, features: NDArray[np.float64]) -> Any:
        return self.classifier_.get_booster().inplace_predict(features)

    def contributions(
        self, X: ModelInput, target: Literal["failed", "rul"] = "failed"
    ) -> NDArray[np.float64]:
        """Exact TreeSHAP values per row, (rows, n_features + 1), the last column the bias.

        XGBoost's native TreeSHAP (no ``shap`` dependency, same numbers). For ``failed`` they are
        in log-odds of this member's classifier and each row sums to its logit; for ``rul`` in
        cycles, summing to the unclipped RUL prediction.
        """
        features = self._features(X)
        model = self.classifier_ if target == "failed" else self.regressor_
        matrix = xgb.DMatrix(features)
        return np.asarray(model.get_booster().predict(matrix, pred_contribs=True), dtype=np.float64)

    def _importances(self) -> dict[str, float]:
        """Share of total split gain per feature, averaged over the two models (sums to 1)."""
        names = self.feature_names_in_
        total = np.zeros(len(names))
        for model in (self.regressor_, self.classifier_):
            score = model.get_booster().get_score(importance_type="total_gain")
            gain = np.zeros(len(names))
            for key, value in score.items():
                gain[int(key[1:])] = float(value)  # unnamed columns are "f<index>"
            if gain.sum() > 0:
                total += gain / gain.sum()
        if total.sum() > 0:
            total /= total.sum()
        return {name: float(g) for name, g in zip(names, total, strict=True)}


# ---------------------------------------------------------------------------------- random forest


class RandomForestMember(_TreeMember):
    """Random-forest regressor and classifier: the baseline the boosted member must beat.

    Robust with no tuning and no early stopping (``X.groups`` is not used). ``min_samples_leaf=5``
    smooths the per-row noise; ``max_features="sqrt"`` (~20 of ~400 features per split) keeps
    trees decorrelated (0.1 was ~3x slower for 0.6 cycles less RMSE); 100 trees with
    ``max_samples=0.25`` (a quarter of the rows per tree: consecutive rows of an engine are
    near-duplicates) fit FD001 in about 5 s on two cores, RMSE 15.3 against 15.0 for 250 trees on
    half the rows at five times the cost. The classifier uses
    ``class_weight="balanced_subsample"`` (failing rows are a minority).

    Fitted attributes: ``regressor_``, ``classifier_``, ``feature_importances_`` (name -> mean
    impurity decrease, averaged over both models, sums to 1), ``feature_names_in_``,
    ``n_features_in_``.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        min_samples_leaf: int = 5,
        max_features: float | int | str | None = "sqrt",
        max_samples: float | int | None = 0.25,
        n_jobs: int = 2,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples = max_samples
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: ModelInput, y: Targets) -> Self:
        features, rul, failed = _check_training_data(X, y)
        common: dict[str, Any] = {
            "n_estimators": self.n_estimators,
            "min_samples_leaf": self.min_samples_leaf,
            "max_features": self.max_features,
            "max_samples": self.max_samples,
            "n_jobs": self.n_jobs,
            "random_state": self.random_state,
        }
        regressor = RandomForestRegressor(**common).fit(features, rul)
        classifier = RandomForestClassifier(class_weight="balanced_subsample", **common).fit(
            features, failed
        )
        # Predict single-threaded: threads add the trees' outputs in a racy order, so the same
        # rows could differ in the last bit between calls; for serving-sized batches it is faster.
        regressor.set_params(n_jobs=1)
        classifier.set_params(n_jobs=1)
        self.feature_names_in_ = list(X.feature_names)
        self.n_features_in_ = features.shape[1]
        self.regressor_ = regressor
        self.classifier_ = classifier
        share = (regressor.feature_importances_ + classifier.feature_importances_) / 2.0
        self.feature_importances_ = {
            name: float(v) for name, v in zip(self.feature_names_in_, share, strict=True)
        }
        return self
