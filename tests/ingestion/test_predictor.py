"""The predictor's scoring paths agree: the side-thread explanation (how the service scores) gives
the same predictions and explanations as scoring on one thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from prognos.ingestion.loading import load_champion
from prognos.ingestion.predictor import SHARE_SHAP_FROM, Predictor, Scored
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


@pytest.mark.parametrize("size", [1, 3, SHARE_SHAP_FROM, 24])
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
    # And each still adds up to its own logit.
    for p in shared:
        assert p.explanation is not None
        total = p.explanation.base + p.explanation.other
        total += sum(c.contribution for c in p.explanation.contributions)
        assert total == pytest.approx(p.explanation.logit, abs=1e-5)
