"""The online path: one new reading in, that asset's feature row out.

Per asset the state (:class:`~prognos.features.asset_state.AssetState`) keeps the last
``max(history_length, window)`` normalised channel vectors in a ring buffer plus the running EWMAs,
the latest regime and the latest reading's raw values (so that a re-send of that reading is told
from a different one at the same time); features come from
:func:`window_features`, the same arithmetic the offline path runs over whole histories, and the
sequence member's input is the newest ``window`` vectors of the same buffer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from prognos.errors import (
    ConflictingReadingError,
    DuplicateReadingError,
    OutOfOrderReadingError,
    ReadingRejectedError,
    SchemaError,
    UnknownAssetError,
)
from prognos.features.asset_state import STATE_LAYOUT, AssetState
from prognos.features.kernels import ewma_step, lag_depth, window_features
from prognos.features.pipeline import FeaturePipeline
from prognos.features.stores import MemoryStateStore, StateStore
from prognos.fleet import ASSET, TIME

# What a reading's time may be given as, for a fleet that counts time in timestamps.
_TIMESTAMP_TYPES = (datetime, pd.Timestamp, np.datetime64, str)


def time_key(value: Any) -> int:
    """Readings' time as an integer: cycles as they are, timestamps as nanoseconds since epoch."""
    if isinstance(value, bool):
        raise TypeError("time must be a cycle number or a timestamp, not a boolean")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != int(value):
            raise TypeError(f"cycle must be a whole number, got {value!r}")
        return int(value)
    if isinstance(value, (datetime, pd.Timestamp, np.datetime64, str)):
        return int(pd.Timestamp(value).value)
    raise TypeError(f"time must be a cycle number or a timestamp, got {type(value).__name__}")


