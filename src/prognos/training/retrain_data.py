"""What a retraining run trains on: the original training data plus the fleet's stored lives
labelled by operator feedback, with a content hash and a snapshot that materialises it again.

Training asset ids say where a row came from, so the two parts never collide: ``orig:<asset>``
(``orig:<asset>:<life>`` for an event-log source) and ``stored:<asset>:<life>`` (lives as in
:mod:`prognos.data.outcomes`). :attr:`RetrainingSet.groups` holds each row's physical asset
(``orig:<asset>`` / ``stored:<asset>``): cross-validation grouped by it keeps two lives of one
asset on the same side of every fold, which grouping by the life id alone would not.

Labels are exact targets for the trainers: ``rul`` (NaN for rows of censored lives, whose RUL is
only known to be at least the cap: never drawn as cross-validation cut points), ``rul_capped`` and
``failure_within_h``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.api.types import is_datetime64_any_dtype

from prognos.config import Settings
from prognos.data.labels import run_to_failure_labels
from prognos.data.outcomes import events_from_feedback, life_labels, spec_events
from prognos.data.sources import load_source, parse_source
from prognos.data.validation import RuleCount, ValidationReport, validate_readings
from prognos.errors import DataSourceError, DataValidationError, LabelError
from prognos.fleet import ASSET, TIME, FleetSpec
from prognos.storage.database import Database
from prognos.storage.training import fleet_feedback, fleet_readings
from prognos.training.flow import data_hash

__all__ = ["RetrainingSet", "build_retraining_set", "load_snapshot", "snapshots_dir"]

LABEL_COLUMNS = ["rul", "rul_capped", "failure_within_h"]
MANIFEST = "manifest.json"
# The source string of data trained from a snapshot: ``snapshot:<its folder>``.
SNAPSHOT_PREFIX = "snapshot:"
_FORMAT = 1


def snapshots_dir(settings: Settings) -> Path:
    """Where retraining data snapshots live: ``HOME/snapshots``."""
    return settings.home / "snapshots"


@dataclass
class RetrainingSet:
    """Validated rows, their labels and groups, what went into them, and their content hash."""

    readings: pd.DataFrame  # spec.columns; asset_id is the training asset (a life)
    labels: pd.DataFrame  # LABEL_COLUMNS, aligned with readings
    groups: pd.Series  # the physical asset of each row, for grouped cross-validation
    report: ValidationReport  # original and stored rows together
    counts: dict[str, int]
    spec: FleetSpec
    fleet: str
    source: str | None  # the original training data's source string
    horizon: float
    rul_cap: float
    content_hash: str
    snapshot_root: Path  # where :meth:`snapshot` writes by default
    created: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    @property
    def data_hash(self) -> str:
        """The data version a run records: :attr:`content_hash`."""
        return self.content_hash

    def snapshot(self, root: Path | None = None) -> Path:
        """Write ``<root>/<content hash>/`` (readings.parquet, labels.parquet with the groups,
        manifest.json; ``root`` defaults to ``HOME/snapshots``) and return it. Atomic (written
        aside, then renamed); a snapshot already there is kept: the hash says it is the same."""
        root = self.snapshot_root if root is None else root
        target = root / self.content_hash
        if (target / MANIFEST).exists():
            return target
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.content_hash}-", dir=root))
        try:
            self.readings.to_parquet(staging / "readings.parquet", index=False)
            self.labels.assign(group=self.groups.to_numpy()).to_parquet(
                staging / "labels.parquet", index=False
            )
            (staging / MANIFEST).write_text(json.dumps(self._manifest(), indent=2))
            try:
                staging.replace(target)
            except OSError:  # another run wrote the same snapshot first: same content
                if not (target / MANIFEST).exists():
                    raise
        except OSError as exc:
            raise DataSourceError(f"cannot write the snapshot {target}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _manifest(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "content_hash": self.content_hash,
            "fleet": self.fleet,
            "source": self.source,
            "created": self.created,
            "horizon": self.horizon,
            "rul_cap": self.rul_cap,
            "counts": self.counts,
            "spec": self.spec.model_dump(mode="json"),
            "report": self.report.model_dump(mode="json"),
        }


def load_snapshot(path: Path) -> RetrainingSet:
    """The set :meth:`RetrainingSet.snapshot` wrote, checked against its content hash."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        readings = pd.read_parquet(path / "readings.parquet")
        stored_labels = pd.read_parquet(path / "labels.parquet")
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"cannot read the snapshot {path}: {exc}") from exc
    if manifest.get("format") != _FORMAT:
        raise DataSourceError(f"snapshot {path} has format {manifest.get('format')!r}")
    spec = FleetSpec.model_validate(manifest["spec"])
    readings[ASSET] = readings[ASSET].astype(object)
    labels = stored_labels[LABEL_COLUMNS]
    digest = content_hash(readings, labels, spec)
    if digest != manifest["content_hash"]:
        raise DataSourceError(
            f"snapshot {path} is damaged: its rows hash to {digest}, its manifest says "
            f"{manifest['content_hash']}"
        )
    return RetrainingSet(
        readings=readings,
        labels=labels,
        groups=stored_labels["group"].astype(object),
        report=ValidationReport.model_validate(manifest["report"]),
        counts={k: int(v) for k, v in manifest["counts"].items()},
        spec=spec,
        fleet=str(manifest["fleet"]),
        source=manifest["source"],
        horizon=float(manifest["horizon"]),
        rul_cap=float(manifest["rul_cap"]),
        content_hash=digest,
        snapshot_root=path.parent,
        created=str(manifest["created"]),
    )


