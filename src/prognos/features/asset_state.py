"""One asset's online feature state and its byte layout (what the Redis store keeps).

:class:`AssetState` is everything an asset's next feature row depends on: a ring buffer of the
newest normalised channel vectors, the running EWMAs, the latest regime and the latest reading's raw
values. It is small and fixed-size, and serialises to a fixed byte layout whose header doubles as
the state's version; :mod:`.online` advances it, :mod:`.stores` keeps it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

# count, last_time, head, regime. The first three change with every accepted reading, so the
# Redis store compares them (24 bytes) as the state's version.
_HEADER = struct.Struct("<qqqq")
# Bumped when the state's byte layout changes: part of the online path's fingerprint, so a Redis
# store never decodes states another layout wrote.
STATE_LAYOUT = 2


@dataclass
class AssetState:
    """What one asset's online features depend on; small and fixed-size (a few KB)."""

    count: int
    last_time: int
    head: int
    history: NDArray[np.float64]  # (history_length, channels) ring buffer, newest at ``head``
    ewma: NDArray[np.float64]  # (len(ewma_spans), channels)
    regime: int = 0  # of the latest reading: features without a new reading need it
    # The latest reading's settings and sensors as sent (empty where unknown).
    values: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def copy(self) -> AssetState:
        """A deep copy: the in-process store advances a copy, so a failed update changes nothing."""
        return AssetState(
            count=self.count,
            last_time=self.last_time,
            head=self.head,
            history=self.history.copy(),
            ewma=self.ewma.copy(),
            regime=self.regime,
            values=self.values.copy(),
        )

    def to_bytes(self) -> bytes:
        return (
            _HEADER.pack(self.count, self.last_time, self.head, self.regime)
            + self.history.tobytes()
            + self.ewma.tobytes()
            + self.values.tobytes()
        )

    @classmethod
    def from_bytes(
        cls, raw: bytes, history_shape: tuple[int, int], n_ewma: int, n_values: int = 0
    ) -> AssetState:
        count, last_time, head, regime = _HEADER.unpack_from(raw)
        n_hist = history_shape[0] * history_shape[1]
        n_state = n_hist + n_ewma * history_shape[1]
        expected = _HEADER.size + 8 * (n_state + n_values)
        if len(raw) != expected:
            raise ValueError(f"state is {len(raw)} bytes, expected {expected}")
        values = np.frombuffer(raw, dtype=np.float64, offset=_HEADER.size).copy()
        return cls(
            count=count,
            last_time=last_time,
            head=head,
            history=values[:n_hist].reshape(history_shape),
            ewma=values[n_hist:n_state].reshape(n_ewma, history_shape[1]),
            regime=regime,
            values=values[n_state:],
        )