def asset_key(value: Any) -> str:
    """One key per asset whatever type the id arrived as: 7, 7.0, np.int64(7) and "7" agree."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return str(value)


class OnlineFeatures:
    """Feature rows (and sequence windows) for readings as they arrive, state in a StateStore.

    ``window`` > 0 keeps that many readings per asset for the sequence member, so that
    :meth:`update_with_sequence` and :meth:`current` also return the last ``window`` channel vectors
    exactly as :meth:`FeaturePipeline.sequences` builds them offline.
    """

    def __init__(
        self, pipeline: FeaturePipeline, store: StateStore | None = None, *, window: int = 0
    ) -> None:
        pipeline._check_fitted()
        self.pipeline = pipeline
        self.store = store if store is not None else MemoryStateStore()
        self.window = window
        self._spec = pipeline.spec_
        self._layout = pipeline.layout_
        self._history_shape = (max(self._spec.history_length, window), self._layout.n_channels)
        self._alphas = self._spec.ewma_alphas
        self._lags = np.arange(lag_depth(self._spec))
        self._settings = list(pipeline.fleet.setting_names)
        self._sensors = list(pipeline.sensors_)
        ranges = [pipeline.fleet.channel(n) for n in self._settings + self._sensors]
        self._lo = np.array([-np.inf if c.min is None else c.min for c in ranges])
        self._hi = np.array([np.inf if c.max is None else c.max for c in ranges])
        # What the stored state means: the layout and also the fitted normalisation, so that a
        # retrained model never reads channel vectors another model's scalers produced.
        self._time_kind = pipeline.fleet.time_kind
        self._fleet_name = pipeline.fleet.name
        digest = hashlib.sha256(
            repr((STATE_LAYOUT, self._layout, self._history_shape, self._alphas)).encode()
        )
        regimes = pipeline.regimes_
        for part in (
            pipeline.sensor_mean_,
            pipeline.sensor_scale_,
            pipeline.health_weights_,
            regimes.columns,
            regimes.mean,
            regimes.scale,
            regimes.centres,
        ):
            digest.update(b"-" if part is None else np.ascontiguousarray(part).tobytes())
        self.fingerprint = digest.hexdigest()[:12]

    @property
    def feature_names(self) -> list[str]:
        return self._layout.names

    def decode_state(self, raw: bytes) -> AssetState:
        n_values = len(self._settings) + len(self._sensors)
        return AssetState.from_bytes(raw, self._history_shape, len(self._alphas), n_values)

    def update(self, reading: Mapping[str, Any]) -> NDArray[np.float64]:
        """Accept one reading and return the asset's feature row (``feature_names`` order).

        Raises :class:`ReadingRejectedError` subclasses naming the problem (missing or non-numeric
        value, out of range, duplicate or out-of-order time); a rejected reading changes nothing.
        """
        return self.update_with_sequence(reading)[0]

    def update_with_sequence(
        self, reading: Mapping[str, Any]
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], int]:
        """:meth:`update`, plus the asset's sequence window (window, channels) and its length."""
        asset, when, values = self._parse(reading)
        settings = values[None, : len(self._settings)]
        sensors = values[None, len(self._settings) :]
        channels, regime = self.pipeline.channel_values(settings, sensors)
        result: tuple[NDArray[np.float64], NDArray[np.float32], int] = self.store.update(
            asset_key(asset),
            lambda state: self._advance(state, asset, when, values, channels[0], int(regime[0])),
        )
        return result

    def current(
        self, asset: Any
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], int, AssetState]:
        """The asset's feature row and sequence at its latest accepted reading, changing nothing.

        Raises :class:`UnknownAssetError` when no reading of the asset was accepted.
        """
        [found] = self.current_many([asset])
        if isinstance(found, UnknownAssetError):
            raise found
        return found

    def current_many(
        self, assets: list[Any]
    ) -> list[tuple[NDArray[np.float64], NDArray[np.float32], int, AssetState] | UnknownAssetError]:
        """:meth:`current` for many assets: one store read and one kernel call for all of them.

        Each entry is the asset's inputs, or the :class:`UnknownAssetError` it would raise.
        """
        states = self.store.get_many([asset_key(a) for a in assets])
        known = [s for s in states if s is not None]
        rows = self._features_many(known, [s.regime for s in known]) if known else None
        result: list[
            tuple[NDArray[np.float64], NDArray[np.float32], int, AssetState] | UnknownAssetError
        ] = []
        i = 0
        for asset, state in zip(assets, states, strict=True):
            if state is None:
                result.append(UnknownAssetError(f"no readings accepted for asset {asset!r}"))
                continue
            assert rows is not None
            result.append((rows[i], *self._sequence(state), state))
            i += 1
        return result

    def _parse(self, reading: Mapping[str, Any]) -> tuple[Any, int, NDArray[np.float64]]:
        missing = [c for c in (ASSET, TIME, *self._settings, *self._sensors) if c not in reading]
        if missing:
            raise SchemaError(f"reading lacks fields {missing}")
        asset = reading[ASSET]
        if asset is None or (isinstance(asset, float) and math.isnan(asset)) or asset == "":
            raise ReadingRejectedError("reading has no asset id", reason="missing")
        raw_time = reading[TIME]
        if (self._time_kind == "cycle") == isinstance(raw_time, _TIMESTAMP_TYPES):
            given, wanted = (
                ("a timestamp", "cycle numbers")
                if self._time_kind == "cycle"
                else ("a cycle number", "timestamps")
            )
            raise ReadingRejectedError(
                f"asset {asset}: time is {given}, but fleet {self._fleet_name!r} counts time "
                f"in {wanted}",
                reason="time_kind",
            )
        try:
            when = time_key(raw_time)
        except (TypeError, ValueError) as exc:
            raise ReadingRejectedError(f"asset {asset}: bad time: {exc}", reason="type") from exc
        names = self._settings + self._sensors
        try:
            values = np.array([float(reading[n]) for n in names], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ReadingRejectedError(
                f"asset {asset} time {when}: non-numeric value: {exc}", reason="type"
            ) from exc
        bad = np.isnan(values)
        if bad.any():
            raise ReadingRejectedError(
                f"asset {asset} time {when}: missing values for {_pick(names, bad)}",
                reason="missing",
            )
        bad = (values < self._lo) | (values > self._hi)
        if bad.any():
            detail = ", ".join(
                f"{names[j]}={values[j]} outside [{self._lo[j]}, {self._hi[j]}]"
                for j in np.flatnonzero(bad)
            )
            raise ReadingRejectedError(
                f"asset {asset} time {when}: {detail}", reason="out_of_range"
            )
        return asset, when, values

    def _advance(
        self,
        state: AssetState | None,
        asset: Any,
        when: int,
        values: NDArray[np.float64],
        channels: NDArray[np.float64],
        regime: int,
    ) -> tuple[AssetState, tuple[NDArray[np.float64], NDArray[np.float32], int]]:
        if state is None:
            state = AssetState(
                count=1,
                last_time=when,
                head=0,
                history=np.zeros(self._history_shape),
                ewma=np.repeat(channels[None, :], len(self._alphas), axis=0),
                regime=regime,
                values=values,
            )
            state.history[0] = channels
        else:
            if when == state.last_time:
                self._check_same(state, asset, when, values)
                raise DuplicateReadingError(f"a reading at time {when} was already accepted")
            if when < state.last_time:
                raise OutOfOrderReadingError(
                    f"reading at time {when} is older than the latest accepted ({state.last_time})"
                )
            state.count += 1
            state.last_time = when
            state.head = (state.head + 1) % self._history_shape[0]
            state.history[state.head] = channels
            for e, alpha in enumerate(self._alphas):
                state.ewma[e] = ewma_step(state.ewma[e], channels, alpha)
            state.regime = regime
            state.values = values
        return state, (self._features(state, regime), *self._sequence(state))

    def _check_same(
        self, state: AssetState, asset: Any, when: int, values: NDArray[np.float64]
    ) -> None:
        """A reading at the latest accepted time is a harmless re-send only with the same
        values; different values are a conflict, named with both (the first is what is kept)."""
        if state.values.shape != values.shape or np.array_equal(state.values, values):
            return
        names = self._settings + self._sensors
        differ = np.flatnonzero(state.values != values)
        detail = "; ".join(
            f"{names[j]}: accepted {float(state.values[j])!r}, sent {float(values[j])!r}"
            for j in differ[:5]
        )
        more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
        raise ConflictingReadingError(
            f"asset {asset} time {when}: a reading with other values was already accepted at "
            f"this time ({detail}{more}); the accepted one stands"
        )

    @property
    def seed_tail(self) -> int:
        """Readings per asset that rebuild its state to within 1e-12 of its whole history.

        The windows need ``history_length`` readings; each EWMA forgets where it started by a
        factor (1 - alpha) per reading, so after this many readings the slowest one has kept
        under 1e-13 of its start: under 1e-12 for channels within ten (standardised) units.
        """
        slowest = min(self._alphas, default=1.0)
        forget = 0 if slowest >= 1.0 else math.ceil(math.log(1e-13) / math.log(1.0 - slowest))
        return max(self._history_shape[0], forget + 1)

    def seed_states(self, readings: pd.DataFrame, counts: Mapping[str, int] | None = None) -> int:
        """Rebuild each asset's state from its stored history, where the store lacks some of it.

        Bit-identical to replaying the readings one by one (the offline path computes the same
        channels and EWMAs; the parity tests prove it), but vectorised: after a restart with the
        in-process store, or for a newly promoted model whose scalers differ, the service gets
        its fleet's state back in one pass.

        ``readings`` may be each asset's newest readings only (at least :attr:`seed_tail`), with
        ``counts`` the number each asset has in all: windows, lags and age are then exact and
        the EWMAs within 1e-12 (exact for assets with no more readings than the tail). The
        service seeds so, keeping start-up and swaps proportional to the fleet, not its history.

        An asset that already has state keeps it, unless the stored history holds that state's
        latest reading and more readings than the state has: then the state missed readings
        (another worker, still on the previous model, accepted them after this model's state was
        first built) and is rebuilt from the history. A state the history does not cover (its
        latest reading is not stored yet) is never replaced, so no asset is rolled back.
        Returns states written.
        """
        if readings.empty:
            return 0
        history = self.pipeline._history(readings)
        ewma = self.pipeline._offline_ewma(history.channels, history.starts, history.ends)
        times = readings[TIME].to_numpy()[history.order]
        assets = readings[ASSET].to_numpy()[history.order]
        names = self._settings + self._sensors
        raw = readings[names].to_numpy(dtype=np.float64)[history.order]
        size = self._history_shape[0]
        written = 0
        for start, end in zip(history.starts, history.ends, strict=True):
            n, last = int(end - start), int(end - 1)
            total = n if counts is None else max(n, counts[asset_key(assets[last])])
            if n < total and n < size:
                raise ValueError(
                    f"{n} readings of {assets[last]!r} cannot rebuild its window of {size}: "
                    "pass at least seed_tail readings per asset"
                )
            head = (total - 1) % size
            ring = np.zeros(self._history_shape)
            k = np.arange(min(n, size))
            ring[(head - k) % size] = history.channels[last - k]
            built = AssetState(
                count=total,
                last_time=time_key(times[last]),
                head=head,
                history=ring,
                ewma=ewma[:, last].copy(),
                regime=int(history.regime[last]),
                values=raw[last].copy(),
            )

            def seed_or_repair(
                state: AssetState | None,
                built: AssetState = built,
                start: int = int(start),
                n: int = n,
            ) -> tuple[AssetState, bool]:
                if state is None:
                    return built, True
                if state.count >= built.count:
                    return state, False
                stored = any(time_key(t) == state.last_time for t in times[start : start + n])
                return (built, True) if stored else (state, False)

            written += int(self.store.update(asset_key(assets[last]), seed_or_repair))
        return written

    def _sequence(self, state: AssetState) -> tuple[NDArray[np.float32], int]:
        """The newest ``window`` channel vectors, oldest first, zeros before the first reading."""
        window = self.window
        out = np.zeros((window, self._layout.n_channels), dtype=np.float32)
        length = min(state.count, window)
        if length:
            back = (state.head - np.arange(length)[::-1]) % self._history_shape[0]
            out[window - length :] = state.history[back]
        return out, length

    def _features(self, state: AssetState, regime: int) -> NDArray[np.float64]:
        return self._features_many([state], [regime])[0]

    def _features_many(self, states: list[AssetState], regimes: list[int]) -> NDArray[np.float64]:
        """Feature rows of states (one per row), each row exactly what the offline path gives.

        Gathers every state's lags with one fancy index, so one state (the ingest hot path) and a
        hundred (a batch by ids) cost the same handful of NumPy calls.
        """
        layout, size, lags = self._layout, self._history_shape[0], self._lags
        counts = np.array([s.count for s in states])
        heads = np.array([s.head for s in states])
        back = (heads[:, None] - np.minimum(lags[None, :], counts[:, None] - 1)) % size  # (n, L)
        histories = np.stack([s.history for s in states])  # (n, size, channels)
        values = histories[np.arange(len(states))[:, None], back]  # (n, L, channels)
        lagged = values.transpose(2, 1, 0)  # (channels, L, n), as the kernel takes them
        # Zero where the asset has no reading k back (sums skip it).
        padded = np.where((lags[None, :] < counts[:, None]).T[None, :, :], lagged, 0.0)
        out = np.empty((len(states), layout.n_features))
        window_features(lagged, padded, counts.astype(np.float64), layout, out)
        ewma = np.stack([s.ewma for s in states])  # (n, spans, channels)
        for e, span in enumerate(self._spec.ewma_spans):
            out[:, layout.block_slice(f"ewma_{span}")] = ewma[:, e]
        if "age" in layout.extras:
            out[:, layout.extra_column("age")] = counts
        if "regime" in layout.extras:
            out[:, layout.extra_column("regime")] = np.asarray(regimes, dtype=np.float64)
        return out


def _pick(names: list[str], mask: NDArray[np.bool_]) -> list[str]:
    return [names[j] for j in np.flatnonzero(mask)]
