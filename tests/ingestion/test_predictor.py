"""The predictor's scoring paths agree: the side-thread explanation (how the service scores) gives
the same predictions and explanations as scoring on one thread."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from prognos.ingestion.loading import load_champion
from prognos.ingestion.predictor import LOGGED_CONTRIBUTIONS, Predictor, Scored
from tests.helpers.trained import Trained


@pytest.fixture(scope="module")
def fleet_items(trained: Trained) -> tuple[Predictor, list[Scored]]:
    loaded = load_champion(trained.settings(), trained.name)
    predictor = Predictor(loaded.bundle, model_name=loaded.name, model_version=loaded.version)
    channels = (*loaded.bundle.fleet.setting_names, *loaded.bundle.fleet.sensor_names)
    items: dict[str, Scored] = {}
    for row in trained.fleet.groupby("asset_id").head(12).to_dict("records"):
        # Many assets from few: the same readings under several names.
        for copy in range(4):
            reading = {"asset_id": f"{row['asset_id']}-{copy}", "time": int(row["time"])}
            reading |= {c: float(row[c]) for c in channels}
            items[reading["asset_id"]] = predictor.ingest(reading)
    return predictor, list(items.values())


@pytest.mark.parametrize("size", [1, 3, 24])
def test_side_thread_scoring_matches_one_thread(
    fleet_items: tuple[Predictor, list[Scored]], size: int
) -> None:
    predictor, items = fleet_items
    assert len(items) >= size
    batch = items[:size]
    alone = predictor.score(batch)
    with ThreadPoolExecutor(max_workers=1) as side:
        shared = predictor.score(batch, side=side)
    assert len(shared) == size
    for a, b in zip(alone, shared, strict=True):
        assert (a.asset_id, a.failure_probability, a.rul) == (
            b.asset_id,
            b.failure_probability,
            b.rul,
        )
        assert a.explanation is not None and b.explanation is not None
        assert a.explanation.to_dict() == b.explanation.to_dict()
    # And each adds up to the served log-odds, logged as top contributions plus "other".
    for p in shared:
        assert p.explanation is not None
        assert len(p.explanation.contributions) == LOGGED_CONTRIBUTIONS
        total = p.explanation.base + p.explanation.other
        total += sum(c.contribution for c in p.explanation.contributions)
        q = p.failure_probability
        assert p.explanation.logit == pytest.approx(math.log(q) - math.log1p(-q), abs=1e-9)
        assert total == pytest.approx(p.explanation.logit, abs=1e-9)


def test_an_interval_reaching_the_cap_is_served_open_above(
    fleet_items: tuple[Predictor, list[Scored]],
) -> None:
    """Early-life readings of assets that ran to failure: the model says ~the cap, so the
    interval reaches it and is served (and logged) as "more than rul_lower", upper None."""
    predictor, items = fleet_items
    intervals = predictor.bundle.post.intervals
    predictions = predictor.score(items, explain=False)
    is_open = [p.rul_upper is None for p in predictions]
    assert any(is_open)
    _, upper = intervals.interval(np.array([p.rul for p in predictions]))
    assert is_open == list(np.isposinf(upper))
    for p in predictions:
        assert p.rul_lower <= p.rul
        assert p.log_row()["rul_upper"] == p.rul_upper
