"""Every metric name prognos exports, derived from the code that exports it (not a list kept by
hand): the service's and the stream ingester's registries as they build them, and the monitoring
gauges as real live-monitoring runs write them (quality and performance over the hand-built case,
drift against the tiny model's own reference profile, ingestion lag for a timestamp fleet)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from prognos.config import get_settings
from prognos.monitoring.live import load_monitored, profile_drift, run_live
from prognos.serving.monitoring_gauges import families
from prognos.serving.telemetry import Telemetry
from prognos.storage import Database, insert_records
from prognos.storage import monitoring as store
from prognos.streaming.metrics import StreamMetrics
from tests.helpers import monitoring as case
from tests.helpers.trained import Trained

# The sample names the text exposition format gives each metric type (prometheus-client drops
# ``_total`` from a counter family's name and adds it to its samples).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def registry_names(registry: CollectorRegistry) -> set[str]:
    """Sample names of every family in ``registry``, with or without samples yet."""
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def service_names() -> set[str]:
    """The service's own metrics and the stream ingester's."""
    return registry_names(Telemetry().registry) | registry_names(StreamMetrics().registry)


def monitoring_names(trained: Trained, folder: Path) -> set[str]:
    """The gauge names ``/metrics`` shows for the runs ``prognos monitor run`` writes."""
    settings = get_settings(home=folder / "home", monitoring_coverage_min_count=3)
    db = Database(f"sqlite:///{folder}/monitoring.db")
    db.upgrade()
    try:
        # Quality, realised and estimated performance, coverage, dead letters.
        insert_records(
            db,
            {
                "reading": case.reading_rows(),
                "prediction": case.prediction_rows(),
                "feedback": case.feedback_rows(),
                "dead_letter": [
                    {"fleet": case.FLEET, "source": "mqtt", "reason": "schema", "detail": "",
                     "payload": "{}", "received_at": case.NOW - timedelta(minutes=3)}
                ],
            },
        )  # fmt: skip
        run_live(settings, db, case.MODEL_FACTS, now=case.NOW, write_report=False)

        # Feature and prediction drift against the tiny model's reference profile.
        facts = load_monitored(trained.settings(), trained.name)
        check, reason = profile_drift(trained.settings(), facts)
        assert check is not None, reason
        frame = trained.fleet
        rng = np.random.default_rng(0)
        rows = frame.to_dict("records")
        insert_records(
            db,
            {
                "reading": [
                    {
                        "fleet": "drift",
                        "asset_id": str(r["asset_id"]),
                        "time": int(r["time"]),
                        "values": {
                            k: float(v) for k, v in r.items()
                            if k.startswith(("sensor", "setting"))
                        },
                        "received_at": case.NOW - timedelta(seconds=len(rows) - i),
                    }
                    for i, r in enumerate(rows)
                ],
                "prediction": [
                    {
                        "id": f"pred_drift_{i}", "fleet": "drift", "asset_id": str(r["asset_id"]),
                        "time": int(r["time"]), "model_name": facts.name,
                        "model_version": facts.version,
                        "created_at": case.NOW - timedelta(seconds=len(rows) - i),
                        "failure_probability": float(rng.uniform()), "risk_level": "LOW",
                        "rul": float(rng.uniform(0, 100)), "rul_lower": 0.0, "rul_upper": 100.0,
                        "should_inspect": False,
                    }
                    for i, r in enumerate(rows)
                ],
            },
        )  # fmt: skip
        run_live(settings, db, facts, fleet="drift", drift=check, now=case.NOW, write_report=False)

        # Ingestion lag: only a fleet whose readings carry timestamps has one.
        stamped = case.MODEL_FACTS.spec.model_copy(
            update={"name": "stamped", "time_kind": "timestamp"}
        )
        model = replace(case.MODEL_FACTS, name="stamped", spec=stamped)
        start = case.NOW - timedelta(minutes=30)
        insert_records(
            db,
            {
                "reading": [
                    {
                        "fleet": "stamped", "asset_id": "S", "values": {"sensor_1": 1.0},
                        "time": int((start + timedelta(minutes=i)).timestamp() * 1e9),
                        "received_at": start + timedelta(minutes=i, seconds=2),
                    }
                    for i in range(10)
                ]
            },
        )  # fmt: skip
        run_live(settings, db, model, fleet="stamped", now=case.NOW, write_report=False)

        return {
            sample.name
            for family in families(store.latest_runs_by_model(db))
            for sample in family.samples
        }
    finally:
        db.dispose()
