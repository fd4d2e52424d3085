"""The offline path: a scikit-learn transformer from a readings history to a feature matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin

from prognos.data.regimes import RegimeModel
from prognos.errors import NotFittedError, SchemaError
from prognos.features.kernels import FeatureLayout, gather_lags, lag_depth, window_features
from prognos.features.spec import FeatureSpec
from prognos.fleet import ASSET, TIME, FleetSpec

HEALTH_INDEX = "health_index"
_CHUNK = 512


@dataclass(frozen=True)
class _History:
    """Readings sorted by asset then time, as normalised channels (computed once per call)."""

    order: NDArray[np.intp]  # sorted position -> row of X
    channels: NDArray[np.float64]  # (rows, channels), sorted
    regime: NDArray[np.intp]
    starts: NDArray[np.intp]  # first sorted position of each asset
    ends: NDArray[np.intp]
    pos: NDArray[np.intp]  # position within the asset
    padded_channels: NDArray[np.float64]  # (channels, rows + 1), last column zeros


class FeaturePipeline(TransformerMixin, BaseEstimator):
    """Learns regimes, per-regime scalers, kept sensors and the health index; builds features.

    ``transform`` returns a DataFrame aligned with the input's index (any row order in, same order
    out), with columns :attr:`feature_names_out_`. The fitted pipeline is pickled with the model.
    """

    def __init__(self, fleet: FleetSpec, spec: FeatureSpec | None = None) -> None:
        self.fleet = fleet
        self.spec = spec

    # -- fit ---------------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any = None) -> Self:
        spec = self.spec_
        settings = self._settings(X)
        self.regimes_ = (
            RegimeModel.fit(settings, spec.n_regimes, max_regimes=spec.max_regimes)
            if spec.regime_normalisation
            else RegimeModel.single()
        )
        regime = self.regimes_.assign(settings)
        candidates = spec.sensors if spec.sensors is not None else self.fleet.sensor_names
        unknown = sorted(set(candidates) - set(self.fleet.sensor_names))
        if unknown:
            raise SchemaError(f"feature spec names sensors the fleet does not have: {unknown}")
        raw = self._columns(X, candidates)
        keep = [
            j
            for j in range(raw.shape[1])
            if not spec.drop_constant
            or max(len(np.unique(raw[regime == r, j])) for r in np.unique(regime))
            >= spec.min_distinct_values
        ]
        if not keep:
            raise SchemaError("every sensor is constant within its regimes: nothing to learn from")
        self.sensors_ = [candidates[j] for j in keep]
        self.dropped_sensors_ = [c for c in candidates if c not in self.sensors_]
        raw = raw[:, keep]
        n_reg = self.regimes_.n_regimes
        self.sensor_mean_ = np.zeros((n_reg, len(keep)))
        self.sensor_scale_ = np.ones((n_reg, len(keep)))
        for r in range(n_reg):
            rows = raw[regime == r]
            if len(rows):
                self.sensor_mean_[r] = rows.mean(axis=0)
                scale = rows.std(axis=0)
                self.sensor_scale_[r] = np.where(scale > 0, scale, 1.0)
        z = self._normalise(raw, regime)
        self.health_weights_ = self._fit_health_index(z, X) if spec.health_indicator else None
        channels = self.sensors_ + ([HEALTH_INDEX] if spec.health_indicator else [])
        self.layout_ = FeatureLayout.build(spec, channels)
        self.feature_names_out_ = self.layout_.names
        self.n_features_in_ = len(self.fleet.columns)
        return self

    def _fit_health_index(self, z: NDArray[np.float64], X: pd.DataFrame) -> NDArray[np.float64]:
        """First principal direction of the normalised sensors, oriented to rise with age."""
        centred = z - z.mean(axis=0)
        _, _, vt = np.linalg.svd(centred[:: max(1, len(z) // 50_000)], full_matrices=False)
        weights = vt[0]
        age = X.groupby(ASSET, sort=False).cumcount().to_numpy(dtype=np.float64)
        if np.corrcoef(self._health_index(z, weights), age)[0, 1] < 0:
            weights = -weights
        return np.ascontiguousarray(weights)

    # -- shared per-reading arithmetic (also used by the online path) -------------------------

    def _settings(self, X: pd.DataFrame) -> NDArray[np.float64]:
        return self._columns(X, self.fleet.setting_names)

    @staticmethod
    def _columns(X: pd.DataFrame, names: list[str]) -> NDArray[np.float64]:
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise SchemaError(f"readings lack columns {missing}")
        return np.ascontiguousarray(X[names].to_numpy(dtype=np.float64))

    def _normalise(self, raw: NDArray[np.float64], regime: NDArray[np.intp]) -> NDArray[np.float64]:
        return (raw - self.sensor_mean_[regime]) / self.sensor_scale_[regime]

    @staticmethod
    def _health_index(z: NDArray[np.float64], weights: NDArray[np.float64]) -> NDArray[np.float64]:
        # A sequential sum of products, not a BLAS dot: the same bits for 1 row or 70,000.
        total = z[:, 0] * weights[0]
        for j in range(1, len(weights)):
            total = total + z[:, j] * weights[j]
        return total

    def channel_values(
        self, settings: NDArray[np.float64], sensors: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Normalised channels (rows, channels) and regime ids from raw settings and sensors."""
        regime = self.regimes_.assign(settings)
        z = self._normalise(sensors, regime)
        if self.health_weights_ is not None:
            z = np.concatenate([z, self._health_index(z, self.health_weights_)[:, None]], axis=1)
        return z, regime

    # -- transform ---------------------------------------------------------------------------

    @property
    def spec_(self) -> FeatureSpec:
        return self.spec if self.spec is not None else FeatureSpec()

    def _check_fitted(self) -> None:
        if not hasattr(self, "layout_"):
            raise NotFittedError("FeaturePipeline is not fitted: call fit() first")

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        self._check_fitted()
        return np.asarray(self.feature_names_out_, dtype=object)

    def transform(self, X: pd.DataFrame, rows: NDArray[np.intp] | None = None) -> pd.DataFrame:
        """Whole histories to features; vectorised over rows (loops only over window offsets).

        ``rows`` (positions in ``X``) computes only those rows, in that order, still from the
        whole history: what prediction at each asset's last reading needs.
        """
        return self._features(self._history(X), X, rows)

    def features_and_sequences(
        self, X: pd.DataFrame, window: int, rows: NDArray[np.intp] | None = None
    ) -> tuple[pd.DataFrame, NDArray[np.float32], NDArray[np.int64]]:
        """``transform`` and ``sequences`` together, sorting and normalising the history once."""
        history = self._history(X)
        return (self._features(history, X, rows), *self._sequences(history, window, rows))

    def _features(
        self, history: _History, X: pd.DataFrame, rows: NDArray[np.intp] | None
    ) -> pd.DataFrame:
        order, regime, pos = history.order, history.regime, history.pos
        padded_channels = history.padded_channels
        wanted = self._wanted(order, rows)
        ewma = self._offline_ewma(history.channels, history.starts, history.ends)
        spec, layout = self.spec_, self.layout_
        depth = lag_depth(spec)
        # Fortran order: pandas keeps column blocks, so the frame wraps this array without a copy.
        out = np.empty((len(wanted), layout.n_features), order="F")
        for a in range(0, len(wanted), _CHUNK):
            # Chunks of rows keep the kernel's working set in cache; every value depends on its
            # own row only, so chunking changes no bit of the result.
            at = wanted[a : a + _CHUNK]
            target = out[a : a + len(at)]
            lagged, padded = gather_lags(padded_channels, pos[at], at, depth)
            count = (pos[at] + 1).astype(np.float64)
            window_features(lagged, padded, count, layout, target)
            for e, span in enumerate(spec.ewma_spans):
                target[:, layout.block_slice(f"ewma_{span}")] = ewma[e, at]
            if "age" in layout.extras:
                target[:, layout.extra_column("age")] = count
            if "regime" in layout.extras:
                target[:, layout.extra_column("regime")] = regime[at]
        index = X.index if rows is None else X.index[rows]
        return pd.DataFrame(out, index=index, columns=self.feature_names_out_, copy=False)

    @staticmethod
    def _wanted(order: NDArray[np.intp], rows: NDArray[np.intp] | None) -> NDArray[np.intp]:
        """Sorted positions of the requested rows of ``X`` (all of them, in ``X``'s order)."""
        sorted_position = np.empty_like(order)
        sorted_position[order] = np.arange(len(order))
        return sorted_position if rows is None else sorted_position[np.asarray(rows)]

    def _history(self, X: pd.DataFrame) -> _History:
        """Rows sorted by asset then time, normalised: what every feature view starts from."""
        self._check_fitted()
        for column in (ASSET, TIME):
            if column not in X.columns:
                raise SchemaError(f"readings lack column {column!r}")
        n = len(X)
        asset_codes = pd.factorize(X[ASSET])[0]
        order = np.lexsort((X[TIME].to_numpy(), asset_codes))
        settings = self._settings(X)[order]
        sensors = self._columns(X, self.sensors_)[order]
        channels, regime = self.channel_values(settings, sensors)
        codes = asset_codes[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if n else np.zeros(0, int)
        ends = np.r_[starts[1:], n].astype(int)
        pos = np.arange(n) - np.repeat(starts, ends - starts)
        # Channels as rows (the kernel works on (channels, lags, rows)), plus one zero column.
        padded_channels = np.zeros((channels.shape[1], n + 1))
        padded_channels[:, :n] = channels.T
        return _History(order, channels, regime, starts, ends, pos, padded_channels)

    def sequences(
        self, X: pd.DataFrame, window: int, rows: NDArray[np.intp] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Each row's last ``window`` normalised channel vectors, for sequence models.

        Returns (rows, window, channels) float32, oldest first and the row's own reading last,
        aligned with ``X``'s rows (or with ``rows``, positions in ``X``); positions before the
        asset's first reading are zero, and the second array says how many trailing positions
        are real (1..window).
        """
        return self._sequences(self._history(X), window, rows)

    def _sequences(
        self, history: _History, window: int, rows: NDArray[np.intp] | None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        pos = history.pos
        wanted = self._wanted(history.order, rows)
        n_channels = history.channels.shape[1]
        result = np.empty((len(wanted), window, n_channels), dtype=np.float32)
        for a in range(0, len(wanted), _CHUNK * 8):
            at = wanted[a : a + _CHUNK * 8]
            _, padded = gather_lags(history.padded_channels, pos[at], at, window)
            # (channels, lags, rows) -> (rows, lags reversed = oldest first, channels)
            result[a : a + len(at)] = padded[:, ::-1, :].transpose(2, 1, 0)
        return result, np.minimum(pos[wanted] + 1, window).astype(np.int64)

    def _offline_ewma(
        self, channels: NDArray[np.float64], starts: NDArray[np.intp], ends: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        """EWMA per span (spans, rows, channels) over rows sorted by asset then time."""
        from scipy.signal import lfilter  # deferred: costs ~1 s at import, used only here

        spec = self.spec_
        result = np.empty((len(spec.ewma_alphas), *channels.shape))
        for e, alpha in enumerate(spec.ewma_alphas):
            b, a = np.array([alpha]), np.array([1.0, -(1.0 - alpha)])
            for start, end in zip(starts, ends, strict=True):
                # y0 = x0, then y_t = alpha*x_t + (1-alpha)*y_{t-1}: the same operations as the
                # online ``ewma_step`` (lfilter's direct form with b1 = 0), hence the same bits.
                result[e, start] = channels[start]
                if end - start > 1:
                    result[e, start + 1 : end], _ = lfilter(
                        b,
                        a,
                        channels[start + 1 : end],
                        axis=0,
                        zi=((1.0 - alpha) * channels[start])[None, :],
                    )
        return result