def content_hash(readings: pd.DataFrame, labels: pd.DataFrame, spec: FleetSpec) -> str:
    """:func:`~prognos.training.flow.data_hash` over the rows and their labels together: a label
    that changes changes the data version."""
    rows = readings.reset_index(drop=True).astype({ASSET: object})
    return data_hash(pd.concat([rows, labels.reset_index(drop=True)], axis=1), spec)


# ------------------------------------------------------------------------------------ building


@dataclass
class _Part:
    readings: pd.DataFrame
    labels: pd.DataFrame
    groups: pd.Series
    report: ValidationReport
    counts: dict[str, int]


def build_retraining_set(
    settings: Settings,
    db: Database,
    spec: FleetSpec,
    fleet: str,
    *,
    original_source: str | None,
    horizon: float,
    rul_cap: float,
) -> RetrainingSet:
    """The original data (``original_source``, e.g. the champion's ``metadata["source"]``; None
    for the stored lives alone) and ``fleet``'s stored history labelled by its feedback, both
    validated against ``spec``; its snapshots go under ``settings``' home."""
    parts = [_stored(db, spec, fleet, horizon=horizon, rul_cap=rul_cap)]
    if original_source is not None:
        parts.insert(0, _original(original_source, spec, horizon=horizon, rul_cap=rul_cap))
    readings = pd.concat([p.readings for p in parts], ignore_index=True)
    readings[ASSET] = readings[ASSET].astype(object)  # one dtype, as a snapshot reads it back
    labels = pd.concat([p.labels for p in parts], ignore_index=True)
    groups = pd.concat([p.groups for p in parts], ignore_index=True).astype(object)
    counts = {k: v for p in parts for k, v in p.counts.items()}
    counts["training_assets"] = int(readings[ASSET].nunique())
    counts["training_rows"] = len(readings)
    if len(readings) == 0:
        raise DataValidationError(
            f"nothing to retrain fleet {fleet!r} on: no original data and no labelled stored "
            f"rows ({', '.join(f'{k} {v}' for k, v in counts.items())})"
        )
    return RetrainingSet(
        readings=readings,
        labels=labels,
        groups=groups,
        report=_merged([p.report for p in parts]),
        counts=counts,
        spec=spec,
        fleet=fleet,
        source=original_source,
        horizon=float(horizon),
        rul_cap=float(rul_cap),
        content_hash=content_hash(readings, labels, spec),
        snapshot_root=snapshots_dir(settings),
    )


def _original(source: str, spec: FleetSpec, *, horizon: float, rul_cap: float) -> _Part:
    """The original training data, labelled as it was trained on."""
    if source.startswith(SNAPSHOT_PREFIX):
        return _snapshot_original(source, spec, horizon=horizon, rul_cap=rul_cap)
    kind, _ = parse_source(source)
    data = load_source(source) if kind == "sim" else load_source(source, spec=spec)
    result = validate_readings(data.readings, spec)
    valid = _naive_utc(result.valid.reset_index(drop=True)[spec.columns])
    assets = valid[ASSET].astype(str)
    if data.run_to_failure:
        labels = run_to_failure_labels(valid, rul_cap=rul_cap, horizon=horizon)  # type: ignore[arg-type]
        readings = valid.assign(**{ASSET: ("orig:" + assets).to_numpy(dtype=object)})
        groups = readings[ASSET]
    elif data.events is not None:
        rule = spec.labels
        events = spec_events(
            data.events, failure_events=rule.failure_events, reset_events=rule.reset_events
        )
        lives = life_labels(valid, events, horizon=horizon, rul_cap=rul_cap)
        readings = lives.readings.assign(**{ASSET: "orig:" + lives.readings[ASSET].astype(str)})
        labels, groups = lives.labels, "orig:" + lives.groups.astype(str)
    else:
        raise LabelError(
            f"{source} neither runs to failure nor has an event log: it cannot be labelled"
        )
    order = readings.sort_values([ASSET, TIME], kind="mergesort").index
    return _Part(
        readings=readings.loc[order].reset_index(drop=True),
        labels=labels.loc[order].reset_index(drop=True),
        groups=groups.loc[order].reset_index(drop=True),
        report=result.report,
        counts={
            "original_assets": int(assets.nunique()),
            "original_rows": len(readings),
            "original_quarantined": result.report.quarantined_rows,
        },
    )


