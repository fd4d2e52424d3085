"""Batch-level findings on the valid rows of a readings batch: constant and stuck sensors.

These are warnings, not quarantines: a sensor that never moves in the batch carries no information,
and a long flat run on some assets of a sensor that varies elsewhere looks like a dead sensor. The
test for "varies elsewhere" is a chance estimate, so quantised or regime-driven channels stay quiet.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from prognos.fleet import ASSET, TIME, FleetSpec

# A flat run is reported as stuck only when fewer than this many runs at least as long would be
# expected by chance in the batch, given how often the sensor repeats a value elsewhere. This keeps
# quantised or regime-driven channels (C-MAPSS FD001 sensor_6, FD002 sensor_19) quiet.
_CHANCE_RUNS: Final = 0.01
_MAX_LISTED: Final = 5


def constant_channels(valid: pd.DataFrame, channels: list[str]) -> list[str]:
    """Channels with one value across the valid rows (none when fewer than two rows)."""
    if len(valid) < 2:
        return []
    values = valid[channels].to_numpy(dtype=np.float64)
    flat = values.min(axis=0) == values.max(axis=0)
    return [name for name, is_flat in zip(channels, flat, strict=True) if is_flat]


def stuck_warnings(
    valid: pd.DataFrame, codes: np.ndarray, spec: FleetSpec, constant: list[str], stuck_run: int
) -> list[str]:
    """Runs of >= stuck_run equal readings of one asset, on sensors that vary elsewhere.

    "Varies elsewhere" is quantitative: with the sensor's batch-wide rate ``p`` of repeating its
    previous reading, fewer than ``_CHANCE_RUNS`` runs this long would be expected by chance in the
    batch (``pairs * (1 - p) * p ** (stuck_run - 1)``). The rate includes the runs themselves, so a
    channel that legitimately repeats a lot (quantised, or set by the operating regime) is not
    reported, while a dead sensor on some assets of a fleet where it varies is.
    """
    if len(valid) < stuck_run:
        return []
    order = np.argsort(codes, kind="stable")  # valid rows are in time order within an asset
    asset = codes[order]
    same_asset = asset[1:] == asset[:-1]
    pairs = int(same_asset.sum())
    times = valid[TIME].to_numpy()[order]
    ids = valid[ASSET].to_numpy()[order]
    notes = []
    for name in spec.sensor_names:
        if name in constant:
            continue
        v = valid[name].to_numpy(dtype=np.float64)[order]
        repeat = same_asset & (v[1:] == v[:-1])
        run_id = np.concatenate([[0], np.cumsum(~repeat)])
        lengths = np.bincount(run_id)
        long_runs = np.flatnonzero(lengths >= stuck_run)
        if not len(long_runs):
            continue
        p = repeat.sum() / pairs
        if pairs * (1 - p) * p ** (stuck_run - 1) >= _CHANCE_RUNS:
            continue
        starts = np.flatnonzero(np.concatenate([[True], ~repeat]))[long_runs]
        ends = starts + lengths[long_runs] - 1
        spans = [
            f"asset {ids[s]} time {times[s]}..{times[e]} ({e - s + 1} readings at {v[s]:g})"
            for s, e in zip(starts[:_MAX_LISTED], ends[:_MAX_LISTED], strict=True)
        ]
        more = len(starts) - len(spans)
        n_assets = len(np.unique(asset[starts]))
        notes.append(
            f"{name} looks stuck in {len(starts)} run(s) of >= {stuck_run} equal readings "
            f"({n_assets} asset(s)) while it varies elsewhere: {'; '.join(spans)}"
            + (f"; and {more} more" if more else "")
        )
    return notes