def _snapshot_original(source: str, spec: FleetSpec, *, horizon: float, rul_cap: float) -> _Part:
    """The original part of an earlier retraining set: a retrained model's source is its
    snapshot. Its stored lives are left out: they are read again from the database, with the
    feedback that came since."""
    earlier = load_snapshot(Path(source.removeprefix(SNAPSHOT_PREFIX)))
    if earlier.spec != spec or (earlier.horizon, earlier.rul_cap) != (horizon, rul_cap):
        raise LabelError(
            f"{source} was labelled for another spec, horizon or RUL cap (horizon "
            f"{earlier.horizon}, cap {earlier.rul_cap}; now {horizon}, {rul_cap})"
        )
    mine = earlier.readings[ASSET].astype(str).str.startswith("orig:").to_numpy()
    readings = earlier.readings[mine].reset_index(drop=True)
    return _Part(
        readings=readings,
        labels=earlier.labels[mine].reset_index(drop=True),
        groups=earlier.groups[mine].reset_index(drop=True),
        report=earlier.report,
        counts={
            "original_assets": int(earlier.groups[mine].nunique()),
            "original_rows": len(readings),
            "original_quarantined": earlier.counts.get("original_quarantined", 0),
        },
    )


def _stored(db: Database, spec: FleetSpec, fleet: str, *, horizon: float, rul_cap: float) -> _Part:
    """The fleet's stored history, split into lives and labelled by its feedback."""
    stored = fleet_readings(db, fleet)
    frame = stored.reindex(columns=spec.columns)  # a channel no reading carries: all missing
    if spec.time_kind == "timestamp":
        frame[TIME] = pd.to_datetime(frame[TIME].astype("int64"), unit="ns")
    result = validate_readings(frame, spec)
    valid = result.valid.reset_index(drop=True)
    found = events_from_feedback(fleet_feedback(db, fleet), time_kind=spec.time_kind)
    lives = life_labels(valid, found.events, horizon=horizon, rul_cap=rul_cap)
    readings = lives.readings.assign(
        **{ASSET: ("stored:" + lives.readings[ASSET].astype(str)).to_numpy(dtype=object)}
    )
    counts = {
        "stored_assets": int(stored[ASSET].nunique()),
        "stored_rows": len(stored),
        "stored_quarantined": result.report.quarantined_rows,
        **lives.counts,
        "feedback_rows": found.rows,
        "feedback_events": len(found.events),
        "feedback_untimed": found.untimed,
        "feedback_duplicates": found.duplicates,
        # Events of assets with stored readings: the ones that shaped these labels.
        "feedback_labels_used": len(found.events) - lives.counts["events_unmatched"],
    }
    return _Part(
        readings=_naive_utc(readings.reset_index(drop=True)),
        labels=lives.labels.reset_index(drop=True),
        groups=("stored:" + lives.groups.astype(str)).reset_index(drop=True),
        report=result.report,
        counts=counts,
    )


def _naive_utc(readings: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as naive UTC (the service's convention), so the two parts share one dtype."""
    time = readings[TIME]
    if is_datetime64_any_dtype(time) and getattr(time.dt, "tz", None) is not None:
        return readings.assign(**{TIME: time.dt.tz_convert("UTC").dt.tz_localize(None)})
    return readings


def _merged(reports: list[ValidationReport]) -> ValidationReport:
    """One report of several batches: counts added, rules merged (first example kept)."""
    rules: dict[str, RuleCount] = {}
    for report in reports:
        for count in report.by_rule:
            seen = rules.get(count.rule)
            rules[count.rule] = (
                count if seen is None else seen.model_copy(update={"rows": seen.rows + count.rows})
            )
    return ValidationReport(
        total_rows=sum(r.total_rows for r in reports),
        valid_rows=sum(r.valid_rows for r in reports),
        quarantined_rows=sum(r.quarantined_rows for r in reports),
        by_rule=list(rules.values()),
        warnings=[w for r in reports for w in r.warnings],
        constant_sensors=sorted({s for r in reports for s in r.constant_sensors}),
    )
